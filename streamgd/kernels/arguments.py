"""The checks the public kernel functions make before compiled code runs: compiled code checks no bounds, so a
wrong shape, a state with too few rows or a slot outside the model must be refused here, with a clear message.

>>> check_opt_state(np.zeros((1, 3)), 5, 3)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: ... reads 2 rows of optimizer state, got an array of shape (1, 3)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .codes import (
    H_L1_ROW,
    H_LAZY_ROW,
    N_HYPER,
    N_LOSSES,
    N_OPTIMIZERS,
    STATE_ROWS,
    optimizer_label,
)


class SparseArrays(NamedTuple):
    """A chunk's sparse block as the compiled loops read it: row ``r``'s entries are
    ``indices[indptr[r]: indptr[r + 1]]`` (slots in ``[0, n_slots)``) with ``values`` alike; int64 row pointers,
    int32 slots, float64 values. Slot ``c`` is feature ``d + c`` of a model whose dense block has ``d`` columns."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    n_slots: int


class ChunkArrays(NamedTuple):
    """A chunk as the compiled loops read it: ``x`` the dense block as a flat float32 or float64 vector (``n`` rows,
    ``d`` columns, column-major unless a loop is built for row-major), the target and the sample weights (length 0:
    all ones)."""

    x: np.ndarray
    n: int
    d: int
    y: np.ndarray
    sample_weight: np.ndarray


class ModelArrays(NamedTuple):
    """What a train loop updates and reads: the flat parameters, the optimizer state (a row per state vector), the
    kernels' hyperparameter vector and the number of outputs."""

    params: np.ndarray
    opt_state: np.ndarray
    hyper: np.ndarray
    n_out: int


class StepRates(NamedTuple):
    """A chunk's schedule: one rate per mini-batch, the global step of the first and the batch size."""

    lrs: np.ndarray
    step0: int
    batch_size: int


class DenseWork(NamedTuple):
    """Scratch of a dense train loop: a tile of ``tile_rows`` rows, the margins and their derivatives, the batch's
    gradient and the backups a stateful rule is rolled back from."""

    tile_rows: int
    tile: np.ndarray
    margins: np.ndarray
    dloss: np.ndarray
    grad: np.ndarray
    backup: np.ndarray
    state_backup: np.ndarray


class SumWork(NamedTuple):
    """Scratch of the sum loops: a tile, margins, their derivatives, and the gradient sum (length 0: none)."""

    tile_rows: int
    tile: np.ndarray
    margins: np.ndarray
    dloss: np.ndarray
    grad: np.ndarray


class Columns(NamedTuple):
    """A block's dense columns as the column passes read them: feature ``j`` of the block's row ``b`` is
    ``src[j * stride + offset + b]``. A column-major chunk read in place is ``(x, n, first row, d)``; a column-major
    tile ``(tile, capacity, 0, d)``. One description for every loop, so each column pass exists once."""

    src: np.ndarray
    stride: int
    offset: int
    d: int


class LinearVector(NamedTuple):
    """A vector laid out as a linear model's parameters (the parameters, their gradient, a batch's compact copy):
    output ``k``'s coefficient of feature ``j`` at ``values[k * stride + j]`` (the dense columns first, then the
    slots: slot ``c`` is feature ``d + c``, or in a batch's compact copy its ``c``-th touched slot), the ``n_out``
    intercepts at ``values[n_out * stride + k]``."""

    values: np.ndarray
    n_out: int
    stride: int


class Tile(NamedTuple):
    """Rows ``t0 .. t0 + hi - 1`` of a chunk, and the column map of their sparse entries: entry ``e``'s slot is
    numbered ``columns[e - e0]``. The read loops pass the slots themselves (``SparseArrays.indices``, e0 = 0); a
    train loop its batch's compact numbering (``SparseWork.entry_pos``, e0 the batch's first entry)."""

    t0: int
    hi: int
    e0: int
    columns: np.ndarray


