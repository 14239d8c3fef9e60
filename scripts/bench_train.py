"""One epoch of logistic regression on a synthetic float32 file: streamgd at several batch sizes against the
Parquet decode floor, scikit-learn's ``SGDClassifier.partial_fit`` and torch (if installed), fed by the same
reader, all in one run. Each variant runs in its own subprocess so its peak RSS is its own.

    python3 scripts/bench_train.py --rows 10000000          # data cached under bench-data/
    python3 scripts/bench_train.py --variants decode-floor,streamgd-1024 --optimizers all
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


def _log_loss(path: str, coef: np.ndarray, intercept: float) -> float:
    from streamgd import open_dataset
    from streamgd.reader import iter_chunks
    from streamgd.schedule import make_plan

    data = open_dataset(path, target="y")
    total, rows = 0.0, 0
    for chunk in iter_chunks(data, make_plan(data.units, "none")):
        m = chunk.X @ coef.astype(np.float32) + intercept
        total += float(np.sum(np.logaddexp(0, m) - chunk.y * m))
        rows += chunk.n_rows
    return total / rows


def run_variant(name: str, path: str, shuffle: str) -> dict:
    """Run one variant in this process and return its measurements."""
    import pyarrow.parquet as pq

    if name == "decode-floor":
        handle = pq.ParquetFile(path)
        start = time.perf_counter()
        for group in range(handle.num_row_groups):
            handle.read_row_group(group)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "rows": handle.metadata.num_rows, "log_loss": None}
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
        model = trainer.fit(path, target="y")
        epoch = model.history[0]
        return {"seconds": epoch["seconds"], "rows": epoch["rows"],
                "log_loss": _log_loss(path, model.coef_[0], model.intercept_[0]),
                "kernel_calls": trainer.kernel_calls}
    from streamgd import open_dataset
    from streamgd.reader import iter_chunks
    from streamgd.schedule import make_plan

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
            X = torch.from_numpy(np.ascontiguousarray(chunk.X))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--data-dir", default="bench-data")
    parser.add_argument("--shuffle", default="row-groups")
    parser.add_argument("--variants", default="decode-floor,streamgd-1,streamgd-32,streamgd-1024,streamgd-full,"
                                              "sklearn-partial-fit,torch-1024")
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
    from streamgd.synthetic import make_dataset

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
    results = {}
    names = args.variants.split(",")
    if args.optimizers:
        from streamgd.optim import OPTIMIZERS

        chosen = list(OPTIMIZERS) if args.optimizers == "all" else args.optimizers.split(",")
        names += [f"streamgd-1024-{name}" for name in chosen if name != "sgd"]
    if "decode-floor" in names:  # the floor runs first and last; the faster run counts (noisy shared machines)
        names.append("decode-floor")
    for name in names:
        done = subprocess.run([sys.executable, __file__, "--variant", name, "--path", path, "--shuffle", args.shuffle],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name}: skipped ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'})")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if name not in results or result["seconds"] < results[name]["seconds"]:
            results[name] = result
    floor = results["decode-floor"]["rows"] / results["decode-floor"]["seconds"]
    print(f"\n{args.rows:,} rows x {args.features} float32 features, shuffle {args.shuffle}, one epoch\n")
    sgd = results.get("streamgd-1024")
    print("| variant | rows/s | x floor | x streamgd-1024 (sgd) | peak RSS MB | log loss |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        rate = r["rows"] / r["seconds"]
        r["rows_per_s"] = rate
        r["ratio_to_floor"] = rate / floor
        loss = f"{r['log_loss']:.4f}" if r.get("log_loss") is not None else "-"
        versus_sgd = f"{rate / (sgd['rows'] / sgd['seconds']):.2f}" if sgd else "-"
        print(f"| {name} | {rate:,.0f} | {rate / floor:.2f} | {versus_sgd} | {r['peak_rss_mb']:.0f} | {loss} |")
    if args.json_out:
        with open(args.json_out, "w") as stream:
            json.dump({"rows": args.rows, "features": args.features, "shuffle": args.shuffle, "results": results},
                      stream, indent=1)


if __name__ == "__main__":
    main()
