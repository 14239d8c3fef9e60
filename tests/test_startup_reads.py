"""The start-up searches read text columns as Parquet dictionaries (issue 29): the sample they number from the
indices is the sample the strings give, value for value and number for number, so every pair's gain is the same
to the bit; and the two searches of one run share one read of the data."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from streamgd.data.dataset import open_dataset
from streamgd.features import interaction_search as search
from streamgd.features.encoding_choice import sample_distinct

ROWS = 6000


def labels(column):
    """0/1, and NaN (an unknown label) where the file's label is 2."""
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    return np.where(values == 2, np.nan, values)


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    """Text columns of few and of many values with nulls, one written from an Arrow dictionary whose order is not
    the order the values appear in, and a numeric categorical column; row groups of 1000 rows, each with a
    dictionary of its own."""
    rng = np.random.default_rng(5)
    few = np.array([f"f{k}" for k in range(7)], dtype=object)[rng.integers(0, 7, ROWS)]
    many = np.array([f"m{k}" for k in range(3000)], dtype=object)[rng.zipf(1.3, ROWS) % 3000]
    shuffled = pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 40, ROWS), pa.int32()),
                                              pa.array([f"s{k}" for k in rng.permutation(40)]))
    numbers = rng.integers(0, 12, ROWS)
    margin = 0.4 * (numbers % 3) + np.where((rng.integers(0, 7, ROWS) + numbers) % 4 == 0, 1.0, -0.3)
    label = (rng.random(ROWS) < 1 / (1 + np.exp(-margin))).astype(np.int64)
    label[rng.random(ROWS) < 0.05] = 2
    table = pa.table({
        "few": pa.array(few, pa.string(), mask=rng.random(ROWS) < 0.1),
        "many": pa.array(many, pa.string(), mask=rng.random(ROWS) < 0.02),
        "shuffled": shuffled,
        "number": pa.array(numbers),
        "label": pa.array(label),
    })
    path = tmp_path_factory.mktemp("startup") / "log.parquet"
    pq.write_table(table, path, row_group_size=1000)
    return path


def string_sample(path, columns, units):
    """The definition: the sample's rows decoded to strings, numbered by ``pc.dictionary_encode`` over the whole
    sample (null the last number), rows of an unknown label dropped."""
    file = pq.ParquetFile(path)
    tables = [file.read_row_group(unit.row_group) for unit in units]
    y = np.concatenate([labels(t.column("label")) for t in tables])
    codes = {}
    for name in columns:
        values = pa.chunked_array([pc.cast(t.column(name).combine_chunks().cast(pa.string())
                                           if pa.types.is_dictionary(t.column(name).type)
                                           else pc.cast(t.column(name), pa.string()), pa.large_string())
                                   for t in tables])
        encoded = pc.dictionary_encode(values).combine_chunks()
        codes[name] = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False)
    known = np.isfinite(y)
    return y[known], {name: numbers[known].astype(np.int64) for name, numbers in codes.items()}


@pytest.mark.parametrize("rows", [ROWS, 2500], ids=["every-unit", "spread-units"])
def test_the_dictionary_sample_numbers_values_as_the_strings_do(log_file, rows):
    dataset = open_dataset(str(log_file), target="label", categorical=["few", "many", "shuffled", "number"])
    columns = list(dataset.categorical)
    y, codes = search.read_sample(dataset, columns, labels, rows)
    y_ref, ref = string_sample(log_file, columns, search.sample_units(dataset, rows))
    assert len(y) < len(search.sample_units(dataset, rows)) * 1000  # unknown labels were dropped
    np.testing.assert_array_equal(y, y_ref)
    for name in columns:
        np.testing.assert_array_equal(codes[name], ref[name], err_msg=name)


def test_text_columns_are_never_decoded_to_strings(log_file, monkeypatch):
    dataset = open_dataset(str(log_file), target="label", categorical=["few", "many", "shuffled"])

    def refuse(column):
        raise AssertionError(f"a text column was decoded row by row ({column.type})")

    monkeypatch.setattr(search, "category_strings", refuse)
    y, codes = search.read_sample(dataset, list(dataset.categorical), labels, ROWS)
    assert codes["many"].max() > 100 and len(y) > 5000


@pytest.mark.parametrize("cell_buckets", [search.CELL_BUCKETS, 1 << 6], ids=["exact-cells", "hashed-cells"])
def test_the_gains_are_those_of_the_string_sample_to_the_bit(log_file, monkeypatch, cell_buckets):
    """Hashed cells collide by value number, and the factor search's ties among frequent values are broken by
    it: equal numbering gives equal gains, exactly."""
    monkeypatch.setattr(search, "CELL_BUCKETS", cell_buckets)
    dataset = open_dataset(str(log_file), target="label", categorical=["few", "many", "shuffled", "number"])
    columns = list(dataset.categorical)
    y, codes = search.read_sample(dataset, columns, labels, ROWS)
    y_ref, ref = string_sample(log_file, columns, search.sample_units(dataset, ROWS))
    for cut in (lambda c: c, lambda c: search.top_values(c, 5)):
        gains = search.pair_gains(y, {name: cut(c) for name, c in codes.items()})
        expected = search.pair_gains(y_ref, {name: cut(c) for name, c in ref.items()})
        assert [(p.label, p.gain, p.z) for p in gains] == [(p.label, p.gain, p.z) for p in expected]
    assert gains[0].gain != 0.0


def test_two_samples_read_together_equal_each_read_alone(log_file, monkeypatch):
    """The interaction and factor searches' samples read in one pass (``read_samples``) are each what
    ``read_sample`` gives alone, and no unit is read twice."""
    dataset = open_dataset(str(log_file), target="label", categorical=["few", "many", "shuffled", "number"])
    columns = list(dataset.categorical)
    alone = [search.read_sample(dataset, columns, labels, rows) for rows in (2500, 4000)]
    reads = []
    original = search.UnitTableReader.read
    monkeypatch.setattr(search.UnitTableReader, "read", lambda self, unit: reads.append(unit) or original(self, unit))
    together = search.read_samples(dataset, columns, labels, [2500, 4000])
    assert len(reads) == len({(u.source, u.row_group, u.offset) for u in reads})
    assert len(reads) < sum(len(search.sample_units(dataset, rows)) for rows in (2500, 4000))  # shared units
    for (y, codes), (y_ref, ref) in zip(together, alone):
        np.testing.assert_array_equal(y, y_ref)
        for name in columns:
            np.testing.assert_array_equal(codes[name], ref[name], err_msg=name)


def test_the_encoding_sample_counts_the_distinct_values_the_strings_hold(log_file):
    """``choose_encodings``'s sample reads text as dictionaries; its counts are the strings' (nulls not counted)."""
    dataset = open_dataset(str(log_file), target="label", categorical=["few", "many", "shuffled", "number"])
    columns = list(dataset.categorical)
    counts = sample_distinct(dataset, columns, rows=2500)
    table = pq.ParquetFile(log_file).read_row_groups([0, 1, 2])  # the first units to hold 2500 rows
    for name in columns:
        column = table.column(name)
        strings = column.cast(pa.string()) if not pa.types.is_dictionary(column.type) else column.cast(
            column.type.value_type)
        assert counts[name] == len(set(strings.drop_null().to_pylist())), name
    assert counts["few"] == 7 and counts["many"] > 50
