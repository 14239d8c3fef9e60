"""The compiled chunk kernel alone: one 65,536 x 32 float32 chunk held in cache, ``kernels.train_chunk`` with
plain SGD, per loss, batch size and layout (column-major as the reader delivers, row-major for comparison).
Best of 5 rounds of 10 calls. Run it from two checkouts to compare commits:

    python3 scripts/bench_kernel.py
    PYTHONPATH=/path/to/other/checkout python3 scripts/bench_kernel.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from streamgd.kernels import api as kernels

LOSSES = {"log": kernels.LOSS_LOG, "squared": kernels.LOSS_SQUARED}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=65_536)
    parser.add_argument("--features", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    values = rng.standard_normal((args.rows, args.features)).astype(np.float32)
    y = (rng.random(args.rows) < 0.5).astype(np.float64)
    print("| loss | batch | layout | ms per chunk | rows/s |")
    print("|---|---|---|---|---|")
    for name, loss in LOSSES.items():
        for batch_size in (1, 32, 1024):
            for layout in ("F", "C"):
                seconds = time_chunk(np.asarray(values, order=layout), y, loss, batch_size)
                print(f"| {name} | {batch_size} | {layout} | {seconds * 1e3:.2f} | {args.rows / seconds / 1e6:.1f}M |")


if __name__ == "__main__":
    main()
