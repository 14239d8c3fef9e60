"""The fixed start-up of a click-log fit, piece by piece, against another source tree's (``--baseline``), in one
run, alternated: the interaction search's sample read and pair gains, and the statistics pass.

    python3 scripts/bench_startup.py TABLE --baseline BASE    # BASE: another tree, e.g. main's git archive

Each measurement is a child process (its own imports, so ``--baseline`` can point at the source tree of an older
commit, such as ``git archive`` unpacks) that runs each piece once untimed (compiles, warms the page cache), then
``--inner`` timed times. The pair gains run on one thread (``threads=1``), so their CPU seconds are the kernel's
own; the statistics pass counts the numeric columns and the text columns the default fit counts (``--onehot``,
the first K text columns). Printed: per piece, the median over the repeats of each child's best CPU seconds, and
new / baseline. The child also checks that both trees' searches rank the pairs alike (the gains' digest).

With ``--fit``, whole fits instead: ``streamgd fit PATH --target label --categorical C1..C26 --hash-bits 20
--missing impute`` (and ``--fit-args``) from each tree, as ``scripts/bench_ctr.py``'s streamgd contender runs it
(its ``child streamgd-fit``, which records the reader thread's seconds): the child's wall seconds, the epoch's
(from ``--json``), the fixed part (wall minus epoch: imports, statistics pass, interaction search, set-up), the
reader thread's microseconds a row, the process's peak RSS, and a digest of the model's weights (equal: the same
model). Each tree runs one fit first, not counted (its compiled kernels cached, the file in the page cache).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(tree: str, path: str, target: str, onehot: int, inner: int) -> None:
    """Time each piece of whatever streamgd is in ``tree``; print a JSON line."""
    sys.path.insert(0, tree)
    import numpy as np

    from streamgd.data.dataset import open_dataset
    from streamgd.features import interaction_search as search
    from streamgd.features.stats import compute_stats
    from streamgd.features.targets import LabelEncoder

    data = open_dataset(path, target=target)
    text = list(data.categorical)
    numeric = [name for name in data.feature_names if name not in text]
    labels = LabelEncoder([0, 1]).encode
    sample = search.read_sample(data, text, labels)
    pieces = {
        "sample read": lambda: search.read_sample(data, text, labels),
        "pair gains (1 thread)": lambda: search.pair_gains(*sample, threads=1),
        "statistics pass": lambda: compute_stats(data, numeric + text[:onehot], text[:onehot], 64),
    }
    out: dict = {}
    for name, piece in pieces.items():
        piece()
        best = float("inf")
        for _ in range(inner):
            started = time.process_time()
            piece()
            best = min(best, time.process_time() - started)
        out[name] = best
    gains = search.pair_gains(*sample, threads=2)
    out["digest"] = hashlib.sha256(np.array([(p.gain, p.z) for p in gains]).tobytes()).hexdigest()[:16]
    out["chosen"] = [p.label for p in gains if p.relative >= search.MIN_GAIN and p.z >= search.MIN_Z]
    print(json.dumps(out))


def fit_child(tree: str, path: str, out_dir: str, extra: list[str]) -> dict:
    """One ``streamgd fit`` from ``tree`` (its own bench_ctr child); its seconds and its model's digest."""
    import pyarrow.parquet as pq
    from safetensors.numpy import load_file

    text = ",".join(name for name in pq.read_schema(path).names if name.startswith("C"))
    model, timings = os.path.join(out_dir, "model.safetensors"), os.path.join(out_dir, "timings.json")
    command = [sys.executable, os.path.join(tree, "scripts", "bench_ctr.py"), "child", "streamgd-fit", timings,
               "fit", path, "--target", "label", "--categorical", text, "--hash-bits", "20", "--missing", "impute",
               "--out", model, "--json", "--quiet", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": tree},
                          check=True)
    wall = time.perf_counter() - started
    report = json.loads(done.stdout)
    epoch = sum(e["seconds"] for e in report["epochs"])
    with open(timings) as stream:
        streams = json.load(stream)
    rows = sum(s["rows"] for s in streams)
    weights = load_file(model)
    digest = hashlib.sha256(b"".join(weights[k].tobytes() for k in sorted(weights))).hexdigest()[:16]
    return {"wall": wall, "epoch": epoch, "fixed": wall - epoch, "rows_per_s": report["rows"] / wall,
            "reader_us_per_row": 1e6 * sum(s["reader_seconds"] for s in streams) / rows,
            "peak_rss_mb": report["peak_rss_mb"], "model": digest}


def fits(args: argparse.Namespace, trees: dict[str, str]) -> None:
    """``--fit``: whole fits from each tree, alternated; medians."""
    import shlex
    import tempfile

    runs: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as out_dir:
        for name in trees:  # not counted: a tree's first run may compile its kernels
            fit_child(trees[name], args.path, out_dir, shlex.split(args.fit_args))
        for r in range(args.repeat):
            for name in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
                runs[name].append(fit_child(trees[name], args.path, out_dir, shlex.split(args.fit_args)))
    for key in ("wall", "epoch", "fixed", "rows_per_s", "reader_us_per_row", "peak_rss_mb"):
        line = {name: statistics.median(run[key] for run in runs[name]) for name in trees}
        ratio = f"   new / baseline {line['new'] / line['baseline']:.2f}" if "baseline" in line else ""
        print(f"{key:18s} " + "  ".join(f"{name} {value:,.3f}" for name, value in line.items()) + ratio)
    for name in trees:
        print(f"{name}: model digests {sorted({run['model'] for run in runs[name]})}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?")
    parser.add_argument("--target", default="label")
    parser.add_argument("--baseline", default=None, help="Another source tree to time alike.")
    parser.add_argument("--onehot", type=int, default=7, help="Text columns the statistics pass counts.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inner", type=int, default=3)
    parser.add_argument("--fit", action="store_true", help="Time whole fits (see above).")
    parser.add_argument("--fit-args", default="", help="Appended to the --fit command.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path, args.target, args.onehot, args.inner)
        return
    trees = {"new": HERE} | ({"baseline": os.path.abspath(args.baseline)} if args.baseline else {})
    if args.fit:
        fits(args, trees)
        return
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for r in range(args.repeat):
        for name in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            command = [sys.executable, os.path.abspath(__file__), args.path, "--target", args.target, "--onehot",
                       str(args.onehot), "--inner", str(args.inner), "--child", trees[name]]
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for piece in [key for key in runs["new"][0] if key not in ("digest", "chosen")]:
        line = {name: statistics.median(run[piece] for run in runs[name]) for name in trees}
        ratio = f"   new / baseline {line['new'] / line['baseline']:.2f}" if "baseline" in line else ""
        print(f"{piece:24s} " + "  ".join(f"{name} {seconds:.3f} CPU s" for name, seconds in line.items()) + ratio)
    for name in trees:
        print(f"{name}: pairs crossed {runs[name][0]['chosen']}, gains digest {runs[name][0]['digest']}")


if __name__ == "__main__":
    main()
