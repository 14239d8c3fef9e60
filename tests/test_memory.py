"""Streaming memory stays flat as the data grows (peak RSS measured in a fresh subprocess per size)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

STREAM = r"""
import json, resource, sys
from streamgd.cli.allocators import arrow_jemalloc_by_default
arrow_jemalloc_by_default()  # as the command line does, before pyarrow loads
import numpy as np
from streamgd import open_dataset
from streamgd.data.memory_plan import plan_for_dataset
from streamgd.data.reader import iter_chunks, parse_memory_budget
from streamgd.data.shuffle import make_plan
path, budget = sys.argv[1], sys.argv[2]
limit = None
if budget != "none":  # as `streamgd fit --memory-budget` sets up its allocators
    from streamgd.cli.allocators import map_large_arrays_directly, prefer_jemalloc
    prefer_jemalloc(); map_large_arrays_directly()
    limit = plan_for_dataset(parse_memory_budget(budget), open_dataset(path, target="y"), 4, 2).max_unit_rows
data = open_dataset(path, target="y", max_unit_rows=limit)
anon_peak = [0]
if len(sys.argv) > 3:  # the data plane's own memory: anonymous pages (resident minus file-backed), sampled each ms
    import os, threading, time
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
    def sample(fd=os.open("/proc/self/statm", os.O_RDONLY)):
        while True:
            resident, shared = map(int, os.pread(fd, 200, 0).split()[1:3])
            anon_peak[0] = max(anon_peak[0], (resident - shared) * page_mb)
            time.sleep(0.001)
    threading.Thread(target=sample, daemon=True).start()
rows = 0
for epoch in range(2):
    for chunk in iter_chunks(data, make_plan(data.units, "row-groups", seed=0, epoch=epoch)):
        rows += chunk.n_rows
# VmHWM, this process image's own high-water mark: ru_maxrss starts at the launching process's (pytest's) peak,
# which a child spawned with vfork + exec inherits
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
try:
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    pass
print(json.dumps({"rows": rows, "units": len(data.units), "peak_mb": peak, "anon_peak_mb": anon_peak[0]}), flush=True)
import os
os._exit(0)  # as the command line exits: pyarrow can abort at teardown after the work (apache/arrow#34314)
"""

WRITE = r"""
import sys
from streamgd.bench.synthetic import make_dataset
make_dataset(sys.argv[1], n_rows=int(sys.argv[2]), n_features=32, row_group_size=int(sys.argv[3]), seed=1)
"""


def run_python(code, *args):
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory")
    paths = {}
    for name, rows, group in [("tiny", 64, 65_536), ("small", 200_000, 65_536), ("large", 2_000_000, 65_536),
                              ("giant", 2_000_000, 2_000_000)]:
        paths[name] = str(root / f"{name}.parquet")
        run_python(WRITE, paths[name], rows, group)
    return paths


def median_peaks(path, budget, *options, runs=3):
    """The median of each figure ``STREAM`` reports, over fresh processes (one run's peak moves by up to ~60 MB
    with allocator timing), and the first run. ``options``: STREAM's optional arguments ("sample": anonymous
    memory too)."""
    found = [run_python(STREAM, path, budget, *options) for _ in range(runs)]
    return {key: sorted(run[key] for run in found)[runs // 2] for key in ("peak_mb", "anon_peak_mb")}, found[0]


def in_memory_mb(rows):
    """What holding ``rows`` rows in memory would take: 32 float32 features and a float32 target."""
    return rows * 33 * 4 / 2**20


def test_peak_rss_at_10x_rows_stays_flat(files):
    (small, small_run), (large, large_run) = (median_peaks(files[n], "none") for n in ("small", "large"))
    small, large = small["peak_mb"], large["peak_mb"]
    assert large_run["rows"] == 10 * small_run["rows"] == 4_000_000
    # measured here (pyarrow 26, numba 0.68, VmHWM, jemalloc as Arrow's C++ default as the command line sets it):
    # medians ~272 MB and ~287 MB (1.05x; with mimalloc left as the C++ default ~303 and ~322), i.e. the
    # interpreter and libraries (~230 MB), numba's LLVM on first call, pyarrow's readers and the chunks in
    # flight. The 1.8M rows more would take 238 MB in memory; a streaming reader must grow by a small fraction.
    growth = large - small
    assert growth < 0.3 * in_memory_mb(1_800_000), (small, large)
    assert large <= 1.15 * small, (small, large)
    # under a memory budget freed chunks go back to the system: measured 271-272 MB and 276 MB (1.016-1.018x)
    small, large = (median_peaks(files[n], "64MB")[0]["peak_mb"] for n in ("small", "large"))
    assert large <= 1.04 * small, (small, large)


def test_one_giant_row_group_streams_within_its_memory_budget(files):
    """The budget counts the page buffers of a row group read in slices: a budget below them is refused, and a
    run within one stays within it: its anonymous memory (what the data plane allocates) over the zero-rows run's at
    most the budget + 10%, and its whole peak RSS, file-backed pages too, within 1.25x the budget."""
    from streamgd.errors import ConfigError
    from streamgd.data.memory_plan import plan_for_dataset
    from streamgd import open_dataset

    with pytest.raises(ConfigError, match="page buffers of 33 columns hold about"):
        plan_for_dataset(64_000_000, open_dataset(files["giant"], target="y"), 4, 2)
    budget = 240_000_000
    zero_rows, _ = median_peaks(files["tiny"], "240MB", "sample")
    giant, giant_run = median_peaks(files["giant"], "240MB", "sample")
    assert giant_run["units"] > 20  # the 2M-row row group was cut into slices
    anon = giant["anon_peak_mb"] - zero_rows["anon_peak_mb"]
    whole = giant["peak_mb"] - zero_rows["peak_mb"]
    # measured here (MiB, medians of 3) with a fifth of the budget kept back for the allocators: anonymous memory
    # 100 with zero rows, 216-220 for the giant row group under 240 MB (116-120 over, 0.51-0.52x the budget); VmHWM
    # 237 and 369-373 (132-136 over, 0.58-0.60x), under 200 MB 0.55-0.65x, under 300 MB 0.67-0.72x. Planned with
    # the whole budget the same machine measured 0.68x under 160 MB (VmHWM), another 1.0-1.23x and one CI run there
    # 1.26x (192 MiB over, its zero-rows run 67 MiB above this machine's, the same packages): the reserve is for
    # machines like that one, and the whole-process bound leaves room for their file-backed pages
    assert anon <= 1.1 * budget / 2**20, (zero_rows, giant)
    assert whole <= 1.25 * budget / 2**20, (zero_rows, giant)
