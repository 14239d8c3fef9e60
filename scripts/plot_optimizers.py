"""Convergence of every optimizer on one synthetic logistic problem: training loss against epoch and against
seconds, one line per optimizer, saved as a PNG; a Markdown table of the final losses and rates on stdout.

    python3 scripts/plot_optimizers.py --rows 1000000 --epochs 8 --out bench-out/optimizers.png
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", default="1024")
    parser.add_argument("--schedule", default=None, help="default: each optimizer's own")
    parser.add_argument("--data-dir", default="bench-data")
    parser.add_argument("--out", default="bench-out/optimizers.png")
    parser.add_argument("--json", dest="json_out", help="also write the histories as JSON")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import streamgd
    from streamgd.optim import OPTIMIZERS
    from streamgd.bench.synthetic import make_dataset

    path = os.path.join(args.data_dir, f"logistic-{args.rows}x{args.features}.parquet")
    if not os.path.exists(path):
        make_dataset(path, n_rows=args.rows, n_features=args.features, task="binary", seed=0)
    streamgd.fit(path, target="y", epochs=1, batch_size=args.batch_size,
                 features=[f"x{j}" for j in range(2)])  # compile outside the timings
    histories = {}
    for name in OPTIMIZERS:  # every optimizer with its default learning rate and schedule (unless --schedule)
        model = streamgd.fit(path, target="y", optimizer=name, epochs=args.epochs, batch_size=args.batch_size,
                             schedule=args.schedule, seed=0)
        histories[name] = {"lr": model.config["lr"], "loss": [e["loss"] for e in model.history],
                           "seconds": list(np.cumsum([e["seconds"] for e in model.history])),
                           "rows_per_s": float(np.mean([e["rows_per_s"] for e in model.history]))}

    figure, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, h in histories.items():
        epochs = np.arange(1, len(h["loss"]) + 1)
        by_epoch.plot(epochs, h["loss"], marker="o", ms=3, label=f"{name} (lr {h['lr']:g})")
        by_time.plot(h["seconds"], h["loss"], marker="o", ms=3, label=name)
    by_epoch.set(xlabel="epoch", ylabel="training log loss (progressive)")
    by_time.set(xlabel="seconds", ylabel="training log loss (progressive)")
    by_epoch.legend(fontsize=8)
    figure.suptitle(f"{args.rows:,} rows x {args.features} features, batch {args.batch_size}, "
                    f"schedule {args.schedule or 'default'}, default learning rates")
    figure.tight_layout()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    figure.savefig(args.out, dpi=110)

    sgd_rate = histories["sgd"]["rows_per_s"]
    print("| optimizer | lr | final loss | rows/s | x sgd |")
    print("|---|---|---|---|---|")
    for name, h in histories.items():
        print(f"| {name} | {h['lr']:g} | {h['loss'][-1]:.5f} | {h['rows_per_s']:,.0f} | "
              f"{h['rows_per_s'] / sgd_rate:.2f} |")
    print(f"\nplot written to {args.out}")
    if args.json_out:
        with open(args.json_out, "w") as stream:
            json.dump(histories, stream, indent=1)


if __name__ == "__main__":
    main()
