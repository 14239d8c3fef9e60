"""FeatureSpec: input columns -> the model's feature matrix, fitted from the statistics pass and stored in models.

Numeric inputs (numbers, booleans, decimals, dates, timestamps) become one column each; the missing-value policy
is ``error`` (a NaN or null stops training and names the column and row group), ``drop-rows`` (such rows are
skipped) or ``impute`` (the column's mean, plus a ``<name>__missing`` indicator for columns that had missing
values). Categorical inputs (strings, dictionaries, or columns named categorical) are one-hot encoded with the
vocabulary of the statistics pass (at most ``max_categories`` per column, the rest and unseen values in
``<name>=__other__``) or hashed, as Vowpal Wabbit's ``-b``, into ``2^hash_bits`` shared columns with a signed
32-bit FNV-1a hash of the column name and the value: stable across runs, processes and machines.

>>> import pyarrow as pa
>>> spec = FeatureSpec([NumericInput("x", 0.0, True)], [CategoricalInput("c", ["a", "b"])], "onehot", 0, "impute")
>>> spec.output_names
['x', 'x__missing', 'c=a', 'c=b', 'c=__other__']
>>> X, keep = spec.to_matrix(pa.table({"x": [1.5, None], "c": ["b", "z"]}), None, "float64")
>>> X.tolist()
[[1.5, 0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0, 1.0]]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ConfigError
from .stats import DatasetStats, category_strings, numeric_values

MISSING_POLICIES = ("error", "drop-rows", "impute")
ENCODINGS = ("onehot", "hash")
OTHER = "__other__"


@dataclass
class NumericInput:
    name: str
    impute_value: float | None = None  # set by the impute policy
    indicator: bool = False  # a <name>__missing column


@dataclass
class CategoricalInput:
    name: str
    vocabulary: list[str] = field(default_factory=list)  # one-hot only


@dataclass
class FeatureSpec:
    """How to turn a table's input columns into the model's features (see the module docstring)."""

    numeric: list[NumericInput]
    categorical: list[CategoricalInput]
    encoding: str = "onehot"
    hash_bits: int = 18
    missing: str = "error"

    @classmethod
    def fit(cls, numeric: list[str], categorical: list[str], stats: DatasetStats, missing: str = "error",
            encoding: str = "onehot", hash_bits: int = 18, max_categories: int = 1000) -> FeatureSpec:
        """The spec for these inputs from their statistics."""
        if missing not in MISSING_POLICIES:
            raise ConfigError(f"missing={missing!r} is not accepted; expected one of {', '.join(MISSING_POLICIES)}")
        if encoding not in ENCODINGS:
            raise ConfigError(f"encoding={encoding!r} is not accepted; expected one of {', '.join(ENCODINGS)}")
        if not (isinstance(hash_bits, int) and 1 <= hash_bits <= 30):
            raise ConfigError(f"hash_bits={hash_bits!r} is not accepted; expected an integer in [1, 30]")
        numeric_inputs = []
        for name in numeric:
            column = stats.columns[name]
            impute = missing == "impute"
            numeric_inputs.append(NumericInput(name, column.mean if impute else None,
                                               impute and column.missing > 0))
        categorical_inputs = []
        for name in categorical:
            top = stats.columns[name].top_values(max_categories) if encoding == "onehot" else []
            vocabulary = sorted(top)
            categorical_inputs.append(CategoricalInput(name, vocabulary))
        return cls(numeric_inputs, categorical_inputs, encoding, hash_bits, missing)

    # ---- shape ----------------------------------------------------------------------------------------------
    @property
    def input_columns(self) -> list[str]:
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    @property
    def output_names(self) -> list[str]:
        names = [c.name for c in self.numeric] + [f"{c.name}__missing" for c in self.numeric if c.indicator]
        if self.categorical and self.encoding == "hash":
            return names + [f"hash_{k}" for k in range(1 << self.hash_bits)]
        for c in self.categorical:
            names += [f"{c.name}={value}" for value in c.vocabulary] + [f"{c.name}={OTHER}"]
        return names

    @property
    def n_outputs(self) -> int:
        return len(self.output_names)

    @property
    def continuous(self) -> np.ndarray:
        """Which outputs are numeric values (standardized in training), not indicators or encodings."""
        flags = np.zeros(self.n_outputs, dtype=bool)
        flags[: len(self.numeric)] = True
        return flags

    # ---- applying it -----------------------------------------------------------------------------------------
    def to_matrix(self, table: pa.Table, order: np.ndarray | None, dtype: str | np.dtype
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """(X, keep): the features of the table's rows, taken in ``order``, column-major; ``keep`` marks the rows
        to train on under ``drop-rows`` (None: all)."""
        n = table.num_rows
        rows = np.arange(n) if order is None else np.asarray(order)
        X = np.zeros((len(rows), self.n_outputs), dtype=dtype, order="F")
        keep = None
        next_indicator = len(self.numeric)
        for j, spec in enumerate(self.numeric):
            values = numeric_values(table.column(spec.name))[rows]
            absent = np.isnan(values)
            if spec.impute_value is not None:
                values[absent] = spec.impute_value
            if spec.indicator:
                X[:, next_indicator] = absent
                next_indicator += 1
            if self.missing == "drop-rows" and absent.any():
                keep = ~absent if keep is None else keep & ~absent
            X[:, j] = values
        base = next_indicator
        for spec in self.categorical:
            strings = category_strings(table.column(spec.name))
            if self.encoding == "hash":
                buckets, signs = _hash_column(strings, spec.name, self.hash_bits)
                _scatter_add(X, rows, buckets + base, signs)
                continue
            index = pc.index_in(strings, value_set=pa.array(spec.vocabulary, type=strings.type))
            index = index.fill_null(len(spec.vocabulary)).to_numpy().astype(np.int64)  # unseen or null: other
            _scatter_add(X, rows, index + base, np.ones(n))
            base += len(spec.vocabulary) + 1
        return X, keep

    # ---- storage ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": "features", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        return cls([NumericInput(**c) for c in data["numeric"]], [CategoricalInput(**c) for c in data["categorical"]],
                   data["encoding"], data["hash_bits"], data["missing"])


@numba.njit(nogil=True, cache=True)
def _scatter_add_kernel(X, rows, columns, values):  # pragma: no cover - compiled
    """X[i, columns[rows[i]]] += values[rows[i]] for every output row i."""
    for i in range(rows.shape[0]):
        r = rows[i]
        X[i, columns[r]] += values[r]


def _scatter_add(X: np.ndarray, rows: np.ndarray, columns: np.ndarray, values: np.ndarray) -> None:
    _scatter_add_kernel(X, np.ascontiguousarray(rows, dtype=np.int64), np.ascontiguousarray(columns, dtype=np.int64),
                        np.ascontiguousarray(values, dtype=X.dtype))


@numba.njit(nogil=True, cache=True)
def _fnv1a_kernel(offsets, data, valid, seed, out):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        h = seed
        if valid[i]:
            for k in range(offsets[i], offsets[i + 1]):
                h = ((h ^ data[k]) * np.uint32(16777619)) & np.uint32(0xFFFFFFFF)
        else:
            h = (h ^ np.uint32(0x9E3779B9)) & np.uint32(0xFFFFFFFF)
        out[i] = h


def fnv1a(text: bytes, seed: int = 2166136261) -> int:
    """32-bit FNV-1a of ``text`` starting from ``seed`` (the offset basis by default).

    >>> hex(fnv1a(b"a"))
    '0xe40c292c'
    """
    h = seed
    for byte in text:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def _hash_column(strings: pa.ChunkedArray, name: str, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket (low ``bits`` bits) and sign (bit 31) of fnv1a(value, seed=fnv1a(name + '=')) for every row."""
    seed = np.uint32(fnv1a(name.encode() + b"="))
    parts = []
    for chunk in strings.chunks:
        chunk = chunk.cast(pa.large_string())
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64)[chunk.offset: chunk.offset + len(chunk) + 1]
        data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8) if chunk.buffers()[2] is not None \
            else np.zeros(0, np.uint8)
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        out = np.empty(len(chunk), dtype=np.uint32)
        _fnv1a_kernel(offsets, data, valid, seed, out)
        parts.append(out)
    hashes = np.concatenate(parts) if parts else np.zeros(0, np.uint32)
    buckets = (hashes & np.uint32((1 << bits) - 1)).astype(np.int64)
    signs = np.where(hashes >> np.uint32(31), -1.0, 1.0)
    return buckets, signs
