"""The statistics pass: per column count, missing values, mean, variance, min and max (numeric) or the most
frequent values with bounded counts (categorical, a Space-Saving summary of ``category_capacity(max_categories)``
counters), in one streaming pass whose per-unit results merge (numbers exactly by Chan et al.'s update, counts
within the summary's bounds), so units can be summarised in parallel and in any grouping.

>>> import pyarrow as pa
>>> a = column_stats(pa.chunked_array([[1.0, 2.0, None]]), categorical=False)
>>> b = column_stats(pa.chunked_array([[3.0, float("nan")]]), categorical=False)
>>> s = a.merge(b)
>>> (s.count, s.missing, s.mean, round(s.var, 6), s.min, s.max)
(3, 2, 2.0, 0.666667, 1.0, 3.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..data.arrow_numpy import from_numpy, numbers, strings
from ..data.dataset import Dataset, Unit
from ..data.dictionary_slots import dictionary_columns, dictionary_indices, is_text
from ..data.unit_reader import UnitTableReader
from ..errors import DataError
from ..kernels.jit import njit
from .heavy_hitters import VALUE_TYPE, SpaceSaving
from .quantiles import QuantileSketch
from .transforms import ColumnTreatment

DEFAULT_MAX_CATEGORIES = 1000
MAX_CATEGORIES_LIMIT = 1_000_000  # one-hot vocabulary per column; beyond it, hash (--hash-bits)
# Counters per categorical column. Every value dropped, and the error of every value kept, is bounded by
# floor <= N / (capacity + 1); the top max_categories are the exact ones whenever the max_categories-th and next true
# counts differ by 2 floor or more, and in practice far beyond: on Zipf(1.1) columns 8x counters keep the exact
# vocabulary's coverage where 2x lose some of it, for a little time and memory. So 8x, up to 2^20 counters (what a
# saturated column then holds bounds the pass's memory), and never fewer than 2x nor 1,024. The measurements:
# benchmarks/README.md, "Figures quoted by the code".
CATEGORY_CAPACITY_FACTOR = 8
MAX_CATEGORY_CAPACITY = 1 << 20
MIN_CATEGORY_CAPACITY = 1024


def category_capacity(max_categories: int) -> int:
    """The Space-Saving counters kept per categorical column for a vocabulary of ``max_categories``."""
    k = int(max_categories)
    return max(MIN_CATEGORY_CAPACITY, 2 * k, min(CATEGORY_CAPACITY_FACTOR * k, MAX_CATEGORY_CAPACITY))


@dataclass
class ColumnStats:
    """Summary of one column: finite values (count, mean, population variance, min, max), missing values (null
    or NaN), infinities, and for categorical columns a Space-Saving summary of the values (``categories``:
    the most frequent values with count bounds; see ``streamgd.features.heavy_hitters``)."""

    count: int = 0
    missing: int = 0
    infinite: int = 0
    mean: float = 0.0
    var: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    categories: SpaceSaving | None = None
    m3: float = 0.0  # the finite values' third central moment (population): their skewness, for the heavy-tail report
    quantiles: QuantileSketch | None = None  # numeric columns to be binned (``--bins``): a quantile sketch

    def merge(self, other: ColumnStats) -> ColumnStats:
        """The statistics of both row sets together (Chan, Golub and LeVeque's pairwise update; the category
        summaries merged as Agarwal et al.'s mergeable summaries)."""
        count = self.count + other.count
        if count:
            delta = other.mean - self.mean
            mean = self.mean + delta * other.count / count
            var = (self.var * self.count + other.var * other.count + delta * delta * self.count * other.count / count
                   ) / count
            m3 = merged_third_moment(self, other, delta, count)
        else:
            mean = var = m3 = 0.0
        categories = self.categories if other.categories is None else (
            other.categories if self.categories is None else self.categories.merge(other.categories))
        quantiles = self.quantiles if other.quantiles is None else (
            other.quantiles if self.quantiles is None else self.quantiles.merge(other.quantiles))
        return ColumnStats(count, self.missing + other.missing, self.infinite + other.infinite, mean, var,
                           min(self.min, other.min), max(self.max, other.max), categories, m3, quantiles)

    @property
    def skewness(self) -> float:
        """The finite values' skewness (population; 0 for fewer than 3 values or no spread)."""
        if self.count < 3 or self.var <= 0:
            return 0.0
        return self.m3 / self.var ** 1.5

    @property
    def values(self) -> dict | None:
        """Categorical: tracked value -> count (an upper bound; exact unless ``overflow``), by decreasing count."""
        return None if self.categories is None else self.categories.as_dict()

    @property
    def overflow(self) -> bool:
        """Categorical: more distinct values were seen than the summary tracks (the rarest were dropped, and the
        counts kept are upper bounds)."""
        return self.categories is not None and self.categories.overflow

    @property
    def distinct(self) -> int | None:
        """Categorical: the number of distinct values, exact unless ``overflow`` (then a lower bound: there are
        more)."""
        return None if self.categories is None else self.categories.tracked

    def top_values(self, k: int) -> list[str]:
        """Categorical: the ``k`` values with the largest counts, most frequent first (ties: the smaller value)."""
        return [] if self.categories is None else self.categories.top(k)[0].to_pylist()

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def as_dict(self) -> dict:
        out = {"count": self.count, "missing": self.missing, "infinite": self.infinite}
        if self.categories is not None:
            out.update(distinct=self.distinct, overflow=self.overflow)
        else:
            out.update(mean=self.mean, std=self.std, min=self.min if self.count else None,
                       max=self.max if self.count else None)
        return out


def numeric_values(column: pa.ChunkedArray) -> np.ndarray:
    """A column as float64 with NaN for nulls: numbers, booleans, decimals, and dates (days since 1970-01-01),
    timestamps (seconds since the epoch), times and durations (seconds)."""
    dtype = column.type
    if pa.types.is_date(dtype):
        column = pc.cast(pc.cast(column, pa.date32()), pa.int32())
    elif pa.types.is_timestamp(dtype) or pa.types.is_duration(dtype) or pa.types.is_time(dtype):
        scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[dtype.unit]
        # unchecked: an int64 of nanoseconds since 1970 exceeds float64's exact integers (2^53), and seconds
        # need no nanosecond precision
        ticks = pc.cast(pc.cast(column, pa.int64()), pa.float64(), safe=False)
        values = np.asarray(numbers(ticks), dtype=np.float64)
        return values / scale
    try:
        column = pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"the column of type {dtype} cannot be read as numbers ({exc})") from None
    return np.asarray(numbers(column), dtype=np.float64)  # nulls become NaN


