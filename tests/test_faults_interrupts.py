"""Issue 30, case 9: Ctrl-C and SIGTERM stop a run, in one process and on dask, with exit status 130, one line
and the last checkpoint kept; dask's workers print nothing. Each command runs as a real process in a session of
its own, signalled once its first checkpoint is on disk."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import reported_lines
from streamgd.training.checkpoint import latest_checkpoint

GENEROUS = 120  # seconds a stopped command may take at most (it takes about one; no test asserts a time)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """200,000 rows in row groups of 1,000: enough chunks that a run is still training when it is signalled."""
    rng = np.random.default_rng(9)
    X = rng.standard_normal((200_000, 4)).astype(np.float32)
    y = (X @ np.array([1.0, -1.0, 0.5, 0.0], dtype=np.float32) > 0).astype(np.int64)
    path = tmp_path_factory.mktemp("interrupts") / "d.parquet"
    pq.write_table(pa.table({**{f"x{j}": X[:, j] for j in range(4)}, "y": y}), path, row_group_size=1000)
    return path


def stop_when_checkpointed(args: list, checkpoints, how: signal.Signals, group: bool) -> tuple[int, str]:
    """Run ``streamgd args``; once a checkpoint is written, send ``how`` to the process (``group``: to its whole
    process group, as a terminal's Ctrl-C does); its exit status and stderr."""
    command = [sys.executable, "-c", "from streamgd.cli.launch import run; run()", *map(str, args)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + GENEROUS
        while not (os.path.isdir(checkpoints) and os.listdir(checkpoints)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.1)
        (os.killpg if group else os.kill)(process.pid, how)
        _, stderr = process.communicate(timeout=GENEROUS)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    return process.returncode, stderr


def check_stopped(status: int, stderr: str, checkpoints) -> None:
    """Exit 130, one line saying where it stopped, and the newest checkpoint is the state it names."""
    assert status == 130, (status, stderr)
    lines = reported_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("interrupted at epoch "), lines
    assert "--resume" in lines[0]
    epoch = int(lines[0].split("interrupted at epoch ")[1].split("/")[0])
    done, total = re.search(r"after ([\d,]+) of ([\d,]+) rows", lines[0]).groups()
    assert int(done.replace(",", "")) <= int(total.replace(",", "")), lines  # under dask too (was "chunk 84 of 25")
    newest = latest_checkpoint(str(checkpoints))
    assert newest is not None and newest.cursor["epoch"] == epoch - 1


def test_sigterm_in_one_process_stops_with_a_checkpoint(data, tmp_path):
    checkpoints = tmp_path / "ck"
    status, stderr = stop_when_checkpointed(
        ["fit", data, "--target", "y", "--epochs", "1000", "--checkpoint-dir", checkpoints, "--checkpoint-every",
         "20", "--out", tmp_path / "m.safetensors", "--quiet"], checkpoints, signal.SIGTERM, group=False)
    check_stopped(status, stderr, checkpoints)
    assert not (tmp_path / "m.safetensors").exists()


def test_ctrl_c_on_a_local_cluster_stops_at_once_and_workers_say_nothing(data, tmp_path):
    """SIGINT to the whole process group (the client and its two workers), as a terminal's Ctrl-C: the round is
    cancelled, the client closes, one line; on main the client hung in Client.gather and the workers printed
    KeyboardInterrupt tracebacks."""
    checkpoints = tmp_path / "ck"
    status, stderr = stop_when_checkpointed(
        ["fit", data, "--target", "y", "--epochs", "1000", "--workers", "2", "--checkpoint-dir", checkpoints,
         "--checkpoint-every", "1", "--out", tmp_path / "m.safetensors", "--quiet"], checkpoints, signal.SIGINT,
        group=True)
    check_stopped(status, stderr, checkpoints)


def test_sigterm_on_a_dask_scheduler_stops_the_client(data, tmp_path, client):
    checkpoints = tmp_path / "ck"
    status, stderr = stop_when_checkpointed(
        ["fit", data, "--target", "y", "--epochs", "1000", "--dask", client.scheduler.address, "--checkpoint-dir",
         checkpoints, "--checkpoint-every", "1", "--out", tmp_path / "m.safetensors", "--quiet"], checkpoints,
        signal.SIGTERM, group=False)
    check_stopped(status, stderr, checkpoints)
    assert client.submit(sum, [1, 2]).result() == 3  # the cluster is not harmed: only this client stopped
