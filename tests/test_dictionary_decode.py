"""Categorical text columns read as dictionaries (issue 29, item 1): each dictionary entry hashed or looked up
once, the rows gathered by index, and everything equal bit for bit to decoding and hashing every row, the path
kept as the reference (``streamgd.data.reader.DICTIONARY_READS = False``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import streamgd
import streamgd.features.hashing as hashing_module
import streamgd.features.spec as spec_module
from streamgd.data import reader as reader_module
from streamgd.data.dataset import open_dataset
from streamgd.data.reader import ChunkStream
from streamgd.data.shuffle import make_plan
from streamgd.features.hashing import column_hashes, value_hashes
from streamgd.features.spec import CategoricalInput, FeatureSpec, NumericInput
from streamgd.features.stats import category_strings

GROUP_ROWS = 1500
GROUPS = 3


def _values(rng: np.random.Generator, n: int, pool: list[str], null_every: int | None) -> list[str | None]:
    values: list[str | None] = [pool[k] for k in rng.integers(0, len(pool), n)]
    if null_every:
        for i in range(int(rng.integers(0, null_every)), n, null_every):
            values[i] = None
    return values


def _group(rng: np.random.Generator, g: int) -> pa.Table:
    """One row group: every text column's values differ from group to group (so do their dictionaries)."""
    n = GROUP_ROWS
    many = [f"wide-{g}-{k}-" + "x" * 24 for k in range(1200)] + [f"shared-{k}" for k in range(50)]
    few = [f"few-{g % 2}-{k}" for k in range(7)] + ["common"]
    a = _values(rng, n, many, 11)  # high cardinality: its dictionary page overflows (fallback to plain pages)
    b = _values(rng, n, few, 5)  # written without dictionary encoding
    c = _values(rng, n, few + ["ünï"], 7)  # large_string
    d = _values(rng, n, few, 3)  # an Arrow dictionary column in the file
    e = _values(rng, n, few, None)  # dictionary-encoded, no nulls
    margin = rng.normal(size=n) + np.array([0.0 if v is None else len(v) % 3 - 1.0 for v in e])
    return pa.table({
        "n": pa.array(rng.normal(size=n)),
        "a": pa.array(a, pa.string()),
        "b": pa.array(b, pa.string()),
        "c": pa.array(c, pa.large_string()),
        "d": pa.array(d, pa.string()).dictionary_encode(),
        "e": pa.array(e, pa.string()),
        "y": pa.array((margin > 0).astype(np.int8)),
    })


@pytest.fixture(scope="module")
def clicks(tmp_path_factory) -> str:
    rng = np.random.default_rng(29)
    path = str(tmp_path_factory.mktemp("dictionary") / "clicks.parquet")
    tables = [_group(rng, g) for g in range(GROUPS)]
    schema = tables[0].schema
    with pq.ParquetWriter(path, schema, use_dictionary=["a", "c", "d", "e"], dictionary_pagesize_limit=4096) as out:
        for table in tables:
            out.write_table(table, row_group_size=GROUP_ROWS)
    return path


def test_the_file_holds_each_kind_of_text_column(clicks):
    """The fixture is what the tests below rely on: a plain column, dictionaries that differ between row groups,
    a dictionary page too small for its column (the pages after it plain), a large_string column, an Arrow
    dictionary column, and nulls."""
    meta = pq.ParquetFile(clicks).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    chunk = {name: meta.row_group(0).column(i) for i, name in enumerate(names)}
    assert not chunk["b"].has_dictionary_page and chunk["a"].has_dictionary_page and chunk["e"].has_dictionary_page
    # a's dictionary page is capped at 4 KiB, its distinct values hold over 40 KiB: most of its pages are plain
    distinct_bytes = sum(len(v) for v in set(pq.read_table(clicks, columns=["a"]).column("a").to_pylist()) if v)
    assert distinct_bytes > 10 * 4096
    read = pq.ParquetFile(clicks, read_dictionary=["a", "b", "c", "e"])
    first, second = (read.read_row_group(g).column("e").chunk(0).dictionary.to_pylist() for g in (0, 1))
    assert set(first) != set(second)
    schema = pq.read_schema(clicks)
    assert pa.types.is_large_string(schema.field("c").type) and pa.types.is_dictionary(schema.field("d").type)
    table = pq.read_table(clicks)
    assert all(table.column(name).null_count > 0 for name in "abcd")


