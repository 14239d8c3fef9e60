"""Per-row values of a dictionary-encoded column computed once per dictionary entry, then gathered by index.

Parquet stores a click log's text columns dictionary-encoded; read with pyarrow's ``read_dictionary`` a row group's
column is int32 indices plus one dictionary, far shorter than the row group. A row's hash bucket or
vocabulary rank depends on its value only, so it is computed for each dictionary entry once and each row takes its
entry's by index in one compiled loop (``gather_entries``), instead of decoding every row into a string and hashing
it. What that saves is measured by ``scripts/bench_dictionary_reads.py`` (numbers in benchmarks/README.md).

Which columns a reader asks for as dictionaries is ``dictionary_columns``'s rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from ..kernels.jit import njit
from .arrow_numpy import valid_rows

PerEntry = Callable[[pa.ChunkedArray], np.ndarray]


def is_text(kind: pa.DataType) -> bool:
    """Whether an Arrow type is text a Parquet reader can hand back as a dictionary (string, large_string)."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def dictionary_columns(schema: pa.Schema, categorical: Sequence[str], kept_as_read: Sequence[str] = ()) -> list[str]:
    """The categorical columns to read as dictionaries: the text ones, less ``kept_as_read`` (the target and the
    extra columns, which leave the reader as the file has them)."""
    kept = set(kept_as_read)
    return [name for name in categorical
            if name in schema.names and name not in kept and is_text(schema.field(name).type)]


@njit(nogil=True)
def _gather(entries, indices, valid, null_value, out):  # pragma: no cover - compiled
    """out[i] = entries[indices[i]], or ``null_value`` where ``valid`` (empty: every row valid) is False."""
    if valid.shape[0] == 0:
        for i in range(indices.shape[0]):
            out[i] = entries[indices[i]]
    else:
        for i in range(indices.shape[0]):
            out[i] = entries[indices[i]] if valid[i] else null_value


@njit(nogil=True)
def _gather_rows(entries, indices, bits, bit_offset, null_value, rows, out):  # pragma: no cover - compiled
    """out[i] = entries[indices[rows[i]]] (``null_value`` where row ``rows[i]``'s bit in the Arrow validity bitmap
    ``bits`` is 0; empty ``bits``: no row is null): the row order fused into the gather, whose random reads then
    stay inside one column's indices (a row group's fit in cache), not across every column's codes at once
    (``streamgd.features.spec``)."""
    if bits.shape[0] == 0:
        for i in range(rows.shape[0]):
            out[i] = entries[indices[rows[i]]]
    else:
        for i in range(rows.shape[0]):
            r = rows[i]
            at = bit_offset + r
            out[i] = entries[indices[r]] if (bits[at >> 3] >> (at & 7)) & 1 else null_value


_NO_BITS = np.zeros(0, dtype=np.uint8)


def validity_bits(array: pa.Array) -> tuple[np.ndarray, int]:
    """(the Arrow validity bitmap of ``array`` as uint8, without a copy; the bit of its first element): row r is
    valid where bit ``offset + r`` (least significant first) is 1. Empty when no element is null, so a compiled
    loop reads the bitmap only when it must, and no per-row mask is built."""
    if array.null_count == 0:
        return _NO_BITS, 0
    return np.frombuffer(array.buffers()[0], dtype=np.uint8), array.offset


_ALL_VALID = np.zeros(0, dtype=np.bool_)


def dictionary_indices(chunk: pa.DictionaryArray, with_validity: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(indices, valid) of a dictionary array as NumPy, without a copy for int32 and int64 indices; a null's index
    slot is undefined (only read where ``valid`` says the row is not null), ``valid`` is empty when no row is
    null, or when ``with_validity`` is False (see ``validity_bits``)."""
    indices = chunk.indices
    valid = valid_rows(chunk) if chunk.null_count and with_validity else _ALL_VALID
    width = np.dtype(indices.type.to_pandas_dtype())
    numbers = np.frombuffer(indices.buffers()[1], dtype=width)[indices.offset: indices.offset + len(indices)]
    if width != np.int32 and width != np.int64:
        numbers = numbers.astype(np.int32 if width.itemsize < 4 or width == np.uint16 else np.int64)
    return numbers, valid


def gather_entries(column: pa.ChunkedArray, per_entry: PerEntry, null_value: int | np.integer,
                   dtype: np.dtype | type, out: np.ndarray | None = None,
                   rows: np.ndarray | None = None) -> np.ndarray:
    """Each row's value of a dictionary-typed column: ``per_entry`` of each chunk's dictionary (one value per
    entry, of ``dtype``) taken at the row's index; a null row takes ``null_value``. ``per_entry`` sees every
    dictionary as a one-chunk ChunkedArray, and must itself give null entries their null value. ``out``: where
    to write them (a contiguous array of ``dtype``, one value per row). ``rows``: the rows to take, in order
    (int64 positions in the column; None: every row as stored), so ``out[i]`` is row ``rows[i]``'s value."""
    if rows is not None:
        out = np.empty(len(rows), dtype=dtype) if out is None else out
        if column.num_chunks == 1 and len(column.chunk(0)):
            chunk = column.chunk(0)
            entries = np.ascontiguousarray(per_entry(pa.chunked_array([chunk.dictionary])), dtype=dtype)
            indices = dictionary_indices(chunk, with_validity=False)[0]
            bits, bit_offset = validity_bits(chunk)
            _gather_rows(entries, indices, bits, bit_offset, out.dtype.type(null_value), rows, out)
        else:  # several chunks (a step of several units): gathered as stored, then taken in order
            np.take(gather_entries(column, per_entry, null_value, dtype), rows, out=out)
        return out
    out = np.empty(len(column), dtype=dtype) if out is None else out
    start = 0
    for chunk in column.chunks:
        n = len(chunk)
        if n == 0:
            continue
        entries = np.ascontiguousarray(per_entry(pa.chunked_array([chunk.dictionary])), dtype=dtype)
        indices, valid = dictionary_indices(chunk)
        _gather(entries, indices, valid, out.dtype.type(null_value), out[start:start + n])
        start += n
    return out
