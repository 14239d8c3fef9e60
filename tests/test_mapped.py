"""The memory-mapped reader: the same tables as pyarrow's own reader, and mapped pages handed back."""

import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamgd import open_dataset
from streamgd.data.dataset import open_parquet_file
from streamgd.data.unit_reader import UnitTableReader
from streamgd.errors import DataError
from streamgd.io import mapped
from streamgd.io.mapped import MappedParquetFile, can_map


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """96 MB of float32 in 24 row groups, with a column of nulls and a text column."""
    rng = np.random.default_rng(0)
    n = 600_000
    columns = {f"x{j}": rng.standard_normal(n).astype(np.float32) for j in range(40)}
    columns["holes"] = pa.array(np.where(rng.random(n) < 0.1, np.nan, 1.0), from_pandas=True)
    columns["word"] = pa.array(rng.choice(["a", "bb", "ccc"], n))
    path = str(tmp_path_factory.mktemp("mapped") / "wide.parquet")
    pq.write_table(pa.table(columns), path, row_group_size=25_000, use_dictionary=False, compression="none")
    return path


def test_every_row_group_reads_as_pyarrow_reads_it(wide):
    mapped, plain = MappedParquetFile(wide), pq.ParquetFile(wide)
    assert mapped.metadata.num_row_groups == plain.metadata.num_row_groups == 24
    for group in (0, 7, 23):
        for columns in (None, ["x3", "holes", "word"]):
            assert mapped.read_row_group(group, columns=columns).equals(plain.read_row_group(group, columns=columns))


def _file_backed_rss_mb() -> float:
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no RssFile line in /proc/self/status")


def _peak_growth_mb(path: str) -> float:
    handle = MappedParquetFile(path)
    before = peak = _file_backed_rss_mb()
    for group in range(handle.metadata.num_row_groups):
        handle.read_row_group(group)
        peak = max(peak, _file_backed_rss_mb())
    return peak - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_mapped_pages_leave_the_process_after_each_row_group(wide, monkeypatch):
    size_mb = os.path.getsize(wide) / 2**20
    assert _peak_growth_mb(wide) < 2 * size_mb / 24  # at most about one row group resident
    monkeypatch.setattr(mapped, "_DONTNEED", None)  # without the advice, every page read stays resident
    assert _peak_growth_mb(wide) > 0.9 * size_mb


def test_the_reader_maps_local_files_and_streams_slices(wide):
    data = open_dataset(wide, target="x0")
    reader = UnitTableReader(data, data.columns)
    table = reader.read(data.units[5])
    assert isinstance(reader._file(0), MappedParquetFile)
    assert table.equals(pq.ParquetFile(wide).read_row_group(5, columns=data.columns))
    sliced = open_dataset(wide, target="x0", max_unit_rows=10_000)
    reader = UnitTableReader(sliced, sliced.columns)
    assert reader.read(sliced.units[1]).equals(pq.ParquetFile(wide).read_row_group(0, columns=sliced.columns)
                                               .slice(10_000, 10_000))
    assert isinstance(reader._file(0, streaming=True), pq.ParquetFile)


def test_what_cannot_be_mapped_is_read_as_before(tmp_path, wide):
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    assert can_map(wide, None) and not can_map(str(empty), None) and not can_map(wide, object())
    with pytest.raises(DataError, match="not a readable Parquet file"):
        open_parquet_file(str(empty), mapped=True)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1" + b"\0" * 1000)
    with pytest.raises(DataError, match="not a readable Parquet file"):
        open_parquet_file(str(garbage), mapped=True)
