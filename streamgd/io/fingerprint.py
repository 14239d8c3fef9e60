"""What a data file is, by content: the identity a checkpoint and the epoch cache name a file by, so a file
rewritten in place (same size, same footer, its modification time restored, as ``rsync -t`` or ``cp -p`` of a
regenerated file leaves it) is told apart from the file it replaced.

A file's identity: its size, a SHA-256 of its Parquet footer (schema, row groups, every column chunk's
statistics, sizes and offsets) and ``content``: a BLAKE2b of its bytes, all of them for a file of up to
``WHOLE_FILE_BYTES``, else of ``SAMPLES`` ranges of ``SAMPLE_BYTES`` spread evenly over the file (the first at its
start, the last at its end). In an object store the store's ETag is kept too (S3 derives it from the uploaded
bytes: any new upload of other content has another ETag).

What it catches: any change of a small file; any change of a large file's footer (another row count, value
range, compressed size or layout), of its size, or of a sampled byte. What it misses: a large file rewritten
with the same size and footer whose changes all fall between the samples (a permutation of rows confined to one
uncompressed page there, say); the store's ETag still catches that for an object in a store. Its cost, against
a training epoch in the same run, is measured by ``scripts/bench_integrity.py``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

WHOLE_FILE_BYTES = 128 << 10  # files up to this size are hashed whole
SAMPLES = 16  # ranges of a larger file
SAMPLE_BYTES = 8 << 10
_BLOCK = 1 << 20

__all__ = ["SAMPLES", "SAMPLE_BYTES", "WHOLE_FILE_BYTES", "content_identity", "sample_ranges"]


def sample_ranges(size: int) -> list[tuple[int, int]]:
    """The (offset, length) ranges whose bytes ``content`` hashes: the whole file, or ``SAMPLES`` even ranges."""
    if size <= WHOLE_FILE_BYTES:
        return [(0, size)]
    return [((i * (size - SAMPLE_BYTES)) // (SAMPLES - 1), SAMPLE_BYTES) for i in range(SAMPLES)]


def content_identity(path: str, filesystem: Any = None) -> dict:
    """Size, modification time (ns), footer SHA-256 and content hash of a data file on the local disk
    (``filesystem`` None) or in a pyarrow filesystem (then also the store's ``etag``, when it gives one)."""
    if filesystem is None:
        status = os.stat(path)
        size, mtime_ns = status.st_size, status.st_mtime_ns
        with open(path, "rb") as stream:
            def read_at(offset: int, n: int) -> bytes:
                stream.seek(offset)
                return stream.read(n)
            return _identity(size, mtime_ns, read_at, None)
    info = filesystem.get_file_info(path)
    with filesystem.open_input_file(path) as stream:
        etag = _etag(stream)
        return _identity(info.size, info.mtime_ns, lambda offset, n: stream.read_at(n, offset), etag)


def _identity(size: int, mtime_ns: int | None, read_at: Callable[[int, int], bytes], etag: str | None) -> dict:
    content = hashlib.blake2b(digest_size=16)
    content.update(size.to_bytes(8, "little"))
    for offset, length in sample_ranges(size):
        done = 0
        while done < length:
            block = read_at(offset + done, min(_BLOCK, length - done))
            if not block:
                break
            content.update(block)
            done += len(block)
    identity = {"size": size, "mtime_ns": mtime_ns,
                "footer_sha256": hashlib.sha256(footer_bytes(size, read_at)).hexdigest(),
                "content": content.hexdigest()}
    if etag:
        identity["etag"] = etag
    return identity


def _etag(stream: Any) -> str | None:
    """The object's ETag, from the metadata pyarrow's S3 input files carry (None where there is none)."""
    try:
        metadata = stream.metadata()
    except (AttributeError, OSError, NotImplementedError):
        return None
    for key, value in (metadata or {}).items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        if name.lower() == "etag":
            return (value.decode() if isinstance(value, bytes) else str(value)).strip('"')
    return None


def footer_bytes(size: int, read_at: Callable[[int, int], bytes]) -> bytes:
    """The Parquet footer (its metadata, length and magic), or the last bytes of a file that has none."""
    if size < 12:
        return b""
    tail = read_at(size - 8, 8)
    length = int.from_bytes(tail[:4], "little")
    if tail[4:] != b"PAR1" or length > size - 12:
        return tail
    return read_at(size - 8 - length, length + 8)
