"""The click-log training loop alone: ``train_chunk`` at batch size 1 on chunks already in memory (a FeatureSpec's
hashed slots and dense columns, as the trainer hands them over), the general mini-batch loop of
``streamgd.kernels.sparse`` against the batch-1 loop of ``streamgd.kernels.sparse_rows`` (fused, and stepping a copy
with ``apply_update``), each on parameters and
optimizer state held as separate arrays ("split") and as one per-coordinate block ("block",
``streamgd.optim.state.coordinate_block``).

    python3 scripts/bench_sparse_loop.py /work/ctr/ctr-1000000-seed0-model0-rg65536.parquet --chunks 6

The chunks are captured from one ``streamgd.fit`` (target ``label``, every other column a feature, ``--hash-bits``)
by wrapping the kernel call, then each variant trains from zero parameters over all of them; the variants
alternate within each of ``--rounds`` rounds and the report gives each one's median microseconds a row and its
ratio to the general loop on split arrays (the code before the batch-1 loop) of the same rounds. On a shared
machine the ratios are the result; the absolute figures move with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

import numpy as np

import streamgd
from streamgd.kernels import api as kernel_api
from streamgd.kernels import sparse as sparse_kernels
from streamgd.kernels.arguments import SparseArrays
from streamgd.optim import make_optimizer
from streamgd.optim.state import initial_state, kernel_hyper

VARIANTS = {  # name: (the batch-1 loop, per-coordinate block, its fused form)
    "general/split": (False, False, True),
    "general/block": (False, True, True),
    "batch1-copy/block": (True, True, False),  # the batch-1 loop stepping a copy with apply_update
    "batch1/split": (True, False, True),
    "batch1/block": (True, True, True),
}
# where the time goes: the batch-1 loop on the block with the slots folded into the first 4,096 (what it costs
# when every slot it touches is in cache), without the dense columns (the slots' share), without the L2 penalty
# (alpha 0: AdaGrad's slots then keep no decay stamps, so no exp catches them up, and its dense coordinates get
# no L2 gradient, so their zero steps are left), and the margins and losses alone (every weight read, nothing
# written)
PROBES = ("batch1/block/in-cache", "batch1/block/no-dense", "batch1/block/no-l2", "margins-only")
FOLD = 4096


def capture_chunks(path: str, target: str, hash_bits: int, n_chunks: int) -> tuple[list[tuple], np.ndarray, int]:
    """The first ``n_chunks`` chunks one FTRL epoch trains on (copies of X, y, the sparse block), the run's kernel
    hyperparameters and the model's number of features."""
    chunks: list[tuple] = []
    seen: dict = {}
    original = kernel_api.train_chunk

    def capturing(X, y, sample_weight, params, opt_state, hyper, *args, sparse=None, **kwargs):
        if len(chunks) < n_chunks:
            block = SparseArrays(sparse.indptr.copy(), sparse.indices.copy(), sparse.values.copy(), int(sparse.n_slots))
            chunks.append((np.asfortranarray(X).copy(), np.array(y, dtype=np.float64), block))
            seen["hyper"], seen["n_par"] = np.array(hyper), params.shape[0]
        return original(X, y, sample_weight, params, opt_state, hyper, *args, sparse=sparse, **kwargs)

    kernel_api.train_chunk = capturing
    try:
        streamgd.fit(path, target=target, optimizer="ftrl", batch_size=1, epochs=1, hash_bits=hash_bits,
                     validation=0.0, missing="impute")
    finally:
        kernel_api.train_chunk = original
    return chunks, seen["hyper"], seen["n_par"]


def fresh_state(optimizer_name: str, run_hyper: np.ndarray, n_par: int, n_slots: int, block: bool):
    optimizer = make_optimizer(optimizer_name)
    hyper = kernel_hyper(optimizer, run_hyper[kernel_api.H_ALPHA], run_hyper[kernel_api.H_L1_RATIO],
                         run_hyper[kernel_api.H_CLIP_NORM], run_hyper[kernel_api.H_HUBER_EPS])
    params, opt_state = initial_state(optimizer, hyper, n_par - 1, 1, n_slots, False, per_coordinate=block)
    return optimizer, hyper, params, opt_state


