"""A mergeable streaming quantile sketch, and quantile bins from it.

The sketch is a compactor hierarchy (Manku, Rajagopalan and Lindsay 1998; Agarwal et al. 2012, "Mergeable
summaries"; the layout Karnin, Lang and Liberty's KLL refines): level h holds sorted values that stand for 2^h
rows each. A level that grows beyond ``capacity`` values is compacted: sorted, every other value moves up one
level (the offset alternates between compactions of a level, so that errors cancel), an odd one out stays. Row
weights are conserved exactly, and one compaction of level h moves the rank of any value by at most 2^h, so the
sketch *knows* its error: ``rank_error`` is the sum over its compactions, a deterministic bound on
``|rank(q-quantile) / n - q|`` that merging adds up. A chunk's values enter sorted and are halved level by
level, so the cost per chunk is one sort.

Sketches of disjoint row sets merge (level by level, then compacted), in any grouping: per unit, per thread,
per dask worker, as the rest of the statistics pass.

>>> rng = np.random.default_rng(0)
>>> values = rng.lognormal(0.0, 2.0, 200_000)
>>> sketch = QuantileSketch.from_values(values[:100_000]).merge(QuantileSketch.from_values(values[100_000:]))
>>> sketch.count, sketch.rank_error < 0.01
(200000, True)
>>> q = sketch.quantiles([0.5])[0]
>>> bool(abs(np.mean(values <= q) - 0.5) <= sketch.rank_error)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_CAPACITY = 4096  # values per level: a column's sketch holds at most ~capacity x levels float64s


@dataclass
class QuantileSketch:
    """Sorted values per level (level h: each value stands for 2^h rows), the rows summarised (``count``: finite
    values only), the compactions' rank error bound in rows (``error``), and each level's compactions so far
    (their parity is the next offset)."""

    capacity: int = DEFAULT_CAPACITY
    levels: list[np.ndarray] = field(default_factory=list)
    count: int = 0
    error: int = 0
    compactions: list[int] = field(default_factory=list)

    @classmethod
    def from_values(cls, values: np.ndarray, capacity: int = DEFAULT_CAPACITY) -> QuantileSketch:
        """The sketch of the finite values of an array (NaN and infinities are not counted)."""
        sketch = cls(capacity)
        sketch.add(values)
        return sketch

    def add(self, values: np.ndarray) -> None:
        """Summarise more rows (finite values only)."""
        values = np.asarray(values, dtype=np.float64)
        values = np.sort(values[np.isfinite(values)])
        if values.size == 0:
            return
        self.count += int(values.size)
        self._put(0, values, owned=True)
        self._compress()

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """The sketch of both row sets (a new sketch; its error is both errors plus the merge's compactions)."""
        merged = QuantileSketch(max(self.capacity, other.capacity), [level.copy() for level in self.levels],
                                self.count + other.count, self.error + other.error, list(self.compactions))
        for h, level in enumerate(other.levels):
            merged._put(h, level)
        for h, done in enumerate(other.compactions):
            merged._grow(h)
            merged.compactions[h] += done
        merged._compress()
        return merged

    @property
    def rank_error(self) -> float:
        """The bound on ``|rank(quantile(q)) / count - q|``: the compactions' error over the rows."""
        return self.error / self.count if self.count else 0.0

    def quantiles(self, qs: Sequence[float] | np.ndarray) -> np.ndarray:
        """The values at fractions ``qs`` of the rows (the smallest value whose weighted rank reaches q x count);
        NaN when the sketch is empty."""
        qs = np.asarray(qs, dtype=np.float64)
        if self.count == 0:
            return np.full(qs.shape, np.nan)
        values = np.concatenate(self.levels)
        weights = np.concatenate([np.full(level.size, 1 << h, dtype=np.int64) for h, level in enumerate(self.levels)])
        order = np.argsort(values, kind="stable")
        values, ranks = values[order], np.cumsum(weights[order])
        at = np.searchsorted(ranks, np.clip(qs, 0.0, 1.0) * self.count, side="left")
        return values[np.minimum(at, values.size - 1)]

    # ---- compaction ----------------------------------------------------------------------------------------------
    def _grow(self, h: int) -> None:
        while len(self.levels) <= h:
            self.levels.append(np.empty(0))
            self.compactions.append(0)

    def _put(self, h: int, values: np.ndarray, owned: bool = False) -> None:
        """Sorted ``values`` into level h (kept sorted; ``owned``: the array is the sketch's to keep)."""
        self._grow(h)
        level = self.levels[h]
        if level.size == 0:
            self.levels[h] = values if owned else values.copy()
        else:  # two sorted runs: the stable sort (timsort) merges them in linear time
            self.levels[h] = np.sort(np.concatenate([level, values]), kind="stable")

    def _compress(self) -> None:
        h = 0
        while h < len(self.levels):
            level = self.levels[h]
            if level.size > self.capacity:
                keep = level.size % 2  # an odd one out (the largest) stays at this level
                offset = self.compactions[h] % 2
                paired = level[: level.size - keep]
                self.levels[h] = level[level.size - keep:]
                self.compactions[h] += 1
                self.error += 1 << h
                self._put(h + 1, np.ascontiguousarray(paired[offset::2]), owned=True)
            h += 1

    # ---- storage -------------------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"capacity": self.capacity, "count": self.count, "error": self.error,
                "compactions": list(self.compactions), "levels": [level.tolist() for level in self.levels]}

    @classmethod
    def from_json(cls, data: dict) -> QuantileSketch:
        return cls(int(data["capacity"]), [np.asarray(level, dtype=np.float64) for level in data["levels"]],
                   int(data["count"]), int(data["error"]), [int(c) for c in data["compactions"]])


def bin_edges(sketch: QuantileSketch, n_bins: int) -> np.ndarray:
    """The inner edges of ``n_bins`` equal-frequency bins (the 1/n, ..., (n-1)/n quantiles), repeated values
    dropped: a value x falls in bin ``searchsorted(edges, x, side="right")``, so there are ``len(edges) + 1`` bins.
    Ties (a count column that is mostly 0) make fewer, wider bins."""
    if sketch.count == 0:
        return np.zeros(0)
    return np.unique(sketch.quantiles(np.arange(1, n_bins) / n_bins))


def assign_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each value's bin (int64, 0..len(edges)); NaN: -1."""
    bins = np.searchsorted(edges, values, side="right").astype(np.int64)
    bins[np.isnan(values)] = -1
    return bins
