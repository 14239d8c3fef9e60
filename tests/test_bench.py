"""The benchmark's regression gates on fabricated measurements, and the quick benchmark end to end.

No test here gates on this machine's timings or memory: the gates are checked on fabricated measurements, and
the end-to-end run turns its measured gates off and checks only the structure of its output. The gates
themselves run in the nightly benchmark (scripts/bench_memory.py, .github/workflows/nightly.yml). The click-log
benchmark's peak RSS is checked against children measured in the same test, never against a fixed figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streamgd.bench.gates import check_gates, compare_to_baseline
from streamgd.bench.methods import parse_sizes
from streamgd.bench.report import markdown_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def results(rss: dict | None = None, rates: dict | None = None, zero_rss: float = 260.0, budget_mb: int = 64) -> dict:
    """A results dict with every method at 1M and 16M rows: flat memory and healthy throughput unless
    ``rss[(method, rows)]`` or ``rates[(method, rows)]`` say otherwise."""
    rss, rates = rss or {}, rates or {}
    defaults = {"sgd": (300.0, 1.2e6), "minibatch": (300.0, 2.4e6), "full-batch": (300.0, 2.3e6),
                "minibatch-budget": (300.0, 2.3e6), "decode-floor": (180.0, 8.0e6),
                "numpy-in-memory": (450.0, 1.0e6), "sklearn-partial-fit": (400.0, 1.7e6)}
    measurements = []
    for n in (1_000_000, 16_000_000):
        for method, (peak, rate) in defaults.items():
            if method == "numpy-in-memory":
                peak *= n / 1_000_000  # grows with the data, but it is a baseline: no gate
            measurements.append({"method": method, "rows": n, "status": "ok",
                                 "kind": "baseline" if method in ("decode-floor", "numpy-in-memory",
                                                                  "sklearn-partial-fit") else "streamgd",
                                 "peak_rss_mb": rss.get((method, n), peak), "rows_per_s": rates.get((method, n), rate),
                                 "sampled_peak_rss_mb": peak, "ru_maxrss_mb": peak, "wall_seconds": 1.0})
    return {"config": {"n_features": 32, "memory_budget_mb": budget_mb},
            "zero_rows": {m: {"peak_rss_mb": zero_rss, "status": "ok"}
                          for m in ("sgd", "minibatch", "full-batch", "minibatch-budget")},
            "measurements": measurements}


def test_flat_memory_and_healthy_throughput_pass():
    assert check_gates(results(), None, min_throughput_ratio=0.2) == []
    assert check_gates(results(), results(), min_throughput_ratio=0.2) == []


def test_rss_growth_of_25_percent_fails_naming_the_method():
    grown = results(rss={("full-batch", 16_000_000): 375.0})
    failures = check_gates(grown, None, min_throughput_ratio=0.2)
    assert len(failures) == 1, failures
    assert failures[0].startswith("rss-growth: full-batch:") and "+25.0%" in failures[0]
    # the default limit is the design's +5%: +4% passes, +8% fails
    assert check_gates(results(rss={("sgd", 16_000_000): 312.0}), None, min_throughput_ratio=0.2) == []
    assert len(check_gates(results(rss={("sgd", 16_000_000): 324.0}), None, min_throughput_ratio=0.2)) == 1
    assert check_gates(results(rss={("sgd", 16_000_000): 324.0}), None, min_throughput_ratio=0.2,
                       max_rss_growth=0.10) == []


def test_throughput_below_the_ratio_of_the_decode_floor_fails():
    slow = results(rates={("minibatch", 16_000_000): 1.0e6})  # 0.125x the floor
    failures = check_gates(slow, None, min_throughput_ratio=0.2)
    assert len(failures) == 1 and failures[0].startswith("throughput: minibatch"), failures
    assert "0.12x" in failures[0] or "0.13x" in failures[0]
    assert check_gates(slow, None, min_throughput_ratio=0.1) == []


def test_memory_budget_overrun_fails():
    over = results(rss={("minibatch-budget", 1_000_000): 380.0, ("minibatch-budget", 16_000_000): 390.0})
    failures = check_gates(over, None, min_throughput_ratio=0.2, budget_allowance_mb=32)
    assert [f.split(":")[0] for f in failures] == ["memory-budget", "memory-budget"], failures
    assert "zero-rows 260 MB + budget 64 MB + allowance 32 MB" in failures[0]
    # 356 MB is exactly the limit
    at_limit = results(rss={("minibatch-budget", 1_000_000): 356.0, ("minibatch-budget", 16_000_000): 356.0})
    assert check_gates(at_limit, None, min_throughput_ratio=0.2, budget_allowance_mb=32) == []


def test_baseline_comparison_with_a_50_percent_throughput_drop_fails():
    before = results()
    now = results(rates={("minibatch", 1_000_000): 1.2e6, ("minibatch", 16_000_000): 1.2e6})
    failures = check_gates(now, before, min_throughput_ratio=0.1)
    assert len(failures) == 1 and failures[0].startswith("baseline: minibatch rows/s at 16,000,000 rows fell 50%")
    assert check_gates(now, before, min_throughput_ratio=0.1, max_throughput_drop=0.6) == []
    change = {(c["method"], c["rows"]): c for c in compare_to_baseline(now, before)}
    assert change[("minibatch", 16_000_000)]["rows_per_s"]["change"] == pytest.approx(-0.5)
    assert "-50.0%" in markdown_report(now, failures, compare_to_baseline(now, before))


def test_failed_runs_are_gate_failures():
    broken = results()
    broken["measurements"][0].update(status="failed", error="exit status 2: error: boom")
    failures = check_gates(broken, None, min_throughput_ratio=0.2)
    assert failures == ["run failed: sgd at 1,000,000 rows: exit status 2: error: boom"]


def test_parse_sizes():
    assert parse_sizes("4M,1000000, 50k") == [50_000, 1_000_000, 4_000_000]
    with pytest.raises(ValueError):
        parse_sizes("many")


@pytest.mark.slow  # every variant of the nightly benchmark in its own subprocess: nightly
def test_quick_benchmark_end_to_end(tmp_path):
    out, data = tmp_path / "out", tmp_path / "data"
    # quick mode's own sizes (50k and 200k rows x 8 features, row groups of 16,384): ~20-25 s here. The
    # throughput, RSS-growth and budget gates are turned off: a shared machine's timings are not a test result.
    off = ["--min-throughput-ratio", "0", "--max-rss-growth", "1e9", "--budget-allowance-mb", "1e9"]
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench_memory.py"), "--quick",
                           "--data-dir", str(data), "--out-dir", str(out), *off],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| rows | method |" in done.stdout
    report = json.loads((out / "bench.json").read_text())
    methods = set(report["config"]["methods"])
    assert methods == {"minibatch", "minibatch-budget", "decode-floor", "numpy-in-memory"}
    measured = {(m["method"], m["rows"]) for m in report["measurements"] if m["status"] == "ok"}
    assert measured == {(m, n) for m in methods for n in (50_000, 200_000)}
    assert set(report["zero_rows"]) == {"minibatch", "minibatch-budget"}
    for m in report["measurements"]:
        assert m["peak_rss_mb"] > 50 and m["ru_maxrss_mb"] > 50 and m["rss_samples"] >= 1
        assert m["rows_per_s"] > 0 and m["rows_done"] == m["rows"]
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["versions"]["pyarrow"]
    assert report["gates"]["min_throughput_ratio"] == 0 and report["gates"]["max_rss_growth"] == 1e9
    assert report["gates"]["failures"] == []  # with the measured gates off, only a failed run could fail one
    for name in ("peak_rss.png", "rows_per_s.png", "bench.md"):
        assert (out / name).stat().st_size > 0
    assert (out / "peak_rss.png").read_bytes()[:4] == b"\x89PNG"


def test_streamgd_bench_is_the_same_command():
    from click.testing import CliRunner

    from streamgd.cli.main import main

    shown = CliRunner().invoke(main, ["bench", "--help"])
    assert shown.exit_code == 0 and "--baseline" in shown.output and "streamgd bench" in shown.output
    refused = CliRunner().invoke(main, ["bench", "--sizes", "lots"])
    assert refused.exit_code == 2


@pytest.mark.slow
def test_click_log_benchmark_end_to_end(tmp_path):
    # 20,000 training rows, 2^8 hashed features, scikit-learn and streamgd (Vowpal Wabbit is an optional extra):
    # ~15 s here, mostly the children's interpreter starts. scikit-learn's default 'optimal' schedule needs far
    # more rows than this to settle, so the test gives it an adaptive one.
    import math

    report_path = tmp_path / "ctr.json"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench_ctr.py"), "--data-dir",
                           str(tmp_path / "data"), "--rows", "20000", "--holdout-rows", "5000", "--row-group-size",
                           "5000", "--hash-bits", "8", "--only", "sklearn,streamgd", "--sklearn-params",
                           "learning_rate=adaptive,eta0=0.01", "--json", str(report_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ("| contender | rows/s | x VW | epoch rows/s | reader thread | training thread | epoch / slower | "
            "peak RSS MB | holdout log loss |") in done.stdout
    assert "streamgd: " in done.stdout and " fit " in done.stdout  # the exact commands are printed
    report = json.loads(report_path.read_text())
    assert set(report["results"]) == {"sklearn", "streamgd"}
    references = report["references"]
    assert references["truth_log_loss"] < references["constant_log_loss"] < math.log(2)
    for name, result in report["results"].items():
        assert result["status"] == "ok", result
        assert math.isfinite(result["holdout_log_loss"]) and result["holdout_log_loss"] < math.log(2), name
        assert result["rows_per_s"] > 0, name
    assert_peak_rss_is_bounded_by_measured_baselines(report, tmp_path)


def _bench_ctr():
    """scripts/bench_ctr.py as a module: its launcher, which measures a child's own peak RSS."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_ctr", os.path.join(ROOT, "scripts", "bench_ctr.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# what each contender's training child imports before it reads a row
