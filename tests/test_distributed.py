"""Training on a dask.distributed LocalCluster (two worker processes, loopback): full batch equals one process,
local SGD reaches the exact solution, a worker dying mid-round changes nothing, shards are disjoint and complete."""

from __future__ import annotations

import os

import numpy as np
import pytest

import streamgd
from problems import ridge_exact, ridge_objective, write_xy
from streamgd.dataset import Unit
from streamgd.distributed import fit_distributed
from streamgd.schedule import make_plan

ALPHA = 1e-3
LOCAL_SGD = dict(model="linear", batch_size=32, epochs=30, lr=0.05, lr_decay=0.01, lr_power=1.0, dtype="float64",
                 alpha=ALPHA, standardize=False)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       host="127.0.0.1")
    with distributed.Client(cluster) as connected:
        yield connected
    cluster.close()


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((6000, 5))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.7 + 0.5 * rng.standard_normal(6000)
    return write_xy(tmp_path_factory.mktemp("dist") / "r.parquet", X, y, 300), X, y


def test_full_batch_on_two_workers_equals_one_process(client, regression):
    path = regression[0]
    options = dict(model="linear", batch_size="full", epochs=50, lr=0.5, schedule="constant", dtype="float64",
                   alpha=ALPHA)
    distributed = fit_distributed(path, target="y", client=client, **options)
    single = streamgd.fit(path, target="y", **options)
    assert distributed.summary["workers"] == 2
    np.testing.assert_allclose(distributed.coef_, single.coef_, rtol=1e-6)
    np.testing.assert_allclose(distributed.intercept_, single.intercept_, rtol=1e-6)


@pytest.fixture(scope="module")
def local_sgd(client, regression):
    return fit_distributed(regression[0], target="y", client=client, round_chunks=2, **LOCAL_SGD)


def test_local_sgd_reaches_the_exact_solution(local_sgd, regression):
    _, X, y = regression
    best = ridge_objective(X, y, *ridge_exact(X, y, ALPHA), ALPHA)
    got = ridge_objective(X, y, local_sgd.coef_[0], local_sgd.intercept_[0], ALPHA)
    assert (got - best) / best < 1e-3
    assert local_sgd.history[0]["rows"] == 6000 and local_sgd.history[0]["rounds"] == 5


def test_a_worker_dying_mid_round_changes_nothing(client, regression, local_sgd, tmp_path):
    marker = str(tmp_path / "crashed")
    # (builtins travel to the workers by reference; a function of this test module could not be imported there)
    client.run(exec, f"import os; os.environ['STREAMGD_TEST_CRASH_ONCE'] = {marker!r}")
    try:
        faulty = fit_distributed(regression[0], target="y", client=client, round_chunks=2, **LOCAL_SGD)
    finally:
        client.run(exec, "import os; os.environ.pop('STREAMGD_TEST_CRASH_ONCE', None)")
    assert os.path.exists(marker)  # a task did kill its worker process
    np.testing.assert_array_equal(faulty.coef_, local_sgd.coef_)  # its rerun gave the same round
    np.testing.assert_array_equal(faulty.intercept_, local_sgd.intercept_)
    assert [e["rows"] for e in faulty.history] == [6000] * LOCAL_SGD["epochs"]


@pytest.mark.parametrize("n_shards", range(1, 9))
def test_shards_of_a_plan_are_disjoint_and_complete(n_shards):
    units = [Unit(0, g, 0, 100 + 7 * g, 0) for g in range(23)]
    for mode in ("none", "row-groups", "buffer:3"):
        shards = [make_plan(units, mode, seed=5, epoch=2, shard=k, n_shards=n_shards).units for k in range(n_shards)]
        assert sorted(u.row_group for s in shards for u in s) == list(range(23))


def test_predictions_on_the_cluster_are_one_part_per_worker_in_input_order(client, local_sgd, regression, tmp_path):
    from streamgd.distributed import predict_distributed

    path, X, _ = regression
    rows = predict_distributed(local_sgd, path, tmp_path / "pred", client=client)
    parts = sorted(os.listdir(tmp_path / "pred"))
    assert rows == streamgd.PredictionCounts(rows=6000, unscored=0)
    assert parts == ["part-00000.parquet", "part-00001.parquet"]
    import pyarrow.parquet as pq

    predicted = np.concatenate([pq.read_table(tmp_path / "pred" / p).column("prediction").to_numpy() for p in parts])
    np.testing.assert_allclose(predicted, local_sgd.predict(X), rtol=1e-12)


def test_a_lost_client_resumes_from_its_last_checkpoint(client, regression, local_sgd, tmp_path):
    from streamgd.checkpoint import list_checkpoints, read_checkpoint

    directory = str(tmp_path / "ck")
    options = dict(LOCAL_SGD, checkpoint_dir=directory, checkpoint_every=2, keep_checkpoints=1000)
    checkpointed = fit_distributed(regression[0], target="y", client=client, round_chunks=2, **options)
    np.testing.assert_array_equal(checkpointed.coef_, local_sgd.coef_)  # checkpointing changes nothing
    written = list_checkpoints(directory)
    for later in written[7:]:  # the client died after its seventh checkpoint
        os.unlink(later)
    cursor = read_checkpoint(written[6]).cursor
    assert 0 < cursor["next_chunk"] and not cursor["finished"]  # mid-epoch
    resumed = fit_distributed(regression[0], target="y", client=client, round_chunks=2, resume=True, **options)
    assert resumed.summary["resumed_from"] == read_checkpoint(written[6]).serial
    np.testing.assert_array_equal(resumed.coef_, local_sgd.coef_)
    np.testing.assert_array_equal(resumed.intercept_, local_sgd.intercept_)
