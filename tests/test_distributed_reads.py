"""A dask run's history carries the same read figures as one process's: the remote reads (requests, row groups,
bytes) summed over the workers' tasks, from a local S3 server (moto, loopback; tests/s3_latency.py), and the
epoch cache's counters."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamgd
from streamgd.distributed import fit_distributed

pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (the test extra)")
from conftest import set_environment
from s3_latency import LocalS3  # noqa: E402

N_FILES, GROUPS, GROUP_ROWS = 2, 3, 400
SETTINGS = dict(model="logistic", batch_size=64, epochs=2, seed=1, dtype="float64")



@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """2 files x 3 row groups x 400 rows in a bucket of a local S3 server, this process and the workers pointed
    at it."""
    directory = tmp_path_factory.mktemp("reads")
    rng = np.random.default_rng(8)
    for k in range(N_FILES):
        X = rng.standard_normal((GROUPS * GROUP_ROWS, 3))
        y = (X @ [1.0, -1.0, 0.5] > 0).astype(np.int64)
        pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}),
                       directory / f"part-{k}.parquet", row_group_size=GROUP_ROWS)
    with LocalS3() as server, server.environment():
        name = f"streamgd-dask-reads-{os.getpid()}"
        server.upload_dir(str(directory), name, "train")
        yield server, f"s3://{name}/train"


def tasks_per_epoch(batch_size) -> int:
    """The tasks of an epoch on the two workers: one gradient task each, or one per worker and round."""
    return 2 if batch_size == "full" else 2 * -(-(N_FILES * GROUPS // 2) // 2)


@pytest.mark.parametrize("batch_size", [64, "full"])
def test_dask_history_carries_the_remote_reads_of_a_local_run(client, bucket, batch_size):
    server, uri = bucket
    previous = client.run(set_environment, server.environ())
    try:
        on_dask = fit_distributed(uri, target="y", client=client, round_chunks=2,
                                  **dict(SETTINGS, batch_size=batch_size))
    finally:
        for worker, values in previous.items():
            client.run(set_environment, values, workers=[worker])
    single = streamgd.fit(uri, target="y", **dict(SETTINGS, batch_size=batch_size))
    for mine, theirs in zip(on_dask.history, single.history, strict=True):
        reads, local = mine["remote_reads"], theirs["remote_reads"]
        assert reads.keys() == local.keys()
        assert reads["row_groups"] == local["row_groups"] == N_FILES * GROUPS  # every row group once per epoch
        assert reads["requests"] == local["requests"] == N_FILES * GROUPS  # one coalesced request each
        assert reads["requests_per_row_group"] == 1.0 and reads["read_latency_ms"] > 0
        # each worker's task opens the files it reads (this process read every footer once, when it opened the
        # data): a file opened at most once per task, its footer fetched at most once per worker process
        assert reads["footer_requests"] <= reads["files_opened"] <= N_FILES * tasks_per_epoch(batch_size)
        assert reads["bytes_read"] >= local["bytes_read"] > 0
    assert on_dask.history[0]["remote_reads"]["footer_requests"] > 0  # the workers' first reads of the footers


def test_dask_history_carries_the_cache_counters_of_a_local_run(client, tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    rng = np.random.default_rng(9)
    X = rng.standard_normal((2400, 3))
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": (X[:, 0] > 0).astype(np.int64)}),
                   directory / "d.parquet", row_group_size=GROUP_ROWS)
    settings = dict(SETTINGS, epochs=3)
    on_dask = fit_distributed(str(directory), target="y", client=client, round_chunks=2,
                              cache=str(tmp_path / "dask-cache"), **settings)
    single = streamgd.fit(str(directory), target="y", cache=str(tmp_path / "cache"), **settings)
    for mine, theirs in zip(on_dask.history, single.history, strict=True):
        assert mine["cache"]["hits"] + mine["cache"]["misses"] == 6
        assert mine["cache"].keys() == theirs["cache"].keys()
    assert on_dask.history[-1]["cache"]["hits"] == single.history[-1]["cache"]["hits"] == 6  # read from the cache
    assert "remote_reads" not in on_dask.history[-1]
