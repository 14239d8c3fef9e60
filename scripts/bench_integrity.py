"""What the integrity checks cost: the data fingerprint (``streamgd.io.fingerprint``, read once per run by a
checkpointing run and by the epoch cache) against the run's epoch, and the cache's unit checksum (XXH64, every read)
against the Fletcher sum it replaced and against an epoch read from the cache.

    python3 scripts/bench_integrity.py --data-dir /tmp/bench-integrity --rows 10000000 --small-files 1000

Writes (once, under ``--data-dir``) one file of ``--rows`` rows x 32 float32 features (row groups of 65,536)
and ``--small-files`` files of ``--small-rows`` rows each, as ``streamgd make-data`` makes them. Then, for each
data set, in this process: the fingerprint of every file (page cache warm: the second of two passes; the first,
from a cold page cache where the files were just written, is printed too), and one training epoch (logistic,
batch 1,024), so the ratio is taken in the same run. For the checksum: the throughput of XXH64 and of the old
Fletcher sum over the cache's unit files of a cached epoch, and that cached epoch's seconds.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def make(out: str, rows: int, files: int) -> None:
    if os.path.exists(out):
        return
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "streamgd"), "make-data", out, "--rows", str(rows),
                    "--features", "32", "--files", str(files)], check=True)


def fingerprint_seconds(paths: list[str]) -> float:
    from streamgd.io.fingerprint import content_identity

    start = time.perf_counter()
    for path in paths:
        content_identity(path)
    return time.perf_counter() - start


def epoch_seconds(data: str, cache: str | None = None, epochs: int = 1) -> list[float]:
    import streamgd

    model = streamgd.fit(data, target="y", epochs=epochs, batch_size=1024, cache=cache, shuffle="row-groups")
    return [record["seconds"] for record in model.history]


def fletcher_sums():
    """The cache's old checksum (Fletcher-64 style), compiled once as it was, for the comparison."""
    from streamgd.kernels.jit import njit

    @njit(nogil=True)
    def sums(words):  # pragma: no cover - compiled
        a = np.uint64(0)
        b = np.uint64(0)
        for i in range(words.shape[0]):
            a += words[i]
            b += a
        return a, b

    return lambda raw: sums(raw[: raw.shape[0] // 8 * 8].view(np.uint64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "bench-integrity"))
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--small-files", type=int, default=1000)
    parser.add_argument("--small-rows", type=int, default=10_000)
    args = parser.parse_args()
    os.makedirs(args.data_dir, exist_ok=True)
    big = os.path.join(args.data_dir, f"big-{args.rows}.parquet")
    small = os.path.join(args.data_dir, f"small-{args.small_files}x{args.small_rows}")
    make(big, args.rows, 1)
    make(small, args.small_files * args.small_rows, args.small_files)
    for name, data in (("one 10M-row file" if args.rows == 10_000_000 else f"one {args.rows:,}-row file", big),
                       (f"{args.small_files:,} files of {args.small_rows:,} rows", small)):
        paths = [data] if os.path.isfile(data) else sorted(glob.glob(os.path.join(data, "*.parquet")))
        size = sum(os.path.getsize(p) for p in paths)
        first = fingerprint_seconds(paths)
        warm = fingerprint_seconds(paths)
        epoch = epoch_seconds(data)[0]
        print(f"{name}: {len(paths):,} files, {size / 1e6:,.0f} MB; fingerprint {first:.3f} s (first pass), "
              f"{warm:.3f} s (warm); one epoch {epoch:.2f} s; fingerprint / epoch = {warm / epoch:.3f}")
    # the unit checksum, on a cached epoch of the big file
    from streamgd.data.cache.checksums import xxh64

    cache = tempfile.mkdtemp(prefix="bench-integrity-cache-")
    seconds = epoch_seconds(big, cache=cache, epochs=3)
    units = sorted(glob.glob(os.path.join(cache, "units", "*.bin")))
    arrays = [np.fromfile(path, dtype=np.uint8) for path in units[:64]]
    total = sum(a.nbytes for a in arrays)
    fletcher = fletcher_sums()
    xxh64(arrays[0])
    fletcher(arrays[0])
    timings = {}
    for name, function in (("xxh64", xxh64), ("fletcher", fletcher)):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for a in arrays:
                function(a)
            best = min(best, time.perf_counter() - start)
        timings[name] = best
    cached_bytes = sum(os.path.getsize(path) for path in units)
    xxh_epoch = timings["xxh64"] * cached_bytes / total
    print(f"unit checksum over {total / 1e6:,.0f} MB in memory: XXH64 {total / timings['xxh64'] / 1e9:.2f} GB/s, "
          f"Fletcher {total / timings['fletcher'] / 1e9:.2f} GB/s (XXH64 / Fletcher time = "
          f"{timings['xxh64'] / timings['fletcher']:.2f})")
    print(f"cached epochs: {', '.join(f'{s:.2f}' for s in seconds[1:])} s "
          f"(first epoch {seconds[0]:.2f} s); XXH64 of all {cached_bytes / 1e6:,.0f} MB of units: {xxh_epoch:.2f} s "
          f"= {xxh_epoch / min(seconds[1:]):.2f} of the fastest cached epoch")
    # the same cached epochs, verifying each unit on every read against once per run (as before): alternating runs
    from streamgd.data.cache import store

    every = store.checksum
    best = {"every read": float("inf"), "once per run": float("inf")}
    for _ in range(2):
        for variant in best:
            seen: dict = {}

            def once(raw, seen=seen):  # a unit's bytes are summed the first time this run maps them
                head = (raw.nbytes, bytes(raw[:4096].view(np.uint8)))
                if head not in seen:
                    seen[head] = every(raw)
                return seen[head]

            store.checksum = every if variant == "every read" else once
            best[variant] = min(best[variant], *epoch_seconds(big, cache=cache, epochs=2))
    store.checksum = every
    print(f"fully cached epoch, fastest of 4: summed on every read {best['every read']:.2f} s, once per run (what the "
          f"cache does, with a status check per read) "
          f"{best['once per run']:.2f} s (ratio {best['every read'] / best['once per run']:.2f})")


if __name__ == "__main__":
    main()
