"""The kernel functions the rest of the package calls: loss and gradient of mini-batches, the chunk's training
loop, the full-batch step, prediction and evaluation, one compiled call per chunk.

These are thin Python functions: they check shapes and codes (compiled code does not check bounds), allocate the
scratch once per call and hand the chunk to a specialised loop as a flat float32 or float64 vector: a train loop
(``streamgd.kernels.dense``, or ``streamgd.kernels.sparse`` for a chunk with a sparse block) or a read loop
(``streamgd.kernels.scoring``, one set for both). The codes and
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
    NO_FACTORS,
    ChunkArrays,
    DenseWork,
    FactorArrays,
    FullBatchStep,
    ModelArrays,
    RowRange,
    ScoredModel,
    SparseArrays,
    StepRates,
    SumWork,
    check_in_place,
    check_loss,
    check_opt_state,
    check_params,
    chunk_vector,
    contiguous_params,
    hyper_vector,
    sparse_arrays,
    targets,
    vector,
)
from .codes import (  # noqa: F401 - the codes callers pass, named where they call
    FACTOR_RULES,
    H_ALPHA,
    H_CLIP_NORM,
    H_FACTOR_L2,
    H_FACTOR_LR,
    H_FACTOR_NUMERIC,
    H_FACTOR_SPAN,
    H_FACTORS,
    H_FIELDS,
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
    factor_state_rows,
    optimizer_label,
)
from .dense import full_batch_update_for, train_loop_for
from .pieces import ROW_MAJOR_BELOW, ROW_TILE_VALUES, TILE_VALUES
from .scoring import (
    NO_SPARSE,
    first_bad_row_loop_for,
    predict_loop_for,
    sum_loop_for,
)


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
    """The first bad row of [start, stop) of a dense chunk (``scoring``'s loop, on column tiles)."""
    x, fortran, n, d = chunk
    _, tile_rows, tile, margins, dloss = _workspace(d, n_out, ROW_MAJOR_BELOW)
    return first_bad_row_loop_for(fortran)(ChunkArrays(x, n, d, y, sample_weight), NO_SPARSE,
                                           RowRange(int(start), int(stop), 1),
                                           ScoredModel(params, int(n_out), int(loss_kind), float(eps)),
                                           SumWork(tile_rows, tile, margins, dloss, np.empty(0)), None)


def _sum(chunk: tuple, y, sample_weight, start, stop, params, n_out, loss_kind, eps, batch_size, grad) -> float:
    """The sum loop over rows [start, stop) of a dense chunk, tiled for batches of ``batch_size`` rows."""
    x, fortran, n, d = chunk
    rows_major, tile_rows, tile, margins, dloss = _workspace(d, n_out, batch_size)
    return sum_loop_for(fortran, rows_major)(ChunkArrays(x, n, d, y, sample_weight), NO_SPARSE,
                                             RowRange(int(start), int(stop), int(batch_size)),
                                             ScoredModel(params, int(n_out), int(loss_kind), float(eps)),
                                             SumWork(tile_rows, tile, margins, dloss, grad), None)


def _width(d: int, sparse: SparseArrays | None) -> int:
    """The model's number of features: the dense block's columns, plus the sparse block's slots."""
    return d if sparse is None else d + sparse.n_slots


def _sparse(block: Any, n: int) -> SparseArrays | None:
    return None if block is None else sparse_arrays(block, n)


# ---- factorization machines: the linear part, then the factor block, in one parameter vector --------------------
def factorized(hyper: Any) -> bool:
    """Whether ``hyper`` describes a factorization machine (``hyper[H_FACTORS]`` > 0)."""
    return hyper is not None and np.asarray(hyper).shape == (N_HYPER,) and float(np.asarray(hyper)[H_FACTORS]) > 0


def factor_rows(n_dense: int, n_slots: int, numeric: bool) -> int:
    """The factor rows of a model: one per sparse slot, and one per dense column when ``numeric``."""
    return n_slots + (n_dense if numeric else 0)


def n_factor_params(n_rows: int, k: int, opt_kind: int, fields: int = 0) -> int:
    """The length of a factor block of ``n_rows`` rows of ``k`` factors (per field: ``fields`` > 0, a field-aware
    FM) and optimizer ``opt_kind``'s state for them (``streamgd.kernels.factors``), which follows the linear
    parameters in the parameter vector.

    >>> n_factor_params(10, 4, OPT_SGD), n_factor_params(10, 4, OPT_FTRL), n_factor_params(10, 4, OPT_FTRL, 3)
    (40, 80, 240)
    """
    return n_rows * max(int(fields), 1) * k * (1 + factor_state_rows(opt_kind))


NO_SLOT_FIELDS = np.empty(0, dtype=np.int32)


def check_fields(fields: int, numeric: int, n_dense: int, sparse: SparseArrays | None,
                 slot_fields: np.ndarray | None, span: int = 0) -> np.ndarray:
    """A field-aware FM's slot fields (empty: by an entry's position in its row), checked to name fields in
    range for every entry of the block (compiled code does not check)."""
    sparse_fields = fields - (n_dense if numeric else 0)
    if sparse_fields < 0 or (sparse is None and sparse_fields):
        raise ValueError(f"a field-aware FM of {fields} fields does not fit {n_dense} dense columns "
                         f"({'with' if numeric else 'without'} factors) and {'no' if sparse is None else 'a'} "
                         "sparse block")
    if sparse is None:
        return NO_SLOT_FIELDS
    if slot_fields is None or len(slot_fields) == 0:
        longest = int(np.diff(sparse.indptr).max()) if sparse.indptr.shape[0] > 1 else 0
        if longest > sparse_fields and span != sparse_fields:  # a span numbers only a row's first entries
            raise ValueError(f"a row of the sparse block has {longest} entries, more than the {sparse_fields} "
                             "fields that number its entries by position: give each slot's field")
        return NO_SLOT_FIELDS
    slot_fields = np.ascontiguousarray(slot_fields, dtype=np.int32)
    if slot_fields.shape != (sparse.n_slots,) or (
            slot_fields.size and (slot_fields.min() < 0 or slot_fields.max() >= sparse_fields)):
        raise ValueError(f"slot fields must give each of the {sparse.n_slots} slots a field in "
                         f"[0, {sparse_fields}), got an array of shape {slot_fields.shape}")
    return slot_fields


def model_parts(params: np.ndarray, n_dense: int, sparse: SparseArrays | None, n_out: int, hyper: Any,
                opt_kind: int | None = None, slot_fields: np.ndarray | None = None,
                factor_block: np.ndarray | None = None) -> tuple[np.ndarray, FactorArrays]:
    """(the linear parameters, the factor rows) of a parameter vector: for a linear model ``params`` itself and no
    factors; for a factorization machine (``hyper[H_FACTORS]`` = k) the first ``n_out * (D + 1)`` entries and the
    block after them, checked to hold a whole number of rows (``opt_kind``: of k factors per field and that
    rule's state). A field-aware FM (``hyper[H_FIELDS]`` > 0) takes its slots' fields from ``slot_fields``
    (None: an entry's position in its row). ``factor_block``: the block as an array of its own, (rows, stride)
    and C-contiguous, with ``params`` the linear part only (a model's arrays, read without a copy)."""
    if not factorized(hyper):
        return params, NO_FACTORS
    hyper = np.asarray(hyper)
    k, numeric, fields = int(hyper[H_FACTORS]), int(hyper[H_FACTOR_NUMERIC] > 0), int(hyper[H_FIELDS])
    n_slots = 0 if sparse is None else sparse.n_slots
    if n_out != 1:
        raise ValueError(f"a factorization machine has one output, got n_out={n_out}")
    n_lin = n_params(n_dense + n_slots, n_out)
    rows = factor_rows(n_dense, n_slots, bool(numeric))
    if factor_block is not None:
        if not (isinstance(factor_block, np.ndarray) and factor_block.ndim == 2 and factor_block.dtype == np.float64
                and factor_block.flags.c_contiguous and factor_block.shape[0] == rows):
            raise ValueError(f"the factor block must be a C-contiguous float64 array of {rows} rows")
        if not (isinstance(params, np.ndarray) and params.shape == (n_lin,)):
            raise ValueError(f"params must hold the {n_lin} linear parameters alone beside a factor block")
        block = factor_block.reshape(-1)
    elif not (isinstance(params, np.ndarray) and params.ndim == 1 and params.shape[0] >= n_lin):
        raise ValueError(f"params must hold the {n_lin} linear parameters and the factor block after them")
    else:
        block = params[n_lin:]
    size = block.shape[0]
    stride = size // rows if rows else 0
    vector = max(fields, 1) * k  # the factors of one row
    expected = n_factor_params(rows, k, opt_kind, fields) if opt_kind is not None else rows * stride
    if rows == 0 or size != expected or stride % vector or stride < vector:
        raise ValueError(f"the factor block must hold {rows} rows of {vector} factors"
                         + (f" and their state ({expected} values)" if opt_kind is not None else "")
                         + f", got {size} values after the linear parameters")
    span = int(hyper[H_FACTOR_SPAN])
    slot_fields = check_fields(fields, numeric, n_dense, sparse, slot_fields, span) if fields else NO_SLOT_FIELDS
    return params[:n_lin], FactorArrays(block.reshape(rows, stride), k, numeric, fields, slot_fields, span)


def _no_slots(n: int) -> SparseArrays:
    """An empty sparse block of ``n`` rows: a factorization machine on dense columns only runs the sparse loops."""
    return SparseArrays(np.zeros(n + 1, dtype=np.int64), np.empty(0, dtype=np.int32), np.empty(0), 0)


def _check_factor_optimizer(opt_kind: int) -> None:
    if opt_kind not in FACTOR_RULES:
        raise ValueError(f"{optimizer_label(opt_kind)} does not train factors; a factorization machine takes "
                         + ", ".join(optimizer_label(code) for code in FACTOR_RULES))


def batch_loss_grad(X, y, sample_weight, start, stop, params, n_out, loss_kind, hyper, grad, sparse=None,
                    slot_fields=None) -> float:
    """Overwrite ``grad`` with the summed weighted data-loss gradient of rows [start, stop); return the loss sum.

    No penalty and no division by the number of rows; computed exactly as ``train_chunk`` computes a batch of
    ``stop - start`` rows. ``sparse``: the chunk's sparse block, if any; ``slot_fields``: a field-aware FM's
    field of each slot (None: an entry's position in its row).
    """
    chunk = chunk_vector(X)
    n, d = chunk[2], chunk[3]
    y, sample_weight = targets(y, sample_weight, n)
    sparse = _sparse(sparse, n)
    hyper = hyper_vector(hyper)
    sparse = sparse if sparse is not None or not factorized(hyper) else _no_slots(n)
    params = contiguous_params(params)
    linear, factors = model_parts(params, d, sparse, n_out, hyper, slot_fields=slot_fields)
    check_params(linear, _width(d, sparse), n_out)
    check_in_place(grad, "grad", params.shape)
    loss_kind = check_loss(loss_kind)
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= n:
        raise ValueError(f"rows [{start}, {stop}) are not within the chunk's {n} rows")
    grad[:] = 0.0
    eps = hyper[H_HUBER_EPS]
    if factors.k:  # the factor block's gradient, laid out as the block (its state columns stay 0)
        factor_grad = grad[linear.shape[0]:].reshape(factors.block.shape)
        return sparse_loops.loss_sum(X, sparse, y, sample_weight, start, stop, linear, n_out, loss_kind, eps,
                                     grad[:linear.shape[0]], factors, factor_grad)
    if sparse is not None:
        return sparse_loops.loss_sum(X, sparse, y, sample_weight, start, stop, params, n_out, loss_kind, eps, grad)
    return _sum(chunk, y, sample_weight, start, stop, params, n_out, loss_kind, eps, max(stop - start, 1), grad)


def train_chunk(X, y, sample_weight, params, opt_state, hyper, lrs, batch_size, n_out, loss_kind, opt_kind,
                step0, sparse=None, slot_fields=None) -> tuple[float, int, int]:
    """Train on every consecutive mini-batch of a chunk; return (progressive loss sum, rows done, status).

    Batch ``b`` covers rows [b * batch_size, min((b + 1) * batch_size, n)); its mean gradient, plus the L2
    penalty, clipped, is stepped with rate ``lrs[b]`` at step ``step0 + b``, then the L1 prox. Its loss enters
    the sum as evaluated before its update. A non-finite batch is not applied and ends the call: rows done = its
    start, status ``-(row) - 1`` (see the module docstring). ``sparse``: the chunk's sparse block, if any (its
    slots are features ``d ..`` of the model; see ``streamgd.kernels.sparse`` for the lazy updates);
    ``slot_fields``: a field-aware FM's field of each slot (None: an entry's position in its row). With a sparse
    block, a linear model's ``params`` and ``opt_state`` may be views of one per-coordinate block
    (``streamgd.optim.state.coordinate_block``), updated in place like separate arrays.
    """
    chunk = chunk_vector(X)
    x, fortran, n, d = chunk
    y, sample_weight = targets(y, sample_weight, n)
    sparse = _sparse(sparse, n)
    loss_kind = check_loss(loss_kind)
    if factorized(hyper):  # the linear part as below, then the factor block
        _check_factor_optimizer(opt_kind)
        if sparse is None:
            sparse = _no_slots(n)
        params, factors = model_parts(params, d, sparse, n_out, hyper, opt_kind, slot_fields)
    else:
        factors = NO_FACTORS
    per_coordinate = sparse is not None and not factors.k  # the sparse loops read a per-coordinate block's views
    check_params(params, _width(d, sparse), n_out, strided=per_coordinate)
    opt_kind = check_opt_state(opt_state, opt_kind, params.shape[0], strided=per_coordinate)
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
                                        loss_kind, opt_kind, step0, factors)
    rows_major, tile_rows, tile, margins, dloss = _workspace(d, n_out, bs)
    n_par = params.shape[0]
    stateful = opt_kind != OPT_SGD  # plain SGD is checked before it writes, so it needs no backup
    backup = np.empty(n_par if stateful else 0)
    state_backup = np.empty((opt_state.shape[0] if stateful else 0, n_par))
    loop = train_loop_for(loss_kind, opt_kind, fortran, rows_major)
    total, done, failed = loop(ChunkArrays(x, n, d, y, sample_weight),
                               ModelArrays(params, opt_state, hyper, int(n_out)), StepRates(lrs, int(step0), bs),
                               DenseWork(tile_rows, tile, margins, dloss, np.empty(n_par), backup, state_backup))
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
    if factorized(hyper):
        raise ValueError("full-batch steps train linear models only; a factorization machine trains in "
                         "mini-batches")
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
    model = ModelArrays(params, opt_state, hyper_vector(hyper, opt_state), 1)  # n_out: n_coef says it
    empty = np.empty((0, 0))
    ok = update(model, grad_sum, FullBatchStep(float(n_rows_total), float(lr), int(step), int(n_coef)),
                DenseWork(0, empty, empty, empty, np.empty(n_par), np.empty(n_par), np.empty_like(opt_state)))
    return 0 if ok else -1


