"""The memory budget's accounting: what a unit costs in flight, the page buffers of row groups read in slices,
and the budgets refused because those alone exceed them."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamgd import open_dataset
from streamgd.cli.main import invoke
from streamgd.errors import ConfigError
from streamgd.data.memory_plan import (ALLOCATOR_SHARE, ASSUMED_PAGE_BYTES, PAGES_HELD_PER_COLUMN, bytes_per_row,
                                  plan_for_dataset, slice_buffer_bytes)
from streamgd.bench.synthetic import make_dataset


@pytest.fixture(scope="module")
def giant(tmp_path_factory):
    """300,000 rows x 8 float32 features in one row group, written with 64 KiB pages."""
    path = str(tmp_path_factory.mktemp("plan") / "giant.parquet")
    make_dataset(path, n_rows=300_000, n_features=8, row_group_size=300_000, seed=3)
    return path


def test_a_unit_row_costs_its_copies_in_flight():
    # 4 chunks (2 queued, 1 trained on, 1 being built) of 32 float32 + a float64 target, the decoded columns
    assert bytes_per_row(32, 4, 2) == 4 * (32 * 4 + 8) + 33 * 8
    # a sparse entry per categorical column: an int32 slot and a float64 value, and the row pointer
    assert bytes_per_row(2, 4, 2, sparse_per_row=3) - bytes_per_row(2, 4, 2) == 4 * (3 * 12 + 8) + 2 * 3 * 8
    # the source pages and the measured decoded width replace the worst case
    assert bytes_per_row(32, 4, 2, source_bytes_per_row=100.5, decoded_bytes_per_row=132.1) == 4 * 136 + 133 + 101


def test_slice_buffers_come_from_the_footer(giant):
    footer = pq.ParquetFile(giant).metadata
    columns = [f"x{j}" for j in range(8)] + ["y"]
    expected = 0
    group = footer.row_group(0)
    for j in range(group.num_columns):
        column = group.column(j)
        ratio = column.total_uncompressed_size / column.total_compressed_size
        dictionary = int((column.data_page_offset - column.dictionary_page_offset) * ratio) \
            if column.has_dictionary_page else 0
        pages = min(ASSUMED_PAGE_BYTES, column.total_uncompressed_size)
        expected += min(dictionary + PAGES_HELD_PER_COLUMN * pages,
                        column.total_uncompressed_size + column.total_compressed_size)
    assert slice_buffer_bytes(footer, columns) == expected
    assert slice_buffer_bytes(footer, columns[:4]) < expected  # only the columns read


def test_row_groups_within_a_unit_hold_no_slice_buffers(giant):
    plan = plan_for_dataset(10**9, open_dataset(giant, target="y"), 4, 2)
    assert plan.slice_buffers == 0 and plan.max_unit_rows >= 300_000


def test_a_sliced_row_group_spends_the_budget_on_its_page_buffers_first(giant):
    data = open_dataset(giant, target="y")
    buffers = slice_buffer_bytes(pq.ParquetFile(giant).metadata, data.feature_names + ["y"])
    budget = buffers + 20_000_000
    plan = plan_for_dataset(budget, data, 4, 2)
    assert plan.slice_buffers == buffers and plan.reserve == int(ALLOCATOR_SHARE * budget)
    assert plan.max_unit_rows == (budget - plan.reserve - buffers) // plan.bytes_per_row
    assert "page buffers" in plan.describe()


def test_a_budget_below_the_page_buffers_is_refused_with_the_minimum(giant, capsys):
    data = open_dataset(giant, target="y")
    with pytest.raises(ConfigError, match=r"row groups of up to 300,000 rows .* give --memory-budget \d+MB") as refused:
        plan_for_dataset(2_000_000, data, 4, 2)
    minimum = int(re.search(r"give --memory-budget (\d+)MB", str(refused.value)).group(1)) * 10**6
    enough = plan_for_dataset(minimum, data, 4, 2)  # the budget the refusal gives is enough, with the reserve kept
    assert enough.max_unit_rows >= 16 * 1024 and enough.reserve == int(ALLOCATOR_SHARE * minimum)
    assert invoke(["fit", giant, "--target", "y", "--memory-budget", "2MB"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "page buffers" in err


def test_categorical_columns_count_as_sparse_entries(tmp_path):
    path = str(tmp_path / "cat.parquet")
    table = pa.table({"x": pa.array([1.0] * 1000, pa.float32()), "c": pa.array(["a", "b"] * 500), "y": [0.0] * 1000})
    pq.write_table(table, path)
    data = open_dataset(path, target="y", categorical=["c"])
    dense = plan_for_dataset(64_000_000, data, 4, 2)
    crossed = plan_for_dataset(64_000_000, data, 4, 2, sparse_columns=["c"], n_interactions=1)
    assert crossed.bytes_per_row > dense.bytes_per_row


def test_an_epoch_cache_counts_its_mapped_unit(giant):
    data = open_dataset(giant, target="y")
    plain, cached = plan_for_dataset(64_000_000, data, 4, 2), plan_for_dataset(64_000_000, data, 4, 2, cached=True)
    assert cached.bytes_per_row - plain.bytes_per_row == 8 * 4 + 8  # one more chunk of 8 float32 and a target


def test_the_history_says_how_the_budget_was_spent(tmp_path):
    from streamgd import fit
    path = str(tmp_path / "small.parquet")
    make_dataset(path, n_rows=50_000, n_features=4, row_group_size=50_000, seed=1)
    model = fit(path, target="y", epochs=1, memory_budget="4MB", batch_size=256)
    spent = model.history[-1]["memory_budget"]
    assert spent["budget"] == 4_000_000 and spent["slice_buffers"] > 0
    assert spent["reserve"] == 800_000
    assert spent["max_unit_rows"] == max(1024, (3_200_000 - spent["slice_buffers"]) // spent["bytes_per_row"])
