"""FeatureSpec: input columns -> the model's features, fitted from the statistics pass and stored in models.

A chunk's features come in two blocks. The **dense block** holds the numeric inputs (numbers, booleans, decimals,
dates, timestamps), one column each; the missing-value policy is ``error`` (a NaN or null stops training and
names the column and row group), ``drop-rows`` (such rows are skipped) or ``impute`` (the column's mean, plus a
``<name>__missing`` indicator column for columns that had missing values). The **sparse block** holds, per row,
one active slot and value for each categorical input (strings, dictionaries, or columns named categorical) and
each interaction; it is never rows x slots (``streamgd.data.sparse_block``):

* one-hot: the slot of the value in the column's vocabulary from the statistics pass (at most
  ``max_categories`` values per column), value 1; the rest, nulls and unseen values take the column's
  ``<name>=__other__`` slot;
* hash: as Vowpal Wabbit's ``-b``, bucket ``h & (2^hash_bits - 1)`` of ``h = fnv1a(value, seed=fnv1a(name +
  "="))``, the signed 32-bit FNV-1a hash, with value -1 or +1 from the hash's top bit: stable across runs,
  processes and machines; every column shares the ``2^hash_bits`` buckets;
* interactions, as Vowpal Wabbit's ``-q``: the pair (a, b) takes the bucket and sign of ``fnv1a`` of the 8 bytes
  of the two columns' value hashes (little-endian), in the hash buckets (hash encoding) or, with
  ``interaction_bits`` (and always under one-hot), in a space of ``2^interaction_bits`` buckets of its own.

Numeric columns may be transformed first (``log1p``, ``clip``: ``streamgd.features.transforms``; the statistics,
hence imputation and standardization, are the transformed values'), or binned: ``--bins`` turns a column into
one-hot slots at the quantiles of its values, after the categorical and interaction slots.

Each categorical input has its encoding (``CategoricalInput.encoding``; None: the spec's): the one-hot columns'
slots come first, then the ``2^hash_bits`` buckets the hashed columns share, then the interactions' own buckets.
Which encoding a column gets by default is ``choose_encodings``'s rule (``streamgd.features.encoding_choice``).
The model's features are the dense columns, then the slots: ``output_names`` names them all, lazily.

>>> import pyarrow as pa
>>> spec = FeatureSpec([NumericInput("x", 0.0, True)], [CategoricalInput("c", ["a", "b"])], "onehot", 0, "impute")
>>> list(spec.output_names)
['x', 'x__missing', 'c=a', 'c=b', 'c=__other__']
>>> X, sparse, keep = spec.to_blocks(pa.table({"x": [1.5, None], "c": ["b", "z"]}), None, "float64")
>>> X.tolist(), sparse.indices.tolist(), sparse.values.tolist()
([[1.5, 0.0], [0.0, 1.0]], [1, 2], [1.0, 1.0])
>>> spec.to_matrix(pa.table({"x": [1.5, None], "c": ["b", "z"]}), None, "float64")[0].tolist()
[[1.5, 0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..data.arrow_numpy import strings as string_array
from ..data.arrow_numpy import valid_rows
from ..data.chunk_buffers import CHUNK_BUFFERS
from ..data.dictionary_slots import gather_entries, validity_bits
from ..data.sparse_block import ComputedNames, SparseBlock
from ..errors import ConfigError, DataError
from ..kernels.jit import njit

# fnv1a and value_hashes too: callers (the model inspection, tests) import the hashes from here
from .hashing import column_hashes, fnv1a, pair_hashes, value_hashes, value_hashes64  # noqa: F401
from .quantiles import assign_bins, bin_edges
from .stats import DatasetStats, category_strings, numeric_values
from .transforms import ColumnTreatment, TransformStep, apply_steps

MISSING_POLICIES = ("error", "drop-rows", "impute")
ENCODINGS = ("onehot", "hash")
MIXED = "mixed"  # a spec whose categorical columns are some one-hot, some hashed (each column says which)
OTHER = "__other__"
MAX_HASH_BITS = 30  # slots are int32


@dataclass
class NumericInput:
    name: str
    impute_value: float | None = None  # set by the impute policy
    indicator: bool = False  # a <name>__missing column


@dataclass
class CategoricalInput:
    name: str
    vocabulary: list[str] = field(default_factory=list)  # one-hot only
    encoding: str | None = None  # "onehot" or "hash"; None: the spec's encoding


@dataclass
class BinnedInput:
    """A numeric column turned into categorical slots at its quantiles (``--bins``): ``len(edges) + 1`` bins (value
    x in bin ``searchsorted(edges, x, side="right")``, after the column's transform), then a slot for missing
    values: a missing value is one more category under every policy (``drop-rows`` also leaves its row out)."""

    name: str
    edges: list[float] = field(default_factory=list)

    @property
    def n_slots(self) -> int:
        return len(self.edges) + 2

    def slot_name(self, rank: int) -> str:
        edges = self.edges
        if rank == len(edges) + 1:
            return f"{self.name}=__missing__"
        low = f"{edges[rank - 1]:.6g}" if rank > 0 else "-inf"
        high = f"{edges[rank]:.6g}" if rank < len(edges) else "inf"
        return f"{self.name}={'(' if rank == 0 else '['}{low},{high})"


def parse_interactions(text: str | Sequence | None) -> list[tuple[str, str]]:
    """``"C1:C2,C3:C14"`` (or pairs) as a list of column pairs.

    >>> parse_interactions("C1:C2, C3:C14")
    [('C1', 'C2'), ('C3', 'C14')]
    """
    if not text:
        return []
    items = [item.strip() for item in text.split(",") if item.strip()] if isinstance(text, str) else list(text)
    pairs = []
    for item in items:
        pair = item.split(":") if isinstance(item, str) else list(item)
        if len(pair) != 2 or not all(isinstance(name, str) and name.strip() for name in pair):
            raise ConfigError(f"interaction {item!r} is not two columns joined by ':' (such as C1:C2)")
        pairs.append((pair[0].strip(), pair[1].strip()))
    return pairs


class OutputNames(ComputedNames):
    """The model's feature names, computed on demand: a hashed model has up to 2^30 of them."""

    def __init__(self, spec: FeatureSpec):
        super().__init__(spec.dense_names, spec.n_slots)
        self._spec = spec
        self._starts = spec.onehot_starts()

    def slot_name(self, slot: int) -> str:
        return self._spec.slot_name(slot, self._starts)

    def __repr__(self) -> str:
        return f"OutputNames({len(self)} features)"


@dataclass
class FeatureSpec:
    """How to turn a table's input columns into the model's features (see the module docstring)."""

    numeric: list[NumericInput]
    categorical: list[CategoricalInput]
    encoding: str = "onehot"
    hash_bits: int = 18
    missing: str = "error"
    interactions: list[tuple[str, str]] = field(default_factory=list)
    interaction_bits: int | None = None  # None: the hash buckets (hash encoding), or 2^hash_bits of their own
    # numeric transforms (``streamgd.features.transforms``): column -> steps, applied before imputation, scaling and
    # binning; binned columns: their slots follow the categorical and interaction slots
    transforms: dict[str, tuple[TransformStep, ...]] = field(default_factory=dict)
    binned: list[BinnedInput] = field(default_factory=list)
    _lookups: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.interactions = [tuple(pair) for pair in self.interactions]
        for column in self.categorical:
            if self.column_encoding(column) not in ENCODINGS:
                raise ConfigError(f"the categorical input {column.name!r} has encoding "
                                  f"{self.column_encoding(column)!r}; expected one of {', '.join(ENCODINGS)}")
        if self.hashed_columns or self.interactions:
            check_hash_bits("hash_bits", self.hash_bits)
        if self.interaction_bits is not None:
            check_hash_bits("interaction_bits", self.interaction_bits)
        names = {c.name for c in self.categorical}
        for a, b in self.interactions:
            for name in (a, b):
                if name not in names:
                    raise ConfigError(f"interaction {a}:{b} names {name!r}, which is not a categorical feature "
                                      f"(categorical: {', '.join(sorted(names)) or 'none'})")

    @classmethod
    def fit(cls, numeric: list[str], categorical: list[str], stats: DatasetStats, missing: str = "error",
            encoding: str = "onehot", hash_bits: int = 18, max_categories: int = 1000,
            interactions: Sequence[tuple[str, str]] = (), interaction_bits: int | None = None,
            encodings: dict[str, str] | None = None) -> FeatureSpec:
        """The spec for these inputs from their statistics; ``encodings``: each categorical column's own encoding
        (``choose_encodings``; needed when ``encoding`` is ``auto``), else ``encoding`` for all."""
        if missing not in MISSING_POLICIES:
            raise ConfigError(f"missing={missing!r} is not accepted; expected one of {', '.join(MISSING_POLICIES)}")
        if encodings is None:
            if encoding not in ENCODINGS:
                raise ConfigError(f"encoding={encoding!r} is not accepted; expected one of {', '.join(ENCODINGS)}")
            encodings = {name: encoding for name in categorical}
        check_hash_bits("hash_bits", hash_bits)
        numeric_inputs = []
        for name in numeric:
            column = stats.columns[name]
            impute = missing == "impute"
            numeric_inputs.append(NumericInput(name, column.mean if impute else None,
                                               impute and column.missing > 0))
        categorical_inputs = []
        for name in categorical:
            vocabulary = []
            if encodings[name] == "onehot":  # hashing needs no vocabulary (nor statistics of the column)
                vocabulary = sorted(stats.columns[name].top_values(max_categories))
            categorical_inputs.append(CategoricalInput(name, vocabulary, encodings[name]))
        return cls(numeric_inputs, categorical_inputs, spec_encoding(encodings.values()), hash_bits, missing,
                   list(interactions), interaction_bits)

    # ---- shape ----------------------------------------------------------------------------------------------
    @property
    def input_columns(self) -> list[str]:
        return [c.name for c in self.numeric] + [c.name for c in self.categorical] + [c.name for c in self.binned]

    @property
    def dense_names(self) -> list[str]:
        """The dense block's columns: the numeric inputs, then their missing-value indicators."""
        return [c.name for c in self.numeric] + [f"{c.name}__missing" for c in self.numeric if c.indicator]

    @property
    def n_dense(self) -> int:
        return len(self.numeric) + sum(c.indicator for c in self.numeric)

    # ---- encodings: which categorical column is one-hot, which hashed ----------------------------------------
    def column_encoding(self, column: CategoricalInput) -> str:
        """``onehot`` or ``hash``: the column's own encoding, else the spec's."""
        return column.encoding or self.encoding

    @property
    def onehot_columns(self) -> list[CategoricalInput]:
        return [c for c in self.categorical if self.column_encoding(c) == "onehot"]

    @property
    def hashed_columns(self) -> list[CategoricalInput]:
        return [c for c in self.categorical if self.column_encoding(c) == "hash"]

    def onehot_starts(self) -> np.ndarray:
        """The first slot of each one-hot column (and, last, the end of the one-hot slots)."""
        return np.cumsum([0] + [len(c.vocabulary) + 1 for c in self.onehot_columns])

    @property
    def n_onehot_slots(self) -> int:
        return sum(len(c.vocabulary) + 1 for c in self.onehot_columns)

    @property
    def n_category_slots(self) -> int:
        """Slots of the categorical inputs (before any interaction space of its own): the one-hot columns'
        slots, then the hash buckets when a column is hashed."""
        return self.n_onehot_slots + ((1 << self.hash_bits) if self.hashed_columns else 0)

    @property
    def own_interaction_bits(self) -> int | None:
        """The bits of the interactions' own bucket space, or None when they share the hash buckets."""
        if not self.interactions:
            return None
        if self.hashed_columns and self.interaction_bits is None:
            return None
        return self.interaction_bits if self.interaction_bits is not None else self.hash_bits

    @property
    def n_slots(self) -> int:
        """Slots of the sparse block: categorical values, then the interactions' own buckets, if any, then the
        binned columns' bins."""
        return self.first_bin_slot + sum(c.n_slots for c in self.binned)

    @property
    def first_bin_slot(self) -> int:
        """The first slot of the binned columns: after the categorical values and the interactions' own buckets."""
        own = self.own_interaction_bits
        return self.n_category_slots + (0 if own is None else 1 << own)

    @property
    def n_outputs(self) -> int:
        return self.n_dense + self.n_slots

    @property
    def output_names(self) -> OutputNames:
        return OutputNames(self)

    def slot_name(self, slot: int, starts: np.ndarray | None = None) -> str:
        """The name of sparse slot ``slot``: ``c=value``, ``c=__other__``, ``hash_<b>``, ``interaction_<b>`` or a
        bin's ``x=[low,high)``."""
        if self.binned and slot >= self.first_bin_slot:
            return self.bin_slot_name(slot - self.first_bin_slot)
        if slot >= self.n_category_slots:
            return f"interaction_{slot - self.n_category_slots}"
        if starts is None:
            starts = self.onehot_starts()
        if slot >= int(starts[-1]):
            return f"hash_{slot - int(starts[-1])}"
        j = int(np.searchsorted(starts, slot, side="right")) - 1
        column, rank = self.onehot_columns[j], slot - int(starts[j])
        return f"{column.name}={column.vocabulary[rank] if rank < len(column.vocabulary) else OTHER}"

    @property
    def continuous(self) -> np.ndarray:
        """Which dense columns are numeric values (standardized in training), not indicators."""
        flags = np.zeros(self.n_dense, dtype=bool)
        flags[: len(self.numeric)] = True
        return flags

    # ---- applying it -----------------------------------------------------------------------------------------
    def to_blocks(self, table: pa.Table, order: np.ndarray | None, dtype: str | np.dtype
                  ) -> tuple[np.ndarray, SparseBlock | None, np.ndarray | None]:
        """(X, sparse, keep): the dense block (column-major) and the sparse block (None without categorical
        inputs) of the table's rows, taken in ``order``; ``keep`` marks the rows to train on under ``drop-rows``
        (None: all)."""
        n = table.num_rows
        rows = np.ascontiguousarray(np.arange(n) if order is None else order, dtype=np.int64)
        # every dense column is written below (values, then indicators): no zeroing; the chunk's arrays come from
        # the recycled pool, which spares faulting their pages in again for every chunk
        X = CHUNK_BUFFERS.empty((len(rows), self.n_dense), dtype, order="F")
        keep = None
        next_indicator = len(self.numeric)
        for j, spec in enumerate(self.numeric):
            column = table.column(spec.name)
            if _plain_floats(column) and spec.name not in self.transforms and self.missing != "drop-rows":
                # the common case in one compiled pass: no float64 copy, no gather copy, no mask
                values, bits, bit_offset = _float_buffers(column.chunk(0))
                impute = np.nan if spec.impute_value is None else float(spec.impute_value)
                _fill_dense_column(values, bits, bit_offset, rows, impute, X, j,
                                   next_indicator if spec.indicator else -1)
                next_indicator += spec.indicator
                continue
            values = numeric_values(column)[rows]
            if spec.name in self.transforms:
                apply_steps(values, self.transforms[spec.name])
            absent = np.isnan(values)
            if spec.impute_value is not None:
                values[absent] = spec.impute_value
            if spec.indicator:
                X[:, next_indicator] = absent
                next_indicator += 1
            if self.missing == "drop-rows" and absent.any():
                keep = ~absent if keep is None else keep & ~absent
            X[:, j] = values
        if not self.categorical and not self.binned:
            return X, None, keep
        width = len(self.categorical) + len(self.interactions) + len(self.binned)
        slots = CHUNK_BUFFERS.empty((len(rows), width), np.int32)
        values = CHUNK_BUFFERS.empty((len(rows), width), np.float64)
        hashes: dict[str, np.ndarray] = {}

        def column_hash(name: str, out: np.ndarray | None = None) -> np.ndarray:
            """The column's hashes per delivered row, computed once (written into ``out`` too when given)."""
            if name not in hashes:
                hashes[name] = column_hashes(table.column(name), name, out, rows)
            elif out is not None:
                out[:] = hashes[name]
            return hashes[name]

        # each categorical column's and interaction's code per delivered row (a hash, or a one-hot rank; the row
        # order applied a column at a time, where its random reads stay in one column), then every block column of
        # a row written at once: the block is row-major, and filling it a column at a time wrote one value per
        # cache line (scripts/bench_dictionary_reads.py)
        n_codes = len(self.categorical) + len(self.interactions)
        codes = CHUNK_BUFFERS.empty((n_codes, len(rows)), np.uint32)
        offsets = np.empty(n_codes, dtype=np.int64)
        masks = np.empty(n_codes, dtype=np.uint32)
        hashed = np.empty(n_codes, dtype=np.bool_)
        mask = np.uint32((1 << self.hash_bits) - 1)
        hash_start = self.n_onehot_slots  # the hash buckets follow the one-hot columns' slots
        first = 0
        for j, spec in enumerate(self.categorical):
            if self.column_encoding(spec) == "hash":
                column_hash(spec.name, codes[j])
                offsets[j], masks[j], hashed[j] = hash_start, mask, True
            else:
                codes[j] = self.vocabulary_ranks(j, table.column(spec.name), rows)
                offsets[j], masks[j], hashed[j] = first, 0, False
                first += len(spec.vocabulary) + 1
        own = self.own_interaction_bits
        offset, pair_mask = (hash_start, mask) if own is None else (self.n_category_slots,
                                                                    np.uint32((1 << own) - 1))
        for t, (a, b) in enumerate(self.interactions):
            j = len(self.categorical) + t
            pair_hashes(column_hash(a), column_hash(b), codes[j])
            offsets[j], masks[j], hashed[j] = offset, pair_mask, True
        _fill_codes(codes, offsets, masks, hashed, slots, values)
        keep = self._fill_bins(table, rows, slots, values, len(self.categorical) + len(self.interactions), keep)
        return X, SparseBlock.from_fixed(slots, values, self.n_slots), keep

    def to_matrix(self, table: pa.Table, order: np.ndarray | None, dtype: str | np.dtype
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """(X, keep) with the sparse block written out as dense columns: for small specs and tests only."""
        X, sparse, keep = self.to_blocks(table, order, dtype)
        if sparse is not None:
            X = np.asfortranarray(np.hstack([X, sparse.to_dense().astype(X.dtype)]))
        return X, keep

    def vocabulary_ranks(self, j: int, column: pa.ChunkedArray, rows: np.ndarray | None = None) -> np.ndarray:
        """Each row's rank in categorical column j's vocabulary (nulls and values not in it: len(vocabulary),
        other): a dictionary-typed column's entries are looked up once per dictionary and gathered by index, any
        other column's values row by row (``vocabulary_index``). ``rows``: the rows, in order (None: all)."""
        if pa.types.is_dictionary(column.type):
            return gather_entries(column, lambda entries: self.vocabulary_index(j, category_strings(entries)),
                                  len(self.categorical[j].vocabulary), np.int64, None, rows)
        ranks = self.vocabulary_index(j, category_strings(column))
        return ranks if rows is None else ranks[rows]

    def vocabulary_index(self, j: int, strings: pa.ChunkedArray) -> np.ndarray:
        """Each value's rank in column j's vocabulary; nulls and values not in it: len(vocabulary) (other)."""
        lookup = self._lookups.get(j)
        if lookup is None:  # sorted 64-bit hashes of the vocabulary, built once per spec
            vocabulary = self.categorical[j].vocabulary
            keys = value_hashes64(pa.chunked_array([string_array(vocabulary)]))
            order = np.argsort(keys, kind="stable")
            lookup = self._lookups[j] = (keys[order], order.astype(np.int64))
        sorted_keys, ranks = lookup
        keys = value_hashes64(strings)
        other = len(self.categorical[j].vocabulary)
        if sorted_keys.shape[0] == 0:
            return np.full(keys.shape[0], other, dtype=np.int64)
        at = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.shape[0] - 1)
        found = sorted_keys[at] == keys
        found &= _valid(strings)
        return np.where(found, ranks[at], other)

    # ---- numeric transforms and quantile bins ---------------------------------------------------------------
    def with_treatments(self, treatments: dict[str, ColumnTreatment], stats: DatasetStats) -> FeatureSpec:
        """This spec with the columns' transforms, and the binned columns moved from the dense block to bins at
        the quantiles of the statistics pass's sketches (``treatments``: as ``streamgd.features.transforms``
        makes them; the pass must have summarised those columns with the same treatments)."""
        transforms = {name: tuple(t.steps) for name, t in treatments.items() if t.steps}
        binned = []
        for name, treatment in treatments.items():
            if treatment.bins:
                sketch = stats.columns[name].quantiles
                if sketch is None:
                    raise ConfigError(f"column {name!r} is to be binned but its statistics hold no quantile sketch")
                binned.append(BinnedInput(name, bin_edges(sketch, treatment.bins).tolist()))
        numeric = [c for c in self.numeric if c.name not in {b.name for b in binned}]
        return FeatureSpec(numeric, self.categorical, self.encoding, self.hash_bits, self.missing,
                           list(self.interactions), self.interaction_bits, transforms, binned)

    def bin_slot_name(self, slot: int) -> str:
        """The name of slot ``slot`` counted from the first bin slot."""
        for column in self.binned:
            if slot < column.n_slots:
                return column.slot_name(slot)
            slot -= column.n_slots
        raise IndexError(slot)

    def _fill_bins(self, table: pa.Table, rows: np.ndarray, slots: np.ndarray, values: np.ndarray, first: int,
                   keep: np.ndarray | None) -> np.ndarray | None:
        """The binned columns' block columns (from ``first``): each row's bin slot, value 1; a missing value takes
        the column's ``__missing__`` slot (under ``drop-rows`` its row is also left out). Returns ``keep``."""
        base = self.first_bin_slot
        for j, column in enumerate(self.binned):
            raw = numeric_values(table.column(column.name))[rows]
            if column.name in self.transforms:
                apply_steps(raw, self.transforms[column.name])
            bins = assign_bins(raw, np.asarray(column.edges, dtype=np.float64))
            absent = bins < 0
            bins[absent] = column.n_slots - 1
            if self.missing == "drop-rows" and absent.any():
                keep = ~absent if keep is None else keep & ~absent
            slots[:, first + j] = base + bins
            values[:, first + j] = 1.0
            base += column.n_slots
        return keep

    # ---- storage ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = {"kind": "features", "numeric": [vars(c) for c in self.numeric],
                "categorical": [vars(c) for c in self.categorical], "encoding": self.encoding,
                "hash_bits": self.hash_bits, "missing": self.missing,
                "interactions": [list(pair) for pair in self.interactions], "interaction_bits": self.interaction_bits}
        if self.transforms or self.binned:  # absent otherwise: such a spec reads as before transforms existed
            data["transforms"] = {name: [step.to_dict() for step in steps] for name, steps in self.transforms.items()}
            data["binned"] = [vars(c) for c in self.binned]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        try:
            return cls([NumericInput(**c) for c in data["numeric"]],
                       [CategoricalInput(**c) for c in data["categorical"]], data["encoding"], data["hash_bits"],
                       data["missing"], [tuple(p) for p in data.get("interactions", [])],
                       data.get("interaction_bits"),
                       {name: tuple(TransformStep.from_dict(step) for step in steps)
                        for name, steps in data.get("transforms", {}).items()},
                       [BinnedInput(**c) for c in data.get("binned", [])])
        except ConfigError as exc:
            raise DataError(f"the feature spec is damaged: {exc}") from None


