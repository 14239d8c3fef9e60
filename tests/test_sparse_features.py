"""Categorical features as a sparse block end to end: the blocks against reference encodings, hashed
interactions, large hash spaces in bounded memory, exact resume, and the bad inputs of issue 17."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import streamgd
from conftest import reported_lines
from streamgd.cli.main import main
from streamgd.features.spec import CategoricalInput, FeatureSpec, NumericInput, fnv1a, pair_hashes


def _fnv_of(name: str, value: str | None) -> int:
    seed = fnv1a(name.encode() + b"=")
    return (seed ^ 0x9E3779B9) & 0xFFFFFFFF if value is None else fnv1a(value.encode(), seed)


def _sign(h: int) -> float:
    return -1.0 if h >> 31 else 1.0


def test_hashed_block_and_interactions_equal_a_reference_encoding():
    a = ["x", "y", None, "x", "ünï"]
    b = ["p", "q", "q", None, "p"]
    table = pa.table({"n": [1.0, 2.0, 3.0, 4.0, 5.0], "a": a, "b": b})
    spec = FeatureSpec([NumericInput("n")], [CategoricalInput("a"), CategoricalInput("b")], "hash", 6,
                       interactions=[("a", "b")])
    order = np.array([4, 0, 3, 1, 2])
    X, block, keep = spec.to_blocks(table, order, "float64")
    assert keep is None and X[:, 0].tolist() == [5.0, 1.0, 4.0, 2.0, 3.0]
    assert block.n_slots == 64 and np.diff(block.indptr).tolist() == [3] * 5
    for i, r in enumerate(order):
        ha, hb = _fnv_of("a", a[r]), _fnv_of("b", b[r])
        hp = int(pair_hashes(np.array([ha], np.uint32), np.array([hb], np.uint32))[0])
        assert hp == fnv1a(ha.to_bytes(4, "little") + hb.to_bytes(4, "little"))
        assert block.indices[3 * i: 3 * i + 3].tolist() == [ha & 63, hb & 63, hp & 63]
        assert block.values[3 * i: 3 * i + 3].tolist() == [_sign(ha), _sign(hb), _sign(hp)]
    own = FeatureSpec([], [CategoricalInput("a"), CategoricalInput("b")], "hash", 6, interactions=[("a", "b")],
                      interaction_bits=4)
    _, block, _ = own.to_blocks(table, None, "float64")
    assert own.n_slots == 64 + 16 and own.output_names[64 + 3] == "interaction_3"
    assert (block.indices[2::3] >= 64).all() and (block.indices[2::3] < 80).all()


def test_one_hot_block_equals_arrow_index_in_for_a_large_vocabulary():
    rng = np.random.default_rng(0)
    vocabulary = sorted({f"v{k}" for k in rng.integers(0, 10**6, 200_000)})
    values = np.array([f"v{k}" for k in rng.integers(0, 10**6, 50_000)], dtype=object)
    values[::97] = None
    table = pa.table({"c": pa.array(values.tolist())})
    spec = FeatureSpec([], [CategoricalInput("c", vocabulary)])
    _, block, _ = spec.to_blocks(table, None, "float32")
    expected = pc.index_in(table.column("c"), value_set=pa.array(vocabulary)).fill_null(len(vocabulary))
    np.testing.assert_array_equal(block.indices, expected.to_numpy())
    assert block.n_slots == len(vocabulary) + 1 and len(spec.output_names) == len(vocabulary) + 1
    assert spec.output_names[len(vocabulary)] == "c=__other__" and spec.output_names[0] == f"c={vocabulary[0]}"


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """A small click log from the CTR generator (planted C1 x C2 interaction) and its holdout."""
    from streamgd.bench.synthetic_ctr import make_ctr_dataset

    folder = tmp_path_factory.mktemp("clicks")
    train = make_ctr_dataset(str(folder / "train.parquet"), n_rows=60_000, n_numeric=3, n_categorical=4,
                             cardinalities=(8, 30, 1000, 50_000), interactions=((0, 1),), seed=0, model_seed=0,
                             row_group_size=8192)
    holdout = make_ctr_dataset(str(folder / "holdout.parquet"), n_rows=20_000, n_numeric=3, n_categorical=4,
                               cardinalities=(8, 30, 1000, 50_000), interactions=((0, 1),), seed=1, model_seed=0,
                               row_group_size=8192)
    return train.path, holdout.path


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


CATEGORICAL = "C1,C2,C3,C4"


def _holdout_log_loss(model_path, holdout):
    result = _run("evaluate", model_path, holdout, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["metrics"]["log_loss"]


def test_hashed_interactions_learn_the_planted_pair_and_predict_applies_them(clicks, tmp_path):
    train, holdout = clicks
    common = ["fit", train, "--target", "label", "--categorical", CATEGORICAL, "--hash-bits", "18",
              "--missing", "impute", "--epochs", "3", "--optimizer", "ftrl", "--batch-size", "1", "--quiet"]
    plain, paired = tmp_path / "plain.safetensors", tmp_path / "paired.safetensors"
    assert _run(*common, "--interactions", "none", "--out", plain).exit_code == 0
    result = _run(*common, "--interactions", "C1:C2", "--out", paired)
    assert result.exit_code == 0, result.output
    without, with_pair = _holdout_log_loss(plain, holdout), _holdout_log_loss(paired, holdout)
    assert with_pair < without - 0.002, (without, with_pair)
    model = streamgd.load(str(paired))
    assert model.spec.interactions == [("C1", "C2")] and model.n_features == 3 + 3 + (1 << 18)  # + indicators
    predictions = tmp_path / "p.parquet"
    assert _run("predict", paired, holdout, "--out", predictions).exit_code == 0
    proba = pq.read_table(predictions).column("proba").to_numpy()
    np.testing.assert_allclose(proba, model.predict_proba(pq.read_table(holdout))[:, 1], rtol=1e-12)


def test_a_model_with_interactions_names_the_column_missing_from_the_data(clicks, tmp_path):
    train, holdout = clicks
    out = tmp_path / "m.safetensors"
    assert _run("fit", train, "--target", "label", "--categorical", CATEGORICAL, "--hash-bits", "10",
                "--interactions", "C2:C4", "--missing", "impute", "--epochs", "1", "--quiet", "--out",
                out).exit_code == 0
    partial = tmp_path / "partial.parquet"
    pq.write_table(pq.read_table(holdout).drop(["C4"]), partial)
    result = subprocess.run([sys.executable, "-m", "streamgd", "predict", str(out), str(partial), "--out",
                             str(tmp_path / "p.parquet")], capture_output=True, text=True)
    assert result.returncode == 2 and len(reported_lines(result.stderr)) == 1, result.stderr
    assert "C4" in result.stderr


@pytest.mark.parametrize("options, message", [
    (["--hash-bits", "31"], "hash_bits=31"),
    (["--hash-bits", "0"], "hash_bits=0"),
    (["--interactions", "C1:nope"], "'nope', which is not in the data"),
    (["--interactions", "C1:I1"], "'I1', which is not categorical"),
    (["--interactions", "C1C2"], "two columns joined by ':'"),
    (["--interactions", "C1:C2", "--interaction-bits", "40"], "interaction_bits=40"),
    (["--max-categories", "1000000", "--hash-bits", "30", "--optimizer", "adam", "--model", "softmax"],
     "lower --hash-bits or --max-categories"),
])
def test_bad_sparse_options_are_one_line_and_exit_2_before_training(clicks, tmp_path, options, message):
    train, _ = clicks
    command = [sys.executable, "-m", "streamgd", "fit", train, "--target", "label", "--categorical", CATEGORICAL,
               "--missing", "impute", *options, "--out", str(tmp_path / "m.safetensors")]
    if "softmax" in options:
        command[command.index("label")] = "C1"  # 8 classes x 2^30 slots: far beyond memory
        command[command.index(CATEGORICAL)] = "C2,C3,C4"
    result = subprocess.run(command, capture_output=True, text=True)
    lines = reported_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert message in lines[0], lines[0]
    assert not (tmp_path / "m.safetensors").exists()


def _peak_rss_mb(command):
    script = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
              "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    return float(subprocess.run([sys.executable, "-c", script, *command], capture_output=True, text=True,
                                check=True).stdout)


@pytest.mark.slow
def test_memory_grows_with_the_parameters_only(clicks):
    """2^22 hashed slots: parameters and FTRL's two state rows are 3 x 32 MiB; nothing is rows x slots."""
    train, _ = clicks
    peaks = {}
    for bits in (10, 22):
        peaks[bits] = _peak_rss_mb([sys.executable, "-m", "streamgd", "fit", train, "--target", "label",
                                    "--categorical", CATEGORICAL, "--hash-bits", str(bits), "--missing", "impute",
                                    "--epochs", "1", "--optimizer", "ftrl", "--quiet"])
    params_mb = 3 * 8 * (1 << 22) / 2**20  # params, z, n
    assert peaks[22] - peaks[10] < 2.5 * params_mb + 64, peaks


