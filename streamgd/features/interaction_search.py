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
collisions only blur a cell). The cost is a handful of ``bincount`` passes per pair over the sample; it does not
grow with the data. Only binary targets are searched (the log loss is the criterion); other models keep the
interactions the run names.
"""

from __future__ import annotations

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


def _newton_offsets(groups: np.ndarray, n_groups: int, y: np.ndarray, penalty: float) -> np.ndarray:
    """One Newton step, from the base rate, of each group's logit offset under an L2 penalty."""
    base = y.mean()
    residual = np.bincount(groups, weights=y - base, minlength=n_groups)
    curvature = np.bincount(groups, minlength=n_groups) * (base * (1.0 - base))
    return residual / (curvature + penalty)


@njit(nogil=True)
def _cell_probabilities(size_a, size_b, effects_a, effects_b, base_margins, out):
    """out[fold, va * size_b + vb]: the additive model's probability of a row of cell (va, vb) in ``fold``, the
    same expression (and so the same bits) ``_pair_gain`` evaluates per row."""
    for fold in range(2):
        for va in range(size_a):
            for vb in range(size_b):
                out[fold, va * size_b + vb] = 1.0 / (1.0 + np.exp(-(base_margins[fold] + effects_a[fold, va]
                                                                     + effects_b[fold, vb])))


@njit(nogil=True)
def _pair_gain(a, b, size_b, hashed, y, effects_a, effects_b, base_margins, penalty, table, probabilities):
    """Held-out gain of crossing columns ``a`` and ``b`` and the mean of its squared terms, both folds at once: row
    i fits fold i % 2 and is held out of the other. A first pass sums each cell's residual and curvature at the
    additive model per fold; a second scores each row with the other fold's Newton offset of its cell, to second
    order: ``delta (y - p) - delta^2 p (1 - p) / 2``. ``table``: a zeroed work table, (cells, 4) for each cell's
    residual and curvature in fold 0 and fold 1 side by side (one cache line), zeroed again on return.
    ``probabilities``: each exact cell's probability per fold (``_cell_probabilities``) when the pair has fewer
    cells than the sample has rows, so a row looks its probability up instead of computing an ``exp``; else an
    empty (2, 0) array."""
    cached = probabilities.shape[1] > 0
    n = y.shape[0]
    slots = table.shape[0]
    shift = np.uint64(64 - int(np.log2(slots)))
    for i in range(n):  # the fit sums: each row in its own fold
        cell = a[i] * size_b + b[i]
        if hashed:
            cell = np.int64((np.uint64(cell) * np.uint64(0x9E3779B97F4A7C15)) >> shift)
        fold = i & 1
        if cached:
            p = probabilities[fold, a[i] * size_b + b[i]]
        else:
            p = 1.0 / (1.0 + np.exp(-(base_margins[fold] + effects_a[fold, a[i]] + effects_b[fold, b[i]])))
        table[cell, 2 * fold] += y[i] - p
        table[cell, 2 * fold + 1] += p * (1.0 - p)
    gain = 0.0
    squares = 0.0
    for i in range(n):  # each row held out of the other fold
        cell = a[i] * size_b + b[i]
        if hashed:
            cell = np.int64((np.uint64(cell) * np.uint64(0x9E3779B97F4A7C15)) >> shift)
        fold = 1 - (i & 1)
        curvature = table[cell, 2 * fold + 1]
        if curvature == 0.0:
            continue
        delta = table[cell, 2 * fold] / (curvature + penalty[fold])
        if cached:
            p = probabilities[fold, a[i] * size_b + b[i]]
        else:
            p = 1.0 / (1.0 + np.exp(-(base_margins[fold] + effects_a[fold, a[i]] + effects_b[fold, b[i]])))
        term = delta * (y[i] - p) - 0.5 * delta * delta * p * (1.0 - p)
        gain += term
        squares += term * term
    table[:] = 0.0  # sequential: cheaper than revisiting the cells at random
    return gain / n, squares / n


# a hashed pair's rows are scored by partitions of 2^14 cells: 512 KiB of work table, which stays in a core's L2
# cache (scripts/bench_startup.py; smaller partitions cost more in bucketing the rows than they save)
PARTITION_BITS = 14