def category_strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A categorical column as strings (dictionaries decoded, numbers and booleans written out)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    return column


@njit(nogil=True)
def _moments(values):  # pragma: no cover - compiled
    """(finite count, NaN count, mean, population variance, min, max, third central moment) of the finite values,
    in two passes and no temporary arrays (a NumPy version allocates four per column and chunk, and the freed memory
    fragments)."""
    count = 0
    nan = 0
    total = 0.0
    low = np.inf
    high = -np.inf
    for i in range(values.shape[0]):
        v = np.float64(values[i])
        if v != v:
            nan += 1
        elif abs(v) != np.inf:
            count += 1
            total += v
            low = min(low, v)
            high = max(high, v)
    mean = total / count if count else 0.0
    squares = 0.0
    cubes = 0.0
    for i in range(values.shape[0]):
        v = np.float64(values[i])
        if v == v and abs(v) != np.inf:
            d = v - mean
            squares += d * d
            cubes += d * d * d
    return count, nan, mean, squares / count if count else 0.0, low, high, cubes / count if count else 0.0


def _plain_numbers(column: pa.ChunkedArray) -> np.ndarray | None:
    """The column's values without a copy when it is one chunk of floats or integers with no nulls."""
    dtype = column.type
    if column.num_chunks != 1 or column.null_count or not (pa.types.is_floating(dtype) or pa.types.is_integer(dtype)):
        return None
    if pa.types.is_float16(dtype):
        return None
    return numbers(column)