def test_resume_with_sparse_features_is_bit_identical(clicks, tmp_path):
    train, _ = clicks
    settings = dict(model="logistic", categorical=CATEGORICAL.split(","), encoding="hash", hash_bits=12,
                    missing="impute", optimizer="adagrad", batch_size=16, epochs=2, seed=1, alpha=1e-3,
                    interactions="C1:C2")
    whole = streamgd.fit(train, target="label", **settings)
    checkpoints = tmp_path / "ck"
    chunks = []

    def stop_after_three(info):
        chunks.append(info)
        if len(chunks) == 3:
            trainer._interrupted = True

    trainer = streamgd.Trainer(on_chunk=stop_after_three, checkpoint_dir=str(checkpoints), checkpoint_every=1,
                               **settings)
    with pytest.raises(streamgd.errors.TrainingInterrupted):
        trainer.fit(train, target="label")
    resumed = streamgd.fit(train, target="label", checkpoint_dir=str(checkpoints), resume=True, **settings)
    assert resumed.summary.get("resumed_from") is not None
    np.testing.assert_array_equal(resumed.coef_, whole.coef_)
    np.testing.assert_array_equal(resumed.intercept_, whole.intercept_)
    assert whole.summary["optimizer_state_rows"] == ["sum_squares", "decay_stamps"]
