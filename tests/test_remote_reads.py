"""Reading Parquet from an object store: a local S3 server (moto, behind a proxy that logs and can delay each
request; tests/s3_latency.py), the same results as from local files, and the requests it takes."""

from __future__ import annotations

import json
import math
import os
import threading

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
from streamgd.data import remote_reads
from streamgd.data.remote_reads import MAX_FETCH_DEPTH, ReadStats, RemoteRowGroups, coalesce, column_chunk_ranges
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


class VirtualClock:
    """Time as the remote reader measures it (its module's ``time.perf_counter``), advanced by the test, never by
    sleeping: each thread has its own. The reading thread's advances by the work the test says it did on each row
    group; a fetching thread's by the store's latency at each request (``SlowStore``). So the fetch time and the
    consume time the reader measures are exactly what the test set, however busy the machine is."""

    def __init__(self):
        self._local = threading.local()

    def perf_counter(self) -> float:
        return getattr(self._local, "now", 0.0)

    def advance(self, seconds: float) -> None:
        self._local.now = self.perf_counter() + seconds


class SlowStore:
    """A dataset's open remote files (``Dataset.open_files``) whose every ranged read costs ``latency`` on the
    calling thread's virtual clock, and is logged: what the store was asked, in the order it was asked."""

    def __init__(self, inner, clock: VirtualClock, latency: float):
        self.inner, self.clock, self.latency = inner, clock, latency
        self.asked: list[tuple[str, int]] = []
        self._changed = threading.Condition()

    def open(self, path, filesystem, stats=None):
        store, native = self, self.inner.open(path, filesystem, stats)

        class SlowFile:
            def size(self) -> int:
                return native.size()

            def read_at(self, length: int, offset: int):
                store.clock.advance(store.latency)
                data = native.read_at(length, offset)
                with store._changed:
                    store.asked.append((path, offset))
                    store._changed.notify_all()
                return data
        return SlowFile()

    def wait_until_asked(self, count: int) -> int:
        """Wait (on the store's own notifications, 30 s at most) until ``count`` requests arrived; how many did."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.asked) >= count, timeout=30)
            return len(self.asked)


@pytest.fixture(scope="module")
def many_row_groups(s3, tmp_path_factory):
    """One file of 24 row groups of 40 rows in a bucket: room for a fetch depth of 16."""
    directory = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(4)
    X = rng.standard_normal((24 * 40, 3))
    pq.write_table(pa.table({"x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "y": (X[:, 0] > 0).astype(np.int64)}),
                   directory / "part-0.parquet", row_group_size=40)
    bucket = f"streamgd-depth-{os.getpid()}"
    s3.upload_dir(str(directory), bucket, "train")
    return f"s3://{bucket}/train"


def paced_pass(uri: str, latency: float, work: float, monkeypatch, fetch_bytes: int | None = None):
    """One pass of a reader over every row group, announced in order, against a store that answers each request
    in ``latency`` seconds, the reader working ``work`` seconds on each row group (both on a virtual clock).
    Returns the pass's ReadStats and, after each row group read, how many row groups ahead of the reader the store
    had been asked for (waited for through the store's log, which must reach the depth the reader set)."""
    data = open_dataset(uri, target="y")
    clock = VirtualClock()
    monkeypatch.setattr(remote_reads, "time", clock)
    store = SlowStore(data.open_files, clock, latency)
    monkeypatch.setattr(data, "open_files", store)
    stats = ReadStats()
    reader = UnitTableReader(data, data.columns, read_ahead=data.units, read_stats=stats, fetch_bytes=fetch_bytes)
    ahead = []
    try:
        for k, unit in enumerate(data.units):
            reader.read(unit)
            wanted = min(len(data.units), k + 1 + stats.prefetch_depth)  # the row groups fetched or in flight
            asked = store.wait_until_asked(wanted)
            assert asked == wanted, (k, asked, wanted, stats.prefetch_depth)
            ahead.append(asked - (k + 1))
            clock.advance(work)
    finally:
        reader.close()
    assert len(store.asked) == len(set(store.asked)) == len(data.units)  # each row group asked once, in one range
    return stats, ahead


@pytest.mark.parametrize("latency, work, depth", [
    (0.150, 0.005, 16),  # Little's law wants ceil(0.150 / 0.005) + 1 = 31: capped by MAX_FETCH_DEPTH
    (0.100, 0.030, 5),  # ceil(3.33) + 1
    (0.010, 0.200, 2),  # the store answers long before the reader is done: one ahead, plus one
])
def test_fetch_depth_follows_little_law_on_the_latency_and_the_work_per_row_group(many_row_groups, monkeypatch,
                                                                                   latency, work, depth):
    """The depth the reader sets from the second row group on, and the row groups the store was asked for ahead
    of the reader, both equal ceil(fetch time / consume time) + 1 (two ahead before any consume time is known)."""
    stats, ahead = paced_pass(many_row_groups, latency, work, monkeypatch)
    assert depth == min(MAX_FETCH_DEPTH, math.ceil(latency / work) + 1)
    assert stats.prefetch_depth == depth and stats.max_prefetch_depth == max(depth, 2)
    assert ahead[0] == 2 and ahead[1: 24 - depth] == [depth] * (23 - depth)
    assert ahead[24 - depth:] == list(range(depth - 1, -1, -1))  # the end of the order: fewer left to fetch


def test_fetched_bytes_stay_within_the_budget(many_row_groups, monkeypatch):
    """A budget of 1 byte: Little's law wants 16 ahead, the budget allows one row group (always allowed) after the
    first two, asked before any size was known."""
    stats, ahead = paced_pass(many_row_groups, 0.150, 0.005, monkeypatch, fetch_bytes=1)
    assert stats.max_prefetch_depth == 2 and stats.prefetch_depth == 1
    assert ahead[:2] == [2, 1] and ahead[2:] == [1] * 21 + [0]


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
