"""The statistics pass counts a categorical text column's values from its Parquet dictionary's indices (issue 29,
the fixed start-up): the same counts, in the same order, as counting its decoded strings, so the one-hot
vocabularies, and the models, are the same."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamgd.data.dataset import open_dataset
from streamgd.features import stats as stats_module
from streamgd.features.stats import column_stats, compute_stats, dictionary_value_counts


def _summary(column_summary):
    c = column_summary.categories.compacted()
    return (column_summary.count, column_summary.missing, c.values.to_pylist(), c.counts.tolist(),
            c.errors.tolist(), c.floor, c.total)


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_dictionary_counts_equal_the_decoded_strings_counts(kind):
    rng = np.random.default_rng(4)
    values = [f"v{k}" for k in rng.zipf(1.4, 5000) % 300]
    for i in range(0, 5000, 9):
        values[i] = None
    strings = pa.chunked_array([pa.array(values, kind)])
    encoded = pa.chunked_array([strings.chunk(0).dictionary_encode()])
    found = dictionary_value_counts(encoded)
    assert found is not None
    assert found[0].to_pylist()[:3] == [v for v in dict.fromkeys(values) if v is not None][:3]  # first seen first
    for capacity in (10, 1000):  # a summary that drops values, and one that keeps them all
        assert _summary(column_stats(encoded, True, capacity)) == _summary(column_stats(strings, True, capacity))


def test_dictionaries_it_cannot_count_by_index_take_the_strings():
    repeated = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 1]), pa.array(["a", "b", "a"]))
    with_null = pa.DictionaryArray.from_arrays(pa.array([0, 1, 1]), pa.array(["a", None]))
    two_chunks = pa.chunked_array([pa.array(["a", "b"]).dictionary_encode(), pa.array(["b"]).dictionary_encode()])
    for column in (pa.chunked_array([repeated]), pa.chunked_array([with_null]), two_chunks):
        assert dictionary_value_counts(column) is None
        strings = column.cast(pa.string())
        assert _summary(column_stats(column, True, 100)) == _summary(column_stats(strings, True, 100))
    assert column_stats(pa.chunked_array([repeated]), True, 100).categories.compacted().counts.tolist() == [2, 2]


def test_the_statistics_pass_reads_dictionaries_and_counts_alike(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    n = 6000
    table = pa.table({"c": pa.array([f"c{k}" for k in rng.zipf(1.3, n) % 500], mask=rng.random(n) < 0.05),
                      "d": pa.array([f"d{k}" for k in rng.integers(0, 9, n)]),
                      "x": rng.normal(size=n), "y": rng.integers(0, 2, n)})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=1000)
    data = open_dataset(str(path), target="y")
    read_as = []
    original = stats_module.dictionary_columns

    def recording(*args):
        read_as.append(original(*args))
        return read_as[-1]

    monkeypatch.setattr(stats_module, "dictionary_columns", recording)
    by_index = compute_stats(data, ["c", "d", "x"], ["c", "d"], 20)
    assert read_as and all(columns == ["c", "d"] for columns in read_as)
    monkeypatch.setattr(stats_module, "dictionary_columns", lambda *args: [])  # every row's string decoded
    decoded = compute_stats(data, ["c", "d", "x"], ["c", "d"], 20)
    for name in ("c", "d"):
        assert _summary(by_index.columns[name]) == _summary(decoded.columns[name])
    assert by_index.columns["x"].mean == decoded.columns["x"].mean
