"""How well an epoch's row order is mixed, measured in one streaming pass over the plan.

- ``rank_correlation``: Pearson correlation between each row's position in the files and its position in the
  epoch (positions are ranks, so this is Spearman's rho for a whole epoch): 1 is file order, near 0 well mixed.
- ``local_mixing``: mean distance in the files between rows that follow each other in the epoch, divided by
  the mean distance of a uniform random permutation ((N + 1) / 3): near 0 is file order (or rows of one row
  group in a row), near 1 as mixed as a full shuffle. This is what ``buffer:K`` buys over ``row-groups``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...kernels.jit import njit


@dataclass(frozen=True)
class ShuffleQuality:
    """Mixing figures of one epoch's order (see the module docstring)."""

    rank_correlation: float
    local_mixing: float
    n_rows: int

    def as_dict(self) -> dict:
        return asdict(self)


@njit(nogil=True)
def _sums(positions, n0, last):  # pragma: no cover - compiled
    """One pass over rows delivered as numbers n0, n0 + 1, ... from file positions ``positions``: the sums of
    x, x^2 and x*y (x the file position, y the delivery number), and the gaps |x_i - x_(i-1)| (the first one from
    ``last`` unless it is negative)."""
    sx = sxx = sxy = gaps = 0.0
    prev = float(positions[0]) if last < 0 else last
    for i in range(positions.shape[0]):
        x = float(positions[i])
        sx += x
        sxx += x * x
        sxy += x * float(n0 + i)
        gaps += abs(x - prev)
        prev = x
    return sx, sxx, sxy, gaps


class ShuffleQualityMeter:
    """Accumulates the mixing figures from the file positions of rows in the order they are delivered."""

    def __init__(self) -> None:
        self.n = 0
        self.sum_x = self.sum_xx = self.sum_xy = 0.0
        self.sum_gap = 0.0
        self.last = -1.0  # the file position of the last row delivered (-1: none yet)

    def add(self, file_positions: np.ndarray) -> None:
        """Record the next rows delivered, given as their positions in file order."""
        positions = np.ascontiguousarray(file_positions, dtype=np.int64)
        if positions.size == 0:
            return
        sx, sxx, sxy, gaps = _sums(positions, self.n, self.last)
        self.sum_x += sx
        self.sum_xx += sxx
        self.sum_xy += sxy
        self.sum_gap += gaps
        self.last = float(positions[-1])
        self.n += positions.size

    def result(self) -> ShuffleQuality:
        n = self.n
        if n < 2:
            return ShuffleQuality(1.0, 0.0, n)
        # the delivery numbers y are 0 .. n-1: their sum and variance have closed forms
        cov = self.sum_xy - self.sum_x * ((n - 1) / 2.0)
        var_x = self.sum_xx - self.sum_x ** 2 / n
        var_y = n * (n * n - 1.0) / 12.0
        corr = cov / np.sqrt(var_x * var_y) if var_x > 0 and var_y > 0 else 1.0
        mixing = (self.sum_gap / (n - 1)) / ((n + 1) / 3.0)
        return ShuffleQuality(round(float(corr), 6), round(float(mixing), 6), n)
