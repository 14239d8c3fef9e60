"""Compiled pieces shared by the dense and sparse chunk loops: the losses of a row, tiles of rows, the column
passes and the sparse-entry passes (margins, gradient), the update of one mini-batch (penalty, clipping, optimizer
rule, L1 step) and its finiteness checks.

Each margin and gradient pass exists once. A loop describes what it reads with named arguments
(``streamgd.kernels.arguments``): a block's dense columns (``Columns``: a chunk read in place or a staged tile),
its sparse entries' rows and column map (``Tile``: the slots themselves, or a batch's compact numbering) and the
layout of the vector the pass reads or adds into (``LinearVector``: the full parameters or a batch's compact
copy). Only the row-major tile of SGD-sized batches has passes of its own (``row_tile_margins``,
``row_tile_grad_add``): a row's dot product, not a column sweep.

Parameter layout, shared by optimizers, models and checkpoints: ``params`` is a flat float64 vector of length
``n_out * (d + 1)``: the coefficients row-major ``(n_out, d)`` (``coef[k, j] = params[k * d + j]``), then the
``n_out`` intercepts. Gradients use the same layout.

Every value is converted to float64 before use and every sum is accumulated in float64 in the same order, so
both layouts and both dtypes of a chunk (on the same values) give bitwise identical results.

Objective: mean weighted data loss + ``alpha * ((1 - l1_ratio) / 2 * ||coef||^2 + l1_ratio * ||coef||_1)``; the
intercepts are never penalised. The L2 part enters the gradient; the L1 part is applied after each optimizer step
as a proximal soft-threshold, or as Tsuruoka et al.'s cumulative penalty (see ``l1_prox``), so coefficients
become exactly zero. A batch whose update would not be finite is never applied.

Pieces that run once per batch or once per row (the per-row loss, the row-major tile's passes, the update's
checks and penalties) are ``inlined`` into the Numba IR of each specialised loop (``inline="always"``): as calls,
they cost SGD and small batches time per chunk (``scripts/bench_kernel.py``; benchmarks/README.md, "Kernels").
A loop specialised on constants prunes its dead call sites first, so each piece is inlined only where the loop's
loss, rule and layout use it, and its branches on those constants are pruned after inlining. The pieces that
work on whole columns (softmax, the column and entry passes, the vectorised log loss, the state copy) stay ``compiled``
functions of their own, with the loops' flags; LLVM inlines them where it pays.
"""

from __future__ import annotations

import math

import numpy as np

from .codes import (
    H_ALPHA,
    H_CLIP_NORM,
    H_L1_RATIO,
    H_L1_ROW,
    LOSS_HINGE,
    LOSS_HUBER,
    LOSS_LOG,
    LOSS_POISSON,
    LOSS_SOFTMAX,
    LOSS_SQUARED,
    LOSS_SQUARED_HINGE,
    OPT_FTRL,
    OPT_SGD,
)
from .jit import compiled, inlined
from .update_rules import after_step, optimizer_step
from .vecmath import exp_nonpositive, log1p_unit


# ---- scalar losses ----------------------------------------------------------------------------------------------
@inlined
def _log1pexp(m):
    """log(1 + exp(m)) without overflow."""
    return max(m, 0.0) + math.log1p(math.exp(-abs(m)))


@inlined
def _sigmoid(m):
    """1 / (1 + exp(-m)) without overflow (and without a branch on the sign of m)."""
    e = math.exp(-abs(m))
    return (e if m < 0.0 else 1.0) / (1.0 + e)


@inlined
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


@inlined
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


@compiled
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


@inlined
def row_loss_dloss(margins, b, n_out, loss_kind, label, weight, eps, dloss):
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
TILE_VALUES = 8192  # float64 values in a column-major tile (64 KiB): it stays in cache between the two passes
ROW_TILE_VALUES = 2048  # a row-major tile is filled by a transpose, which is fastest when it fits in L1
ROW_MAJOR_BELOW = 8  # batches of fewer rows are computed on a row-major tile


@inlined
def stage_from(chunk, fortran, r0, r1, tile, rows_major):
    """Copy rows [r0, r1) of ``chunk`` (ChunkArrays; its dense block the flat vector ``x``, column-major when
    ``fortran``) into the first rows of the tile (row-major when ``rows_major``)."""
    x, n, d = chunk.x, chunk.n, chunk.d
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


