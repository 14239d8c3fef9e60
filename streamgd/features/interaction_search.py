"""Which pairs of categorical columns to cross when the run names none (``interactions="auto"``, the default of a
binary model with two or more categorical columns), and which columns a factorization machine gives factors
(``factor_fields="auto"``, ``search_factor_columns``).

A linear model on one-hot or hashed categories learns one weight per value; a click that depends on a *pair* of
values (an ad on a site, a device in a region) needs the pair as a feature of its own, Vowpal Wabbit's ``-q``.
Which pairs matter is a property of the data, so it is measured on a sample of it:

1. Read about ``SAMPLE_ROWS`` rows from units spread over the whole dataset, the label and every categorical column
   (each column's values numbered, a null being a value of its own).
2. Split the rows in two halves by row (even and odd). On one half, fit for each column a main effect per value and,
   for each pair of columns, an offset per cell (pair of values) on top of the two main effects; both are one
   Newton step of an L2-penalised logistic log likelihood from the smaller model (``PRIOR_ROWS`` rows' worth of
   penalty), so a value or cell seen a few times moves little.
3. The pair's **gain** is the log loss the cell offsets remove on the *other* half, in nats per row, over both
   directions (each row held out once), estimated to second order (the held-out Newton decrement
   ``delta (y - p) - delta^2 p (1 - p) / 2`` per row). A pair without an interaction gains nothing or loses a little (its offsets fit noise), so a
   held-out gain is its own significance test.
4. The pairs whose gain is at least ``MIN_GAIN`` of the baseline's log loss, and ``MIN_Z`` standard errors (of a
   mean over the held-out rows) above zero, are crossed, the strongest first, up to ``MAX_PAIRS``; they are hashed
   into the shared buckets like any ``--interactions``. The second test keeps a small sample from crossing noise:
   with few rows a pair's cells fit chance, and chance can gain on the other half too.

Cells are numbered exactly when a pair has at most ``CELL_BUCKETS`` of them, else hashed into that many (a few
collisions only blur a cell). The cost is a few compiled passes per pair over the sample (``pair_gain_kernels``);
it does not grow with the data. Only binary targets are searched (the log loss is the criterion); other models
keep the interactions the run names.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..data.arrow_numpy import numbers
from ..data.dataset import Dataset
from ..data.dictionary_slots import (
    dictionary_columns,
    dictionary_indices,
    is_text,
    validity_bits,
)
from ..data.unit_reader import UnitTableReader
from ..kernels.jit import njit
from .pair_gain_kernels import PairModel, column_effects, new_scratch, pair_gain
from .stats import category_strings

SAMPLE_ROWS = 200_000
PRIOR_ROWS = 20.0  # the L2 penalty of a value's or cell's offset, in rows at the base rate
MIN_GAIN = 0.001  # a pair is crossed when it removes at least this fraction of the baseline's held-out log loss
MIN_Z = 4.0  # ... and its gain is at least this many standard errors (over the held-out rows) above zero
MAX_PAIRS = 8
CELL_BUCKETS = 1 << 18
FACTOR_SAMPLE_ROWS = 500_000  # the factor-column search's sample (search_factor_columns)
FACTOR_TOP_VALUES = 30  # ... and the most frequent values of each column it keeps apart


@dataclass(frozen=True)
class PairGain:
    """A pair of categorical columns and the held-out log loss its cells remove, in nats per row."""

    a: str
    b: str
    gain: float
    relative: float  # gain / the baseline's held-out log loss
    z: float  # gain / its standard error over the held-out rows

    @property
    def label(self) -> str:
        return f"{self.a}:{self.b}"


@dataclass(frozen=True)
class InteractionSearch:
    """The outcome: the pairs to cross and every pair's gain (for ``inspect`` and tests)."""

    chosen: list[PairGain]
    gains: list[PairGain]  # every pair searched, the largest gain first
    rows: int  # rows of the sample


@dataclass(frozen=True)
class FactorColumnSearch:
    """The columns a factorization machine gives factors, the pairs that put them there, and the sample's rows."""

    columns: list[str]  # in the order of the columns searched
    pairs: list[PairGain]  # the pairs with evidence, the largest gain first
    rows: int


def sample_units(dataset: Dataset, rows: int) -> list:
    """Units spread evenly over the dataset, enough for about ``rows`` rows (all of them for a small dataset)."""
    units = list(dataset.units)
    return [units[i] for i in sample_positions(dataset, rows)]


