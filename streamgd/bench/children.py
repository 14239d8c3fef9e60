"""The processes the benchmark measures, and the launcher that measures them: loaded as a file of its own
(``child_command``), without importing the streamgd package, whose import alone would count in the figures.

A child's ``ru_maxrss`` starts at the RSS of the process that spawned it (Linux records the old address space's
high-water mark at ``exec``; with ``vfork`` that is the parent's), so children are spawned by this small launcher
process, never by the benchmark process itself, which may have imported streamgd or matplotlib; ``rss_floor_mb``
in each record is the launcher's high-water mark, the lower bound of that child's ``ru_maxrss``. MB are 10^6
bytes, as in ``streamgd.training.measure``.

This module imports only the standard library at import time. The baselines: the decode floor (every row group
read with pyarrow, nothing else), an in-memory full-batch NumPy logistic regression (``pq.read_table`` -> NumPy, a
few gradient steps: the approach that does not scale) and scikit-learn's ``SGDClassifier.partial_fit`` fed chunk
by chunk by streamgd's reader. ``python3 streamgd/bench/children.py decode-floor PATH`` runs one by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

MB = 1e6
THIS_FILE = os.path.abspath(__file__)
# Load this file as a standalone module (no ``import streamgd``) and run one of its child modes.
_BOOTSTRAP = ("import importlib.util, sys\n"
              "spec = importlib.util.spec_from_file_location('_streamgd_bench_child', sys.argv[1])\n"
              "module = importlib.util.module_from_spec(spec)\n"
              "sys.modules[spec.name] = module\n"
              "spec.loader.exec_module(module)\n"
              "sys.exit(module.child_main(sys.argv[2:]))\n")


def child_command(mode: str, *args: str) -> list[str]:
    """The command line of a child running ``mode`` (``measure`` or a baseline method) from this file alone."""
    return [sys.executable, "-c", _BOOTSTRAP, THIS_FILE, mode, *args]


def vm_hwm_mb() -> float:
    """This process's address-space high-water mark (what a child spawned now starts its ru_maxrss at)."""
    try:
        with open("/proc/self/status") as stream:
            for line in stream:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def launch_and_sample(cmd: list[str], interval: float, timeout: float, stdout_path: str,
                       stderr_path: str) -> dict:
    """Run ``cmd`` (in the launcher process), sampling its RSS every ``interval`` seconds, and reap it with
    ``os.wait4`` to get its own ``ru_maxrss``."""
    import psutil

    floor = vm_hwm_mb()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        try:
            handle = psutil.Process(proc.pid)
        except psutil.Error:
            handle = None
        peak, samples, timed_out = 0, 0, False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if handle is not None:
                try:
                    peak = max(peak, handle.memory_info().rss)
                    samples += 1
                except psutil.Error:
                    pass
            if not timed_out and time.perf_counter() - start > timeout:
                proc.kill()
                timed_out = True
            time.sleep(interval)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
    return {"returncode": proc.returncode, "timed_out": timed_out, "wall_seconds": wall,
            "sampled_peak_rss_mb": peak / MB, "rss_samples": samples,
            "ru_maxrss_mb": usage.ru_maxrss * 1024 / MB, "rss_floor_mb": floor}


def self_maxrss_mb() -> float:
    """This process's own peak RSS (MB), reported by every baseline child beside its figures."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def decode_floor(path: str, handle: Any = None, use_threads: bool = True) -> dict:
    """The decode floor, the one baseline every benchmark measures against: read every row group of ``path``
    with pyarrow (``handle``: an open ``ParquetFile`` or streamgd's ``MappedParquetFile``; default a plain
    ``ParquetFile``) and nothing else. Returns rows, wall seconds, rows/s and the process's CPU seconds."""
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path) if handle is None else handle
    cpu = time.process_time()
    start = time.perf_counter()
    rows = 0
    for group in range(handle.metadata.num_row_groups):
        rows += handle.read_row_group(group, use_threads=use_threads).num_rows
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / max(seconds, 1e-9),
            "cpu_seconds": time.process_time() - cpu}


def numpy_in_memory(path: str, steps: int) -> dict:
    """Load the whole table into a row-major float32 matrix, then full-batch gradient descent."""
    import numpy as np
    import pyarrow.parquet as pq

    start = time.perf_counter()
    table = pq.read_table(path)
    names = [name for name in table.column_names if name != "y"]
    n = table.num_rows
    X = np.empty((n, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        X[:, j] = table.column(name).to_numpy()
    y = table.column("y").to_numpy().astype(np.float32)
    del table
    load_seconds = time.perf_counter() - start
    w, b, lr = np.zeros(len(names), dtype=np.float32), 0.0, 0.5
    step_start = time.perf_counter()
    for _ in range(steps):
        z = X @ w + np.float32(b)
        r = 1.0 / (1.0 + np.exp(-z)) - y
        w -= np.float32(lr) * (X.T @ r) / np.float32(n)
        b -= lr * float(r.mean())
    step_seconds = (time.perf_counter() - step_start) / max(steps, 1)
    z = (X @ w + np.float32(b)).astype(np.float64)
    loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
    seconds = load_seconds + step_seconds
    return {"rows": n, "seconds": seconds, "rows_per_s": n / max(seconds, 1e-9), "load_seconds": load_seconds,
            "step_seconds": step_seconds, "steps": steps, "loss": loss}


def sklearn_partial_fit(path: str, seed: int) -> dict:
    """scikit-learn's ``SGDClassifier.partial_fit`` fed chunk by chunk by streamgd's reader (kernels compiled first,
    untimed)."""
    import numpy as np
    from sklearn.linear_model import SGDClassifier

    from streamgd import open_dataset
    from streamgd.data.reader import iter_chunks
    from streamgd.data.shuffle import make_plan

    data = open_dataset(path, target="y")
    first = data.subset(data.units[:1])
    for _ in iter_chunks(first, make_plan(first.units, "row-groups", seed=seed)):  # compiled kernels, untimed
        pass
    clf = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=seed)
    classes = np.array([0.0, 1.0])
    start = time.perf_counter()
    rows = 0
    for chunk in iter_chunks(data, make_plan(data.units, "row-groups", seed=seed)):
        clf.partial_fit(chunk.X, chunk.y, classes=classes)
        rows += chunk.n_rows
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / max(seconds, 1e-9)}


def child_main(argv: list[str]) -> int:
    """Run one child mode (``measure`` or a baseline method) and print its record as one JSON line."""
    mode, args = argv[0], argv[1:]
    if mode == "measure":
        interval, timeout, out, err = float(args[0]), float(args[1]), args[2], args[3]
        cmd = args[args.index("--") + 1:]
        print(json.dumps(launch_and_sample(cmd, interval, timeout, out, err)))
        return 0
    path = args[0]
    if mode == "decode-floor":
        result = decode_floor(path)
    elif mode == "numpy-in-memory":
        result = numpy_in_memory(path, int(args[1]))
    elif mode == "sklearn-partial-fit":
        result = sklearn_partial_fit(path, int(args[2]))
    else:
        print(f"unknown child mode {mode!r}", file=sys.stderr)
        return 2
    result["self_maxrss_mb"] = self_maxrss_mb()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
