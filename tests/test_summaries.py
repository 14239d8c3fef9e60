"""The run summary and the per-epoch lines tell the truth: rows/s over the whole run (the last epoch's figure
labelled), epochs counted from 1 in every output, the validation loss on each epoch's line, and under dask the
same lines and a peak RSS that covers the workers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import reported_lines

SUMMARY = re.compile(r"; (?P<rows>[\d,]+) rows in (?P<seconds>[\d.]+) s, (?P<rate>[\d,]+) rows/s over the run "
                     r"\(last epoch (?P<last>[\d,]+) rows/s\), (?P<memory>peak RSS .*)$")
def epoch_lines(stderr: str) -> list[str]:
    """The per-epoch lines of a fit's stderr (the lines saying what each column became come before them)."""
    return [line for line in reported_lines(stderr) if line.startswith("epoch ")]


EPOCH_LINE = re.compile(r"^epoch (?P<epoch>\d+)/(?P<of>\d+): (?P<rows>[\d,]+) rows, loss (?P<loss>\S+), "
                        r"validation loss (?P<validation>\S+), (?P<rate>[\d,]+) rows/s, (?P<memory>peak RSS .*)$")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((8000, 3))
    y = (X @ [1.0, -2.0, 0.5] + rng.standard_normal(8000) > 0).astype(np.float64)
    path = tmp_path_factory.mktemp("summaries") / "d.parquet"
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}), path, row_group_size=1000)
    return str(path)


