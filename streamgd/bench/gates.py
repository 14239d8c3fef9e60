"""The benchmark's regression gates: flat memory as the rows grow, throughput against the decode floor of the same
run, the memory budget held, and no drop against a previous run. The measurements behind the defaults are in
benchmarks/README.md ("Gate allowances")."""

from __future__ import annotations

import math

from .methods import STREAMGD_METHODS, TINY_ROWS

# The design's targets: an epoch of mini-batch 1,024 at >= 0.75x the decode floor, and peak RSS at 10x the rows
# within 5% of 1x. The run of 2026-11-25 (benchmarks/README.md) misses both at 16M rows; the gates say so rather
# than pass.
DEFAULT_MIN_THROUGHPUT_RATIO = 0.75
DEFAULT_MAX_RSS_GROWTH = 0.05
DEFAULT_MAX_THROUGHPUT_DROP = 0.30
# Quick mode's sizes are so small that a streamgd epoch is dominated by fixed costs (loading the cached Numba
# kernels is inside the epoch timer, whatever the rows): a tenth of the ratio quick runs measure only catches a
# collapse of throughput.
QUICK_MIN_THROUGHPUT_RATIO = 0.002
# What the memory-budget gate allows above the zero-rows RSS + the budget: pyarrow's allocator keeps freed pages of
# decoded row groups, beyond the chunks in flight the budget bounds. With the default (standardize) the statistics
# pass adds more, which the budget does not bound: the gate fails.
BUDGET_ALLOWANCE_MB = 32.0


def ok_measurements(results: dict) -> dict[tuple[str, int], dict]:
    """The measurements that ran to the end, by (method, rows)."""
    return {(m["method"], m["rows"]): m for m in results.get("measurements", []) if m.get("status") == "ok"}


def features_of(results: dict) -> int | None:
    """The number of features a run measured (two runs compare only when it is the same)."""
    return (results.get("config") or {}).get("n_features")


def compare_to_baseline(results: dict, baseline: dict) -> list[dict]:
    """The change of each figure (rows/s, peak RSS) of every (method, rows) measured in both runs (with the same
    number of features)."""
    if features_of(results) != features_of(baseline):
        return []
    old = ok_measurements(baseline)
    rows = []
    for key, new in sorted(ok_measurements(results).items(), key=lambda item: (item[0][1], item[0][0])):
        if key not in old:
            continue
        before = old[key]
        entry = {"method": key[0], "rows": key[1]}
        for figure in ("rows_per_s", "peak_rss_mb"):
            a, b = before.get(figure), new.get(figure)
            if a and b is not None:
                entry[figure] = {"baseline": a, "now": b, "change": b / a - 1.0}
        rows.append(entry)
    return rows