def predict_margins(X, params, n_out, out, sparse=None, hyper=None, slot_fields=None, factor_block=None) -> None:
    """Write the margins of every row, shape (n_rows, n_out), into the float64 array ``out``; ``hyper``: the
    kernels' hyperparameters when they describe a factorization machine (``params`` then holds its factors, or
    ``factor_block`` does, as in ``model_parts``; ``slot_fields`` a field-aware one's field of each slot, None:
    an entry's position in its row)."""
    x, fortran, n, d = chunk_vector(X)
    sparse = _sparse(sparse, n)
    if sparse is None and factorized(hyper):
        sparse = _no_slots(n)
    params, factors = model_parts(contiguous_params(params), d, sparse, n_out, hyper, slot_fields=slot_fields,
                                  factor_block=factor_block)
    check_params(params, _width(d, sparse), n_out)
    check_in_place(out, "out", (n, n_out))
    if sparse is not None:
        sparse_loops.predict_margins(X, sparse, params, n_out, out, factors)
        return
    _, tile_rows, tile, margins, _ = _workspace(d, n_out, max(n, ROW_MAJOR_BELOW))
    predict_loop_for(fortran)(ChunkArrays(x, n, d, np.empty(0), np.empty(0)), NO_SPARSE,
                              ScoredModel(params, int(n_out), 0, 0.0),
                              SumWork(tile_rows, tile, margins, margins, np.empty(0)), None, out)