def column_stats(column: pa.ChunkedArray, categorical: bool, max_categories: int = DEFAULT_MAX_CATEGORIES,
                 treatment: ColumnTreatment | None = None) -> ColumnStats:
    """Statistics of one column of one chunk; a numeric column with a ``treatment`` is summarised after its
    transform (the values training sees), with a quantile sketch when it is to be binned."""
    if categorical:
        counted = dictionary_value_counts(column)
        if counted is not None:  # a Parquet dictionary's rows counted by index, no string decoded per row
            values, counts = counted
            return ColumnStats(count=int(counts.sum()), missing=column.null_count,
                               categories=SpaceSaving.from_counts(values, counts, category_capacity(max_categories)))
        strings = category_strings(column)
        return ColumnStats(count=len(strings) - strings.null_count, missing=strings.null_count,
                           categories=SpaceSaving.from_array(strings, category_capacity(max_categories)))
    if treatment is not None:
        values = numeric_values(column)
        if not values.flags.writeable:  # a zero-copy view of the column's buffer
            values = values.copy()
        values = treatment.transform(values)
        stats = array_stats(values)
        if treatment.bins:
            stats.quantiles = QuantileSketch.from_values(values)
        return stats
    values = _plain_numbers(column)
    return array_stats(numeric_values(column) if values is None else values)


@njit(nogil=True)
def _entry_counts(indices, valid, n_entries):  # pragma: no cover - compiled
    """(rows per dictionary entry, the entries seen in the order they first appear) of the valid rows."""
    counts = np.zeros(n_entries, dtype=np.int64)
    order = np.empty(n_entries, dtype=np.int64)
    seen = 0
    some_null = valid.shape[0] > 0
    for i in range(indices.shape[0]):
        if some_null and not valid[i]:
            continue
        k = indices[i]
        if counts[k] == 0:
            order[seen] = k
            seen += 1
        counts[k] += 1
    return counts, order[:seen]


def dictionary_value_counts(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray] | None:
    """(distinct values, their counts) of a one-chunk dictionary column of text whose dictionary holds each value
    once and no null, in the order the values first appear: what ``pc.value_counts`` of its decoded strings gives,
    from the indices alone. None for any other column."""
    if column.num_chunks != 1 or not pa.types.is_dictionary(column.type) or not is_text(column.type.value_type):
        return None
    chunk = column.chunk(0)
    dictionary = chunk.dictionary
    if dictionary.null_count or len(pc.unique(dictionary)) != len(dictionary):
        return None
    indices, valid = dictionary_indices(chunk)
    counts, order = _entry_counts(indices, valid, len(dictionary))
    return dictionary.take(from_numpy(order)), counts[order]


def array_stats(values: np.ndarray) -> ColumnStats:
    """Statistics of a 1-D array of numbers (NaN counts as missing), by one compiled two-pass kernel."""
    n, missing, mean, var, low, high, m3 = _moments(values)
    if n == 0:
        return ColumnStats(0, missing, int(values.size - missing))
    return ColumnStats(n, missing, int(values.size - n - missing), mean, var, low, high, m3=m3)


def merged_third_moment(a: ColumnStats, b: ColumnStats, delta: float, count: int) -> float:
    """The third central moment (population) of two row sets together, from each one's count, variance and third
    moment (Pébay 2008, "Formulas for robust, one-pass parallel computation of covariances and arbitrary-order
    statistical moments", eq. 2.1, with M_p = count x moment)."""
    na, nb = a.count, b.count
    m2a, m2b = a.var * na, b.var * nb
    m3 = (a.m3 * na + b.m3 * nb + delta ** 3 * na * nb * (na - nb) / (count * count)
          + 3.0 * delta * (na * m2b - nb * m2a) / count)
    return m3 / count