class CompactMap(NamedTuple):
    """Where a batch's compact coefficients live in the full vector: compact ``k * (d + m) + j`` is full
    ``k * D + j`` for the ``d`` dense columns, compact ``k * (d + m) + d + p`` is full ``k * D + d + touched[p]``,
    and the intercepts follow each vector's coefficients (``D = d + n_slots``)."""

    d: int
    D: int  # noqa: N815 - as in streamgd.kernels.sparse's docstring
    n_out: int
    touched: np.ndarray
    m: int


class RowRange(NamedTuple):
    """Rows [start, stop) of a chunk for the read loops, tiled as a train loop tiles batches of ``batch_size``
    rows starting at ``start``."""

    start: int
    stop: int
    batch_size: int


class ScoredModel(NamedTuple):
    """A model as the read loops (sums, first bad row, prediction) read it: the linear parameters (``n_out *
    (D + 1)``), the number of outputs, the loss code (at run time) and the Huber loss's eps."""

    params: np.ndarray
    n_out: int
    loss_kind: int
    eps: float


class FullBatchStep(NamedTuple):
    """A full-batch step: the rows its gradient sum covers, the rate, the step number and the coefficients'
    count (the entries after them are the intercepts)."""

    n_rows: float
    lr: float
    step: int
    n_coef: int


class FactorArrays(NamedTuple):
    """A factorization machine's factor rows as the compiled loops read them: ``block`` (n_rows, stride) holds,
    per row and per field, the ``k`` factors and then their optimizer state (``stride = fields * k * (1 + state
    rows)``; a plain FM has one field), so an update touches one run of memory per row and field (a stride per
    coordinate, as libffm lays it out). Rows are the dense columns' (when ``numeric`` is 1) and then the sparse
    slots'. ``k = 0``: no factors (a linear model). ``fields`` = 0: a plain FM; else a field-aware FM of that many
    fields, the dense columns' first (one each, when ``numeric``), then the sparse entries' (``slot_fields[slot]``,
    or, where ``slot_fields`` is empty, the entry's position in its row: a FeatureSpec's block holds one entry per
    categorical column, interaction and binned column, in that order). ``span`` m > 0: only the first m sparse
    entries of a row have factors (a FeatureSpec's factor columns, which it numbers first); 0: every entry."""

    block: np.ndarray
    k: int
    numeric: int
    fields: int
    slot_fields: np.ndarray
    span: int = 0


class FactorWork(NamedTuple):
    """Scratch of the factor pieces: per row of a tile its sums ``sum_i v_i x_i`` (tile_rows, k: a plain FM's);
    a batch's factor gradient per touched row (rows, fields * k), which (row, field) blocks it reached (``mask``,
    rows x fields: a field-aware FM's) and the touched rows' updated copies (rows, stride); in the sum loops, the
    gradient of the factor block ((n_rows, stride), empty: none); a field-aware FM's entries of one row (their
    factor row, field, value and compact row ``q``)."""

    sums: np.ndarray
    grad: np.ndarray
    mask: np.ndarray
    updated: np.ndarray
    block_grad: np.ndarray
    entry_rows: np.ndarray
    entry_fields: np.ndarray
    entry_values: np.ndarray
    entry_q: np.ndarray


class FactorBatch(NamedTuple):
    """A batch's factor rows for ``factor_step`` and ``factor_write``: ``n_rows`` compact rows (the dense columns'
    first, ``d`` of them when the factors cover them, then slot ``touched[q - d_num]``'s), and the step: the
    gradient's scale ``inv`` (1 / rows), the rate and the step number."""

    n_rows: int
    d: int
    touched: np.ndarray
    inv: float
    lr: float
    step: int


class FactorModel(NamedTuple):
    """An FM's factor rows (``FactorArrays``, k = 0: none) and their scratch (``FactorWork``), as the loops take
    them."""

    arrays: FactorArrays
    work: FactorWork


