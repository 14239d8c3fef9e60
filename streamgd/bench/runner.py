"""Running the benchmark: datasets generated once and cached, every method in a measured child process (spawned by
the launcher of ``streamgd.bench.children``), repeated runs merged, and the machine described.

For each dataset size (synthetic binary problems written by :func:`streamgd.bench.synthetic.make_dataset`, cached in a
data directory), every method runs in its own subprocess: streamgd's variants as ``python3 -m streamgd.cli.main
fit PATH --target y --model logistic --epochs 1 --json --quiet ...``, the baselines from
``streamgd.bench.children``; and once, each streamgd method on a 64-row file: the "zero-rows" RSS of a process that
imports streamgd and loads its compiled kernels. Peak RSS is measured two ways: sampled with psutil every ~20 ms,
and the kernel's exact high-water mark (``ru_maxrss`` from ``os.wait4`` of that very child).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from .children import MB, child_command
from .methods import NUMPY_MEMORY_FRACTION, STREAMGD_METHODS, TINY_ROWS, BenchConfig

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dataset_path(config: BenchConfig, n_rows: int) -> str:
    """Where the dataset of ``n_rows`` rows of this configuration is cached."""
    return os.path.join(config.data_dir, f"logistic-{n_rows}x{config.n_features}-rg{config.row_group_size}"
                                         f"-seed{config.seed}.parquet")


def ensure_dataset(config: BenchConfig, n_rows: int) -> tuple[str, bool]:
    """The cached dataset of ``n_rows`` rows, generated (in a subprocess, written to a temporary name and renamed
    when complete) if absent. Returns its path and whether it was generated now."""
    path = dataset_path(config, n_rows)
    if os.path.exists(path):
        return path, False
    os.makedirs(config.data_dir, exist_ok=True)
    partial = f"{path}.partial-{os.getpid()}"
    code = ("import sys\nfrom streamgd.bench.synthetic import make_dataset\n"
            "make_dataset(sys.argv[1], n_rows=int(sys.argv[2]), n_features=int(sys.argv[3]), task='binary',"
            " row_group_size=int(sys.argv[4]), seed=int(sys.argv[5]))\n")
    try:
        subprocess.run([sys.executable, "-c", code, partial, str(n_rows), str(config.n_features),
                        str(config.row_group_size), str(config.seed)], check=True, capture_output=True, text=True)
        os.replace(partial, path)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"generating {path} failed: {exc.stderr.strip()}") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path, True


def warm_page_cache(path: str) -> None:
    """Read the file once so that every method reads it from the page cache (not counted in RSS)."""
    with open(path, "rb") as stream:
        while stream.read(1 << 24):
            pass


def measure_command(cmd: Sequence[str], interval: float = 0.02, timeout: float = 3600.0) -> dict:
    """Run ``cmd`` in a subprocess spawned by a small launcher; return its exit status, stdout, stderr, wall
    time and peak RSS (psutil samples and ``ru_maxrss``, MB)."""
    with tempfile.TemporaryDirectory(prefix="streamgd-bench-") as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        launcher = child_command("measure", str(interval), str(timeout), out, err, "--", *cmd)
        done = subprocess.run(launcher, capture_output=True, text=True, timeout=timeout + 120)
        if done.returncode != 0 or not done.stdout.strip():
            raise RuntimeError(f"the measuring launcher failed ({done.returncode}): {done.stderr.strip()}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        with open(out, errors="replace") as stream:
            result["stdout"] = stream.read()
        with open(err, errors="replace") as stream:
            result["stderr"] = stream.read()
    return result


def fit_command(path: str, method: str, config: BenchConfig) -> list[str]:
    """The ``streamgd fit`` command line of a streamgd method."""
    extra = [arg.format(budget=config.memory_budget_mb) for arg in STREAMGD_METHODS[method]]
    return [sys.executable, "-m", "streamgd.cli.main", "fit", path, "--target", "y", "--model", "logistic",
            "--epochs", "1", "--json", "--quiet", "--seed", str(config.seed), *extra]


def baseline_command(path: str, method: str, config: BenchConfig) -> list[str]:
    """The command line of a baseline method, run from ``streamgd.bench.children`` alone."""
    return child_command(method, path, str(config.numpy_steps), str(config.seed))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def run_method(config: BenchConfig, method: str, path: str, n_rows: int) -> dict:
    """Run ``method`` once on ``path`` in a subprocess; return its measurement record."""
    streamgd = method in STREAMGD_METHODS
    cmd = fit_command(path, method, config) if streamgd else baseline_command(path, method, config)
    record: dict[str, Any] = {"method": method, "kind": "streamgd" if streamgd else "baseline", "rows": n_rows,
                              "features": config.n_features, "status": "ok"}
    measured = measure_command(cmd, interval=config.sample_interval, timeout=config.timeout)
    stdout, stderr = measured.pop("stdout"), measured.pop("stderr")
    record.update(measured)
    record["peak_rss_mb"] = max(measured["sampled_peak_rss_mb"], measured["ru_maxrss_mb"])
    record["command"] = " ".join(["python3", *cmd[1:]] if streamgd else ["python3", "streamgd/bench/children.py", method,
                                                                          *cmd[5:]])
    if measured["returncode"] != 0 or measured["timed_out"]:
        why = "timed out" if measured["timed_out"] else f"exit status {measured['returncode']}"
        record.update(status="failed", error=f"{why}: {_last_line(stderr) or '(no output)'}")
        return record
    try:
        reported = json.loads(_last_line(stdout))
    except json.JSONDecodeError:
        record.update(status="failed", error=f"no JSON on stdout: {_last_line(stdout)[:200]!r}")
        return record
    if streamgd:
        epoch = reported["epochs"][0]
        record.update(rows_done=epoch["rows"], seconds=epoch["seconds"], rows_per_s=epoch["rows_per_s"],
                      loss=epoch["loss"], reported_peak_rss_mb=epoch.get("peak_rss_mb"),
                      process_seconds=reported.get("seconds"))
    else:
        record.update({k: v for k, v in reported.items() if k != "rows"})
        record["rows_done"] = reported["rows"]
    record["wall_rows_per_s"] = record["rows_done"] / max(measured["wall_seconds"], 1e-9)
    if record["rows_done"] != n_rows and n_rows > TINY_ROWS:
        record.update(status="failed", error=f"processed {record['rows_done']:,} rows, expected {n_rows:,}")
    return record


def _numpy_bytes_needed(n_rows: int, n_features: int) -> int:
    # the Arrow table (float32 + int64 target), the row-major float32 copy, a column being concatenated, the
    # float32 target and a few float32 vectors of n_rows (margins, probabilities, residuals)
    return n_rows * (4 * n_features + 8 + 4 * n_features + 4 + 4 + 4 * 4)


def _available_bytes() -> int:
    import psutil

    return psutil.virtual_memory().available


def merge_runs(runs: list[dict]) -> dict:
    """One record from repeated runs: the fastest run's throughput, the median peak RSS (every run's kept)."""
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return runs[-1]
    best = dict(max(ok, key=lambda r: r.get("rows_per_s") or 0.0))
    for key in ("peak_rss_mb", "sampled_peak_rss_mb", "ru_maxrss_mb"):
        best[key] = statistics.median(r[key] for r in ok)
    best["runs"] = len(runs)
    if len(ok) > 1:
        best["rows_per_s_runs"] = [r.get("rows_per_s") for r in ok]
        best["peak_rss_mb_runs"] = [r["peak_rss_mb"] for r in ok]
    return best


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", _REPO_ROOT, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine_info() -> dict:
    """CPU count and model, total memory, OS, Python and library versions, the git commit (if any)."""
    from importlib import metadata

    import psutil

    versions = {}
    for name in ("streamgd", "numpy", "pyarrow", "numba", "llvmlite", "scikit-learn", "matplotlib", "psutil"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as stream:
            cpu_model = next((line.split(":", 1)[1].strip() for line in stream if line.startswith("model name")),
                             None)
    except OSError:
        pass
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"cpu_count": os.cpu_count(), "cpu_model": cpu_model or platform.processor() or None,
            "memory_total_mb": round(psutil.virtual_memory().total / MB),
            "memory_available_mb": round(psutil.virtual_memory().available / MB),
            "platform": platform.platform(), "python": platform.python_version(),
            "python_implementation": platform.python_implementation(), "versions": versions,
            "git_commit": commit, "git_dirty": bool(status) if status is not None else None,
            "arrow_memory_pool_env": os.environ.get("ARROW_DEFAULT_MEMORY_POOL"),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def run_benchmark(config: BenchConfig, log: Callable[[str], None] | None = None) -> dict:
    """Generate (or reuse) the datasets and measure every method at every size; return the results dict."""
    config.validate()
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    started = time.perf_counter()

    def say(message: str) -> None:
        log(f"[{time.perf_counter() - started:6.1f}s] {message}")

    sizes = sorted(config.sizes)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    machine = machine_info()
    data: dict[str, dict] = {}
    for n in [TINY_ROWS, *sizes]:
        t = time.perf_counter()
        path, generated = ensure_dataset(config, n)
        data[str(n)] = {"path": path, "generated": generated, "bytes": os.path.getsize(path),
                        "seconds": round(time.perf_counter() - t, 2)}
        say(f"data {n:,} rows x {config.n_features}: {path} ({'generated' if generated else 'cached'}, "
            f"{os.path.getsize(path) / MB:,.0f} MB)")

    streamgd_methods = [m for m in config.methods if m in STREAMGD_METHODS]
    tiny = data[str(TINY_ROWS)]["path"]
    warmup, zero_rows = {}, {}
    for method in streamgd_methods:  # the first run may compile and cache the kernels: not measured
        first = run_method(config, method, tiny, TINY_ROWS)
        warmup[method] = {"wall_seconds": round(first["wall_seconds"], 3), "status": first["status"],
                          "error": first.get("error")}
    for method in streamgd_methods:
        zero_rows[method] = merge_runs([run_method(config, method, tiny, TINY_ROWS) for _ in range(config.repeat)])
        say(f"zero-rows {method}: peak RSS {zero_rows[method]['peak_rss_mb']:.0f} MB "
            f"(wall {zero_rows[method]['wall_seconds']:.2f} s)")

    measurements = []
    for n in sizes:
        path = data[str(n)]["path"]
        warm_page_cache(path)
        runs: dict[str, list[dict]] = {}
        order: list[str] = []
        others = [m for m in config.methods if m != "decode-floor"]
        for _ in range(config.repeat):  # interleaved, so that drifting load hits every method alike
            order += others
        if "decode-floor" in config.methods:
            order = ["decode-floor", *order] + ["decode-floor"] * (config.floor_repeat - 1)
        for method in order:
            if method == "numpy-in-memory":
                need, available = _numpy_bytes_needed(n, config.n_features), _available_bytes()
                if need > NUMPY_MEMORY_FRACTION * available:
                    runs.setdefault(method, []).append(
                        {"method": method, "kind": "baseline", "rows": n, "features": config.n_features,
                         "status": "skipped", "error": f"needs ~{need / MB:,.0f} MB, {available / MB:,.0f} MB "
                                                       f"available"})
                    say(f"{n:,} rows: {method} skipped (needs ~{need / MB:,.0f} MB)")
                    continue
            record = run_method(config, method, path, n)
            runs.setdefault(method, []).append(record)
            if record["status"] == "ok":
                say(f"{n:,} rows: {method}: {record['rows_per_s']:,.0f} rows/s, peak RSS "
                    f"{record['peak_rss_mb']:.0f} MB, wall {record['wall_seconds']:.2f} s")
            else:
                say(f"{n:,} rows: {method}: {record['status']}: {record.get('error')}")
        for method in config.methods:
            if method in runs:
                measurements.append(merge_runs(runs[method]))

    return {
        "schema": 1,
        "created": created,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine,
        "config": {**dataclasses.asdict(config), "methods": list(config.methods), "tiny_rows": TINY_ROWS},
        "data": data,
        "units": "MB = 10^6 bytes; rows_per_s: streamgd = the epoch's rows/s as streamgd fit --json reports it "
                 "(kernel loading included); decode-floor and sklearn = the timed read/train loop; "
                 "numpy-in-memory = rows / (load + one gradient step); wall_rows_per_s = rows / whole process",
        "warmup": warmup,
        "zero_rows": zero_rows,
        "measurements": measurements,
    }
