"""Compiled kernels: loss and gradient of mini-batches and the chunk loop, one compiled call per chunk.

One chunk loop, compiled per use: each combination of loss, optimizer, chunk order and tile kind a run needs is
its own small specialisation (see "compiled loops" below), built from shared compiled pieces; the mini-batch
loop, the loss, the gradient and the update all run inside Numba, and Python touches each chunk once. The first
compile of a specialisation (not a load from Numba's disk cache) prints one line on stderr.

Parameter layout, shared by optimizers, models and checkpoints: ``params`` is a flat float64 vector of length
``n_out * (d + 1)``: the coefficients row-major ``(n_out, d)`` (``coef[k, j] = params[k * d + j]``), then the
``n_out`` intercepts. Gradients use the same layout.

Rows arrive in the plan's order (the reader permutes them while converting), so a mini-batch is a run of
consecutive rows. ``X`` may be float32 or float64, column-major (the reader's layout) or row-major. Mini-batches
of a column-major chunk are read in place; other chunks, and batches of fewer than 8 rows, are staged into a
small float64 tile. Every value is converted to float64 before use and every sum is accumulated in float64 in
the same order, so both layouts and both dtypes (on the same values) give bitwise identical results.

Objective: mean weighted data loss + ``alpha * ((1 - l1_ratio) / 2 * ||coef||^2 + l1_ratio * ||coef||_1)``; the
intercepts are never penalised. The L2 part enters the gradient; the L1 part is applied after each optimizer step
as a proximal soft-threshold, or as Tsuruoka et al.'s cumulative penalty (see ``_l1_prox``), so coefficients
become exactly zero.

Status codes: 0 is success; ``-(row) - 1`` names the first row (in the chunk) whose features, target, weight,
margin or loss are not finite, or else the start row of the batch whose update would not be finite. A failed
batch is never applied: parameters and optimizer state stay as they were before it.

The public functions are thin Python wrappers: they check shapes (compiled code does not check bounds), allocate
the scratch once per call and hand the chunk to the compiled loop as a flat float32 or float64 vector (each dtype
is a signature of its own). The compiled loops allocate nothing.

>>> import numpy as np
>>> X = np.asfortranarray([[1.0, 2.0], [3.0, 4.0]]); y = np.array([1.0, 2.0]); params = np.zeros(3)
>>> grad = np.zeros(3)
>>> batch_loss_grad(X, y, np.empty(0), 0, 2, params, 1, LOSS_SQUARED, np.zeros(N_HYPER), grad)
2.5
>>> grad.tolist()
[-7.0, -10.0, -3.0]
"""

from __future__ import annotations

import math
import sys

import numba
import numpy as np
from numba.core import event as _event

from .numba_inline import install as _install_inline_copy
from .update_rules import (
    FASTMATH,
    H_ALPHA,
    H_CLIP_NORM,
    H_HUBER_EPS,
    H_L1_RATIO,
    H_L1_ROW,
    H_LAZY_ROW,
    N_HYPER,
    OPT_FTRL,
    OPT_SGD,
    after_step,
    optimizer_step,
)
from .vecmath import exp_nonpositive, log1p_unit

_install_inline_copy()  # the loops inline their pieces: compiling them 2-2.5x faster (see streamgd.kernels.numba_inline)

# loss codes
LOSS_SQUARED = 0
LOSS_LOG = 1
LOSS_SOFTMAX = 2
LOSS_HINGE = 3
LOSS_SQUARED_HINGE = 4
LOSS_HUBER = 5
LOSS_POISSON = 6
N_LOSSES = 7

# optimizer codes (OPT_*), the hyperparameter vector's slots (H_*) and the fastmath flags: streamgd.kernels.update_rules
# The compiled loops run without the Numba runtime (NRT): there an array view or argument costs no atomic
# reference count (with it, SGD with batch size 1 spent half its time on them), and nothing can be allocated.
# ``_nrt`` is a Numba compiler flag; without it the loops are still correct, only slower.
_jit = numba.njit(nogil=True, cache=True, fastmath=FASTMATH, _nrt=False, error_model="numpy")
# Pieces that run once per batch or once per row (the per-row loss, the row-major tile's passes, the update's
# checks and penalties) are inlined into the Numba IR of each specialised loop (``inline="always"``): as calls,
# they cost SGD and small batches 1.2-1.8x the time per chunk (scripts/bench_kernel.py, interleaved with the
# previous build). The loops prune their dead call sites first, so each piece is inlined only where the loop's
# loss, rule and layout use it, and its branches on the loop's constants are pruned after inlining. (One generic
# loop that inlined every branch of every piece took a minute and 2 GB to compile.) The pieces that work on
# whole columns (softmax, the column passes, the vectorised log loss, the state copy) stay compiled functions of
# their own, with the loops' flags; LLVM inlines them where it pays.
_piece = _jit
_inline = numba.njit(nogil=True, cache=True, fastmath=FASTMATH, inline="always")


def n_params(n_features: int, n_out: int = 1) -> int:
    """Length of the parameter vector for ``n_features`` features and ``n_out`` outputs.

    >>> n_params(32), n_params(4, n_out=3)
    (33, 15)
    """
    return n_out * (n_features + 1)


