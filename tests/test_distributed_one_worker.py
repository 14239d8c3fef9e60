"""dask with one worker is one process: the same epoch driver, the same chunks in the same order, so the same
model. Measured: mini-batch rounds are bit-identical (a round's average over one worker is its own state, times
1.0); full batch is bit-identical to one process that reads in file order (the workers sum their shard in file
order) and equal to 1e-12 to one whose shuffled plan sums in another order. Standardized runs differ in the last
bit of the mean and scale (the statistics pass merges per-shard sums), hence in the last bits of the model."""

from __future__ import annotations

import numpy as np
import pytest

import streamgd
from conftest import local_client
from problems import write_xy
from streamgd.distributed import fit_distributed

COMMON = dict(model="logistic", epochs=3, dtype="float64", alpha=1e-3, seed=5, standardize=False)


@pytest.fixture(scope="module")
def one_worker():
    yield from local_client(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(21)
    X = rng.standard_normal((5000, 4)) * [1.0, 3.0, 0.5, 2.0]
    y = (X @ np.array([1.0, -0.5, 2.0, 0.3]) + 0.5 * rng.standard_normal(5000) > 0).astype(np.int64)
    return write_xy(tmp_path_factory.mktemp("one") / "d.parquet", X, y, 400)  # 13 row groups, the last short


@pytest.mark.parametrize("settings", [
    pytest.param(dict(batch_size=32, shuffle="buffer:2"), id="sgd-buffer-shuffle"),
    pytest.param(dict(batch_size=100, optimizer="adam", penalty="elasticnet", validation=0.2), id="adam-validation"),
])
def test_mini_batch_on_one_worker_is_one_process_bit_for_bit(one_worker, data, settings):
    options = dict(COMMON, **settings)
    on_dask = fit_distributed(data, target="y", client=one_worker, round_chunks=3, **options)
    single = streamgd.fit(data, target="y", **options)
    assert on_dask.summary["workers"] == 1
    np.testing.assert_array_equal(on_dask.coef_, single.coef_)
    np.testing.assert_array_equal(on_dask.intercept_, single.intercept_)
    np.testing.assert_array_equal(on_dask.optimizer_state, single.optimizer_state)
    for mine, theirs in zip(on_dask.history, single.history, strict=True):
        assert mine["rows"] == theirs["rows"] and mine["steps"] == theirs["steps"]
        assert mine["validation_loss" if "validation_loss" in theirs else "loss"] == pytest.approx(
            theirs.get("validation_loss", theirs["loss"]), rel=1e-12)


def test_full_batch_on_one_worker_is_one_process_in_file_order_bit_for_bit(one_worker, data):
    options = dict(COMMON, batch_size="full", lr=0.5, schedule="constant", epochs=20)
    in_file_order = fit_distributed(data, target="y", client=one_worker, **dict(options, shuffle="none"))
    unshuffled = streamgd.fit(data, target="y", **dict(options, shuffle="none"))
    np.testing.assert_array_equal(in_file_order.coef_, unshuffled.coef_)
    np.testing.assert_array_equal(in_file_order.intercept_, unshuffled.intercept_)
    shuffled = streamgd.fit(data, target="y", **options)  # its plan sums the chunks in another order
    np.testing.assert_allclose(fit_distributed(data, target="y", client=one_worker, **options).coef_,
                               shuffled.coef_, rtol=1e-12, atol=0)


def test_standardized_on_one_worker_is_one_process_up_to_the_statistics_last_bits(one_worker, data):
    options = dict(COMMON, batch_size=32, standardize=True)
    on_dask = fit_distributed(data, target="y", client=one_worker, round_chunks=3, **options)
    single = streamgd.fit(data, target="y", **options)
    for part in ("mean", "scale"):
        np.testing.assert_allclose(on_dask.summary["feature_transform"][part],
                                   single.summary["feature_transform"][part], rtol=1e-14, atol=1e-17)
    np.testing.assert_allclose(on_dask.coef_, single.coef_, rtol=1e-12, atol=0)
    np.testing.assert_allclose(on_dask.intercept_, single.intercept_, rtol=1e-12, atol=0)
