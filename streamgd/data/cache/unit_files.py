"""A cached unit on disk: its arrays packed into one file of raw, 64-byte aligned arrays, its index entry
beside it, temporary names for atomic writes, and mapped pages handed back as they are read."""

from __future__ import annotations

import json
import mmap
import os
import threading
import time

import numpy as np
import pyarrow as pa

from ..sparse_block import SparseBlock
from ..unit_arrays import UnitArrays
from .checksums import storage_bytes

DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def pack_arrays(arrays: UnitArrays) -> list[tuple[str, np.ndarray, dict]]:
    """(name, bytes as uint8, spec) of each array to store."""
    named: list[tuple[str, np.ndarray]] = [("X", arrays.X)]
    n_slots = arrays.sparse.n_slots if arrays.sparse is not None else None
    if arrays.y is not None:
        named.append(("y", arrays.y))
    if arrays.slot is not None:
        named.append(("slot", arrays.slot))
    if arrays.sparse is not None:
        named += [("indptr", arrays.sparse.indptr), ("indices", arrays.sparse.indices),
                  ("values", arrays.sparse.values)]
    parts = []
    for name, array in named:
        order = "F" if array.ndim == 2 and array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        spec = {"dtype": array.dtype.str, "shape": list(array.shape), "order": order}
        if name == "indptr":
            spec["n_slots"] = n_slots
        parts.append((name, storage_bytes(array), spec))
    if arrays.extra is not None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, arrays.extra.schema) as writer:
            writer.write_table(arrays.extra)
        blob = np.frombuffer(sink.getvalue(), dtype=np.uint8)
        parts.append(("extra", blob, {"dtype": "|u1", "shape": [blob.shape[0]], "order": "C"}))
    return parts


def unpack_arrays(views: dict[str, np.ndarray], entry: dict) -> UnitArrays:
    X = views["X"]
    sparse = None
    if "indptr" in views:
        sparse = SparseBlock(views["indptr"], views["indices"], views["values"],
                             int(entry["arrays"]["indptr"]["n_slots"]))
    extra = None
    if "extra" in views:
        extra = pa.ipc.open_stream(pa.py_buffer(views["extra"].tobytes())).read_all()  # a copy: owns its memory
    return UnitArrays(X, views.get("y"), sparse, extra, views.get("slot"))



def write_unit_file(path: str, parts: list[tuple[np.ndarray, int]], size: int) -> None:
    """Write arrays' bytes at their offsets into a new file of ``size`` bytes (zeros between them)."""
    with open(path, "wb") as stream:
        position = 0
        for raw, start in parts:
            if start > position:
                stream.write(b"\0" * (start - position))
            stream.write(raw)
            position = start + raw.nbytes
        if size > position:
            stream.write(b"\0" * (size - position))


def temporary_path(path: str) -> str:
    """A temporary name beside ``path``, unique to this process and thread (renamed to ``path`` once written)."""
    return os.path.join(os.path.dirname(path), f".tmp-{os.path.basename(path)}-{os.getpid()}-"
                                               f"{threading.get_ident()}-{time.monotonic_ns()}")


def remove_quietly(path: str) -> None:
    """Remove a file if it is there (a temporary one, a damaged entry): nothing to say when it is not."""
    try:
        os.unlink(path)
    except OSError:
        pass


def release_range(mapping: mmap.mmap, start: int, stop: int) -> None:
    """Hand back the pages wholly inside bytes [start, stop) of a map (they stay in the page cache)."""
    start = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    stop = min(stop, len(mapping)) // mmap.PAGESIZE * mmap.PAGESIZE
    if stop > start:
        try:
            mapping.madvise(DONTNEED, start, stop - start)
        except (OSError, ValueError):  # advice only (or the map is closed)
            pass


def release_mapping(mapping: mmap.mmap | None) -> None:
    """Hand a map's pages back (they stay in the page cache) and close it."""
    if mapping is None:
        return
    if DONTNEED is not None:
        try:
            mapping.madvise(DONTNEED)
        except (OSError, ValueError):  # advice only
            pass
    try:
        mapping.close()
    except BufferError:  # a view still alive: the map closes when it goes
        pass



def read_entries(directory: str) -> list[dict]:
    """The index entries of a cache directory (unreadable ones left out)."""
    units_dir = os.path.join(directory, "units")
    entries = []
    for name in sorted(os.listdir(units_dir)) if os.path.isdir(units_dir) else []:
        if name.endswith(".json") and not name.startswith(".tmp-"):
            try:
                with open(os.path.join(units_dir, name)) as stream:
                    entry = json.load(stream)
            except (OSError, ValueError):
                continue
            entry["_data_size"] = file_size(os.path.join(units_dir, name[:-5] + ".bin"))
            entries.append(entry)
    return entries


def file_size(path: str) -> int | None:
    """The size of a file, None when it is gone."""
    try:
        return os.path.getsize(path)
    except OSError:
        return None