def test_column_hashes_of_dictionaries_equal_the_per_row_hashes():
    values = ["x", None, "y", "x", "ünï", None, "z"]
    plain = pa.chunked_array([pa.array(values[:4]), pa.array(values[4:])])
    encoded = pa.chunked_array([pa.array(values[:4]).dictionary_encode(), pa.array(values[4:]).dictionary_encode()])
    # a null entry in the dictionary itself, and indices of another width
    odd = pa.chunked_array([pa.DictionaryArray.from_arrays(pa.array([0, 1, None, 2], pa.int8()),
                                                           pa.array(["x", None, "y"]))])
    expected = value_hashes(category_strings(plain), "col")
    np.testing.assert_array_equal(column_hashes(encoded, "col"), expected)
    np.testing.assert_array_equal(column_hashes(odd, "col"),
                                  value_hashes(category_strings(pa.chunked_array([pa.array(["x", None, None, "y"])])),
                                               "col"))
    assert column_hashes(encoded, "col")[1] == column_hashes(encoded, "col")[5] != expected[0]
    numbers = pa.chunked_array([pa.array([3, None, 3, 7]).dictionary_encode()])
    np.testing.assert_array_equal(column_hashes(numbers, "k"),
                                  value_hashes(category_strings(pa.chunked_array([pa.array([3, None, 3, 7])])), "k"))


@pytest.mark.parametrize("encoding", ["hash", "onehot"])
def test_blocks_of_a_dictionary_table_equal_the_decoded_table(encoding):
    rng = np.random.default_rng(3)
    values = _values(rng, 4000, [f"v{k}" for k in range(300)], 9)
    decoded = pa.table({"c": pa.chunked_array([pa.array(values[:2500]), pa.array(values[2500:])]),
                        "k": pa.array(_values(rng, 4000, ["p", "q", "r"], 4))})
    encoded = pa.table({name: pa.chunked_array([chunk.dictionary_encode() for chunk in decoded.column(name).chunks])
                        for name in decoded.column_names})
    vocabulary = [f"v{k}" for k in range(0, 300, 3)] if encoding == "onehot" else []
    spec = FeatureSpec([], [CategoricalInput("c", vocabulary), CategoricalInput("k", ["q"] if vocabulary else [])],
                       encoding, 10, interactions=[("c", "k")])
    order = rng.permutation(4000)
    _, reference, _ = spec.to_blocks(decoded, order, "float64")
    _, block, _ = spec.to_blocks(encoded, order, "float64")
    np.testing.assert_array_equal(block.indptr, reference.indptr)
    np.testing.assert_array_equal(block.indices, reference.indices)
    np.testing.assert_array_equal(block.values, reference.values)


def _chunks(path: str, spec: FeatureSpec, dictionary_reads: bool, shuffle: str, unit_rows: int | None = None
            ) -> list:
    data = open_dataset(path, target="y", max_unit_rows=unit_rows)
    plan = make_plan(data.units, shuffle, seed=5)
    with ChunkStream(data, plan, dtype=np.float64, features=spec, dictionary_reads=dictionary_reads) as stream:
        chunks = []
        for chunk in stream:
            chunks.append((chunk.X.copy(), chunk.sparse, chunk.y.copy()))
        kinds = stream.dictionary_read_columns()
    return chunks, kinds


@pytest.mark.parametrize("shuffle", ["none", "buffer:2"])
def test_chunks_read_as_dictionaries_equal_the_per_row_chunks(clicks, shuffle):
    spec = FeatureSpec([], [CategoricalInput(name) for name in "abcde"], "hash", 12, missing="impute",
                       interactions=[("a", "e"), ("b", "d")])
    reference, none = _chunks(clicks, spec, False, shuffle)
    chunks, read = _chunks(clicks, spec, True, shuffle)
    assert none == [] and read == ["a", "b", "c", "e"]  # d is a dictionary in the file either way
    assert len(chunks) == len(reference) > 1
    for (X, block, y), (X0, block0, y0) in zip(chunks, reference):
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(block.indices, block0.indices)
        np.testing.assert_array_equal(block.values, block0.values)


def test_slices_of_row_groups_read_as_dictionaries_equal_the_per_row_chunks(clicks):
    """Row groups split into slices are streamed with ``iter_batches``: each batch brings its dictionary."""
    spec = FeatureSpec([], [CategoricalInput(name) for name in "abcde"], "hash", 12, missing="impute",
                       interactions=[("a", "c")])
    reference, _ = _chunks(clicks, spec, False, "none", unit_rows=400)
    chunks, read = _chunks(clicks, spec, True, "none", unit_rows=400)
    assert read == ["a", "b", "c", "e"] and len(chunks) == len(reference) >= GROUPS * 4
    for (_, block, _), (_, block0, _) in zip(chunks, reference):
        np.testing.assert_array_equal(block.indices, block0.indices)
        np.testing.assert_array_equal(block.values, block0.values)


SETTINGS = {
    "hash": dict(encoding="hash", hash_bits=10),
    "onehot": dict(encoding="onehot", max_categories=40),
    "hash-interaction": dict(encoding="hash", hash_bits=10, interactions="a:e,b:d"),
    "onehot-interaction": dict(encoding="onehot", max_categories=40, interactions="c:e", interaction_bits=8),
}


