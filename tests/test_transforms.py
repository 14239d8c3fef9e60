"""Numeric transforms (log1p, clip), quantile bins from the streaming sketch, and the heavy-tail report."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import streamgd
from streamgd.bench.synthetic_ctr import make_ctr_dataset
from streamgd.cli.main import main
from streamgd.data.dataset import open_dataset
from streamgd.errors import ConfigError
from streamgd.features.quantiles import QuantileSketch, bin_edges
from streamgd.features.spec import FeatureSpec, NumericInput
from streamgd.features.stats import compute_stats, merge_stats, units_stats
from streamgd.features.transforms import (
    TransformStep,
    heavy_tailed,
    parse_bins,
    parse_transform,
    treatments,
)
from streamgd.models.linear import load


def skew(x):
    """The population skewness, by NumPy in two passes."""
    d = x - x.mean()
    return np.mean(d ** 3) / np.mean(d ** 2) ** 1.5


def signed_log1p(x):
    return np.sign(x) * np.log1p(np.abs(x))


def test_transforms_equal_numpy_on_a_chunk():
    rng = np.random.default_rng(0)
    counts = np.floor(rng.lognormal(1.0, 2.0, 5000))
    counts[::7] = np.nan
    signed = rng.standard_normal(5000) * 100
    table = pa.table({"n": counts, "s": signed, "c": signed})
    spec = FeatureSpec([NumericInput("n"), NumericInput("s"), NumericInput("c")], [],
                       transforms={"n": (TransformStep("log1p"),), "s": (TransformStep("log1p"),),
                                   "c": (TransformStep("clip", -50.0, 80.0), TransformStep("log1p"))})
    order = rng.permutation(5000)
    X, sparse, _ = spec.to_blocks(table, order, "float64")
    assert sparse is None
    expected_n = np.log1p(counts[order])  # counts: NumPy's log1p itself, NaN stays NaN
    assert np.array_equal(np.isnan(X[:, 0]), np.isnan(expected_n))
    assert np.array_equal(X[:, 0][~np.isnan(expected_n)], expected_n[~np.isnan(expected_n)])
    np.testing.assert_array_equal(X[:, 1], signed_log1p(signed[order]))
    np.testing.assert_array_equal(X[:, 2], signed_log1p(np.clip(signed[order], -50.0, 80.0)))


def test_parse_errors_are_one_line():
    assert parse_transform("clip:I3::1000") == (["I3"], TransformStep("clip", None, 1000.0))
    for bad in ("sqrt:I1", "log1p", "clip:I1:5", "clip:I1:a:3", "clip:I1::", "clip:I1:9:3"):
        with pytest.raises(ConfigError, match="clip|transform"):
            parse_transform(bad)
    for bad in ("1", "x:I1", "32:"):
        with pytest.raises(ConfigError, match="--bins"):
            parse_bins(bad)
    with pytest.raises(ConfigError, match="matches no numeric feature"):
        treatments(["I1", "I2"], ["log1p:J*"], None)


def write(path, columns, row_group_size=4000):
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return str(path)


def test_statistics_pass_summarises_transformed_values(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.pareto(1.5, 20_000) * 10
    path = write(tmp_path / "d.parquet", {"x": x, "y": x})
    dataset = open_dataset(path, target="y")
    treated = treatments(["x"], ["clip:x::200", "log1p:x"], None)
    stats = compute_stats(dataset, ["x"], workers=2, treatments=treated).columns["x"]
    t = np.log1p(np.clip(x, None, 200))
    assert stats.count == t.size
    assert stats.mean == pytest.approx(t.mean(), rel=1e-12)
    assert stats.var == pytest.approx(t.var(), rel=1e-10)
    assert stats.max == pytest.approx(t.max(), rel=1e-15)
    assert stats.skewness == pytest.approx(skew(t), rel=1e-9)
    raw = compute_stats(dataset, ["x"], workers=2).columns["x"]
    assert raw.skewness == pytest.approx(skew(x), rel=1e-9)  # merged over units by Pébay's update


@pytest.mark.parametrize("draw", ["lognormal", "pareto"])
def test_sketch_quantiles_within_stated_error(draw):
    rng = np.random.default_rng(2)
    n = 400_000
    values = rng.lognormal(0.0, 2.0, n) if draw == "lognormal" else rng.pareto(1.2, n)
    sketch = QuantileSketch(capacity=1024)
    for start in range(0, n, 30_000):
        sketch.add(values[start:start + 30_000])
    assert sketch.count == n and 0 < sketch.rank_error < 0.02  # compactions happened, and the bound is useful
    qs = np.linspace(0.001, 0.999, 999)
    found = sketch.quantiles(qs)
    ranks = np.searchsorted(np.sort(values), found, side="right") / n
    assert np.max(np.abs(ranks - qs)) <= sketch.rank_error + 1.0 / n
    # the reference: numpy.quantile's values lie within the same rank distance
    reference = np.quantile(values, qs, method="inverted_cdf")
    slack = sketch.rank_error + 1 / n
    assert np.all(found >= np.quantile(values, np.maximum(qs - slack, 0), method="inverted_cdf"))
    assert np.all(found <= np.quantile(values, np.minimum(qs + slack, 1), method="inverted_cdf"))
    assert np.median(np.abs(np.log(found / reference))) < 0.01


def test_sketch_merge_of_halves_equals_one_pass_within_error():
    rng = np.random.default_rng(3)
    values = rng.lognormal(1.0, 1.5, 300_000)
    one = QuantileSketch.from_values(values, capacity=512)
    halves = QuantileSketch.from_values(values[:150_000], capacity=512).merge(
        QuantileSketch.from_values(values[150_000:], capacity=512))
    assert halves.count == one.count == values.size
    qs = np.linspace(0.01, 0.99, 99)
    sorted_values = np.sort(values)
    rank_one = np.searchsorted(sorted_values, one.quantiles(qs), side="right") / values.size
    rank_halves = np.searchsorted(sorted_values, halves.quantiles(qs), side="right") / values.size
    assert np.max(np.abs(rank_halves - rank_one)) <= one.rank_error + halves.rank_error + 2.0 / values.size
    assert np.max(np.abs(rank_halves - qs)) <= halves.rank_error + 1.0 / values.size
    restored = QuantileSketch.from_json(halves.to_json())
    assert np.array_equal(restored.quantiles(qs), halves.quantiles(qs)) and restored.error == halves.error


def test_bins_hold_equal_shares_and_merge_over_units(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.lognormal(0.0, 1.8, 120_000)
    path = write(tmp_path / "d.parquet", {"x": x, "y": x}, row_group_size=10_000)
    dataset = open_dataset(path, target="y")
    treated = treatments(["x"], None, ["20"])
    units = list(dataset.units)
    parts = [units_stats(dataset, units[:5], ["x"], set(), 10, treated),
             units_stats(dataset, units[5:], ["x"], set(), 10, treated)]
    sketch = merge_stats(parts, ["x"]).columns["x"].quantiles
    edges = bin_edges(sketch, 20)
    assert edges.size == 19
    shares = np.bincount(np.searchsorted(edges, x, side="right"), minlength=20) / x.size
    assert np.max(np.abs(shares - 1 / 20)) <= 2 * sketch.rank_error + 2.0 / x.size


def test_heavy_tail_report_names_heavy_columns_only(tmp_path):
    rng = np.random.default_rng(5)
    n = 50_000
    columns = {"normal": rng.standard_normal(n), "uniform": rng.random(n), "expo": rng.exponential(3.0, n),
               "lognorm": rng.lognormal(0.0, 1.5, n), "pareto": rng.pareto(1.5, n), "y": rng.random(n)}
    path = write(tmp_path / "d.parquet", columns, row_group_size=10_000)
    stats = compute_stats(open_dataset(path, target="y"), list(columns)[:-1])
    skewness = {name: c.skewness for name, c in stats.columns.items()}
    assert sorted(heavy_tailed(skewness)) == ["lognorm", "pareto"]
    result = CliRunner().invoke(main, ["inspect", path, "--target", "y", "--stats"])
    assert result.exit_code == 0, result.output
    note = [line for line in result.output.splitlines() if line.startswith("note: heavy-tailed")]
    assert len(note) == 1 and "lognorm" in note[0] and "pareto" in note[0]
    assert not any(name in note[0] for name in ("normal (", "uniform", "expo"))


def test_fit_notes_heavy_columns_and_rejects_bad_options(tmp_path):
    rng = np.random.default_rng(6)
    n = 20_000
    heavy, light = rng.pareto(1.3, n), rng.standard_normal(n)
    path = write(tmp_path / "d.parquet", {"heavy": heavy, "light": light, "y": (light > 0).astype(np.int8)})
    result = CliRunner().invoke(main, ["fit", path, "--target", "y", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: heavy-tailed")]
    assert len(notes) == 1 and "heavy" in notes[0] and "light" not in notes[0] and "--transform log1p:" in notes[0]
    result = CliRunner().invoke(main, ["fit", path, "--target", "y", "--transform", "log1p:heavy"])
    assert not any(line.startswith("note: heavy-tailed") for line in result.stderr.splitlines())
    result = CliRunner().invoke(main, ["fit", path, "--target", "y", "--transform", "log2:heavy"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "unknown transform 'log2'" in result.stderr
    result = CliRunner().invoke(main, ["fit", path, "--target", "y", "--bins", "8:nothing*"])
    assert result.exit_code == 2 and "matches no numeric feature" in result.stderr


def test_fit_says_which_columns_are_transformed_and_binned(tmp_path):
    rng = np.random.default_rng(8)
    n = 4000
    columns = {f"I{k}": rng.lognormal(1.0, 1.5, n) for k in range(1, 6)}  # no ties: 8 bins are 8
    path = write(tmp_path / "d.parquet", {**columns, "y": (columns["I1"] > 3).astype(np.int8)})
    result = CliRunner().invoke(main, ["fit", path, "--target", "y", "--epochs", "1", "--transform", "log1p:I*",
                                       "--transform", "clip:I5:0:3", "--bins", "8:I1,I2"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "2 numeric columns transformed first (log1p): I1..I4" not in lines  # I1, I2 are binned after it
    assert "4 numeric columns transformed first (log1p): I1..I4" in lines
    assert "1 numeric column transformed first (log1p then clip to [0, 3]): I5" in lines
    binned = [line for line in lines if "quantile bins" in line]
    assert binned == ["2 numeric columns as categoricals in 8 quantile bins each (and one for missing values): "
                      "I1, I2"], lines
    assert "3 numeric columns standardized: I3..I5" in lines


def test_model_with_transforms_and_bins_predicts_raw_data_as_trained(tmp_path):
    rng = np.random.default_rng(7)
    n = 30_000
    a, b = np.floor(rng.lognormal(1.0, 1.5, n)), rng.pareto(1.5, n)
    a[::11] = np.nan
    y = (np.log1p(np.nan_to_num(a)) - np.log1p(b) + rng.standard_normal(n) > 0.5).astype(np.int8)
    path = write(tmp_path / "d.parquet", {"a": a, "b": b, "y": y})
    model = streamgd.fit(path, target="y", epochs=2, missing="impute", transforms=["clip:a::500", "log1p:a"],
                         bins=["12:b"])
    spec = model.spec
    assert [c.name for c in spec.numeric] == ["a"] and [c.name for c in spec.binned] == ["b"]
    out = tmp_path / "m.safetensors"
    model.save(str(out))
    loaded = load(str(out))
    table = pq.read_table(path)
    expected = model.decision_function(table)
    np.testing.assert_array_equal(loaded.decision_function(table), expected)
    # independently: the margin from the stored pieces and NumPy's transforms of the raw columns
    numeric = spec.numeric[0]
    ta = np.log1p(np.clip(a, None, 500))
    dense = np.where(np.isnan(ta), numeric.impute_value, ta)
    coef = model.coef_[0]
    margin = model.intercept_[0] + coef[0] * dense + coef[1] * np.isnan(a)
    edges = np.asarray(spec.binned[0].edges)
    margin += coef[spec.n_dense + spec.first_bin_slot + np.searchsorted(edges, b, side="right")]
    np.testing.assert_allclose(expected, margin, rtol=1e-12, atol=1e-12)
    # a spec without transforms is stored as before them, and such a stored spec still loads
    plain = FeatureSpec([NumericInput("a", 1.0, True)], [], missing="impute")
    assert "transforms" not in plain.to_dict() and FeatureSpec.from_dict(plain.to_dict()) == plain


@pytest.fixture(scope="module")
def click_log(tmp_path_factory):
    """A small click log of raw counts with heavy tails (the truth reads log1p of the counts), and a holdout."""
    where = tmp_path_factory.mktemp("ctr")
    common = {"n_categorical": 4, "row_group_size": 20_000, "model_seed": 4}  # a truth whose counts matter
    make_ctr_dataset(where / "train.parquet", 120_000, seed=11, **common)
    make_ctr_dataset(where / "holdout.parquet", 40_000, seed=12, **common)
    return str(where / "train.parquet"), str(where / "holdout.parquet")


def test_transforms_and_bins_lower_holdout_log_loss_on_raw_counts(click_log):
    train, holdout = click_log
    options = {"target": "label", "missing": "impute", "categorical": ["C1", "C2", "C3", "C4"], "encoding": "hash",
               "hash_bits": 16, "optimizer": "ftrl", "batch_size": 1, "lr": 0.1, "epochs": 1,
               "validation_data": holdout}
    losses = {name: streamgd.fit(train, **options, **extra).history[-1]["validation_loss"]
              for name, extra in [("raw", {}), ("log1p", {"transforms": ["log1p:I*"]}),
                                  ("bins", {"bins": ["16:I*"]})]}
    # measured: raw 0.4799, log1p 0.4673, bins 0.4688
    assert losses["log1p"] < losses["raw"] - 0.005, losses
    assert losses["bins"] < losses["raw"] - 0.005, losses


def test_estimators_apply_transforms_and_bins_as_in_training():
    from streamgd.estimators import SGDClassifier, SGDRegressor

    rng = np.random.default_rng(8)
    X = np.column_stack([np.floor(rng.lognormal(1.0, 1.5, 3000)), rng.pareto(1.5, 3000)])
    y = (np.log1p(X[:, 0]) - np.log1p(X[:, 1]) + rng.standard_normal(3000) > 0.5).astype(int)
    transformed = SGDClassifier(random_state=0, max_iter=3, transforms=["log1p:*"]).fit(X, y)
    by_hand = SGDClassifier(random_state=0, max_iter=3).fit(np.log1p(X), y)
    np.testing.assert_allclose(transformed.coef_, by_hand.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(transformed.decision_function(X), by_hand.decision_function(np.log1p(X)),
                               rtol=1e-10, atol=1e-12)
    binned = SGDRegressor(random_state=0, max_iter=2, bins=["8:x1"]).fit(X, y.astype(float))
    edges = np.asarray(binned.model_.spec.binned[0].edges)
    assert edges.size == 7 and binned.coef_.shape == (1 + 8 + 1,)  # x0, then x1's 8 bins and its missing slot
    expected = (binned.intercept_[0] + binned.coef_[0] * X[:, 0]
                + binned.coef_[1 + np.searchsorted(edges, X[:, 1], side="right")])
    np.testing.assert_allclose(binned.predict(X), expected, rtol=1e-12, atol=1e-12)
