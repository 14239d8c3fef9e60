"""The interaction search's pair gains (``features/interaction_search.pair_gains``: every pair of the categorical
columns on the search's sample) against another source tree's (``--baseline``), in one run, alternated.

    python3 scripts/bench_search.py TABLE --baseline BASE    # BASE: another tree, e.g. main's git archive

Each measurement is a child process (its own imports, so ``--baseline`` can point at the source tree of an older
commit, as ``git archive`` unpacks) that reads the sample once (``read_sample``, the default ``SAMPLE_ROWS``),
runs the pair gains once untimed (compiles), then ``--inner`` times with two threads (wall seconds, the
command's setting) and ``--inner`` times with one (the process's CPU seconds: the kernel's own work, less
sensitive to other jobs on the machine); each child reports its best of each. Printed: the medians over
``--repeat`` children per tree and new / baseline, and a digest of every pair's (gain, relative, z) in the
order returned, with the pairs crossed: equal digests mean the same gains bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(tree: str, path: str, target: str, inner: int) -> None:
    """Time the pair gains of whatever streamgd is in ``tree``; print a JSON line."""
    sys.path.insert(0, tree)
    import hashlib

    import numpy as np

    from streamgd.data.dataset import open_dataset
    from streamgd.features import interaction_search as search
    from streamgd.features.targets import LabelEncoder

    data = open_dataset(path, target=target)
    y, codes = search.read_sample(data, list(data.categorical), LabelEncoder([0, 1]).encode)
    gains = search.pair_gains(y, codes)
    out = {"pairs": len(gains), "rows": len(y)}
    for threads, clock, key in ((2, time.perf_counter, "wall s, 2 threads"), (1, time.process_time, "CPU s, 1 thread")):
        best = float("inf")
        for _ in range(inner):
            started = clock()
            search.pair_gains(y, codes, threads=threads)
            best = min(best, clock() - started)
        out[key] = best
    out["digest"] = hashlib.sha256(np.array([(p.gain, p.relative, p.z) for p in gains]).tobytes()).hexdigest()[:16]
    out["chosen"] = [p.label for p in gains if p.relative >= search.MIN_GAIN and p.z >= search.MIN_Z]
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?")
    parser.add_argument("--target", default="label")
    parser.add_argument("--baseline", default=None, help="Another source tree to time alike.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inner", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path, args.target, args.inner)
        return
    trees = {"new": HERE} | ({"baseline": os.path.abspath(args.baseline)} if args.baseline else {})
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for r in range(args.repeat):
        for name in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            command = [sys.executable, os.path.abspath(__file__), args.path, "--target", args.target, "--inner",
                       str(args.inner), "--child", trees[name]]
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    first = runs["new"][0]
    print(f"{first['pairs']} pairs on {first['rows']:,} rows, {args.repeat} children per tree, medians of their bests")
    for key in ("wall s, 2 threads", "CPU s, 1 thread"):
        line = {name: statistics.median(run[key] for run in runs[name]) for name in trees}
        ratio = f"   baseline / new {line['baseline'] / line['new']:.2f}x" if "baseline" in line else ""
        print(f"{key:18s} " + "  ".join(f"{name} {seconds:.3f}" for name, seconds in line.items()) + ratio)
    for name in trees:
        print(f"{name}: gains digest {sorted({run['digest'] for run in runs[name]})}, "
              f"pairs crossed {runs[name][0]['chosen']}")


if __name__ == "__main__":
    main()