def sample_positions(dataset: Dataset, rows: int) -> list[int]:
    """The positions in ``dataset.units`` of ``sample_units``."""
    units = list(dataset.units)
    total = sum(unit.n_rows for unit in units)
    if total <= rows or not units:
        return list(range(len(units)))
    share = rows / total
    wanted = max(1, int(np.ceil(share * len(units))))
    return np.unique(np.linspace(0, len(units) - 1, wanted).round().astype(int)).tolist()


Sample = tuple[np.ndarray, dict[str, np.ndarray]]  # (labels 0/1, each column's value numbers): read_sample's


def read_sample(dataset: Dataset, columns: Sequence[str], labels: Callable[[pa.ChunkedArray], np.ndarray],
                rows: int = SAMPLE_ROWS) -> Sample:
    """(labels 0/1 as float64, each column's value numbers as int64 with null the last number) of the sample's
    rows whose label is known. Values are numbered in the order they first appear in the sample (what
    ``pc.dictionary_encode`` of the strings gives: hashed cells and ties among frequent values depend on it).
    Text columns are read as Parquet dictionaries and numbered from their indices (``value_ids``), without
    decoding a string per row."""
    return read_samples(dataset, columns, labels, [rows])[0]


def read_samples(dataset: Dataset, columns: Sequence[str], labels: Callable[[pa.ChunkedArray], np.ndarray],
                 sizes: Sequence[int]) -> list[Sample]:
    """``read_sample`` for each of ``sizes``, reading each unit once: the units of every sample are read together,
    their values given ids shared by all the samples, and each sample's rows renumbered in the order its own
    values first appear (so each equals its ``read_sample``)."""
    picks = [sample_positions(dataset, rows) for rows in sizes]
    positions = sorted(set().union(*picks))
    units = list(dataset.units)
    text = dictionary_columns(dataset.schema, columns, [dataset.target])
    reader = UnitTableReader(dataset, [*columns, dataset.target], dictionary_columns=text)
    y_parts: list[np.ndarray] = []
    parts: dict[str, list[pa.Array]] = {name: [] for name in columns}
    try:
        for position in positions:
            table = reader.read(units[position])
            y_parts.append(labels(table.column(dataset.target)))
            for name in columns:
                parts[name].extend(table.column(name).chunks)
    finally:
        reader.close()
    ids = {name: value_ids(parts[name]) for name in columns}
    bounds = np.cumsum([0, *(len(part) for part in y_parts)])
    samples = []
    for pick in picks:
        chosen = set(pick)
        rows = np.concatenate([np.arange(bounds[k], bounds[k + 1]) for k, position in enumerate(positions)
                               if position in chosen] or [np.zeros(0, dtype=np.int64)])
        y = np.concatenate(y_parts)[rows] if y_parts else np.zeros(0)
        known = np.isfinite(y)
        samples.append((y[known], {name: _first_appearance_numbers(ids[name][0][rows], ids[name][1])[known]
                                   for name in columns}))
    return samples


def value_ids(chunks: Sequence[pa.Array]) -> tuple[np.ndarray, int]:
    """(each row's value id as int64, -1 for a null; the number of ids): equal values get equal ids. Chunks of
    dictionaries of text get them from their indices (each chunk's dictionary encoded once); any other column
    through its strings (``category_strings``), numbered in the order the values first appear."""
    if not chunks or not all(pa.types.is_dictionary(chunk.type) and is_text(chunk.type.value_type)
                             for chunk in chunks):
        strings = [category_strings(pa.chunked_array([chunk])).cast(pa.large_string()) for chunk in chunks]
        values = pa.chunked_array([piece for part in strings for piece in part.chunks], type=pa.large_string())
        encoded = pc.dictionary_encode(values).combine_chunks()
        return numbers(encoded.indices, null=-1).astype(np.int64), len(encoded.dictionary)
    entries = pc.dictionary_encode(pa.chunked_array(  # every chunk's dictionary entries, numbered together
        [chunk.dictionary.cast(pa.large_string()) for chunk in chunks], type=pa.large_string())).combine_chunks()
    entry_ids = numbers(entries.indices, null=-1).astype(np.int64)
    ids = np.empty(sum(len(chunk) for chunk in chunks), dtype=np.int64)
    start = offset = 0
    for chunk in chunks:  # each row's id in the shared numbering of the entries, -1 for a null
        n = len(chunk)
        if n:
            bits, bit_offset = validity_bits(chunk)
            _entry_ids(dictionary_indices(chunk, with_validity=False)[0], bits, bit_offset, entry_ids, offset,
                       ids[start:start + n])
        start += n
        offset += len(chunk.dictionary)
    return ids, len(entries.dictionary)


