"""Training core: convergence to exact solutions for full batch, SGD and mini-batch; determinism; one kernel
call per chunk; bad data and divergence."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamgd
from problems import logistic_exact, logistic_objective, ridge_exact, ridge_objective, write_xy
from streamgd import DataError, DivergenceError, Trainer
from streamgd.kernels import api as KERNELS  # the module whose functions the training core calls per chunk


ALPHA = 1e-3
RUNS = {
    "full-batch": dict(batch_size="full", epochs=300, lr=1.0, schedule="constant"),
    "mini-batch": dict(batch_size=32, epochs=60, lr=0.05, schedule="invscaling", lr_decay=0.01, lr_power=1.0),
    "sgd": dict(batch_size=1, epochs=40, lr=0.02, schedule="invscaling", lr_decay=0.002, lr_power=1.0),
}


@pytest.mark.parametrize("method", list(RUNS))
def test_linear_regression_reaches_the_closed_form_solution(regression, method):
    path, X, y = regression
    model = streamgd.fit(path, target="y", model="linear", alpha=ALPHA, dtype="float64", seed=1,
                         standardize=False, **RUNS[method])
    coef_star, b_star = ridge_exact(X, y, ALPHA)
    best = ridge_objective(X, y, coef_star, b_star, ALPHA)
    got = ridge_objective(X, y, model.coef_[0], model.intercept_[0], ALPHA)
    assert (got - best) / best < 1e-4, (method, got, best)


LOGISTIC_RUNS = {
    "full-batch": dict(batch_size="full", epochs=400, lr=4.0, schedule="constant"),
    "mini-batch": dict(batch_size=32, epochs=60, lr=0.2, schedule="invscaling", lr_decay=0.01, lr_power=1.0),
    "sgd": dict(batch_size=1, epochs=40, lr=0.1, schedule="invscaling", lr_decay=0.002, lr_power=1.0),
}


@pytest.mark.parametrize("method", list(LOGISTIC_RUNS))
def test_logistic_regression_reaches_lbfgs_objective(classification, method):
    path, X, y = classification
    best = logistic_objective(X, y, *logistic_exact(X, y, ALPHA), ALPHA)
    model = streamgd.fit(path, target="y", model="logistic", alpha=ALPHA, dtype="float64", seed=2, standardize=False,
                         **LOGISTIC_RUNS[method])
    got = logistic_objective(X, y, model.coef_[0], model.intercept_[0], ALPHA)
    assert (got - best) / best < 1e-4, (method, got, best)


def test_same_seed_gives_bit_identical_weights_and_other_seeds_differ(classification):
    path = classification[0]
    options = dict(target="y", model="logistic", batch_size=16, epochs=2)
    a = streamgd.fit(path, seed=5, **options)
    b = streamgd.fit(path, seed=5, **options)
    c = streamgd.fit(path, seed=6, **options)
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


@pytest.mark.parametrize("batch_size", [1, 7, 1024, "full"])
def test_one_kernel_call_per_chunk_whatever_the_batch_size(classification, batch_size, monkeypatch):
    """A spy on the compiled kernels' entry points the training core calls: each chunk (a row group here) goes
    through one call, with all its rows, whatever the batch size; full batch steps once per epoch."""
    calls = []

    def spy(name):
        real = getattr(KERNELS, name)

        def counted(*args, **kwargs):
            calls.append((name, None if name == "full_batch_step" else args[0].shape[0]))
            return real(*args, **kwargs)
        return counted

    for name in ("train_chunk", "accumulate_chunk", "full_batch_step"):
        monkeypatch.setattr(KERNELS, name, spy(name))
    path = classification[0]
    trainer = Trainer(model="logistic", batch_size=batch_size, epochs=3)
    trainer.fit(path, target="y")
    unit_rows = sorted(unit.n_rows for unit in trainer.dataset.units)
    assert len(unit_rows) == 6 and sum(unit_rows) == 3000
    chunk_kernel = "accumulate_chunk" if batch_size == "full" else "train_chunk"
    assert sorted(rows for name, rows in calls if name == chunk_kernel) == sorted(3 * unit_rows)
    steps = [name for name, _ in calls if name == "full_batch_step"]
    assert len(calls) == 3 * len(unit_rows) + len(steps) and len(steps) == (3 if batch_size == "full" else 0)


def test_history_records_every_epoch(classification):
    model = streamgd.fit(classification[0], target="y", epochs=3, batch_size=64)
    assert [e["epoch"] for e in model.history] == [1, 2, 3]
    for record in model.history:
        assert record["rows"] == 3000
        assert record["rows_per_s"] > 0 and record["peak_rss_mb"] > 10
        assert -1 <= record["shuffle_quality"]["rank_correlation"] <= 1
    assert model.history[-1]["loss"] < model.history[0]["loss"] < np.log(2)


def test_nan_feature_is_reported_with_column_and_row_group(tmp_path):
    X = np.ones((300, 3))
    X[250, 1] = np.nan
    path = write_xy(tmp_path / "nan.parquet", X, np.arange(300.0), 100)
    with pytest.raises(DataError, match=r"'x1'.*row group 2, row 50"):
        streamgd.fit(path, target="y", model="linear", shuffle="none")


def test_null_target_is_never_trained_on(tmp_path):
    y = pa.array([1.0, None, 2.0] * 50)
    pq.write_table(pa.table({"a": np.ones(150), "y": y}), tmp_path / "t.parquet")
    with pytest.raises(DataError, match="target column 'y' is missing"):
        streamgd.fit(tmp_path / "t.parquet", target="y", model="linear", shuffle="none")


def test_huge_learning_rate_raises_divergence_with_advice(regression):
    with pytest.raises(DivergenceError, match="lower the learning rate"):
        streamgd.fit(regression[0], target="y", model="linear", lr=1e6, schedule="constant", batch_size=1, epochs=1)


def test_logistic_needs_two_classes(tmp_path):
    path = write_xy(tmp_path / "one.parquet", np.ones((10, 2)), np.ones(10, dtype=np.int64), 5)
    with pytest.raises(DataError, match="single class"):
        streamgd.fit(path, target="y", model="logistic")


def test_string_labels_are_mapped_and_returned(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 2))
    labels = np.where(X[:, 0] > 0, "spam", "ham")
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "label": labels}), tmp_path / "s.parquet")
    model = streamgd.fit(tmp_path / "s.parquet", target="label", epochs=20, lr=0.5, batch_size=16)
    assert model.classes_ == ["ham", "spam"]
    assert (model.predict(X) == labels).mean() > 0.97


@pytest.mark.parametrize("bad, message", [
    (dict(batch_size=0), "batch_size"), (dict(batch_size="most"), "batch_size"), (dict(epochs=0), "epochs"),
    (dict(lr=-1.0), "lr"), (dict(model="forest"), "model"),
    (dict(shuffle="buffer:x"), "shuffle='buffer:x' is not accepted"),
    (dict(penalty="l3"), "penalty"), (dict(memory_budget="lots"), "memory budget"), (dict(dtype="int8"), "dtype"),
])
def test_bad_parameters_name_themselves(bad, message):
    with pytest.raises(streamgd.ConfigError, match=message):
        Trainer(**bad)


def test_standardization_converges_on_ill_scaled_features_where_raw_sgd_diverges(tmp_path):
    rng = np.random.default_rng(5)
    scales = np.array([1e-3, 1.0, 1e3])
    Z = rng.standard_normal((2000, 3))
    X = Z * scales + np.array([5.0, -2.0, 1e3])
    y = Z @ np.array([1.0, -1.0, 0.5]) + 0.1 * rng.standard_normal(2000)
    path = write_xy(tmp_path / "scaled.parquet", X, y, 500)
    with pytest.raises(DivergenceError):
        streamgd.fit(path, target="y", model="linear", standardize=False, batch_size=8, epochs=2, lr=0.05)
    model = streamgd.fit(path, target="y", model="linear", batch_size=8, epochs=10, lr=0.05, alpha=0.0,
                         dtype="float64")
    residual = model.predict(X) - y
    assert np.sqrt(np.mean(residual ** 2)) < 0.12  # the noise level is 0.1
    assert model.summary["feature_transform"]["kind"] == "standardize"
