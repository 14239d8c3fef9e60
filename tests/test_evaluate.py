"""Streamed evaluation: every metric against scikit-learn's on the whole data in memory, independence from the
row-group size, clear errors for bad targets, and the ``streamgd evaluate`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sklearn import metrics as skm

import streamgd
from streamgd.cli.main import main
from streamgd.models.evaluate import evaluate, format_report
from streamgd.models.metrics import ClassificationMetrics, HistogramAUC, RegressionMetrics
from conftest import reported_lines

EXACT = 1e-9
AUC_TOLERANCE = 1e-3
N, D = 3000, 4
COEF = np.array([1.5, -1.0, 0.5, 0.25])


def write(path, X, y, row_group_size, **extra) -> str:
    columns = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    columns.update(extra)
    columns["y"] = y
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return str(path)


def names(d=D):
    return [f"x{j}" for j in range(d)]


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(3).standard_normal((N, D))


@pytest.fixture(scope="module")
def binary(tmp_path_factory, features):
    """A logistic model near the truth, and data drawn from the truth in row groups of 500."""
    rng = np.random.default_rng(4)
    y = (rng.random(N) < 1 / (1 + np.exp(-(features @ COEF - 0.3)))).astype(np.int64)
    path = write(tmp_path_factory.mktemp("binary") / "b.parquet", features, y, 500)
    model = streamgd.LogisticRegression(COEF[None, :] * 0.9, [-0.2], names(), target="y", classes=[0, 1])
    return path, y, model


@pytest.fixture(scope="module")
def regression(tmp_path_factory, features):
    rng = np.random.default_rng(5)
    y = features @ COEF + 2.0 + 0.5 * rng.standard_normal(N)
    path = write(tmp_path_factory.mktemp("regression") / "r.parquet", features, y, 500)
    model = streamgd.LinearRegression(COEF[None, :] * 1.1, [1.9], names(), target="y")
    return path, y, model


def assert_close(value, expected, rel=EXACT):
    assert value == pytest.approx(expected, rel=rel, abs=1e-12)


def assert_confusion(result, y_true, y_pred, labels):
    confusion = result["confusion_matrix"]
    assert confusion["labels"] == labels
    assert confusion["matrix"] == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()


# ---- classifiers ------------------------------------------------------------------------------------------------
def test_binary_logistic_metrics_match_scikit_learn(binary, features):
    path, y, model = binary
    result = evaluate(model, path)
    proba = model.predict_proba(features)
    predicted = model.predict(features)
    assert result["model"] == "logistic" and result["rows"] == N and result["rows_skipped"] == 0
    assert set(result["metrics"]) == {"log_loss", "accuracy", "roc_auc"}
    assert_close(result["metrics"]["log_loss"], skm.log_loss(y, proba))
    assert_close(result["metrics"]["accuracy"], skm.accuracy_score(y, predicted))
    assert abs(result["metrics"]["roc_auc"] - skm.roc_auc_score(y, proba[:, 1])) < AUC_TOLERANCE
    assert_confusion(result, y, predicted, [0, 1])


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    """Three string classes, a categorical feature and missing values: a softmax model trained by ``fit`` with
    ``missing`` impute (every row evaluated) and drop-rows (rows with a missing feature skipped)."""
    rng = np.random.default_rng(6)
    n = 2400
    X = rng.standard_normal((n, 3))
    colour = rng.choice(["red", "green", "blue"], n)
    W = np.array([[2.0, -1.0, 0.0], [0.0, 1.5, -1.5], [-1.0, 0.0, 1.0]])
    logits = X @ W + 1.5 * (colour == "red")[:, None] * np.array([1.0, 0.0, 0.0])
    labels = np.array(["ant", "bee", "cat"])[np.argmax(logits + rng.gumbel(size=(n, 3)), axis=1)]
    X[rng.random(n) < 0.05, 1] = np.nan
    path = write(tmp_path_factory.mktemp("softmax") / "s.parquet", X, labels, 300, colour=colour)
    fitted = {missing: streamgd.fit(path, target="y", model="softmax", features=["x0", "x1", "x2", "colour"],
                                    missing=missing, epochs=3, batch_size=64)
              for missing in ("impute", "drop-rows")}
    return path, labels, fitted


def test_softmax_with_string_labels_matches_scikit_learn(three_classes):
    path, labels, fitted = three_classes
    model = fitted["impute"]
    table = pq.read_table(path)
    proba = model.predict_proba(table)
    predicted = model.predict(table)
    result = evaluate(model, path)
    assert model.classes_ == ["ant", "bee", "cat"] and result["rows"] == len(labels)
    assert_close(result["metrics"]["log_loss"], skm.log_loss(labels, proba, labels=model.classes_))
    assert_close(result["metrics"]["accuracy"], skm.accuracy_score(labels, predicted))
    exact_auc = skm.roc_auc_score(labels, proba, multi_class="ovr", average="macro", labels=model.classes_)
    assert abs(result["metrics"]["roc_auc"] - exact_auc) < AUC_TOLERANCE
    assert_confusion(result, labels, predicted, ["ant", "bee", "cat"])


def test_rows_with_a_missing_feature_are_skipped_under_drop_rows(three_classes):
    path, labels, fitted = three_classes
    model = fitted["drop-rows"]
    table = pq.read_table(path)
    kept = ~np.isnan(table.column("x1").to_numpy())
    result = evaluate(model, path)
    assert result["rows"] == kept.sum() and result["rows_skipped"] == (~kept).sum() > 0
    predicted = model.predict(table.filter(pa.array(kept)))
    assert_close(result["metrics"]["accuracy"], skm.accuracy_score(labels[kept], predicted))
    assert_confusion(result, labels[kept], predicted, ["ant", "bee", "cat"])
    assert f"{(~kept).sum()} skipped for a missing or non-finite feature" in format_report(result)


@pytest.mark.parametrize("kind", ["svm", "squared-hinge"])
def test_svm_reports_its_hinge_loss_instead_of_log_loss(binary, features, kind):
    path, y, _ = binary
    model = streamgd.MODEL_KINDS[kind](COEF[None, :] * 0.5, [-0.1], names(), target="y", classes=[0, 1])
    margins = model.decision_function(features)
    predicted = model.predict(features)
    result = evaluate(model, path)
    hinge = np.maximum(0.0, 1.0 - (2 * y - 1) * margins)
    if kind == "svm":
        assert_close(result["metrics"]["hinge_loss"], skm.hinge_loss(y, margins))
    else:
        assert_close(result["metrics"]["squared_hinge_loss"], np.mean(hinge ** 2))
    assert "log_loss" not in result["metrics"]
    assert_close(result["metrics"]["accuracy"], skm.accuracy_score(y, predicted))
    assert abs(result["metrics"]["roc_auc"] - skm.roc_auc_score(y, margins)) < AUC_TOLERANCE
    assert_confusion(result, y, predicted, [0, 1])


def test_auc_histogram_bound_holds_and_is_tight_for_many_rows():
    """200,000 rows in 2^16 bins: the stated bound holds and is below 1e-3 (fed in uneven chunks)."""
    rng = np.random.default_rng(8)
    y = (rng.random(200_000) < 0.3).astype(np.float64)
    margins = rng.standard_normal(200_000) * 3 + y
    metrics = ClassificationMetrics(2)
    for part in np.array_split(np.arange(len(y)), [7, 10_000, 150_001]):
        metrics.update(y[part], margins[part])
    exact = skm.roc_auc_score(y, margins)
    bound = metrics.auc.max_error()[0]
    assert abs(metrics.result()["roc_auc"] - exact) <= bound < AUC_TOLERANCE


def test_auc_merge_equals_one_pass_and_handles_a_single_class():
    rng = np.random.default_rng(9)
    positive = rng.random((1000, 3)) < 0.4
    scores = rng.standard_normal((1000, 3))
    whole, left, right = HistogramAUC(3), HistogramAUC(3), HistogramAUC(3)
    whole.update(positive, scores)
    left.update(positive[:400], scores[:400])
    right.update(positive[400:], scores[400:])
    left.merge(right)
    assert np.array_equal(left.counts, whole.counts)
    only_negatives = HistogramAUC(1)
    only_negatives.update(np.zeros((5, 1), dtype=bool), scores[:5, :1])
    assert only_negatives.result() == [None]


# ---- regressors -------------------------------------------------------------------------------------------------
def test_linear_regression_metrics_match_scikit_learn(regression, features):
    path, y, model = regression
    predicted = model.predict(features)
    result = evaluate(model, path)
    assert result["model"] == "linear" and result["rows"] == N and "confusion_matrix" not in result
    assert set(result["metrics"]) == {"rmse", "mae", "r2"}
    assert_close(result["metrics"]["rmse"], np.sqrt(skm.mean_squared_error(y, predicted)))
    assert_close(result["metrics"]["mae"], skm.mean_absolute_error(y, predicted))
    assert_close(result["metrics"]["r2"], skm.r2_score(y, predicted))


def test_poisson_reports_mean_deviance(tmp_path, features):
    rng = np.random.default_rng(10)
    coef = np.array([0.3, -0.2, 0.1, 0.0])
    y = rng.poisson(np.exp(features @ coef + 0.5)).astype(np.float64)
    path = write(tmp_path / "p.parquet", features, y, 700)
    model = streamgd.PoissonRegression(coef[None, :] * 0.8, [0.45], names(), target="y")
    predicted = model.predict(features)
    result = evaluate(model, path)
    assert (y == 0).any()
    assert_close(result["metrics"]["mean_poisson_deviance"], skm.mean_poisson_deviance(y, predicted))
    assert_close(result["metrics"]["rmse"], np.sqrt(skm.mean_squared_error(y, predicted)))
    assert_close(result["metrics"]["mae"], skm.mean_absolute_error(y, predicted))
    assert_close(result["metrics"]["r2"], skm.r2_score(y, predicted))


def test_r2_is_stable_for_a_target_far_from_zero():
    """A target of 1e9 + noise of 1: a sum of squares minus the squared sum would lose every digit."""
    rng = np.random.default_rng(12)
    y = 1e9 + rng.standard_normal(100_000)
    predicted = y + 0.5 * rng.standard_normal(100_000)
    metrics = RegressionMetrics()
    for part in np.array_split(np.arange(len(y)), 37):
        metrics.update(y[part], predicted[part])
    assert_close(metrics.result()["r2"], skm.r2_score(y, predicted), rel=1e-7)


# ---- row groups -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["logistic", "linear"])
def test_metrics_do_not_depend_on_the_row_group_size(tmp_path, binary, regression, features, kind):
    _, y, model = binary if kind == "logistic" else regression
    results = [evaluate(model, write(tmp_path / f"{size}.parquet", features, y, size), prefetch_depth=depth)
               for size, depth in ((97, 2), (640, 0), (N, 1))]
    for other in results[1:]:
        assert other["rows"] == results[0]["rows"] == N
        assert other.get("confusion_matrix") == results[0].get("confusion_matrix")
        for name, value in results[0]["metrics"].items():
            assert_close(other["metrics"][name], value)


# ---- bad targets ------------------------------------------------------------------------------------------------
def test_a_label_the_model_does_not_know_is_named(tmp_path, binary, features):
    _, y, model = binary
    labels = y.copy()
    labels[1234] = 7
    path = write(tmp_path / "l.parquet", features, labels, 500)
    with pytest.raises(streamgd.DataError, match=r"label 7, which is not among the classes \[0, 1\].*row group 2"):
        evaluate(model, path)


@pytest.mark.parametrize("prefetch_depth", [0, 2])
def test_a_missing_target_is_an_error_with_its_row(tmp_path, regression, features, prefetch_depth):
    _, y, model = regression
    values = y.copy()
    values[1234] = np.nan
    path = write(tmp_path / "n.parquet", features, values, 500)
    with pytest.raises(streamgd.DataError, match=r"target column 'y' is missing \(null or NaN\) at file .*n\.parquet, "
                                                 r"row group 2, row 234"):
        evaluate(model, path, prefetch_depth=prefetch_depth)


def test_a_null_class_label_is_an_error_even_when_the_model_drops_rows(tmp_path, three_classes):
    path, labels, fitted = three_classes
    table = pq.read_table(path)
    target = pa.array([None if i == 5 else v for i, v in enumerate(labels.tolist())])
    bad = str(tmp_path / "null.parquet")
    pq.write_table(table.set_column(table.schema.get_field_index("y"), "y", target), bad, row_group_size=300)
    with pytest.raises(streamgd.DataError, match=r"'y' is missing \(null or NaN\) at .*row group 0, row 5"):
        evaluate(fitted["drop-rows"], bad)


def test_a_missing_target_column_names_the_columns_there_are(binary):
    path, _, model = binary
    with pytest.raises(streamgd.DataError, match=r"target column 'label' is not in .*columns: x0, x1, x2, x3, y"):
        evaluate(model, path, target="label")


def test_a_missing_feature_value_is_skipped_and_counted_for_a_model_without_a_policy(tmp_path, binary, features):
    _, y, model = binary
    X = features.copy()
    X[42, 2] = np.nan
    X[2500, 0] = -np.inf
    result = evaluate(model, write(tmp_path / "f.parquet", X, y, 500))
    kept = np.ones(N, dtype=bool)
    kept[[42, 2500]] = False
    assert result["rows"] == N - 2 and result["rows_skipped"] == 2
    assert_close(result["metrics"]["log_loss"], skm.log_loss(y[kept], model.predict_proba(X[kept])))
    assert_confusion(result, y[kept], model.predict(X[kept]), [0, 1])


# ---- command line -----------------------------------------------------------------------------------------------
def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def model_file(binary, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    binary[2].save(path)
    return str(path)


def test_cli_json_is_one_object_equal_to_evaluate(binary, model_file):
    result = run("evaluate", model_file, binary[0], "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == evaluate(binary[2], binary[0])
    assert reported_lines(result.stderr) == []


def test_cli_prints_a_report_with_the_metrics_and_the_confusion_matrix(binary, model_file):
    expected = evaluate(binary[2], binary[0])
    result = run("evaluate", model_file, binary[0])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "logistic model, target 'y': 3,000 rows"
    assert f"  accuracy  {expected['metrics']['accuracy']:.6g}" in lines
    (tn, fp), (fn, tp) = expected["confusion_matrix"]["matrix"]
    assert lines[-2].split() == ["0", str(tn), str(fp)] and lines[-1].split() == ["1", str(fn), str(tp)]


@pytest.mark.parametrize("args, message", [
    (["evaluate", "missing.safetensors", "{data}"], "no such model file"),
    (["evaluate", "{data}", "{data}"], "not a streamgd model"),
    (["evaluate", "{junk_model}", "{data}"], "not a streamgd model"),
    (["evaluate", "{model}", "nowhere.parquet"], "no such file"),
    (["evaluate", "{model}", "{corrupt}"], "not a readable Parquet file"),
    (["evaluate", "{model}", "{data}", "--target", "nope"], "target column 'nope' is not in"),
])
def test_cli_bad_input_exits_2_with_one_line(binary, model_file, tmp_path, args, message):
    junk_model = tmp_path / "junk.safetensors"
    junk_model.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(open(binary[0], "rb").read()[:1000])
    values = {"data": binary[0], "model": model_file, "junk_model": junk_model, "corrupt": corrupt}
    result = run(*[a.format(**values) for a in args])
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.startswith("error:")
    assert "Traceback" not in result.output and len(reported_lines(result.stderr)) == 1


def test_console_script_evaluate_prints_only_json(binary, model_file):
    done = subprocess.run([sys.executable, "-m", "streamgd.cli.main", "evaluate", model_file, binary[0], "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metrics"]["accuracy"] == evaluate(binary[2], binary[0])["metrics"]["accuracy"]


def test_svm_over_three_classes_is_evaluated_one_vs_rest(tmp_path, features):
    rng = np.random.default_rng(8)
    y = rng.integers(0, 3, N)
    path = write(tmp_path / "s.parquet", features, y, 700)
    coef = rng.standard_normal((3, D))
    model = streamgd.LinearSVM(coef, [0.1, -0.2, 0.0], names(), target="y", classes=[0, 1, 2])
    margins = model.decision_function(features)
    result = evaluate(model, path)
    signs = np.where(y[:, None] == np.arange(3), 1.0, -1.0)
    assert_close(result["metrics"]["hinge_loss"], np.maximum(0.0, 1.0 - signs * margins).sum(axis=1).mean())
    assert_close(result["metrics"]["accuracy"], skm.accuracy_score(y, margins.argmax(axis=1)))
    # one-vs-rest AUC: each class's own margin ranks its rows (no probabilities to normalise)
    per_class = [skm.roc_auc_score(y == k, margins[:, k]) for k in range(3)]
    assert abs(result["metrics"]["roc_auc"] - np.mean(per_class)) < AUC_TOLERANCE
    assert_confusion(result, y, margins.argmax(axis=1), [0, 1, 2])
