"""Criteo-shaped click logs drawn from a known logistic truth, written row group by row group.

The columns are ``label`` (int8, 0 or 1), ``I1..I{n_numeric}`` (float32 counts, heavy-tailed, some null) and
``C1..C{n_categorical}`` (8 hex digits, as Criteo's tokens, Zipf-distributed over each column's cardinality,
some null). With ``r_k`` the Zipf rank (0 = most frequent) of the value of ``Ck`` in a row, the truth is

    margin = b + sum_j w_j log1p(I_j) + sum_k e_k(r_k) + sum_{(a, c) in pairs} g_ac(r_a, r_c)
             [+ sum_{a < c in factor columns} <u_a(r_a), u_c(r_c)>]              (FM-shaped), or
             [+ sum_{a < c in factor columns} <u_{a,c}(r_a), u_{c,a}(r_c)>]      (FFM-shaped)
    label ~ Bernoulli(sigmoid(margin)),     P(r_k = r) proportional to (r + 1)^-zipf, r < cardinality_k

where a null contributes 0 to its term (a null count counts as a zero count), ``e_k(r) ~ N(0, s_k^2)`` and
``g_ac(r_a, r_c) ~ N(0, t^2)`` are drawn from a 64-bit hash of (model seed, column or pair, rank or ranks), so
no table of a million effects is held or drawn, and ``b`` is solved for once so that the mean click rate is
about ``ctr``. The bracketed low-rank pair effects are off unless ``factor_rank`` R > 0: each value of each
factor column then has a latent vector in R^R (FFM-shaped: one per other factor column), each component
N(0, sigma^2) from the same hash, with sigma set so that the pair term's standard deviation is about
``factor_scale``. A linear model cannot learn them, and crosses of the columns need a parameter per pair of
values; a factorization machine needs R numbers per value (issue 28's benchmark, ``scripts/bench_fm.py``). A token is a bijective 32-bit mix of (model seed, column, rank): distinct ranks of a column give
distinct tokens, and a token gives its rank back (:meth:`CtrModel.margins` recomputes the truth from a table).

Memory is bounded by one row group (with the latent vectors of its values: R floats per factor column and row,
made per row group) plus each column's Zipf table (8 bytes per possible value: 20 MB for the default
cardinalities); rows depend only on ``seed`` and ``row_group_size``, the truth only on ``model_seed``
and the other arguments (the intercept is solved for them), so a holdout set is another ``seed`` with the same
``model_seed`` and arguments.

>>> import tempfile, os, pyarrow.parquet as pq
>>> path = os.path.join(tempfile.mkdtemp(), "clicks.parquet")
>>> info = make_ctr_dataset(path, n_rows=3000, n_numeric=2, n_categorical=3, cardinalities=(3, 50, 1000),
...                         row_group_size=1000)
>>> pq.ParquetFile(path).schema_arrow.names, info.interactions
(['label', 'I1', 'I2', 'C1', 'C2', 'C3'], [('C1', 'C2')])
>>> from collections import Counter  # the most frequent value of C1 is its rank 0
>>> Counter(pq.read_table(path).column("C1").to_pylist()).most_common(1)[0][0] == info.model.tokens(0, [0])[0]
True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import ConfigError
from .synthetic import output_files

TASK = "ctr"
N_NUMERIC = 13  # Criteo's I1..I13
N_CATEGORICAL = 26  # Criteo's C1..C26
ZIPF = 1.1
CTR = 0.25
NUMERIC_NULL_FRACTION = 0.1
PAIR_SCALE = 0.5  # t: the standard deviation of a pair cell's effect
FACTOR_SCALE = 1.0  # the standard deviation of the low-rank pair term (all pairs, no nulls)
MAX_FACTOR_RANK = 64
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_U64 = np.uint64
_M32 = np.uint64(0xFFFFFFFF)


def default_cardinalities(n_categorical: int) -> tuple[int, ...]:
    """Criteo's spread of cardinalities: from 3 to 10^6 values, geometrically, over the categorical columns."""
    if n_categorical == 1:
        return (3,)
    return tuple(int(round(c)) for c in np.geomspace(3, 1_000_000, n_categorical))


def default_null_fractions(n_categorical: int) -> tuple[float, ...]:
    """Null fraction per categorical column: 30% in every fifth column (C5, C10, ...), 2% elsewhere."""
    return tuple(0.3 if k % 5 == 4 else 0.02 for k in range(n_categorical))


