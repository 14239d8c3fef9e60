"""Distributed training on this machine: rows/s of one epoch with 1 and 2 local dask workers against one process,
the speed-up, and dask's per-round overhead (a round of empty tasks). The machine has 2 cores: read the speed-up
with that in mind.

    python3 scripts/bench_distributed.py --rows 2000000
"""

from __future__ import annotations

import argparse
import os
import time


def _noop(x: int) -> int:
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--data-dir", default="bench-data")
    parser.add_argument("--round-chunks", type=int, default=4)
    args = parser.parse_args()

    from dask.distributed import Client, LocalCluster

    import streamgd
    from streamgd.distributed import fit_distributed
    from streamgd.bench.synthetic import make_dataset

    path = os.path.join(args.data_dir, f"logistic-{args.rows}x{args.features}.parquet")
    if not os.path.exists(path):
        make_dataset(path, n_rows=args.rows, n_features=args.features, task="binary", seed=0)
    options = dict(model="logistic", batch_size=1024, epochs=2, standardize=False)
    streamgd.fit(path, target="y", epochs=1, features=["x0"])  # compile outside the timings
    rows = []
    model = streamgd.fit(path, target="y", **options)
    rows.append(("one process", model.history[-1]["rows_per_s"], model.history[-1]["loss"], "-"))
    for n_workers in (1, 2):
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            client.gather(client.map(_noop, range(n_workers)))  # workers up
            started = time.perf_counter()
            for i in range(20):
                client.gather(client.map(_noop, [i * 10 + k for k in range(n_workers)], pure=False))
            overhead_ms = (time.perf_counter() - started) / 20 * 1000
            model = fit_distributed(path, target="y", client=client, round_chunks=args.round_chunks, **options)
            rows.append((f"dask, {n_workers} worker(s)", model.history[-1]["rows_per_s"], model.history[-1]["loss"],
                         f"{overhead_ms:.1f}"))
    base = rows[0][1]
    print(f"\n{args.rows:,} rows x {args.features} float32 features, logistic, batch 1,024, second epoch, "
          f"{os.cpu_count()} CPUs\n")
    print("| run | rows/s | x one process | loss | dask round overhead ms |")
    print("|---|---|---|---|---|")
    for name, rate, loss, overhead in rows:
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f} | {loss:.4f} | {overhead} |")


if __name__ == "__main__":
    main()