def check_gates(results: dict, baseline: dict | None, min_throughput_ratio: float,
                max_rss_growth: float = DEFAULT_MAX_RSS_GROWTH, *,
                max_throughput_drop: float = DEFAULT_MAX_THROUGHPUT_DROP,
                budget_allowance_mb: float = BUDGET_ALLOWANCE_MB) -> list[str]:
    """The failed gates, one message each (empty: all pass).

    * a run that failed or timed out;
    * each streamgd method: peak RSS at the largest size more than ``max_rss_growth`` above the smallest size's;
    * mini-batch rows/s at the largest size below ``min_throughput_ratio`` x the decode floor of the same run;
    * the memory-budget run: peak RSS above its zero-rows RSS + the budget + ``budget_allowance_mb``, at any size;
    * with ``baseline`` (a previous results dict): mini-batch rows/s at the largest size both runs measured
      dropped by more than ``max_throughput_drop``.

    >>> flat = {"config": {"n_features": 8, "memory_budget_mb": 64},
    ...         "zero_rows": {"minibatch-budget": {"peak_rss_mb": 250.0}},
    ...         "measurements": [{"method": m, "kind": k, "rows": n, "status": "ok", "peak_rss_mb": r,
    ...                           "rows_per_s": s}
    ...                          for n in (10, 100)
    ...                          for m, k, r, s in [("minibatch", "streamgd", 300.0, 2e6),
    ...                                             ("minibatch-budget", "streamgd", 300.0, 2e6),
    ...                                             ("decode-floor", "baseline", 100.0, 8e6)]]}
    >>> check_gates(flat, None, min_throughput_ratio=0.2)
    []
    >>> check_gates(flat, None, min_throughput_ratio=0.5)  # doctest: +ELLIPSIS
    ['throughput: minibatch 2,000,000 rows/s at 100 rows is 0.25x the decode floor (8,000,000 rows/s); ...']
    """
    failures: list[str] = []
    measurements = results.get("measurements", [])
    for m in measurements:
        if m.get("status") == "failed":
            failures.append(f"run failed: {m['method']} at {m['rows']:,} rows: {m.get('error', '?')}")
    for method, m in (results.get("zero_rows") or {}).items():
        if m.get("status") == "failed":
            failures.append(f"run failed: {method} on the {TINY_ROWS}-row file: {m.get('error', '?')}")
    ok = ok_measurements(results)
    sizes = sorted({n for _, n in ok})

    # memory stays flat as the rows grow
    streamgd_methods = sorted({m for (m, n), rec in ok.items()
                               if rec.get("kind", "streamgd" if m in STREAMGD_METHODS else "baseline") == "streamgd"})
    for method in streamgd_methods:
        mine = sorted(n for m, n in ok if m == method)
        if len(mine) < 2:
            continue
        small, large = ok[(method, mine[0])], ok[(method, mine[-1])]
        growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1.0
        if growth > max_rss_growth:
            failures.append(f"rss-growth: {method}: peak RSS {large['peak_rss_mb']:,.0f} MB at {mine[-1]:,} rows is "
                            f"{growth:+.1%} over {small['peak_rss_mb']:,.0f} MB at {mine[0]:,} rows "
                            f"(limit +{max_rss_growth:.0%})")

    # throughput against the decode floor of the same run
    both = [n for n in sizes if ("minibatch", n) in ok and ("decode-floor", n) in ok]
    if both:
        n = both[-1]
        rate, floor = ok[("minibatch", n)]["rows_per_s"], ok[("decode-floor", n)]["rows_per_s"]
        ratio = rate / floor if floor else math.inf
        if ratio < min_throughput_ratio:
            failures.append(f"throughput: minibatch {rate:,.0f} rows/s at {n:,} rows is {ratio:.2f}x the decode "
                            f"floor ({floor:,.0f} rows/s); the gate is {min_throughput_ratio:g}x")

    # the memory budget holds
    budget = float((results.get("config") or {}).get("memory_budget_mb", 64))
    zero = (results.get("zero_rows") or {}).get("minibatch-budget") or \
        (results.get("zero_rows") or {}).get("minibatch")
    if zero and zero.get("peak_rss_mb") is not None:
        limit = zero["peak_rss_mb"] + budget + budget_allowance_mb
        for n in sizes:
            m = ok.get(("minibatch-budget", n))
            if m and m["peak_rss_mb"] > limit:
                failures.append(f"memory-budget: minibatch-budget peak RSS {m['peak_rss_mb']:,.0f} MB at {n:,} rows "
                                f"is over {limit:,.0f} MB = zero-rows {zero['peak_rss_mb']:,.0f} MB + budget "
                                f"{budget:g} MB + allowance {budget_allowance_mb:g} MB "
                                f"(+{m['peak_rss_mb'] - zero['peak_rss_mb']:,.0f} MB)")

    # against a previous run
    if baseline:
        if features_of(results) != features_of(baseline):
            failures.append(f"baseline: it measured {features_of(baseline)} features, this run "
                            f"{features_of(results)}; nothing compared")
        else:
            old = ok_measurements(baseline)
            common = [n for n in sizes if ("minibatch", n) in ok and ("minibatch", n) in old]
            if common:
                n = common[-1]
                before, now = old[("minibatch", n)]["rows_per_s"], ok[("minibatch", n)]["rows_per_s"]
                drop = 1.0 - now / before if before else 0.0
                if drop > max_throughput_drop:
                    failures.append(f"baseline: minibatch rows/s at {n:,} rows fell {drop:.0%} ({before:,.0f} -> "
                                    f"{now:,.0f} rows/s; limit {max_throughput_drop:.0%})")
    return failures
