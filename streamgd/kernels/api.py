"""The kernel functions the rest of the package calls: loss and gradient of mini-batches, the chunk's training
loop, the full-batch step, prediction and evaluation, one compiled call per chunk.

These are thin Python functions: they check shapes and codes (compiled code does not check bounds), allocate the
scratch once per call and hand the chunk to a specialised loop (``streamgd.kernels.dense``, or
``streamgd.kernels.sparse`` for a chunk with a sparse block) as a flat float32 or float64 vector. The codes and
hyperparameter slots they take (``LOSS_*``, ``OPT_*``, ``H_*``, ``N_HYPER``) are ``streamgd.kernels.codes``',
named here too. The first compile of a specialisation (not a load from the disk cache) prints one line on stderr.

Status codes: 0 is success; ``-(row) - 1`` names the first row (in the chunk) whose features, target, weight,
margin or loss are not finite, or else the start row of the batch whose update would not be finite. A failed
batch is never applied: parameters and optimizer state stay as they were before it.

A chunk's sparse block (``sparse=``) is anything with ``indptr``, ``indices``, ``values`` and ``n_slots`` (the
data layer's ``SparseBlock``, or a ``SparseArrays``); its slots are features ``d ..`` of the model.

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
from typing import Any

import numpy as np

from . import sparse as sparse_loops
from .arguments import (
    SparseArrays,
    check_in_place,
    check_loss,
    check_opt_state,
    check_params,
    chunk_vector,
    hyper_vector,
    sparse_arrays,
    targets,
    vector,
)
from .codes import (  # noqa: F401 - the codes callers pass, named where they call
    H_ALPHA,
    H_CLIP_NORM,
    H_HUBER_EPS,
    H_L1_RATIO,
    H_L1_ROW,
    H_LAZY_ROW,
    LOSS_HINGE,
    LOSS_HUBER,
    LOSS_LOG,
    LOSS_POISSON,
    LOSS_SOFTMAX,
    LOSS_SQUARED,
    LOSS_SQUARED_HINGE,
    N_HYPER,
    N_LOSSES,
    OPT_FTRL,
    OPT_SGD,
)
from .dense import (
    first_bad_row_loop_for,
    full_batch_update_for,
    predict_loop_for,
    sum_loop_for,
    train_loop_for,
)
from .pieces import ROW_MAJOR_BELOW, ROW_TILE_VALUES, TILE_VALUES


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


def _workspace(n_features: int, n_out: int, batch_size: int) -> tuple:
    """Scratch for batches of ``batch_size`` rows: (rows_major, rows per tile, tile, margins, dloss)."""
    rows_major = batch_size < ROW_MAJOR_BELOW
    capacity = max(16, (ROW_TILE_VALUES if rows_major else TILE_VALUES) // max(n_features, 1))
    tile = np.empty((capacity, n_features) if rows_major else (n_features, capacity))
    tile_rows = (capacity // batch_size) * batch_size if batch_size < capacity else capacity
    return rows_major, tile_rows, tile, np.empty((n_out, capacity)), np.empty((n_out, capacity))


def _first_bad_row(chunk: tuple, y, sample_weight, start, stop, params, n_out, loss_kind, eps) -> int:
    x, fortran, n, d = chunk
    _, tile_rows, tile, margins, dloss = _workspace(d, n_out, 1)
    return first_bad_row_loop_for(fortran)((x, n, d, y, sample_weight), start, stop, params, int(n_out),
                                           int(loss_kind), float(eps), (tile_rows, tile, margins, dloss))


def _sum(chunk: tuple, y, sample_weight, start, stop, params, n_out, loss_kind, eps, batch_size, grad) -> float:
    """The sum loop over rows [start, stop) of the chunk, tiled for batches of ``batch_size`` rows."""
    x, fortran, n, d = chunk
    rows_major, tile_rows, tile, margins, dloss = _workspace(d, n_out, batch_size)
    return sum_loop_for(fortran, rows_major)((x, n, d, y, sample_weight), start, stop, params, int(n_out),
                                             int(loss_kind), float(eps), batch_size,
                                             (tile_rows, tile, margins, dloss, grad))


def _width(d: int, sparse: SparseArrays | None) -> int:
    """The model's number of features: the dense block's columns, plus the sparse block's slots."""
    return d if sparse is None else d + sparse.n_slots


