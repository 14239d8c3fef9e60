"""Continuing training from a saved model (init= / --init): fit(3) then 2 more equals fit(5); clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import streamgd
from problems import write_xy
from streamgd.cli.main import main
from streamgd.errors import ConfigError

SETTINGS = dict(model="logistic", batch_size=32, seed=3, shuffle="buffer:4", lr_decay=0.01)
# the coefficients are folded into raw-input units when saved and unfolded when continued: a few ulps
TOLERANCE = dict(rtol=1e-12, atol=1e-13)


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    """6,000 rows in 60 row groups, features on unlike scales and offsets (standardization matters)."""
    rng = np.random.default_rng(21)
    X = rng.standard_normal((6000, 4)) * [1.0, 5.0, 0.2, 3.0] + [0.0, 2.0, -1.0, 0.0]
    y = (rng.random(6000) < 1 / (1 + np.exp(-(X @ [1.0, -0.2, 0.5, 0.0])))).astype(np.int64)
    return write_xy(tmp_path_factory.mktemp("warm") / "g.parquet", X, y, 100)


@pytest.mark.parametrize("options", [dict(optimizer="sgd", schedule="invscaling"),
                                     dict(optimizer="adam", schedule="invscaling"),
                                     dict(optimizer="momentum", schedule="step", lr_step_size=100)])
def test_three_epochs_then_two_more_equal_five(groups, tmp_path, options):
    settings = {**SETTINGS, **options}
    five = streamgd.fit(groups, target="y", epochs=5, **settings)
    three = streamgd.fit(groups, target="y", epochs=3, **settings)
    three.save(tmp_path / "three.safetensors")
    transform = three.summary["feature_transform"]
    assert np.abs(np.array(transform["mean"])).max() > 1.0 and max(transform["scale"]) > 4.0
    more = streamgd.fit(groups, target="y", epochs=2, init=str(tmp_path / "three.safetensors"), **settings)
    np.testing.assert_allclose(more.coef_, five.coef_, **TOLERANCE)
    np.testing.assert_allclose(more.intercept_, five.intercept_, **TOLERANCE)
    assert np.abs(more.coef_ - three.coef_).max() > 1e-3  # the two epochs did train
    assert more.summary["steps"] == five.summary["steps"] and more.summary["epochs"] == 5
    assert more.summary["continued_from_epoch"] == 3
    assert [e["epoch"] for e in more.history] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([e["loss"] for e in more.history], [e["loss"] for e in five.history], rtol=1e-12)


def test_continuing_a_model_object_restarting_the_epoch_count_would_differ(groups):
    """The epoch numbering is what picks each epoch's shuffle plan: a fresh count would give other coefficients."""
    three = streamgd.fit(groups, target="y", epochs=3, **SETTINGS)
    four = streamgd.fit(groups, target="y", epochs=4, **SETTINGS)
    more = streamgd.fit(groups, target="y", epochs=1, init=three, **SETTINGS)
    np.testing.assert_allclose(more.coef_, four.coef_, **TOLERANCE)
    three.summary["epochs"] = 0  # as if the count restarted: epoch 0's plan again
    restarted = streamgd.fit(groups, target="y", epochs=1, init=three, **SETTINGS)
    assert np.abs(restarted.coef_ - four.coef_).max() > 1e-6


@pytest.mark.parametrize("change, message", [
    (dict(model="svm"), "is a 'logistic' model and this run trains 'svm'"),
    (dict(optimizer="adam"), "was trained with optimizer='sgd' and this run has optimizer='adam'"),
    (dict(standardize=False), "was trained with standardize=True and this run has standardize=False"),
    (dict(schedule="cosine"), "schedule 'cosine' depends on the total number of steps"),
    (dict(penalty="elasticnet"), "optimizer state of shape (0, 5) and this run needs (1, 5)"),
    (dict(features=["x0", "x1", "x3", "x2"]), "reads the columns ['x0', 'x1', 'x2', 'x3']"),
    (dict(transforms="log1p:x1"), "trained with transforms=None and this run names transforms=['log1p:x1']"),
    (dict(bins=8), "trained with bins=None and this run names bins=['8']"),
])
def test_an_incompatible_continuation_is_refused_in_one_sentence(groups, tmp_path, change, message):
    streamgd.fit(groups, target="y", epochs=1, **SETTINGS).save(tmp_path / "m.safetensors")
    with pytest.raises(ConfigError) as refused:
        streamgd.fit(groups, target="y", epochs=1, init=str(tmp_path / "m.safetensors"), **{**SETTINGS, **change})
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_other_classes_are_refused(groups, tmp_path):
    import pyarrow.parquet as pq

    model = streamgd.fit(groups, target="y", epochs=1, **SETTINGS)
    table = pq.read_table(groups)
    pq.write_table(table.set_column(4, "y", [table.column("y").to_numpy() + 1]), tmp_path / "shifted.parquet")
    with pytest.raises(ConfigError, match=r"trained on the classes \[0, 1\] and this data has \[1, 2\]"):
        streamgd.fit(str(tmp_path / "shifted.parquet"), target="y", epochs=1, init=model, **SETTINGS)


def test_the_cli_continues_a_model_and_refuses_init_with_resume(groups, tmp_path):
    common = ["--target", "y", "--model", "logistic", "--batch-size", "32", "--seed", "3", "--shuffle", "buffer:4",
              "--lr-decay", "0.01", "--quiet"]
    first, second = str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")
    assert CliRunner().invoke(main, ["fit", groups, *common, "--epochs", "3", "--out", first]).exit_code == 0
    done = CliRunner().invoke(main, ["fit", groups, *common, "--epochs", "2", "--init", first, "--out", second])
    assert done.exit_code == 0, done.output
    assert "5 epochs" in done.stdout and f"continued {first} at epoch 4" in done.stdout
    five = streamgd.fit(groups, target="y", epochs=5, **SETTINGS)
    np.testing.assert_allclose(streamgd.load(second).coef_, five.coef_, **TOLERANCE)
    refused = CliRunner().invoke(main, ["fit", groups, *common, "--init", first, "--resume", "--checkpoint-dir",
                                        str(tmp_path / "ck")])
    assert refused.exit_code == 2
    assert refused.stderr == "error: give init (start from a saved model) or resume (continue a checkpoint), not both\n"
    missing = CliRunner().invoke(main, ["fit", groups, *common, "--init", str(tmp_path / "none.safetensors")])
    assert missing.exit_code == 2 and "no such model file" in missing.stderr
