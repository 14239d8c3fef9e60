"""Nightly memory and throughput benchmark: peak RSS and rows/s of streamgd (SGD, mini-batch, full batch, a memory
budget) against the decode floor, in-memory NumPy and scikit-learn partial_fit, as the rows grow; regression gates.

    python3 scripts/bench_memory.py                               # 1M, 4M, 16M rows x 32 features
    python3 scripts/bench_memory.py --quick --out-dir bench-quick
    python3 scripts/bench_memory.py --baseline previous/bench.json  # also compare with (and gate on) a past run

Writes bench.json, bench.md, peak_rss.png and rows_per_s.png into --out-dir; exits with status 1 when a gate
fails (each failure on one line), 2 on bad arguments. The work is in streamgd/bench/harness.py.
"""

from __future__ import annotations

import sys

from streamgd.bench import harness as bench

if __name__ == "__main__":
    sys.exit(bench.main())
