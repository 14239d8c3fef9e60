"""Compiled kernels: loss and gradient of mini-batches and the chunk loop, one compiled call per chunk.

One generic loop, specialised by integer codes for the loss and the optimizer (as scikit-learn's ``_sgd_fast``
takes a loss object): the mini-batch loop, the loss, the gradient and the update all run inside Numba.

Parameter layout, shared by optimizers, models and checkpoints: ``params`` is a flat float64 vector of length
``n_out * (d + 1)``: the coefficients row-major ``(n_out, d)``, then the ``n_out`` intercepts.

Rows arrive in the plan's order (the reader permutes them while converting), so a mini-batch is a run of
consecutive rows; with column-major chunks the inner loops walk each column contiguously.

>>> import numpy as np
>>> X = np.asfortranarray([[1.0, 2.0], [3.0, 4.0]]); y = np.array([1.0, 2.0]); params = np.zeros(3)
>>> grad = np.zeros(3)
>>> float(batch_loss_grad(X, y, np.empty(0), 0, 2, params, 1, LOSS_SQUARED, np.zeros(N_HYPER), grad))
2.5
>>> grad.tolist()
[-7.0, -10.0, -3.0]
"""

from __future__ import annotations

import math

import numba
import numpy as np

LOSS_SQUARED = 0
LOSS_LOG = 1
LOSS_SOFTMAX = 2
LOSS_HINGE = 3
LOSS_SQUARED_HINGE = 4
LOSS_HUBER = 5
LOSS_POISSON = 6

OPT_SGD = 0

H_ALPHA = 0
H_L1_RATIO = 1
H_CLIP_NORM = 2
H_HUBER_EPS = 3
H_OPT0 = 4
N_HYPER = 12

_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_jit = numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
_inline = numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")


def n_params(n_features: int, n_out: int = 1) -> int:
    """Length of the parameter vector for ``n_features`` features and ``n_out`` outputs."""
    return n_out * (n_features + 1)