@dataclass
class DatasetStats:
    """Statistics of every column, by name, and the number of rows."""

    rows: int
    columns: dict[str, ColumnStats] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"rows": self.rows, "columns": {name: s.as_dict() for name, s in self.columns.items()}}

    def to_json(self) -> dict:
        """Everything the statistics hold, as JSON-ready data (``from_json`` restores them exactly: floats are
        written as their shortest exact text, the category summaries' values in their order)."""
        columns = {}
        for name, c in self.columns.items():
            column = {"count": c.count, "missing": c.missing, "infinite": c.infinite, "mean": c.mean, "var": c.var,
                      "min": c.min, "max": c.max, "m3": c.m3}
            if c.quantiles is not None:
                column["quantiles"] = c.quantiles.to_json()
            if c.categories is not None:
                summary = c.categories.compacted()
                column["categories"] = {"capacity": summary.capacity, "floor": summary.floor,
                                        "total": summary.total, "values": summary.values.to_pylist(),
                                        "counts": summary.counts.tolist(), "errors": summary.errors.tolist()}
            columns[name] = column
        return {"rows": self.rows, "columns": columns}

    @classmethod
    def from_json(cls, data: dict) -> DatasetStats:
        """The statistics ``to_json`` wrote."""
        columns = {}
        for name, c in data["columns"].items():
            summary = c.get("categories")
            if summary is not None:
                summary = SpaceSaving(int(summary["capacity"]), strings(summary["values"], VALUE_TYPE),
                                      np.array(summary["counts"], dtype=np.int64),
                                      np.array(summary["errors"], dtype=np.int64), int(summary["floor"]),
                                      int(summary["total"]))
            quantiles = c.get("quantiles")  # absent from statistics stored before quantile bins
            columns[name] = ColumnStats(int(c["count"]), int(c["missing"]), int(c["infinite"]), float(c["mean"]),
                                        float(c["var"]), float(c["min"]), float(c["max"]), summary,
                                        float(c.get("m3", 0.0)),
                                        None if quantiles is None else QuantileSketch.from_json(quantiles))
        return cls(int(data["rows"]), columns)


def units_stats(dataset: Dataset, units: Sequence[Unit], columns: Sequence[str], categorical: set[str],
                max_categories: int, treatments: Mapping[str, ColumnTreatment] | None = None) -> DatasetStats:
    """Statistics of ``columns`` over some units of the dataset, read one at a time (numeric columns with a
    treatment: of their transformed values, see ``column_stats``)."""
    treatments = treatments or {}
    # the categorical text columns read as Parquet dictionaries: their values counted by index
    text = dictionary_columns(dataset.schema, [name for name in columns if name in categorical])
    tables = UnitTableReader(dataset, columns, read_ahead=units, dictionary_columns=text)
    empty = SpaceSaving.empty(category_capacity(max_categories)) if categorical else None
    total = DatasetStats(0, {name: ColumnStats(categories=empty if name in categorical else None) for name in columns})
    try:
        for unit in units:
            table = tables.read(unit)
            total.rows += table.num_rows
            for name in columns:
                part = column_stats(table.column(name), name in categorical, max_categories, treatments.get(name))
                total.columns[name] = total.columns[name].merge(part)
    finally:
        tables.close()
    for column in total.columns.values():  # counts still pending folded in, so that reading them is cheap
        if column.categories is not None:
            column.categories = column.categories.compacted()
    return total


def compute_stats(dataset: Dataset, columns: Sequence[str], categorical: Sequence[str] = (),
                  max_categories: int = DEFAULT_MAX_CATEGORIES, workers: int = 2,
                  treatments: Mapping[str, ColumnTreatment] | None = None) -> DatasetStats:
    """One pass over ``columns`` of the dataset, ``workers`` threads each summarising a contiguous block of
    units (pyarrow decodes without the GIL); the blocks merge exactly. Memory: one unit per thread."""
    categorical = set(categorical)
    units = list(dataset.units)
    workers = max(1, min(workers, len(units)))
    blocks = [units[len(units) * k // workers: len(units) * (k + 1) // workers] for k in range(workers)]
    if len(blocks) == 1:
        parts = [units_stats(dataset, blocks[0], columns, categorical, max_categories, treatments)]
    else:
        with ThreadPoolExecutor(max_workers=len(blocks), thread_name_prefix="streamgd-stats") as pool:
            parts = list(pool.map(lambda block: units_stats(dataset, block, columns, categorical, max_categories,
                                                            treatments), blocks))
    pa.default_memory_pool().release_unused()  # the pass's freed buffers, before training reads the data again
    return merge_stats(parts, columns)


def merge_stats(parts: Sequence[DatasetStats], columns: Sequence[str]) -> DatasetStats:
    """The statistics of disjoint blocks of units together, merged in order (the first part is updated)."""
    total = parts[0]
    for part in parts[1:]:
        total.rows += part.rows
        for name in columns:
            total.columns[name] = total.columns[name].merge(part.columns[name])
    return total
