"""The benchmark's report: a Markdown summary (machine, zero-rows RSS, every measurement, the comparison with a
baseline and the gates) and two plots (peak RSS and rows/s against rows)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .gates import BUDGET_ALLOWANCE_MB, DEFAULT_MAX_RSS_GROWTH, DEFAULT_MAX_THROUGHPUT_DROP, ok_measurements
from .methods import ALL_METHODS, TINY_ROWS, label


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:,.2f}M" if value >= 1e5 else f"{value:,.0f}"


def markdown_report(results: dict, failures: Sequence[str] | None = None,
                    comparison: Sequence[dict] | None = None) -> str:
    """A Markdown summary: the machine, the zero-rows RSS, one table of every measurement, the comparison with
    a baseline (if any) and the gates."""
    config = results.get("config", {})
    budget = config.get("memory_budget_mb", 64)
    machine = results.get("machine", {})
    versions = machine.get("versions", {})
    lines = [f"## streamgd memory and throughput benchmark{' (quick)' if config.get('quick') else ''}", "",
             f"{results.get('created', '')}, commit {(machine.get('git_commit') or 'unknown')[:12]}"
             f"{' (dirty)' if machine.get('git_dirty') else ''}; {machine.get('cpu_count')} CPUs "
             f"({machine.get('cpu_model')}), {machine.get('memory_total_mb', 0):,} MB; Python "
             f"{machine.get('python')}, numpy {versions.get('numpy')}, pyarrow {versions.get('pyarrow')}, "
             f"numba {versions.get('numba')}, scikit-learn {versions.get('scikit-learn')}. "
             f"{config.get('n_features')} float32 features, row groups of {config.get('row_group_size', 0):,}, "
             f"one epoch of logistic regression. MB = 10^6 bytes; peak RSS = max(psutil samples every "
             f"{config.get('sample_interval', 0.02) * 1000:.0f} ms, ru_maxrss).", ""]
    zero = results.get("zero_rows") or {}
    if zero:
        lines += [f"Zero-rows baseline (streamgd fit on a {config.get('tiny_rows', TINY_ROWS)}-row file: imports "
                  "and compiled kernels): " + ", ".join(f"{m} {z['peak_rss_mb']:.0f} MB" for m, z in zero.items()
                                                       if z.get("peak_rss_mb") is not None), ""]
    ok = ok_measurements(results)
    floors = {n: ok[("decode-floor", n)]["rows_per_s"] for (m, n) in ok if m == "decode-floor"}
    lines += ["| rows | method | rows/s | x floor | peak RSS MB | sampled / ru_maxrss MB | over zero-rows MB | wall s |",
              "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for m in sorted(results.get("measurements", []), key=lambda m: (m["rows"], ALL_METHODS.index(m["method"])
                                                                    if m["method"] in ALL_METHODS else 99)):
        name = label(m["method"], budget)
        if m.get("status") != "ok":
            lines.append(f"| {m['rows']:,} | {name} | {m.get('status')}: {m.get('error', '')} | | | | | |")
            continue
        floor = floors.get(m["rows"])
        ratio = f"{m['rows_per_s'] / floor:.2f}" if floor and m['rows_per_s'] >= 0.1 * floor else \
            f"{m['rows_per_s'] / floor:.3f}" if floor else "-"
        z = zero.get(m["method"])
        over = f"{m['peak_rss_mb'] - z['peak_rss_mb']:+,.0f}" if z and z.get("peak_rss_mb") is not None else "-"
        lines.append(f"| {m['rows']:,} | {name} | {_rate(m['rows_per_s'])} | {ratio} | {m['peak_rss_mb']:,.0f} | "
                     f"{m['sampled_peak_rss_mb']:,.0f} / {m['ru_maxrss_mb']:,.0f} | {over} | "
                     f"{m['wall_seconds']:.2f} |")
    if comparison:
        lines += ["", "Against the baseline run:", "",
                  "| rows | method | rows/s then | rows/s now | change | peak RSS then | now | change |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for c in comparison:
            r, p = c.get("rows_per_s"), c.get("peak_rss_mb")
            lines.append(f"| {c['rows']:,} | {c['method']} | "
                         + (f"{_rate(r['baseline'])} | {_rate(r['now'])} | {r['change']:+.1%}" if r else "- | - | -")
                         + " | "
                         + (f"{p['baseline']:,.0f} | {p['now']:,.0f} | {p['change']:+.1%}" if p else "- | - | -")
                         + " |")
    gates = results.get("gates", {})
    if failures is not None:
        lines += ["", f"Gates (RSS growth <= +{gates.get('max_rss_growth', DEFAULT_MAX_RSS_GROWTH):.0%}, mini-batch "
                      f">= {gates.get('min_throughput_ratio', '?')}x the decode floor, budget run <= zero-rows + "
                      f"{budget} MB + {gates.get('budget_allowance_mb', BUDGET_ALLOWANCE_MB):g} MB"
                      + (f", rows/s drop <= {gates.get('max_throughput_drop', DEFAULT_MAX_THROUGHPUT_DROP):.0%} "
                         "against the baseline" if gates.get("baseline") else "")
                      + "): " + ("all pass" if not failures else f"{len(failures)} failed"), ""]
        lines += [f"- FAIL {f}" for f in failures]
    return "\n".join(lines).rstrip() + "\n"


def write_plots(results: dict, out_dir: str) -> list[str]:
    """``peak_rss.png`` (peak RSS vs rows) and ``rows_per_s.png`` (rows/s vs rows), one line per method, log x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = results.get("config", {})
    budget = config.get("memory_budget_mb", 64)
    ok = ok_measurements(results)
    methods = [m for m in ALL_METHODS if any(k[0] == m for k in ok)]
    paths = []
    for figure, ylabel, filename, logy in [("peak_rss_mb", "peak RSS (MB)", "peak_rss.png", False),
                                           ("rows_per_s", "rows/s", "rows_per_s.png", True)]:
        fig, ax = plt.subplots(figsize=(8, 5))
        for method in methods:
            sizes = sorted(n for m, n in ok if m == method)
            ax.plot(sizes, [ok[(method, n)][figure] for n in sizes], marker="o", label=label(method, budget))
        if figure == "peak_rss_mb":
            zero = results.get("zero_rows", {})
            z = (zero.get("minibatch-budget") or zero.get("minibatch") or {}).get("peak_rss_mb")
            if z is not None:
                ax.axhline(z, color="gray", linestyle=":", label=f"zero-rows streamgd ({z:.0f} MB)")
                ax.axhline(z + budget, color="gray", linestyle="--", label=f"zero-rows + {budget} MB budget")
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("rows")
        ax.set_ylabel(ylabel)
        machine = results.get("machine", {})
        ax.set_title(f"{ylabel} vs rows ({config.get('n_features')} float32 features, one epoch; "
                     f"{machine.get('cpu_count')} CPUs, {(machine.get('git_commit') or '')[:8]})", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, filename)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
