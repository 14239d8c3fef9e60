"""Training on a dask.distributed LocalCluster (two worker processes, loopback): full batch equals one process,
local SGD reaches the exact solution, a worker dying mid-round changes nothing, shards are disjoint and complete."""

from __future__ import annotations

import os

import numpy as np
import pytest

import streamgd
from problems import ridge_exact, ridge_objective, write_xy
from streamgd.data.dataset import Unit
from streamgd.distributed import fit_distributed
from streamgd.data.shuffle import make_plan
from conftest import reported_lines

ALPHA = 1e-3
LOCAL_SGD = dict(model="linear", batch_size=32, epochs=30, lr=0.05, lr_decay=0.01, lr_power=1.0, dtype="float64",
                 alpha=ALPHA, standardize=False)


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
    from streamgd.training.checkpoint import list_checkpoints, read_checkpoint

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


# ---- everything one process supports, on dask ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A binary table with 2 text columns, 5% missing numbers and a weight column; a test set from its model."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from streamgd.bench.synthetic import make_dataset

    folder = tmp_path_factory.mktemp("mixed")
    train, test = str(folder / "train.parquet"), str(folder / "test.parquet")
    make_dataset(train, n_rows=24_000, n_features=4, row_group_size=4000, nan_fraction=0.05, n_categorical=2, seed=0)
    make_dataset(test, n_rows=8000, n_features=4, row_group_size=4000, nan_fraction=0.05, n_categorical=2, seed=1,
                 model_seed=0)
    table = pq.read_table(train)
    weights = np.random.default_rng(3).uniform(0.5, 2.0, table.num_rows)
    pq.write_table(table.append_column("w", pa.array(weights)), train, row_group_size=4000)
    return train, test


MIXED = dict(model="logistic", batch_size=64, epochs=8, lr=0.1, categorical=["c0", "c1"], missing="impute",
             validation=0.2, early_stopping=2,
             sample_weight="w", memory_budget="1.3MB", seed=4,  # units of 2,633 rows: row groups read in slices
             interactions="none")  # a search would leave room in the budget for the pairs it may add


def test_categorical_missing_validation_early_stopping_and_weights_on_dask_match_one_process(client, mixed):
    from streamgd.models.evaluate import evaluate

    train, test = mixed
    on_dask = fit_distributed(train, target="y", client=client, round_chunks=2, **MIXED)
    single = streamgd.fit(train, target="y", **MIXED)
    assert on_dask.feature_names == single.feature_names  # the same FeatureSpec: c0=..., x0__missing, ...
    assert any(name.startswith("c0=") for name in on_dask.feature_names)
    assert any(name.endswith("__missing") for name in on_dask.feature_names)
    assert on_dask.summary["validation_rows"] == single.summary["validation_rows"] > 0
    assert all("validation_loss" in epoch for epoch in on_dask.history)
    assert "best_epoch" in on_dask.summary  # early stopping kept its best epoch
    # the memory budget cut each 4,000-row group into 2 units: 10 train on 2 workers, 3 rounds of 2 (not 2 rounds)
    assert on_dask.history[0]["rows"] == single.history[0]["rows"] == 20_000
    assert on_dask.history[0]["rounds"] == 3
    dask_loss, single_loss = (evaluate(m, test)["metrics"]["log_loss"] for m in (on_dask, single))
    assert abs(dask_loss - single_loss) / single_loss < 0.02
    import pyarrow.parquet as pq

    rate = pq.read_table(test, columns=["y"]).column("y").to_numpy().mean()
    constant = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))  # the best constant's log loss
    assert dask_loss < 0.8 * constant  # measured: dask 0.50219, one process 0.50160, the constant 0.63732


@pytest.fixture(scope="module")
def bad_row(tmp_path_factory):
    X = np.random.default_rng(5).standard_normal((6000, 3))
    X[5123, 1] = np.nan  # in the second half of the rows: the second worker's shard
    return write_xy(tmp_path_factory.mktemp("bad") / "bad.parquet", X, X @ [1.0, 2.0, 3.0], 1000)