@inlined
def tile_end(tile_start, stop, origin, batch_size, tile_rows):
    """End of the tile that starts at chunk row ``tile_start``, for batches starting at origin + k * batch_size.

    A tile holds a whole number of batches smaller than it (``tile_rows`` is then a multiple of the batch size);
    a larger batch is walked in tile-sized pieces and every batch starts a new tile, so a batch is always summed
    the same way, whatever rows precede it.
    """
    end = min(tile_start + tile_rows, stop)
    if batch_size > tile_rows:
        end = min(end, origin + ((tile_start - origin) // batch_size + 1) * batch_size)
    return end


# ---- the passes over a block's columns (``Columns``) and sparse entries (``Tile``): each exists once, for the
# dense and the sparse loops, the full parameters and a batch's compact copy alike (``LinearVector``) -------------
@compiled
def cols_margins(cols, lo, hi, linear, margins):
    """margins[k, b] = x_b . w_k + b_k for the rows b in [lo, hi) of ``cols`` (Columns), ``w_k`` and ``b_k`` read
    from ``linear`` (LinearVector: its stride is d for a dense model; a model with sparse slots has more
    coefficients per output than the dense block has columns)."""
    src, stride, offset, d = cols.src, cols.stride, cols.offset, cols.d
    params, n_out, pstride = linear.values, linear.n_out, linear.stride
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


@compiled
def cols_grad_add(cols, lo, hi, dloss, grad):
    """grad += sum over the rows b in [lo, hi) of ``cols`` of dloss[k, b] * [x_b, 1], into ``grad``
    (LinearVector), rows as in ``cols_margins``."""
    src, stride, offset, d = cols.src, cols.stride, cols.offset, cols.d
    values, n_out, pstride = grad.values, grad.n_out, grad.stride
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
            values[base + j] += acc
        acc = 0.0
        for b in range(ulo, uhi):
            acc += dloss[k, b]
        values[n_coef + k] += acc


@compiled
def entries_margins_add(sparse, tile, first, linear, margins):
    """margins[k, b] += sum of value * w_k[first + column] over the sparse entries of chunk row ``tile.t0 + b``
    (``sparse``: SparseArrays; ``tile``: Tile, whose column map numbers the entries' slots; ``linear``:
    LinearVector, its slot coefficients from ``first``)."""
    indptr, values = sparse.indptr, sparse.values
    columns, e0 = tile.columns, tile.e0
    params, n_out, pstride = linear.values, linear.n_out, linear.stride
    for b in range(tile.hi):
        r = tile.t0 + b
        for e in range(indptr[r], indptr[r + 1]):
            v = values[e]
            column = first + columns[np.uint64(e - e0)]  # unsigned: no negative-index wraparound
            for k in range(n_out):
                margins[k, b] += v * params[k * pstride + column]


@compiled
def entries_grad_add(sparse, tile, first, dloss, grad):
    """grad[k * stride + first + column] += dloss[k, b] * value over the sparse entries of chunk row
    ``tile.t0 + b``, as ``entries_margins_add`` reads them."""
    indptr, values = sparse.indptr, sparse.values
    columns, e0 = tile.columns, tile.e0
    target, n_out, pstride = grad.values, grad.n_out, grad.stride
    for b in range(tile.hi):
        r = tile.t0 + b
        for e in range(indptr[r], indptr[r + 1]):
            v = values[e]
            column = first + columns[np.uint64(e - e0)]  # unsigned: no negative-index wraparound
            for k in range(n_out):
                target[k * pstride + column] += dloss[k, b] * v


@inlined
def row_tile_margins(tile, lo, hi, params, n_out, margins):
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


@inlined
def row_tile_grad_add(tile, lo, hi, n_out, dloss, grad):
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


@compiled
def _binary_log_loss_rows(margins, lo, hi, row0, y, sample_weight, dloss):
    """``row_loss_dloss`` of binary log loss for the rows [lo, hi), summed; exp and log1p from ``vecmath``, so
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


@inlined
def rows_loss_dloss(chunk, work, lo, hi, row0, n_out, loss_kind, eps, vectorised):
    """Weighted loss sum of the rows [lo, hi) of a block whose margins (``work.margins``) are computed (``chunk``
    (ChunkArrays) rows row0 + lo ...); writes their weighted margin derivatives into ``work.dloss``. ``vectorised``:
    binary log loss by the vectorising loop (batches on a row-major tile are SGD-sized, where libm is quicker per
    row). For a loop specialised on its loss; a loop given the loss at run time calls
    ``rows_loss_dloss_of_kind``."""
    if loss_kind == LOSS_LOG and n_out == 1 and vectorised:
        return _binary_log_loss_rows(work.margins, lo, hi, row0, chunk.y, chunk.sample_weight, work.dloss)
    return _rows_of_loss(chunk, work, lo, hi, row0, n_out, loss_kind, eps)


@inlined
def rows_loss_dloss_of_kind(chunk, work, lo, hi, row0, n_out, loss_kind, eps, vectorised):
    """``rows_loss_dloss`` for a loss given at run time: one row loop per loss, chosen once per block, so the row
    loop is the one a specialised loop runs (``scripts/bench_kernel.py --sum``; as one loop with the branch per
    row, or as a compiled function of its own, the sum ran slower). Only loops given the loss at run time call
    it: Numba inlines before it prunes dead branches, so in a specialised loop its seven loops would be copied
    and then dropped, which doubled a train loop's compile time."""
    if loss_kind == LOSS_LOG and n_out == 1 and vectorised:
        return _binary_log_loss_rows(work.margins, lo, hi, row0, chunk.y, chunk.sample_weight, work.dloss)
    if loss_kind == LOSS_SQUARED:
        return _rows_of_loss(chunk, work, lo, hi, row0, n_out, LOSS_SQUARED, eps)
    if loss_kind == LOSS_LOG:
        return _rows_of_loss(chunk, work, lo, hi, row0, n_out, LOSS_LOG, eps)
    if loss_kind == LOSS_SOFTMAX:
        return _rows_of_loss(chunk, work, lo, hi, row0, n_out, LOSS_SOFTMAX, eps)
    if loss_kind == LOSS_HINGE:
        return _rows_of_loss(chunk, work, lo, hi, row0, n_out, LOSS_HINGE, eps)
    if loss_kind == LOSS_SQUARED_HINGE:
        return _rows_of_loss(chunk, work, lo, hi, row0, n_out, LOSS_SQUARED_HINGE, eps)
    if loss_kind == LOSS_HUBER:
        return _rows_of_loss(chunk, work, lo, hi, row0, n_out, LOSS_HUBER, eps)
    return _rows_of_loss(chunk, work, lo, hi, row0, n_out, LOSS_POISSON, eps)


@inlined
def _rows_of_loss(chunk, work, lo, hi, row0, n_out, loss_kind, eps):
    """The rows of a block, row by row."""
    y, sample_weight, margins, dloss = chunk.y, chunk.sample_weight, work.margins, work.dloss
    weighted = sample_weight.shape[0] > 0
    total = 0.0
    for b in range(lo, hi):
        r = row0 + b
        weight = sample_weight[r] if weighted else 1.0
        total += row_loss_dloss(margins, b, n_out, loss_kind, y[r], weight, eps, dloss)
    return total


# ---- penalty, clipping, optimizer, L1 proximal step -------------------------------------------------------------
@inlined
def _add_l2(params, grad, n_coef, hyper):
    """grad += alpha * (1 - l1_ratio) * coef (intercepts are not penalised)."""
    l2 = hyper[H_ALPHA] * (1.0 - hyper[H_L1_RATIO])
    if l2 != 0.0:
        for i in range(n_coef):
            grad[i] += l2 * params[i]


@inlined
def clip_by_global_norm(grad, hyper):
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


@inlined
def l1_prox(params, n_coef, lr, hyper, opt_state):
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


@inlined
def _all_finite(values, n):
    """Whether values[:n] are all finite: x * 0 is NaN exactly for NaN and inf, and the loop vectorises."""
    acc = 0.0
    for i in range(n):
        acc += values[i] * 0.0
    return acc == 0.0


@inlined
def _sgd_step_is_finite(params, grad, lr):
    """Whether params - lr * grad is finite everywhere, computed without writing anything."""
    acc = lr * 0.0
    for i in range(params.shape[0]):
        acc += (params[i] - lr * grad[i]) * 0.0
    return acc == 0.0


@compiled
def _copy_params_and_state(params, opt_state, params_to, state_to):
    for i in range(params.shape[0]):
        params_to[i] = params[i]
    for s in range(opt_state.shape[0]):
        for i in range(opt_state.shape[1]):
            state_to[s, i] = opt_state[s, i]


@inlined
def apply_update(model, grad, lr, opt_kind, step, n_coef, backup, rollback=True):
    """L2 penalty, clipping, optimizer step and L1 prox on a mean data gradient ``grad`` of ``model``
    (ModelArrays: its params and opt_state are updated, its hyper read); False, with nothing changed, if the result
    would not be finite. ``backup``: ModelArrays whose params and opt_state receive the copies a rollback restores.

    Plain SGD is checked before it writes (its result is known from grad and lr), so the per-row path copies
    nothing; a rule with state is applied to the live arrays and rolled back from the backups if needed (unless
    ``rollback`` is False: the caller then works on copies it discards on failure).
    """
    params, opt_state, hyper = model.params, model.opt_state, model.hyper
    if opt_kind != OPT_FTRL:  # FTRL applies its penalty itself
        _add_l2(params, grad, n_coef, hyper)
    clip_by_global_norm(grad, hyper)
    if opt_kind == OPT_SGD:
        if not _sgd_step_is_finite(params, grad, lr):
            return False
        optimizer_step(opt_kind, params, grad, opt_state, step, lr, hyper, n_coef)
        l1_prox(params, n_coef, lr, hyper, opt_state)  # shrinking finite values keeps them finite
        return True
    if not _all_finite(grad, grad.shape[0]):
        return False
    if rollback:
        _copy_params_and_state(params, opt_state, backup.params, backup.opt_state)
    optimizer_step(opt_kind, params, grad, opt_state, step, lr, hyper, n_coef)
    if opt_kind != OPT_FTRL:
        l1_prox(params, n_coef, lr, hyper, opt_state)
    after_step(opt_kind, params, opt_state, step, hyper)
    ok = _all_finite(params, params.shape[0])
    for s in range(opt_state.shape[0]):
        ok = ok and _all_finite(opt_state[s], opt_state.shape[1])
    if not ok and rollback:
        _copy_params_and_state(backup.params, backup.opt_state, params, opt_state)
    return ok

