"""Interactions searched on a sample when a binary model names none (issue 27, item 3's target): the search finds
the planted pairs and no others, its compiled gain equals a NumPy transcription, and ``fit`` crosses what it found,
says so, keeps it in the model and learns better for it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from streamgd.bench.synthetic_ctr import make_ctr_dataset
from streamgd.cli.main import main
from streamgd.data.dataset import open_dataset
from streamgd.features import interaction_search as search
from streamgd.models.linear import load
from streamgd.training.config import TrainConfig

CARDINALITIES = (3, 8, 40, 200, 1000, 5000)
PLANTED = [(1, 2), (3, 5)]  # C2:C3 and C4:C6 (0-based column pairs)


@pytest.fixture(scope="module")
def click_log(tmp_path_factory):
    """Train and holdout click logs of six categorical columns and two numeric ones, two planted pairs."""
    folder = tmp_path_factory.mktemp("search")
    common = dict(n_numeric=2, n_categorical=6, cardinalities=CARDINALITIES, interactions=PLANTED,
                  row_group_size=20_000, model_seed=7)
    make_ctr_dataset(folder / "train.parquet", n_rows=120_000, seed=1, **common)
    make_ctr_dataset(folder / "holdout.parquet", n_rows=40_000, seed=2, **common)
    return folder


def labels(column):
    return column.to_numpy(zero_copy_only=False).astype(np.float64)


def test_the_search_finds_the_planted_pairs_and_no_other(click_log):
    dataset = open_dataset(str(click_log / "train.parquet"), target="label", categorical=["C*"])
    found = search.search_interactions(dataset, list(dataset.categorical), labels)
    assert {pair.label for pair in found.chosen} == {"C2:C3", "C4:C6"}
    assert len(found.gains) == 15 and found.rows == 120_000
    planted_gains = [pair.relative for pair in found.chosen]
    others = [pair.relative for pair in found.gains if pair not in found.chosen]
    # the planted pairs remove at least a few tenths of a percent of the log loss; the others nothing to speak of
    assert min(planted_gains) > 3 * search.MIN_GAIN and max(others) < search.MIN_GAIN / 2


def test_a_small_sample_does_not_cross_chance():
    """Labels that depend on no column: a pair of few cells can gain on held-out rows by chance (the gain's
    standard error on 600 rows is about 0.3% of the log loss); the z test keeps every such pair out."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        codes = {f"C{k}": rng.integers(0, 2 + k, 600) for k in range(4)}
        gains = search.pair_gains(rng.integers(0, 2, 600).astype(np.float64), codes)
        assert not [pair for pair in gains if pair.relative >= search.MIN_GAIN and pair.z >= search.MIN_Z]
        assert max(pair.z for pair in gains) < search.MIN_Z


def numpy_gain(y, a, b, prior_rows=search.PRIOR_ROWS):
    """The module docstring's steps 2-3 for one pair, in plain NumPy: fold f fits on rows i % 2 == f."""
    n, total = len(y), 0.0
    for fold in range(2):
        fit, held = np.arange(fold, n, 2), np.arange(1 - fold, n, 2)
        rate = np.clip(y[fit].mean(), 1e-6, 1 - 1e-6)
        penalty = prior_rows * rate * (1 - rate)
        base = np.log(rate / (1 - rate))

        def effect(codes):
            values = np.unique(codes)
            out = {}
            for v in values:
                rows = fit[codes[fit] == v]
                out[v] = (y[rows] - y[fit].mean()).sum() / (len(rows) * y[fit].mean() * (1 - y[fit].mean()) + penalty)
            return out

        ea, eb = effect(a), effect(b)
        margin = base + np.array([ea.get(v, 0.0) for v in a]) + np.array([eb.get(v, 0.0) for v in b])
        p = 1 / (1 + np.exp(-margin))
        offsets = {}
        for cell in set(zip(a[fit], b[fit])):
            rows = fit[(a[fit] == cell[0]) & (b[fit] == cell[1])]
            offsets[cell] = (y[rows] - p[rows]).sum() / ((p[rows] * (1 - p[rows])).sum() + penalty)
        for i in held:
            delta = offsets.get((a[i], b[i]), 0.0)
            total += delta * (y[i] - p[i]) - 0.5 * delta * delta * p[i] * (1 - p[i])
    return total / n


