"""The click-log reader alone (decode + featurize, no training): categorical text columns read as dictionaries
against decoded and hashed row by row, and against another source tree's reader (``--baseline``), in one run,
alternated.

    python3 scripts/bench_dictionary_reads.py /work/ctr/ctr-1000000-seed0-model0-rg65536.parquet
    python3 scripts/bench_dictionary_reads.py TABLE --baseline /tmp/streamgd-before --repeat 3 --json out.json

The reader is ``ChunkStream`` as training opens it (``--missing impute``: the numeric columns imputed with their
means and given missing indicators; every text column hashed into 2^B buckets, or one-hot with ``--onehot N``
most frequent values per column) without a prefetch thread and with nothing consuming the chunks, so the pass's
time is the reader thread's work: rows/s is the rows over it. Each measurement is a child process (its own
imports, so ``--baseline`` can point at the source tree of an older commit, such as ``git archive`` unpacks)
that runs one untimed pass (compiles, warms the page cache) and one timed pass. Each repeat runs every version,
in alternating order; medians of the repeats are printed with their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

SCRIPT = os.path.abspath(__file__)
HERE = os.path.dirname(os.path.dirname(SCRIPT))


def click_log_spec(path: str, target: str, hash_bits: int, onehot: int | None):
    """The FeatureSpec ``streamgd fit --missing impute`` gives the table: numbers imputed with their means (and an
    indicator where a column has nulls), text hashed (or one-hot: the ``onehot`` most frequent values)."""
    from streamgd.features.spec import CategoricalInput, FeatureSpec, NumericInput

    table = pq.read_table(path)
    numeric, categorical = [], []
    for name in table.column_names:
        if name == target:
            continue
        column = table.column(name)
        if column.type in ("string", "large_string"):
            vocabulary = []
            if onehot is not None:
                counts = pc.value_counts(column.drop_null()).to_pylist()
                counts.sort(key=lambda item: -item["counts"])
                vocabulary = sorted(item["values"] for item in counts[:onehot])
            categorical.append(CategoricalInput(name, vocabulary))
        else:
            numeric.append(NumericInput(name, float(pc.mean(column).as_py()), column.null_count > 0))
    return FeatureSpec(numeric, categorical, "hash" if onehot is None else "onehot", hash_bits, "impute")


def child(path: str, target: str, hash_bits: int, onehot: int | None, dictionary_reads: str) -> None:
    """One untimed and one timed pass of the reader of whatever streamgd is on ``sys.path``; prints rows/s."""
    from streamgd.data.dataset import open_dataset
    from streamgd.data.reader import ChunkStream
    from streamgd.data.shuffle import make_plan

    spec = click_log_spec(path, target, hash_bits, onehot)
    options = {} if dictionary_reads == "default" else {"dictionary_reads": dictionary_reads == "yes"}
    seconds = rows = 0.0
    for _ in range(2):
        data = open_dataset(path, target=target)
        plan = make_plan(data.units, "row-groups", seed=0)
        started = time.perf_counter()
        rows = 0
        with ChunkStream(data, plan, dtype=np.float32, features=spec, prefetch_depth=0, **options) as stream:
            for chunk in stream:
                rows += chunk.n_rows
        seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}))


def measure(args: argparse.Namespace, source: str, dictionary_reads: str) -> dict:
    env = {**os.environ, "PYTHONPATH": source}
    command = [sys.executable, SCRIPT, "child", args.table, args.target, str(args.hash_bits),
               str(args.onehot or 0), dictionary_reads]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        path, target, bits, onehot, reads = argv[1:]
        child(path, target, int(bits), int(onehot) or None, reads)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="A click log (such as streamgd make-data --task ctr writes).")
    parser.add_argument("--target", default="label")
    parser.add_argument("--hash-bits", type=int, default=20)
    parser.add_argument("--onehot", type=int, default=None, metavar="N", help="One-hot, N values per column.")
    parser.add_argument("--baseline", default=None, metavar="DIR", help="Another source tree's reader too "
                        "(its default path), such as an older commit's.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    versions = {"per-row": (HERE, "no"), "dictionary": (HERE, "yes")}
    if args.baseline:
        versions = {"baseline": (os.path.abspath(args.baseline), "default"), **versions}
    runs: dict[str, list[dict]] = {name: [] for name in versions}
    for r in range(args.repeat):
        for name in (list(versions) if r % 2 == 0 else list(versions)[::-1]):
            runs[name].append(measure(args, *versions[name]))
            print(f"repeat {r + 1} {name}: {runs[name][-1]['rows_per_s']:,.0f} rows/s", flush=True)
    medians = {name: statistics.median(run["rows_per_s"] for run in done) for name, done in runs.items()}
    first = next(iter(medians))
    encoding = f"one-hot ({args.onehot} values a column)" if args.onehot else f"hashed 2^{args.hash_bits}"
    print(f"\n{runs[first][0]['rows']:,} rows of {args.table}, text columns {encoding}, reader thread alone, "
          f"medians of {args.repeat}\n")
    print(f"| reader | rows/s | x {first} |\n|---|---|---|")
    for name, median in medians.items():
        print(f"| {name} | {median:,.0f} | {median / medians[first]:.2f} |")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"config": vars(args), "runs": runs, "medians": medians}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
