"""The statistics pass and the FeatureSpec: streamed statistics against NumPy, one-hot and hashed encodings against
references, the missing-value policies, dates, and specs stored in model files."""

from __future__ import annotations

import datetime
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamgd
from streamgd.errors import DataError
from streamgd.features.spec import CategoricalInput, FeatureSpec, fnv1a
from streamgd.features.stats import compute_stats


@pytest.mark.parametrize("row_group_size, workers", [(7, 1), (100, 2), (1000, 2), (5000, 3)])
def test_streamed_statistics_equal_numpy_whatever_the_chunking(tmp_path, row_group_size, workers):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(5000) * 1e3 + 1e6  # a large offset: a naive sum of squares would lose digits
    b = rng.integers(-5, 5, 5000).astype(float)
    b[::17] = np.nan
    colors = rng.choice(["red", "green", "blue"], 5000)
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"a": a, "b": b, "color": colors, "y": np.zeros(5000)}), path,
                   row_group_size=row_group_size)
    data = streamgd.open_dataset(str(path), target="y", categorical=["color"])
    stats = compute_stats(data, ["a", "b", "color"], ["color"], workers=workers)
    assert stats.rows == 5000
    for name, values in (("a", a), ("b", b)):
        column, good = stats.columns[name], values[~np.isnan(values)]
        assert column.count == good.size and column.missing == np.isnan(values).sum()
        assert column.mean == pytest.approx(good.mean(), rel=1e-12)
        assert column.var == pytest.approx(good.var(), rel=1e-10)
        assert (column.min, column.max) == (good.min(), good.max())
    assert stats.columns["color"].values == {c: int((colors == c).sum()) for c in ("red", "green", "blue")}


def test_one_hot_equals_a_reference_encoding_with_other_for_rare_and_unseen_values():
    table = pa.table({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "c": ["b", "a", "b", "rare", None]})
    data = streamgd.open_dataset(table, features=["x", "c"])
    stats = compute_stats(data, ["x", "c"], ["c"])
    spec = FeatureSpec.fit(["x"], ["c"], stats, max_categories=2)
    assert spec.output_names == ["x", "c=a", "c=b", "c=__other__"]
    X, keep = spec.to_matrix(pa.table({"x": [9.0, 8.0, 7.0], "c": ["a", "never seen", "b"]}), np.array([2, 0, 1]),
                             "float64")
    assert keep is None
    np.testing.assert_array_equal(X, [[7.0, 0, 1, 0], [9.0, 1, 0, 0], [8.0, 0, 0, 1]])


def test_hashing_is_signed_fnv1a_and_the_same_in_another_process():
    values = ["apple", "pear", "", "ünïcode", None]
    table = pa.table({"fruit": values})
    spec = FeatureSpec([], [CategoricalInput("fruit")],
                       encoding="hash", hash_bits=6)
    X, _ = spec.to_matrix(table, None, "float64")
    seed = fnv1a(b"fruit=")
    for row, value in enumerate(values[:4]):
        h = fnv1a(value.encode(), seed)
        expected = np.zeros(64)
        expected[h & 63] = -1.0 if h >> 31 else 1.0
        np.testing.assert_array_equal(X[row], expected)
    assert np.abs(X[4]).sum() == 1.0  # a null has a bucket of its own hash
    code = ("import pyarrow as pa; from streamgd.features.spec import FeatureSpec, CategoricalInput;"
            "X, _ = FeatureSpec([], [CategoricalInput('fruit')], encoding='hash', hash_bits=6).to_matrix("
            f"pa.table({{'fruit': {values!r}}}), None, 'float64'); print(X.argmax(1).tolist(), X.sum(1).tolist())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert other.stdout.strip() == f"{X.argmax(1).tolist()} {X.sum(1).tolist()}"


@pytest.fixture
def with_gaps(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3000, 2))
    y = (X @ [1.5, -1.0] > 0).astype(np.float64)
    a = X[:, 0].copy()
    a[5::50] = np.nan
    path = tmp_path / "g.parquet"
    pq.write_table(pa.table({"a": a, "b": X[:, 1], "y": y}), path, row_group_size=500)
    return str(path), a, X, y


def test_missing_error_names_the_column_and_row_group(with_gaps):
    with pytest.raises(DataError, match=r"the feature column 'a' is missing \(null or NaN\) at file .*g.parquet, "
                                        r"row group 0, "
                                        r"row 5; clean the data, or train with --missing drop-rows"):
        streamgd.fit(with_gaps[0], target="y", shuffle="none")