def train_all(chunks: list[tuple], optimizer_name: str, run_hyper: np.ndarray, n_par: int, variant: str,
              lr: float) -> tuple[float, np.ndarray]:
    """Seconds spent in the training calls over every chunk from zero parameters, and the final parameters."""
    per_row, block, fused = VARIANTS.get(variant, (True, True, True))
    n_slots = chunks[0][2].n_slots
    no_dense = variant == "batch1/block/no-dense"
    if no_dense:
        n_par = n_slots + 1
    if variant == "batch1/block/no-l2":
        run_hyper = run_hyper.copy()
        run_hyper[kernel_api.H_ALPHA] = 0.0
    optimizer, hyper, params, opt_state = fresh_state(optimizer_name, run_hyper, n_par, n_slots, block)
    wall = cpu = 0.0
    step = 0
    for X, y, sparse in chunks:
        if no_dense:
            X = np.empty((X.shape[0], 0), dtype=X.dtype, order="F")
        if variant == "batch1/block/in-cache":
            sparse = SparseArrays(sparse.indptr, sparse.indices % np.int32(FOLD), sparse.values, sparse.n_slots)
        lrs = np.full(X.shape[0], lr)
        start, start_cpu = time.perf_counter(), time.thread_time()
        if variant == "margins-only":
            kernel_api.chunk_loss(X, y, np.empty(0), params, 1, kernel_api.LOSS_LOG, hyper, sparse=sparse)
            done, status = X.shape[0], 0
        else:
            _, done, status = sparse_kernels.train_chunk(X, sparse, y, np.empty(0), params, opt_state, hyper, lrs, 1,
                                                         1, kernel_api.LOSS_LOG, optimizer.code, step,
                                                         per_row=per_row, fused=fused)
        wall += time.perf_counter() - start
        cpu += time.thread_time() - start_cpu
        assert status == 0 and done == X.shape[0], (variant, status)
        step += X.shape[0]
    return (wall, cpu), np.array(params)


THREAD_MODES = {  # what two training threads share: where --threads 2 stands, and what would lift it
    "shared": "one model, every row writes its dense coefficients and intercept (Hogwild, as --threads runs)",
    "no-dense": "one model without the dense columns: only the intercept shared by every row (the most "
                "per-thread dense coefficients could give)",
    "private": "a model per thread: nothing shared but the memory bus and the caches (the machine's ceiling)",
}


def train_threads(chunks: list[tuple], optimizer_name: str, run_hyper: np.ndarray, n_par: int, n_threads: int,
                  mode: str, lr: float) -> tuple[float, float]:
    """Wall seconds for ``n_threads`` threads to train every chunk once with the batch-1 loop on the block,
    taking chunks in order as ``streamgd.training.threads`` deals them (the compiled loop releases the GIL), and
    the threads' CPU seconds (summed: what sharing costs shows there even when the machine's load leaves the
    threads less than a core each)."""
    n_slots = chunks[0][2].n_slots
    if mode == "no-dense":
        n_par = n_slots + 1
        chunks = [(np.empty((X.shape[0], 0), dtype=X.dtype, order="F"), y, sparse) for X, y, sparse in chunks]
    models = [fresh_state(optimizer_name, run_hyper, n_par, n_slots, True)
              for _ in range(n_threads if mode == "private" else 1)]
    lock = threading.Lock()
    taken = [0]
    cpu = [0.0] * n_threads

    def work(number: int) -> None:
        optimizer, hyper, params, opt_state = models[number % len(models)]
        started = time.thread_time()
        while True:
            with lock:
                if taken[0] == len(chunks):
                    cpu[number] = time.thread_time() - started
                    return
                X, y, sparse = chunks[taken[0]]
                taken[0] += 1
            lrs = np.full(X.shape[0], lr)
            _, done, status = sparse_kernels.train_chunk(X, sparse, y, np.empty(0), params, opt_state, hyper, lrs, 1,
                                                         1, kernel_api.LOSS_LOG, optimizer.code, 0)
            assert status == 0 and done == X.shape[0], (mode, status)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, sum(cpu)