def default_interactions(n_categorical: int) -> tuple[tuple[int, int], ...]:
    """The planted pairs (0-based columns): C1 x C2, and two higher-cardinality columns (C11 x C16 of 26)."""
    pairs = [(0, 1)] if n_categorical >= 2 else []
    if n_categorical >= 5:
        pairs.append((n_categorical * 2 // 5, n_categorical * 3 // 5))
    return tuple(pairs)


def default_factor_columns(n_categorical: int) -> tuple[int, ...]:
    """The columns with latent vectors (0-based): up to five, between a fifth and three fifths of the way through
    the columns, where cardinalities grow from tens to thousands (C6, C9, C11, C14, C17 of 26): frequent values
    recur often enough to be learned, and the column pairs have too many cells to cross one by one."""
    if n_categorical < 2:
        return ()
    return tuple(sorted({min(n_categorical - 1, int(round(n_categorical * f))) for f in (0.2, 0.3, 0.4, 0.5, 0.6)}))


def factor_component_scale(n_columns: int, rank: int, scale: float) -> float:
    """sigma such that sum over the P = n(n-1)/2 column pairs of <u_a, u_c> (R products of two independent
    N(0, sigma^2) each, uncorrelated across pairs) has variance P R sigma^4 = scale^2."""
    pairs = n_columns * (n_columns - 1) // 2
    return float((scale ** 2 / (pairs * rank)) ** 0.25) if pairs and rank else 0.0


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 whose output bits all depend on every input bit."""
    x = np.asarray(x, dtype=_U64)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _mix32(x: np.ndarray) -> np.ndarray:
    """A bijection of uint32 (Wellons' lowbias32); :func:`_unmix32` is its inverse."""
    x = np.asarray(x, dtype=np.uint32)
    x = (x ^ (x >> np.uint32(16))) * np.uint32(0x7FEB352D)
    x = (x ^ (x >> np.uint32(15))) * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def _unmix32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint32)
    x = (x ^ (x >> np.uint32(16))) * np.uint32(0x43021123)
    x = (x ^ (x >> np.uint32(15)) ^ (x >> np.uint32(30))) * np.uint32(0x1D69E2A5)
    return x ^ (x >> np.uint32(16))


def _normal_from_hash(h: np.ndarray) -> np.ndarray:
    """A standard normal per 64-bit hash (Box-Muller on its two 32-bit halves)."""
    u1 = ((h >> _U64(32)).astype(np.float64) + 0.5) / 2.0**32
    u2 = ((h & _M32).astype(np.float64) + 0.5) / 2.0**32
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@dataclass(frozen=True)
class CtrModel:
    """The planted truth: numeric count distributions and weights, per-value and per-pair effects, intercept."""

    seed: int
    cardinalities: tuple[int, ...]
    zipf: float
    numeric_log_mean: np.ndarray  # (n_numeric,): I_j = floor(exp(N(mu_j, sigma_j^2)))
    numeric_log_std: np.ndarray  # (n_numeric,)
    numeric_coef: np.ndarray  # (n_numeric,): w_j, per unit of log1p(I_j)
    category_scale: np.ndarray  # (n_categorical,): s_k
    interactions: tuple[tuple[int, int], ...]  # 0-based column pairs
    pair_scale: float
    intercept: float = 0.0
    factor_rank: int = 0  # R: 0 = no low-rank pair effects
    factor_columns: tuple[int, ...] = ()  # 0-based columns with latent vectors
    factor_field_aware: bool = False  # FFM-shaped: a vector per (value, other factor column)
    factor_sigma: float = 0.0  # the standard deviation of each latent component
    _cdfs: list = field(default_factory=list, repr=False, compare=False)

    @property
    def n_numeric(self) -> int:
        return len(self.numeric_coef)

    @property
    def n_categorical(self) -> int:
        return len(self.cardinalities)

    def _key(self, *parts: int) -> np.uint64:
        return _mix64(np.array([self.seed & 0xFFFFFFFF], _U64) ^ _mix64(np.array(
            [sum(int(p) << (16 * i) for i, p in enumerate(parts))], _U64)))[0]

    def value_effects(self, column: int, ranks: np.ndarray) -> np.ndarray:
        """``e_k(r)`` of column ``column`` (0-based) for each rank (>= 0)."""
        key = self._key(1, column)
        return self.category_scale[column] * _normal_from_hash(_mix64(np.asarray(ranks).astype(_U64) ^ key))

    def pair_effects(self, pair: int, ranks_a: np.ndarray, ranks_c: np.ndarray) -> np.ndarray:
        """``g_ac(r_a, r_c)`` of ``interactions[pair]`` for each pair of ranks (>= 0)."""
        key = self._key(2, pair)
        both = (np.asarray(ranks_a).astype(_U64) << _U64(32)) | np.asarray(ranks_c).astype(_U64)
        return self.pair_scale * _normal_from_hash(_mix64(both ^ key))

    def factor_vectors(self, column: int, ranks: np.ndarray, other: int | None = None) -> np.ndarray:
        """(n, R): the latent vector ``u_k(r)`` of column ``column`` (0-based) for each rank, or with ``other``
        (a column) the field-aware ``u_{k,other}(r)``."""
        ranks = np.asarray(ranks).astype(_U64)
        out = np.empty((len(ranks), self.factor_rank))
        for q in range(self.factor_rank):
            key = self._key(4, column, 0 if other is None else other + 1, q)
            out[:, q] = _normal_from_hash(_mix64(ranks ^ key))
        return self.factor_sigma * out

    def factor_pair_margins(self, ranks: np.ndarray) -> np.ndarray:
        """The low-rank pair term of each row: sum over factor column pairs a < c of <u_a(r_a), u_c(r_c)> (or
        the field-aware <u_{a,c}(r_a), u_{c,a}(r_c)>); a null value's vector is zero. ``ranks`` as in
        :meth:`partial_margins`. Zero when ``factor_rank`` is 0."""
        n = ranks.shape[1]
        margin = np.zeros(n)
        if self.factor_rank == 0:
            return margin

        def vectors(k: int, other: int | None) -> np.ndarray:
            seen = ranks[k] >= 0
            u = np.zeros((n, self.factor_rank))
            u[seen] = self.factor_vectors(k, ranks[k][seen], other)
            return u

        columns = self.factor_columns
        if not self.factor_field_aware:
            u = {k: vectors(k, None) for k in columns}  # one row group's vectors: n x R per column
        for i, a in enumerate(columns):
            for c in columns[i + 1:]:
                if self.factor_field_aware:
                    margin += np.einsum("nq,nq->n", vectors(a, c), vectors(c, a))
                else:
                    margin += np.einsum("nq,nq->n", u[a], u[c])
        return margin

    def codes(self, column: int, ranks: np.ndarray) -> np.ndarray:
        """The 32-bit token codes of ranks of ``column``: distinct ranks, distinct codes."""
        key = np.uint32(int(self._key(3, column)) & 0xFFFFFFFF)
        return _mix32(np.asarray(ranks).astype(np.uint32) + key)

    def ranks(self, column: int, codes: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`codes`."""
        key = np.uint32(int(self._key(3, column)) & 0xFFFFFFFF)
        return (_unmix32(codes) - key).astype(np.int64)

    def tokens(self, column: int, ranks: Sequence[int] | np.ndarray) -> np.ndarray:
        """The text values (8 hex digits) of ranks of ``column``."""
        return np.array([f"{c:08x}" for c in self.codes(column, np.asarray(ranks))], dtype=object)

    def cdf(self, column: int) -> np.ndarray:
        """P(rank <= r) for r < cardinality, computed once per column."""
        while len(self._cdfs) <= column:
            k = len(self._cdfs)
            weights = np.arange(1, self.cardinalities[k] + 1, dtype=np.float64) ** -self.zipf
            cdf = np.cumsum(weights)
            self._cdfs.append(cdf / cdf[-1])
        return self._cdfs[column]

    def draw_ranks(self, rng: np.random.Generator, column: int, n: int) -> np.ndarray:
        cdf = self.cdf(column)
        return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)

    def partial_margins(self, counts: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """The margin without the intercept: ``counts`` (n_numeric, n) with NaN for null, ``ranks``
        (n_categorical, n) with -1 for null."""
        margin = self.numeric_coef @ np.log1p(np.nan_to_num(counts, nan=0.0))
        for k in range(self.n_categorical):
            seen = ranks[k] >= 0
            margin[seen] += self.value_effects(k, ranks[k][seen])
        for p, (a, c) in enumerate(self.interactions):
            seen = (ranks[a] >= 0) & (ranks[c] >= 0)
            margin[seen] += self.pair_effects(p, ranks[a][seen], ranks[c][seen])
        if self.factor_rank:
            margin += self.factor_pair_margins(ranks)
        return margin

    def margins(self, table: pa.Table) -> np.ndarray:
        """The true margin of every row of a table written by :func:`make_ctr_dataset` with this model."""
        n = table.num_rows
        counts = np.zeros((self.n_numeric, n))
        for j in range(self.n_numeric):
            counts[j] = table.column(f"I{j + 1}").to_numpy(zero_copy_only=False).astype(np.float64)
        ranks = np.zeros((self.n_categorical, n), dtype=np.int64)
        for k in range(self.n_categorical):
            codes, null = _token_codes(table.column(f"C{k + 1}"))
            ranks[k] = np.where(null, -1, self.ranks(k, codes))
        return self.intercept + self.partial_margins(counts, ranks)


def _token_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 codes, null mask) of a column of 8-hex-digit tokens."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    null = array.is_null().to_numpy(zero_copy_only=False)
    filled = pc.fill_null(array, "00000000").cast(pa.string())
    offsets = np.frombuffer(filled.buffers()[1], dtype=np.int32)[filled.offset:filled.offset + len(filled) + 1]
    if len(filled) and not np.all(np.diff(offsets) == 8):
        raise ValueError("not a column of 8-hex-digit tokens")
    data = np.frombuffer(filled.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]].reshape(-1, 8)
    digits = np.where(data >= ord("a"), data - ord("a") + 10, data - ord("0")).astype(np.uint32)
    codes = np.zeros(len(filled), np.uint32)
    for i in range(8):
        codes = (codes << np.uint32(4)) | digits[:, i]
    return codes, null


def _hex_strings(codes: np.ndarray, null: np.ndarray) -> pa.Array:
    """A string array of 8 hex digits per code, null where ``null``, built from buffers (no Python strings)."""
    n = len(codes)
    shifts = np.arange(28, -1, -4, dtype=np.uint32)
    data = _HEX[(codes[:, None] >> shifts) & np.uint32(15)]
    offsets = np.arange(0, 8 * n + 1, 8, dtype=np.int32)
    validity = pa.py_buffer(np.packbits(~null, bitorder="little")) if null.any() else None
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data.tobytes()), validity,
                                       int(null.sum()))


def ctr_model(n_numeric: int = N_NUMERIC, n_categorical: int = N_CATEGORICAL,
              cardinalities: Sequence[int] | None = None, zipf: float = ZIPF,
              interactions: Sequence[tuple[int, int]] | None = None, ctr: float = CTR,
              null_fractions: Sequence[float] | None = None, numeric_null_fraction: float = NUMERIC_NULL_FRACTION,
              seed: int = 0, factor_rank: int = 0, factor_columns: Sequence[int] | None = None,
              factor_field_aware: bool = False, factor_scale: float = FACTOR_SCALE) -> CtrModel:
    """The truth a click log with this ``seed`` (``model_seed`` of :func:`make_ctr_dataset`) is drawn from.

    The intercept is solved, by bisection on 50,000 rows drawn once, so that the mean of sigmoid(margin) is
    ``ctr``; it depends on the null fractions, as they shift the margins."""
    cardinalities = tuple(default_cardinalities(n_categorical) if cardinalities is None else cardinalities)
    interactions = tuple(default_interactions(n_categorical) if interactions is None else interactions)
    null_fractions = default_null_fractions(n_categorical) if null_fractions is None else null_fractions
    rng = np.random.default_rng([seed, 0xC7])
    model = CtrModel(seed=seed, cardinalities=cardinalities, zipf=zipf,
                     numeric_log_mean=rng.uniform(0.0, 2.5, n_numeric),
                     numeric_log_std=rng.uniform(0.6, 1.4, n_numeric),
                     numeric_coef=rng.normal(0.0, 0.2, n_numeric),
                     category_scale=rng.uniform(0.2, 0.6, n_categorical),
                     interactions=tuple((int(a), int(c)) for a, c in interactions), pair_scale=PAIR_SCALE)
    if factor_rank:
        columns = tuple(default_factor_columns(n_categorical) if factor_columns is None else factor_columns)
        model = CtrModel(**{**model.__dict__, "factor_rank": int(factor_rank),
                            "factor_columns": tuple(int(k) for k in columns),
                            "factor_field_aware": bool(factor_field_aware),
                            "factor_sigma": factor_component_scale(len(columns), factor_rank, factor_scale)})
    _, counts, ranks = _draw_features(model, np.random.default_rng([seed, 0xCA1]), 50_000, numeric_null_fraction,
                                      null_fractions)
    margin = model.partial_margins(counts, ranks)
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if np.mean(_sigmoid(mid + margin)) < ctr else (low, mid)
    return CtrModel(**{**model.__dict__, "intercept": 0.5 * (low + high)})


def _sigmoid(m: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * m))  # no overflow for large |m|


def _draw_features(model: CtrModel, rng: np.random.Generator, n: int, numeric_null_fraction: float,
                   null_fractions: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(null mask of the counts, counts with NaN for null, ranks with -1 for null) of ``n`` rows."""
    z = rng.standard_normal((model.n_numeric, n))
    counts = np.floor(np.exp(model.numeric_log_mean[:, None] + model.numeric_log_std[:, None] * z))
    numeric_null = rng.random(counts.shape) < numeric_null_fraction
    counts[numeric_null] = np.nan
    ranks = np.empty((model.n_categorical, n), dtype=np.int64)
    for k in range(model.n_categorical):
        ranks[k] = model.draw_ranks(rng, k, n)
        ranks[k][rng.random(n) < null_fractions[k]] = -1
    return numeric_null, counts, ranks


@dataclass(frozen=True)
class CtrInfo:
    """What was written, the truth behind it, and the truth's own score on it."""

    path: str
    n_rows: int
    n_numeric: int
    n_categorical: int
    model: CtrModel
    files: list[str]
    null_fractions: tuple[float, ...]
    numeric_null_fraction: float
    label_mean: float  # the click rate of the file
    truth_log_loss: float  # the mean log loss of the true probabilities on the file's labels: the floor
    task: str = TASK

    @property
    def interactions(self) -> list[tuple[str, str]]:
        """The planted pairs, by column name."""
        return [(f"C{a + 1}", f"C{c + 1}") for a, c in self.model.interactions]

    @property
    def factor_columns(self) -> list[str]:
        """The columns with latent vectors (low-rank pair effects), by name; empty when there are none."""
        return [f"C{k + 1}" for k in self.model.factor_columns] if self.model.factor_rank else []

    @property
    def coef(self) -> np.ndarray:
        return self.model.numeric_coef

    @property
    def intercept(self) -> float:
        return self.model.intercept


def _check(n_rows: int, n_numeric: int, n_categorical: int, cardinalities: tuple[int, ...], zipf: float,
           null_fractions: tuple[float, ...], numeric_null_fraction: float, interactions: tuple, ctr: float,
           row_group_size: int, n_files: int, dtype: str, factor_rank: int = 0, factor_columns: tuple = (),
           factor_scale: float = FACTOR_SCALE) -> None:
    pairs_ok = all(len(p) == 2 and all(isinstance(k, (int, np.integer)) and 0 <= k < n_categorical for k in p)
                   and p[0] != p[1] for p in interactions) and len({tuple(sorted(p)) for p in interactions}) == len(
        interactions)
    rules = [
        ("n_rows", n_rows, n_rows >= 1, "an integer >= 1"),
        ("n_numeric", n_numeric, n_numeric >= 0, "an integer >= 0"),
        ("n_categorical", n_categorical, n_categorical >= 0, "an integer >= 0"),
        ("cardinalities", cardinalities, len(cardinalities) == n_categorical
         and all(2 <= c <= 2**31 for c in cardinalities),
         f"{n_categorical} integers (one per categorical column), each in [2, 2^31]"),
        ("zipf", zipf, zipf > 0 and np.isfinite(zipf), "a number > 0"),
        ("null_fractions", null_fractions, len(null_fractions) == n_categorical
         and all(0.0 <= f < 1.0 for f in null_fractions), f"{n_categorical} numbers in [0, 1)"),
        ("numeric_null_fraction", numeric_null_fraction, 0.0 <= numeric_null_fraction < 1.0, "a number in [0, 1)"),
        ("interactions", interactions, pairs_ok, "distinct pairs of distinct categorical columns"),
        ("ctr", ctr, 0.0 < ctr < 1.0, "a number in (0, 1)"),
        ("row_group_size", row_group_size, row_group_size >= 1, "an integer >= 1"),
        ("n_files", n_files, 1 <= n_files <= n_rows, "an integer between 1 and n_rows"),
        ("dtype", dtype, dtype in ("float32", "float64"), "float32 or float64"),
        ("factor_rank", factor_rank, isinstance(factor_rank, (int, np.integer))
         and 0 <= factor_rank <= MAX_FACTOR_RANK, f"an integer in [0, {MAX_FACTOR_RANK}]"),
        ("factor_columns", factor_columns, not factor_rank or (
            len(factor_columns) >= 2 and len(set(factor_columns)) == len(factor_columns)
            and all(isinstance(k, (int, np.integer)) and 0 <= k < n_categorical for k in factor_columns)),
         f"two or more distinct columns among C1..C{n_categorical}"),
        ("factor_scale", factor_scale, factor_scale > 0 and np.isfinite(factor_scale), "a number > 0"),
    ]
    for name, value, ok, accepted in rules:
        if not ok:
            raise ConfigError(f"{name}={value!r} is not accepted; expected {accepted}")


def parse_interactions(text: str, n_categorical: int) -> tuple[tuple[int, int], ...]:
    """``"C1:C2,C11:C16"`` as 0-based column pairs.

    >>> parse_interactions("C1:C2, C11:C16", 26)
    ((0, 1), (10, 15))
    """
    pairs = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        names = item.split(":")
        if len(names) != 2 or not all(n.strip()[:1] == "C" and n.strip()[1:].isdigit() for n in names):
            raise ConfigError(f"interactions={text!r} is not accepted; expected pairs such as C1:C2,C11:C16")
        pairs.append(tuple(int(n.strip()[1:]) - 1 for n in names))
    try:
        _check(1, 0, n_categorical, default_cardinalities(n_categorical), ZIPF,
               default_null_fractions(n_categorical), 0.0, tuple(pairs), CTR, 1, 1, "float32")
    except ConfigError:
        raise ConfigError(f"interactions={text!r} is not accepted; expected distinct pairs of distinct columns "
                          f"among C1..C{n_categorical}") from None
    return tuple(pairs)


def parse_factor_columns(text: str, n_categorical: int) -> tuple[int, ...]:
    """``"C6,C9,C11"`` as 0-based columns.

    >>> parse_factor_columns("C6, C9,C11", 26)
    (5, 8, 10)
    """
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not all(n[:1] == "C" and n[1:].isdigit() for n in names):
        raise ConfigError(f"factor_columns={text!r} is not accepted; expected columns such as C6,C9,C11")
    return tuple(int(n[1:]) - 1 for n in names)


def _row_group(model: CtrModel, rng: np.random.Generator, n: int, numeric_null_fraction: float,
               null_fractions: Sequence[float], dtype: str, first_id: int | None) -> tuple[pa.Table, float]:
    """One row group, and the sum of the truth's log loss over its rows."""
    numeric_null, counts, ranks = _draw_features(model, rng, n, numeric_null_fraction, null_fractions)
    margin = model.intercept + model.partial_margins(counts, ranks)
    p = _sigmoid(margin)
    label = rng.random(n) < p
    # log loss of the truth, from the margin (log(1 + e^-|m|) form: no log(0))
    loss = float(np.sum(np.logaddexp(0.0, np.where(label, -margin, margin))))
    columns: dict[str, pa.Array] = {}
    if first_id is not None:
        columns["id"] = pa.array(np.arange(first_id, first_id + n, dtype=np.int64))
    columns["label"] = pa.array(label.astype(np.int8))
    for j in range(model.n_numeric):
        columns[f"I{j + 1}"] = pa.array(counts[j].astype(dtype), mask=numeric_null[j])
    for k in range(model.n_categorical):
        null = ranks[k] < 0
        columns[f"C{k + 1}"] = _hex_strings(model.codes(k, np.maximum(ranks[k], 0)), null)
    return pa.table(columns), loss


def make_ctr_dataset(path: str | os.PathLike, n_rows: int, n_numeric: int = N_NUMERIC,
                     n_categorical: int = N_CATEGORICAL, cardinalities: Sequence[int] | None = None,
                     zipf: float = ZIPF, null_fractions: float | Sequence[float] | None = None,
                     numeric_null_fraction: float = NUMERIC_NULL_FRACTION,
                     interactions: Sequence[tuple[int, int]] | str | None = None, ctr: float = CTR,
                     row_group_size: int = 65_536, n_files: int = 1, dtype: str = "float32", seed: int = 0,
                     model_seed: int | None = None, id_column: bool = False,
                     on_rows: Callable[[int], None] | None = None, factor_rank: int = 0,
                     factor_columns: Sequence[int] | str | None = None, factor_field_aware: bool = False,
                     factor_scale: float = FACTOR_SCALE) -> CtrInfo:
    """Write ``n_rows`` rows of a click log drawn from the truth of ``model_seed`` (default ``seed``); one file,
    or a directory of ``n_files`` parts.

    ``cardinalities`` (default :func:`default_cardinalities`), ``null_fractions`` (one number for every
    categorical column, or one per column; default :func:`default_null_fractions`) and ``interactions``
    (0-based column pairs or text such as ``"C1:C2,C11:C16"``; default :func:`default_interactions`) shape the
    categorical columns; ``numeric_null_fraction`` applies to every ``I`` column. ``id_column`` adds ``id``
    (int64, the row number across the files). ``on_rows`` is called with the rows of each row group written.
    ``factor_rank`` R > 0 adds low-rank pair effects among ``factor_columns`` (0-based or text such as
    ``"C6,C9,C11"``; default :func:`default_factor_columns`), FFM-shaped with ``factor_field_aware``; at R = 0
    (the default) the file is the same, byte for byte, as without these arguments."""
    cardinalities = tuple(int(c) for c in (default_cardinalities(n_categorical) if cardinalities is None
                                           else cardinalities))
    if null_fractions is None:
        null_fractions = default_null_fractions(n_categorical)
    elif np.isscalar(null_fractions):
        null_fractions = (float(null_fractions),) * n_categorical
    null_fractions = tuple(float(f) for f in null_fractions)
    if isinstance(interactions, str):
        interactions = parse_interactions(interactions, n_categorical)
    interactions = tuple(default_interactions(n_categorical) if interactions is None else
                         (tuple(p) for p in interactions))
    if factor_field_aware and not factor_rank:
        raise ConfigError("factor_field_aware=True needs factor_rank > 0 (the rank of the latent vectors)")
    if isinstance(factor_columns, str):
        factor_columns = parse_factor_columns(factor_columns, n_categorical)
    factor_columns = tuple(default_factor_columns(n_categorical) if factor_columns is None else factor_columns)
    _check(n_rows, n_numeric, n_categorical, cardinalities, zipf, null_fractions, numeric_null_fraction,
           interactions, ctr, row_group_size, n_files, dtype, factor_rank, factor_columns, factor_scale)
    path = os.fspath(path)
    model = ctr_model(n_numeric, n_categorical, cardinalities, zipf, interactions, ctr, null_fractions,
                      numeric_null_fraction, seed if model_seed is None else model_seed, factor_rank,
                      factor_columns, factor_field_aware, factor_scale)
    files, bounds = output_files(path, n_rows, n_files)
    clicks, loss = 0, 0.0
    for index, file in enumerate(files):
        rows = int(bounds[index + 1] - bounds[index])
        writer = None
        try:
            for g, start in enumerate(range(0, rows, row_group_size)):  # one row group in memory at a time
                table, group_loss = _row_group(
                    model, np.random.default_rng([seed, 0xC7, index, g]), min(row_group_size, rows - start),
                    numeric_null_fraction, null_fractions, dtype,
                    int(bounds[index]) + start if id_column else None)
                clicks += int(pc.sum(table.column("label")).as_py())
                loss += group_loss
                if writer is None:
                    writer = pq.ParquetWriter(file, table.schema)
                writer.write_table(table, row_group_size=row_group_size)
                if on_rows is not None:
                    on_rows(table.num_rows)
        finally:
            if writer is not None:
                writer.close()
    return CtrInfo(path, n_rows, n_numeric, n_categorical, model, files, null_fractions, numeric_null_fraction,
                   clicks / n_rows, loss / n_rows)