NO_INDEX = np.empty(0, dtype=np.int64)
NO_FACTORS = FactorArrays(np.empty((0, 0)), 0, 0, 0, np.empty(0, dtype=np.int32))
NO_FACTORS_WORK = FactorWork(np.empty((0, 0)), np.empty((0, 0)), np.empty((0, 0), dtype=np.uint8),
                             np.empty((0, 0)), np.empty((0, 0)), NO_INDEX, NO_INDEX, np.empty(0), NO_INDEX)


class SparseWork(NamedTuple):
    """Scratch of the sparse train loops: the open-addressing table of a batch's slots (``keys``, ``positions``),
    the numbering of its entries and touched slots, and the compact parameters, gradient and state (the batch-1
    loop's: a row's). One per call: loops running at once in several threads each have their own."""

    tile_rows: int
    margins: np.ndarray
    dloss: np.ndarray
    keys: np.ndarray
    positions: np.ndarray
    entry_pos: np.ndarray
    touched: np.ndarray
    touched_keys: np.ndarray
    cw: np.ndarray
    cg: np.ndarray
    cstate: np.ndarray


def sparse_arrays(block: Any, n_rows: int) -> SparseArrays:
    """The four arrays of a sparse block (anything with ``indptr``, ``indices``, ``values`` and ``n_slots``, such as
    ``streamgd.data``'s ``SparseBlock``), checked to describe ``n_rows`` rows."""
    indptr, indices, values = block.indptr, block.indices, block.values
    n_slots = int(block.n_slots)
    if not all(isinstance(a, np.ndarray) for a in (indptr, indices, values)) or not (
            indptr.dtype == np.int64 and indices.dtype == np.int32 and values.dtype == np.float64
            and indptr.ndim == indices.ndim == values.ndim == 1 and indptr.flags.c_contiguous
            and indices.flags.c_contiguous and values.flags.c_contiguous):
        raise ValueError("a sparse block needs contiguous int64 indptr, int32 indices and float64 values")
    if indptr.shape[0] != n_rows + 1 or indptr[0] != 0 or indices.shape[0] != values.shape[0] \
            or indptr[-1] != indices.shape[0] or (n_rows and (np.diff(indptr) < 0).any()):
        raise ValueError(f"the sparse block's row pointers do not describe {n_rows} rows of {indices.shape[0]} entries")
    if indices.shape[0] and (indices.min() < 0 or indices.max() >= n_slots):
        raise ValueError(f"a sparse slot lies outside [0, {n_slots})")
    return SparseArrays(indptr, indices, values, n_slots)


def chunk_vector(X: Any) -> tuple[np.ndarray, bool, int, int]:
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


def column_major_vector(X: Any) -> tuple[np.ndarray, int, int]:
    """(flat column-major vector, n, d) of a dense block, copied only when it is not column-major."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array, got shape {X.shape}")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    X = np.asfortranarray(X)
    return X.ravel(order="F"), X.shape[0], X.shape[1]


def vector(values: Any, name: str, length: int | None = None) -> np.ndarray:
    """``values`` as a contiguous float64 vector (copied only if needed), checking its length."""
    out = np.ascontiguousarray(values, dtype=np.float64)
    if out.ndim != 1 or (length is not None and out.shape[0] != length):
        raise ValueError(f"{name} must be a 1-D array of length {length}, got shape {out.shape}")
    return out


def targets(y: Any, sample_weight: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The target and the sample weights (length 0: all ones) of ``n`` rows, as float64 vectors."""
    y = vector(y, "y", n)
    sample_weight = vector(sample_weight, "sample_weight")
    if sample_weight.shape[0] not in (0, n):
        raise ValueError(f"sample_weight must have length 0 (all ones) or {n}, got {sample_weight.shape[0]}")
    return y, sample_weight


def _laid_out(array: np.ndarray, strided: bool) -> bool:
    """Contiguous, or (``strided``) a writable view whose strides are positive: a view of a per-coordinate block
    (``streamgd.optim.state.coordinate_block``)."""
    return array.flags.c_contiguous or (strided and array.flags.writeable and all(s > 0 for s in array.strides))


