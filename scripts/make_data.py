"""Write a synthetic Parquet dataset with a known true model, in bounded memory.

    python3 scripts/make_data.py bench-data/10m.parquet --rows 10000000 --features 32 --task binary
"""

from __future__ import annotations

import argparse
import os
import time

from streamgd.bench.synthetic import TASKS, make_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--task", choices=TASKS, default="binary")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--row-group-size", type=int, default=65_536)
    parser.add_argument("--files", type=int, default=1)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--nan-fraction", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sorted", action="store_true", help="sort rows by target (small data only)")
    args = parser.parse_args()
    started = time.perf_counter()
    info = make_dataset(args.out, args.rows, args.features, args.task, args.classes, args.row_group_size,
                        args.files, args.dtype, args.nan_fraction, sorted_by_target=args.sorted, seed=args.seed)
    size = sum(os.path.getsize(f) for f in info.files)
    print(f"{info.path}: {info.n_rows:,} rows, {len(info.files)} file(s), {size / 1e6:.1f} MB, "
          f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
