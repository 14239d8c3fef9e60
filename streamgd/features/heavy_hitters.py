"""Space-Saving: the most frequent values of a stream in at most ``capacity`` counters, mergeable across chunks
and workers, updated with Arrow and NumPy vector operations (one ``value_counts`` per chunk, no Python loop over
values).

Each tracked value has a ``count`` and an ``error`` with ``count - error <= true count <= count``; any value not
tracked occurs at most ``floor <= N / (capacity + 1)`` times in the ``N`` values seen, so every value seen more
often than that is tracked. The bounds hold for any merge order (see ``SpaceSaving``); which values are tracked,
and their counts, depend on how the stream was cut into chunks and merged, and on nothing else.

>>> import pyarrow as pa
>>> left = SpaceSaving.from_array(pa.array(["a", "a", "b", "c"]), capacity=2).compacted()  # drops c
>>> right = SpaceSaving.from_array(pa.array(["a", "d", "d", None]), capacity=2)
>>> s = left.merge(right).compacted()
>>> values, counts, errors = s.top(2)
>>> values.to_pylist(), counts.tolist(), errors.tolist(), s.floor, s.total
(['a', 'd'], [3, 3], [0, 1], 1, 7)

``d`` occurs twice: its count 3 with error 1 brackets it, since ``left`` had dropped ``c`` (floor 1) and might
have dropped a ``d`` too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..data.arrow_numpy import from_numpy, numbers, strings, valid_rows

VALUE_TYPE = pa.large_string()  # 64-bit offsets: a summary of a million long values still fits one array


@dataclass(frozen=True, eq=False)
class SpaceSaving:
    """A Space-Saving summary: up to ``capacity`` tracked values with an overestimated count and its error bound,
    plus a ``floor`` bounding the count of every untracked value.

    Parameters
    ----------
    capacity : int
        The most values tracked (counters kept).
    values : pyarrow.Array of large_string, shape (n_tracked,)
        The tracked values, distinct, in no particular order.
    counts : ndarray of int64, shape (n_tracked,)
        Upper bounds of the values' true counts.
    errors : ndarray of int64, shape (n_tracked,)
        ``counts - errors`` are lower bounds of the true counts; ``0 <= errors <= floor``.
    floor : int
        Every untracked value occurs at most ``floor`` times; 0 until the summary first had to drop a value,
        so ``floor > 0`` means more than ``capacity`` distinct values were seen.
    total : int
        N, the number of values summarised (tracked, pending or dropped).
    pending : tuple of (pyarrow.Array, ndarray of int64)
        Exact counts of recent chunks, not yet folded into the counters: folding is O(capacity), so it waits
        until the pending entries outnumber ``capacity`` (memory stays O(capacity + one chunk's distinct values)).
        ``compacted()`` folds them in; every query does.

    Notes
    -----
    The merge of two summaries A and B (Agarwal et al. 2012, section 3, in Space-Saving's form; Cafaro et al.
    2016) gives every value of either the count and error it has in A, or A's floor if A does not track it, plus
    the same from B; keeps the ``capacity`` largest counts (ties: the smaller error, then A's values in A's order
    before B's: sorting ties by value took 0.6 s per fold of a 2^20-counter summary); and takes as floor the
    largest of A's floor + B's floor and the largest count dropped. A chunk's exact counts are a summary with
    floor 0 (of any size). By induction over any tree of merges of summaries of disjoint row sets, with N their
    total:

    * ``count - error <= true <= count`` for every tracked value, and ``0 <= error <= floor <= count``;
    * ``true <= floor`` for every untracked value;
    * ``(capacity + 1) * floor <= N - sum(counts - floor)``, hence ``floor <= N / (capacity + 1)``: every
      value occurring more than ``N / (capacity + 1)`` times is tracked.

    (In terms of Misra-Gries counters ``counts - floor``, the merge is Agarwal et al.'s: add the counters,
    subtract the (capacity + 1)-th largest, and the bound is theirs; ``floor`` is their total decrement.)
    The ``k`` values with the largest counts are exactly the ``k`` most frequent ones when their smallest lower
    bound reaches every other upper bound: ``top_is_exact(k)``.

    References
    ----------
    Metwally, Agrawal and El Abbadi (2005), "Efficient computation of frequent and top-k elements in data
    streams", ICDT. Agarwal, Cormode, Huang, Phillips, Wei and Yi (2012), "Mergeable summaries", PODS.
    Cafaro, Pulimeno and Tempesta (2016), "A parallel space saving algorithm for frequent items and the
    Hurwitz zeta distribution", Information Sciences 329.
    """

    capacity: int
    values: pa.Array
    counts: np.ndarray
    errors: np.ndarray
    floor: int = 0
    total: int = 0
    pending: tuple = ()

    # ---- building ---------------------------------------------------------------------------------------------
    @classmethod
    def empty(cls, capacity: int) -> SpaceSaving:
        """A summary of no values."""
        if not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity={capacity!r} is not accepted; expected an integer >= 1")
        return cls(int(capacity), strings([], VALUE_TYPE), np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def from_counts(cls, values: pa.Array, counts: np.ndarray, capacity: int) -> SpaceSaving:
        """The exact summary of distinct ``values`` seen ``counts`` times (kept pending until compacted)."""
        empty = cls.empty(capacity)
        if len(values) == 0:
            return empty
        counts = np.asarray(counts, dtype=np.int64)
        return cls(empty.capacity, empty.values, empty.counts, empty.errors, 0, int(counts.sum()),
                   ((values.cast(VALUE_TYPE), counts),))

    @classmethod
    def from_array(cls, array: pa.Array | pa.ChunkedArray, capacity: int) -> SpaceSaving:
        """The summary of a chunk of strings (nulls are not counted), by one Arrow ``value_counts``."""
        counts = pc.value_counts(array.drop_null())
        return cls.from_counts(counts.field("values"), numbers(counts.field("counts")), capacity)

    def merge(self, other: SpaceSaving) -> SpaceSaving:
        """The summary of both summaries' values together (the bounds of the class docstring hold)."""
        if other.capacity != self.capacity:
            raise ValueError(f"cannot merge summaries of capacity {self.capacity} and {other.capacity}")
        if len(other.values) == 0 and other.floor == 0:
            tracked = self
        elif len(self.values) == 0 and self.floor == 0:
            tracked = other
        else:
            tracked = _combine(self, other)
        pending = self.pending + other.pending
        merged = SpaceSaving(self.capacity, tracked.values, tracked.counts, tracked.errors, tracked.floor,
                             self.total + other.total, pending)
        if sum(len(part[0]) for part in pending) > self.capacity:
            return merged.compacted()
        return merged

    def compacted(self) -> SpaceSaving:
        """The same summary with the pending exact counts folded into the counters."""
        if not self.pending:
            return self
        # one hash pass over the tracked values followed by the pending ones: dictionary_encode numbers the tracked
        # values 0..n-1 (they are distinct) and each new value after them, and a weighted bincount sums the exact
        # counts (float64 sums are exact below 2^53). 0.6-0.9 s for 1e6 + 1e6 entries; Arrow's group_by of the
        # pending counts alone took 0.5-0.8 s for 5e5, dictionary_encode + bincount 0.1 s.
        n = len(self.values)
        encoded = pc.dictionary_encode(pa.concat_arrays([self.values] + [part[0] for part in self.pending]))
        values = encoded.dictionary
        added = np.bincount(numbers(encoded.indices)[n:], np.concatenate([part[1] for part in self.pending]),
                            len(values)).astype(np.int64)
        counts = np.concatenate([self.counts + added[:n], added[n:] + self.floor])  # new: may have been dropped
        errors = np.concatenate([self.errors, np.full(len(values) - n, self.floor, dtype=np.int64)])
        tracked = _keep_largest(values, counts, errors, self.floor, self.capacity)
        return SpaceSaving(self.capacity, tracked.values, tracked.counts, tracked.errors, tracked.floor, self.total)

    # ---- queries ----------------------------------------------------------------------------------------------
    @property
    def overflow(self) -> bool:
        """Whether a value was ever dropped, i.e. more than ``capacity`` distinct values were seen."""
        return self.compacted().floor > 0

    @property
    def tracked(self) -> int:
        """The number of values tracked: all distinct values seen unless ``overflow``, else ``capacity``."""
        return len(self.compacted().values)

    def top(self, k: int) -> tuple[pa.Array, np.ndarray, np.ndarray]:
        """(values, counts, errors) of the ``k`` tracked values with the largest counts, by decreasing count
        and, among equal counts, increasing value (Arrow's order of strings: by UTF-8 bytes, as Python's)."""
        s = self.compacted()
        chosen = s._top_indices(k)
        values, counts, errors = s.values.take(from_numpy(chosen)), s.counts[chosen], s.errors[chosen]
        order = numbers(pc.sort_indices(pa.table({"c": from_numpy(counts), "v": values}),
                                        sort_keys=[("c", "descending"), ("v", "ascending")]))
        return values.take(from_numpy(order)), counts[order], errors[order]

    def top_is_exact(self, k: int) -> bool:
        """Whether ``top(k)`` are provably ``k`` most frequent values: each one's lower bound ``count - error``
        is at least every other value's upper bound (other tracked counts, and ``floor``). It is so whenever the
        k-th and (k + 1)-th largest true counts differ by ``2 * floor`` or more (errors are at most ``floor``)."""
        s = self.compacted()
        chosen = s._top_indices(k)
        if len(chosen) == 0:
            return True
        others = np.ones(len(s.counts), dtype=bool)
        others[chosen] = False
        best_other = max(int(s.counts[others].max()) if others.any() else 0, s.floor)
        return int((s.counts[chosen] - s.errors[chosen]).min()) >= best_other

    def _top_indices(self, k: int) -> np.ndarray:
        """Indices of the ``k`` largest counts of a compacted summary, ties broken by the smaller value."""
        def by_value(tied: np.ndarray) -> np.ndarray:
            return tied[numbers(pc.sort_indices(self.values.take(from_numpy(tied))))]

        return _largest(self.counts, k, by_value)[0]

    def as_dict(self) -> dict[str, int]:
        """Tracked value -> count, by decreasing count."""
        values, counts, _ = self.top(self.capacity)
        return dict(zip(values.to_pylist(), counts.tolist()))


def _combine(a: SpaceSaving, b: SpaceSaving) -> SpaceSaving:
    """The counters of ``a`` and ``b`` merged (pending counts aside): a value missing from one side counts as
    that side's floor, in its count and in its error; then the ``capacity`` largest counts are kept."""
    where = pc.index_in(b.values, value_set=a.values)  # b's values' positions in a (null: only in b)
    found = valid_rows(where)
    at = numbers(where.drop_null()).astype(np.intp, copy=False)
    counts = a.counts + b.floor
    errors = a.errors + b.floor
    counts[at] += b.counts[found] - b.floor
    errors[at] += b.errors[found] - b.floor
    only_b = np.flatnonzero(~found)
    values = pa.concat_arrays([a.values.cast(VALUE_TYPE), b.values.cast(VALUE_TYPE).take(from_numpy(only_b))])
    counts = np.concatenate([counts, b.counts[only_b] + a.floor])
    errors = np.concatenate([errors, b.errors[only_b] + a.floor])
    return _keep_largest(values, counts, errors, a.floor + b.floor, a.capacity)


def _keep_largest(values: pa.Array, counts: np.ndarray, errors: np.ndarray, floor: int, capacity: int
                  ) -> SpaceSaving:
    """The counters of the ``capacity`` largest counts (ties: the smaller error, then the earlier position),
    with the floor raised to the largest count dropped."""
    chosen, dropped = _largest(counts, capacity, lambda tied: tied[np.argsort(errors[tied], kind="stable")])
    if len(chosen) < len(counts):
        values, counts, errors = values.take(from_numpy(chosen)), counts[chosen], errors[chosen]
        floor = max(floor, dropped)
    return SpaceSaving(capacity, values, counts, errors, floor)


def _largest(counts: np.ndarray, k: int, order_ties: Callable[[np.ndarray], np.ndarray]
             ) -> tuple[np.ndarray, int]:
    """(indices of the ``k`` largest counts in increasing order, ties at the threshold taken in the order that
    ``order_ties(tied indices)`` returns; the (k + 1)-th largest count, 0 when there are at most ``k``), in O(n)
    plus the ordering of the tied values."""
    n = len(counts)
    if n <= k:
        return np.arange(n), 0
    threshold = int(np.partition(counts, n - k - 1)[n - k - 1])  # the (k + 1)-th largest count
    above = np.flatnonzero(counts > threshold)
    tied = order_ties(np.flatnonzero(counts == threshold))
    return np.sort(np.concatenate([above, tied[: k - len(above)]])), threshold