def test_bad_value_in_a_worker_shard_is_the_one_process_error(client, bad_row):
    from streamgd.errors import DataError

    options = dict(model="linear", batch_size=32, epochs=1)
    with pytest.raises(DataError) as single:
        streamgd.fit(bad_row, target="y", **options)
    with pytest.raises(DataError) as on_dask:
        fit_distributed(bad_row, target="y", client=client, **options)
    assert str(on_dask.value) == str(single.value)
    assert "the feature column 'x1' is missing (null or NaN) at file " in str(on_dask.value)
    assert "row group 5, row 123;" in str(on_dask.value)


def test_bad_value_on_dask_is_one_line_and_exit_2_at_the_cli(client, bad_row, capsys):
    from streamgd.cli.main import invoke

    status = invoke(["fit", bad_row, "--target", "y", "--model", "linear", "--epochs", "1", "--quiet",
                     "--dask", client.scheduler.address])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("error: the feature column 'x1' is missing (null or NaN) at file ")


def test_bad_value_with_workers_2_is_one_line_and_exit_2_from_the_console_script(bad_row, tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "streamgd.cli.main", "fit", bad_row, "--target", "y", "--model", "linear",
                           "--epochs", "1", "--workers", "2"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 2
    assert reported_lines(done.stderr) == [
        f"error: the feature column 'x1' is missing (null or NaN) at file {bad_row}, row group 5, row 123; "
        "clean the data, or "
        "train with --missing drop-rows or --missing impute"]


def test_init_on_dask_continues_a_model_as_one_process_does(client, regression, tmp_path):
    path = regression[0]
    options = dict(model="linear", batch_size="full", lr=0.5, schedule="constant", dtype="float64", alpha=ALPHA)
    streamgd.fit(path, target="y", epochs=2, **options).save(tmp_path / "two.safetensors")
    continued = fit_distributed(path, target="y", client=client, epochs=1, init=str(tmp_path / "two.safetensors"),
                                **options)
    straight = streamgd.fit(path, target="y", epochs=3, **options)
    assert continued.summary["continued_from_epoch"] == 2 and len(continued.history) == 3
    np.testing.assert_allclose(continued.coef_, straight.coef_, rtol=1e-9)  # full batch: up to summation order
    np.testing.assert_allclose(continued.intercept_, straight.intercept_, rtol=1e-9)


def test_workers_cache_their_shards_and_their_counters_reach_the_history(client, regression, tmp_path):
    """Each worker writes its shard's units to the cache directory on its own disk in the first epoch and reads
    them in the second; the model is the one without the cache, bit for bit."""
    options = dict(LOCAL_SGD, epochs=2)
    plain = fit_distributed(regression[0], target="y", client=client, round_chunks=2, **options)
    cached = fit_distributed(regression[0], target="y", client=client, round_chunks=2, cache=str(tmp_path / "c"),
                             **options)
    units = len(streamgd.open_dataset(regression[0], target="y").units)
    first, second = (e["cache"] for e in cached.history)
    assert (first["hits"], first["misses"], first["written"]) == (0, units, units)
    assert (second["hits"], second["misses"]) == (units, 0)
    assert len([n for n in os.listdir(tmp_path / "c" / "units") if n.endswith(".bin")]) == units
    assert np.array_equal(plain.coef_, cached.coef_) and np.array_equal(plain.intercept_, cached.intercept_)


def test_the_worker_count_is_asked_of_the_scheduler_not_read_from_the_clients_cached_identity(client, monkeypatch):
    """The client's periodic refresh (every 2 s) caches an identity that lists no workers; ``scheduler_info()``
    racing it once counted zero shards, and every shard's class scan came back empty (a CI failure)."""
    from streamgd.distributed import DaskEpochs, worker_count

    refreshed = client.sync(client.scheduler.identity, n_workers=0)  # what the periodic refresh caches
    assert refreshed["n_workers"] == 2 and refreshed["workers"] == {}
    monkeypatch.setattr(client, "scheduler_info", lambda *args, **kwargs: refreshed)
    assert worker_count(client) == 2
    assert DaskEpochs(client, round_chunks=2).n_shards == 2


def test_a_cluster_without_workers_is_a_one_line_error(regression):
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster, Client(cluster) as empty:
        with pytest.raises(streamgd.errors.ConfigError, match="^the dask cluster has no workers"):
            fit_distributed(regression[0], target="y", client=empty, **LOCAL_SGD)
