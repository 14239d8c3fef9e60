"""What a path on the command line is, from the file's first bytes, not its name: Parquet starts with ``PAR1``; a
safetensors file with the 8-byte little-endian length of its JSON header, then the header's ``{``. A module of
its own so that ``streamgd inspect`` can tell a dataset from a model file before it loads what either needs."""

from __future__ import annotations

import os
import struct

PARQUET_MAGIC = b"PAR1"


def file_kind(path: str | os.PathLike) -> str | None:
    """``"parquet"``, ``"safetensors"`` or None (not a file, or neither format), from the file's first bytes."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as stream:
        head = stream.read(9)
    if head[:4] == PARQUET_MAGIC:
        return "parquet"
    if len(head) == 9 and head[8:9] == b"{":
        (length,) = struct.unpack("<Q", head[:8])
        if 0 < length <= os.path.getsize(path) - 8:
            return "safetensors"
    return None