def test_missing_drop_rows_trains_as_on_the_clean_rows(with_gaps, tmp_path):
    path, a, X, y = with_gaps
    options = dict(target="y", batch_size="full", epochs=50, lr=1.0, schedule="constant", standardize=False,
                   dtype="float64", shuffle="none")
    dropped = streamgd.fit(path, missing="drop-rows", **options)
    clean = ~np.isnan(a)
    pq.write_table(pa.table({"a": a[clean], "b": X[clean, 1], "y": y[clean]}), tmp_path / "clean.parquet")
    reference = streamgd.fit(str(tmp_path / "clean.parquet"), **options)
    assert dropped.history[0]["rows"] == clean.sum() == 2940
    np.testing.assert_allclose(dropped.coef_, reference.coef_, rtol=1e-9)


def test_missing_impute_uses_the_mean_and_an_indicator(with_gaps, tmp_path):
    path, a, X, y = with_gaps
    model = streamgd.fit(path, target="y", missing="impute", epochs=5)
    assert model.feature_names == ["a", "b", "a__missing"]
    assert model.spec.numeric[0].impute_value == pytest.approx(np.nanmean(a), rel=1e-12)
    assert not model.spec.numeric[1].indicator  # b had no missing values
    table = pa.table({"a": [np.nan, 0.5], "b": [0.1, 0.2]})
    model.save(tmp_path / "m.safetensors")
    loaded = streamgd.load(tmp_path / "m.safetensors")
    expected = (np.array([[np.nanmean(a), 0.1, 1.0], [0.5, 0.2, 0.0]]) @ model.coef_[0]) + model.intercept_[0]
    np.testing.assert_allclose(loaded.decision_function(table), expected, rtol=1e-12)
    assert (model.predict(pa.table({"a": a, "b": X[:, 1]})) == y).mean() > 0.95


def test_a_categorical_feature_is_learned_and_predicted_through_the_model_file(tmp_path):
    rng = np.random.default_rng(4)
    n = 4000
    x = rng.standard_normal(n)
    city = rng.choice(["paris", "lima", "oslo"], n)
    effect = {"paris": 2.0, "lima": -2.0, "oslo": 0.0}
    y = x + np.vectorize(effect.get)(city) + 0.1 * rng.standard_normal(n)
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"x": x, "city": pa.array(city).dictionary_encode(), "y": y}), path, row_group_size=500)
    for options in ({}, {"hash_bits": 8, "encoding": "hash"}):
        model = streamgd.fit(str(path), target="y", model="linear", features=["x", "city"], epochs=10, **options)
        residual = model.predict(pq.read_table(path)) - y
        assert np.sqrt(np.mean(residual ** 2)) < 0.15, options
        model.save(tmp_path / "m.safetensors")
        streamgd.predict_to_parquet(streamgd.load(tmp_path / "m.safetensors"), str(path), str(tmp_path / "p.parquet"))
        streamed = pq.read_table(tmp_path / "p.parquet").column("prediction").to_numpy()
        np.testing.assert_allclose(streamed, model.predict(pq.read_table(path)), rtol=1e-9)
    unseen = model.predict(pa.table({"x": [0.0], "city": ["tokyo"]}))
    assert np.isfinite(unseen).all()


def test_dates_and_timestamps_become_numbers(tmp_path):
    days = np.arange(200)
    table = pa.table({"day": pa.array([datetime.date(2024, 1, 1) + datetime.timedelta(int(d)) for d in days]),
                      "at": pa.array((days * 86400 * 10**6).astype("datetime64[us]")),
                      "y": days * 0.5 + 3.0})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=50)
    data = streamgd.open_dataset(str(tmp_path / "d.parquet"), target="y")
    assert data.feature_names == ["day", "at"]
    model = streamgd.fit(str(tmp_path / "d.parquet"), target="y", model="linear", features=["day"],
                         batch_size="full", epochs=300, lr=0.5, schedule="constant", alpha=0.0)
    start = (datetime.date(2024, 1, 1) - datetime.date(1970, 1, 1)).days
    assert model.coef_[0, 0] == pytest.approx(0.5, rel=1e-3)
    assert model.intercept_[0] == pytest.approx(3.0 - 0.5 * start, rel=1e-3)
