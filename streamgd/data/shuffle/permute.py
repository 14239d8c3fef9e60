"""Row permutations from a seed, compiled: a Fisher-Yates shuffle driven by SplitMix64.

``np.random.Generator.permutation`` runs once per chunk on the training pipeline's busiest thread; this is about
ten times faster (benchmarks/README.md, "Figures quoted by the code"). SplitMix64 (Steele, Lea and Flood, 2014) passes BigCrush;
each swap index is Lemire's multiply-shift of 32 random bits, whose bias (at most n / 2^32) is far below
anything a shuffle for SGD can feel.

>>> order = permutation((4, 2), 10)
>>> sorted(order.tolist()) == list(range(10)), order.tolist() == permutation((4, 2), 10).tolist()
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...kernels.jit import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(nogil=True)
def _fisher_yates(state, n):  # pragma: no cover - compiled
    out = np.arange(n)
    s = state
    for i in range(n - 1, 0, -1):
        s += _GOLDEN
        z = (s ^ (s >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
        j = np.int64(((z >> np.uint64(32)) * np.uint64(i + 1)) >> np.uint64(32))
        out[i], out[j] = out[j], out[i]
    return out


def permutation(seed: Sequence[int], n: int) -> np.ndarray:
    """A permutation of ``range(n)`` (int64), a pure function of the integer tuple ``seed``."""
    state = np.random.SeedSequence(list(seed)).generate_state(1, np.uint64)[0]
    return _fisher_yates(np.uint64(state), int(n))
