"""Arrow arrays to NumPy and back without pandas.

pyarrow's ``to_numpy``, ``pa.array`` and ``pa.scalar`` import pandas whenever it is installed, even for an array
of numbers; a ``streamgd fit`` of Parquet files then pays that import (and its resident memory) for nothing it
uses (``scripts/bench_startup.py --fit``; ``tests/test_startup_imports.py`` keeps pandas out). The values of a
primitive array are one buffer that NumPy reads as it is, and its validity is a bitmap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

__all__ = ["from_numpy", "numbers", "strings", "valid_rows"]

LARGE_STRING = pa.large_string()


def _is_primitive(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype)


def valid_rows(array: pa.Array) -> np.ndarray:
    """One bool per row of ``array``: True where the row is not null (``array.is_valid().to_numpy()``)."""
    n = len(array)
    bitmap = array.buffers()[0]
    if array.null_count == 0 or bitmap is None:  # no bitmap with nulls: a null-typed array, every row null
        return np.full(n, array.null_count == 0, dtype=np.bool_)
    return _unpacked(bitmap, array.offset, n)


def _unpacked(bitmap: pa.Buffer, offset: int, n: int) -> np.ndarray:
    """Bits ``offset .. offset + n`` of an Arrow bitmap (least significant bit first) as bools."""
    bits = np.frombuffer(bitmap, dtype=np.uint8)
    return np.unpackbits(bits, count=offset + n, bitorder="little")[offset:].view(np.bool_)


def _chunk_values(array: pa.Array) -> np.ndarray:
    """The values of one primitive array, a null row's slot undefined: a read-only view of its data buffer
    (booleans: unpacked)."""
    n, data = len(array), array.buffers()[1]
    if pa.types.is_boolean(array.type):
        if data is None:
            return np.zeros(n, dtype=np.bool_)
        return _unpacked(data, array.offset, n)
    dtype = np.dtype(array.type.to_pandas_dtype())
    if data is None:  # an empty array may have no buffer
        return np.zeros(n, dtype=dtype)
    values = np.frombuffer(data, dtype=dtype)[array.offset: array.offset + n]
    values.flags.writeable = False  # Arrow data is immutable, as to_numpy's zero-copy views say
    return values


def numbers(column: pa.Array | pa.ChunkedArray, null: float = np.nan) -> np.ndarray:
    """The values of a column of numbers or booleans as NumPy, what ``to_numpy(zero_copy_only=False)`` gives: a
    read-only view of a single chunk without nulls, else a copy; with nulls, ``null`` in their place (NaN: floats,
    float64 for integers and booleans; -1 keeps integers integers, as ``fill_null(-1)``). Other types go through
    ``to_numpy``."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if not _is_primitive(column.type):
        return column.to_numpy(zero_copy_only=False)
    has_nulls = column.null_count > 0
    parts = []
    for chunk in chunks:
        values = _chunk_values(chunk)
        if has_nulls:
            values = np.where(valid_rows(chunk), values, null)
        parts.append(values)
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.zeros(0, dtype=_empty_dtype(column.type))
    return np.concatenate(parts)


def _empty_dtype(dtype: pa.DataType) -> np.dtype:
    return np.dtype(np.bool_) if pa.types.is_boolean(dtype) else np.dtype(dtype.to_pandas_dtype())


def from_numpy(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """A 1-D array of numbers, booleans or str as an Arrow array (``pa.array(values, mask=mask)``): numbers share
    its memory; ``mask``: True where the row is null."""
    values = np.ascontiguousarray(values)
    if values.ndim != 1 or values.dtype.kind not in "iufbU":
        raise TypeError(f"from_numpy takes a 1-D array of numbers, booleans or str, got {values.dtype} of shape "
                        f"{values.shape}")
    if values.dtype.kind == "U":
        return strings(values.tolist(), pa.string(), mask)
    validity = _validity(mask, len(values))
    if values.dtype.kind == "b":
        data = pa.py_buffer(np.packbits(values, bitorder="little"))
        return pa.Array.from_buffers(pa.bool_(), len(values), [validity, data])
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [validity, pa.py_buffer(values)])


def _validity(mask: np.ndarray | None, n: int) -> pa.Buffer | None:
    """The validity bitmap of rows whose ``mask`` is False (None: no mask, or nothing masked)."""
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=np.bool_)
    if mask.shape != (n,):
        raise ValueError(f"the mask has shape {mask.shape}, the values ({n},)")
    if not mask.any():
        return None
    return pa.py_buffer(np.packbits(~mask, bitorder="little"))


def strings(values: Sequence[str], arrow_type: pa.DataType = LARGE_STRING, mask: np.ndarray | None = None
            ) -> pa.Array:
    """A sequence of Python strings as an Arrow string or large_string array (``pa.array(values,
    arrow_type, mask=mask)``): their UTF-8 bytes joined, and the offsets of their ends; a masked row is null."""
    if not (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)):
        raise TypeError(f"strings makes string or large_string arrays, not {arrow_type}")
    if not all(isinstance(value, str) for value in values):
        raise TypeError("strings takes a sequence of str")
    validity = _validity(mask, len(values))
    if validity is not None:
        values = ["" if masked else value for value, masked in zip(values, mask)]
    encoded = [value.encode("utf-8") for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64 if pa.types.is_large_string(arrow_type) else np.int32)
    np.cumsum([len(value) for value in encoded], out=offsets[1:])
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(arrow_type, len(encoded), buffers)