@njit(nogil=True)
def _entry_ids(indices, bits, bit_offset, entry_ids, offset, out):  # pragma: no cover - compiled
    """out[i] = entry_ids[offset + indices[i]], or -1 where row i's bit in the validity bitmap ``bits`` is 0
    (empty ``bits``: no null), in one pass (no filled, cast and masked copies of the indices)."""
    every = bits.shape[0] == 0
    for i in range(indices.shape[0]):
        at = bit_offset + i
        if every or (bits[at >> 3] >> (at & 7)) & 1:
            out[i] = entry_ids[offset + indices[i]]
        else:
            out[i] = -1


@njit(nogil=True)
def _first_appearance_numbers(ids, n_ids):  # pragma: no cover - compiled
    """``ids`` (0..n_ids-1, -1 for a null) renumbered 0, 1, ... in the order each first appears, a null the
    number after the last: one pass, where sorting the ids to find each one's first row costs a sort per column."""
    number = np.full(n_ids, -1, dtype=np.int64)
    out = np.empty(ids.shape[0], dtype=np.int64)
    seen = 0
    for i in range(ids.shape[0]):
        k = ids[i]
        if k < 0:
            continue
        if number[k] < 0:
            number[k] = seen
            seen += 1
        out[i] = number[k]
    for i in range(ids.shape[0]):
        if ids[i] < 0:
            out[i] = seen
    return out


def pair_gains(y: np.ndarray, codes: dict[str, np.ndarray], prior_rows: float = PRIOR_ROWS,
               threads: int = 2) -> list[PairGain]:
    """Every pair's held-out gain (module docstring, steps 2-3), the largest first (ties in the order of the pairs).
    ``y``: labels 0 and 1 (anything else is refused); ``codes``: each column's value numbers, 0, 1, ..."""
    names = list(codes)
    if len(y) < 4 or len(names) < 2:
        return []
    y = np.ascontiguousarray(y, dtype=np.float64)
    labels = y.astype(np.uint8)  # read by the kernel: a byte a row
    if not np.array_equal(labels, y):
        raise ValueError("the interaction search scores labels 0 and 1 alone")
    folds = [np.arange(0, len(y), 2), np.arange(1, len(y), 2)]
    rates = np.array([np.clip(y[rows].mean(), 1e-6, 1 - 1e-6) for rows in folds])
    penalty = prior_rows * rates * (1.0 - rates)
    base_margins = np.log(rates / (1.0 - rates))
    held_losses = [float(np.mean(np.logaddexp(0.0, m) - y[rows] * m)) for m, rows in zip(base_margins, folds[::-1])]
    baseline = sum(held_losses) / 2
    sizes = {name: int(codes[name].max()) + 1 for name in names}
    means = np.array([y[rows].mean() for rows in folds])  # each fold's base rate (unclipped) for its effects
    effects = {name: np.empty((2, sizes[name])) for name in names}
    columns = {name: np.empty(len(y), dtype=np.int32 if sizes[name] < 1 << 31 else np.int64) for name in names}
    for name in names:  # each column's effects per fold (step 2) and its numbers as int32
        column_effects(codes[name], y, means, penalty, effects[name], columns[name])
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    cells = min(max(sizes[a] * sizes[b] for a, b in pairs), CELL_BUCKETS)

    model = PairModel(labels, base_margins, penalty)
    order = iter(sorted(range(len(pairs)), key=lambda k: -sizes[pairs[k][0]] * sizes[pairs[k][1]]))  # the largest
    lock = threading.Lock()  # pairs first, each to the next free thread: the threads end level

    def work() -> list[tuple[int, PairGain]]:
        scratch = new_scratch(len(y), cells)  # each thread its own
        out = []
        while True:
            with lock:
                k = next(order, None)
            if k is None:
                return out
            a, b = pairs[k]
            buckets = CELL_BUCKETS if sizes[a] * sizes[b] > CELL_BUCKETS else 0
            gain, squares = pair_gain(columns[a], columns[b], sizes[b], buckets, model, effects[a], effects[b],
                                      scratch)
            error = np.sqrt(max(squares - gain * gain, 0.0) / len(y))  # the standard error of a mean over rows
            out.append((k, PairGain(a, b, float(gain), float(gain) / baseline,
                                    float(gain / error) if error else 0.0)))

    workers = max(1, min(threads, len(pairs)))
    with ThreadPoolExecutor(workers) as pool:  # the kernel releases the GIL
        done = [pool.submit(work) for _ in range(workers)]
        found = dict(item for future in done for item in future.result())
    return sorted((found[k] for k in range(len(pairs))), key=lambda pair: -pair.gain)


