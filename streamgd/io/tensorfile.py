"""streamgd's files on disk (models and checkpoints): one safetensors file each, arrays as tensors and a JSON
header under the ``streamgd`` key, with a format name and version; written atomically, read without pickle.
A path may name an object in a store (``s3://bucket/model.safetensors``): written whole in one upload, read
from a downloaded copy (see ``streamgd.io.storage``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ModelFileError
from .storage import Location, local_copy, resolve, write_object

_DTYPES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64",
           np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}


def save_safetensors(tensors: dict[str, np.ndarray], path: str, metadata: dict[str, str]) -> None:
    """Write a safetensors file (the format's header: an 8-byte little-endian length, then JSON naming each
    tensor's dtype, shape and byte range; then the bytes) straight from the arrays' memory: no copy of a tensor
    is made (``safetensors.numpy.save_file`` makes one of each, which for a 2^24-slot model is hundreds of MB); a
    strided view (a factorization machine's factors without their state) is written in slices of its rows."""
    header: dict = {"__metadata__": metadata}
    offset = 0
    arrays = []
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        if array.dtype not in _DTYPES:
            raise TypeError(f"cannot store a tensor of dtype {array.dtype}")
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": _DTYPES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        arrays.append(array)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors' own writer pads it
    with open(path, "wb") as stream:
        stream.write(len(text).to_bytes(8, "little"))
        stream.write(text)
        for array in arrays:
            _write_array(stream, array)


SLICE_BYTES = 1 << 23  # a strided tensor's values are copied this many bytes (8 MB) at a time


def _write_array(stream: Any, array: np.ndarray) -> None:
    """Write ``array``'s bytes in C order: straight from its memory when contiguous, else ``SLICE_BYTES`` at a
    time (a copy of one slice, never of the whole tensor): rows of it, or pieces of a row longer than that (an
    optimizer state's row of a per-coordinate block, ``streamgd.optim.state.coordinate_block``: a 2^24-slot
    row is 134 MB)."""
    for piece in c_order_pieces(array):
        stream.write(memoryview(piece.reshape(-1)).cast("B"))
        del piece  # freed before the next slice is copied: one slice at a time


def c_order_pieces(array: np.ndarray, limit: int | None = None) -> Iterator[np.ndarray]:
    """``array``'s values in C order as contiguous pieces whose bytes, joined, are the array's: the array itself
    when contiguous, else copies of at most about ``limit`` bytes (a row, several rows, or a piece of a row),
    so that a strided view is written or hashed without a copy of its own size (``limit``: ``SLICE_BYTES``)."""
    limit = SLICE_BYTES if limit is None else limit
    if not array.nbytes:
        return
    if array.ndim == 0 or array.flags.c_contiguous:
        yield np.ascontiguousarray(array)
        return
    if array.ndim > 1 and array[0].nbytes > limit:  # a long row: its pieces, row after row
        for row in array:
            yield from c_order_pieces(row, limit)
        return
    row_bytes = array[0].nbytes if array.ndim > 1 else array.itemsize
    step = max(1, limit // max(row_bytes, 1))
    for start in range(0, array.shape[0], step):
        yield np.ascontiguousarray(array[start:start + step])


def read_tensor(path: str | os.PathLike, name: str) -> np.ndarray:
    """One tensor of a file ``read_tensor_file`` has already checked (ModelFileError if it is gone since)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(os.fspath(path), framework="numpy") as handle:
            return handle.get_tensor(name)
    except (SafetensorError, OSError, ValueError, TypeError) as exc:  # TypeError: a dtype numpy lacks (BF16)
        raise ModelFileError(f"{path}: cannot read its {name} ({type(exc).__name__}: {exc})") from None


_READ_DTYPES = {code: dtype for dtype, code in _DTYPES.items()}


def tensor_layout(path: str | os.PathLike) -> dict[str, tuple[np.dtype | None, tuple[int, ...]]]:
    """Each tensor of a local file ``read_tensor_file`` has checked: its dtype (None: one NumPy lacks) and shape,
    read from the header alone."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(os.fspath(path), framework="numpy") as handle:
            layout, names = {}, handle.keys()
            for name in names:
                piece = handle.get_slice(name)
                layout[name] = (_READ_DTYPES.get(piece.get_dtype()), tuple(piece.get_shape()))
            return layout
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: cannot read its header ({type(exc).__name__}: {exc})") from None


def read_tensor_into(path: str | os.PathLike, name: str, out: np.ndarray) -> None:
    """Tensor ``name`` of a local file into ``out`` (its shape; a strided view, such as a factorization machine's
    factors beside their state, is filled too), ``SLICE_BYTES`` at a time: a whole tensor is never held twice
    (``read_tensor`` returns a new array). Read with plain reads, not through a memory map: a mapped file's pages
    count in the process's RSS while it is open, so reading a model through one held it twice over in RSS
    (scripts/bench_param_memory.py, predict)."""
    try:
        with open(os.fspath(path), "rb") as stream:
            length = int.from_bytes(stream.read(8), "little")
            entry = json.loads(stream.read(length))[name]
            dtype = _READ_DTYPES.get(entry["dtype"])
            shape = tuple(int(n) for n in entry["shape"])
            begin, end = (int(n) for n in entry["data_offsets"])
            if dtype is None:
                raise ValueError(f"its dtype {entry['dtype']} is not one NumPy reads")
            dtype = dtype.newbyteorder("<")
            if shape != out.shape:
                raise ValueError(f"it has shape {shape}, expected {out.shape}")
            if end - begin != math.prod(shape) * dtype.itemsize:
                raise ValueError("its byte range does not match its shape")
            _read_slices(stream, 8 + length + begin, dtype, out)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: cannot read its {name} ({type(exc).__name__}: {exc})") from None


def _read_slices(stream: Any, offset: int, dtype: np.dtype, out: np.ndarray) -> None:
    """Fill ``out`` from the C-order values at ``offset`` of ``stream``: rows ``SLICE_BYTES`` at a time, a row
    longer than that (a 2^24-slot coef) in pieces along its second axis."""
    def read(first: int, count: int) -> np.ndarray:  # ``count`` values from value ``first`` on
        stream.seek(offset + first * dtype.itemsize)
        values = np.empty(count, dtype)
        if count and stream.readinto(memoryview(values).cast("B")) != values.nbytes:
            raise ValueError("the file ends before its data")
        return values

    if out.ndim == 0:
        out[...] = read(0, 1)[0]
        return
    row = math.prod(out.shape[1:])  # values per row
    step = max(1, SLICE_BYTES // max(row * dtype.itemsize, 1))
    for start in range(0, out.shape[0], step):
        stop = min(start + step, out.shape[0])
        if out.ndim == 1 or row * dtype.itemsize <= SLICE_BYTES:
            out[start:stop] = read(start * row, (stop - start) * row).reshape((stop - start, *out.shape[1:]))
            continue
        inner = math.prod(out.shape[2:])  # values per entry of the second axis
        across = max(1, SLICE_BYTES // max(inner * dtype.itemsize, 1))
        for column in range(0, out.shape[1], across):
            last = min(column + across, out.shape[1])
            out[start, column:last] = read(start * row + column * inner, (last - column) * inner).reshape(
                (last - column, *out.shape[2:]))


def write_tensor_file(path: str | os.PathLike | Location, tensors: dict[str, np.ndarray], file_format: str,
                      version: int, meta: dict, what: str, storage_options: dict | None = None) -> None:
    """Write ``tensors`` and the JSON ``meta`` as one safetensors file, atomically (``what``: "a model file", for
    the error a value that JSON cannot hold raises)."""

    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        raise TypeError(f"cannot store a {type(value).__name__} in {what}")

    header = {"format": file_format, "format_version": str(version), "streamgd": json.dumps(meta, default=plain)}
    write_object(resolve(path, storage_options), lambda temporary: save_safetensors(tensors, temporary, header))


def read_tensor_file(path: str | os.PathLike | Location, file_format: str, version: int, what: str,
                     names: tuple[str, ...] | None = None, storage_options: dict | None = None
                     ) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON header and the tensors (only ``names``, if given; every name the file holds is listed under
    ``"__names__"``) of a file written by ``write_tensor_file`` in ``file_format`` (version ``version`` or
    older); anything else raises ModelFileError naming ``what`` ("streamgd model file", ...)."""
    location = resolve(path, storage_options)
    try:
        with local_copy(location, what) as local:
            return _read_tensor_file(local, location.uri, file_format, version, what, names)
    except FileNotFoundError:
        raise ModelFileError(f"no such {what}: {location.uri}") from None


def _read_tensor_file(local: str, path: str, file_format: str, version: int, what: str,
                      names: tuple[str, ...] | None) -> tuple[dict, dict[str, np.ndarray]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(local, framework="numpy") as handle:
            header = handle.metadata() or {}
            stored = list(handle.keys())
            tensors = {name: handle.get_tensor(name) for name in stored if names is None or name in names}
            tensors["__names__"] = stored
    except (SafetensorError, OSError, ValueError, TypeError) as exc:  # TypeError: a dtype numpy lacks (BF16)
        reason = str(exc).strip().splitlines()
        raise ModelFileError(f"{path} is not a {what} (not a readable safetensors file: "
                             f"{reason[0] if reason else type(exc).__name__})") from None
    if header.get("format") != file_format:
        raise ModelFileError(f"{path} is a safetensors file but not a {what}")
    try:
        found = int(header.get("format_version", ""))
    except ValueError:
        raise ModelFileError(f"{path} has an unreadable format version") from None
    if found > version:
        raise ModelFileError(f"{path} was written by a newer streamgd (format {found}; this one reads {version} "
                             "and older): upgrade streamgd")
    try:
        return json.loads(header["streamgd"]), tensors
    except (KeyError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} is a damaged {what} ({type(exc).__name__}: {exc})") from None
