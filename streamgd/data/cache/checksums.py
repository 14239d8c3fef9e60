"""The checksum of a cached unit's arrays: checked once per run for a unit the run did not write, so a file
cut short, zeroed or overwritten after a crash is a miss, not a wrong model."""

from __future__ import annotations

import numpy as np

from ...kernels.jit import njit


@njit(nogil=True)
def _fletcher64(words, tail):  # pragma: no cover - compiled
    # Fletcher's sums over 64-bit words (wrapping): position-sensitive and at memory speed (one add per word)
    a = np.uint64(0)
    b = np.uint64(0)
    for i in range(words.shape[0]):
        a += words[i]
        b += a
    a += tail
    b += a
    return a, b


def checksum(raw: np.ndarray) -> str:
    """A cheap checksum of a flat array's bytes (Fletcher-64 style: catches truncation, zeroed and swapped
    blocks, at memory speed)."""
    raw = raw.view(np.uint8)
    n_words = raw.shape[0] // 8
    words = raw[: n_words * 8].view(np.uint64)
    tail = np.zeros(8, dtype=np.uint8)
    tail[: raw.shape[0] - n_words * 8] = raw[n_words * 8:]
    a, b = _fletcher64(words, tail.view(np.uint64)[0])
    return f"{int(a):016x}{int(b):016x}"


def storage_bytes(array: np.ndarray) -> np.ndarray:
    """The array's bytes in its storage order (column-major arrays as stored: no copy)."""
    if array.ndim == 2 and array.flags.f_contiguous:
        return array.T.reshape(-1).view(np.uint8) if array.size else np.empty(0, np.uint8)
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)

