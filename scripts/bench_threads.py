"""``--threads 2`` against one training thread on a click log's cached epochs: rows/s, CPU use, holdout log loss.

    python3 scripts/bench_threads.py                       # the 1M-row click log, 3 runs of each, alternated
    python3 scripts/bench_threads.py --train T.parquet --holdout H.parquet --repeat 5 --json out.json

Each run trains logistic regression with FTRL at batch 1 on 2^20 hashed buckets, no interactions, ``--missing
impute``, 3 epochs, reading an epoch cache warmed once before the timed runs (so every epoch reads the cache; the
rate counted is that of the epochs after the first, as issue 29's target says), in a child process of its own.
Runs alternate one thread, two threads, one thread, ... so that a change in the machine's load hits both alike.

Printed per thread count: the cached epochs' rows/s (median over the runs of each run's later epochs), the CPU
seconds the process spent per wall second in those epochs (2.0: both cores busy), the chunks each thread trained,
the holdout log loss; then the ratio of the two rates per pair of neighbouring runs, and the load average. The
one reader's own rate from the cache (iterating the epoch's chunks without training) says whether one reader can
feed two training threads (``streamgd.training.threads``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
TRAIN = "/work/ctr/ctr-1000000-seed0-model0-rg65536.parquet"
HOLDOUT = "/work/ctr/ctr-200000-seed1-model0-rg65536.parquet"
OPTIONS = {"model": "logistic", "optimizer": "ftrl", "batch_size": 1, "hash_bits": 20, "encoding": "hash",
           "interactions": "none", "missing": "impute"}


def child(train: str, holdout: str, cache: str, threads: int, epochs: int) -> dict:
    """Train in this process; each epoch's wall and CPU seconds, the reader's rate alone, the holdout loss."""
    import resource

    import streamgd
    from streamgd.cli.allocators import prefer_jemalloc

    prefer_jemalloc()  # as the command line does
    from streamgd.data.shuffle import make_plan
    from streamgd.models.evaluate import evaluate
    from streamgd.training import epoch as driver
    from streamgd.training.chunk_step import open_stream

    cpu: list[float] = []
    main_cpu: list[float] = []  # one thread: the training thread's own CPU time
    run_epoch = driver.run_epoch

    def timed(*args, **kwargs):
        start, main = _cpu_seconds(), time.thread_time()
        record = run_epoch(*args, **kwargs)
        cpu.append(_cpu_seconds() - start)
        main_cpu.append(time.thread_time() - main)
        return record

    driver.run_epoch = timed
    trainer = streamgd.Trainer(epochs=epochs, cache=cache, threads=threads, **OPTIONS)
    model = trainer.fit(train, target="label")
    trained_by = getattr(trainer.local, "trained_by", {0: trainer.kernel_calls // epochs})
    plan = make_plan(trainer.run.train.units, trainer.config.shuffle, seed=trainer.config.seed, epoch=epochs)
    start, reader_cpu, rows = time.perf_counter(), _cpu_seconds(), 0
    with open_stream(trainer.job, plan) as stream:  # the one reader alone, from the cache
        for chunk in stream:
            rows += chunk.n_rows
    reader_seconds, reader_cpu = time.perf_counter() - start, _cpu_seconds() - reader_cpu
    loss = evaluate(model, holdout, target="label")["metrics"]["log_loss"]
    training = [sum(e["training_threads_cpu_seconds"]) if threads > 1 else main for e, main in
                zip(model.history, main_cpu)]
    return {"threads": threads, "seconds": [e["seconds"] for e in model.history], "training_cpu_seconds": training,
            "rows": [e["rows"] for e in model.history], "cpu_seconds": cpu, "holdout_loss": loss,
            "trained_by": {str(k): v for k, v in trained_by.items()}, "reader_rows_per_s": rows / reader_seconds,
            "reader_cpu_us_per_row": 1e6 * reader_cpu / rows,
            "cache": [e.get("cache") for e in model.history],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _later(run: dict) -> tuple[float, float, float, float]:
    """(rows/s, CPU seconds per wall second, CPU microseconds per row, the training threads' CPU microseconds per
    row) of a run's epochs after the first."""
    seconds, cpu, rows = sum(run["seconds"][1:]), sum(run["cpu_seconds"][1:]), sum(run["rows"][1:])
    return rows / seconds, cpu / seconds, 1e6 * cpu / rows, 1e6 * sum(run["training_cpu_seconds"][1:]) / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=TRAIN)
    parser.add_argument("--holdout", default=HOLDOUT)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--child", nargs=3, metavar=("CACHE", "THREADS", "EPOCHS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        cache, threads, epochs = args.child
        print(json.dumps(child(args.train, args.holdout, cache, int(threads), int(epochs))))
        return
    directory = tempfile.mkdtemp(prefix="bench-threads-")
    cache = os.path.join(directory, "cache")

    def run(threads: int, epochs: int) -> dict:
        done = subprocess.run([sys.executable, HERE, "--train", args.train, "--holdout", args.holdout,
                               "--child", cache, str(threads), str(epochs)], capture_output=True, text=True,
                              check=False)
        if done.returncode:
            sys.exit(f"the child failed:\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    loads = [_load()]
    try:
        run(1, 1)  # the cache written, the kernels compiled: not timed
        runs: dict[int, list[dict]] = {1: [], args.threads: []}
        for _ in range(args.repeat):
            for threads, done in runs.items():
                done.append(run(threads, args.epochs))
                loads.append(_load())
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{os.path.basename(args.train)}: FTRL, batch 1, 2^20 hashed buckets, no interactions, {args.epochs} "
          f"epochs from a warm cache, {args.repeat} runs of each, alternated; {os.cpu_count()} cores")
    for threads, done in runs.items():
        rates = [_later(r) for r in done]
        print(f"  threads {threads}: cached epochs {statistics.median(r[0] for r in rates):,.0f} rows/s (runs: "
              + ", ".join(f"{r[0]:,.0f}" for r in rates) + f"), CPU {statistics.median(r[1] for r in rates):.2f} "
              f"s per s, {statistics.median(r[2] for r in rates):.2f} CPU µs a row ("
              f"{statistics.median(r[3] for r in rates):.2f} in the training threads), chunks per thread "
              f"{done[-1]['trained_by']}, holdout log loss "
              + ", ".join(f"{r['holdout_loss']:.5f}" for r in done)
              + f"; the reader alone {statistics.median(r['reader_rows_per_s'] for r in done):,.0f} rows/s, "
              f"{statistics.median(r['reader_cpu_us_per_row'] for r in done):.2f} CPU µs a row")
    ratios = [_later(b)[0] / _later(a)[0] for a, b in zip(runs[1], runs[args.threads])]
    print(f"  threads {args.threads} / threads 1, run by run: " + ", ".join(f"{x:.2f}x" for x in ratios)
          + f"; median {statistics.median(ratios):.2f}x")
    # on a machine whose cores other processes take, the wall ratio is bounded by the CPU this process gets; the
    # CPU a row costs says what the threads would give with the cores free (threads x this ratio)
    # ceilings on free cores: one thread runs at most at its training thread's rate (the reader beside it on the
    # other core); N threads at most at N cores over the process's CPU a row (the reader's included)
    one = statistics.median(1e6 / _later(r)[3] for r in runs[1])
    many = statistics.median(args.threads * 1e6 / _later(r)[2] for r in runs[args.threads])
    print(f"  ceilings from the CPU a row, on {args.threads} free cores: threads 1 {one:,.0f} rows/s, threads "
          f"{args.threads} {many:,.0f} rows/s: {many / one:.2f}x")
    print(f"  load average (1, 5, 15 min) before and after each run: {' | '.join(loads)}")
    if args.json_out:
        with open(args.json_out, "w") as stream:
            json.dump({"runs": {str(k): v for k, v in runs.items()}, "ratios": ratios, "loads": loads}, stream,
                      indent=1)


if __name__ == "__main__":
    main()