@pytest.mark.parametrize("kind", sorted(SETTINGS))
def test_models_fitted_from_dictionaries_equal_the_per_row_models(clicks, kind, monkeypatch):
    settings = dict(model="logistic", categorical=list("abcde"), missing="impute", optimizer="adagrad",
                    batch_size=8, epochs=2, seed=1, alpha=1e-4, **SETTINGS[kind])
    monkeypatch.setattr(reader_module, "DICTIONARY_READS", False)
    reference = streamgd.fit(clicks, target="y", **settings)
    gathered = []
    original = spec_module.gather_entries

    def counting(column, *args):
        gathered.append(len(column))
        return original(column, *args)

    monkeypatch.setattr(reader_module, "DICTIONARY_READS", True)
    monkeypatch.setattr(spec_module, "gather_entries", counting)  # one-hot ranks
    monkeypatch.setattr(hashing_module, "gather_entries", counting)  # hashes
    model = streamgd.fit(clicks, target="y", **settings)
    # the training pass gathered every categorical text column's rows by index
    assert sum(gathered) >= 2 * 4 * GROUPS * GROUP_ROWS
    assert np.abs(reference.coef_).sum() > 0
    np.testing.assert_array_equal(model.coef_, reference.coef_)
    np.testing.assert_array_equal(model.intercept_, reference.intercept_)


def test_text_columns_kept_as_read_are_not_dictionaries(clicks):
    """A categorical column that is also an extra column leaves the reader as the file has it (string)."""
    spec = FeatureSpec([], [CategoricalInput(name) for name in "ae"], "hash", 8, missing="impute")
    data = open_dataset(clicks, target="y")
    plan = make_plan(data.units, "none", seed=0)
    with ChunkStream(data, plan, dtype=np.float64, features=spec, extra_columns=["e"]) as stream:
        chunk = next(iter(stream))
        assert stream.dictionary_read_columns() == ["a"]
    assert pa.types.is_string(chunk.extra.column("e").type)
    assert pc.count(chunk.extra.column("e")).as_py() == GROUP_ROWS


def test_a_partition_key_used_as_a_categorical_column(clicks, tmp_path, monkeypatch):
    """A hive partition key is no column of the files: it is filled in as strings, not asked of pyarrow as a
    dictionary (which refuses a name the file does not hold), and the model equals the per-row one."""
    table = pq.read_table(clicks, columns=["n", "e", "y"])
    for part, rows in (("left", slice(0, 2000)), ("right", slice(2000, None))):
        (tmp_path / f"side={part}").mkdir()
        pq.write_table(table[rows], tmp_path / f"side={part}" / "data.parquet", row_group_size=1000)
    settings = dict(model="logistic", categorical=["e", "side"], encoding="hash", hash_bits=8, missing="impute",
                    optimizer="adagrad", batch_size=4, epochs=1, seed=2, interactions="e:side")
    monkeypatch.setattr(reader_module, "DICTIONARY_READS", False)
    reference = streamgd.fit(str(tmp_path), target="y", **settings)
    monkeypatch.setattr(reader_module, "DICTIONARY_READS", True)
    model = streamgd.fit(str(tmp_path), target="y", **settings)
    np.testing.assert_array_equal(model.coef_, reference.coef_)
    data = open_dataset(str(tmp_path), target="y")
    spec = FeatureSpec([], [CategoricalInput("e"), CategoricalInput("side")], "hash", 8, missing="impute")
    with ChunkStream(data, make_plan(data.units, "none", seed=0), features=spec) as stream:
        assert sum(chunk.n_rows for chunk in stream) == GROUPS * GROUP_ROWS
        assert set(stream.dictionary_read_columns()) == {"e", "side"}


@pytest.mark.parametrize("missing", ["impute", "error"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_compiled_dense_columns_equal_the_per_column_numpy_path(missing, dtype):
    """A float column of one chunk takes the compiled dense path; the same values cut into two chunks take the
    NumPy path (cast, fill, gather, mask): the blocks are equal bit for bit, nulls, NaN and imputation included."""
    rng = np.random.default_rng(11)
    n = 5000
    x = rng.normal(size=n).astype(np.float32)
    x[rng.integers(0, n, 300)] = np.nan  # NaN values, not nulls
    null = rng.random(n) < 0.1
    one = pa.table({"x": pa.array(x, mask=null), "z": pa.array(rng.normal(size=n))})
    two = pa.table({name: pa.chunked_array([one.column(name).chunk(0)[:1234], one.column(name).chunk(0)[1234:]])
                    for name in one.column_names})
    spec = FeatureSpec([NumericInput("x", 0.25 if missing == "impute" else None, missing == "impute"),
                        NumericInput("z")], [], "hash", 8, missing=missing)
    order = rng.permutation(n)
    for rows in (None, order):
        fast, _, _ = spec.to_blocks(one, rows, dtype)
        reference, _, _ = spec.to_blocks(two, rows, dtype)
        assert fast.dtype == reference.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(fast, reference)
        expected = np.where(null | np.isnan(x), np.nan if missing == "error" else 0.25, x.astype(np.float64))
        np.testing.assert_array_equal(fast[:, 0], (expected if rows is None else expected[rows]).astype(dtype))
