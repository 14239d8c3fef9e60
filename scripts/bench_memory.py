"""Nightly memory and throughput benchmark: peak RSS and rows/s of streamgd (SGD, mini-batch, full batch, a memory
budget) against the decode floor, in-memory NumPy and scikit-learn partial_fit, as the rows grow; regression gates.

    python3 scripts/bench_memory.py                               # 1M, 4M, 16M rows x 32 features
    python3 scripts/bench_memory.py --quick --out-dir /tmp/bench-quick
    python3 scripts/bench_memory.py --baseline previous/bench.json  # also compare with (and gate on) a past run

Writes bench.json, bench.md, peak_rss.png and rows_per_s.png into --out-dir; exits with status 1 when a gate
fails (each failure on one line), 2 on bad arguments. The work is in streamgd/bench.py.
"""

from __future__ import annotations

import argparse
import sys

from streamgd import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=bench.parse_sizes, default=None,
                        help="comma-separated row counts (default 1000000,4000000,16000000; quick: 50000,200000)")
    parser.add_argument("--features", type=int, default=None, help="float32 features (default 32; quick: 8)")
    parser.add_argument("--row-group-size", type=int, default=None, help="default 65536; quick: 16384")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated subset of {','.join(bench.ALL_METHODS)} (quick: "
                             f"{','.join(bench.QUICK_METHODS)})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, fewer methods, a lenient throughput gate")
    parser.add_argument("--data-dir", default="bench-data", help="datasets are cached here and reused")
    parser.add_argument("--out-dir", default="bench-out")
    parser.add_argument("--baseline", default=None, help="a previous bench.json to compare with")
    parser.add_argument("--min-throughput-ratio", type=float, default=None,
                        help=f"mini-batch rows/s over the decode floor's at the largest size (default "
                             f"{bench.DEFAULT_MIN_THROUGHPUT_RATIO}; quick: {bench.QUICK_MIN_THROUGHPUT_RATIO})")
    parser.add_argument("--max-rss-growth", type=float, default=bench.DEFAULT_MAX_RSS_GROWTH,
                        help="peak RSS growth allowed from the smallest to the largest size (default 0.10)")
    parser.add_argument("--max-throughput-drop", type=float, default=bench.DEFAULT_MAX_THROUGHPUT_DROP,
                        help="mini-batch rows/s drop allowed against --baseline (default 0.30)")
    parser.add_argument("--budget-allowance-mb", type=float, default=bench.BUDGET_ALLOWANCE_MB,
                        help="MB allowed over zero-rows RSS + the memory budget (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per method and size; the fastest counts")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per run (default 3600)")
    args = parser.parse_args(argv)
    try:
        config = bench.make_config(
            quick=args.quick, sizes=args.sizes, n_features=args.features, row_group_size=args.row_group_size,
            methods=args.methods.split(",") if args.methods else None, data_dir=args.data_dir,
            out_dir=args.out_dir, repeat=args.repeat, timeout=args.timeout)
    except ValueError as exc:
        parser.error(str(exc))
    results, failures, markdown = bench.run_and_report(
        config, baseline_path=args.baseline, min_throughput_ratio=args.min_throughput_ratio,
        max_rss_growth=args.max_rss_growth, max_throughput_drop=args.max_throughput_drop,
        budget_allowance_mb=args.budget_allowance_mb)
    print(markdown)
    outputs = results["outputs"]
    print(f"wrote {outputs['json']}, {outputs['markdown']}, {', '.join(outputs['plots'])}")
    for failure in failures:
        print(f"GATE FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