def split_params(params: np.ndarray, n_features: int, n_out: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Views of the coefficient matrix ``(n_out, d)`` and the intercepts ``(n_out,)``."""
    return params[: n_out * n_features].reshape(n_out, n_features), params[n_out * n_features:]


# ---- scalar losses ----------------------------------------------------------------------------------------------
@_inline
def _log1pexp(m):
    if m > 0.0:
        return m + math.log1p(math.exp(-m))
    return math.log1p(math.exp(m))


@_inline
def _sigmoid(m):
    if m >= 0.0:
        return 1.0 / (1.0 + math.exp(-m))
    e = math.exp(m)
    return e / (1.0 + e)


@_inline
def _pointwise_loss(kind, m, y, eps):
    if kind == LOSS_SQUARED:
        r = m - y
        return 0.5 * r * r
    if kind == LOSS_LOG:
        return _log1pexp(m) - y * m
    if kind == LOSS_HINGE:
        z = 1.0 - (2.0 * y - 1.0) * m
        return z if z > 0.0 else 0.0
    if kind == LOSS_SQUARED_HINGE:
        z = 1.0 - (2.0 * y - 1.0) * m
        return z * z if z > 0.0 else 0.0
    if kind == LOSS_HUBER:
        r = abs(m - y)
        return 0.5 * r * r if r <= eps else eps * (r - 0.5 * eps)
    # LOSS_POISSON
    return math.exp(m) - y * m


@_inline
def _pointwise_dloss(kind, m, y, eps):
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


# ---- one batch --------------------------------------------------------------------------------------------------
@_jit
def _batch_margins(X, start, stop, params, n_out, margins):
    """margins[b, k] = x_{start+b} . w_k + b_k, walking each column contiguously."""
    d = X.shape[1]
    nb = stop - start
    for k in range(n_out):
        b0 = params[n_out * d + k]
        for b in range(nb):
            margins[b, k] = b0
        base = k * d
        for j in range(d):
            w = params[base + j]
            for b in range(nb):  # no skip for w == 0: NaN in X must reach the margin
                margins[b, k] += X[start + b, j] * w


@_jit
def _batch_dloss(y, sample_weight, start, stop, n_out, loss_kind, eps, margins, dloss):
    """Fill dloss[b, k] (weighted) from margins; return the weighted loss sum (NaN/inf propagate)."""
    nb = stop - start
    total = 0.0
    weighted = sample_weight.shape[0] > 0
    for b in range(nb):
        r = start + b
        w = sample_weight[r] if weighted else 1.0
        if loss_kind == LOSS_SOFTMAX:
            top = margins[b, 0]
            for k in range(1, n_out):
                if margins[b, k] > top:
                    top = margins[b, k]
            norm = 0.0
            for k in range(n_out):
                norm += math.exp(margins[b, k] - top)
            lse = top + math.log(norm)
            label = y[r]
            if not (label >= 0.0 and label < n_out):  # NaN or out of range: poison the loss
                total += math.nan
                label_index = 0
            else:
                label_index = int(label)
            total += w * (lse - margins[b, label_index])
            for k in range(n_out):
                p = math.exp(margins[b, k] - lse)
                dloss[b, k] = w * (p - (1.0 if k == label_index else 0.0))
        else:
            m = margins[b, 0]
            total += w * _pointwise_loss(loss_kind, m, y[r], eps)
            dloss[b, 0] = w * _pointwise_dloss(loss_kind, m, y[r], eps)
    return total


@_jit
def _batch_grad(X, start, stop, n_out, dloss, grad):
    """grad = sum over the batch of dloss[b, k] * [x_b, 1] (overwrites grad)."""
    d = X.shape[1]
    nb = stop - start
    for k in range(n_out):
        base = k * d
        for j in range(d):
            acc = 0.0
            for b in range(nb):
                acc += X[start + b, j] * dloss[b, k]
            grad[base + j] = acc
        acc = 0.0
        for b in range(nb):
            acc += dloss[b, k]
        grad[n_out * d + k] = acc


@_jit
def batch_loss_grad(X, y, sample_weight, start, stop, params, n_out, loss_kind, hyper, grad):  # pragma: no cover
    """Overwrite ``grad`` with the summed data-loss gradient of rows [start, stop); return the summed loss."""
    nb = stop - start
    margins = np.empty((nb, n_out))
    dloss = np.empty((nb, n_out))
    _batch_margins(X, start, stop, params, n_out, margins)
    total = _batch_dloss(y, sample_weight, start, stop, n_out, loss_kind, hyper[H_HUBER_EPS], margins, dloss)
    _batch_grad(X, start, stop, n_out, dloss, grad)
    return total


# ---- penalty, clipping, optimizer -------------------------------------------------------------------------------
@_jit
def _add_l2_and_clip(params, grad, n_coef, hyper):
    l2 = hyper[H_ALPHA] * (1.0 - hyper[H_L1_RATIO])
    if l2 != 0.0:
        for i in range(n_coef):
            grad[i] += l2 * params[i]
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


@_jit
def _optimizer_step(opt_kind, params, grad, opt_state, step, lr, hyper):
    """Apply one update of optimizer ``opt_kind`` in place (state rows in ``opt_state``)."""
    # OPT_SGD; other optimizers add branches here
    for i in range(params.shape[0]):
        params[i] -= lr * grad[i]


@_jit
def _l1_prox(params, n_coef, lr, hyper):
    """Soft-threshold the coefficients by lr * alpha * l1_ratio: exact zeros (truncated gradient)."""
    threshold = lr * hyper[H_ALPHA] * hyper[H_L1_RATIO]
    if threshold <= 0.0:
        return
    for i in range(n_coef):
        w = params[i]
        if w > threshold:
            params[i] = w - threshold
        elif w < -threshold:
            params[i] = w + threshold
        else:
            params[i] = 0.0


@_jit
def _all_finite(values):
    for i in range(values.shape[0]):
        if not math.isfinite(values[i]):
            return False
    return True


@_jit
def _update(params, grad, opt_state, hyper, lr, opt_kind, step, n_coef, backup, state_backup):
    """Penalty, clipping, optimizer step and L1 prox; on a non-finite result restore and return False."""
    _add_l2_and_clip(params, grad, n_coef, hyper)
    if not _all_finite(grad):
        return False
    backup[:] = params
    if opt_state.shape[0] > 0:
        state_backup[:, :] = opt_state
    _optimizer_step(opt_kind, params, grad, opt_state, step, lr, hyper)
    _l1_prox(params, n_coef, lr, hyper)
    if not _all_finite(params):
        params[:] = backup
        if opt_state.shape[0] > 0:
            opt_state[:, :] = state_backup
        return False
    return True


@_jit
def _first_bad_row(margins, dloss, start, nb, n_out):
    for b in range(nb):
        for k in range(n_out):
            if not (math.isfinite(margins[b, k]) and math.isfinite(dloss[b, k])):
                return start + b
    return start


# ---- chunk loops ------------------------------------------------------------------------------------------------
@_jit
def train_chunk(X, y, sample_weight, params, opt_state, hyper, lrs, batch_size, n_out, loss_kind, opt_kind,
                step0):  # pragma: no cover
    """Train on every mini-batch of a chunk; return (progressive loss sum, rows done, status).

    status is 0, or -(row) - 1 for the first row whose loss or gradient is not finite (params are left as they
    were before that batch).
    """
    n = X.shape[0]
    d = X.shape[1]
    n_coef = n_out * d
    bs = min(batch_size, max(n, 1))
    margins = np.empty((bs, n_out))
    dloss = np.empty((bs, n_out))
    grad = np.empty(params.shape[0])
    backup = np.empty(params.shape[0])
    state_backup = np.empty_like(opt_state)
    eps = hyper[H_HUBER_EPS]
    total = 0.0
    batch = 0
    for start in range(0, n, bs):
        stop = min(start + bs, n)
        nb = stop - start
        _batch_margins(X, start, stop, params, n_out, margins)
        loss = _batch_dloss(y, sample_weight, start, stop, n_out, loss_kind, eps, margins, dloss)
        if not math.isfinite(loss):
            return total, start, -_first_bad_row(margins, dloss, start, nb, n_out) - 1
        _batch_grad(X, start, stop, n_out, dloss, grad)
        inv = 1.0 / nb
        for i in range(grad.shape[0]):
            grad[i] *= inv
        if not _update(params, grad, opt_state, hyper, lrs[batch], opt_kind, step0 + batch, n_coef, backup,
                       state_backup):
            return total, start, -start - 1
        total += loss
        batch += 1
    return total, n, 0


@_jit
def accumulate_chunk(X, y, sample_weight, params, n_out, loss_kind, hyper, grad_sum):  # pragma: no cover
    """Add the chunk's summed data-loss gradient into ``grad_sum``; return (loss sum, status)."""
    n = X.shape[0]
    bs = 4096
    margins = np.empty((bs, n_out))
    dloss = np.empty((bs, n_out))
    grad = np.empty(params.shape[0])
    local = np.zeros(params.shape[0])
    eps = hyper[H_HUBER_EPS]
    total = 0.0
    for start in range(0, n, bs):
        stop = min(start + bs, n)
        _batch_margins(X, start, stop, params, n_out, margins)
        loss = _batch_dloss(y, sample_weight, start, stop, n_out, loss_kind, eps, margins, dloss)
        if not math.isfinite(loss):
            return total, -_first_bad_row(margins, dloss, start, stop - start, n_out) - 1
        _batch_grad(X, start, stop, n_out, dloss, grad)
        for i in range(grad.shape[0]):
            local[i] += grad[i]
        total += loss
    if not _all_finite(local):
        return total, -1
    for i in range(local.shape[0]):
        grad_sum[i] += local[i]
    return total, 0


@_jit
def full_batch_step(params, grad_sum, n_rows_total, opt_state, hyper, lr, opt_kind, step, n_coef):  # pragma: no cover
    """One gradient-descent step with the mean of the streamed gradient sum; 0 or -1 (params untouched).

    ``n_coef`` is the number of coefficients (n_out * d): the intercepts after them are never penalised.
    """
    grad = grad_sum / n_rows_total
    backup = np.empty(params.shape[0])
    state_backup = np.empty_like(opt_state)
    return 0 if _update(params, grad, opt_state, hyper, lr, opt_kind, step, n_coef, backup, state_backup) else -1


@_jit
def predict_margins(X, params, n_out, out):  # pragma: no cover
    """Write the (n_rows, n_out) margins of every row into ``out``."""
    _batch_margins(X, 0, X.shape[0], params, n_out, out)


@_jit
def chunk_loss(X, y, sample_weight, params, n_out, loss_kind, hyper):  # pragma: no cover
    """Sum of weighted data losses over the chunk (no penalty)."""
    n = X.shape[0]
    bs = 4096
    margins = np.empty((bs, n_out))
    dloss = np.empty((bs, n_out))
    total = 0.0
    for start in range(0, n, bs):
        stop = min(start + bs, n)
        _batch_margins(X, start, stop, params, n_out, margins)
        total += _batch_dloss(y, sample_weight, start, stop, n_out, loss_kind, hyper[H_HUBER_EPS], margins, dloss)
    return total