def chunk_loss(X, y, sample_weight, params, n_out, loss_kind, hyper, sparse=None, slot_fields=None,
               factor_block=None) -> float:
    """Sum of the weighted data losses over the chunk (no penalty), for evaluation; ``slot_fields`` as in
    ``train_chunk``, ``factor_block`` as in ``predict_margins``."""
    chunk = chunk_vector(X)
    n, d = chunk[2], chunk[3]
    y, sample_weight = targets(y, sample_weight, n)
    sparse = _sparse(sparse, n)
    hyper = hyper_vector(hyper)
    if sparse is None and factorized(hyper):
        sparse = _no_slots(n)
    params, factors = model_parts(contiguous_params(params), d, sparse, n_out, hyper, slot_fields=slot_fields,
                                  factor_block=factor_block)
    check_params(params, _width(d, sparse), n_out)
    loss_kind = check_loss(loss_kind)
    eps = hyper[H_HUBER_EPS]
    if sparse is not None:
        return sparse_loops.loss_sum(X, sparse, y, sample_weight, 0, n, params, n_out, loss_kind, eps, np.empty(0),
                                     factors)
    return _sum(chunk, y, sample_weight, 0, n, params, n_out, loss_kind, eps, max(n, 1), np.empty(0))


__all__ = ["N_HYPER", "SparseArrays", "accumulate_chunk", "batch_loss_grad", "chunk_loss", "factor_rows",
           "factorized", "full_batch_step", "model_parts", "n_factor_params", "n_params", "predict_margins",
           "split_params", "train_chunk"]
