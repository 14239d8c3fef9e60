"""``streamgd inspect`` of a model file: recognised by its header, coefficients largest first, settings, history."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from streamgd.cli.main import main
from streamgd.training.config import TrainConfig
from streamgd.models.linear import LinearSVM
from streamgd.cli.file_kinds import file_kind
from streamgd.cli.inspect_model import model_report


@pytest.fixture
def svm_file(tmp_path):
    """A three-class SVM with known coefficients, saved under a name that does not say what it is."""
    coef = np.array([[0.5, -3.0, 0.0, 1.25], [2.0, 0.1, -0.2, 0.0], [0.0, 0.0, 0.0, -7.5]])
    config = TrainConfig(model="svm", optimizer="adam", lr=0.01, schedule="constant", batch_size=64, epochs=2,
                         penalty="l1", alpha=0.001).validate().to_dict()
    history = [{"epoch": 1, "loss": 0.75, "validation_loss": 0.7, "rows": 1000, "rows_per_s": 2000.0},
               {"epoch": 2, "loss": 0.5, "validation_loss": 0.45, "rows": 1000, "rows_per_s": 4000.0}]
    summary = {"epochs": 2, "steps": 32, "feature_transform": {"kind": "standardize", "mean": [1.0, 0.0, 0.0, 0.0],
                                                               "scale": [2.0, 1.0, 1.0, 1.0]}}
    model = LinearSVM(coef, np.array([0.25, -0.5, 1.0]), ["a", "b", "c", "d"], target="kind",
                      classes=["x", "y", "z"], config=config, history=history, summary=summary)
    path = tmp_path / "trained.bin"
    model.save(path)
    return str(path)


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_the_format_is_read_from_the_first_bytes_not_the_name(svm_file, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0]}), tmp_path / "data.safetensors")
    (tmp_path / "notes.parquet").write_text("{ not parquet }\n")
    assert file_kind(svm_file) == "safetensors"
    assert file_kind(tmp_path / "data.safetensors") == "parquet"
    assert file_kind(tmp_path / "notes.parquet") is None
    assert file_kind(tmp_path / "absent") is None


def test_inspect_prints_kind_classes_transform_sorted_coefficients_settings_and_history(svm_file):
    result = run("inspect", svm_file, "--top", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:4] == [f"model:      svm ({svm_file})", "target:     kind", "classes:    x, y, z",
                         "features:   4"]
    assert lines[4].startswith("transform:  standardized (1 of 4 features")
    assert lines[5] == "            numeric inputs as they are; missing values: error"
    assert lines[6] == ("training:   adam (beta1 0.9, beta2 0.999, eps 1e-08), lr 0.01, schedule constant, "
                        "batch size 64, 2 epochs (32 steps), penalty l1 (alpha 0.001)")
    at = lines.index("coefficients of class x (largest first), intercept 0.25:")
    assert [line.split() for line in lines[at + 1:at + 4]] == [
        ["b", "-3"], ["d", "+1.25"], ["...", "2", "more", "not", "shown", "(--top", "N);", "1", "of", "all", "4",
                                      "are", "exactly", "0"]]
    at = lines.index("coefficients of class z (largest first), intercept 1:")
    assert lines[at + 1].split() == ["d", "-7.5"]
    assert lines[-3:] == ["history:", "  epoch 1: loss 0.75, validation loss 0.7, 1,000 rows, 2,000 rows/s",
                          "  epoch 2: loss 0.5, validation loss 0.45, 1,000 rows, 4,000 rows/s"]


def test_inspect_json_is_one_object_with_every_coefficient_largest_first(svm_file):
    result = run("inspect", svm_file, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "svm" and report["classes"] == ["x", "y", "z"] and report["n_features"] == 4
    assert [o["output"] for o in report["outputs"]] == ["class x", "class y", "class z"]
    assert report["outputs"][1]["coefficients"] == [["a", 2.0], ["c", -0.2], ["b", 0.1], ["d", 0.0]]
    assert [o["intercept"] for o in report["outputs"]] == [0.25, -0.5, 1.0]
    assert report["settings"]["optimizer"] == "adam" and report["settings"]["batch_size"] == 64
    assert report["standardized"] is True and report["missing"] == "error" and report["categorical"] == {}
    assert [(e["epoch"], e["validation_loss"]) for e in report["history"]] == [(1, 0.7), (2, 0.45)]


def test_a_binary_model_names_its_positive_class():
    from streamgd.models.linear import LogisticRegression

    model = LogisticRegression(np.array([[1.0, -2.0]]), np.array([0.0]), ["p", "q"], target="t", classes=["no", "yes"])
    report = model_report(model, top=1)
    assert report["outputs"] == [{"output": "class yes (vs no)", "intercept": 0.0, "coefficients": [["q", -2.0]],
                                  "zero": 0, "not_shown": 1}]


@pytest.mark.parametrize("content, message", [
    (b"just some text\n", "is neither a Parquet file nor a streamgd model file"),
    (None, "is a safetensors file but not a streamgd model"),
])
def test_a_file_that_is_neither_data_nor_a_model_exits_2_with_one_line(tmp_path, content, message):
    path = tmp_path / "thing"
    if content is None:
        from safetensors.numpy import save_file

        save_file({"w": np.zeros(3)}, str(path), metadata={"format": "someone.else"})
    else:
        path.write_bytes(content)
    result = run("inspect", str(path))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_top_must_be_positive(svm_file):
    result = run("inspect", svm_file, "--top", "0")
    assert result.exit_code == 2 and "--top 0" in result.stderr