def thread_report(chunks: list[tuple], run_hyper: np.ndarray, n_par: int, n_threads: int, rounds: int) -> dict:
    """Each mode of ``THREAD_MODES`` on one thread and on ``n_threads``, alternated: the median us a row and the
    rate's ratio (the speed-up of more threads on the same rows)."""
    rows = sum(X.shape[0] for X, _, _ in chunks)
    lr = make_optimizer("ftrl").base_lr(False, 1)
    train_threads(chunks[:1], "ftrl", run_hyper, n_par, 1, "no-dense", lr)  # compile the no-dense loop's types
    times: dict[tuple[str, int], list[float]] = {(m, k): [] for m in THREAD_MODES for k in (1, n_threads)}
    cpu: dict[tuple[str, int], list[float]] = {key: [] for key in times}
    for _ in range(rounds):
        for mode, k in times:
            wall, used = train_threads(chunks, "ftrl", run_hyper, n_par, k, mode, lr)
            times[mode, k].append(wall / rows * 1e6)
            cpu[mode, k].append(used / rows * 1e6)
    print(f"\nftrl, {n_threads} threads against 1 (wall us a row and the threads' CPU us a row, medians of {rounds}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    report = {}
    for mode, meaning in THREAD_MODES.items():
        one, many = statistics.median(times[mode, 1]), statistics.median(times[mode, n_threads])
        one_cpu, many_cpu = statistics.median(cpu[mode, 1]), statistics.median(cpu[mode, n_threads])
        print(f"  {mode:9s} 1 thread {one:6.3f} (cpu {one_cpu:.3f})  {n_threads} threads {many:6.3f} "
              f"(cpu {many_cpu:.3f})  x{one / many:4.2f}; from the CPU a row, with a core a thread: x{n_threads * one_cpu / many_cpu:4.2f}")
        print(f"            {meaning}")
        report[mode] = {"one": times[mode, 1], "many": times[mode, n_threads], "speedup": one / many,
                        "one_cpu": cpu[mode, 1], "many_cpu": cpu[mode, n_threads]}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--target", default="label")
    parser.add_argument("--hash-bits", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=6, help="chunks of the file to train on (65,536 rows each)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--optimizers", default="ftrl,adagrad")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-probes", action="store_true", help="leave out " + ", ".join(PROBES))
    parser.add_argument("--threads", type=int, default=0,
                        help="also train FTRL on this many threads at once against one (see THREAD_MODES)")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()

    chunks, run_hyper, n_par = capture_chunks(args.path, args.target, args.hash_bits, args.chunks)
    rows = sum(X.shape[0] for X, _, _ in chunks)
    entries = sum(s.indices.shape[0] for _, _, s in chunks)
    print(f"{len(chunks)} chunks, {rows:,} rows, {entries / rows:.1f} slots and {chunks[0][0].shape[1]} dense "
          f"columns a row, {chunks[0][2].n_slots:,} slots; medians of {args.rounds} rounds, variants alternated")
    variants = args.variants.split(",") + ([] if args.no_probes else list(PROBES))
    report: dict = {"rows": rows, "rounds": args.rounds, "results": {}}
    for name in filter(None, args.optimizers.split(",")):  # "" : the threads alone
        lr = make_optimizer(name).base_lr(False, 1)
        finals = {}
        for variant in variants:  # compile (or load) outside the timing; the results must agree
            finals[variant] = train_all(chunks[:1], name, run_hyper, n_par, variant, lr)[1]
        reference = finals[variants[0]]
        same = {v: bool(np.array_equal(finals[v], reference)) for v in variants}
        times: dict[str, list[float]] = {v: [] for v in variants}
        cpu: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for variant in variants:
                (wall, used), _ = train_all(chunks, name, run_hyper, n_par, variant, lr)
                times[variant].append(wall / rows * 1e6)
                cpu[variant].append(used / rows * 1e6)
        base = statistics.median(times[variants[0]])
        base_cpu = statistics.median(cpu[variants[0]])
        print(f"\n{name} (lr {lr:g}): us a row, wall and the thread's CPU, median [min-max] of {args.rounds}; "
              f"ratio to {variants[0]}")
        for variant in variants:
            median, median_cpu = statistics.median(times[variant]), statistics.median(cpu[variant])
            print(f"  {variant:22s} wall {median:6.3f} [{min(times[variant]):.3f}-{max(times[variant]):.3f}] "
                  f"x{base / median:5.2f}  cpu {median_cpu:6.3f} [{min(cpu[variant]):.3f}-{max(cpu[variant]):.3f}] "
                  f"x{base_cpu / median_cpu:5.2f}  same as {variants[0]}: {same[variant]}")
            report["results"][f"{name}/{variant}"] = {"wall_us_per_row": times[variant], "cpu_us_per_row": cpu[variant],
                                                      "median_wall": median, "median_cpu": median_cpu,
                                                      "speedup_wall": base / median, "speedup_cpu": base_cpu / median_cpu,
                                                      "same": same[variant]}
    if args.threads > 1:
        report["threads"] = thread_report(chunks, run_hyper, n_par, args.threads, args.rounds)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
