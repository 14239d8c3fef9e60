"""The compiled chunk kernel alone: one 65,536 x 32 float32 chunk held in cache, ``kernels.train_chunk`` with
plain SGD, per loss, batch size and layout (column-major as the reader delivers, row-major for comparison).
Best of 5 rounds of 10 calls. Run it from two checkouts to compare commits:

    python3 scripts/bench_kernel.py
    PYTHONPATH=/path/to/other/checkout python3 scripts/bench_kernel.py

``--sum`` times the loss-and-gradient sum of a whole chunk (``accumulate_chunk``, the full-batch and evaluation
loop) per loss and layout; with ``--baseline CHECKOUT`` it runs this checkout and the other one in alternating
child processes (``--rounds`` each, the same machine state for both) and prints the ratio of the best times.
The sum loop takes the loss at run time here, so one compiled loop serves every loss; a ratio near 1 against a
checkout that specialised it per loss says that costs nothing:

    python3 scripts/bench_kernel.py --sum --baseline /path/to/other/checkout --rounds 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

try:
    from streamgd.kernels import api as kernels
except ImportError:  # a checkout from before the kernel modules were split (for --baseline)
    from streamgd.kernels import dense as kernels

LOSSES = {"log": kernels.LOSS_LOG, "squared": kernels.LOSS_SQUARED}
SUM_CASES = (("log", "F"), ("squared", "F"), ("hinge", "F"), ("poisson", "F"), ("log", "C"), ("squared", "C"))
SUM_LOSSES = {"log": kernels.LOSS_LOG, "squared": kernels.LOSS_SQUARED, "hinge": kernels.LOSS_HINGE,
              "poisson": kernels.LOSS_POISSON}


def time_chunk(X: np.ndarray, y: np.ndarray, loss: int, batch_size: int, rounds: int = 5, calls: int = 10) -> float:
    """Best seconds per ``train_chunk`` call."""
    n, d = X.shape
    lrs = np.full(-(-n // batch_size), 0.01)
    hyper = np.zeros(kernels.N_HYPER)

    def call() -> None:
        kernels.train_chunk(X, y, np.empty(0), np.zeros(d + 1), np.zeros((0, d + 1)), hyper, lrs, batch_size, 1,
                            loss, kernels.OPT_SGD, 0)

    call()  # compile or load the cache outside the timing
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def time_sum(X: np.ndarray, y: np.ndarray, loss: int, rounds: int = 5, calls: int = 10) -> float:
    """Best seconds per ``accumulate_chunk`` call (the whole chunk's loss and gradient sum)."""
    n, d = X.shape
    hyper = np.zeros(kernels.N_HYPER)
    hyper[kernels.H_HUBER_EPS] = 1.0
    params = np.full(d + 1, 0.01)
    grad_sum = np.zeros(d + 1)

    def call() -> None:
        kernels.accumulate_chunk(X, y, np.empty(0), params, 1, loss, hyper, grad_sum)

    call()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def sum_times(values: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {f"{name}/{layout}": time_sum(np.asarray(values, order=layout), y, SUM_LOSSES[name])
            for name, layout in SUM_CASES}


def compare_sums(args: argparse.Namespace) -> None:
    """This checkout against ``args.baseline``, in alternating child processes."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    sides = {"this": os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "baseline": args.baseline}
    caches = {side: tempfile.mkdtemp(prefix=f"bench-kernel-{side}-") for side in sides}
    best: dict[str, dict[str, float]] = {side: {} for side in sides}
    for _ in range(args.rounds):
        for side, root in sides.items():
            env = dict(os.environ, PYTHONPATH=root, NUMBA_CACHE_DIR=caches[side])
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--sum-child", "--rows", str(args.rows),
                                   "--features", str(args.features)], env=env, capture_output=True, text=True,
                                  check=True)
            for case, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
                best[side][case] = min(best[side].get(case, float("inf")), seconds)
    print("| loss/layout | this: ms per chunk | baseline: ms per chunk | ratio this/baseline |")
    print("|---|---|---|---|")
    for case in best["this"]:
        this, base = best["this"][case], best["baseline"][case]
        print(f"| {case} | {this * 1e3:.3f} | {base * 1e3:.3f} | {this / base:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=65_536)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--sum", action="store_true", help="time the loss-and-gradient sum instead of training")
    parser.add_argument("--baseline", help="with --sum: another checkout to compare with, in alternating processes")
    parser.add_argument("--rounds", type=int, default=3, help="with --baseline: child processes per checkout")
    parser.add_argument("--sum-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sum and args.baseline:
        compare_sums(args)
        return
    rng = np.random.default_rng(0)
    values = rng.standard_normal((args.rows, args.features)).astype(np.float32)
    y = (rng.random(args.rows) < 0.5).astype(np.float64)
    if args.sum_child or args.sum:
        import json

        times = sum_times(values, y)
        if args.sum_child:
            print(json.dumps(times))
            return
        print("| loss/layout | ms per chunk |")
        print("|---|---|")
        for case, seconds in times.items():
            print(f"| {case} | {seconds * 1e3:.3f} |")
        return
    print("| loss | batch | layout | ms per chunk | rows/s |")
    print("|---|---|---|---|---|")
    for name, loss in LOSSES.items():
        for batch_size in (1, 32, 1024):
            for layout in ("F", "C"):
                seconds = time_chunk(np.asarray(values, order=layout), y, loss, batch_size)
                print(f"| {name} | {batch_size} | {layout} | {seconds * 1e3:.2f} | {args.rows / seconds / 1e6:.1f}M |")


if __name__ == "__main__":
    main()
