"""One prediction per input row: rows a model cannot score (a missing or non-finite feature it does not impute)
get null predictions, counted, with the kept columns aligned; evaluate skips and counts the same rows; training
skips rows without a target under drop-rows and impute, and counts them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import streamgd
from streamgd.cli.main import main
from streamgd.errors import DataError
from streamgd.models.evaluate import evaluate, format_report
from streamgd.models.predict import PredictionCounts, predict_to_parquet

N = 2000
ROW_GROUP = 300


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def gaps(tmp_path_factory):
    """A binary problem whose feature ``a`` is null in some rows and NaN in others, an ``id`` column, and a
    logistic model trained on it with ``missing="drop-rows"``."""
    rng = np.random.default_rng(21)
    X = rng.standard_normal((N, 3))
    y = (X @ [1.5, -1.0, 0.5] + 0.2 * rng.standard_normal(N) > 0).astype(np.int64)
    missing = np.zeros(N, dtype=bool)
    missing[rng.choice(N, 120, replace=False)] = True
    nulls = missing & (np.arange(N) % 2 == 0)  # half of them null, half NaN
    a = X[:, 0].copy()
    a[missing & ~nulls] = np.nan
    table = pa.table({"id": np.arange(N, dtype=np.int64) * 7 + 3, "a": pa.array(a, mask=nulls),
                      "b": X[:, 1], "c": X[:, 2], "y": y})
    path = tmp_path_factory.mktemp("gaps") / "g.parquet"
    pq.write_table(table, path, row_group_size=ROW_GROUP)
    model = streamgd.fit(str(path), target="y", features=["a", "b", "c"], missing="drop-rows", epochs=3,
                         batch_size=64)
    model_path = path.parent / "m.safetensors"
    model.save(model_path)
    return str(path), table, missing, model, str(model_path)


def test_a_drop_rows_model_predicts_one_row_per_input_row_with_nulls_where_features_are_missing(gaps, tmp_path):
    path, table, missing, model, _ = gaps
    counts = predict_to_parquet(model, path, tmp_path / "p.parquet", keep=["id"])
    out = pq.read_table(tmp_path / "p.parquet")
    assert counts == PredictionCounts(rows=N, unscored=120)
    assert out.num_rows == N and out.column_names == ["id", "prediction", "proba"]
    assert out.column("id").to_pylist() == (np.arange(N) * 7 + 3).tolist()
    for name in ("prediction", "proba"):
        np.testing.assert_array_equal(out.column(name).is_null().to_numpy(zero_copy_only=False), missing)
    complete = table.filter(pa.array(~missing))
    scored = out.filter(pa.array(~missing))
    assert np.array_equal(scored.column("prediction").to_numpy(), model.predict(complete))
    np.testing.assert_allclose(scored.column("proba").to_numpy(), model.predict_proba(complete)[:, 1], rtol=1e-12)


def test_the_cli_keeps_ids_aligned_and_prints_the_rows_not_scored(gaps, tmp_path):
    path, table, missing, model, model_path = gaps
    out = tmp_path / "p.parquet"
    result = run("predict", model_path, path, "--out", out, "--keep", "id")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (f"2,000 predictions written to {out} "
                                     "(120 rows not scored: a missing or non-finite feature)")
    written = pq.read_table(out)
    assert written.column("id").equals(table.column("id"))
    assert written.column("prediction").null_count == 120


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    """Regression data with NaN, +inf and -inf features in known rows, and a model without a FeatureSpec."""
    rng = np.random.default_rng(22)
    X = rng.standard_normal((N, 3))
    y = X @ [2.0, -1.0, 0.5] + 1.0 + 0.3 * rng.standard_normal(N)
    bad_rows = np.array([0, 5, 299, 300, 1234, 1999])
    X[bad_rows, [0, 1, 2, 0, 1, 2]] = [np.nan, np.inf, -np.inf, np.nan, np.inf, np.nan]
    path = tmp_path_factory.mktemp("dirty") / "d.parquet"
    pq.write_table(pa.table({"x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "y": y}), path, row_group_size=ROW_GROUP)
    bad = np.zeros(N, dtype=bool)
    bad[bad_rows] = True
    model = streamgd.LinearRegression(np.array([[1.9, -1.1, 0.4]]), np.array([0.9]), ["x0", "x1", "x2"],
                                      target="y")
    return str(path), X, y, bad, model


def test_nan_and_inf_features_give_null_predictions_and_the_same_rows_are_skipped_by_evaluate(dirty, tmp_path):
    path, X, y, bad, model = dirty
    counts = predict_to_parquet(model, path, tmp_path / "p.parquet")
    prediction = pq.read_table(tmp_path / "p.parquet").column("prediction")
    assert counts == PredictionCounts(rows=N, unscored=6)
    np.testing.assert_array_equal(prediction.is_null().to_numpy(zero_copy_only=False), bad)
    np.testing.assert_allclose(prediction.drop_null().to_numpy(), model.predict(X[~bad]), rtol=1e-12)
    result = evaluate(model, path)
    assert result["rows"] == N - 6 and result["rows_skipped"] == 6
    residual = model.predict(X[~bad]) - y[~bad]
    assert result["metrics"]["rmse"] == pytest.approx(np.sqrt(np.mean(residual ** 2)), rel=1e-9)
    assert result["metrics"]["mae"] == pytest.approx(np.mean(np.abs(residual)), rel=1e-9)
    assert format_report(result).splitlines()[0] == \
        "linear model, target 'y': 1,994 rows, 6 skipped for a missing or non-finite feature"


def test_in_memory_predict_still_returns_every_row_as_computed(dirty):
    _, X, _, bad, model = dirty
    predicted = model.predict(X)
    assert predicted.shape == (N,) and np.isnan(predicted[bad]).sum() == 3 and np.isinf(predicted[bad]).sum() == 3
    np.testing.assert_allclose(predicted[~bad], X[~bad] @ model.coef_[0] + model.intercept_[0], rtol=1e-12)


def test_a_classifier_with_string_labels_gets_null_labels_and_probabilities(dirty, tmp_path):
    path, X, _, bad, _ = dirty
    model = streamgd.LogisticRegression(np.array([[1.0, -0.5, 0.25]]), np.array([0.1]), ["x0", "x1", "x2"],
                                        target="y", classes=["no", "yes"])
    counts = predict_to_parquet(model, path, tmp_path / "p.parquet")
    out = pq.read_table(tmp_path / "p.parquet")
    assert counts == PredictionCounts(rows=N, unscored=6)
    assert out.schema.field("prediction").type == pa.string()
    labels = np.array(out.column("prediction").to_pylist(), dtype=object)
    assert (labels[bad] == None).all()  # noqa: E711 - elementwise
    assert labels[~bad].tolist() == model.predict(X[~bad]).tolist()
    proba = out.column("proba").to_numpy(zero_copy_only=False)
    assert np.isnan(proba[bad]).all() and out.column("proba").null_count == 6
    np.testing.assert_allclose(proba[~bad], model.predict_proba(X[~bad])[:, 1], rtol=1e-12)


def test_an_impute_model_scores_nan_but_not_inf(tmp_path):
    rng = np.random.default_rng(23)
    X = rng.standard_normal((600, 2))
    y = X @ [1.0, 2.0] + 0.1 * rng.standard_normal(600)
    X[[3, 10], 0] = np.nan
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "y": y}), path, row_group_size=200)
    model = streamgd.fit(str(path), target="y", model="linear", missing="impute", epochs=2)
    test = pa.table({"a": [np.nan, np.inf, 0.5, 0.25], "b": [1.0, 1.0, -np.inf, 0.5]})
    pq.write_table(test, tmp_path / "test.parquet")
    counts = predict_to_parquet(model, tmp_path / "test.parquet", tmp_path / "p.parquet")
    prediction = pq.read_table(tmp_path / "p.parquet").column("prediction").to_pylist()
    assert counts == PredictionCounts(rows=4, unscored=2)
    assert prediction[1] is None and prediction[2] is None
    expected = model.predict(test.take([0, 3]))
    np.testing.assert_allclose([prediction[0], prediction[3]], expected, rtol=1e-12)
    assert np.isfinite(expected).all()


# ---- training on rows without a target ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    """Targets null in some rows and NaN in others (both kinds), and the same file without those rows, written
    with the same row groups minus the unlabelled rows (so the chunks hold the same labelled rows)."""
    rng = np.random.default_rng(24)
    X = rng.standard_normal((N, 3))
    margin = X @ [1.0, -2.0, 0.5] + 0.3
    values = {"linear": margin + 0.2 * rng.standard_normal(N), "logistic": (margin > 0).astype(np.float64)}
    unlabelled = np.zeros(N, dtype=bool)
    unlabelled[rng.choice(N, 77, replace=False)] = True
    folder = tmp_path_factory.mktemp("unlabelled")
    paths = {}
    for kind, y in values.items():
        target = y.copy()
        target[unlabelled & (np.arange(N) % 2 == 1)] = np.nan
        column = pa.array(target, mask=unlabelled & (np.arange(N) % 2 == 0))
        full = pa.table({"x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "y": column})
        pq.write_table(full, folder / f"{kind}.parquet", row_group_size=ROW_GROUP)
        with pq.ParquetWriter(folder / f"{kind}-clean.parquet", full.schema) as writer:
            for start in range(0, N, ROW_GROUP):
                group = full.slice(start, ROW_GROUP)
                writer.write_table(group.filter(pa.array(~unlabelled[start:start + ROW_GROUP])))
        paths[kind] = (str(folder / f"{kind}.parquet"), str(folder / f"{kind}-clean.parquet"))
    return paths, int(unlabelled.sum())


@pytest.mark.parametrize("missing", ["drop-rows", "impute"])
@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_rows_without_a_target_are_skipped_and_counted(unlabelled, missing, kind):
    paths, n_unlabelled = unlabelled
    options = dict(target="y", model=kind, missing=missing, batch_size="full", epochs=20, lr=0.5,
                   schedule="constant", standardize=False, dtype="float64", shuffle="none")
    model = streamgd.fit(paths[kind][0], **options)
    reference = streamgd.fit(paths[kind][1], **options)
    assert n_unlabelled == 77
    assert [e["rows"] for e in model.history] == [N - 77] * 20
    assert [e["rows_skipped"] for e in model.history] == [77] * 20
    assert [e["rows_skipped"] for e in reference.history] == [0] * 20
    assert model.feature_names == reference.feature_names == ["x0", "x1", "x2"]
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, rtol=1e-12, atol=1e-14)
    assert np.abs(model.coef_).max() > 0.3  # it learned something
    assert model.history[-1]["loss"] == pytest.approx(reference.history[-1]["loss"], rel=1e-12)


def test_a_missing_target_is_still_an_error_under_the_error_policy(unlabelled):
    paths, _ = unlabelled
    with pytest.raises(DataError, match=r"target column 'y' is missing \(null or NaN\) at file .*linear\.parquet, "
                                        r"row group \d+, row \d+; --missing drop-rows or --missing impute skip"):
        streamgd.fit(paths["linear"][0], target="y", model="linear", shuffle="none", epochs=1)


@pytest.mark.parametrize("missing, why", [("impute", "no target"), ("drop-rows", "no target or a missing feature")])
def test_the_fit_summary_line_reports_the_rows_skipped(unlabelled, tmp_path, missing, why):
    paths, _ = unlabelled
    result = run("fit", paths["linear"][0], "--target", "y", "--model", "linear", "--missing", missing,
                 "--epochs", "2", "--quiet", "--out", tmp_path / "m.safetensors")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"linear: 2 epochs, 1,923 rows/epoch (77 rows skipped: {why}), loss ")