def search_interactions(dataset: Dataset, columns: Sequence[str], labels: Callable[[pa.ChunkedArray], np.ndarray],
                        rows: int = SAMPLE_ROWS, min_gain: float = MIN_GAIN,
                        max_pairs: int = MAX_PAIRS, sample: Sample | None = None) -> InteractionSearch:
    """The pairs of ``columns`` worth crossing (module docstring); ``labels`` maps the target column to 0/1.
    ``sample``: the ``rows`` sample already read (``read_samples``, when the factor search reads the data too)."""
    y, codes = read_sample(dataset, columns, labels, rows) if sample is None else sample
    gains = pair_gains(y, codes)
    chosen = [pair for pair in gains if pair.relative >= min_gain and pair.z >= MIN_Z][:max_pairs]
    return InteractionSearch(chosen, gains, len(y))


def top_values(codes: np.ndarray, n: int) -> np.ndarray:
    """Value numbers of one column with its ``n`` most frequent values kept (numbered 0..n-1, the most frequent
    first) and every other value pooled as number ``n``."""
    counts = np.bincount(codes)
    order = np.argsort(-counts, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    return np.minimum(rank[codes], n)


def search_factor_columns(dataset: Dataset, columns: Sequence[str], labels: Callable[[pa.ChunkedArray], np.ndarray],
                          rows: int = FACTOR_SAMPLE_ROWS, top: int = FACTOR_TOP_VALUES,
                          min_z: float = MIN_Z, sample: Sample | None = None) -> FactorColumnSearch:
    """The categorical columns a factorization machine gives factors (``factor_fields="auto"``): those in a pair
    whose held-out gain (steps 2-3 of the module docstring) is positive and ``min_z`` standard errors above zero,
    each column's values cut to its ``top`` most frequent ones (the rest pooled).

    Why not the crossing test itself: low-rank pair effects spread over many values, so each of a pair's many
    cells is seen too rarely for its own offset to gain on the other half (issue 28's benchmark: among 26
    columns only one pair of the five planted columns passed). Cut to their frequent values, the same pairs'
    cells are well filled, the planted pairs rise many standard errors above the rest, and the columns without
    pair effects, whose factors would only fit noise, are left out. A larger sample than the crossing search's
    gives the test power on the rarer pairs. ``sample``: the ``rows`` sample already read (``read_samples``)."""
    y, codes = read_sample(dataset, columns, labels, rows) if sample is None else sample
    gains = pair_gains(y, {name: top_values(numbers, top) for name, numbers in codes.items()})
    evidence = [pair for pair in gains if pair.gain > 0 and pair.z >= min_z]
    chosen = {name for pair in evidence for name in (pair.a, pair.b)}
    return FactorColumnSearch([name for name in columns if name in chosen], evidence, len(y))


def describe_factor_search(found: FactorColumnSearch, n_columns: int) -> str:
    """One line for the user: the columns that got factors and the pairs that showed why."""
    searched = f"{n_columns * (n_columns - 1) // 2:,} pairs of {n_columns} categorical columns on {found.rows:,} rows"
    if not found.columns:
        return (f"factors: no pair among {searched} shows a pair effect, so every column gets factors "
                "(--factor-fields A,B,... names some)")
    pairs = ", ".join(f"{pair.label} (z {pair.z:.1f})" for pair in found.pairs[:6])
    more = f" and {len(found.pairs) - 6} more" if len(found.pairs) > 6 else ""
    return (f"factors: {', '.join(found.columns)} ({len(found.columns)} of {n_columns} columns), in the pairs "
            f"{pairs}{more} found among {searched} (--factor-fields all or A,B,... chooses otherwise)")


def describe_search(found: InteractionSearch, n_columns: int) -> str:
    """One line for the user: the pairs crossed and their gains, or that none was worth it."""
    searched = f"{n_columns * (n_columns - 1) // 2:,} pairs of {n_columns} categorical columns on {found.rows:,} rows"
    if not found.chosen:
        return f"interactions: none of {searched} gains enough to cross (--interactions A:B names some)"
    pairs = ", ".join(f"{pair.label} ({pair.relative:.2%})" for pair in found.chosen)
    return (f"interactions: {pairs} of the held-out log loss, found among {searched} (--interactions none or A:B "
            "chooses otherwise)")
