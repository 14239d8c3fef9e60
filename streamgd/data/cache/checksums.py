"""The checksum of a cached unit's arrays: XXH64 (the xxHash algorithm, 64 bits, compiled here: no dependency),
and a BLAKE2b of its index entry, so a file cut short, zeroed, overwritten after a crash or edited by hand is a
miss, not a wrong model. A run sums a unit's bytes once (when it writes or first reads it); every later read
compares the file's status (inode, size, modification and change times) with the one then, and sums the bytes
again when it differs: a write since, even one that restored the modification time, changes the change time.
Summing on every read made fully cached epochs markedly slower (measured by ``scripts/bench_integrity.py``).

It replaced a Fletcher-style sum (two running sums of 64-bit words), in which three changed words could keep
both sums (a collision a user could make by accident, as the integrity issue showed). XXH64 mixes every word
through multiplications and rotations in four independent lanes: no easy collisions, and still at memory speed
(``scripts/bench_integrity.py`` compares the two on a cache's units, and against a cached epoch).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from ...kernels.jit import njit

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)


@njit(nogil=True, inline="always")
def _rotl(x, r):  # pragma: no cover - compiled
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(nogil=True, inline="always")
def _round(acc, word):  # pragma: no cover - compiled
    return _rotl(acc + word * _P2, 31) * _P1


@njit(nogil=True, inline="always")
def _merge(acc, value):  # pragma: no cover - compiled
    return (acc ^ _round(np.uint64(0), value)) * _P1 + _P4


@njit(nogil=True)
def _xxh64(words, tail, n_bytes):  # pragma: no cover - compiled
    # words: the input's whole 8-byte words (little-endian); tail: its last n_bytes % 8 bytes
    n_words = words.shape[0]
    i = 0
    if n_bytes >= 32:
        v1 = _P1 + _P2
        v2 = _P2
        v3 = np.uint64(0)
        v4 = np.uint64(0) - _P1
        while i + 4 <= n_words:
            v1 = _round(v1, words[i])
            v2 = _round(v2, words[i + 1])
            v3 = _round(v3, words[i + 2])
            v4 = _round(v4, words[i + 3])
            i += 4
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = _P5
    h += np.uint64(n_bytes)
    while i < n_words:
        h ^= _round(np.uint64(0), words[i])
        h = _rotl(h, 27) * _P1 + _P4
        i += 1
    j = 0
    if tail.shape[0] >= 4:
        k = np.uint64(tail[0]) | (np.uint64(tail[1]) << np.uint64(8)) | (np.uint64(tail[2]) << np.uint64(16)) \
            | (np.uint64(tail[3]) << np.uint64(24))
        h ^= k * _P1
        h = _rotl(h, 23) * _P2 + _P3
        j = 4
    while j < tail.shape[0]:
        h ^= np.uint64(tail[j]) * _P5
        h = _rotl(h, 11) * _P1
        j += 1
    h ^= h >> np.uint64(33)
    h *= _P2
    h ^= h >> np.uint64(29)
    h *= _P3
    h ^= h >> np.uint64(32)
    return h


def xxh64(raw: np.ndarray) -> int:
    """XXH64 (seed 0) of a flat array's bytes."""
    raw = raw.view(np.uint8)
    n_words = raw.shape[0] // 8
    words = raw[: n_words * 8]
    if words.ctypes.data % 8:  # an unaligned view cannot be read as words: copy it
        words = words.copy()
    return int(_xxh64(words.view(np.uint64), np.ascontiguousarray(raw[n_words * 8:]), raw.shape[0]))


def checksum(raw: np.ndarray) -> str:
    """The checksum of a flat array's bytes that a cache entry records: ``xxh64:`` and XXH64 in hex."""
    return f"xxh64:{xxh64(raw):016x}"


def entry_checksum(entry: dict) -> str:
    """A BLAKE2b of an index entry's JSON (keys sorted, its own ``checksum`` left out): an entry edited by hand or
    damaged (another shape, offset or order of the same bytes) is a miss, as damaged arrays are."""
    text = json.dumps({k: v for k, v in entry.items() if k != "checksum"}, sort_keys=True, default=str)
    return "blake2b:" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def storage_bytes(array: np.ndarray) -> np.ndarray:
    """The array's bytes in its storage order (column-major arrays as stored: no copy)."""
    if array.ndim == 2 and array.flags.f_contiguous:
        return array.T.reshape(-1).view(np.uint8) if array.size else np.empty(0, np.uint8)
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)
