"""Where an epoch's time goes: wall, user and system CPU seconds of each training epoch, next to the CPU a pure
decoding loop (the decode floor) takes over the same file, with and without pyarrow's threads.

    python3 scripts/profile_epoch.py bench-data/logistic-10000000x32.parquet --epochs 3

On 2 cores an epoch can use at most 2 CPU-seconds per wall second; when the decoding alone needs most of that,
the rest of the pipeline decides how close training gets to the floor.
"""

from __future__ import annotations

import argparse
import resource
import time

import streamgd
from streamgd.bench.children import decode_floor
from streamgd.training import epoch as driver


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def decode_cpu(path: str, use_threads: bool) -> dict:
    """Wall and CPU seconds of the decode floor (every row group read, nothing else)."""
    user0, sys0 = _cpu()
    floor = decode_floor(path, use_threads=use_threads)
    user1, sys1 = _cpu()
    return {"wall": floor["seconds"], "user": user1 - user0, "sys": sys1 - sys0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--target", default="y")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", default="1024")
    args = parser.parse_args()

    for use_threads in (True, False):
        d = decode_cpu(args.path, use_threads)
        print(f"decode floor, use_threads={use_threads}: wall {d['wall']:.2f} s, CPU {d['user'] + d['sys']:.2f} s "
              f"(user {d['user']:.2f}, sys {d['sys']:.2f})")

    epochs: list[dict] = []
    run_epoch = driver.run_epoch

    def timed(*args, **kwargs):  # the Trainer's own epoch, with its CPU taken around it
        user0, sys0 = _cpu()
        start = time.perf_counter()
        record = run_epoch(*args, **kwargs)
        user1, sys1 = _cpu()
        epochs.append({"wall": time.perf_counter() - start, "user": user1 - user0, "sys": sys1 - sys0,
                       "rows_per_s": record["rows_per_s"]})
        return record

    driver.run_epoch = timed
    batch = args.batch_size if args.batch_size == "full" else int(args.batch_size)
    streamgd.fit(args.path, target=args.target, epochs=args.epochs, batch_size=batch, standardize=False)
    for k, e in enumerate(epochs):
        cpu = e["user"] + e["sys"]
        print(f"epoch {k}: {e['rows_per_s'] / 1e6:.2f}M rows/s, wall {e['wall']:.2f} s, CPU {cpu:.2f} s "
              f"(user {e['user']:.2f}, sys {e['sys']:.2f}), {cpu / e['wall']:.2f} cores busy")


if __name__ == "__main__":
    main()