def spec_encoding(encodings: Sequence[str] | object) -> str:
    """A spec's encoding from its columns': ``onehot`` or ``hash`` when they all share it, else ``mixed``.

    >>> spec_encoding(["hash", "hash"]), spec_encoding(["onehot", "hash"]), spec_encoding([])
    ('hash', 'mixed', 'onehot')
    """
    kinds = set(encodings)
    return kinds.pop() if len(kinds) == 1 else ("onehot" if not kinds else MIXED)


def check_hash_bits(name: str, bits: object) -> None:
    if not (isinstance(bits, (int, np.integer)) and not isinstance(bits, bool) and 1 <= bits <= MAX_HASH_BITS):
        raise ConfigError(f"{name}={bits!r} is not accepted; expected an integer in [1, {MAX_HASH_BITS}]")


@njit(nogil=True)
def _fill_codes(codes, offsets, masks, hashed, slots, values):  # pragma: no cover - compiled
    """Block columns [0, len(codes)) of each delivered row i (``codes[:, i]``): for a hashed column (or
    interaction) j, slot offsets[j] + (h & masks[j]) and value -1 where the hash h's top bit is set, else 1; for
    a one-hot column, slot offsets[j] + rank, value 1."""
    for i in range(codes.shape[1]):
        for j in range(codes.shape[0]):
            code = codes[j, i]
            if hashed[j]:
                slots[i, j] = offsets[j] + (code & masks[j])
                values[i, j] = -1.0 if code >> 31 else 1.0
            else:
                slots[i, j] = offsets[j] + code
                values[i, j] = 1.0