def contiguous_params(params: Any) -> Any:
    """``params`` itself when contiguous, else a contiguous copy: what the read-only loops (sums, prediction) take,
    so that they are compiled for one layout only."""
    if isinstance(params, np.ndarray) and not params.flags.c_contiguous:
        return np.ascontiguousarray(params)
    return params


def check_params(params: Any, n_features: int, n_out: int, strided: bool = False) -> None:
    """``params`` must be the contiguous float64 vector of ``n_out * (n_features + 1)`` the loops update
    (``strided``: or a view of a per-coordinate block)."""
    expected = n_out * (n_features + 1)
    if not (isinstance(params, np.ndarray) and params.dtype == np.float64 and params.ndim == 1
            and _laid_out(params, strided) and params.shape[0] == expected):
        raise ValueError(f"params must be a contiguous float64 vector of length n_out * (n_features + 1) = {expected} "
                         f"(updated in place), got {getattr(params, 'dtype', type(params))} "
                         f"{getattr(params, 'shape', '')}")


def check_in_place(array: Any, name: str, shape: tuple[int, ...], strided: bool = False) -> None:
    """``array`` must be a contiguous float64 array of ``shape`` (the loops write into it; ``strided``: or a view
    of a per-coordinate block)."""
    if not (isinstance(array, np.ndarray) and array.dtype == np.float64 and _laid_out(array, strided)
            and array.shape == shape):
        raise ValueError(f"{name} must be a contiguous float64 array of shape {shape} (updated in place), got "
                         f"{getattr(array, 'dtype', type(array))} {getattr(array, 'shape', '')}")


def check_loss(loss_kind: Any) -> int:
    """A loss code the loops know."""
    if not (isinstance(loss_kind, (int, np.integer)) and 0 <= loss_kind < N_LOSSES):
        raise ValueError(f"loss_kind must be a loss code in [0, {N_LOSSES}), got {loss_kind!r}")
    return int(loss_kind)


def check_opt_state(opt_state: Any, opt_kind: Any, n_par: int, strided: bool = False) -> int:
    """``opt_state`` must hold, for each of the rows optimizer ``opt_kind`` reads, a row as long as the parameters;
    returns the optimizer code. More rows (the L1 record, the sparse stamps) are allowed; ``hyper`` names them.
    ``strided``: a view of a per-coordinate block is accepted too."""
    if not (isinstance(opt_kind, (int, np.integer)) and 0 <= opt_kind < N_OPTIMIZERS):
        raise ValueError(f"opt_kind must be an optimizer code in [0, {N_OPTIMIZERS}), got {opt_kind!r}")
    rows = STATE_ROWS[opt_kind]
    shape = getattr(opt_state, "shape", None)
    if not (isinstance(opt_state, np.ndarray) and opt_state.ndim == 2 and opt_state.shape[0] >= rows
            and opt_state.shape[1] == n_par):
        raise ValueError(f"{optimizer_label(opt_kind)} reads {rows} rows of optimizer state, got an array of "
                         f"shape {shape}" + ("" if shape is None or len(shape) != 2 or shape[1] == n_par
                                             else f" (each row must hold the {n_par} parameters)"))
    check_in_place(opt_state, "opt_state", opt_state.shape, strided)
    return int(opt_kind)


def hyper_vector(hyper: Any, opt_state: np.ndarray | None = None) -> np.ndarray:
    """``hyper`` as a float64 vector; with ``opt_state``, checks that the rows it names exist (compiled code does
    not)."""
    hyper = vector(hyper, "hyper", N_HYPER)
    for slot, name in ((H_L1_ROW, "H_L1_ROW"), (H_LAZY_ROW, "H_LAZY_ROW")):
        if opt_state is not None and not (hyper[slot] == int(hyper[slot]) and 0 <= hyper[slot] <= opt_state.shape[0]):
            raise ValueError(f"hyper[{name}] = {hyper[slot]} names no row of an optimizer state with "
                             f"{opt_state.shape[0]} rows")
    return hyper
