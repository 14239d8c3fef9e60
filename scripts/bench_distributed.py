"""Distributed training on this machine: rows/s of one epoch with 1 and 2 local dask workers against one process,
the speed-up, and dask's per-round overhead (a round of empty tasks). The machine has 2 cores: read the speed-up
with that in mind.

    python3 scripts/bench_distributed.py --rows 2000000

``--ctr`` measures instead what a local-SGD round of a hashed click-log model ships (2 workers, FTRL batch 1, the
defaults of a click log): bytes per round each way and the round's time, rounds that ship the whole vectors
against rounds that ship the touched coordinates (``streamgd.distributed_rounds``), in one run:

    python3 scripts/bench_distributed.py --ctr --ctr-rows 200000 --hash-bits 24
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
    parser.add_argument("--ctr", action="store_true", help="bytes per local-SGD round of a hashed click-log model")
    parser.add_argument("--ctr-rows", type=int, default=200_000)
    parser.add_argument("--ctr-row-group", type=int, default=16_384)
    parser.add_argument("--hash-bits", type=int, default=24)
    parser.add_argument("--ships", default="whole,touched", help="--ctr: the ways of shipping to measure")
    args = parser.parse_args()
    if args.ctr:
        ctr_rounds(args)
        return

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


def ctr_rounds(args: argparse.Namespace) -> None:
    """One epoch of a click log on 2 local workers, once per way of shipping a round; a table of the rounds."""
    import numpy as np
    from dask.distributed import Client, LocalCluster

    from streamgd.bench.synthetic_ctr import make_ctr_dataset
    from streamgd.distributed import DaskEpochs
    from streamgd.training.config import TrainConfig
    from streamgd.training.trainer import Trainer

    path = os.path.join(args.data_dir, f"ctr-{args.ctr_rows}-rg{args.ctr_row_group}.parquet")
    if not os.path.exists(path):
        os.makedirs(args.data_dir, exist_ok=True)
        make_ctr_dataset(path, n_rows=args.ctr_rows, row_group_size=args.ctr_row_group, seed=1)
    cfg = dict(hash_bits=args.hash_bits, epochs=1, missing="impute")
    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        ships = args.ships.split(",")
        for ship in ships * 2:  # the first pass compiles the workers' kernels
            runner = DaskEpochs(client, round_chunks=1, ship=ship)
            started = time.perf_counter()
            model = Trainer(TrainConfig(**cfg), runner=runner).fit(path, target="label")
            wall = time.perf_counter() - started
            runner.close()
            log = runner.round_log
            rows.append((ship, len(log), np.mean([r.get("touched", 0) for r in log]),
                         np.mean([r["bytes_to_client"] for r in log]),
                         (log[0]["bytes_to_workers"], np.mean([r["bytes_to_workers"] for r in log[1:]] or [0])),
                         np.median([r["seconds"] for r in log]), wall, model.history[-1]["loss"],
                         np.count_nonzero(model.coef_), np.median([r.get("worker_seconds", np.nan) for r in log]),
                         np.median([r.get("average_seconds", np.nan) for r in log])))
            del model
    rows = rows[len(ships):]
    n_params = 8 * (2**args.hash_bits)
    print(f"\n{args.ctr_rows:,} click-log rows (row groups of {args.ctr_row_group:,}), 2^{args.hash_bits} hash "
          f"buckets (a vector of {n_params / 1e6:.0f} MB), FTRL batch 1, 2 workers, 1 chunk per worker per round, "
          f"missing numbers imputed, one epoch; {os.cpu_count()} CPUs\n")
    print("| ship | rounds | coordinates touched per round | MB to client per round "
          "| MB to workers: first round, later | round s (median) | in the worker task s | averaging s | fit s | loss "
          "| nonzero coef |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for ship, n, touched, to_client, to_workers, seconds, wall, loss, nonzero, worker_s, average_s in rows:
        print(f"| {ship} | {n} | {touched:,.0f} | {to_client / 1e6:,.2f} "
              f"| {to_workers[0] / 1e6:,.2f}, {to_workers[1] / 1e6:,.2f} | {seconds:.3f} "
              f"| {worker_s:.3f} | {average_s:.3f} | {wall:.1f} | {loss:.5f} | {nonzero:,} |")
    if len(rows) != 2:
        return
    whole, touched = rows
    print(f"\ntouched / whole: bytes to client {touched[3] / whole[3]:.4f}, "
          f"to workers after the first round {touched[4][1] / whole[4][1]:.4f}, "
          f"round time {touched[5] / whole[5]:.2f}")


if __name__ == "__main__":
    main()
