"""One epoch of logistic regression on a synthetic float32 file: streamgd at several batch sizes against the
Parquet decode floor, scikit-learn's ``SGDClassifier.partial_fit`` and torch (if installed), fed by the same
reader, all in one run. Each variant runs in its own subprocess so its peak RSS is its own.

    python3 scripts/bench_train.py --rows 10000000          # data cached under bench-data/
    python3 scripts/bench_train.py --variants decode-floor,streamgd-1024 --optimizers all
    python3 scripts/bench_train.py --variants decode-floor,streamgd-1024,streamgd-1024-cached   # the epoch cache
    python3 scripts/bench_train.py --variants decode-floor,cached-compute-floor,cache-write-floor,streamgd-1024,streamgd-1024-cached

``cached-compute-floor`` (the gather and the kernel of a cached epoch alone, from memory) and ``cache-write-floor``
(the cache's bytes written alone) are what the cache's summary compares its epochs with, in the same run.

Every variant runs ``--repeat`` times, in rounds (each round runs every variant once, so a slow spell of a
shared machine falls on all of them); the fastest run of each counts, with the median peak RSS of its runs.
``reader-decode`` is the decode floor read the way streamgd's reader reads (memory-mapped, see
streamgd/io/mapped.py): the decoding that training overlaps with its own work. Every variant makes jemalloc
pyarrow's allocator, as ``streamgd fit`` does. Each run also records its CPU seconds (user + system, every thread):
on a machine shared with other jobs, the ratio of CPU per row is what the ratio of rates would be with the cores to
itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _epoch_cpu_seconds() -> list[float]:
    """Record the CPU seconds (user + system, every thread) of each epoch a Trainer runs from now on: a shared
    machine's other work slows an epoch's wall time but not the CPU it needs."""
    from streamgd.training import epoch as driver

    seconds: list[float] = []
    run_epoch = driver.run_epoch

    def timed(*args, **kwargs):
        start = _cpu_seconds()
        record = run_epoch(*args, **kwargs)
        seconds.append(_cpu_seconds() - start)
        return record

    driver.run_epoch = timed
    return seconds


def _log_loss(path: str, coef: np.ndarray, intercept: float) -> float:
    from streamgd import open_dataset
    from streamgd.data.reader import iter_chunks
    from streamgd.data.shuffle import make_plan

    data = open_dataset(path, target="y")
    total, rows = 0.0, 0
    for chunk in iter_chunks(data, make_plan(data.units, "none")):
        m = chunk.X @ coef.astype(np.float32) + intercept
        total += float(np.sum(np.logaddexp(0, m) - chunk.y * m))
        rows += chunk.n_rows
    return total / rows


def run_variant(name: str, path: str, shuffle: str) -> dict:
    """Run one variant in this process and return its measurements."""
    from streamgd.cli.allocators import prefer_jemalloc

    prefer_jemalloc()  # every variant with the allocator `streamgd fit` runs with (the floor too)

    if name in ("decode-floor", "reader-decode"):
        from streamgd.bench.children import decode_floor
        from streamgd.io.mapped import MappedParquetFile

        start = _cpu_seconds()
        floor = decode_floor(path, None if name == "decode-floor" else MappedParquetFile(path))
        return {"seconds": floor["seconds"], "rows": floor["rows"], "log_loss": None,
                "cpu_seconds": _cpu_seconds() - start}
    if name == "streamgd-1024-cached":
        return _cached_variant(path)
    if name == "cache-write-floor":
        return _cache_write_floor(path)
    if name == "cached-compute-floor":
        return _cached_compute_floor(path)
    if name.startswith("streamgd"):
        import streamgd

        _, batch, *rest = name.split("-")
        optimizer = rest[0] if rest else "sgd"
        lr = {"1": 0.01, "32": 0.05, "1024": 0.5, "full": 2.0}[batch] if optimizer == "sgd" else None
        options = dict(model="logistic", batch_size=batch, epochs=1, lr=lr, schedule="constant", shuffle=shuffle,
                       standardize=False, alpha=0.0, optimizer=optimizer)
        data = streamgd.open_dataset(path, target="y")
        streamgd.Trainer(**options).fit(data.subset(data.units[:1]))  # load compiled kernels outside the timing
        trainer = streamgd.Trainer(**options)
        cpu = _epoch_cpu_seconds()
        model = trainer.fit(path, target="y")
        epoch = model.history[0]
        return {"seconds": epoch["seconds"], "rows": epoch["rows"], "cpu_seconds": cpu[0],
                "log_loss": _log_loss(path, model.coef_[0], model.intercept_[0]),
                "kernel_calls": trainer.kernel_calls}
    from streamgd import open_dataset
    from streamgd.data.reader import iter_chunks
    from streamgd.data.shuffle import make_plan

    data = open_dataset(path, target="y")
    plan = make_plan(data.units, shuffle, seed=0)
    first = data.subset(data.units[:1])
    for _ in iter_chunks(first, make_plan(first.units, shuffle, seed=0)):  # load compiled kernels untimed
        pass
    if name == "sklearn-partial-fit":
        from sklearn.linear_model import SGDClassifier

        clf = SGDClassifier(loss="log_loss", alpha=1e-6, learning_rate="constant", eta0=0.01)
        start = time.perf_counter()
        rows = 0
        for chunk in iter_chunks(data, plan):
            clf.partial_fit(chunk.X, chunk.y, classes=[0.0, 1.0])
            rows += chunk.n_rows
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "rows": rows, "log_loss": _log_loss(path, clf.coef_[0], clf.intercept_[0])}
    if name == "torch-1024":
        import torch

        torch.set_num_threads(1)
        layer = torch.nn.Linear(data.n_features, 1)
        optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        start = time.perf_counter()
        rows = 0
        for chunk in iter_chunks(data, plan):
            X = torch.from_numpy(chunk.X)  # column-major, as the reader delivers it; matmul takes the strides
            y = torch.from_numpy(chunk.y.astype(np.float32))
            for s in range(0, chunk.n_rows, 1024):
                optimizer.zero_grad()
                loss = loss_fn(layer(X[s:s + 1024])[:, 0], y[s:s + 1024])
                loss.backward()
                optimizer.step()
            rows += chunk.n_rows
        seconds = time.perf_counter() - start
        coef = layer.weight.detach().numpy()[0].astype(np.float64)
        return {"seconds": seconds, "rows": rows, "log_loss": _log_loss(path, coef, float(layer.bias.item()))}
    raise SystemExit(f"unknown variant {name}")


CACHED_EPOCHS = 4


def _cached_variant(path: str) -> dict:
    """streamgd-1024 with ``--cache`` in a fresh directory for ``CACHED_EPOCHS`` epochs: the first epoch decodes and
    writes the cache, the later ones read it (their fastest counts as the variant's rate)."""
    import shutil
    import tempfile

    import streamgd

    options = dict(model="logistic", batch_size=1024, lr=0.5, schedule="constant", standardize=False, alpha=0.0)
    data = streamgd.open_dataset(path, target="y")
    streamgd.Trainer(epochs=1, **options).fit(data.subset(data.units[:1]))  # compiled kernels loaded untimed
    directory = tempfile.mkdtemp(prefix="cache-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        warm = tempfile.mkdtemp(prefix="warm-", dir=directory)
        streamgd.Trainer(epochs=2, cache=warm, **options).fit(data.subset(data.units[:1]))  # the cache's kernels
        trainer = streamgd.Trainer(epochs=CACHED_EPOCHS, cache=os.path.join(directory, "c"), **options)
        cpu = _epoch_cpu_seconds()
        model = trainer.fit(path, target="y")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    # an epoch with misses still decodes and writes part of the cache (the first epoch defers what finds the
    # writer busy to the second): those build it, the epochs with every unit a hit read it
    building = [i for i, e in enumerate(model.history) if e["cache"]["misses"] > 0]
    reading = [i for i, e in enumerate(model.history) if e["cache"]["misses"] == 0] or [len(model.history) - 1]
    fastest = min(reading, key=lambda i: model.history[i]["seconds"])
    return {"seconds": model.history[fastest]["seconds"], "rows": model.history[fastest]["rows"],
            "write_epoch_seconds": model.history[0]["seconds"],
            "building_epochs": len(building), "building_seconds": sum(model.history[i]["seconds"] for i in building),
            "reading_epochs": len(reading), "later_epoch_seconds": [e["seconds"] for e in model.history[1:]],
            "cpu_seconds": min(cpu[i] for i in reading), "epoch_cpu_seconds": cpu,
            "cache": [e["cache"] for e in model.history],
            "log_loss": _log_loss(path, model.coef_[0], model.intercept_[0])}


def _cache_write_floor(path: str) -> dict:
    """What writing the epoch cache's bytes alone costs: one file per unit of the size the cache gives it (taken
    from a cache of the first unit), each written to a temporary name and renamed, as the cache's writer does, in
    a fresh directory beside the data; no decoding, no training."""
    import shutil
    import tempfile

    import streamgd
    from streamgd.data.cache import read_entries

    data = streamgd.open_dataset(path, target="y")
    first = data.subset(data.units[:1])
    directory = tempfile.mkdtemp(prefix="floor-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        sample = os.path.join(directory, "sample")
        streamgd.Trainer(model="logistic", batch_size=1024, epochs=1, standardize=False, cache=sample).fit(first)
        per_row = read_entries(sample)[0]["size"] / first.units[0].n_rows
        payload = np.random.default_rng(0).integers(0, 256, int(per_row * data.units[0].n_rows) + 4096, np.uint8)
        start, cpu, written = time.perf_counter(), _cpu_seconds(), 0
        for k, unit in enumerate(data.units):
            size = -(-int(per_row * unit.n_rows) // 4096) * 4096
            target = os.path.join(directory, f"unit-{k}")
            with open(target + ".tmp", "wb") as stream:
                stream.write(memoryview(payload)[:size])
            os.replace(target + ".tmp", target)
            written += size
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"seconds": seconds, "rows": data.n_rows, "cpu_seconds": cpu, "bytes": written, "log_loss": None}


def _cached_compute_floor(path: str) -> dict:
    """What an epoch from the cache must compute, alone: every unit's rows gathered into a fresh permutation (the
    cache's gather) and trained on (the kernel), from arrays already in memory: no maps, no reader, no Python per
    step beyond one call each. As the reader does, a second thread draws the next unit's permutation and gathers
    its first ``split`` columns while the training thread trains on this unit and then gathers the rest; the best
    split counts. What a cached epoch could reach if reading the cache cost nothing."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    from streamgd.kernels import api as kernels
    from streamgd.data.shuffle.permute import permutation
    from streamgd.data.unit_arrays import _gather_columns, _gather_vector

    source = pq.ParquetFile(path)
    names = [n for n in source.schema_arrow.names if n != "y"]
    units = []
    for g in range(source.metadata.num_row_groups):
        table = source.read_row_group(g)
        X = np.empty((table.num_rows, len(names)), np.float32, order="F")
        for j, name in enumerate(names):
            X[:, j] = table.column(name).to_numpy()
        units.append((X, table.column("y").to_numpy().astype(np.float64)))
    d = len(names)
    none = np.empty(0, np.int64)
    # three buffers in turn (one trained on, one being gathered, one spare), touched once: as the reader's
    # recycled chunk buffers, no page faults per unit
    largest = max(u[0].shape[0] for u in units)
    buffers = [(np.ones((largest, d), np.float32, order="F"), np.ones(largest)) for _ in range(3)]

    def prepare(k: int, split: int) -> tuple:
        X, y = units[k]
        rows = permutation((0, 0, k), X.shape[0])  # the shuffle's own (seed, epoch, unit)
        out, target = (b[:X.shape[0]] for b in buffers[k % 3])
        _gather_vector(y, rows, none, target)
        _gather_columns(X, rows, none, out, 0, split)
        return out, target, rows

    def epoch(split: int) -> tuple[float, float]:
        params, state, hyper = np.zeros(d + 1), np.zeros((0, d + 1)), np.zeros(kernels.N_HYPER)
        start, cpu = time.perf_counter(), _cpu_seconds()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(prepare, 0, split)
            for k in range(len(units)):
                out, target, rows = pending.result()
                _gather_columns(units[k][0], rows, none, out, split, d)
                if k + 1 < len(units):
                    pending = pool.submit(prepare, k + 1, split)
                lrs = np.full(-(-out.shape[0] // 1024), 0.5)
                kernels.train_chunk(out, target, np.empty(0), params, state, hyper, lrs, 1024, 1, kernels.LOSS_LOG,
                                    kernels.OPT_SGD, 0)
        return time.perf_counter() - start, _cpu_seconds() - cpu

    epoch(d // 2)  # compiled kernels loaded, pages touched
    runs = {split: epoch(split) for split in (d // 2, 5 * d // 8, 3 * d // 4, 7 * d // 8)}
    split = min(runs, key=lambda s: runs[s][0])
    return {"seconds": runs[split][0], "rows": sum(u[0].shape[0] for u in units), "cpu_seconds": runs[split][1],
            "split": split, "log_loss": None}


def _cache_summary(results: dict[str, dict]) -> str:
    """The cache's figures: later epochs against the decode floor, the first epoch's writing overhead against
    the uncached epoch, and peak RSS against the uncached run."""
    cached = results.get("streamgd-1024-cached")
    if cached is None:
        return ""
    best = min(cached["all_runs"], key=lambda r: r["seconds"])
    lines = [f"\nstreamgd-1024-cached: {best['reading_epochs']} of {CACHED_EPOCHS} epochs wholly from the cache, "
             f"fastest {cached['rows_per_s']:,.0f} rows/s"]
    if "decode-floor" in results:
        floor = results["decode-floor"]
        lines.append(f"  = {cached['rows_per_s'] / floor['rows_per_s']:.2f}x the decode floor")
        lines.append(f"  CPU seconds (user + system) per row: the floor's / a cached epoch's = "
                     f"{_least_cpu(floor) / _least_cpu(cached):.2f} (what the ratio of rates would be if "
                     f"each had the machine to itself)")
    compute = results.get("cached-compute-floor")
    if compute is not None and "decode-floor" in results:
        lines.append(f"  the gather and the kernel alone (cached-compute-floor, {compute['split']} of the columns "
                     f"gathered ahead): {compute['rows_per_s']:,.0f} rows/s = "
                     f"{compute['rows_per_s'] / results['decode-floor']['rows_per_s']:.2f}x the decode floor; "
                     f"a cached epoch reaches {cached['rows_per_s'] / compute['rows_per_s']:.2f}x of it")
    plain = results.get("streamgd-1024")
    if plain is not None:
        write = min(r["write_epoch_seconds"] for r in cached["all_runs"])
        lines.append(f"  first epoch's CPU seconds {min(r['epoch_cpu_seconds'][0] for r in cached['all_runs']):.2f}, "
                     f"the uncached epoch's {_least_cpu(plain):.2f}")
        lines.append(f"  first epoch (decoding and writing the cache): {write:.2f} s, the uncached epoch "
                     f"{plain['seconds']:.2f} s: overhead {100 * (write / plain['seconds'] - 1):+.0f}%")
        built = min(cached["all_runs"], key=lambda r: r["building_seconds"])
        n = built["building_epochs"]
        lines.append(f"  building the cache took {n} epoch(s) with misses: {built['building_seconds']:.2f} s, against "
                     f"{n * plain['seconds']:.2f} s for {n} uncached: overhead "
                     f"{100 * (built['building_seconds'] / (n * plain['seconds']) - 1):+.0f}%")
        floor_write = results.get("cache-write-floor")
        if floor_write is not None:
            lines.append(f"  writing the cache's {floor_write['bytes'] / 1e9:.2f} GB alone (cache-write-floor): "
                         f"{floor_write['seconds']:.2f} s, {_least_cpu(floor_write):.2f} CPU-s = "
                         f"{100 * floor_write['seconds'] / plain['seconds']:.0f}% of the uncached epoch")
        lines.append(f"  peak RSS {cached['peak_rss_mb']:.0f} MB, uncached {plain['peak_rss_mb']:.0f} MB: "
                     f"{cached['peak_rss_mb'] / plain['peak_rss_mb']:.3f}x")
    return "\n".join(lines)


def _least_cpu(result: dict) -> float:
    """The fewest CPU seconds of a variant's runs (the cached variant's: of its later epochs)."""
    return min(r["cpu_seconds"] for r in result["all_runs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--data-dir", default="bench-data")
    parser.add_argument("--shuffle", default="row-groups")
    parser.add_argument("--variants", default="decode-floor,reader-decode,streamgd-1,streamgd-32,streamgd-1024,"
                                              "streamgd-full,sklearn-partial-fit,torch-1024")
    parser.add_argument("--repeat", type=int, default=3, help="runs of every variant; the fastest counts")
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--optimizers", default="",
                        help="comma-separated optimizers to add as streamgd-1024-<optimizer> (or 'all')")
    args = parser.parse_args()
    if args.variant:
        result = run_variant(args.variant, args.path, args.shuffle)
        result["peak_rss_mb"] = _peak_mb()
        print(json.dumps(result))
        return
    from streamgd.bench.synthetic import make_dataset

    path = os.path.join(args.data_dir, f"logistic-{args.rows}x{args.features}.parquet")
    if not os.path.exists(path):
        make_dataset(path, n_rows=args.rows, n_features=args.features, task="binary", seed=0)
    # compile once so no variant pays for Numba compilation
    subprocess.run([sys.executable, "-c", "import streamgd, numpy as np, pyarrow as pa, pyarrow.parquet as pq, tempfile, os;"
                    "p=os.path.join(tempfile.mkdtemp(),'w.parquet');"
                    "pq.write_table(pa.table({'a':np.ones(64,np.float32),'y':np.arange(64)%2}),p);"
                    "[streamgd.fit(p,target='y',batch_size=b,epochs=1,shuffle=s) for b in (1,'full') for s in ('none','row-groups')]"],
                   check=True)
    with open(path, "rb") as stream:  # warm the page cache: every variant reads the file from memory
        while stream.read(1 << 24):
            pass
    runs: dict[str, list[dict]] = {}
    names = args.variants.split(",")
    if args.optimizers:
        from streamgd.optim import OPTIMIZERS

        chosen = list(OPTIMIZERS) if args.optimizers == "all" else args.optimizers.split(",")
        names += [f"streamgd-1024-{name}" for name in chosen if name != "sgd"]
    skipped: set[str] = set()
    for _ in range(args.repeat):
        for name in names:
            if name in skipped:
                continue
            done = subprocess.run([sys.executable, __file__, "--variant", name, "--path", path, "--shuffle",
                                   args.shuffle], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name}: skipped ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'})")
                skipped.add(name)
                continue
            runs.setdefault(name, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
    results = {name: _summary(found) for name, found in runs.items()}
    print(f"\n{args.rows:,} rows x {args.features} float32 features, shuffle {args.shuffle}, one epoch, "
          f"fastest of {args.repeat} runs\n")
    print(_table(results))
    print(_cache_summary(results))
    if args.json_out:
        with open(args.json_out, "w") as stream:
            json.dump({"rows": args.rows, "features": args.features, "shuffle": args.shuffle, "repeat": args.repeat,
                       "results": results, "runs": runs}, stream, indent=1)


def _summary(runs: list[dict]) -> dict:
    """The fastest run, its rate, and the median peak RSS of all runs."""
    fastest = dict(min(runs, key=lambda r: r["seconds"]))
    fastest["rows_per_s"] = fastest["rows"] / fastest["seconds"]
    fastest["peak_rss_mb"] = float(np.median([r["peak_rss_mb"] for r in runs]))
    fastest["all_rows_per_s"] = [round(r["rows"] / r["seconds"]) for r in runs]
    fastest["all_runs"] = runs
    return fastest


def _table(results: dict[str, dict]) -> str:
    """A Markdown table: each variant's rate against the decode floor, scikit-learn and torch."""
    baselines = [name for name in ("decode-floor", "sklearn-partial-fit", "torch-1024") if name in results]
    lines = ["| variant | rows/s | " + " | ".join(f"x {name}" for name in baselines) + " | peak RSS MB | log loss |",
             "|---" * (4 + len(baselines)) + "|"]
    for name, r in results.items():
        if name in ("cache-write-floor", "cached-compute-floor"):  # in the cache's summary
            continue
        ratios = " | ".join(f"{r['rows_per_s'] / results[b]['rows_per_s']:.2f}" for b in baselines)
        loss = f"{r['log_loss']:.4f}" if r.get("log_loss") is not None else "-"
        lines.append(f"| {name} | {r['rows_per_s']:,.0f} | {ratios} | {r['peak_rss_mb']:.0f} | {loss} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
