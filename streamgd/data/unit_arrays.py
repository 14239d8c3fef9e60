"""A unit's transformed rows as plain arrays, cut from the chunk that delivered them, and a plan step's chunk
gathered back from such arrays in the step's row order.

What the epoch cache stores per unit (``streamgd.data.cache``): the dense block after imputation and
standardization, the sparse block, the target and the extra columns, with the rows in the order the first epoch's
chunk delivered them (its permutation, less the rows drop-rows left out) and ``slot``: for each row of the unit in
file order, where it is stored (-1: left out). Storing the chunk as it was delivered costs the first epoch a write
and nothing else: no second conversion in file order, no second copy (which would lengthen the first epoch
severalfold: benchmarks/README.md, "Figures quoted by the code"). Any later step's chunk is a gather through ``slot`` and equals, bit for
bit, the chunk the reader converts from Parquet: conversion and transform work value by value, so the stored
values are the values that conversion would deliver for those rows.

>>> import numpy as np
>>> from streamgd.data.dataset import Unit
>>> from streamgd.data.shuffle import Step
>>> part = UnitArrays(np.asfortranarray([[2.0], [0.0], [1.0]]), np.array([0.0, 1.0, 0.0]), None, None,
...                   slot=np.array([1, 2, 0]))
>>> X, sparse, y, order = gather_step([part], Step(0, (Unit(0, 0, 0, 3, 0),), None))
>>> X[:, 0].tolist(), y.tolist(), order
([0.0, 1.0, 2.0], [1.0, 0.0, 0.0], None)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..kernels.jit import njit
from .chunk_buffers import CHUNK_BUFFERS
from .shuffle import Step
from .sparse_block import SparseBlock


@dataclass
class UnitArrays:
    """One unit's transformed rows: ``X`` (rows, n_dense) column-major, ``y`` (float64) or None, the sparse block
    or None, the extra columns (an Arrow table of all the unit's rows, in file order) or None, and ``slot``: the
    stored position of each of the unit's rows in file order, -1 for a row left out (None: all rows, in file
    order)."""

    X: np.ndarray
    y: np.ndarray | None
    sparse: SparseBlock | None
    extra: pa.Table | None
    slot: np.ndarray | None = None
    stored_bytes: int = 0  # the bytes of its cache file, when mapped from one
    # mapped from a cache file whose first bytes are X: hands back the pages of bytes [start, stop) of the file
    hand_back: Callable[[int, int], None] | None = None

    def hand_back_columns(self, columns: int) -> None:
        """Hand back the mapped pages of X's first ``columns`` columns (read by a gather)."""
        if self.hand_back is not None:
            self.hand_back(0, columns * self.X.shape[0] * self.X.dtype.itemsize)

    def hand_back_rest(self) -> None:
        """Hand back the mapped pages of what follows X (read by a gather)."""
        if self.hand_back is not None:
            self.hand_back(self.X.nbytes, 1 << 62)

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (the extra columns' too)."""
        arrays = sum(a.nbytes for a in (self.X, self.y, self.slot) if a is not None)
        return arrays + (self.sparse.nbytes if self.sparse is not None else 0) \
            + (self.extra.nbytes if self.extra is not None else 0)


@njit(nogil=True)
def _gather_columns(source, rows, dest, out, lo, hi):  # pragma: no cover - compiled
    # columns [lo, hi): each read once in order first, a value per cache line, then gathered: the hardware
    # prefetcher streams it into cache and the random reads hit (benchmarks/README.md, "Figures quoted by the code"). ``dest`` empty: row k goes to row k of ``out``, else to row dest[k]
    warm = 0.0
    direct = dest.shape[0] == 0
    for j in range(lo, hi):
        for i in range(0, source.shape[0], 16):
            warm += source[i, j]
        if direct:
            for k in range(rows.shape[0]):
                out[k, j] = source[rows[k], j]
        else:
            for k in range(rows.shape[0]):
                out[dest[k], j] = source[rows[k], j]
    return warm


@njit(nogil=True)
def _take_entries(indptr, indices, values, rows, dest, out_indptr, out_indices, out_values):  # pragma: no cover
    for k in range(rows.shape[0]):
        o = out_indptr[dest[k]]
        for e in range(indptr[rows[k]], indptr[rows[k] + 1]):
            out_indices[o] = indices[e]
            out_values[o] = values[e]
            o += 1


@njit(nogil=True)
def _through(slot, positions):  # pragma: no cover - compiled
    # slot[positions] as int64 (one pass, no temporary), and how many are -1 (rows not stored)
    out = np.empty(positions.shape[0], dtype=np.int64)
    missing = 0
    for k in range(positions.shape[0]):
        out[k] = slot[positions[k]]
        missing += out[k] < 0
    return out, missing


@njit(nogil=True)
def _gather_vector(source, rows, dest, out):  # pragma: no cover - compiled
    # read in order first, a value per cache line, as ``_gather_columns`` does (faster for float64 vectors; for
    # ``_through``'s int32 slots it made no difference: benchmarks/README.md, "Figures quoted by the code")
    warm = 0.0
    for i in range(0, source.shape[0], 8):
        warm += source[i]
    if dest.shape[0] == 0:
        for k in range(rows.shape[0]):
            out[k] = source[rows[k]]
    else:
        for k in range(rows.shape[0]):
            out[dest[k]] = source[rows[k]]
    return warm


def _readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view: mapped and in-memory sources then share one compiled specialisation."""
    view = array.view()
    view.flags.writeable = False
    return view


def _stored_positions(parts: list[UnitArrays], positions: np.ndarray, starts: np.ndarray,
                      owner: np.ndarray | None) -> np.ndarray:
    """Where each of ``positions`` (rows of the step's units in file order) is stored in its part (-1: not)."""
    if owner is None:
        slot = parts[0].slot
        return positions if slot is None else _through(_readonly(slot), positions)[0]
    stored = np.empty(positions.shape[0], dtype=np.int64)
    for u, part in enumerate(parts):
        mine = owner == u
        local = positions[mine] - starts[u]
        stored[mine] = local if part.slot is None else part.slot[local]
    return stored


class StepGather:
    """A step's chunk gathered from its units' arrays (``parts``), in the step's row order, less the rows not
    stored: the target, the sparse block and the row order at once, the dense columns in ranges
    (``gather_columns``), so two threads can share the work; ``finish`` gathers what is left.

    The parts' arrays (maps of cache files) must stay open until ``finish`` returns.
    """

    def __init__(self, parts: list[UnitArrays], step: Step):
        sizes = np.array([u.n_rows for u in step.units], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        order = step.row_order()
        positions = np.arange(starts[-1]) if order is None else order
        owner = None if len(parts) == 1 else np.searchsorted(starts, positions, side="right") - 1
        stored = _stored_positions(parts, positions, starts, owner)
        if any(p.slot is not None for p in parts):
            kept = stored >= 0
            if not kept.all():
                order, stored = positions[kept], stored[kept]
                owner = None if owner is None else owner[kept]
        m = stored.shape[0]
        # each part: the stored rows it gives, and where they go (empty: every delivered row, in order)
        if owner is None:
            self.routes = [(parts[0], np.ascontiguousarray(stored, dtype=np.int64), _ALL)]
        else:
            self.routes = []
            for u, part in enumerate(parts):
                dest = np.flatnonzero(owner == u)
                self.routes.append((part, np.ascontiguousarray(stored[dest], dtype=np.int64), dest))
        first = parts[0]
        self.order = order
        self.X = CHUNK_BUFFERS.empty((m, first.X.shape[1]), first.X.dtype, order="F")
        self.done = 0  # dense columns gathered so far
        self.y = None if first.y is None else self._gather_vector("y", m)
        self.sparse = None if first.sparse is None else self._gather_sparse(m)
        for part, _, _ in self.routes:  # resident memory keeps only the columns still to be gathered
            part.hand_back_rest()

    @property
    def n_columns(self) -> int:
        return self.X.shape[1]

    def gather_columns(self, stop: int) -> None:
        """Gather the dense columns from ``done`` up to ``stop``."""
        stop = min(stop, self.n_columns)
        if stop > self.done:
            for part, rows, dest in self.routes:
                _gather_columns(_readonly(part.X), rows, dest, self.X, self.done, stop)
                part.hand_back_columns(stop)
            self.done = stop

    def finish(self) -> tuple[np.ndarray, SparseBlock | None, np.ndarray | None, np.ndarray | None]:
        """(X, sparse, y, row_order) of the step; ``row_order`` as ``Chunk.row_order`` has it."""
        self.gather_columns(self.n_columns)
        self.routes = []  # the parts' arrays are not needed any more
        return self.X, self.sparse, self.y, self.order

    def _gather_vector(self, name: str, m: int) -> np.ndarray:
        out = np.empty(m, dtype=np.float64)
        for part, rows, dest in self.routes:
            _gather_vector(_readonly(getattr(part, name)), rows, dest, out)
        return out

    def _gather_sparse(self, m: int) -> SparseBlock:
        lengths = np.empty(m, dtype=np.int64)
        for part, rows, dest in self.routes:
            row_lengths = np.diff(part.sparse.indptr)[rows]
            if dest.shape[0] == 0:
                lengths[:] = row_lengths
            else:
                lengths[dest] = row_lengths
        indptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.empty(int(indptr[-1]), dtype=np.int32)
        values = np.empty(int(indptr[-1]), dtype=np.float64)
        for part, rows, dest in self.routes:
            block = part.sparse
            _take_entries(_readonly(block.indptr), _readonly(block.indices), _readonly(block.values), rows,
                          np.arange(m, dtype=np.int64) if dest.shape[0] == 0 else dest, indptr, indices, values)
        return SparseBlock(indptr, indices, values, self.routes[0][0].sparse.n_slots)


_ALL = np.empty(0, dtype=np.int64)  # a route's destinations when its rows fill the chunk in order


def gather_step(parts: list[UnitArrays], step: Step
                ) -> tuple[np.ndarray, SparseBlock | None, np.ndarray | None, np.ndarray | None]:
    """(X, sparse, y, row_order) of the step whose units' arrays are ``parts``: rows in the step's row order, less
    the rows not stored; ``row_order`` as ``Chunk.row_order`` has it."""
    return StepGather(parts, step).finish()


def split_chunk(X: np.ndarray, sparse: SparseBlock | None, y: np.ndarray | None, row_order: np.ndarray | None,
                extra: pa.Table | None, step: Step) -> list[UnitArrays]:
    """The arrays of each of the step's units, cut from the step's chunk as delivered (no copy for a step of one
    unit)."""
    sizes = [u.n_rows for u in step.units]
    if len(sizes) == 1:
        return [UnitArrays(X, y, sparse, extra, None if row_order is None else _slots(row_order, sizes[0]))]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    positions = np.arange(X.shape[0]) if row_order is None else row_order
    owner = np.searchsorted(starts, positions, side="right") - 1
    parts = []
    for u, n in enumerate(sizes):
        mine = np.flatnonzero(owner == u)
        parts.append(UnitArrays(np.asfortranarray(X[mine]), None if y is None else y[mine],
                                None if sparse is None else sparse.take(mine),
                                None if extra is None else extra.slice(int(starts[u]), n),
                                _slots(positions[mine] - starts[u], n)))
    return parts


def _slots(rows: np.ndarray, n: int) -> np.ndarray:
    """For each of a unit's ``n`` rows in file order, its position in ``rows`` (-1: absent)."""
    slot = np.full(n, -1, dtype=np.int32 if n < 2**31 else np.int64)
    slot[rows] = np.arange(rows.shape[0], dtype=slot.dtype)
    return slot


def concat_extra(parts: list[UnitArrays]) -> pa.Table | None:
    """The extra columns of the step's units, one after another in file order (as the reader delivers them)."""
    tables = [p.extra for p in parts]
    if tables[0] is None:
        return None
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)
