"""The click-log reader alone (decode + featurize, no training): categorical text columns read as dictionaries
against decoded and hashed row by row, both in one run, alternated.

    python3 scripts/bench_dictionary_reads.py /work/ctr/ctr-1000000-seed0-model0-rg65536.parquet
    python3 scripts/bench_dictionary_reads.py TABLE --repeat 5 --hash-bits 20 --onehot 1000 --json out.json

The reader is ``ChunkStream`` as training opens it (``--missing impute``: the numeric columns imputed with their
means and given missing indicators; every text column hashed into 2^B buckets, or one-hot with ``--onehot N``
most frequent values per column), with its prefetch thread and nothing consuming the chunks: the reader
thread's rate is the rows over the time the thread spends building chunks (``StreamTimings.reader_seconds``),
the wall rate the rows over the whole pass. Each repeat runs both versions, in alternating order; medians of the
repeats are printed with their ratio. One pass before the timed ones compiles the kernels and warms the page cache.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from streamgd.data.dataset import open_dataset
from streamgd.data.dictionary_slots import is_text
from streamgd.data.reader import ChunkStream
from streamgd.data.shuffle import make_plan
from streamgd.features.spec import CategoricalInput, FeatureSpec, NumericInput

VERSIONS = {"per-row": False, "dictionary": True}


def click_log_spec(path: str, target: str, hash_bits: int, onehot: int | None) -> FeatureSpec:
    """The spec ``streamgd fit --missing impute`` gives the table: numbers imputed with their means (and an
    indicator where a column has nulls), text hashed (or one-hot: the ``onehot`` most frequent values)."""
    table = pq.read_table(path)
    numeric, categorical = [], []
    for name in table.column_names:
        if name == target:
            continue
        column = table.column(name)
        if is_text(column.type):
            vocabulary = []
            if onehot is not None:
                counts = pc.value_counts(column.drop_null()).to_pylist()
                counts.sort(key=lambda item: -item["counts"])
                vocabulary = sorted(item["values"] for item in counts[:onehot])
            categorical.append(CategoricalInput(name, vocabulary))
        else:
            numeric.append(NumericInput(name, float(pc.mean(column).as_py()), column.null_count > 0))
    return FeatureSpec(numeric, categorical, "hash" if onehot is None else "onehot", hash_bits, "impute")


def one_pass(path: str, target: str, spec: FeatureSpec, dictionary_reads: bool) -> dict:
    data = open_dataset(path, target=target)
    plan = make_plan(data.units, "row-groups", seed=0)
    started = time.perf_counter()
    with ChunkStream(data, plan, dtype=np.float32, features=spec, dictionary_reads=dictionary_reads) as stream:
        for _ in stream:
            pass
        timings = stream.timings
    wall = time.perf_counter() - started
    return {"rows": timings.rows, "wall_seconds": wall, "reader_seconds": timings.reader_seconds,
            "reader_rows_per_s": timings.rows / timings.reader_seconds, "wall_rows_per_s": timings.rows / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="A click log (such as streamgd make-data --task ctr writes).")
    parser.add_argument("--target", default="label")
    parser.add_argument("--hash-bits", type=int, default=20)
    parser.add_argument("--onehot", type=int, default=None, metavar="N", help="One-hot, N values per column.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    spec = click_log_spec(args.table, args.target, args.hash_bits, args.onehot)
    for dictionary_reads in VERSIONS.values():  # compile and warm up, untimed
        one_pass(args.table, args.target, spec, dictionary_reads)
    runs: dict[str, list[dict]] = {name: [] for name in VERSIONS}
    for r in range(args.repeat):
        order = list(VERSIONS) if r % 2 == 0 else list(VERSIONS)[::-1]
        for name in order:
            runs[name].append(one_pass(args.table, args.target, spec, VERSIONS[name]))
            print(f"repeat {r + 1} {name}: reader {runs[name][-1]['reader_rows_per_s']:,.0f} rows/s, "
                  f"wall {runs[name][-1]['wall_rows_per_s']:,.0f} rows/s", flush=True)
    medians = {name: {key: statistics.median(run[key] for run in done)
                      for key in ("reader_rows_per_s", "wall_rows_per_s")} for name, done in runs.items()}
    encoding = f"one-hot ({args.onehot} values a column)" if args.onehot else f"hashed 2^{args.hash_bits}"
    print(f"\n{runs['dictionary'][0]['rows']:,} rows, {len(spec.numeric)} numeric + {len(spec.categorical)} text "
          f"columns {encoding}, medians of {args.repeat}\n")
    print("| reader | reader thread rows/s | wall rows/s |\n|---|---|---|")
    for name, median in medians.items():
        print(f"| {name} | {median['reader_rows_per_s']:,.0f} | {median['wall_rows_per_s']:,.0f} |")
    ratio = medians["dictionary"]["reader_rows_per_s"] / medians["per-row"]["reader_rows_per_s"]
    print(f"\ndictionary / per-row (reader thread): {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"config": vars(args), "runs": runs, "medians": medians, "ratio": ratio}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
