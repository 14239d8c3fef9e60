"""The command line: exit codes, stdout/stderr contracts, and the real console script once."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import streamgd
from streamgd.cli.main import main
from conftest import reported_lines


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 3))
    y = (X @ [1.0, 2.0, -1.0] > 0).astype(np.int64)
    path = tmp_path_factory.mktemp("cli") / "d.parquet"
    pq.write_table(pa.table({"id": np.arange(2000), "a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y,
                             "name": ["r"] * 2000}), path, row_group_size=500)
    return str(path)


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_fit_json_prints_one_object_and_writes_the_model(data, tmp_path):
    out = tmp_path / "m.safetensors"
    result = run("fit", data, "--target", "y", "--features", "a,b,c", "--epochs", "2", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["model"] == str(out) and len(payload["epochs"]) == 2
    assert set(payload["epochs"][0]) >= {"epoch", "loss", "rows", "seconds", "rows_per_s", "peak_rss_mb"}
    assert payload["epochs"][0]["rows"] == 2000
    assert out.exists()


def test_predict_writes_predictions_in_row_order(data, tmp_path):
    model = tmp_path / "m.safetensors"
    assert run("fit", data, "--target", "y", "--features", "a,b,c", "--out", str(model), "--quiet").exit_code == 0
    result = run("predict", str(model), data, "--out", str(tmp_path / "p.parquet"), "--keep", "id")
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column("id").to_pylist() == list(range(2000))
    truth = pq.read_table(data).column("y").to_numpy()
    assert (table.column("prediction").to_numpy() == truth).mean() > 0.95


def test_fit_takes_the_optimizer_schedule_and_their_options(data, tmp_path):
    out = tmp_path / "m.safetensors"
    result = run("fit", data, "--target", "y", "--features", "a,b,c", "--optimizer", "adamw", "--lr", "0.02",
                 "--beta2", "0.99", "--weight-decay", "0.001", "--schedule", "cosine", "--warmup", "5",
                 "--lr-min", "0.001", "--penalty", "elasticnet", "--l1-ratio", "0.5", "--clip-norm", "5",
                 "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    config = streamgd.load(out).config
    assert config["optimizer"] == "adamw" and config["lr"] == 0.02
    assert config["optimizer_options"] == {"lr": None, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8,
                                           "weight_decay": 0.001}
    assert (config["schedule"], config["warmup"], config["lr_min"]) == ("cosine", 5, 0.001)
    assert (config["penalty"], config["l1_ratio"], config["clip_norm"]) == ("elasticnet", 0.5, 5.0)


@pytest.mark.parametrize("model", ["softmax", "svm", "squared-hinge", "huber", "poisson"])
def test_every_model_kind_trains_saves_and_predicts_from_the_cli(data, tmp_path, model):
    out = tmp_path / "m.safetensors"
    classifier = model in ("softmax", "svm", "squared-hinge")
    weights = ["--class-weight", "balanced"] if classifier else []
    result = run("fit", data, "--target", "y", "--features", "a,b,c", "--model", model, *weights, "--out", str(out),
                 "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{model}: 5 epochs")
    result = run("predict", str(out), data, "--out", str(tmp_path / "p.parquet"))
    assert result.exit_code == 0, result.output
    predictions = pq.read_table(tmp_path / "p.parquet").column("prediction").to_numpy()
    truth = pq.read_table(data).column("y").to_numpy()
    if classifier:
        assert (predictions == truth).mean() > 0.95
    else:
        assert len(predictions) == 2000 and np.isfinite(predictions).all()


def test_inspect_stats_shows_streamed_column_statistics(data):
    result = run("inspect", data, "--target", "y", "--categorical", "name", "--stats")
    assert result.exit_code == 0, result.output
    a = pq.read_table(data).column("a").to_numpy()
    statistics = result.output.split("statistics (one streaming pass):")[1].splitlines()
    line = next(row for row in statistics if row.strip().startswith("a "))
    assert line.split()[1:4] == ["2,000", "0", f"{a.mean():.5g}"]
    assert "name (categorical)" not in result.output and "feature (categorical)" in result.output
    assert "1 distinct (r: 2,000)" in result.output


def test_fit_with_a_categorical_column_and_impute(data, tmp_path):
    out = tmp_path / "m.safetensors"
    result = run("fit", data, "--target", "y", "--features", "a,b,c,name", "--missing", "impute", "--hash-bits", "4",
                 "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    model = streamgd.load(out)
    assert model.feature_names[:3] == ["a", "b", "c"] and len(model.feature_names) == 3 + 16
    assert model.spec.encoding == "hash" and model.spec.missing == "impute"


def test_inspect_shows_columns_and_shuffle_quality(data):
    result = run("inspect", data, "--target", "y", "--shuffle", "buffer:2")
    assert result.exit_code == 0, result.output
    assert "rows:       2,000" in result.output and "row groups: 4" in result.output
    assert "name" in result.output and "feature (categorical)" in result.output  # a text column is used
    assert "local mixing" in result.output


@pytest.mark.parametrize("args, message", [
    (["fit", "missing.parquet", "--target", "y"], "no such file"),
    (["fit", "{data}", "--target", "nope"], "target column 'nope'"),
    (["fit", "{data}", "--target", "y", "--categorical", "nope"], "the categorical column 'nope' is not in"),
    (["fit", "{data}", "--target", "y", "--batch-size", "0"], "batch_size"),
    (["predict", "{data}", "{data}", "--out", "x.parquet"], "not a streamgd model"),
    (["fit", "{data}", "--target", "y", "--optimizer", "adam", "--rho", "0.9"], "optimizer 'adam' has no option 'rho'"),
    (["fit", "{data}", "--target", "y", "--warmup", "-3"], "warmup"),
    (["fit", "{data}", "--target", "y", "--class-weight", "1:5"], "expected 'balanced' or label=weight pairs"),
    (["fit", "{data}", "--target", "y", "--model", "linear", "--class-weight", "balanced"], "applies to classifiers"),
    (["fit", "{data}", "--target", "y", "--sample-weight", "nope"], "nope"),
    (["fit", "{data}", "--target", "y", "--workers", "1", "--sample-weight", "nope"],
     "the sample weight column 'nope' is not in the data"),
])
def test_bad_input_exits_2_with_one_line_and_no_traceback(data, args, message):
    result = run(*[a.format(data=data) for a in args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output and len(reported_lines(result.stderr)) == 1


def test_console_script_runs_in_a_subprocess(data):
    done = subprocess.run([sys.executable, "-m", "streamgd.cli.main", "fit", data, "--target", "y", "--epochs", "1",
                           "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["epochs"][0]["rows"] == 2000
    bad = subprocess.run([sys.executable, "-m", "streamgd.cli.main", "fit", "nowhere.parquet", "--target", "y"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_make_data_id_is_the_row_number_across_files_and_text_columns_hold_a_few_values(tmp_path):
    out = tmp_path / "parts"
    result = run("make-data", str(out), "--rows", "3000", "--features", "3", "--files", "3", "--row-group-size", "400",
                 "--id", "--categorical", "2")
    assert result.exit_code == 0, result.output
    assert "plus id, c0, c1" in result.output
    files = sorted(out.glob("part-*.parquet"))
    assert len(files) == 3
    table = pa.concat_tables(pq.read_table(f) for f in files)
    assert table.column_names == ["id", "x0", "x1", "x2", "c0", "c1", "y"]
    assert table.schema.field("id").type == pa.int64()
    assert table.column("id").to_pylist() == list(range(3000))
    assert set(table.column("c0").to_pylist()) == {"a", "b", "c", "d"}
    plain = tmp_path / "plain.parquet"
    assert run("make-data", str(plain), "--rows", "3000", "--features", "3", "--files", "1").exit_code == 0
    assert pq.read_table(plain).column_names == ["x0", "x1", "x2", "y"]


def test_make_data_model_seed_draws_new_rows_from_the_same_model(tmp_path):
    from streamgd.bench.synthetic import make_dataset

    train = make_dataset(tmp_path / "a.parquet", n_rows=500, n_features=4, n_categorical=1, seed=0)
    test = make_dataset(tmp_path / "b.parquet", n_rows=500, n_features=4, n_categorical=1, seed=1, model_seed=0)
    assert np.array_equal(train.coef, test.coef) and np.array_equal(train.category_effects, test.category_effects)
    assert not np.array_equal(pq.read_table(tmp_path / "a.parquet").column("x0").to_numpy(),
                              pq.read_table(tmp_path / "b.parquet").column("x0").to_numpy())