def _sparse(block: Any, n: int) -> SparseArrays | None:
    return None if block is None else sparse_arrays(block, n)


def batch_loss_grad(X, y, sample_weight, start, stop, params, n_out, loss_kind, hyper, grad, sparse=None) -> float:
    """Overwrite ``grad`` with the summed weighted data-loss gradient of rows [start, stop); return the loss sum.

    No penalty and no division by the number of rows; computed exactly as ``train_chunk`` computes a batch of
    ``stop - start`` rows. ``sparse``: the chunk's sparse block, if any.
    """
    chunk = chunk_vector(X)
    n, d = chunk[2], chunk[3]
    y, sample_weight = targets(y, sample_weight, n)
    sparse = _sparse(sparse, n)
    check_params(params, _width(d, sparse), n_out)
    check_in_place(grad, "grad", params.shape)
    loss_kind = check_loss(loss_kind)
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= n:
        raise ValueError(f"rows [{start}, {stop}) are not within the chunk's {n} rows")
    grad[:] = 0.0
    eps = hyper_vector(hyper)[H_HUBER_EPS]
    if sparse is not None:
        return sparse_loops.loss_sum(X, sparse, y, sample_weight, start, stop, params, n_out, loss_kind, eps, grad)
    return _sum(chunk, y, sample_weight, start, stop, params, n_out, loss_kind, eps, max(stop - start, 1), grad)