@pytest.mark.parametrize("cell_buckets", [search.CELL_BUCKETS, 1 << 7], ids=["exact-cells", "hashed-cells"])
def test_the_compiled_gain_equals_its_numpy_transcription(monkeypatch, cell_buckets):
    rng = np.random.default_rng(3)
    n = 3000
    a, b, c = rng.integers(0, 7, n), rng.integers(0, 40, n), rng.integers(0, 5, n)
    margin = 0.5 * (a - 3) + rng.standard_normal(40)[b] + np.where((a + b) % 3 == 0, 1.5, -0.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(np.float64)
    codes = {"A": a, "B": b, "C": c}
    monkeypatch.setattr(search, "CELL_BUCKETS", cell_buckets)  # 7 x 40 cells: exact, or hashed into fewer
    gains = {pair.label: pair.gain for pair in search.pair_gains(y, codes)}
    if cell_buckets >= 7 * 40:
        for pair, (x, z) in {"A:B": (a, b), "A:C": (a, c), "B:C": (b, c)}.items():
            assert gains[pair] == pytest.approx(numpy_gain(y, x, z), rel=1e-9, abs=1e-12)
    assert gains["A:B"] > 0.01 and gains["A:C"] < 0.001  # the planted interaction, and none


def test_fit_crosses_the_pairs_it_found_says_so_and_learns_better(click_log, tmp_path):
    runner = CliRunner()
    train, holdout = str(click_log / "train.parquet"), str(click_log / "holdout.parquet")
    losses = {}
    for name, extra in (("auto", []), ("none", ["--interactions", "none"])):
        out = str(tmp_path / f"{name}.safetensors")
        result = runner.invoke(main, ["fit", train, "--target", "label", "--missing", "impute", "--out", out,
                                      *extra])
        assert result.exit_code == 0, result.output
        model = load(out)
        if name == "auto":
            assert sorted(model.spec.interactions) == [("C2", "C3"), ("C4", "C6")]
            assert model.config["chosen_defaults"]["interactions"] == ["C2:C3", "C4:C6"]
            assert model.config["interactions"] == [["C2", "C3"], ["C4", "C6"]]
            said = [line for line in result.stderr.splitlines() if line.startswith("interactions: ")]
            assert len(said) == 1 and "C2:C3 (" in said[0] and "15 pairs of 6 categorical columns" in said[0]
        else:
            assert model.spec.interactions == [] and model.config["interactions"] == []
            assert "interactions" not in (model.config["chosen_defaults"] or {})
        evaluated = runner.invoke(main, ["evaluate", out, holdout, "--json"])
        assert evaluated.exit_code == 0, evaluated.output
        losses[name] = json.loads(evaluated.stdout)["metrics"]["log_loss"]
    assert losses["auto"] < losses["none"] - 0.005  # the planted pairs are worth about a percent of log loss


def test_named_interactions_and_other_models_are_not_searched(click_log, tmp_path):
    runner = CliRunner()
    train = str(click_log / "train.parquet")
    out = str(tmp_path / "named.safetensors")
    result = runner.invoke(main, ["fit", train, "--target", "label", "--missing", "impute", "--interactions",
                                  "C1:C2", "--out", out])
    assert result.exit_code == 0, result.output
    assert load(out).spec.interactions == [("C1", "C2")] and "interactions: " not in result.stderr
    out = str(tmp_path / "linear.safetensors")  # the search's criterion is the log loss: a regression names its own
    result = runner.invoke(main, ["fit", train, "--target", "label", "--model", "linear", "--missing", "impute",
                                  "--out", out])
    assert result.exit_code == 0, result.output
    assert load(out).spec.interactions == [] and "interactions: " not in result.stderr


def test_the_interactions_setting_reads_auto_none_and_pairs():
    assert TrainConfig(interactions="auto").validate().interactions is None
    assert TrainConfig(interactions="none").validate().interactions == []
    assert TrainConfig(interactions=[("a", "b")]).validate().interactions == [["a", "b"]]


def test_a_sample_spreads_over_the_dataset(click_log):
    dataset = open_dataset(str(click_log / "train.parquet"), target="label")
    units = search.sample_units(dataset, 40_000)  # 6 units of 20,000 rows: two of them, first and last
    assert [unit.n_rows for unit in units] == [20_000, 20_000]
    assert units[0] == dataset.units[0] and units[-1] == dataset.units[-1]


def test_continuing_a_model_keeps_its_interactions_and_refuses_others(click_log, tmp_path):
    runner = CliRunner()
    train = str(click_log / "train.parquet")
    common = ["--target", "label", "--missing", "impute", "--optimizer", "adagrad", "--batch-size", "64",
              "--epochs", "1"]
    first, second = str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")
    assert runner.invoke(main, ["fit", train, *common, "--out", first]).exit_code == 0
    continued = runner.invoke(main, ["fit", train, *common, "--init", first, "--out", second])
    assert continued.exit_code == 0, continued.output
    assert sorted(load(second).spec.interactions) == [("C2", "C3"), ("C4", "C6")]
    assert "interactions: " not in continued.stderr  # nothing searched: the model's pairs are kept
    refused = runner.invoke(main, ["fit", train, *common, "--init", first, "--interactions", "C1:C2", "--out", second])
    assert refused.exit_code == 2 and "this run names C1:C2; continuing training keeps" in refused.stderr
    assert "C2:C3" in refused.stderr and "C4:C6" in refused.stderr and len(refused.stderr.splitlines()) == 1
