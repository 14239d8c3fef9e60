"""The hashes of categorical values: Vowpal Wabbit's signed 32-bit FNV-1a of a column's values (seeded by the column's
name), of interactions (the two value hashes' 8 bytes), and a 64-bit FNV-1a key for one-hot vocabulary lookups.

A column's values are hashed row by row from its string buffers (``value_hashes``), or, for a dictionary-typed
column as the reader hands over a Parquet dictionary page, once per dictionary entry and gathered by index
(``column_hashes``, ``streamgd.data.dictionary_slots``): the same uint32 per row either way.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..data.arrow_numpy import valid_rows
from ..data.dictionary_slots import gather_entries
from ..kernels.jit import njit
from .stats import category_strings

NULL_MIX = 0x9E3779B9  # a null's hash: the column's seed ^ NULL_MIX
_EVERY_ROW = np.zeros(0, dtype=np.bool_)  # the validity mask of a chunk without nulls: none needed


def pair_hashes(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """FNV-1a (32-bit) of the 8 bytes of two value hashes, little-endian: an interaction's hash (written into
    ``out``, a uint32 array, when given).

    >>> h = pair_hashes(np.array([1], np.uint32), np.array([2], np.uint32))
    >>> int(h[0]) == fnv1a(bytes([1, 0, 0, 0, 2, 0, 0, 0]))
    True
    """
    out = np.empty(a.shape[0], dtype=np.uint32) if out is None else out
    _pair_hash_kernel(np.ascontiguousarray(a, dtype=np.uint32), np.ascontiguousarray(b, dtype=np.uint32), out)
    return out


@njit(nogil=True)
def _pair_hash_kernel(a, b, out):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        h = np.uint64(2166136261)
        for word in (np.uint64(a[i]), np.uint64(b[i])):
            for shift in range(0, 32, 8):
                h = ((h ^ ((word >> np.uint64(shift)) & np.uint64(0xFF))) * np.uint64(16777619)) \
                    & np.uint64(0xFFFFFFFF)
        out[i] = h


@njit(nogil=True)
def _fnv1a_kernel(offsets, data, valid, seed, out):  # pragma: no cover - compiled
    every = valid.shape[0] == 0  # no null: no mask
    for i in range(out.shape[0]):
        h = seed
        if every or valid[i]:
            for k in range(offsets[i], offsets[i + 1]):
                h = ((h ^ data[k]) * np.uint32(16777619)) & np.uint32(0xFFFFFFFF)
        else:
            h = (h ^ np.uint32(NULL_MIX)) & np.uint32(0xFFFFFFFF)
        out[i] = h


@njit(nogil=True)
def _fnv1a64_kernel(offsets, data, out):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        h = np.uint64(14695981039346656037)
        for k in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[k])) * np.uint64(1099511628211)
        out[i] = h


def fnv1a(text: bytes, seed: int = 2166136261) -> int:
    """32-bit FNV-1a of ``text`` starting from ``seed`` (the offset basis by default).

    >>> hex(fnv1a(b"a"))
    '0xe40c292c'
    """
    h = seed
    for byte in text:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def _string_buffers(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, bytes) of a string array (int32 or int64 offsets), without copying."""
    if not pa.types.is_string(chunk.type):
        chunk = chunk.cast(pa.large_string())
    width = np.int32 if pa.types.is_string(chunk.type) else np.int64
    offsets = np.frombuffer(chunk.buffers()[1], dtype=width)[chunk.offset: chunk.offset + len(chunk) + 1]
    data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8) if chunk.buffers()[2] is not None \
        else np.zeros(0, np.uint8)
    return offsets, data


def value_hashes(strings: pa.ChunkedArray, name: str) -> np.ndarray:
    """fnv1a(value, seed=fnv1a(name + '=')) of every row (uint32); a null hashes as the seed ^ 0x9E3779B9."""
    seed = np.uint32(fnv1a(name.encode() + b"="))
    parts = []
    for chunk in strings.chunks:
        offsets, data = _string_buffers(chunk)
        out = np.empty(len(chunk), dtype=np.uint32)
        valid = valid_rows(chunk) if chunk.null_count else _EVERY_ROW
        _fnv1a_kernel(offsets, data, valid, seed, out)
        parts.append(out)
    return np.concatenate(parts) if parts else np.zeros(0, np.uint32)


def column_hashes(column: pa.ChunkedArray, name: str, out: np.ndarray | None = None,
                  rows: np.ndarray | None = None) -> np.ndarray:
    """``value_hashes`` of a categorical column's every row: a dictionary-typed column's (as a reader with
    ``read_dictionary`` gives it) hashed once per dictionary entry and gathered by index, equal bit for bit to
    hashing its decoded strings; any other column row by row. ``out``: a uint32 array to write them to.
    ``rows``: the rows to hash, in order (int64 positions; None: every row as stored)."""
    if pa.types.is_dictionary(column.type):
        null_hash = np.uint32(fnv1a(name.encode() + b"=")) ^ np.uint32(NULL_MIX)
        return gather_entries(column, lambda entries: value_hashes(category_strings(entries), name), null_hash,
                              np.uint32, out, rows)
    hashes = value_hashes(category_strings(column), name)
    if rows is not None:
        hashes = hashes[rows]
    if out is None:
        return hashes
    out[:] = hashes
    return out


def value_hashes64(strings: pa.ChunkedArray) -> np.ndarray:
    """64-bit FNV-1a of every row's value (nulls hash as the empty string): the one-hot vocabulary's lookup key.
    Two values of a vocabulary of a million share a key with probability below 1e-7."""
    parts = []
    for chunk in strings.chunks:
        offsets, data = _string_buffers(chunk)
        out = np.empty(len(chunk), dtype=np.uint64)
        _fnv1a64_kernel(offsets, data, out)
        parts.append(out)
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)
