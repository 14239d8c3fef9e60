"""Choosing the feature columns: --exclude, categorical columns as features, and the hint for a float target."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamgd
from streamgd.cli.main import invoke
from streamgd.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    rng = np.random.default_rng(5)
    n = 1200
    city = rng.choice(["oslo", "lima", "pune"], n)
    x = rng.standard_normal(n)
    y = 2.0 * x + np.select([city == "oslo", city == "lima"], [1.0, -1.0], 0.0) + 0.1 * rng.standard_normal(n)
    path = tmp_path_factory.mktemp("cols") / "t.parquet"
    pq.write_table(pa.table({"id": np.arange(n), "x": x, "city": city, "region": rng.integers(0, 4, n), "y": y}),
                   path, row_group_size=300)
    return str(path)


def test_exclude_leaves_columns_out_of_the_default_features(table_path):
    dataset = streamgd.open_dataset(table_path, target="y", exclude=["id", "region", "city"])
    assert dataset.feature_names == ["x"]
    assert dataset.ignored_columns["id"] == "excluded" and dataset.ignored_columns["region"] == "excluded"
    model = streamgd.fit(table_path, target="y", model="linear", exclude=["id", "region", "city"], epochs=2,
                         batch_size=64, lr=0.05, alpha=0.0)
    assert model.feature_names == ["x"]


def test_a_categorical_column_is_a_feature_without_being_listed_twice(table_path):
    dataset = streamgd.open_dataset(table_path, target="y", features=["x"], categorical=["city"])
    assert dataset.feature_names == ["x", "city"] and dataset.categorical == ["city"]
    model = streamgd.fit(table_path, target="y", model="linear", features=["x"], categorical=["city"], epochs=8,
                         optimizer="sgd", batch_size=32, lr=0.05, alpha=0.0)
    coef = dict(zip(model.feature_names, model.coef_[0]))
    assert sorted(coef) == ["city=__other__", "city=lima", "city=oslo", "city=pune", "x"]
    assert coef["x"] == pytest.approx(2.0, abs=0.05)
    # the three cities' effects, relative to pune, as generated (one-hot columns share the intercept)
    assert coef["city=oslo"] - coef["city=pune"] == pytest.approx(1.0, abs=0.05)
    assert coef["city=lima"] - coef["city=pune"] == pytest.approx(-1.0, abs=0.05)


@pytest.mark.parametrize("options,words", [
    ({"exclude": ["nope"]}, "the excluded column 'nope' is not in"),
    ({"exclude": ["x"], "features": ["x"]}, "named both as a feature and as excluded"),
    ({"exclude": ["city"], "categorical": ["city"]}, "named both as categorical and as excluded"),
    ({"exclude": ["y"]}, "named both as the target and as excluded"),
])
def test_bad_exclusions_are_refused(table_path, options, words):
    with pytest.raises((ConfigError, DataError), match=words):
        streamgd.open_dataset(table_path, target="y", **options)


def test_logistic_on_a_continuous_target_points_to_linear(table_path, capsys):
    with pytest.raises(DataError, match="continuous target use --model linear"):
        streamgd.fit(table_path, target="y", model="logistic", exclude=["id"], epochs=1)
    assert invoke(["fit", table_path, "--target", "y", "--exclude", "id", "--quiet"]) == 2
    assert "--model linear" in capsys.readouterr().err


def test_logistic_on_a_float_target_with_few_values_points_to_linear(tmp_path):
    path = tmp_path / "f.parquet"
    values = np.tile(np.arange(30) / 4.0, 20)
    pq.write_table(pa.table({"x": np.arange(values.size, dtype=float), "y": values}), path)
    with pytest.raises(DataError, match="float column with 30 distinct values .* use --model linear"):
        streamgd.fit(str(path), target="y", model="logistic", epochs=1)
