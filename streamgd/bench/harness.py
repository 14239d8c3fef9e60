"""Nightly memory and throughput benchmarks: peak RSS and rows/s of ``streamgd fit`` as the data grows, against
baselines measured in the same run, with regression gates (``scripts/bench_memory.py`` and ``streamgd bench`` are
the command line).

The parts: ``methods`` (what runs: streamgd's variants and the baselines, sizes, configurations), ``runner`` (the
datasets and a measured child process per run), ``children`` (the launcher and the baseline children, standard
library only), ``gates`` and ``report`` (Markdown and plots). This module runs them in order and writes the files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from .gates import (BUDGET_ALLOWANCE_MB, DEFAULT_MAX_RSS_GROWTH, DEFAULT_MAX_THROUGHPUT_DROP,
                    DEFAULT_MIN_THROUGHPUT_RATIO, QUICK_MIN_THROUGHPUT_RATIO, check_gates, compare_to_baseline)
from .methods import ALL_METHODS, QUICK_METHODS, BenchConfig, make_config, parse_sizes
from .report import markdown_report, write_plots
from .runner import run_benchmark


def run_and_report(config: BenchConfig, baseline_path: str | None = None,
                   min_throughput_ratio: float | None = None, max_rss_growth: float = DEFAULT_MAX_RSS_GROWTH,
                   max_throughput_drop: float = DEFAULT_MAX_THROUGHPUT_DROP,
                   budget_allowance_mb: float = BUDGET_ALLOWANCE_MB,
                   log: Callable[[str], None] | None = None) -> tuple[dict, list[str], str]:
    """Run the benchmark, check the gates, write ``bench.json``, ``bench.md``, ``peak_rss.png`` and
    ``rows_per_s.png`` into ``config.out_dir``; return the results, the gate failures and the Markdown."""
    baseline = None
    if baseline_path:
        with open(baseline_path) as stream:
            baseline = json.load(stream)
    if min_throughput_ratio is None:
        min_throughput_ratio = QUICK_MIN_THROUGHPUT_RATIO if config.quick else DEFAULT_MIN_THROUGHPUT_RATIO
    os.makedirs(config.out_dir, exist_ok=True)
    results = run_benchmark(config, log=log)
    failures = check_gates(results, baseline, min_throughput_ratio, max_rss_growth,
                           max_throughput_drop=max_throughput_drop, budget_allowance_mb=budget_allowance_mb)
    comparison = compare_to_baseline(results, baseline) if baseline else None
    results["gates"] = {"min_throughput_ratio": min_throughput_ratio, "max_rss_growth": max_rss_growth,
                        "max_throughput_drop": max_throughput_drop, "budget_allowance_mb": budget_allowance_mb,
                        "baseline": os.path.abspath(baseline_path) if baseline_path else None,
                        "failures": failures, "passed": not failures}
    if comparison is not None:
        results["comparison"] = comparison
    markdown = markdown_report(results, failures, comparison)
    results["outputs"] = {"json": os.path.join(config.out_dir, "bench.json"),
                          "markdown": os.path.join(config.out_dir, "bench.md")}
    with open(results["outputs"]["markdown"], "w") as stream:
        stream.write(markdown)
    results["outputs"]["plots"] = write_plots(results, config.out_dir)
    tmp = results["outputs"]["json"] + ".tmp"
    with open(tmp, "w") as stream:
        json.dump(results, stream, indent=1)
    os.replace(tmp, results["outputs"]["json"])
    return results, failures, markdown


COMMAND_DESCRIPTION = ("Nightly memory and throughput benchmark: peak RSS and rows/s of streamgd against the decode "
                       "floor, in-memory NumPy and scikit-learn partial_fit as the rows grow; regression gates.")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """The command line of the benchmark (``scripts/bench_memory.py`` and ``streamgd bench``); its exit status."""
    parser = argparse.ArgumentParser(prog=prog, description=COMMAND_DESCRIPTION)
    parser.add_argument("--sizes", type=parse_sizes, default=None,
                        help="comma-separated row counts (default 1000000,4000000,16000000; quick: 50000,200000)")
    parser.add_argument("--features", type=int, default=None, help="float32 features (default 32; quick: 8)")
    parser.add_argument("--row-group-size", type=int, default=None, help="default 65536; quick: 16384")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated subset of {','.join(ALL_METHODS)} (quick: "
                             f"{','.join(QUICK_METHODS)})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, fewer methods, a lenient throughput gate")
    parser.add_argument("--data-dir", default="bench-data", help="datasets are cached here and reused")
    parser.add_argument("--out-dir", default="bench-out")
    parser.add_argument("--baseline", default=None, help="a previous json to compare with")
    parser.add_argument("--min-throughput-ratio", type=float, default=None,
                        help=f"mini-batch rows/s over the decode floor's at the largest size (default "
                             f"{DEFAULT_MIN_THROUGHPUT_RATIO}; quick: {QUICK_MIN_THROUGHPUT_RATIO})")
    parser.add_argument("--max-rss-growth", type=float, default=DEFAULT_MAX_RSS_GROWTH,
                        help="peak RSS growth allowed from the smallest to the largest size (default 0.05)")
    parser.add_argument("--max-throughput-drop", type=float, default=DEFAULT_MAX_THROUGHPUT_DROP,
                        help="mini-batch rows/s drop allowed against --baseline (default 0.30)")
    parser.add_argument("--budget-allowance-mb", type=float, default=BUDGET_ALLOWANCE_MB,
                        help="MB allowed over zero-rows RSS + the memory budget (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per method and size (default 3, quick 1): the fastest throughput and the median "
                             "peak RSS count")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per run (default 3600)")
    args = parser.parse_args(argv)
    try:
        config = make_config(
            quick=args.quick, sizes=args.sizes, n_features=args.features, row_group_size=args.row_group_size,
            methods=args.methods.split(",") if args.methods else None, data_dir=args.data_dir,
            out_dir=args.out_dir, repeat=args.repeat, timeout=args.timeout)
    except ValueError as exc:
        parser.error(str(exc))
    results, failures, markdown = run_and_report(
        config, baseline_path=args.baseline, min_throughput_ratio=args.min_throughput_ratio,
        max_rss_growth=args.max_rss_growth, max_throughput_drop=args.max_throughput_drop,
        budget_allowance_mb=args.budget_allowance_mb)
    print(markdown)
    outputs = results["outputs"]
    print(f"wrote {outputs['json']}, {outputs['markdown']}, {', '.join(outputs['plots'])}")
    for failure in failures:
        print(f"GATE FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0