@njit(nogil=True)
def _fill_dense_column(values, bits, bit_offset, rows, impute, X, j, indicator):  # pragma: no cover - compiled
    """Dense column j of the block: each row's value (``rows`` order) as float64, or ``impute`` (NaN: none) where
    it is null (its bit ``bit_offset + r`` in the validity bitmap ``bits`` is 0; empty: none null) or NaN; column
    ``indicator`` (-1: none) 1 where it was."""
    some_null = bits.shape[0] > 0
    for i in range(rows.shape[0]):
        r = rows[i]
        v = np.float64(values[r])
        absent = np.isnan(v) or (some_null and not (bits[(bit_offset + r) >> 3] >> ((bit_offset + r) & 7)) & 1)
        X[i, j] = impute if absent else v
        if indicator >= 0:
            X[i, indicator] = 1.0 if absent else 0.0


def _plain_floats(column: pa.ChunkedArray) -> bool:
    """Whether a numeric column is one chunk of float32 or float64 (the compiled dense path's case)."""
    kind = column.type
    return column.num_chunks == 1 and (pa.types.is_float32(kind) or pa.types.is_float64(kind))


def _float_buffers(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray, int]:
    """(values, validity bits, bit offset) of a float array without a copy; a null's slot is undefined, the bits
    empty when none is null (``streamgd.data.dictionary_slots.validity_bits``)."""
    width = np.float32 if pa.types.is_float32(chunk.type) else np.float64
    values = np.frombuffer(chunk.buffers()[1], dtype=width)[chunk.offset: chunk.offset + len(chunk)]
    return (values, *validity_bits(chunk))


def _valid(strings: pa.ChunkedArray) -> np.ndarray:
    if strings.null_count == 0:
        return np.ones(len(strings), dtype=bool)
    return np.concatenate([valid_rows(chunk) for chunk in strings.chunks])
