"""Reading Parquet from an object store: a local S3 server (moto, behind a proxy that logs and can delay each
request; tests/s3_latency.py), the same results as from local files, and the requests it takes."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import streamgd
from streamgd import open_dataset
from streamgd.cli.main import main
from streamgd.data.unit_reader import UnitTableReader
from streamgd.errors import DataError
from streamgd.io.mapped import _row_group_span
from streamgd.data.reader import ChunkStream
from streamgd.data.remote_reads import ReadStats, RemoteRowGroups, coalesce, column_chunk_ranges
from streamgd.data.shuffle import make_plan

pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (the test extra)")
from s3_latency import LocalS3  # noqa: E402

N_FILES, GROUPS, GROUP_ROWS, N_FEATURES = 3, 2, 500, 6


@pytest.fixture(scope="module")
def s3():
    """One local S3 server per test process (pytest-xdist: per worker)."""
    with LocalS3() as server, server.environment():
        yield server


@pytest.fixture(scope="module")
def bucket_data(s3, tmp_path_factory):
    """3 files x 2 row groups x 500 rows (6 float64 features, a 0/1 target), on disk and in a bucket."""
    directory = tmp_path_factory.mktemp("remote")
    rng = np.random.default_rng(3)
    for k in range(N_FILES):
        n = GROUPS * GROUP_ROWS
        X = rng.standard_normal((n, N_FEATURES))
        y = (X @ np.linspace(-1, 1, N_FEATURES) + 0.3 * rng.standard_normal(n) > 0).astype(np.int64)
        columns = {f"x{j}": X[:, j] for j in range(N_FEATURES)} | {"y": y}
        pq.write_table(pa.table(columns), directory / f"part-{k}.parquet", row_group_size=GROUP_ROWS)
    bucket = f"streamgd-reads-{os.getpid()}"
    s3.upload_dir(str(directory), bucket, "train")
    return str(directory), f"s3://{bucket}/train", bucket


def one_pass(data, **options) -> tuple[list, ChunkStream]:
    """Every chunk of one pass over the data (in file order), and the stream."""
    stream = ChunkStream(data, make_plan(data.units, "none", seed=0), dtype=np.float64, **options)
    with stream:
        chunks = [(c.X.copy(), c.y.copy()) for c in stream]
    return chunks, stream


def test_fit_from_bucket_equals_fit_from_local_files(bucket_data):
    local_dir, uri, _ = bucket_data
    local = streamgd.fit(local_dir, target="y", epochs=2, seed=1, shuffle="row-groups")
    remote = streamgd.fit(uri, target="y", epochs=2, seed=1, shuffle="row-groups")
    assert np.array_equal(remote.coef_, local.coef_) and np.array_equal(remote.intercept_, local.intercept_)
    assert [e["loss"] for e in remote.history] == [e["loss"] for e in local.history]
    reads = remote.history[-1]["remote_reads"]
    assert reads["row_groups"] == N_FILES * GROUPS
    assert reads["requests"] == N_FILES * GROUPS and reads["requests_per_row_group"] == 1.0
    assert reads["footer_requests"] == 0 and reads["files_opened"] == 0  # opened once, to read the footers
    assert reads["read_latency_ms"] > 0 and reads["prefetch_depth"] >= 1
    assert "remote_reads" not in local.history[-1]


def test_server_log_shows_one_get_per_row_group_and_one_head_per_file(s3, bucket_data):
    _, uri, bucket = bucket_data
    s3.proxy.clear()
    data = open_dataset(uri, target="y")
    footers = [r for r in s3.proxy.requests if r.method == "GET" and r.range]  # the others list the prefix
    opens = [r for r in s3.proxy.requests if r.method == "HEAD" and r.path.endswith(".parquet")]
    assert len(footers) == len(opens) == N_FILES
    s3.proxy.clear()
    for _ in range(2):  # files are opened and footers read once, when the dataset is opened: not by a pass
        _, stream = one_pass(data)
    gets = [r for r in s3.proxy.requests if r.method == "GET"]
    assert len(gets) == 2 * N_FILES * GROUPS  # the bound is 2 per row group: one range each here
    assert all(r.range and r.range.startswith("bytes=") for r in gets)
    assert s3.proxy.count("HEAD") == 0 and len(s3.proxy.requests) == len(gets)
    assert stream.read_stats.requests == N_FILES * GROUPS == stream.read_stats.row_groups


def test_chunks_from_a_bucket_equal_local_chunks_for_a_subset_of_columns(s3, bucket_data):
    local_dir, uri, _ = bucket_data
    features = ["x0", "x3", "x5"]  # the column chunks in between are read through (gaps < 1 MiB), not asked
    local = one_pass(open_dataset(local_dir, target="y", features=features))[0]
    s3.proxy.clear()
    remote, stream = one_pass(open_dataset(uri, target="y", features=features))
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(local, remote))
    assert len(remote) == len(local) == N_FILES * GROUPS
    assert stream.read_stats.requests == N_FILES * GROUPS


@pytest.mark.parametrize("fetch_bytes, gets_per_row_group", [(None, 1), (1, N_FEATURES + 1)])
def test_slices_of_remote_row_groups_take_one_request_or_one_per_column(s3, bucket_data, fetch_bytes,
                                                                         gets_per_row_group):
    local_dir, uri, _ = bucket_data
    local = one_pass(open_dataset(local_dir, target="y", max_unit_rows=200), prefetch_depth=0)[0]
    data = open_dataset(uri, target="y", max_unit_rows=200)
    s3.proxy.clear()
    remote, stream = one_pass(data, prefetch_depth=0, fetch_bytes=fetch_bytes)
    assert len(remote) == len(local) == N_FILES * GROUPS * 3  # 200 + 200 + 100 rows per row group
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(local, remote))
    assert stream.read_stats.row_groups == N_FILES * GROUPS
    # whole, when the row group fits the fetch budget; else streamed, a request per column chunk (each < 1 MiB)
    assert stream.read_stats.requests == s3.proxy.count("GET") == gets_per_row_group * N_FILES * GROUPS


def test_reading_out_of_the_announced_order_gives_the_same_tables(bucket_data):
    local_dir, uri, _ = bucket_data
    data, local = open_dataset(uri, target="y"), open_dataset(local_dir, target="y")
    backwards = data.units[::-1]
    reader = UnitTableReader(data, data.columns, read_ahead=data.units)  # announced forwards, read backwards
    local_reader = UnitTableReader(local, local.columns)
    try:
        for unit in backwards[:3] + data.units[:2]:
            assert reader.read(unit).equals(local_reader.read(unit))
    finally:
        reader.close()
        local_reader.close()


def paced_depth(data, seconds_per_unit: float) -> int:
    """The deepest fetch-ahead of a reader that spends ``seconds_per_unit`` on each row group."""
    stats = ReadStats()
    reader = UnitTableReader(data, data.columns, read_ahead=data.units, read_stats=stats)
    try:
        for unit in data.units:
            reader.read(unit)
            time.sleep(seconds_per_unit)
    finally:
        reader.close()
    return stats.max_prefetch_depth


def test_fetch_depth_follows_request_latency_over_time_per_row_group(s3, bucket_data):
    data = open_dataset(bucket_data[1], target="y")
    s3.proxy.delay = 0.15  # 150 ms a request against 5 ms of work per row group: Little's law wants >= 16
    try:
        deep = paced_depth(data, 0.005)
    finally:
        s3.proxy.delay = 0.0
    shallow = paced_depth(data, 0.2)  # no delay, 200 ms of work per row group: 2 in flight are plenty
    assert deep >= 4 and shallow <= 2


def test_fetched_bytes_stay_within_the_budget(bucket_data):
    data = open_dataset(bucket_data[1], target="y")
    stats = ReadStats()
    reader = UnitTableReader(data, data.columns, read_ahead=data.units, read_stats=stats, fetch_bytes=1)
    try:
        for unit in data.units:
            reader.read(unit)
            time.sleep(0.002)
    finally:
        reader.close()
    assert stats.max_prefetch_depth == 2  # the first two are asked before any size is known; then one
    assert stats.prefetch_depth == 1


def test_an_object_gone_after_opening_is_one_error_naming_it(s3, bucket_data, tmp_path):
    local_dir, _, _ = bucket_data
    bucket = f"streamgd-gone-{os.getpid()}"
    s3.upload_dir(local_dir, bucket, "train")
    data = open_dataset(f"s3://{bucket}/train", target="y")
    s3.client().delete_object(Bucket=bucket, Key="train/part-1.parquet")
    with pytest.raises(DataError, match=r"cannot read row group 0 of .*part-1\.parquet"):
        one_pass(data)


def test_fit_history_file_reports_requests_per_row_group(bucket_data, tmp_path):
    history = tmp_path / "history.json"
    result = CliRunner().invoke(main, ["fit", bucket_data[1], "--target", "y", "--epochs", "1",
                                       "--out", str(tmp_path / "m.safetensors"), "--history", str(history)])
    assert result.exit_code == 0, result.output
    reads = json.loads(history.read_text())[0]["remote_reads"]
    assert reads["requests_per_row_group"] == 1.0 and reads["row_groups"] == N_FILES * GROUPS


def test_column_chunk_ranges_cover_the_row_group_span(bucket_data):
    path = os.path.join(bucket_data[0], "part-0.parquet")
    footer = pq.ParquetFile(path).metadata
    group = footer.row_group(1)
    merged = coalesce(column_chunk_ranges(group, range(footer.num_columns)), hole=0)
    start, stop = _row_group_span(group, os.path.getsize(path))
    assert merged == [(start, stop - start)]


def test_a_footer_missing_from_the_cache_is_read_once_and_counted(bucket_data):
    data = open_dataset(bucket_data[1], target="y")
    data.footers._footers.clear()
    stats = ReadStats()
    remote = RemoteRowGroups(data.sources, data.filesystem, data.footers, lambda source: data.columns,
                             stats=stats)
    try:
        for _ in range(2):
            remote.read_row_group(0, 0, data.columns)
    finally:
        remote.close()
    assert stats.footer_requests >= 1 and stats.requests == 2 and data.footers.get(0) is not None


def test_a_fit_under_a_memory_budget_reads_each_footer_once(s3, bucket_data):
    local_dir, uri, _ = bucket_data
    sizes = {f"part-{k}.parquet": os.path.getsize(os.path.join(local_dir, f"part-{k}.parquet"))
             for k in range(N_FILES)}
    s3.proxy.clear()
    model = streamgd.fit(uri, target="y", epochs=2, memory_budget="64MB")  # opens the data twice (units sized)
    tails = [r for r in s3.proxy.requests if r.method == "GET" and r.range
             and r.range.endswith(f"-{sizes[r.path.rsplit('/', 1)[1]] - 1}")]
    assert len(tails) == N_FILES  # a footer is the file's tail; row groups never reach it
    assert sum(e["remote_reads"]["footer_requests"] for e in model.history) == 0


def test_epochs_from_the_epoch_cache_ask_the_bucket_for_nothing(bucket_data, tmp_path):
    local_dir, uri, _ = bucket_data
    local = streamgd.fit(local_dir, target="y", epochs=3, cache=str(tmp_path / "local-cache"))
    model = streamgd.fit(uri, target="y", epochs=3, cache=str(tmp_path / "cache"))
    assert np.array_equal(model.coef_, local.coef_)
    first, *later = [e["remote_reads"] for e in model.history]
    assert first["requests"] == N_FILES * GROUPS
    assert [e["requests"] for e in later] == [0, 0] and [e["row_groups"] for e in later] == [0, 0]


def test_a_memory_budget_keeps_a_quarter_for_remote_row_groups_fetched_ahead(bucket_data):
    from streamgd.data.memory_plan import plan_for_dataset
    local_dir, uri, _ = bucket_data
    data, local = open_dataset(uri, target="y"), open_dataset(local_dir, target="y")
    remote, on_disk = plan_for_dataset(64_000_000, data, 4, 2), plan_for_dataset(64_000_000, local, 4, 2)
    assert remote.fetch_ahead == 16_000_000 and on_disk.fetch_ahead == 0
    assert remote.max_unit_rows == int(48_000_000 // remote.bytes_per_row)
    assert "fetched ahead" in remote.describe()


def test_is_remote_means_the_same_for_a_path_a_location_and_a_filesystem(tmp_path):
    """One ``is_remote`` for every caller: a path, its resolved Location and that Location's filesystem agree."""
    import pyarrow.fs as pafs

    from streamgd.io.storage import is_remote, resolve

    local = resolve(str(tmp_path))
    remote = resolve("s3://bucket/data/", {"endpoint_override": "http://127.0.0.1:9", "retries": "1"})
    assert [is_remote(w) for w in (str(tmp_path), tmp_path, "file:///x.parquet", local, local.filesystem,
                                   pafs.LocalFileSystem())] == [False] * 6
    assert [is_remote(w) for w in ("s3://bucket/data/", remote, remote.filesystem)] == [True] * 3
