"""Softmax, SVM, Huber and Poisson models against exact solvers; class and sample weights; labels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression, PoissonRegressor
from sklearn.svm import LinearSVC

import streamgd
from problems import write_xy
from streamgd.errors import ConfigError, DataError

ALPHA = 1e-3
FULL = dict(batch_size="full", epochs=300, schedule="constant", dtype="float64", standardize=False, alpha=ALPHA)
MINI = dict(batch_size=32, epochs=60, schedule="invscaling", lr_decay=0.01, lr_power=1.0, dtype="float64",
            standardize=False, alpha=ALPHA)


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((3000, 4))
    P = np.exp(X @ rng.standard_normal((3, 4)).T)
    P /= P.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in P])
    return write_xy(tmp_path_factory.mktemp("soft") / "s.parquet", X, y, 500), X, y


def softmax_objective(X, y, coef, intercept, alpha):
    m = X @ coef.T + intercept
    m -= m.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(m).sum(axis=1)) - m[np.arange(len(y)), y]) + 0.5 * alpha * (coef ** 2).sum()


@pytest.mark.parametrize("run", [dict(FULL, lr=2.0), dict(MINI, lr=0.2)], ids=["full", "mini-batch"])
def test_softmax_reaches_multinomial_lbfgs(three_classes, run):
    path, X, y = three_classes
    reference = LogisticRegression(C=1 / (ALPHA * len(y)), tol=1e-12, max_iter=10_000).fit(X, y)
    best = softmax_objective(X, y, reference.coef_, reference.intercept_, ALPHA)
    model = streamgd.fit(path, target="y", model="softmax", **run)
    assert model.coef_.shape == (3, 4)
    gap = (softmax_objective(X, y, model.coef_, model.intercept_, ALPHA) - best) / best
    assert gap < 1e-4


def test_softmax_predicts_string_labels_and_probabilities(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((900, 2))
    labels = np.array(["cat", "dog", "eel"])[np.argmax(X @ [[2, -1, 0], [0, 2, -2]], axis=1)]
    path = tmp_path / "l.parquet"
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "animal": labels}), path, row_group_size=300)
    model = streamgd.fit(str(path), target="animal", model="softmax", epochs=20)
    assert model.classes_ == ["cat", "dog", "eel"]
    assert (model.predict(X) == labels).mean() > 0.95
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    model.save(tmp_path / "m.safetensors")
    streamgd.predict_to_parquet(streamgd.load(tmp_path / "m.safetensors"), str(path), str(tmp_path / "p.parquet"))
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column_names == ["prediction", "proba_cat", "proba_dog", "proba_eel"]
    np.testing.assert_allclose(table.column("proba_dog").to_numpy(), proba[:, 1], rtol=1e-12)


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    rng = np.random.default_rng(9)
    X = rng.standard_normal((3000, 4))
    y = rng.poisson(np.exp(X @ [0.3, -0.2, 0.1, 0.0] + 0.5))
    return write_xy(tmp_path_factory.mktemp("pois") / "p.parquet", X, y, 500), X, y


@pytest.mark.parametrize("run", [dict(FULL, lr=0.5), dict(MINI, lr=0.05)], ids=["full", "mini-batch"])
def test_poisson_reaches_scikit_learn_poisson_regressor(counts, run):
    path, X, y = counts
    objective = lambda c, b: np.mean(np.exp(X @ c + b) - y * (X @ c + b)) + 0.5 * ALPHA * c @ c  # noqa: E731
    reference = PoissonRegressor(alpha=ALPHA, tol=1e-12, max_iter=10_000).fit(X, y)
    best = objective(reference.coef_, reference.intercept_)
    model = streamgd.fit(path, target="y", model="poisson", **run)
    assert (objective(model.coef_[0], model.intercept_[0]) - best) / best < 1e-4
    np.testing.assert_allclose(model.predict(X[:5]), np.exp(X[:5] @ model.coef_[0] + model.intercept_[0]))


def test_poisson_refuses_negative_counts(tmp_path):
    path = write_xy(tmp_path / "n.parquet", np.ones((10, 1)), np.array([1, 2, -3, 0, 1, 1, 1, 1, 1, 1]), 5)
    with pytest.raises(DataError, match="holds -3.0; model 'poisson' needs counts >= 0"):
        streamgd.fit(path, target="y", model="poisson")


@pytest.mark.parametrize("run", [dict(FULL, lr=1.0, epochs=400), dict(MINI, lr=0.1)], ids=["full", "mini-batch"])
def test_huber_reaches_the_exact_minimum_of_its_objective(tmp_path, run):
    rng = np.random.default_rng(10)
    X = rng.standard_normal((3000, 4))
    y = X @ [1.0, 2.0, -1.0, 0.5] + 0.3 + 0.5 * rng.standard_normal(3000)
    y[:150] += 20 * rng.standard_normal(150)  # outliers
    path = write_xy(tmp_path / "h.parquet", X, y, 500)
    eps = 1.35

    def objective(p):
        r = np.abs(X @ p[:4] + p[4] - y)
        return np.mean(np.where(r <= eps, 0.5 * r * r, eps * (r - 0.5 * eps))) + 0.5 * ALPHA * p[:4] @ p[:4]

    best = minimize(objective, np.zeros(5), method="L-BFGS-B",
                    options=dict(ftol=1e-15, gtol=1e-12, maxiter=10_000)).fun
    model = streamgd.fit(path, target="y", model="huber", epsilon=eps, **run)
    assert (objective(np.r_[model.coef_[0], model.intercept_]) - best) / best < 1e-4


@pytest.mark.parametrize("kind", ["svm", "squared-hinge"])
def test_svm_accuracy_matches_linear_svc(tmp_path, kind):
    rng = np.random.default_rng(11)
    X = rng.standard_normal((4000, 5))
    y = (X @ [1, -1, 0.5, 2, 0] + 0.3 * rng.standard_normal(4000) > 0).astype(int)
    path = write_xy(tmp_path / "s.parquet", X, y, 500)
    reference = LinearSVC(loss="hinge" if kind == "svm" else "squared_hinge", max_iter=100_000, tol=1e-8)
    target_accuracy = reference.fit(X, y).score(X, y)
    model = streamgd.fit(path, target="y", model=kind, alpha=1e-4, batch_size=32, epochs=20, standardize=False,
                         lr=0.1, lr_decay=0.01, lr_power=1.0)
    assert abs((model.predict(X) == y).mean() - target_accuracy) <= 0.005
    assert not hasattr(model, "predict_proba")


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    rng = np.random.default_rng(12)
    X = rng.standard_normal((3000, 3))
    y = (rng.random(3000) < 1 / (1 + np.exp(-(X @ [1.0, -1.0, 0.5] - 1.5)))).astype(np.int64)
    weights = rng.uniform(0.1, 3.0, 3000)
    path = tmp_path_factory.mktemp("imb") / "i.parquet"
    pq.write_table(pa.table({"x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "w": weights, "y": y}), path,
                   row_group_size=500)
    return str(path), X, y, weights


def weighted_logistic_objective(X, y, coef, intercept, alpha, weights):
    m = X @ coef + intercept
    return np.mean(weights * (np.logaddexp(0, m) - y * m)) + 0.5 * alpha * coef @ coef


@pytest.mark.parametrize("class_weight", [{1: 3.0}, "balanced"])
def test_class_weights_reach_scikit_learns_weighted_solution(imbalanced, class_weight):
    path, X, y, _ = imbalanced
    reference = LogisticRegression(C=1 / (ALPHA * len(y)), class_weight=class_weight, tol=1e-12,
                                   max_iter=10_000).fit(X, y)
    per_class = (len(y) / (2 * np.bincount(y)) if class_weight == "balanced" else np.array([1.0, 3.0]))
    weights = per_class[y]
    best = weighted_logistic_objective(X, y, reference.coef_[0], reference.intercept_[0], ALPHA, weights)
    model = streamgd.fit(path, target="y", features=["x0", "x1", "x2"], class_weight=class_weight,
                         **dict(FULL, lr=2.0, epochs=400))
    got = weighted_logistic_objective(X, y, model.coef_[0], model.intercept_[0], ALPHA, weights)
    assert (got - best) / best < 1e-4
    assert model.intercept_[0] > reference_unweighted(X, y)[1] + 0.3  # the rare class is pulled up


@pytest.mark.parametrize("batch_size", ["full", 32])
def test_a_sample_weight_column_weights_each_row(imbalanced, batch_size):
    path, X, y, weights = imbalanced
    reference = LogisticRegression(C=1 / (ALPHA * len(y)), tol=1e-12, max_iter=10_000).fit(X, y, sample_weight=weights)
    best = weighted_logistic_objective(X, y, reference.coef_[0], reference.intercept_[0], ALPHA, weights)
    run = dict(FULL, lr=1.0, epochs=400) if batch_size == "full" else dict(MINI, lr=0.1)
    model = streamgd.fit(path, target="y", features=["x0", "x1", "x2"], sample_weight="w", **run)
    got = weighted_logistic_objective(X, y, model.coef_[0], model.intercept_[0], ALPHA, weights)
    assert (got - best) / best < 1e-4
    # the weighted solution itself: full batch reaches it exactly (measured 2e-9), mini-batch within 0.03
    # (measured 0.02); the unweighted solution is 0.04 away, so a run that ignored the weights would fail
    tolerance = 1e-6 if batch_size == "full" else 0.03
    np.testing.assert_allclose(np.r_[model.coef_[0], model.intercept_],
                               np.r_[reference.coef_[0], reference.intercept_], atol=tolerance)
    unweighted_coef, _ = reference_unweighted(X, y)
    assert np.abs(unweighted_coef - reference.coef_[0]).max() > 0.04


def reference_unweighted(X, y):
    fitted = LogisticRegression(C=1 / (ALPHA * len(y)), tol=1e-12, max_iter=10_000).fit(X, y)
    return fitted.coef_[0], fitted.intercept_[0]


def test_bad_weights_and_labels_are_refused(imbalanced, tmp_path):
    path = imbalanced[0]
    with pytest.raises(ConfigError, match="class_weight names 7, which is not a class"):
        streamgd.fit(path, target="y", features=["x0"], class_weight={7: 2.0})
    with pytest.raises(ConfigError, match="class_weight applies to classifiers"):
        streamgd.fit(path, target="y", model="linear", class_weight="balanced")
    bad = tmp_path / "w.parquet"
    pq.write_table(pa.table({"x": np.ones(10), "w": [1.0] * 4 + [-1.0] + [1.0] * 5, "y": [0, 1] * 5}), bad)
    with pytest.raises(DataError, match=r"sample weight column 'w' holds -1.0 at file .*, row group 0, row 4; weights must be"):
        streamgd.fit(str(bad), target="y", features=["x"], sample_weight="w", shuffle="none")
