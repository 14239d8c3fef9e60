"""The sparse block of a chunk: per row, the active slots of its categorical features (one-hot slots, hash
buckets, hashed interactions) and their values, in compressed sparse row (CSR) form.

A model with ``n_slots`` sparse slots has ``d + n_slots`` features: the chunk's dense block gives features
``0 .. d - 1`` and slot ``c`` is feature ``d + c``. Nothing here is ever rows x slots.

>>> block = SparseBlock.from_fixed(np.array([[0, 3], [2, 3]]), np.ones((2, 2)), n_slots=4)
>>> block.indptr.tolist(), block.to_dense().tolist()
([0, 2, 4], [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
>>> block.take(np.array([1])).to_dense().tolist()
[[0.0, 0.0, 1.0, 1.0]]
>>> names = BlockNames(["age"], n_slots=2**20)
>>> len(names), names[0], names[1], names[-1]
(1048577, 'age', 'x0', 'x1048575')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


@dataclass
class SparseBlock:
    """Rows ``r``'s entries are ``indices[indptr[r]: indptr[r + 1]]`` (slots in ``[0, n_slots)``) with ``values``
    alike; int64 row pointers, int32 slots, float64 values."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    n_slots: int

    @property
    def n_rows(self) -> int:
        return self.indptr.shape[0] - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + self.values.nbytes

    @classmethod
    def from_fixed(cls, slots: np.ndarray, values: np.ndarray, n_slots: int) -> SparseBlock:
        """A block with the same number of entries in every row: ``slots`` and ``values`` of shape (rows, k)."""
        rows, k = slots.shape
        return cls(np.arange(0, rows * k + 1, k, dtype=np.int64)[: rows + 1] if k else np.zeros(rows + 1, np.int64),
                   np.ascontiguousarray(slots, dtype=np.int32).reshape(-1),
                   np.ascontiguousarray(values, dtype=np.float64).reshape(-1), int(n_slots))

    @classmethod
    def from_csr(cls, matrix: Any) -> SparseBlock:
        """A ``scipy.sparse`` matrix (any format; converted to CSR with sorted, summed duplicates)."""
        csr = matrix.tocsr()
        if not csr.has_canonical_format:  # sum_duplicates works in place: not on the caller's matrix
            csr = csr.copy()
            csr.sum_duplicates()
        return cls(np.ascontiguousarray(csr.indptr, dtype=np.int64), np.ascontiguousarray(csr.indices, dtype=np.int32),
                   np.ascontiguousarray(csr.data, dtype=np.float64), int(csr.shape[1]))

    def take(self, rows: np.ndarray) -> SparseBlock:
        """The block of ``rows`` (positions or a boolean mask), in that order."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows, dtype=np.int64)
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        lengths = stops - starts
        indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # each entry's source position: its row's start plus its rank within the row
        source = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseBlock(indptr, self.indices[source], self.values[source], self.n_slots)

    def check(self, n_rows: int) -> None:
        """Raise ValueError unless this is a well-formed block of ``n_rows`` rows (compiled code checks nothing)."""
        indptr, indices, values = self.indptr, self.indices, self.values
        if not (indptr.dtype == np.int64 and indices.dtype == np.int32 and values.dtype == np.float64
                and indptr.ndim == indices.ndim == values.ndim == 1 and indptr.flags.c_contiguous
                and indices.flags.c_contiguous and values.flags.c_contiguous):
            raise ValueError("a sparse block needs contiguous int64 indptr, int32 indices and float64 values")
        if indptr.shape[0] != n_rows + 1 or indptr[0] != 0 or indices.shape[0] != values.shape[0] \
                or indptr[-1] != indices.shape[0] or (n_rows and (np.diff(indptr) < 0).any()):
            raise ValueError(f"the sparse block's row pointers do not describe {n_rows} rows of "
                             f"{indices.shape[0]} entries")
        if indices.shape[0] and (indices.min() < 0 or indices.max() >= self.n_slots):
            raise ValueError(f"a sparse slot lies outside [0, {self.n_slots})")

    def to_dense(self) -> np.ndarray:
        """The block as a dense (rows, n_slots) float64 array: for tests and small blocks only."""
        out = np.zeros((self.n_rows, self.n_slots))
        rows = np.repeat(np.arange(self.n_rows), np.diff(self.indptr))
        np.add.at(out, (rows, self.indices), self.values)
        return out


def concatenate(blocks: list[SparseBlock]) -> SparseBlock:
    """The rows of ``blocks`` one after another (same ``n_slots``)."""
    if len(blocks) == 1:
        return blocks[0]
    offsets = np.cumsum([0] + [b.nnz for b in blocks[:-1]])
    indptr = np.concatenate([blocks[0].indptr[:1]] + [b.indptr[1:] + o for b, o in zip(blocks, offsets)])
    return SparseBlock(indptr, np.concatenate([b.indices for b in blocks]),
                       np.concatenate([b.values for b in blocks]), blocks[0].n_slots)


class FeatureBlocks(NamedTuple):
    """A model's input already split into its dense block and sparse block (what the reader delivers)."""

    dense: np.ndarray
    sparse: SparseBlock | None


class ComputedNames(Sequence):
    """Feature names computed on demand: the dense block's names, then each slot's (``slot_name``). A hashed
    model or a ``FeatureHasher`` matrix has 2^20 features and more: listing their names would cost more than the
    model."""

    def __init__(self, dense: Sequence[str], n_slots: int):
        self.dense = list(dense)
        self.n_slots = int(n_slots)

    def slot_name(self, slot: int) -> str:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.dense) + self.n_slots

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        d = len(self.dense)
        return self.dense[index] if index < d else self.slot_name(index - d)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == len(self) and all(a == b for a, b in zip(self, other))


class BlockNames(ComputedNames):
    """The names of a model's features when its slots have no names of their own (a ``scipy.sparse`` matrix's
    columns): the dense block's names, then ``prefix + str(slot)``."""

    def __init__(self, dense: Sequence[str], n_slots: int, prefix: str = "x"):
        super().__init__(dense, n_slots)
        self.prefix = prefix

    def slot_name(self, slot: int) -> str:
        return f"{self.prefix}{slot}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BlockNames):
            return (self.dense, self.n_slots, self.prefix) == (other.dense, other.n_slots, other.prefix)
        return super().__eq__(other)

    def __repr__(self) -> str:
        return f"BlockNames({len(self.dense)} dense + {self.n_slots} slots)"
