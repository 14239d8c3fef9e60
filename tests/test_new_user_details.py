"""The small things a new user trips on: "did you mean" for a column name, inspect showing a hashed model's
interactions and its weight per source column, progress of make-data and predict on a terminal only, an
interrupted run saying what was saved, and "1 epoch"."""

from __future__ import annotations

import io
import os
import signal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import streamgd
from streamgd.cli.inspect_model import column_weights, model_report
from streamgd.cli.main import main
from streamgd.cli.row_progress import RowProgress
from streamgd.data.columns import column_list
from streamgd.errors import DataError
from streamgd.training import progress as training_progress


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """40 columns, the target 'label' last; 'tok' holds many values and decides the label, 'few' a handful."""
    n = 3000
    rng = np.random.default_rng(11)
    tok = rng.integers(0, 300, n)
    few = rng.integers(0, 3, n)
    effect = np.where(tok % 2 == 0, 2.0, -2.0)
    label = (effect + 0.5 * rng.standard_normal(n) > 0).astype(np.int64)
    columns = {f"x{k:02d}": rng.standard_normal(n) for k in range(37)}
    columns.update(tok=[f"t{v}" for v in tok], few=[f"f{v}" for v in few], label=label)
    path = tmp_path_factory.mktemp("wide") / "w.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=1000)
    return path


def test_an_unknown_column_gets_the_closest_names_and_they_are_listed(wide):
    result = run("fit", wide, "--target", "lable")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("error: the target column 'lable' is not in ") and "did you mean 'label'?" in line
    assert line.endswith("x10, x11, ..., label, ... (40 in all))")  # listed although past the first twelve
    with pytest.raises(DataError, match=r"the feature column 'tok2' is not in .*; did you mean 'tok'\? "):
        streamgd.open_dataset(wide, target="label", features=["x00", "tok2"])


def test_interactions_and_keep_name_the_closest_columns(wide, hashed_model, tmp_path):
    result = run("fit", wide, "--target", "label", "--interactions", "tok:fwe", "--epochs", "1")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "--interactions names 'fwe', which is not in the data; did you mean 'few'?" in result.stderr
    result = run("predict", hashed_model, wide, "--out", tmp_path / "p.parquet", "--keep", "lable")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "the --keep column 'lable' is not in the data; did you mean 'label'?" in result.stderr


def test_the_column_list_is_never_cut_before_the_closest_names():
    names = [f"c{i}" for i in range(100)]
    assert column_list(names, near=["c57", "c90"], limit=4) == "c0, c1, c2, c3, ..., c57, ..., c90, ... (100 in all)"
    assert column_list(names[:5], near=["c4"], limit=12) == "c0, c1, c2, c3, c4"


