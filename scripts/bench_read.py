"""Reading throughput and peak RSS: the streamgd reader (prefetch on and off, each shuffle mode) against the
Parquet decode floor and plain ``iter_batches()`` to a row-major NumPy array, in one run; each variant in its
own subprocess so its peak RSS is its own.

    python3 scripts/bench_read.py --rows 10000000          # data cached under bench-data/
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

VARIANTS = ("decode-floor", "iter-batches-row-major", "reader-none-p0", "reader-none-p2", "reader-row-groups-p0",
            "reader-row-groups-p2", "reader-buffer:4-p2")


def run_variant(name: str, path: str) -> dict:
    """Read the whole file once as variant ``name``; return rows and seconds."""
    import pyarrow.parquet as pq

    start = time.perf_counter()
    rows = 0
    if name == "decode-floor":
        from streamgd.bench.children import decode_floor

        return decode_floor(path)
    if name == "iter-batches-row-major":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
            matrix = np.column_stack([c.to_numpy() for c in batch.columns[:-1]])
            rows += matrix.shape[0]
    else:
        from streamgd import open_dataset
        from streamgd.data.reader import iter_chunks
        from streamgd.data.shuffle import make_plan

        _, mode, depth = name.rsplit("-", 2) if not name.startswith("reader-row-groups") else \
            ("reader", "row-groups", name.rsplit("-", 1)[1])
        data = open_dataset(path, target="y")
        first = data.subset(data.units[:1])  # load the compiled conversion kernels outside the timing
        for _ in iter_chunks(first, make_plan(first.units, mode, seed=0), prefetch_depth=0):
            pass
        start = time.perf_counter()
        for chunk in iter_chunks(data, make_plan(data.units, mode, seed=0), prefetch_depth=int(depth[1:])):
            rows += chunk.n_rows
    return {"rows": rows, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--row-group-size", type=int, default=65_536)
    parser.add_argument("--data-dir", default="bench-data")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        result = run_variant(args.variant, args.path)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    from streamgd.bench.synthetic import make_dataset

    path = os.path.join(args.data_dir, f"logistic-{args.rows}x{args.features}.parquet")
    if not os.path.exists(path):
        make_dataset(path, n_rows=args.rows, n_features=args.features, row_group_size=args.row_group_size)
    results: dict[str, dict] = {}
    for _ in range(args.repeat):  # interleave repeats so drifting machine load hits every variant alike
        for name in VARIANTS:
            done = subprocess.run([sys.executable, __file__, "--variant", name, "--path", path],
                                  capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            best = results.get(name)
            if best is None or r["seconds"] < best["seconds"]:
                results[name] = r
    floor = results["decode-floor"]["rows"] / results["decode-floor"]["seconds"]
    print(f"\n{args.rows:,} rows x {args.features} float32 features, best of {args.repeat}\n")
    print("| variant | rows/s | x floor | peak RSS MB |")
    print("|---|---|---|---|")
    for name, r in results.items():
        rate = r["rows"] / r["seconds"]
        r["rows_per_s"], r["ratio_to_floor"] = rate, rate / floor
        print(f"| {name} | {rate:,.0f} | {rate / floor:.2f} | {r['peak_rss_mb']:.0f} |")
    if args.json_out:
        with open(args.json_out, "w") as stream:
            json.dump({"rows": args.rows, "features": args.features, "results": results}, stream, indent=1)


if __name__ == "__main__":
    main()