def fit(*args: str, cwd, sample=None) -> subprocess.CompletedProcess:
    """``streamgd fit`` in its own process (stderr not a terminal); ``sample(pid)`` runs beside it until it ends."""
    command = [sys.executable, "-m", "streamgd.cli.main", "fit", *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    watcher = None
    if sample is not None:
        watcher = threading.Thread(target=sample, args=(process,), daemon=True)
        watcher.start()
    stdout, stderr = process.communicate(timeout=600)
    if watcher is not None:
        watcher.join()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_summary_rate_is_over_the_whole_run_and_epochs_count_from_one_everywhere(data, tmp_path):
    history = tmp_path / "history.json"
    done = fit(data, "--target", "y", "--epochs", "3", "--batch-size", "64", "--validation", "0.25",
               "--history", str(history), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    records = json.loads(history.read_text())
    summary = SUMMARY.search(done.stdout.strip())
    assert summary, done.stdout
    rows, seconds = number(summary["rows"]), number(summary["seconds"])
    assert rows == sum(record["rows"] for record in records) == 3 * 6000
    # the run's rate: its rows over its wall time (seconds printed to 0.01 s, the rate to 1 row/s)
    assert rows / (seconds + 0.005) - 1 <= number(summary["rate"]) <= rows / (seconds - 0.005) + 1
    assert number(summary["last"]) == round(records[-1]["rows_per_s"])  # the last epoch's, labelled as such
    lines = [EPOCH_LINE.match(line) for line in epoch_lines(done.stderr)]
    assert all(lines), done.stderr
    assert [int(line["epoch"]) for line in lines] == [record["epoch"] for record in records] == [1, 2, 3]
    assert [float(line["validation"]) for line in lines] == [float(f"{r['validation_loss']:.6g}") for r in records]
    assert [number(line["rows"]) for line in lines] == [record["rows"] for record in records]

    as_json = fit(data, "--target", "y", "--epochs", "3", "--batch-size", "64", "--validation", "0.25", "--json",
                  cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    payload = json.loads(as_json.stdout)
    assert [epoch["epoch"] for epoch in payload["epochs"]] == [1, 2, 3]
    assert payload["rows"] == sum(epoch["rows"] for epoch in payload["epochs"])
    seconds = payload["seconds"]  # rounded to 1 ms, the rate to 0.1 row/s: a fast run's rate is known to that
    rows = payload["rows"]
    assert rows / (seconds + 0.0005) - 0.1 <= payload["rows_per_s"] <= rows / (seconds - 0.0005) + 0.1
    assert payload["peak_rss_mb"] >= max(epoch["peak_rss_mb"] for epoch in payload["epochs"])


def test_a_continued_run_counts_only_its_own_epochs_rows(data, tmp_path):
    first = tmp_path / "first.safetensors"
    assert fit(data, "--target", "y", "--epochs", "2", "--out", str(first), "--quiet", cwd=tmp_path).returncode == 0
    done = fit(data, "--target", "y", "--epochs", "1", "--init", str(first), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert [epoch["epoch"] for epoch in payload["epochs"]] == [1, 2, 3]
    assert payload["epochs_run"] == 1 and payload["rows"] == 8000


def test_workers_print_epoch_lines_and_their_peak_rss_counts_every_worker(data, tmp_path):
    peaks: dict[int, float] = {}

    def sample(process: subprocess.Popen) -> None:
        """Each dask worker process's RSS, sampled until the run ends (its peak per process)."""
        client = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                for child in client.children(recursive=True):
                    if "spawn_main" in " ".join(child.cmdline()):  # a worker (not the resource tracker)
                        peaks[child.pid] = max(peaks.get(child.pid, 0.0), child.memory_info().rss / 1e6)
            except psutil.Error:
                pass
            threading.Event().wait(0.05)

    history = tmp_path / "history.json"
    done = fit(data, "--target", "y", "--epochs", "2", "--batch-size", "64", "--validation", "0.25", "--workers",
               "2", "--history", str(history), cwd=tmp_path, sample=sample)
    assert done.returncode == 0, done.stderr
    records = json.loads(history.read_text())
    lines = [EPOCH_LINE.match(line) for line in epoch_lines(done.stderr)]
    assert len(lines) == 2 and all(lines), done.stderr
    assert [int(line["epoch"]) for line in lines] == [1, 2]
    assert [float(line["validation"]) for line in lines] == [float(f"{r['validation_loss']:.6g}") for r in records]
    assert all(line["memory"].startswith("peak RSS client ") and " + 2 workers " in line["memory"] for line in lines)
    memory = re.search(r"peak RSS ([\d,]+) MB \(client ([\d,]+) MB \+ 2 workers ([\d,]+) MB, each process's own "
                       r"peak\)", done.stdout)
    assert memory, done.stdout
    total, client, workers = (number(group) for group in memory.groups())
    assert len(peaks) == 2  # the test saw both workers
    assert workers >= sum(peaks.values()) - 1  # each worker's own peak, summed (printed to 1 MB)
    assert total >= client + workers - 1 and client > 0


def test_dask_address_prints_the_same_epoch_lines_and_each_workers_peak(client, data, tmp_path):
    from click.testing import CliRunner

    from streamgd.cli.main import main

    history = tmp_path / "history.json"
    result = CliRunner().invoke(main, ["fit", data, "--target", "y", "--epochs", "2", "--batch-size", "64",
                                       "--validation", "0.25", "--dask", client.scheduler.address,
                                       "--history", str(history)])
    assert result.exit_code == 0, result.output
    records = json.loads(history.read_text())
    lines = [EPOCH_LINE.match(line) for line in epoch_lines(result.stderr)]
    assert len(lines) == 2 and all(lines), result.stderr
    assert [int(line["epoch"]) for line in lines] == [record["epoch"] for record in records] == [1, 2]
    assert [float(line["validation"]) for line in lines] == [float(f"{r['validation_loss']:.6g}") for r in records]
    # each worker's reported peak is at least what the worker process holds now, read from outside it (give or
    # take 2 MB: the figure is asked for at the epoch's end, a worker allocates a little after it; seen: 0.15 MB)
    now = sorted(psutil.Process(pid).memory_info().rss / 1e6 for pid in client.run(os.getpid).values())
    reported = sorted(records[-1]["workers_peak_rss_mb"])
    assert len(reported) == 2 and all(peak >= held - 2.0 for peak, held in zip(reported, now)), (reported, now)
    assert f"+ 2 workers {sum(reported):,.0f} MB" in result.stdout