@pytest.fixture(scope="module")
def hashed_model(wide, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m.safetensors"
    result = run("fit", wide, "--target", "label", "--features", "tok,few,x00", "--hash-bits", "12",
                 "--interactions", "tok:few", "--epochs", "3", "--batch-size", "32", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_inspect_shows_interactions_and_the_weight_of_each_hashed_column(wide, hashed_model):
    model = streamgd.load(hashed_model)
    table = pq.read_table(wide)
    entries = {e["column"]: e for e in column_weights(model, table)}
    # reference: the slots FeatureSpec.to_blocks gives each column (block column j), the norm of their weights
    _, sparse, _ = model.spec.to_blocks(table, None, "float64")
    slots = sparse.indices.reshape(table.num_rows, -1)
    for j, name in enumerate(["tok", "few", "tok:few"]):
        used = model.spec.n_dense + np.unique(slots[:, j])
        assert entries[name]["slots"] == used.shape[0]
        assert entries[name]["norm"] == pytest.approx(np.linalg.norm(model.coef_[0, used]), rel=1e-12)
    scale = model.summary["feature_transform"]["scale"][0]
    assert entries["x00"]["norm"] == pytest.approx(abs(model.coef_[0, 0]) * scale, rel=1e-12)
    assert max(entries.values(), key=lambda e: e["norm"])["column"] == "tok"  # the column the label follows
    assert entries["x00"]["norm"] < 0.2 * entries["tok"]["norm"]
    text = run("inspect", hashed_model, wide).stdout
    assert "interactions: tok:few" in text
    assert "weight norm per source column (standardized inputs, largest first):" in text
    first = text.split("largest first):\n")[1].splitlines()[0].split()
    assert first[0] == "tok" and float(first[1]) == pytest.approx(entries["tok"]["norm"], rel=1e-4)
    alone = model_report(model)["columns"]  # without data: the shared buckets are one entry
    assert [e["column"] for e in alone if e["kind"] == "hashed"] == [None]
    assert "give the data too" in run("inspect", hashed_model).stdout


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_row_progress_draws_on_a_terminal_only():
    shown = Terminal()
    with RowProgress("predict", 10, stream=shown) as progress:
        list(progress.tables([pa.table({"a": [1, 2, 3]}), pa.table({"a": [4] * 7})]))
    assert progress.done == 10 and "predict" in shown.getvalue() and "10/10" in shown.getvalue()
    quiet = io.StringIO()
    with RowProgress("predict", 10, stream=quiet) as progress:
        progress.advance(10)
    assert quiet.getvalue() == ""


def test_make_data_and_predict_count_their_rows_and_print_nothing_more_off_a_terminal(hashed_model, wide,
                                                                                      tmp_path, monkeypatch):
    counted = []
    advance = RowProgress.advance
    monkeypatch.setattr(RowProgress, "advance", lambda self, rows: (counted.append(rows), advance(self, rows)))
    result = run("make-data", tmp_path / "d.parquet", "--rows", "2500", "--row-group-size", "1000",
                 "--features", "2")
    assert result.exit_code == 0 and result.stderr == "" and counted == [1000, 1000, 500]
    counted.clear()
    result = run("predict", hashed_model, wide, "--out", tmp_path / "p.parquet")
    assert result.exit_code == 0 and result.stderr == "" and sum(counted) == 3000 and len(counted) == 3


@pytest.fixture
def ctrl_c_at_first_chunk(monkeypatch):
    """Ctrl-C (SIGINT to this process) when the first chunk's progress is shown."""
    update = training_progress.TrainingProgress.update

    def interrupt(self, info):
        update(self, info)
        if info.rows_done and not getattr(self, "_sent", False):
            self._sent = True
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(training_progress.TrainingProgress, "update", interrupt)


def test_an_interrupted_fit_without_checkpoints_says_nothing_was_saved(wide, tmp_path, ctrl_c_at_first_chunk):
    out = tmp_path / "m.safetensors"
    result = run("fit", wide, "--target", "label", "--features", "x00,x01", "--out", out, "--epochs", "2")
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1].endswith(
        "; nothing was saved (no --checkpoint-dir: give one to keep checkpoints that --resume continues)")
    assert not out.exists()


def test_an_interrupted_fit_with_checkpoints_says_how_to_resume(wide, tmp_path, ctrl_c_at_first_chunk):
    result = run("fit", wide, "--target", "label", "--features", "x00,x01", "--epochs", "2",
                 "--checkpoint-dir", tmp_path / "ck")
    assert result.exit_code == 130
    last = result.stderr.strip().splitlines()[-1]
    assert "resume with the same command and --resume" in last and "nothing was saved" not in last


def test_one_epoch_is_singular(wide, tmp_path):
    out = tmp_path / "m.safetensors"
    result = run("fit", wide, "--target", "label", "--features", "x00", "--epochs", "1", "--out", out)
    assert result.exit_code == 0 and result.stdout.startswith("logistic: 1 epoch, 3,000 rows/epoch")
    assert ", 1 epoch (" in run("inspect", out).stdout