CONTENDER_IMPORTS = {"sklearn": "import numpy, pyarrow.parquet, sklearn.feature_extraction, sklearn.linear_model",
                     "streamgd": "import numpy, pyarrow.parquet, streamgd.cli.main, streamgd.kernels.api"}


def assert_peak_rss_is_bounded_by_measured_baselines(report: dict, tmp_path) -> None:
    """Each contender's peak RSS against two children measured here through the benchmark's own launcher: an
    interpreter that only imports what the contender imports, and the same training command on the table's first
    row group alone (for streamgd on an empty Numba cache, so that it compiles whatever the benchmark's run may
    have compiled). The peak is at least the imports' (a figure in the wrong unit, or of the launcher, fails), and
    what it adds to the imports grows at most in proportion to the rows, from the one row group's (the parent's
    RSS, or a predict child's, would not)."""
    import shlex

    import pyarrow.parquet as pq

    bench = _bench_ctr()
    train = report["tables"]["train"]["path"]
    source = pq.ParquetFile(train)
    one_group = str(tmp_path / "one-row-group.parquet")
    pq.write_table(source.read_row_group(0), one_group)
    scale = source.metadata.num_rows / source.metadata.row_group(0).num_rows
    assert scale == 4
    for name, result in report["results"].items():
        command = shlex.split(result["commands"][0])
        assert train in command, command
        out_dir = os.path.join(report["config"]["data_dir"], f"run-{name}")  # its outputs: written elsewhere here
        baseline = [one_group if part == train else
                    part.replace(out_dir, str(tmp_path)) if part.startswith(out_dir) else part for part in command]
        imports = bench.Child([sys.executable, "-c", CONTENDER_IMPORTS[name]], str(tmp_path / f"{name}-imports")
                              ).check().peak_rss_mb
        saved = os.environ.get("NUMBA_CACHE_DIR")
        os.environ["NUMBA_CACHE_DIR"] = str(tmp_path / f"{name}-empty-numba-cache")
        try:
            one = bench.Child(baseline, str(tmp_path / f"{name}-one-group")).check().peak_rss_mb
        finally:
            if saved is None:
                os.environ.pop("NUMBA_CACHE_DIR")
            else:
                os.environ["NUMBA_CACHE_DIR"] = saved
        peak = result["peak_rss_mb"]
        print(f"{name}: peak {peak:.0f} MB; imports alone {imports:.0f} MB, one row group of {1 / scale:.0%} of the "
              f"rows {one:.0f} MB")
        assert imports <= peak <= imports + scale * (one - imports), name


@pytest.mark.slow  # five variants, each in its own subprocess: nightly
def test_train_benchmark_reports_the_caches_floors(tmp_path):
    """scripts/bench_train.py on 300k rows: the cache's summary has the same run's write floor (the cache's bytes,
    as the cache wrote them) and compute floor (every row gathered and trained on)."""
    report = tmp_path / "r.json"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench_train.py"), "--rows", "300000",
                           "--data-dir", str(tmp_path), "--repeat", "1", "--json", str(report), "--variants",
                           "decode-floor,cached-compute-floor,cache-write-floor,streamgd-1024,streamgd-1024-cached"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(report.read_text())["results"]
    assert results["cached-compute-floor"]["rows"] == results["streamgd-1024-cached"]["rows"] == 300_000
    written = sum(epoch["bytes_written"] for epoch in results["streamgd-1024-cached"]["cache"])
    assert written > 300_000 * 33 * 4 and abs(results["cache-write-floor"]["bytes"] - written) <= 0.01 * written
    assert "(cache-write-floor):" in done.stdout and "(cached-compute-floor," in done.stdout
    assert "| cache-write-floor |" not in done.stdout  # trains nothing: not a row of the rates' table
