"""First-run compile cost of the kernels: the train loop of a few loss/optimizer pairs and the README's first
command, each in a fresh process on an empty Numba cache, with streamgd's inliner copy (``streamgd.kernels.numba_inline``)
and with Numba's own (``STREAMGD_NUMBA_PER_BLOCK_COPY=1``), alternating, so both see the same machine.

    python3 scripts/bench_compile.py                 # 2 rounds
    python3 scripts/bench_compile.py --repeat 3 --skip-readme
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS = (("LOSS_LOG", "OPT_SGD"), ("LOSS_LOG", "OPT_ADAM"), ("LOSS_HINGE", "OPT_MOMENTUM"))

_TRAIN_LOOP = """
import sys, time
import numpy as np
from streamgd.kernels import api as K
from streamgd.kernels import update_rules as R
rng = np.random.default_rng(0)
X = np.asfortranarray(rng.standard_normal((4096, 8)).astype(np.float32))
y = (rng.random(4096) < 0.5).astype(float)
params = np.zeros(K.n_params(8))
K.batch_loss_grad(X, y, np.empty(0), 0, 10, params, 1, K.LOSS_LOG, np.zeros(K.N_HYPER), np.zeros(params.shape[0]))
started = time.perf_counter()
K.train_chunk(X, y, np.empty(0), params, np.zeros((2, params.shape[0])), np.zeros(K.N_HYPER), np.full(4, 0.01),
              1024, 1, getattr(K, sys.argv[1]), getattr(R, sys.argv[2]), 0)
print(time.perf_counter() - started)
"""


def _run(command: list[str], fix: bool) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of the child, its stdout) on an empty Numba cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        env.pop("STREAMGD_NUMBA_PER_BLOCK_COPY", None)
        if not fix:
            env["STREAMGD_NUMBA_PER_BLOCK_COPY"] = "1"
        with tempfile.TemporaryFile(mode="w+") as out:
            started = time.perf_counter()
            child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL, text=True)
            _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
            seconds = time.perf_counter() - started
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode != 0:
                raise SystemExit(f"{' '.join(command[:3])} ... exited with status {child.returncode}")
            out.seek(0)
            return seconds, usage.ru_maxrss / 1024, out.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-readme", action="store_true", help="only the train loops")
    args = parser.parse_args()
    results: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        readme = ["streamgd", "fit", "data/breast_cancer.parquet", "--target", "malignant", "--model", "logistic",
                  "--epochs", "30", "--out", os.path.join(scratch, "model.safetensors")]
        for _ in range(args.repeat):
            for fix in (False, True):
                for loss, opt in PAIRS:
                    _, _, out = _run([sys.executable, "-c", _TRAIN_LOOP, loss, opt], fix)
                    results.setdefault((f"train loop {loss}/{opt}", fix), []).append(float(out.strip()))
                if not args.skip_readme:
                    seconds, peak, _ = _run(readme, fix)
                    results.setdefault(("README's first command (s)", fix), []).append(seconds)
                    results.setdefault(("README's first command (peak MiB)", fix), []).append(peak)
    print("| measure | Numba's per-block copy | one memo per copy | ratio |\n|---|---|---|---|")
    for name in dict.fromkeys(n for n, _ in results):
        before, after = min(results[(name, False)]), min(results[(name, True)])
        print(f"| {name} | {before:.2f} | {after:.2f} | {before / after:.2f}x |")


if __name__ == "__main__":
    main()
