"""Opening datasets: every kind of source, column resolution, unit index, and each bad input's error."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_table

from streamgd import DataError, SchemaError, open_dataset
from streamgd.data.unit_reader import UnitTableReader


def read_all(dataset, columns):
    reader = UnitTableReader(dataset, columns)
    return pa.concat_tables([reader.read(u) for u in dataset.units])


def test_a_file_gives_numeric_features_and_row_group_units(numbered):
    data = open_dataset(numbered, target="y")
    assert data.feature_names == ["row_id", "f", "i", "b"]
    assert [u.n_rows for u in data.units] == [300] * 6 + [200]
    assert [u.first_row for u in data.units] == list(range(0, 2000, 300))


def test_big_row_groups_are_sliced_and_slices_cover_them(numbered):
    data = open_dataset(numbered, target="y", max_unit_rows=128)
    assert sum(u.n_rows for u in data.units) == 2000 and max(u.n_rows for u in data.units) == 128
    ids = read_all(data, ["row_id"]).column("row_id").to_numpy()
    assert np.array_equal(ids, np.arange(2000))


def test_directory_glob_list_and_pyarrow_dataset_agree(tmp_path):
    for k in range(3):
        os.makedirs(tmp_path / "d" / f"sub{k}", exist_ok=True)
        write_table(tmp_path / "d" / f"sub{k}" / "p.parquet", {"a": np.arange(10.0) + 10 * k, "y": np.ones(10)}, 4)
    import pyarrow.dataset as pads
    sources = [str(tmp_path / "d"), str(tmp_path / "d" / "*" / "*.parquet"),
               [str(tmp_path / "d" / f"sub{k}" / "p.parquet") for k in range(3)], pads.dataset(str(tmp_path / "d"))]
    for source in sources:
        data = open_dataset(source, target="y")
        values = np.sort(read_all(data, ["a"]).column("a").to_numpy())
        assert np.array_equal(values, np.arange(30.0)), source


def test_hive_partition_columns_are_usable_as_features_and_target(tmp_path):
    for year in (2023, 2024):
        os.makedirs(tmp_path / f"year={year}")
        write_table(tmp_path / f"year={year}" / "part.parquet", {"a": np.arange(5.0)}, 2)
    data = open_dataset(str(tmp_path), target="year")
    assert data.feature_names == ["a"]
    years = read_all(data, ["a", "year"]).column("year").to_pylist()
    assert years == [2023] * 5 + [2024] * 5
    assert "year" in open_dataset(str(tmp_path), target="a").feature_names


def test_a_dask_dataframe_partitions_become_units(tmp_path):
    import dask.dataframe as dd
    for k in range(2):
        write_table(tmp_path / f"p{k}.parquet", {"a": np.arange(7.0) + 7 * k, "y": np.zeros(7)}, 7)
    frame = dd.read_parquet(str(tmp_path))
    data = open_dataset(frame, target="y")
    assert sum(u.n_rows for u in data.units) == 14
    assert np.array_equal(np.sort(read_all(data, ["a", "y"]).column("a").to_numpy()), np.arange(14.0))


def test_text_columns_are_categorical_features_by_default(tmp_path):
    path = write_table(tmp_path / "t.parquet", {"a": [1.0, 2.0], "name": ["x", "y"], "n": [3, 4], "y": [0, 1]}, 2)
    data = open_dataset(path, target="y")
    assert data.feature_names == ["a", "name", "n"] and data.categorical == ["name"]
    assert data.ignored_columns == {"y": "the target"}
    assert open_dataset(path, target="y", features=["a", "name"]).categorical == ["name"]
    assert open_dataset(path, target="y", categorical=["name", "n"]).categorical == ["name", "n"]
    with pytest.raises(DataError, match="the categorical column 'nope' is not in"):
        open_dataset(path, target="y", categorical=["nope"])


@pytest.mark.parametrize("case", ["missing", "not-parquet", "truncated", "empty", "nested", "unknown-target",
                                  "glob-nothing", "empty-dir"])
def test_each_bad_input_gives_a_clear_data_error(tmp_path, numbered, case):
    path = str(tmp_path / "bad.parquet")
    expected = {"missing": "no such file", "not-parquet": "not a readable Parquet file",
                "truncated": "not a readable Parquet file", "empty": "has no rows",
                "nested": "is nested", "unknown-target": "target column 'nope'",
                "glob-nothing": "no file matches", "empty-dir": "holds no Parquet files"}[case]
    target, features = "y", None
    if case == "missing":
        path = str(tmp_path / "nowhere.parquet")
    elif case == "not-parquet":
        (tmp_path / "bad.parquet").write_bytes(os.urandom(2000))
    elif case == "truncated":
        data = open(numbered, "rb").read()
        (tmp_path / "bad.parquet").write_bytes(data[:-100])
    elif case == "empty":
        pq.write_table(pa.table({"a": pa.array([], pa.float64()), "y": pa.array([], pa.float64())}), path)
    elif case == "nested":
        write_table(path, {"a": [[1.0], [2.0]], "y": [0.0, 1.0]}, 2)
        features = ["a"]
    elif case == "unknown-target":
        path, target = numbered, "nope"
    elif case == "glob-nothing":
        path = str(tmp_path / "*.nothing")
    elif case == "empty-dir":
        os.makedirs(tmp_path / "empty")
        path = str(tmp_path / "empty")
    with pytest.raises(DataError, match=expected) as raised:
        open_dataset(path, target=target, features=features)
    assert "\n" not in str(raised.value)
    if case in ("not-parquet", "truncated", "missing"):
        assert os.path.basename(path) in str(raised.value)


def test_schema_mismatch_names_both_files_and_the_column(tmp_path):
    write_table(tmp_path / "a.parquet", {"x": [1.0, 2.0], "y": [0, 1]}, 2)
    write_table(tmp_path / "b.parquet", {"x": ["1", "2"], "y": [0, 1]}, 2)
    with pytest.raises(SchemaError,
                       match=r"column 'x' is of incompatible types: double in .*a.parquet; string in .*b.parquet"):
        open_dataset([str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")], target="y", features=["x"])


def test_an_in_memory_table_trains_exactly_as_its_parquet_file(tmp_path):
    import streamgd

    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 3))
    table = pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": (X @ [1, 2, -1] > 0).astype(np.int64)})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=700)
    in_memory = open_dataset(table, target="y", max_unit_rows=700)
    assert [u.n_rows for u in in_memory.units] == [700] * 7 + [100]
    options = dict(target="y", batch_size=16, epochs=3, shuffle="buffer:2")
    from_file = streamgd.fit(str(tmp_path / "t.parquet"), **options)
    from_memory = streamgd.fit(in_memory, **options)
    np.testing.assert_array_equal(from_memory.coef_, from_file.coef_)
    np.testing.assert_array_equal(from_memory.intercept_, from_file.intercept_)


def test_a_file_footer_is_parsed_once_for_every_reader_of_a_run(numbered, monkeypatch):
    """Training reads with a reader per epoch and the statistics pass with one per thread; all take the footer
    parsed when the dataset was opened (each parse of a big footer stays in the process's memory)."""
    import pickle

    import streamgd

    parses = []
    original = pq.ParquetFile.__init__

    def counting(self, source, *args, metadata=None, **kwargs):
        if metadata is None:
            parses.append(source)
        original(self, source, *args, metadata=metadata, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "__init__", counting)
    streamgd.fit(numbered, target="y", model="linear", epochs=3, batch_size=64, standardize=True)
    assert len(parses) == 1
    data = open_dataset(numbered, target="y")
    clone = pickle.loads(pickle.dumps(data))  # a dask task's copy: the cache travels empty
    assert clone.footers.get(0) is None and data.footers.get(0) is not None
    assert UnitTableReader(clone, clone.columns).read(clone.units[0]).equals(
        UnitTableReader(data, data.columns).read(data.units[0]))
    assert clone.footers.get(0) is not None
