"""Checkpoints and exact resume (after SIGKILL and Ctrl-C), cut-short checkpoint files, held-out validation,
early stopping and the divergence guard."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import streamgd
from problems import write_xy
from streamgd.training import epoch as core_module
from streamgd.training import trainer as train_module
from streamgd.training.checkpoint import latest_checkpoint, list_checkpoints, read_checkpoint, serial_of
from streamgd.errors import ConfigError, ModelFileError
from streamgd.training.holdout import holdout_units
from conftest import reported_lines

SETTINGS = dict(model="logistic", batch_size=1, epochs=6, seed=3, shuffle="row-groups")
CLI_SETTINGS = ["--model", "logistic", "--batch-size", "1", "--epochs", "6", "--seed", "3", "--shuffle", "row-groups"]


@pytest.fixture(scope="module")
def many_groups(tmp_path_factory):
    """6,000 rows in 60 row groups: 360 chunks over six epochs."""
    rng = np.random.default_rng(21)
    X = rng.standard_normal((6000, 4))
    y = (rng.random(6000) < 1 / (1 + np.exp(-(X @ [1.0, -1.0, 0.5, 0.0])))).astype(np.int64)
    return write_xy(tmp_path_factory.mktemp("groups") / "g.parquet", X, y, 100)


@pytest.fixture(scope="module")
def uninterrupted(many_groups):
    return streamgd.fit(many_groups, target="y", **SETTINGS)


def _start_cli(path, checkpoint_dir, *extra):
    command = [sys.executable, "-m", "streamgd.cli.main", "fit", path, "--target", "y", *CLI_SETTINGS,
               "--checkpoint-dir", str(checkpoint_dir), "--checkpoint-every", "1", "--quiet", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoints(process, checkpoint_dir, at_least, timeout=120.0):
    """Wait until a checkpoint after ``at_least`` chunks exists (the run is then mid-way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list_checkpoints(checkpoint_dir) if os.path.isdir(checkpoint_dir) else []
        if found and serial_of(found[-1]) >= at_least:
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended before it could be stopped: {process.stderr.read()}")
        time.sleep(0.002)
    raise AssertionError("no checkpoint appeared")


def _assert_same_model(resumed, reference):
    np.testing.assert_array_equal(resumed.coef_, reference.coef_)
    np.testing.assert_array_equal(resumed.intercept_, reference.intercept_)
    assert [e["loss"] for e in resumed.history] == [e["loss"] for e in reference.history]


@pytest.mark.parametrize("stop_at", [37, 191])
def test_resume_after_sigkill_gives_bit_identical_weights(many_groups, uninterrupted, tmp_path, stop_at):
    checkpoint_dir = tmp_path / "ck"
    process = _start_cli(many_groups, checkpoint_dir)
    _wait_for_checkpoints(process, checkpoint_dir, stop_at)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    cursor = latest_checkpoint(checkpoint_dir).cursor
    assert not cursor["finished"] and cursor["epoch"] < 6
    resumed = streamgd.fit(many_groups, target="y", checkpoint_dir=str(checkpoint_dir), resume=True, **SETTINGS)
    assert resumed.summary["resumed_from"] >= stop_at
    _assert_same_model(resumed, uninterrupted)


def test_ctrl_c_stops_after_a_chunk_with_a_checkpoint_and_resume_is_exact(many_groups, uninterrupted, tmp_path):
    checkpoint_dir = tmp_path / "ck"
    process = _start_cli(many_groups, checkpoint_dir)
    _wait_for_checkpoints(process, checkpoint_dir, 100)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted at epoch" in stderr and "--resume" in stderr and "Traceback" not in stderr
    done = subprocess.run([sys.executable, "-m", "streamgd.cli.main", "fit", many_groups, "--target", "y", *CLI_SETTINGS,
                           "--checkpoint-dir", str(checkpoint_dir), "--resume", "--out", str(tmp_path / "m.st"),
                           "--quiet"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resumed from checkpoint" in done.stdout
    _assert_same_model(streamgd.load(tmp_path / "m.st"), uninterrupted)


def test_a_cut_short_checkpoint_is_skipped_for_the_previous_one(many_groups, uninterrupted, tmp_path):
    checkpoint_dir = tmp_path / "ck"
    streamgd.fit(many_groups, target="y", checkpoint_dir=str(checkpoint_dir), checkpoint_every=50,
                 keep_checkpoints=100, **SETTINGS)
    written = list_checkpoints(checkpoint_dir)
    for later in written[4:]:  # as if the run had died while writing its fourth checkpoint
        os.unlink(later)
    newest, previous = written[3], written[2]
    with open(newest, "rb") as stream:
        data = stream.read()
    with open(newest, "wb") as stream:  # what a crash during a non-atomic copy would leave
        stream.write(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        read_checkpoint(newest)
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        fallback = latest_checkpoint(checkpoint_dir)
    assert fallback.serial == read_checkpoint(previous).serial
    # the earlier checkpoint (after 150 chunks, in epoch 3 of 6) resumes to the same final model
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        resumed = streamgd.fit(many_groups, target="y", checkpoint_dir=str(checkpoint_dir), resume=True,
                               **SETTINGS)
    _assert_same_model(resumed, uninterrupted)


def test_resuming_with_other_settings_is_refused(many_groups, tmp_path):
    checkpoint_dir = str(tmp_path / "ck")
    streamgd.fit(many_groups, target="y", checkpoint_dir=checkpoint_dir, **{**SETTINGS, "epochs": 1})
    with pytest.raises(ConfigError, match="written with batch_size=1 and this run has batch_size=2"):
        streamgd.fit(many_groups, target="y", checkpoint_dir=checkpoint_dir, resume=True,
                     **{**SETTINGS, "epochs": 1, "batch_size": 2})


def test_validation_units_are_disjoint_from_training_and_the_same_on_resume(many_groups, tmp_path):
    data = streamgd.open_dataset(many_groups, target="y")
    train, held = holdout_units(data.units, 0.2, seed=3)
    assert len(held) == 12 and not set(train) & set(held) and set(train) | set(held) == set(data.units)
    assert holdout_units(data.units, 0.2, seed=3) == (train, held)
    assert holdout_units(data.units, 0.2, seed=4)[1] != held
    options = dict(target="y", validation=0.2, **{**SETTINGS, "epochs": 3})
    reference = streamgd.fit(many_groups, **options)
    assert reference.summary["validation_rows"] == 1200 and reference.history[0]["rows"] == 4800
    checkpoint_dir = str(tmp_path / "ck")
    streamgd.fit(many_groups, checkpoint_dir=checkpoint_dir, checkpoint_every=25, keep_checkpoints=100, **options)
    for later in list_checkpoints(checkpoint_dir)[3:]:
        os.unlink(later)
    assert read_checkpoint(list_checkpoints(checkpoint_dir)[-1]).cursor["epoch"] == 1  # mid-way through epoch 2
    resumed = streamgd.fit(many_groups, checkpoint_dir=checkpoint_dir, resume=True, **options)
    assert [e["validation_loss"] for e in resumed.history] == [e["validation_loss"] for e in reference.history]
    np.testing.assert_array_equal(resumed.coef_, reference.coef_)


def test_validation_loss_and_the_constant_baseline_are_reported(many_groups):
    model = streamgd.fit(many_groups, target="y", validation=0.25, epochs=3)
    for record in model.history:
        assert record["validation_loss"] < record["baseline_loss"]  # the model learned something
    assert 0.6 < model.history[0]["baseline_loss"] < np.log(2)  # the entropy of a near-even split


def test_early_stopping_stops_at_the_right_epoch_and_keeps_the_best(many_groups, monkeypatch):
    script = iter([1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.5, 0.4])
    monkeypatch.setattr(core_module, "mean_loss", lambda *args, **kwargs: next(script))
    options = dict(target="y", validation=0.2, **{**SETTINGS, "batch_size": 32})
    stopped = streamgd.fit(many_groups, early_stopping=3, tol=0.0, **{**options, "epochs": 20})
    assert len(stopped.history) == 6  # epochs 4, 5 and 6 did not beat epoch 3's 0.7
    assert stopped.summary["best_epoch"] == 3 and stopped.summary["best_loss"] == 0.7
    monkeypatch.setattr(core_module, "mean_loss", lambda *args, **kwargs: 1.0)
    three_epochs = streamgd.fit(many_groups, **{**options, "epochs": 3})
    np.testing.assert_array_equal(stopped.coef_, three_epochs.coef_)


def test_divergence_stops_with_advice_and_leaves_the_last_good_model_and_checkpoints(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((2000, 3)) * 100
    path = write_xy(tmp_path / "r.parquet", X, X @ [1.0, 2.0, 3.0], 200)
    model_path = tmp_path / "m.safetensors"
    streamgd.fit(path, target="y", model="linear", epochs=1).save(model_path)
    before = model_path.read_bytes()
    done = subprocess.run([sys.executable, "-m", "streamgd.cli.main", "fit", path, "--target", "y", "--model", "linear",
                           "--lr", "1e6", "--schedule", "constant", "--no-standardize", "--checkpoint-dir",
                           str(tmp_path / "ck"), "--checkpoint-every", "1", "--out", str(model_path), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert re.match(r"error: training diverged at epoch \d+, step \d+: ", done.stderr)
    assert "lower the learning rate" in done.stderr and len(reported_lines(done.stderr)) == 1
    assert model_path.read_bytes() == before
    for checkpoint in list_checkpoints(tmp_path / "ck"):
        assert np.isfinite(read_checkpoint(checkpoint).params).all()


class TenSecondsPerLook:
    """A clock that moves 10 s each time it is read: every time-based checkpoint check finds its interval over."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        self.now += 10.0
        return self.now


def test_checkpoint_every_a_time_interval(many_groups, uninterrupted, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "time", TenSecondsPerLook())
    every_chunk = tmp_path / "often"
    model = streamgd.fit(many_groups, target="y", checkpoint_dir=str(every_chunk), checkpoint_every="5s",
                         keep_checkpoints=1000, **{**SETTINGS, "epochs": 2})
    assert len(list_checkpoints(every_chunk)) == 2 * 60 + 2  # after each of the 120 chunks, and at both epoch ends
    rarely = tmp_path / "rarely"
    streamgd.fit(many_groups, target="y", checkpoint_dir=str(rarely), checkpoint_every="1h", keep_checkpoints=1000,
                 **{**SETTINGS, "epochs": 2})
    assert len(list_checkpoints(rarely)) == 2  # an epoch is ~60 looks (600 s), never an hour: epoch ends only
    resumed = streamgd.fit(many_groups, target="y", checkpoint_dir=str(every_chunk), resume=True,
                           **{**SETTINGS, "epochs": 2})
    np.testing.assert_array_equal(resumed.coef_, model.coef_)
    with pytest.raises(ConfigError, match="checkpoint_every"):
        streamgd.fit(many_groups, target="y", checkpoint_every="soon", **SETTINGS)


def test_the_interrupt_message_counts_epochs_from_one_like_the_progress_lines(many_groups):
    import io

    from streamgd.training.progress import TrainingProgress

    lines = io.StringIO()
    progress = TrainingProgress(stream=lines)

    def stop_in_the_second_epoch(info):
        progress.update(info)
        if info.epoch == 1 and info.rows_done == 300:  # the third chunk of the second epoch (0-based epoch 1)
            trainer._interrupted = True

    trainer = streamgd.Trainer(on_chunk=stop_in_the_second_epoch, **SETTINGS)
    with progress, pytest.raises(streamgd.errors.TrainingInterrupted) as stopped:
        trainer.fit(many_groups, target="y")
    assert str(stopped.value) == "interrupted at epoch 2/6, after 400 of 6,000 rows"  # rows: the same under dask
    assert lines.getvalue().startswith("epoch 1/6: 6,000 rows")
