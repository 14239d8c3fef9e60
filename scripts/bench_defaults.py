"""Do the defaults converge? 10 epochs of every optimizer at its defaults on a standardized logistic problem,
against the exact optimum of the same objective; the previous defaults and the current ones in one run.

    python3 scripts/bench_defaults.py --rows 200000 --epochs 10

Objective (as streamgd's kernels define it, penalty l2): mean log loss + alpha / 2 ||coef||^2, intercept not
penalised; the exact optimum is scikit-learn's lbfgs LogisticRegression with C = 1 / (alpha n) and tol 1e-12.
The relative gap is (objective - optimum) / optimum. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

ALPHA = 1e-4  # TrainConfig's default alpha
# The defaults before the registries (commit b0d5c36): one schedule for every optimizer, invscaling with
# decay 1e-4 and power 0.5, and these base learning rates (mini-batch).
PREVIOUS_DEFAULTS = {"sgd": 0.2, "momentum": 0.03, "nesterov": 0.03, "adagrad": 0.3, "rmsprop": 0.03,
                     "adam": 0.03, "adamw": 0.03, "asgd": 0.5}
PREVIOUS_SCHEDULE = dict(schedule="invscaling", lr_decay=1e-4, lr_power=0.5)


def write_problem(folder: str, n_rows: int, n_features: int, seed: int) -> tuple[str, np.ndarray, np.ndarray]:
    """A make_classification problem, standardized, written as Parquet (row groups of 16,384)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n_rows, n_features=n_features, n_informative=n_features // 2,
                               random_state=seed)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    path = os.path.join(folder, "logistic.parquet")
    columns = {f"x{j}": X[:, j] for j in range(n_features)}
    columns["y"] = y.astype(np.int64)
    pq.write_table(pa.table(columns), path, row_group_size=16_384)
    return path, X, y


def objective(X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float, alpha: float) -> float:
    """Mean log loss + alpha / 2 ||coef||^2."""
    m = X @ coef + intercept
    return float(np.mean(np.logaddexp(0.0, m) - y * m) + 0.5 * alpha * coef @ coef)


def exact_optimum(X: np.ndarray, y: np.ndarray, alpha: float) -> float:
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(C=1.0 / (alpha * len(y)), solver="lbfgs", tol=1e-12, max_iter=10_000).fit(X, y)
    return objective(X, y, fitted.coef_[0], fitted.intercept_[0], alpha)


def relative_gap(path: str, X: np.ndarray, y: np.ndarray, best: float, epochs: int, **options: object
                 ) -> tuple[float, dict, float]:
    """(relative gap, the run's schedule settings, seconds) of one streamgd.fit run."""
    import streamgd

    started = time.perf_counter()
    model = streamgd.fit(path, target="y", model="logistic", epochs=epochs, **options)
    seconds = time.perf_counter() - started
    gap = (objective(X, y, model.coef_[0], model.intercept_[0], ALPHA) - best) / best
    return gap, model.config, seconds


def describe(config: dict) -> str:
    """The schedule a run used, in the README's words."""
    name = config["schedule"]
    if name == "invscaling":
        return f"invscaling (decay {config['lr_decay']:g}, power {config['lr_power']:g})"
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from streamgd.optim import OPTIMIZERS

    with tempfile.TemporaryDirectory() as folder:
        path, X, y = write_problem(folder, args.rows, args.features, args.seed)
        best = exact_optimum(X, y, ALPHA)
        print(f"{args.rows:,} rows x {args.features} features (standardized), alpha {ALPHA:g}, {args.epochs} "
              f"epochs, batch 1024; exact objective {best:.8f}\n")
        print("| optimizer | previous default | previous gap | default now | gap now | seconds now |")
        print("|---|---|---|---|---|---|")
        for name in OPTIMIZERS:
            before = {}
            if name in PREVIOUS_DEFAULTS:
                before = dict(lr=PREVIOUS_DEFAULTS[name], **PREVIOUS_SCHEDULE)
            old_gap, old_config, _ = relative_gap(path, X, y, best, args.epochs, optimizer=name, **before)
            gap, config, seconds = relative_gap(path, X, y, best, args.epochs, optimizer=name)
            print(f"| {name} | lr {old_config['lr']:g}, {describe(old_config)} | {old_gap:.1e} | "
                  f"lr {config['lr']:g}, {describe(config)} | {gap:.1e} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
