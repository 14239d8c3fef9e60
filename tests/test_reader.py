"""Chunks: equal to pyarrow's own reading of the same rows, in every layout and prefetch depth; errors and
thread shutdown; memory budget parsing."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamgd import ConfigError, DataError, open_dataset
from streamgd.data.memory_plan import plan_memory
from streamgd.data.reader import ChunkStream, iter_chunks, parse_memory_budget
from streamgd.data.shuffle import ShuffleQualityMeter, make_plan


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("depth", [0, 1, 2])
@pytest.mark.parametrize("mode, max_rows", [("none", None), ("row-groups", None), ("buffer:3", 128)])
def test_chunks_equal_pyarrow_reference_rows(numbered, dtype, depth, mode, max_rows):
    reference = pq.read_table(numbered)
    expected = np.column_stack([reference.column(c).to_numpy().astype(np.float64)
                                for c in ["row_id", "f", "i", "b"]])
    data = open_dataset(numbered, target="y", max_unit_rows=max_rows)
    plan = make_plan(data.units, mode, seed=9)
    seen = 0
    for chunk in iter_chunks(data, plan, dtype=dtype, prefetch_depth=depth):
        positions = chunk.step.file_positions()
        assert chunk.X.flags.f_contiguous and chunk.X.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(chunk.X, expected[positions].astype(dtype))
        np.testing.assert_array_equal(chunk.y, reference.column("y").to_numpy()[positions])
        seen += chunk.n_rows
    assert seen == 2000


@pytest.mark.parametrize("mode", ["none", "row-groups", "buffer:3"])
@pytest.mark.parametrize("depth", [0, 2])
def test_a_conversion_deferred_to_the_consumer_gives_the_same_chunks(numbered, mode, depth):
    data = open_dataset(numbered, target="y")
    plan = make_plan(data.units, mode, seed=4)
    eager, late = ShuffleQualityMeter(), ShuffleQualityMeter()
    reference = list(iter_chunks(data, plan, quality=eager, prefetch_depth=depth))
    deferred = list(iter_chunks(data, plan, quality=late, prefetch_depth=depth, defer_conversion=True))
    assert len(reference) == len(deferred)
    for now, later in zip(reference, deferred):
        assert later.X.flags.f_contiguous
        np.testing.assert_array_equal(later.X, now.X)
        np.testing.assert_array_equal(later.y, now.y)
        np.testing.assert_array_equal(later.row_order, now.row_order)
    assert late.result() == eager.result()


def test_nulls_become_nan(tmp_path):
    pq.write_table(pa.table({"a": pa.array([1.0, None, 3.0]), "i": pa.array([1, None, 2]), "y": [0, 1, 0]}),
                   tmp_path / "n.parquet")
    data = open_dataset(tmp_path / "n.parquet", target="y")
    (chunk,) = list(iter_chunks(data, make_plan(data.units, "none")))
    assert np.isnan(chunk.X[1]).all() and chunk.X[2].tolist() == [3.0, 2.0]


def test_a_file_broken_after_opening_reaches_the_consumer_as_data_error(numbered):
    data = open_dataset(numbered, target="y")
    with open(numbered, "r+b") as stream:
        stream.seek(4)
        stream.write(b"\x00" * 20000)
    with pytest.raises(DataError, match="row group"):
        for _ in iter_chunks(data, make_plan(data.units, "none"), prefetch_depth=2):
            pass


def test_leaving_the_loop_early_stops_the_prefetch_thread(numbered):
    data = open_dataset(numbered, target="y", max_unit_rows=50)
    with ChunkStream(data, make_plan(data.units, "row-groups"), prefetch_depth=2) as stream:
        for _ in stream:
            break
    assert not [t for t in threading.enumerate() if t.name == "streamgd-prefetch"]


def test_memory_budgets_parse_and_bound_unit_rows():
    assert parse_memory_budget("256MB") == 256_000_000 and parse_memory_budget("2GiB") == 2 * 2**30
    for bad in ("lots", "-5MB", "0"):
        with pytest.raises(ConfigError):
            parse_memory_budget(bad)
    rows = [[65_536] * 4]
    small = plan_memory(64_000_000, rows, [None], ["x"] * 33, 32, 4, 2).max_unit_rows
    assert plan_memory(64_000_000, rows, [None], ["x"] * 65, 64, 4, 2).max_unit_rows < small
    assert plan_memory(128_000_000, rows, [None], ["x"] * 33, 32, 4, 2).max_unit_rows > small
    # the bytes in flight at that row count stay within the budget: 4 chunks (queue, training, building) and the
    # decoded Arrow columns, float64 at worst
    assert small * ((2 + 2) * (32 * 4 + 8) + 33 * 8) <= 64_000_000
