"""The scikit-learn estimators: scikit-learn's own estimator checks, solutions against exact solvers, fitting out
of core equal to fitting in memory, and partial_fit."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_blobs
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from problems import logistic_exact, logistic_objective, ridge_exact, ridge_objective
from streamgd.estimators import SGDClassifier, SGDRegressor

# Checks that cannot apply, with scikit-learn's own expected-failure mechanism.
EXPECTED_FAILED_CHECKS = {
    # A row of weight 2 is not the same as the row twice: the rows are shuffled and cut into mini-batches, so a
    # repeated row lands in another batch and moves the trajectory; standardization's mean and scale count the
    # repeated row twice; and the objective is the weighted loss summed over the batch's rows divided by its
    # number of rows (as scikit-learn's SGD), so n changes with repetition. scikit-learn's own SGDClassifier
    # and SGDRegressor are marked the same way.
    "check_sample_weight_equivalence_on_dense_data": "stochastic mini-batches and standardization count rows, "
                                                     "not weights",
    # the same for sparse input (not standardized, but shuffled and cut into mini-batches alike)
    "check_sample_weight_equivalence_on_sparse_data": "stochastic mini-batches count rows, not weights",
}


@parametrize_with_checks(
    [SGDClassifier(), SGDClassifier(loss="hinge"), SGDClassifier(optimizer="adam", batch_size="full",
                                                                 penalty="elasticnet"),
     SGDRegressor(), SGDRegressor(loss="huber")],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


# ---- solutions ------------------------------------------------------------------------------------------------

ALPHA = 1e-3


@pytest.fixture(scope="module")
def standardized():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3000, 5))
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X, rng


def test_regressor_full_batch_reaches_the_ridge_solution(standardized):
    X, rng = standardized
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 1.5 + 0.3 * rng.standard_normal(len(X))
    model = SGDRegressor(batch_size="full", max_iter=300, lr=0.5, schedule="constant", alpha=ALPHA,
                         standardize=False, n_iter_no_change=0).fit(X, y)
    assert model.coef_.shape == (5,) and model.intercept_.shape == (1,) and model.n_iter_ == 300
    best = ridge_objective(X, y, *ridge_exact(X, y, ALPHA), ALPHA)
    gap = (ridge_objective(X, y, model.coef_, model.intercept_[0], ALPHA) - best) / best
    # the closed form is exact only to rounding: a model that converged can evaluate a few ulps below it
    # (measured -1.4e-16 with NumPy 2.4.6)
    assert -1e-12 <= gap < 1e-6


def test_classifier_reaches_lbfgs_with_string_labels(standardized):
    X, rng = standardized
    p = 1 / (1 + np.exp(-(X @ np.array([1.5, -1.0, 0.0, 0.5, 2.0]) - 0.3)))
    positive = rng.random(len(X)) < p
    y = np.where(positive, "spam", "ham")
    model = SGDClassifier(batch_size="full", max_iter=400, lr=2.0, schedule="constant", alpha=ALPHA,
                          standardize=False, n_iter_no_change=0).fit(X, y)
    assert model.classes_.tolist() == ["ham", "spam"]
    best = logistic_objective(X, positive, *logistic_exact(X, positive, ALPHA), ALPHA)
    gap = (logistic_objective(X, positive, model.coef_[0], model.intercept_[0], ALPHA) - best) / best
    assert 0 <= gap < 1e-4
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-model.decision_function(X))), rtol=1e-12)
    assert set(model.predict(X)) == {"ham", "spam"}
    assert (model.model_.predict(X) == model.predict(X)).all()  # the streamgd model predicts the same labels


def test_hinge_over_three_classes_matches_linear_svc_accuracy():
    X, y = make_blobs(n_samples=3000, centers=3, cluster_std=1.5, random_state=2)
    alpha = 1e-3  # the same objective: LinearSVC's C = 1 / (alpha * n), one-vs-rest hinge
    svc = LinearSVC(loss="hinge", C=1.0 / (alpha * len(X)), max_iter=100_000).fit(X, y)
    model = SGDClassifier(loss="hinge", alpha=alpha, max_iter=50, n_iter_no_change=0, random_state=0).fit(X, y)
    assert model.coef_.shape == (3, 2)
    # measured: 0.8793 against LinearSVC's 0.8787
    assert abs(model.score(X, y) - svc.score(X, y)) <= 0.005


# ---- out of core equals in memory -----------------------------------------------------------------------------

def write(path, X, y, target, weights=None):
    columns = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    columns[target] = y
    if weights is not None:
        columns["w"] = weights
    pq.write_table(pa.table(columns), path, row_group_size=65_536)  # the estimator's in-memory unit
    return str(path)


def test_classifier_from_parquet_equals_classifier_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150_000, 6))
    y = np.array(["cat", "dog", "eel"])[np.argmax(X[:, :3] + 0.5 * rng.standard_normal((len(X), 3)), axis=1)]
    path = write(tmp_path / "d.parquet", X, y, "species")
    settings = dict(max_iter=2, batch_size=256, optimizer="adam", random_state=7)
    in_memory = SGDClassifier(**settings).fit(X, y)
    streamed = SGDClassifier(**settings).fit_parquet(path, target="species")
    assert streamed.classes_.tolist() == in_memory.classes_.tolist() == ["cat", "dog", "eel"]
    np.testing.assert_allclose(streamed.coef_, in_memory.coef_, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(streamed.intercept_, in_memory.intercept_, rtol=1e-12, atol=1e-14)
    frame = pd.DataFrame(X[:1000], columns=[f"x{j}" for j in range(6)])  # fitted from Parquet: names known
    assert (streamed.predict(frame) == in_memory.predict(X[:1000])).all()
    assert in_memory.score(X, y) > 0.7


def test_regressor_with_weights_from_parquet_equals_in_memory(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((70_000, 4)) * [1.0, 10.0, 0.1, 5.0]
    y = X @ np.array([1.0, 0.2, -3.0, 0.0]) + rng.standard_normal(len(X))
    weights = rng.uniform(0.5, 2.0, len(X))
    path = write(tmp_path / "r.parquet", X, y, "y", weights)
    settings = dict(loss="huber", max_iter=2, random_state=3)
    in_memory = SGDRegressor(**settings).fit(X, y, sample_weight=weights)
    streamed = SGDRegressor(**settings).fit_parquet(path, target="y", sample_weight="w")
    np.testing.assert_allclose(streamed.coef_, in_memory.coef_, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(streamed.intercept_, in_memory.intercept_, rtol=1e-12, atol=1e-14)
    assert streamed.feature_names_in_.tolist() == ["x0", "x1", "x2", "x3"]


# ---- partial_fit ----------------------------------------------------------------------------------------------

def test_partial_fit_learns_batch_by_batch_and_survives_pickling():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((4000, 3)) * [1.0, 100.0, 0.01]
    y = X @ np.array([2.0, 0.03, 100.0]) - 1.0 + 0.1 * rng.standard_normal(len(X))
    model = SGDRegressor(random_state=0)
    for epoch in range(5):
        for start in range(0, len(X), 500):
            model.partial_fit(X[start:start + 500], y[start:start + 500])
            if epoch == 0 and start == 500:
                model = pickle.loads(pickle.dumps(model))  # the state survives a round trip mid-stream
    assert model.n_iter_ == 40
    np.testing.assert_allclose(model.coef_, [2.0, 0.03, 100.0], rtol=0.02)
    assert model.intercept_[0] == pytest.approx(-1.0, abs=0.02)


def test_partial_fit_classes_and_continuation():
    X, y = make_blobs(n_samples=600, centers=3, random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    model = SGDClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        model.partial_fit(X, labels)
    model.partial_fit(X[:300], labels[:300], classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="not one of classes"):
        model.partial_fit(X[:2], ["a", "z"])
    before = model.coef_.copy()
    model.partial_fit(X[300:], labels[300:])
    assert not np.array_equal(before, model.coef_) and model.score(X, labels) > 0.9
    fitted = SGDClassifier(max_iter=3, n_iter_no_change=0, random_state=0).fit(X, labels)
    steps = fitted._session.step
    fitted.partial_fit(X, labels)  # continues the fitted run's optimizer state
    assert fitted._session.step == steps + -(-len(X) // 32)


def test_bad_input_is_a_value_error():
    X = np.ones((10, 2))
    with pytest.raises(ValueError, match="at least 2 classes"):
        SGDClassifier().fit(X, np.zeros(10))
    with pytest.raises(ValueError, match="all zero"):
        SGDRegressor().fit(X, np.arange(10.0), sample_weight=np.zeros(10))
    with pytest.raises(ValueError, match="counts >= 0"):
        SGDRegressor(loss="poisson").fit(X, -np.arange(10.0))
    with pytest.raises(ValueError, match="loss='logistic' is not supported"):
        SGDRegressor(loss="logistic").fit(X, np.arange(10.0))


def test_fit_parquet_leaves_excluded_columns_out_of_the_features(tmp_path):
    from streamgd.bench.synthetic import make_dataset

    path = tmp_path / "d.parquet"
    make_dataset(path, n_rows=2000, n_features=3, row_group_size=500, id_column=True)
    clf = SGDClassifier(max_iter=2).fit_parquet(str(path), target="y", exclude=["id"])
    assert clf.feature_names_in_.tolist() == ["x0", "x1", "x2"] and clf.coef_.shape == (1, 3)


@pytest.mark.parametrize("settings", [
    pytest.param(dict(), id="mini-batch-sgd"),
    pytest.param(dict(optimizer="adam", penalty="elasticnet", schedule="constant"), id="adam-elasticnet"),
    pytest.param(dict(batch_size="full", lr=0.5, schedule="constant"), id="full-batch"),
])
def test_partial_fit_k_times_equals_fit_for_k_epochs(settings):
    rng = np.random.default_rng(11)
    X = rng.standard_normal((70_000, 4)) * [1.0, 10.0, 0.1, 5.0]  # two units of the in-memory table
    y = X @ np.array([1.0, 0.2, -3.0, 0.0]) + 0.5 + rng.standard_normal(len(X))
    weights = rng.uniform(0.5, 2.0, len(X))
    options = dict(max_iter=3, n_iter_no_change=0, random_state=5, **settings)
    fitted = SGDRegressor(**options).fit(X, y, sample_weight=weights)
    parts = SGDRegressor(**options)
    for _ in range(3):
        parts.partial_fit(X, y, sample_weight=weights)
    np.testing.assert_array_equal(parts.coef_, fitted.coef_)  # bit-identical
    np.testing.assert_array_equal(parts.intercept_, fitted.intercept_)
    assert [e["loss"] for e in parts.history_] == [e["loss"] for e in fitted.history_]
    assert parts.n_iter_ == fitted.n_iter_ == 3


def test_classifier_partial_fit_k_times_equals_fit_with_class_weights():
    X, y = make_blobs(n_samples=5000, centers=3, cluster_std=2.0, random_state=1)
    labels = np.array(["a", "b", "c"])[y]
    options = dict(max_iter=4, n_iter_no_change=0, random_state=2, class_weight={"a": 2.0, "c": 0.5},
                   optimizer="adagrad")
    fitted = SGDClassifier(**options).fit(X, labels)
    parts = SGDClassifier(**options)
    for _ in range(4):
        parts.partial_fit(X, labels, classes=["a", "b", "c"])
    np.testing.assert_array_equal(parts.coef_, fitted.coef_)
    np.testing.assert_array_equal(parts.intercept_, fitted.intercept_)
    assert parts.model_.classes_ == fitted.model_.classes_ == ["a", "b", "c"]
    assert parts.score(X, labels) == fitted.score(X, labels) > 0.8


# ---- thin estimators: the model predicts, the target is scanned once, untrainable data refused first -----------

def _spy(monkeypatch, module_name: str, name: str) -> list:
    """Replace the function ``module_name.name`` wherever a streamgd module holds it with a wrapper that records
    each call and then makes it; the list of calls."""
    import importlib
    import sys

    original = getattr(importlib.import_module(module_name), name)
    calls: list = []

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("streamgd") and getattr(module, name, None) is original:
            monkeypatch.setattr(module, name, spy)
    return calls


@pytest.mark.parametrize("estimator, labels", [
    pytest.param(SGDClassifier(max_iter=3), ["no", "yes"], id="logistic"),
    pytest.param(SGDClassifier(max_iter=3), [3, 5, 9], id="softmax"),
    pytest.param(SGDClassifier(loss="hinge", max_iter=3), [True, False], id="svm"),
    pytest.param(SGDClassifier(loss="hinge", max_iter=3), ["a", "b", "c"], id="svm-one-vs-rest"),
    pytest.param(SGDRegressor(max_iter=3), None, id="linear"),
    pytest.param(SGDRegressor(loss="poisson", max_iter=3, lr=0.01), None, id="poisson"),
])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_estimators_predict_exactly_what_their_model_predicts(estimator, labels, sparse):
    import scipy.sparse

    rng = np.random.default_rng(12)
    X = rng.standard_normal((3000, 5)) * [1.0, 4.0, 0.3, 2.0, 1.0]
    X[rng.random(X.shape) < 0.4] = 0.0
    score = X @ np.array([1.0, -0.3, 2.0, 0.5, -1.0])
    if labels is None:
        y = score + rng.standard_normal(len(X)) if estimator.loss != "poisson" else rng.poisson(np.exp(0.3 * score))
    else:
        y = np.asarray(labels, dtype=object)[np.digitize(score, np.quantile(score, [0.5] if len(labels) == 2
                                                                              else [1 / 3, 2 / 3]))].tolist()
    if sparse:
        X = scipy.sparse.csr_matrix(X)
    fitted = estimator.fit(X, y)
    model = fitted.model_
    Xt = X[:700]
    np.testing.assert_array_equal(fitted.predict(Xt), model.predict(Xt))
    if labels is None:
        return
    np.testing.assert_array_equal(fitted.decision_function(Xt), model.decision_function(Xt))
    assert fitted.predict(Xt).dtype == fitted.classes_.dtype
    assert set(fitted.predict(Xt).tolist()) <= set(labels)
    if estimator.loss == "log_loss":
        np.testing.assert_array_equal(fitted.predict_proba(Xt), model.predict_proba(Xt))


def test_fit_parquet_scans_the_target_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(13)
    X = rng.standard_normal((3000, 3))
    y = np.array(["x", "y", "z"])[np.argmax(X + 0.3 * rng.standard_normal(X.shape), axis=1)]
    path = write(tmp_path / "d.parquet", X, y, "label")
    scans = _spy(monkeypatch, "streamgd.features.targets", "scan_classes")
    clf = SGDClassifier(max_iter=1).fit_parquet(path, target="label")
    assert len(scans) == 1
    assert clf.classes_.tolist() == ["x", "y", "z"] and clf.coef_.shape == (3, 3)
    regressor_scans = len(scans)
    SGDRegressor(max_iter=1).fit_parquet(path, target="x0", exclude=["label"])
    assert len(scans) == regressor_scans  # a regressor has no classes to scan


def test_fit_parquet_refuses_a_model_it_cannot_predict_with_before_reading_a_chunk(tmp_path, monkeypatch):
    from streamgd.data.unit_reader import UnitTableReader
    from streamgd.data.reader import ChunkStream

    rng = np.random.default_rng(14)
    table = pa.table({"x0": rng.standard_normal(2000), "city": rng.choice(["oslo", "rome"], 2000),
                      "y": rng.integers(0, 2, 2000)})
    path = str(tmp_path / "d.parquet")
    pq.write_table(table, path, row_group_size=500)
    reads: list = []
    for cls, method in ((UnitTableReader, "read"), (ChunkStream, "__init__")):
        original = getattr(cls, method)

        def spy(self, *args, _original=original, _name=f"{cls.__name__}.{method}", **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, spy)
    scans = _spy(monkeypatch, "streamgd.features.targets", "scan_classes")
    stats = _spy(monkeypatch, "streamgd.features.stats", "compute_stats")
    with pytest.raises(ValueError, match="fit_parquet takes numeric feature columns and the columns 'city' are "
                                         "categorical"):
        SGDClassifier(max_iter=1).fit_parquet(path, target="y", features=["x0", "city"])  # text: categorical
    assert reads == [] and scans == [] and stats == []
    clf = SGDClassifier(max_iter=1).fit_parquet(path, target="y")  # numeric columns only (text is left out): trains
    assert clf.feature_names_in_.tolist() == ["x0"] and reads