@njit(nogil=True)
def _partitioned_pair_gain(a, b, size_b, hashed, y, effects_a, effects_b, base_margins, penalty, table,
                           probabilities, n_cells, records, terms):  # pragma: no cover - compiled
    """``_pair_gain``'s result, bit for bit, for a pair whose work table is larger than a cache: the rows are
    first bucketed by their cell's partition (``PARTITION_BITS`` high bits of the cell), each row as one record
    (cell, row, residual and curvature in its fit fold, its probability in its held-out fold), in row order within
    each partition; each partition is then summed and scored in a table of its own cells alone, which stays in
    cache, where ``_pair_gain`` reads a table of up to ``CELL_BUCKETS`` cells at random for every row. A cell's
    sums add its rows in row order as ``_pair_gain`` does, and the held-out terms (``terms``: one per row, NaN
    where the cell is empty in the other fold) are added in row order too. ``records``: (rows, 6) scratch;
    ``table``: at least (2^PARTITION_BITS, 4), zeroed, and zeroed again on return."""
    cached = probabilities.shape[1] > 0
    n = y.shape[0]
    width = 1 << PARTITION_BITS
    n_parts = (n_cells + width - 1) >> PARTITION_BITS
    shift = np.uint64(64 - int(np.log2(n_cells))) if hashed else np.uint64(0)
    starts = np.zeros(n_parts + 1, dtype=np.int64)
    for i in range(n):  # the rows of each partition
        cell = a[i] * size_b + b[i]
        if hashed:
            cell = np.int64((np.uint64(cell) * np.uint64(0x9E3779B97F4A7C15)) >> shift)
        starts[(cell >> PARTITION_BITS) + 1] += 1
    for k in range(n_parts):
        starts[k + 1] += starts[k]
    filled = starts[:-1].copy()
    for i in range(n):  # each row's record, placed in its partition
        exact = a[i] * size_b + b[i]
        cell = exact
        if hashed:
            cell = np.int64((np.uint64(cell) * np.uint64(0x9E3779B97F4A7C15)) >> shift)
        fold = i & 1
        if cached:
            p = probabilities[fold, exact]
            q = probabilities[1 - fold, exact]
        else:
            p = 1.0 / (1.0 + np.exp(-(base_margins[fold] + effects_a[fold, a[i]] + effects_b[fold, b[i]])))
            q = 1.0 / (1.0 + np.exp(-(base_margins[1 - fold] + effects_a[1 - fold, a[i]]
                                      + effects_b[1 - fold, b[i]])))
        part = cell >> PARTITION_BITS
        k = filled[part]
        filled[part] = k + 1
        records[k, 0] = cell
        records[k, 1] = i
        records[k, 2] = y[i] - p
        records[k, 3] = p * (1.0 - p)
        records[k, 4] = q
        records[k, 5] = y[i]
    for part in range(n_parts):
        first = part << PARTITION_BITS
        for k in range(starts[part], starts[part + 1]):  # the fit sums, each row in its own fold
            cell = np.int64(records[k, 0]) - first
            fold = np.int64(records[k, 1]) & 1
            table[cell, 2 * fold] += records[k, 2]
            table[cell, 2 * fold + 1] += records[k, 3]
        for k in range(starts[part], starts[part + 1]):  # each row held out of the other fold
            cell = np.int64(records[k, 0]) - first
            i = np.int64(records[k, 1])
            fold = 1 - (i & 1)
            curvature = table[cell, 2 * fold + 1]
            if curvature == 0.0:
                terms[i] = np.nan
                continue
            delta = table[cell, 2 * fold] / (curvature + penalty[fold])
            p = records[k, 4]
            terms[i] = delta * (records[k, 5] - p) - 0.5 * delta * delta * p * (1.0 - p)
        table[: min(width, n_cells - first)] = 0.0
    gain = 0.0
    squares = 0.0
    for i in range(n):
        term = terms[i]
        if np.isnan(term):
            continue
        gain += term
        squares += term * term
    return gain / n, squares / n


def pair_gains(y: np.ndarray, codes: dict[str, np.ndarray], prior_rows: float = PRIOR_ROWS,
               threads: int = 2) -> list[PairGain]:
    """Every pair's held-out gain (module docstring, steps 2-3), the largest first."""
    names = list(codes)
    if len(y) < 4 or len(names) < 2:
        return []
    y = np.ascontiguousarray(y, dtype=np.float64)
    folds = [np.arange(0, len(y), 2), np.arange(1, len(y), 2)]
    rates = np.array([np.clip(y[rows].mean(), 1e-6, 1 - 1e-6) for rows in folds])
    penalty = prior_rows * rates * (1.0 - rates)
    base_margins = np.log(rates / (1.0 - rates))
    held_losses = [float(np.mean(np.logaddexp(0.0, m) - y[rows] * m)) for m, rows in zip(base_margins, folds[::-1])]
    baseline = sum(held_losses) / 2
    sizes = {name: int(codes[name].max()) + 1 for name in names}
    effects = {name: np.stack([_newton_offsets(codes[name][rows], sizes[name], y[rows], pen)
                               for rows, pen in zip(folds, penalty)]) for name in names}
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    cells = min(max(sizes[a] * sizes[b] for a, b in pairs), CELL_BUCKETS)

    def gains_of(share: list[tuple[str, str]]) -> list[PairGain]:
        table = np.zeros((cells, 4))  # each thread its own
        cached = np.empty((2, min(cells, len(y) // 2)))  # cell probabilities, for pairs with fewer cells than rows
        records = terms = None  # the partitioned kernel's scratch, made when a pair first needs it
        out = []
        for a, b in share:
            n_cells = sizes[a] * sizes[b]
            hashed = n_cells > CELL_BUCKETS
            probabilities = cached[:, :n_cells] if not hashed and 2 * n_cells <= len(y) else cached[:, :0]
            if probabilities.shape[1]:
                _cell_probabilities(sizes[a], sizes[b], effects[a], effects[b], base_margins, probabilities)
            table_cells = CELL_BUCKETS if hashed else n_cells
            if hashed and table_cells >= 1 << PARTITION_BITS:
                if records is None:
                    records, terms = np.empty((len(y), 6)), np.empty(len(y))
                gain, squares = _partitioned_pair_gain(codes[a], codes[b], sizes[b], hashed, y, effects[a],
                                                       effects[b], base_margins, penalty, table, probabilities,
                                                       table_cells, records, terms)
            else:
                gain, squares = _pair_gain(codes[a], codes[b], sizes[b], hashed, y, effects[a], effects[b],
                                           base_margins, penalty, table[:table_cells], probabilities)
            error = np.sqrt(max(squares - gain * gain, 0.0) / len(y))  # the standard error of a mean over rows
            out.append(PairGain(a, b, float(gain), float(gain) / baseline, float(gain / error) if error else 0.0))
        return out

    workers = max(1, min(threads, len(pairs)))
    with ThreadPoolExecutor(workers) as pool:  # the kernel releases the GIL
        found = [pair for share in pool.map(gains_of, [pairs[k::workers] for k in range(workers)]) for pair in share]
    return sorted(found, key=lambda pair: -pair.gain)


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