def split_params(params: np.ndarray, n_features: int, n_out: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Views of the coefficient matrix ``(n_out, n_features)`` and the intercepts ``(n_out,)``.

    >>> coef, intercept = split_params(np.arange(6.0), 2, n_out=2)
    >>> coef.tolist(), intercept.tolist()
    ([[0.0, 1.0], [2.0, 3.0]], [4.0, 5.0])
    """
    n_coef = n_out * n_features
    return params[:n_coef].reshape(n_out, n_features), params[n_coef:]


# ---- scalar losses ----------------------------------------------------------------------------------------------
@_inline
def _log1pexp(m):
    """log(1 + exp(m)) without overflow."""
    return max(m, 0.0) + math.log1p(math.exp(-abs(m)))


@_inline
def _sigmoid(m):
    """1 / (1 + exp(-m)) without overflow (and without a branch on the sign of m)."""
    e = math.exp(-abs(m))
    return (e if m < 0.0 else 1.0) / (1.0 + e)


@_inline
def _pointwise_loss(kind, m, y, eps):
    """Loss of one row with margin ``m`` and target ``y`` (every loss but softmax); NaN inputs give NaN."""
    if kind == LOSS_SQUARED:
        r = m - y
        return 0.5 * r * r
    if kind == LOSS_LOG:
        return _log1pexp(m) - y * m
    if kind == LOSS_HINGE:
        z = 1.0 - (2.0 * y - 1.0) * m
        return 0.0 if z <= 0.0 else z  # written so that a NaN z reaches the result
    if kind == LOSS_SQUARED_HINGE:
        z = 1.0 - (2.0 * y - 1.0) * m
        return 0.0 if z <= 0.0 else z * z
    if kind == LOSS_HUBER:
        r = abs(m - y)
        return 0.5 * r * r if r <= eps else eps * (r - 0.5 * eps)
    # LOSS_POISSON (log link; the constant log(y!) is dropped). No clamp: an overflow is a divergence.
    return math.exp(m) - y * m


@_inline
def _pointwise_dloss(kind, m, y, eps):
    """Derivative of ``_pointwise_loss`` with respect to the margin."""
    if kind == LOSS_SQUARED:
        return m - y
    if kind == LOSS_LOG:
        return _sigmoid(m) - y
    if kind == LOSS_HINGE:
        s = 2.0 * y - 1.0
        return -s if s * m < 1.0 else 0.0
    if kind == LOSS_SQUARED_HINGE:
        s = 2.0 * y - 1.0
        z = 1.0 - s * m
        return -2.0 * s * z if z > 0.0 else 0.0
    if kind == LOSS_HUBER:
        r = m - y
        return eps if r > eps else (-eps if r < -eps else r)
    return math.exp(m) - y


@_piece
def _softmax_loss_dloss(margins, b, n_out, label, dloss):
    """Multinomial loss logsumexp(m) - m[label] of row ``b``; writes softmax - onehot into ``dloss[:, b]``."""
    top = margins[0, b]
    for k in range(1, n_out):
        if margins[k, b] > top:
            top = margins[k, b]
    norm = 0.0
    for k in range(n_out):
        e = math.exp(margins[k, b] - top)
        dloss[k, b] = e
        norm += e
    inv = 1.0 / norm
    for k in range(n_out):
        dloss[k, b] *= inv
    if label >= 0.0 and label < n_out:
        index = int(label)
        dloss[index, b] -= 1.0
        return top + math.log(norm) - margins[index, b]
    return math.nan  # NaN or out-of-range label: a bad row


@_inline
def _row_loss_dloss(margins, b, n_out, loss_kind, label, weight, eps, dloss):
    """Weighted loss of row ``b`` of a tile; writes its weighted margin derivatives into ``dloss[:, b]``."""
    if loss_kind == LOSS_SOFTMAX:
        loss = _softmax_loss_dloss(margins, b, n_out, label, dloss)
        for k in range(n_out):
            dloss[k, b] *= weight
        return weight * loss
    if n_out > 1:  # hinge losses over K classes: one-vs-rest, class k's binary loss on "label == k", summed
        if not (label >= 0.0 and label < n_out):
            return math.nan  # NaN or out-of-range label: a bad row
        index = int(label)
        total = 0.0
        for k in range(n_out):
            yk = 1.0 if k == index else 0.0
            dloss[k, b] = weight * _pointwise_dloss(loss_kind, margins[k, b], yk, eps)
            total += _pointwise_loss(loss_kind, margins[k, b], yk, eps)
        return weight * total
    m = margins[0, b]
    dloss[0, b] = weight * _pointwise_dloss(loss_kind, m, label, eps)
    return weight * _pointwise_loss(loss_kind, m, label, eps)


# ---- tiles: blocks of rows, read in place or staged as float64 -------------------------------------------------
# Mini-batches need a batch's rows of each feature contiguous, so the loops over rows vectorise: a column-major
# chunk has them already and is read in place (a tile's worth of rows at a time, so the margins and the gradient
# pass find them in cache); a row-major chunk is staged into a column-major float64 tile (d, T). SGD-sized batches
# use a row-major tile (T, d), so a row's features are contiguous (read straight from a column-major chunk, one
# row touches a cache line per feature). X reaches the compiled code as a flat vector ``x`` (float32 or float64)
# in column-major (``fortran``) or row-major order.
_TILE_VALUES = 8192  # float64 values in a column-major tile (64 KiB): it stays in cache between the two passes
_ROW_TILE_VALUES = 2048  # a row-major tile is filled by a transpose, which is fastest when it fits in L1
_ROW_MAJOR_BELOW = 8  # batches of fewer rows are computed on a row-major tile


@_inline
def _stage_from(x, fortran, n, d, r0, r1, tile, rows_major):
    """Copy rows [r0, r1) of the chunk held in the flat vector ``x`` into the first rows of the tile."""
    nr = r1 - r0
    if fortran:  # column j of the chunk is x[j * n: (j + 1) * n]
        for j in range(d):
            col = x[j * n + r0: j * n + r1]
            if rows_major:
                for b in range(nr):
                    tile[b, j] = col[b]
            else:
                dst = tile[j]
                for b in range(nr):
                    dst[b] = col[b]
    else:  # row r of the chunk is x[r * d: (r + 1) * d]
        for b in range(nr):
            row = x[(r0 + b) * d: (r0 + b + 1) * d]
            if rows_major:
                dst = tile[b]
                for j in range(d):
                    dst[j] = row[j]
            else:
                for j in range(d):
                    tile[j, b] = row[j]


@_inline
def _tile_end(tile_start, stop, origin, batch_size, tile_rows):
    """End of the tile that starts at chunk row ``tile_start``, for batches starting at origin + k * batch_size.

    A tile holds a whole number of batches smaller than it (``tile_rows`` is then a multiple of the batch size);
    a larger batch is walked in tile-sized pieces and every batch starts a new tile, so a batch is always summed
    the same way, whatever rows precede it.
    """
    end = min(tile_start + tile_rows, stop)
    if batch_size > tile_rows:
        end = min(end, origin + ((tile_start - origin) // batch_size + 1) * batch_size)
    return end


@_piece
def _cols_margins(src, stride, offset, d, lo, hi, params, n_out, margins, pstride):
    """margins[k, b] = x_b . w_k + b_k for b in [lo, hi), where feature j of row b is src[j * stride + offset + b]:
    a column-major tile (stride = its capacity, offset 0) or a column-major chunk read in place (stride = n).

    ``w_k`` is params[k * pstride: k * pstride + d] and ``b_k`` params[n_out * pstride + k]: ``pstride`` is d for a
    dense model; a model with sparse slots has more coefficients per output than the dense block has columns."""
    n_coef = n_out * pstride
    # unsigned row indices: Numba adds no negative-index wraparound, so the loops over rows vectorise
    ulo = np.uint64(lo)
    uhi = np.uint64(hi)
    for k in range(n_out):
        intercept = params[n_coef + k]
        for b in range(ulo, uhi):
            margins[k, b] = intercept
        base = k * pstride
        for j in range(d):
            w = params[base + j]
            col = src[j * stride + offset: j * stride + offset + hi]
            for b in range(ulo, uhi):  # no skip when w == 0: a NaN in X must reach the margin
                margins[k, b] += col[b] * w


@_piece
def _cols_grad_add(src, stride, offset, d, lo, hi, n_out, dloss, grad, pstride):
    """grad += sum over b in [lo, hi) of dloss[k, b] * [x_b, 1], rows and ``pstride`` as in ``_cols_margins``."""
    n_coef = n_out * pstride
    ulo = np.uint64(lo)
    uhi = np.uint64(hi)
    for k in range(n_out):
        base = k * pstride
        for j in range(d):
            col = src[j * stride + offset: j * stride + offset + hi]
            acc = 0.0
            for b in range(ulo, uhi):
                acc += col[b] * dloss[k, b]
            grad[base + j] += acc
        acc = 0.0
        for b in range(ulo, uhi):
            acc += dloss[k, b]
        grad[n_coef + k] += acc


@_inline
def _row_tile_margins(tile, lo, hi, params, n_out, margins):
    """margins[k, b] = x_b . w_k + b_k for the rows b in [lo, hi) of a row-major tile."""
    d = tile.shape[1]
    n_coef = n_out * d
    for b in range(lo, hi):
        for k in range(n_out):
            base = k * d
            acc = 0.0
            for j in range(d):
                acc += tile[b, j] * params[base + j]
            margins[k, b] = acc + params[n_coef + k]


@_inline
def _row_tile_grad_add(tile, lo, hi, n_out, dloss, grad):
    """grad += sum over the rows b in [lo, hi) of a row-major tile of dloss[k, b] * [x_b, 1]."""
    d = tile.shape[1]
    n_coef = n_out * d
    for b in range(lo, hi):
        for k in range(n_out):
            g = dloss[k, b]
            base = k * d
            for j in range(d):
                grad[base + j] += g * tile[b, j]
            grad[n_coef + k] += g


@_piece
def _binary_log_loss_rows(margins, lo, hi, row0, y, sample_weight, dloss):
    """``_row_loss_dloss`` of binary log loss for the rows [lo, hi), summed; exp and log1p from ``vecmath``, so
    the loop vectorises (with ``math``'s it made one libm call per row and function)."""
    weighted = sample_weight.shape[0] > 0
    total = 0.0
    ulo = np.uint64(lo)
    uhi = np.uint64(hi)
    urow0 = np.uint64(row0)
    for b in range(ulo, uhi):
        m = margins[0, b]
        label = y[urow0 + b]
        weight = sample_weight[urow0 + b] if weighted else 1.0
        e = exp_nonpositive(-abs(m))
        dloss[0, b] = weight * ((e if m < 0.0 else 1.0) / (1.0 + e) - label)
        total += weight * ((m if m > 0.0 else 0.0) + log1p_unit(e) - label * m)
    return total


@_inline
def _rows_loss_grad(src, stride, offset, d, tile, rows_major, lo, hi, row0, y, sample_weight, params, n_out,
                    loss_kind, eps, margins, dloss, grad):
    """Weighted loss sum of the rows [lo, hi) of a block (chunk rows row0 + lo ...); adds their summed weighted
    gradient into ``grad`` unless it is empty. The block is the row-major ``tile``, or else the columns
    ``(src, stride, offset)`` of ``_cols_margins``.

    The one pass over rows that every loop shares: margins, per-row loss and dloss, gradient. NaN and inf
    propagate into the result; callers check it once.
    """
    if rows_major:
        _row_tile_margins(tile, lo, hi, params, n_out, margins)
    else:
        _cols_margins(src, stride, offset, d, lo, hi, params, n_out, margins, d)
    total = _rows_loss_dloss(margins, lo, hi, row0, y, sample_weight, n_out, loss_kind, eps, dloss, not rows_major)
    if grad.shape[0] > 0:
        if rows_major:
            _row_tile_grad_add(tile, lo, hi, n_out, dloss, grad)
        else:
            _cols_grad_add(src, stride, offset, d, lo, hi, n_out, dloss, grad, d)
    return total


@_inline
def _rows_loss_dloss(margins, lo, hi, row0, y, sample_weight, n_out, loss_kind, eps, dloss, vectorised):
    """Weighted loss sum of the rows [lo, hi) of a block whose margins are computed (chunk rows row0 + lo ...);
    writes their weighted margin derivatives into ``dloss``. ``vectorised``: binary log loss by the vectorising
    loop (batches on a row-major tile are SGD-sized, where libm is quicker per row)."""
    if loss_kind == LOSS_LOG and n_out == 1 and vectorised:
        return _binary_log_loss_rows(margins, lo, hi, row0, y, sample_weight, dloss)
    weighted = sample_weight.shape[0] > 0
    total = 0.0
    for b in range(lo, hi):
        r = row0 + b
        weight = sample_weight[r] if weighted else 1.0
        total += _row_loss_dloss(margins, b, n_out, loss_kind, y[r], weight, eps, dloss)
    return total


# ---- penalty, clipping, optimizer, L1 proximal step -------------------------------------------------------------
@_inline
def _add_l2(params, grad, n_coef, hyper):
    """grad += alpha * (1 - l1_ratio) * coef (intercepts are not penalised)."""
    l2 = hyper[H_ALPHA] * (1.0 - hyper[H_L1_RATIO])
    if l2 != 0.0:
        for i in range(n_coef):
            grad[i] += l2 * params[i]


@_inline
def _clip_by_global_norm(grad, hyper):
    """Scale grad down to the global L2 norm hyper[H_CLIP_NORM] if it is longer (0 = no clipping)."""
    clip = hyper[H_CLIP_NORM]
    if clip > 0.0:
        norm = 0.0
        for i in range(grad.shape[0]):
            norm += grad[i] * grad[i]
        norm = math.sqrt(norm)
        if norm > clip:
            scale = clip / norm
            for i in range(grad.shape[0]):
                grad[i] *= scale


@_inline
def _l1_prox(params, n_coef, lr, hyper, opt_state):
    """The L1 part of the penalty, after the optimizer step; coefficients it crosses over zero become exactly 0.

    With no penalty row in the state (``hyper[H_L1_ROW] == 0``): soft-thresholding by ``lr * alpha * l1_ratio``,
    the proximal step of the L1 norm (ISTA when the gradient is exact). With one, the cumulative penalty of
    Tsuruoka, Tsujii and Ananiadou (2009), as scikit-learn's SGD applies it: ``u`` is the penalty every
    coefficient could have received so far and ``q[i]`` what coefficient i did receive, so a coefficient that
    noise pushes off zero is pulled back by what it escaped. Row ``hyper[H_L1_ROW] - 1`` of the state holds ``q``
    for the coefficients and ``u`` in the first intercept's slot (intercepts are not penalised).
    """
    threshold = lr * hyper[H_ALPHA] * hyper[H_L1_RATIO]
    if not threshold > 0.0:
        return
    row = int(hyper[H_L1_ROW]) - 1
    if row < 0:
        for i in range(n_coef):
            w = params[i]
            if w > threshold:
                params[i] = w - threshold
            elif w < -threshold:
                params[i] = w + threshold
            else:
                params[i] = 0.0
        return
    applied = opt_state[row]
    u = applied[n_coef] + threshold
    applied[n_coef] = u
    for i in range(n_coef):
        w = params[i]
        if w > 0.0:
            params[i] = max(0.0, w - (u + applied[i]))
        elif w < 0.0:
            params[i] = min(0.0, w + (u - applied[i]))
        applied[i] += params[i] - w


@_inline
def _all_finite(values, n):
    """Whether values[:n] are all finite: x * 0 is NaN exactly for NaN and inf, and the loop vectorises."""
    acc = 0.0
    for i in range(n):
        acc += values[i] * 0.0
    return acc == 0.0


@_inline
def _sgd_step_is_finite(params, grad, lr):
    """Whether params - lr * grad is finite everywhere, computed without writing anything."""
    acc = lr * 0.0
    for i in range(params.shape[0]):
        acc += (params[i] - lr * grad[i]) * 0.0
    return acc == 0.0


@_piece
def _copy_params_and_state(params, opt_state, params_to, state_to):
    for i in range(params.shape[0]):
        params_to[i] = params[i]
    for s in range(opt_state.shape[0]):
        for i in range(opt_state.shape[1]):
            state_to[s, i] = opt_state[s, i]


@_inline
def _apply_update(params, grad, opt_state, hyper, lr, opt_kind, step, n_coef, backup, state_backup, rollback=True):
    """L2 penalty, clipping, optimizer step and L1 prox on a mean data gradient; False, with nothing changed, if
    the result would not be finite.

    Plain SGD is checked before it writes (its result is known from grad and lr), so the per-row path copies
    nothing; a rule with state is applied to the live arrays and rolled back from the backups if needed (unless
    ``rollback`` is False: the caller then works on copies it discards on failure).
    """
    if opt_kind != OPT_FTRL:  # FTRL applies its penalty itself
        _add_l2(params, grad, n_coef, hyper)
    _clip_by_global_norm(grad, hyper)
    if opt_kind == OPT_SGD:
        if not _sgd_step_is_finite(params, grad, lr):
            return False
        optimizer_step(opt_kind, params, grad, opt_state, step, lr, hyper, n_coef)
        _l1_prox(params, n_coef, lr, hyper, opt_state)  # shrinking finite values keeps them finite
        return True
    if not _all_finite(grad, grad.shape[0]):
        return False
    if rollback:
        _copy_params_and_state(params, opt_state, backup, state_backup)
    optimizer_step(opt_kind, params, grad, opt_state, step, lr, hyper, n_coef)
    if opt_kind != OPT_FTRL:
        _l1_prox(params, n_coef, lr, hyper, opt_state)
    after_step(opt_kind, params, opt_state, step, hyper)
    ok = _all_finite(params, params.shape[0])
    for s in range(opt_state.shape[0]):
        ok = ok and _all_finite(opt_state[s], opt_state.shape[1])
    if not ok and rollback:
        _copy_params_and_state(backup, state_backup, params, opt_state)
    return ok


# ---- compiled loops over a chunk: one small specialisation per use ----------------------------------------------
# Each loop is built by a factory for one combination of loss, optimizer, layout and batch mode, given to it as
# closure constants. Numba inlines the ``_inline`` pieces (at its IR level) and then prunes every branch whose
# condition is such a constant, so a specialisation compiles only its own loss, rule and layout (compiling every
# branch of one generic loop took a minute and 2 GB, for every run on an empty cache). The X dtype (float32 or
# float64) is a type, so each dtype a run uses is its own signature. Numba's disk cache keys a closure on the
# bytes of its constants, so each specialisation is cached on its own; factories are memoised, so a process
# builds each once.
#
# The loops take a few structured arguments (tuples): the chunk (x, n, d, y, sample_weight), the model (params,
# optimizer state, hyper, n_out), the schedule (rates, first step, batch size) and the workspace.
LOSS_NAMES = ("linear", "logistic", "softmax", "svm", "squared-hinge", "huber", "poisson")  # by loss code
OPT_NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "asgd", "ftrl")  # by optimizer code

_specialisations = {}  # key -> dispatcher
_labels = {}  # id(dispatcher) -> what its compile message names
_announced = set()  # labels already announced in this process


class _CompileNotice(_event.Listener):
    """One line on stderr when a specialisation is compiled (a cache miss), never when it loads from the cache."""

    def on_start(self, event):
        label = _labels.get(id(event.data["dispatcher"]))
        if label is not None and label not in _announced:
            _announced.add(label)
            sys.stderr.write(f"compiling kernels for {label} (first run only)\n")
            sys.stderr.flush()

    def on_end(self, event):
        pass


_event.register("numba:compile", _CompileNotice())


def _specialised(key, label, build):
    """The memoised specialisation ``build()`` for ``key``; ``label`` names it in the compile message (None: the
    small helpers, a second or so each, compile silently: the bad-row search runs just before an error message,
    which must stay the one line on stderr)."""
    dispatcher = _specialisations.get(key)
    if dispatcher is None:
        dispatcher = _specialisations[key] = build()
        if label is not None:
            _labels[id(dispatcher)] = label
    return dispatcher


def _name(names, code):
    return names[code] if 0 <= code < len(names) else str(code)


def _train_loop_for(loss_kind, opt_kind, fortran, rows_major):
    """The loop of ``train_chunk`` for one loss, optimizer, chunk order and tile kind (``rows_major``: batches of
    fewer than ``_ROW_MAJOR_BELOW`` rows, on a row-major tile)."""
    key = ("train", int(loss_kind), int(opt_kind), bool(fortran), bool(rows_major))
    label = f"{_name(LOSS_NAMES, key[1])}/{_name(OPT_NAMES, key[2])}"
    return _specialised(key, label, lambda: _make_train_loop(*key[1:]))


def _make_train_loop(LOSS, OPT, FORTRAN, ROWS_MAJOR):  # noqa: N803 - compile-time constants
    IN_PLACE = FORTRAN and not ROWS_MAJOR  # noqa: N806 - column-major mini-batches are read from X, not staged

    @_jit
    def train_loop(chunk, model, schedule, work):
        """Returns (progressive loss sum, rows done, start row of a failed batch or -1)."""
        x, n, d, y, sample_weight = chunk
        params, opt_state, hyper, n_out = model
        lrs, step0, batch_size = schedule
        tile_rows, tile, margins, dloss, grad, backup, state_backup = work
        n_coef = n_out * d
        n_par = params.shape[0]
        eps = hyper[H_HUBER_EPS]
        total = 0.0
        batch_loss = 0.0
        batch = 0
        zero = np.int64(0)  # not a literal 0: a callee would be compiled once more for Literal[int](0)
        batch_start = zero
        batch_stop = min(batch_size, n)
        tile_start = zero
        while tile_start < n:
            tile_stop = _tile_end(tile_start, n, 0, batch_size, tile_rows)
            if not IN_PLACE:
                _stage_from(x, FORTRAN, n, d, tile_start, tile_stop, tile, ROWS_MAJOR)
            r = tile_start
            while r < tile_stop:  # the pieces of batches in this tile
                if r == batch_start:
                    for i in range(n_par):
                        grad[i] = 0.0
                    batch_loss = 0.0
                e = min(batch_stop, tile_stop)
                lo = r - tile_start
                hi = e - tile_start
                if IN_PLACE:
                    batch_loss += _rows_loss_grad(x, n, tile_start, d, tile, False, lo, hi, tile_start, y,
                                                  sample_weight, params, n_out, LOSS, eps, margins, dloss, grad)
                elif ROWS_MAJOR:  # the columns are not read: tile[0] only fills the slot
                    batch_loss += _rows_loss_grad(tile[0], zero, zero, d, tile, True, lo, hi, tile_start, y,
                                                  sample_weight, params, n_out, LOSS, eps, margins, dloss, grad)
                else:
                    batch_loss += _rows_loss_grad(tile.reshape(tile.size), tile.shape[1], zero, d, tile, False, lo,
                                                  hi, tile_start, y, sample_weight, params, n_out, LOSS, eps, margins,
                                                  dloss, grad)
                if e == batch_stop:  # the batch is complete: step
                    if not math.isfinite(batch_loss):
                        return total, batch_start, batch_start
                    inv = 1.0 / (batch_stop - batch_start)
                    for i in range(n_par):
                        grad[i] *= inv
                    if not _apply_update(params, grad, opt_state, hyper, lrs[batch], OPT, step0 + batch, n_coef,
                                         backup, state_backup):
                        return total, batch_start, batch_start
                    total += batch_loss
                    batch += 1
                    batch_start = batch_stop
                    batch_stop = min(batch_start + batch_size, n)
                r = e
            tile_start = tile_stop
        return total, n, -1

    return train_loop


def _sum_loop_for(loss_kind, fortran, rows_major):
    """The loop of ``accumulate_chunk``, ``batch_loss_grad`` and ``chunk_loss`` for one loss and layout."""
    key = ("sum", int(loss_kind), bool(fortran), bool(rows_major))
    return _specialised(key, f"{_name(LOSS_NAMES, key[1])} loss and gradient", lambda: _make_sum_loop(*key[1:]))


def _make_sum_loop(LOSS, FORTRAN, ROWS_MAJOR):  # noqa: N803
    IN_PLACE = FORTRAN and not ROWS_MAJOR  # noqa: N806

    @_jit
    def sum_loop(chunk, start, stop, params, n_out, eps, batch_size, work):
        """Weighted loss sum of rows [start, stop), adding their summed gradient into ``grad`` unless it is empty;
        tiled as the train loop tiles batches of ``batch_size`` rows starting at ``start``."""
        x, n, d, y, sample_weight = chunk
        tile_rows, tile, margins, dloss, grad = work
        zero = np.int64(0)  # not a literal 0: a callee would be compiled once more for Literal[int](0)
        total = 0.0
        tile_start = start
        while tile_start < stop:
            tile_stop = _tile_end(tile_start, stop, start, batch_size, tile_rows)
            if not IN_PLACE:
                _stage_from(x, FORTRAN, n, d, tile_start, tile_stop, tile, ROWS_MAJOR)
            hi = tile_stop - tile_start
            if IN_PLACE:
                total += _rows_loss_grad(x, n, tile_start, d, tile, False, zero, hi, tile_start, y, sample_weight,
                                         params, n_out, LOSS, eps, margins, dloss, grad)
            elif ROWS_MAJOR:  # the columns are not read: tile[0] only fills the slot
                total += _rows_loss_grad(tile[0], zero, zero, d, tile, True, zero, hi, tile_start, y, sample_weight,
                                         params, n_out, LOSS, eps, margins, dloss, grad)
            else:
                total += _rows_loss_grad(tile.reshape(tile.size), tile.shape[1], zero, d, tile, False, zero, hi,
                                         tile_start, y, sample_weight, params, n_out, LOSS, eps, margins, dloss, grad)
            tile_start = tile_stop
        return total

    return sum_loop


def _first_bad_row_loop_for(loss_kind, fortran):
    key = ("bad_row", int(loss_kind), bool(fortran))
    return _specialised(key, None, lambda: _make_first_bad_row_loop(*key[1:]))


def _make_first_bad_row_loop(LOSS, FORTRAN):  # noqa: N803
    @_jit
    def first_bad_row_loop(chunk, start, stop, params, n_out, eps, work):
        """The first row of [start, stop) whose features, target, weight, margins, loss or dloss are not finite,
        else ``start``. Runs only after a failure, so it recomputes rather than keep per-row results on the hot
        path."""
        x, n, d, y, sample_weight = chunk
        tile_rows, tile, margins, dloss = work
        for tile_start in range(start, stop, tile_rows):
            tile_stop = min(tile_start + tile_rows, stop)
            _stage_from(x, FORTRAN, n, d, tile_start, tile_stop, tile, True)
            _row_tile_margins(tile, 0, tile_stop - tile_start, params, n_out, margins)
            weighted = sample_weight.shape[0] > 0
            for b in range(tile_stop - tile_start):
                r = tile_start + b
                weight = sample_weight[r] if weighted else 1.0
                probe = _row_loss_dloss(margins, b, n_out, LOSS, y[r], weight, eps, dloss) * 0.0
                probe += (y[r] + weight) * 0.0
                for j in range(d):
                    probe += tile[b, j] * 0.0
                for k in range(n_out):
                    probe += (margins[k, b] + dloss[k, b]) * 0.0
                if probe != 0.0:
                    return r
        return start

    return first_bad_row_loop


def _predict_loop_for(fortran):
    key = ("predict", bool(fortran))
    return _specialised(key, None, lambda: _make_predict_loop(*key[1:]))


def _make_predict_loop(FORTRAN):  # noqa: N803
    @_jit
    def predict_loop(x, n, d, params, n_out, tile_rows, tile, margins, out):
        """out[r, k] = margin k of row r, for every row of the chunk."""
        for tile_start in range(0, n, tile_rows):
            tile_stop = min(tile_start + tile_rows, n)
            if not FORTRAN:
                _stage_from(x, FORTRAN, n, d, tile_start, tile_stop, tile, False)
                _cols_margins(tile.reshape(tile.size), tile.shape[1], 0, d, 0, tile_stop - tile_start, params,
                              n_out, margins, d)
            else:
                _cols_margins(x, n, tile_start, d, 0, tile_stop - tile_start, params, n_out, margins, d)
            for b in range(tile_stop - tile_start):
                for k in range(n_out):
                    out[tile_start + b, k] = margins[k, b]

    return predict_loop


def _full_batch_update_for(opt_kind):
    key = ("full_batch_step", int(opt_kind))
    return _specialised(key, None, lambda: _make_full_batch_update(key[1]))


def _make_full_batch_update(OPT):  # noqa: N803
    @_jit
    def full_batch_update(params, grad_sum, n_rows_total, opt_state, hyper, lr, step, n_coef, work):
        """The step of ``full_batch_step``: mean gradient, then ``_apply_update``."""
        grad, backup, state_backup = work
        inv = 1.0 / n_rows_total
        for i in range(params.shape[0]):
            grad[i] = grad_sum[i] * inv
        return _apply_update(params, grad, opt_state, hyper, lr, OPT, step, n_coef, backup, state_backup)

    return full_batch_update


# ---- public functions -------------------------------------------------------------------------------------------
def _chunk(X):
    """(x, fortran, n, d): the chunk as the flat vector the compiled loops read, without a copy for any
    contiguous float32 or float64 array (anything else is converted once)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array, got shape {X.shape}")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if not (X.flags.f_contiguous or X.flags.c_contiguous):
        X = np.asfortranarray(X)
    fortran = bool(X.flags.f_contiguous)
    flat = X.ravel(order="F" if fortran else "C")  # a view
    return flat, fortran, X.shape[0], X.shape[1]


def _vector(values, name, length=None):
    """``values`` as a contiguous float64 vector (copied only if needed), checking its length."""
    out = np.ascontiguousarray(values, dtype=np.float64)
    if out.ndim != 1 or (length is not None and out.shape[0] != length):
        raise ValueError(f"{name} must be a 1-D array of length {length}, got shape {out.shape}")
    return out


def _targets(y, sample_weight, n):
    y = _vector(y, "y", n)
    sample_weight = _vector(sample_weight, "sample_weight")
    if sample_weight.shape[0] not in (0, n):
        raise ValueError(f"sample_weight must have length 0 (all ones) or {n}, got {sample_weight.shape[0]}")
    return y, sample_weight


def _check_params(params, n_features, n_out):
    expected = n_params(n_features, n_out)
    if not (isinstance(params, np.ndarray) and params.dtype == np.float64 and params.ndim == 1
            and params.flags.c_contiguous and params.shape[0] == expected):
        raise ValueError(f"params must be a contiguous float64 vector of length n_out * (n_features + 1) = {expected} "
                         f"(updated in place), got {getattr(params, 'dtype', type(params))} "
                         f"{getattr(params, 'shape', '')}")


def _check_in_place(array, name, shape):
    if not (isinstance(array, np.ndarray) and array.dtype == np.float64 and array.flags.c_contiguous
            and array.shape == shape):
        raise ValueError(f"{name} must be a contiguous float64 array of shape {shape} (updated in place), got "
                         f"{getattr(array, 'dtype', type(array))} {getattr(array, 'shape', '')}")


def _hyper(hyper, opt_state=None):
    """``hyper`` as a float64 vector; with ``opt_state``, checks that its L1 row exists (compiled code does not)."""
    hyper = _vector(hyper, "hyper", N_HYPER)
    for slot, name in ((H_L1_ROW, "H_L1_ROW"), (H_LAZY_ROW, "H_LAZY_ROW")):
        if opt_state is not None and not (hyper[slot] == int(hyper[slot]) and 0 <= hyper[slot] <= opt_state.shape[0]):
            raise ValueError(f"hyper[{name}] = {hyper[slot]} names no row of an optimizer state with "
                             f"{opt_state.shape[0]} rows")
    return hyper


def _workspace(n_features, n_out, batch_size):
    """Scratch for batches of ``batch_size`` rows: (rows_major, rows per tile, tile, margins, dloss)."""
    rows_major = batch_size < _ROW_MAJOR_BELOW
    capacity = max(16, (_ROW_TILE_VALUES if rows_major else _TILE_VALUES) // max(n_features, 1))
    tile = np.empty((capacity, n_features) if rows_major else (n_features, capacity))
    tile_rows = (capacity // batch_size) * batch_size if batch_size < capacity else capacity
    return rows_major, tile_rows, tile, np.empty((n_out, capacity)), np.empty((n_out, capacity))


def _first_bad_row(chunk, y, sample_weight, start, stop, params, n_out, loss_kind, eps):
    x, fortran, n, d = chunk
    _, tile_rows, tile, margins, dloss = _workspace(d, n_out, 1)
    loop = _first_bad_row_loop_for(loss_kind, fortran)
    return loop((x, n, d, y, sample_weight), start, stop, params, int(n_out), float(eps),
                (tile_rows, tile, margins, dloss))


def _sum(chunk, y, sample_weight, start, stop, params, n_out, loss_kind, eps, batch_size, grad):
    """The sum loop over rows [start, stop) of the chunk, tiled for batches of ``batch_size`` rows."""
    x, fortran, n, d = chunk
    rows_major, tile_rows, tile, margins, dloss = _workspace(d, n_out, batch_size)
    loop = _sum_loop_for(loss_kind, fortran, rows_major)
    return loop((x, n, d, y, sample_weight), start, stop, params, int(n_out), float(eps), batch_size,
                (tile_rows, tile, margins, dloss, grad))


def batch_loss_grad(X, y, sample_weight, start, stop, params, n_out, loss_kind, hyper, grad, sparse=None) -> float:
    """Overwrite ``grad`` with the summed weighted data-loss gradient of rows [start, stop); return the loss sum.

    No penalty and no division by the number of rows; computed exactly as ``train_chunk`` computes a batch of
    ``stop - start`` rows. ``sparse``: the chunk's sparse block (a ``streamgd.data.sparse_block.SparseBlock``), if any.
    """
    chunk = _chunk(X)
    n, d = chunk[2], chunk[3]
    y, sample_weight = _targets(y, sample_weight, n)
    _check_params(params, _width(d, sparse), n_out)
    _check_in_place(grad, "grad", params.shape)
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= n:
        raise ValueError(f"rows [{start}, {stop}) are not within the chunk's {n} rows")
    grad[:] = 0.0
    eps = _hyper(hyper)[H_HUBER_EPS]
    if sparse is not None:
        return sparse_kernels().loss_sum(X, sparse, y, sample_weight, start, stop, params, n_out, loss_kind, eps, grad)
    return _sum(chunk, y, sample_weight, start, stop, params, n_out, loss_kind, eps, max(stop - start, 1), grad)


def _width(d, sparse):
    """The model's number of features: the dense block's columns, plus the sparse block's slots."""
    return d if sparse is None else d + int(sparse.n_slots)


def sparse_kernels():
    """The loops for chunks with a sparse block (``streamgd.kernels.sparse``, which builds on this module)."""
    from . import sparse as module
    return module


def train_chunk(X, y, sample_weight, params, opt_state, hyper, lrs, batch_size, n_out, loss_kind, opt_kind,
                step0, sparse=None) -> tuple[float, int, int]:
    """Train on every consecutive mini-batch of a chunk; return (progressive loss sum, rows done, status).

    Batch ``b`` covers rows [b * batch_size, min((b + 1) * batch_size, n)); its mean gradient, plus the L2
    penalty, clipped, is stepped with rate ``lrs[b]`` at step ``step0 + b``, then the L1 prox. Its loss enters
    the sum as evaluated before its update. A non-finite batch is not applied and ends the call: rows done = its
    start, status ``-(row) - 1`` (see the module docstring). ``sparse``: the chunk's sparse block, if any (its
    slots are features ``d ..`` of the model; see ``streamgd.kernels.sparse`` for the lazy updates).
    """
    chunk = _chunk(X)
    x, fortran, n, d = chunk
    y, sample_weight = _targets(y, sample_weight, n)
    _check_params(params, _width(d, sparse), n_out)
    _check_in_place(opt_state, "opt_state", (opt_state.shape[0] if opt_state.ndim == 2 else -1, params.shape[0]))
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    bs = max(1, min(batch_size, n))
    lrs = _vector(lrs, "lrs")
    if lrs.shape[0] < -(-n // bs):
        raise ValueError(f"lrs needs one rate per mini-batch: {-(-n // bs)}, got {lrs.shape[0]}")
    hyper = _hyper(hyper, opt_state)
    if sparse is not None:
        return sparse_kernels().train_chunk(X, sparse, y, sample_weight, params, opt_state, hyper, lrs, bs, n_out,
                                            loss_kind, opt_kind, step0)
    rows_major, tile_rows, tile, margins, dloss = _workspace(d, n_out, bs)
    n_par = params.shape[0]
    stateful = opt_kind != OPT_SGD  # plain SGD is checked before it writes, so it needs no backup
    backup = np.empty(n_par if stateful else 0)
    state_backup = np.empty((opt_state.shape[0] if stateful else 0, n_par))
    loop = _train_loop_for(loss_kind, opt_kind, fortran, rows_major)
    total, done, failed = loop((x, n, d, y, sample_weight), (params, opt_state, hyper, int(n_out)),
                               (lrs, int(step0), bs),
                               (tile_rows, tile, margins, dloss, np.empty(n_par), backup, state_backup))
    if failed < 0:
        return total, done, 0
    bad = _first_bad_row(chunk, y, sample_weight, failed, min(failed + bs, n), params, int(n_out), int(loss_kind),
                         hyper[H_HUBER_EPS])
    return total, done, -bad - 1


def accumulate_chunk(X, y, sample_weight, params, n_out, loss_kind, hyper, grad_sum, sparse=None) -> tuple[float, int]:
    """Add the chunk's summed weighted data-loss gradient into ``grad_sum``; return (loss sum, status).

    The full-batch half of gradient descent: call it on every chunk of an epoch, then ``full_batch_step``. On a
    bad chunk ``grad_sum`` is left untouched and status names the first bad row as ``-(row) - 1``.
    """
    chunk = _chunk(X)
    n, d = chunk[2], chunk[3]
    y, sample_weight = _targets(y, sample_weight, n)
    _check_params(params, _width(d, sparse), n_out)
    _check_in_place(grad_sum, "grad_sum", params.shape)
    eps = float(_hyper(hyper)[H_HUBER_EPS])
    local = np.zeros(params.shape[0])
    if sparse is not None:
        total = sparse_kernels().loss_sum(X, sparse, y, sample_weight, 0, n, params, n_out, loss_kind, eps, local)
    else:
        total = _sum(chunk, y, sample_weight, 0, n, params, n_out, loss_kind, eps, max(n, 1), local)
    if not (math.isfinite(total) and np.isfinite(local).all()):
        if sparse is not None:
            bad = sparse_kernels().first_bad_row(X, sparse, y, sample_weight, 0, n, params, n_out, loss_kind, eps)
        else:
            bad = _first_bad_row(chunk, y, sample_weight, 0, n, params, int(n_out), int(loss_kind), eps)
        return total, -bad - 1
    grad_sum += local
    return total, 0


def full_batch_step(params, grad_sum, n_rows_total, opt_state, hyper, lr, opt_kind, step, n_coef) -> int:
    """One gradient-descent step on the mean of a streamed gradient sum; status 0, or -1 (nothing changed).

    ``n_coef`` = n_out * n_features: the entries after it are the intercepts, which are never penalised.
    """
    n_par = params.shape[0]
    _check_in_place(params, "params", (n_par,))
    _check_in_place(opt_state, "opt_state", (opt_state.shape[0] if opt_state.ndim == 2 else -1, n_par))
    grad_sum = _vector(grad_sum, "grad_sum", n_par)
    if not 0 <= n_coef <= n_par:
        raise ValueError(f"n_coef must be within [0, {n_par}], got {n_coef}")
    update = _full_batch_update_for(opt_kind)
    ok = update(params, grad_sum, float(n_rows_total), opt_state, _hyper(hyper, opt_state), float(lr), int(step),
                int(n_coef), (np.empty(n_par), np.empty(n_par), np.empty_like(opt_state)))
    return 0 if ok else -1


def predict_margins(X, params, n_out, out, sparse=None) -> None:
    """Write the margins of every row, shape (n_rows, n_out), into the float64 array ``out``."""
    x, fortran, n, d = _chunk(X)
    _check_params(params, _width(d, sparse), n_out)
    _check_in_place(out, "out", (n, n_out))
    if sparse is not None:
        sparse_kernels().predict_margins(X, sparse, params, n_out, out)
        return
    _, tile_rows, tile, margins, _ = _workspace(d, n_out, max(n, _ROW_MAJOR_BELOW))
    _predict_loop_for(fortran)(x, n, d, params, int(n_out), tile_rows, tile, margins, out)


def chunk_loss(X, y, sample_weight, params, n_out, loss_kind, hyper, sparse=None) -> float:
    """Sum of the weighted data losses over the chunk (no penalty), for evaluation."""
    chunk = _chunk(X)
    n, d = chunk[2], chunk[3]
    y, sample_weight = _targets(y, sample_weight, n)
    _check_params(params, _width(d, sparse), n_out)
    if sparse is not None:
        return sparse_kernels().loss_sum(X, sparse, y, sample_weight, 0, n, params, n_out, loss_kind,
                                         _hyper(hyper)[H_HUBER_EPS], np.empty(0))
    return _sum(chunk, y, sample_weight, 0, n, params, n_out, loss_kind, _hyper(hyper)[H_HUBER_EPS], max(n, 1),
                np.empty(0))
