"""The row order fused into the reader's gathers (issue 29, the reader thread): a dictionary column's hashes and
vocabulary ranks taken in a step's row order are those of every row as stored, then reordered, for one chunk or
several, with nulls; the compiled interaction hash equals its NumPy reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from streamgd.data.dictionary_slots import gather_entries
from streamgd.features.hashing import column_hashes, pair_hashes, value_hashes
from streamgd.features.spec import CategoricalInput, FeatureSpec, NumericInput
from streamgd.features.stats import category_strings


def _column(rng: np.random.Generator, n: int, chunks: int, nulls: bool) -> pa.ChunkedArray:
    pieces = []
    for k in range(chunks):
        values = [f"v{k % 2}-{v}" for v in rng.integers(0, 40, n)]
        if nulls:
            for i in range(0, n, 7):
                values[i] = None
        pieces.append(pa.array(values, pa.string()).dictionary_encode())
    return pa.chunked_array(pieces)


def _numpy_pair_hashes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    h = np.full(a.shape[0], 2166136261, dtype=np.uint64)
    for word in (a.astype(np.uint64), b.astype(np.uint64)):
        for shift in (0, 8, 16, 24):
            h = ((h ^ ((word >> np.uint64(shift)) & np.uint64(0xFF))) * np.uint64(16777619)) & np.uint64(0xFFFFFFFF)
    return h.astype(np.uint32)


@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.parametrize("nulls", [False, True])
def test_hashes_in_row_order_are_the_stored_rows_reordered(chunks, nulls):
    rng = np.random.default_rng(chunks + 10 * nulls)
    column = _column(rng, 500, chunks, nulls)
    rows = rng.permutation(len(column)).astype(np.int64)
    every = value_hashes(category_strings(column), "c")  # the per-row reference
    np.testing.assert_array_equal(column_hashes(column, "c", None, rows), every[rows])
    out = np.empty(len(rows), np.uint32)
    assert column_hashes(column, "c", out, rows) is out
    np.testing.assert_array_equal(out, every[rows])
    plain = column.cast(pa.string())  # a column that is not a dictionary takes the per-row path
    np.testing.assert_array_equal(column_hashes(plain, "c", None, rows), every[rows])


@pytest.mark.parametrize("chunks", [1, 3])
def test_vocabulary_ranks_in_row_order_are_the_stored_rows_reordered(chunks):
    rng = np.random.default_rng(chunks)
    column = _column(rng, 400, chunks, nulls=True)
    spec = FeatureSpec([], [CategoricalInput("c", sorted(f"v0-{v}" for v in range(0, 40, 3)))], "onehot", 8,
                       missing="impute")
    rows = rng.permutation(len(column))[:300].astype(np.int64)  # fewer rows than stored, as drop-rows leaves
    every = spec.vocabulary_index(0, category_strings(column))
    ranks = spec.vocabulary_ranks(0, column, rows)
    np.testing.assert_array_equal(ranks, every[rows])
    assert len(set(ranks.tolist())) > 5  # values of the vocabulary and the other slot both occur


def test_gather_entries_takes_rows_in_the_order_given():
    column = pa.chunked_array([pa.array(["a", "b", None, "a"]).dictionary_encode()])
    lengths = gather_entries(column, lambda entries: np.array([len(v) * 10 + i for i, v in
                                                               enumerate(entries.to_pylist())]), -1, np.int64,
                             None, np.array([3, 2, 1, 0, 3], np.int64))
    assert lengths.tolist() == [10, -1, 11, 10, 10]


def test_compiled_pair_hashes_equal_the_numpy_reference():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2**32, 10_000, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 2**32, 10_000, dtype=np.uint64).astype(np.uint32)
    np.testing.assert_array_equal(pair_hashes(a, b), _numpy_pair_hashes(a, b))
    out = np.empty(10_000, np.uint32)
    assert pair_hashes(a, b, out) is out


def test_validity_bits_of_sliced_columns_are_read_at_their_offset():
    """Nulls are read from Arrow's validity bitmap at the array's offset (a slice starting mid-byte)."""
    rng = np.random.default_rng(8)
    n = 203
    numbers = rng.normal(size=n)
    null = rng.random(n) < 0.3
    text = [None if null[i] else f"t{i % 5}" for i in range(n)]
    table = pa.table({"x": pa.array(numbers, pa.float64(), mask=null),
                      "c": pa.array(text, pa.string()).dictionary_encode()}).slice(13, 150)
    assert table.column("x").chunk(0).offset == 13
    spec = FeatureSpec([NumericInput("x", 0.5, True)], [CategoricalInput("c")], "hash", 6, missing="impute")
    rows = rng.permutation(150).astype(np.int64)
    X, _, _ = spec.to_blocks(table, rows, np.float64)
    kept, absent = numbers[13:163][rows], null[13:163][rows]
    np.testing.assert_array_equal(X[:, 0], np.where(absent, 0.5, kept))
    np.testing.assert_array_equal(X[:, 1], absent.astype(np.float64))
    decoded = table.column("c").cast(pa.string())
    np.testing.assert_array_equal(column_hashes(table.column("c"), "c", None, rows),
                                  value_hashes(category_strings(decoded), "c")[rows])