def train_chunk(X, y, sample_weight, params, opt_state, hyper, lrs, batch_size, n_out, loss_kind, opt_kind,
                step0, sparse=None) -> tuple[float, int, int]:
    """Train on every consecutive mini-batch of a chunk; return (progressive loss sum, rows done, status).

    Batch ``b`` covers rows [b * batch_size, min((b + 1) * batch_size, n)); its mean gradient, plus the L2
    penalty, clipped, is stepped with rate ``lrs[b]`` at step ``step0 + b``, then the L1 prox. Its loss enters
    the sum as evaluated before its update. A non-finite batch is not applied and ends the call: rows done = its
    start, status ``-(row) - 1`` (see the module docstring). ``sparse``: the chunk's sparse block, if any (its
    slots are features ``d ..`` of the model; see ``streamgd.kernels.sparse`` for the lazy updates).
    """
    chunk = chunk_vector(X)
    x, fortran, n, d = chunk
    y, sample_weight = targets(y, sample_weight, n)
    sparse = _sparse(sparse, n)
    check_params(params, _width(d, sparse), n_out)
    loss_kind = check_loss(loss_kind)
    opt_kind = check_opt_state(opt_state, opt_kind, params.shape[0])
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    bs = max(1, min(batch_size, n))
    lrs = vector(lrs, "lrs")
    if lrs.shape[0] < -(-n // bs):
        raise ValueError(f"lrs needs one rate per mini-batch: {-(-n // bs)}, got {lrs.shape[0]}")
    hyper = hyper_vector(hyper, opt_state)
    if sparse is not None:
        return sparse_loops.train_chunk(X, sparse, y, sample_weight, params, opt_state, hyper, lrs, bs, n_out,
                                        loss_kind, opt_kind, step0)
    rows_major, tile_rows, tile, margins, dloss = _workspace(d, n_out, bs)
    n_par = params.shape[0]
    stateful = opt_kind != OPT_SGD  # plain SGD is checked before it writes, so it needs no backup
    backup = np.empty(n_par if stateful else 0)
    state_backup = np.empty((opt_state.shape[0] if stateful else 0, n_par))
    loop = train_loop_for(loss_kind, opt_kind, fortran, rows_major)
    total, done, failed = loop((x, n, d, y, sample_weight), (params, opt_state, hyper, int(n_out)),
                               (lrs, int(step0), bs),
                               (tile_rows, tile, margins, dloss, np.empty(n_par), backup, state_backup))
    if failed < 0:
        return total, done, 0
    bad = _first_bad_row(chunk, y, sample_weight, failed, min(failed + bs, n), params, int(n_out), loss_kind,
                         hyper[H_HUBER_EPS])
    return total, done, -bad - 1


def accumulate_chunk(X, y, sample_weight, params, n_out, loss_kind, hyper, grad_sum, sparse=None) -> tuple[float, int]:
    """Add the chunk's summed weighted data-loss gradient into ``grad_sum``; return (loss sum, status).

    The full-batch half of gradient descent: call it on every chunk of an epoch, then ``full_batch_step``. On a
    bad chunk ``grad_sum`` is left untouched and status names the first bad row as ``-(row) - 1``.
    """
    chunk = chunk_vector(X)
    n, d = chunk[2], chunk[3]
    y, sample_weight = targets(y, sample_weight, n)
    sparse = _sparse(sparse, n)
    check_params(params, _width(d, sparse), n_out)
    check_in_place(grad_sum, "grad_sum", params.shape)
    loss_kind = check_loss(loss_kind)
    eps = float(hyper_vector(hyper)[H_HUBER_EPS])
    local = np.zeros(params.shape[0])
    if sparse is not None:
        total = sparse_loops.loss_sum(X, sparse, y, sample_weight, 0, n, params, n_out, loss_kind, eps, local)
    else:
        total = _sum(chunk, y, sample_weight, 0, n, params, n_out, loss_kind, eps, max(n, 1), local)
    if not (math.isfinite(total) and np.isfinite(local).all()):
        if sparse is not None:
            bad = sparse_loops.first_bad_row(X, sparse, y, sample_weight, 0, n, params, n_out, loss_kind, eps)
        else:
            bad = _first_bad_row(chunk, y, sample_weight, 0, n, params, int(n_out), loss_kind, eps)
        return total, -bad - 1
    grad_sum += local
    return total, 0


def full_batch_step(params, grad_sum, n_rows_total, opt_state, hyper, lr, opt_kind, step, n_coef) -> int:
    """One gradient-descent step on the mean of a streamed gradient sum; status 0, or -1 (nothing changed).

    ``n_coef`` = n_out * n_features: the entries after it are the intercepts, which are never penalised.
    """
    n_par = params.shape[0]
    check_in_place(params, "params", (n_par,))
    opt_kind = check_opt_state(opt_state, opt_kind, n_par)
    grad_sum = vector(grad_sum, "grad_sum", n_par)
    if not 0 <= n_coef <= n_par:
        raise ValueError(f"n_coef must be within [0, {n_par}], got {n_coef}")
    update = full_batch_update_for(opt_kind)
    ok = update(params, grad_sum, float(n_rows_total), opt_state, hyper_vector(hyper, opt_state), float(lr), int(step),
                int(n_coef), (np.empty(n_par), np.empty(n_par), np.empty_like(opt_state)))
    return 0 if ok else -1


def predict_margins(X, params, n_out, out, sparse=None) -> None:
    """Write the margins of every row, shape (n_rows, n_out), into the float64 array ``out``."""
    x, fortran, n, d = chunk_vector(X)
    sparse = _sparse(sparse, n)
    check_params(params, _width(d, sparse), n_out)
    check_in_place(out, "out", (n, n_out))
    if sparse is not None:
        sparse_loops.predict_margins(X, sparse, params, n_out, out)
        return
    _, tile_rows, tile, margins, _ = _workspace(d, n_out, max(n, ROW_MAJOR_BELOW))
    predict_loop_for(fortran)(x, n, d, params, int(n_out), tile_rows, tile, margins, out)


def chunk_loss(X, y, sample_weight, params, n_out, loss_kind, hyper, sparse=None) -> float:
    """Sum of the weighted data losses over the chunk (no penalty), for evaluation."""
    chunk = chunk_vector(X)
    n, d = chunk[2], chunk[3]
    y, sample_weight = targets(y, sample_weight, n)
    sparse = _sparse(sparse, n)
    check_params(params, _width(d, sparse), n_out)
    loss_kind = check_loss(loss_kind)
    eps = hyper_vector(hyper)[H_HUBER_EPS]
    if sparse is not None:
        return sparse_loops.loss_sum(X, sparse, y, sample_weight, 0, n, params, n_out, loss_kind, eps, np.empty(0))
    return _sum(chunk, y, sample_weight, 0, n, params, n_out, loss_kind, eps, max(n, 1), np.empty(0))


__all__ = ["N_HYPER", "SparseArrays", "accumulate_chunk", "batch_loss_grad", "chunk_loss", "full_batch_step",
           "n_params", "predict_margins", "split_params", "train_chunk"]
