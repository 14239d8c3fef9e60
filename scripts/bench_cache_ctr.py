"""The epoch cache on a click log: epochs read from the cache against the first epoch, which decodes, hashes the 26
categorical columns and writes the cache, and against an epoch of the same run without the cache.

    python3 scripts/bench_cache_ctr.py --rows 1000000 --epochs 3 --repeat 3

The table is ``streamgd make-data --task ctr`` (13 numeric and 26 categorical columns, as scripts/bench_ctr.py
makes it) written once under ``--data-dir``. Each run trains logistic regression (batch 1,024, hashed 2^20,
``--missing impute``, as scripts/bench_ctr.py's streamgd does) in its own subprocess, alternating: without the
cache, then with it in a fresh directory. The fastest run of each counts; the ratio that matters, the later
epochs' rate over the first epoch's, is taken within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.abspath(__file__)


def child(path: str, epochs: int, cache: str | None, bits: int) -> dict:
    """Train in this process; the epochs' seconds and cache counters, the model's coefficients' digest."""
    import hashlib
    import resource

    import pyarrow.parquet as pq

    import streamgd
    from streamgd.cli.allocators import prefer_jemalloc

    prefer_jemalloc()
    categorical = [n for n in pq.read_schema(path).names if n.startswith("C")]
    options = dict(model="logistic", categorical=categorical, hash_bits=bits, missing="impute", batch_size=1024)
    data = streamgd.open_dataset(path, target="label")
    warm = tempfile.mkdtemp(prefix="warm-")
    try:  # compiled kernels loaded (or compiled) before the timing, the cache's gather too
        streamgd.Trainer(epochs=2, cache=warm, **options).fit(data.subset(data.units[:1]))
    finally:
        shutil.rmtree(warm, ignore_errors=True)
    from streamgd.training import epoch as driver

    cpu: list[float] = []
    run_epoch = driver.run_epoch

    def timed(*args, **kwargs):  # each epoch's CPU seconds (user + system, all threads)
        start = _cpu_seconds()
        record = run_epoch(*args, **kwargs)
        cpu.append(_cpu_seconds() - start)
        return record

    driver.run_epoch = timed
    model = streamgd.Trainer(epochs=epochs, cache=cache, **options).fit(path, target="label")
    return {"seconds": [e["seconds"] for e in model.history], "rows": model.history[0]["rows"], "cpu_seconds": cpu,
            "cache": [e.get("cache") for e in model.history],
            "coef_sha256": hashlib.sha256(model.coef_.tobytes() + model.intercept_.tobytes()).hexdigest(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hash-bits", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", default="bench-data")
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--child", nargs=3, metavar=("PATH", "EPOCHS", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, epochs, cache = args.child
        print(json.dumps(child(path, int(epochs), cache or None, args.hash_bits)))
        return
    from streamgd.bench.synthetic_ctr import make_ctr_dataset

    os.makedirs(args.data_dir, exist_ok=True)
    path = os.path.join(args.data_dir, f"ctr-{args.rows}.parquet")
    if not os.path.exists(path):
        make_ctr_dataset(path + ".part", n_rows=args.rows, seed=0)
        os.replace(path + ".part", path)
    with open(path, "rb") as stream:  # every run reads the file from the page cache
        while stream.read(1 << 24):
            pass
    runs: dict[str, list[dict]] = {"plain": [], "cached": []}
    for _ in range(args.repeat):
        for kind in runs:
            directory = tempfile.mkdtemp(prefix="cache-", dir=args.data_dir) if kind == "cached" else ""
            try:
                done = subprocess.run([sys.executable, HERE, "--hash-bits", str(args.hash_bits), "--child", path,
                                       str(args.epochs), os.path.join(directory, "c") if directory else ""],
                                      capture_output=True, text=True, check=True)
            finally:
                if directory:
                    shutil.rmtree(directory, ignore_errors=True)
            runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    plain = min(runs["plain"], key=lambda r: min(r["seconds"]))
    cached = min(runs["cached"], key=lambda r: min(r["seconds"][1:]))
    same = {r["coef_sha256"] for r in runs["plain"] + runs["cached"]}
    rows = cached["rows"]
    first, later = cached["seconds"][0], min(cached["seconds"][1:])
    first_ratios = [min(r["seconds"][1:]) and r["seconds"][0] / min(r["seconds"][1:]) for r in runs["cached"]]
    print(f"{args.rows:,}-row click log, {args.epochs} epochs, batch 1,024, hashed 2^{args.hash_bits}, "
          f"fastest of {args.repeat} runs")
    print(f"  without the cache: epochs {', '.join(f'{s:.2f}' for s in plain['seconds'])} s, "
          f"peak RSS {plain['peak_rss_mb']:.0f} MB")
    print(f"  with the cache:    epochs {', '.join(f'{s:.2f}' for s in cached['seconds'])} s, "
          f"peak RSS {cached['peak_rss_mb']:.0f} MB, counters {cached['cache']}")
    print(f"  later epochs from the cache: {rows / later:,.0f} rows/s = {first / later:.2f}x the first epoch "
          f"(per run: {', '.join(f'{x:.2f}' for x in first_ratios)}); {min(plain['seconds']) / later:.2f}x an "
          f"uncached epoch")
    print(f"  first epoch (writing the cache) {first:.2f} s against the uncached run's first epoch "
          f"{plain['seconds'][0]:.2f} s: {100 * (first / plain['seconds'][0] - 1):+.0f}%")
    cpu_first = min(r["cpu_seconds"][0] for r in runs["cached"])
    cpu_later = min(min(r["cpu_seconds"][1:]) for r in runs["cached"])
    cpu_plain = min(min(r["cpu_seconds"]) for r in runs["plain"])
    print(f"  CPU seconds (user + system) per epoch, fewest of the runs: first {cpu_first:.2f}, later "
          f"{cpu_later:.2f} ({cpu_first / cpu_later:.2f}x), uncached {cpu_plain:.2f}")
    print(f"  models identical with and without the cache: {len(same) == 1}")
    if args.json_out:
        with open(args.json_out, "w") as stream:
            json.dump({"rows": args.rows, "epochs": args.epochs, "runs": runs}, stream, indent=1)


if __name__ == "__main__":
    main()
