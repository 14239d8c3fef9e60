"""Convex problems with exact solutions, shared by the training and optimizer tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression

from streamgd.models.linear import MODEL_KINDS


def write_xy(path, X, y, row_group_size):
    """Write features x0.. and target y to a Parquet file; return its path as a string."""
    columns = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    columns["y"] = y
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return str(path)


def ridge_objective(X, y, coef, intercept, alpha):
    r = X @ coef + intercept - y
    return 0.5 * np.mean(r ** 2) + 0.5 * alpha * coef @ coef


def ridge_exact(X, y, alpha):
    n, d = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    reg = np.diag([alpha] * d + [0.0]) * n
    sol = np.linalg.solve(A.T @ A + reg, A.T @ y)
    return sol[:d], sol[d]


def logistic_objective(X, y, coef, intercept, alpha):
    m = X @ coef + intercept
    return np.mean(np.logaddexp(0, m) - y * m) + 0.5 * alpha * coef @ coef


def logistic_exact(X, y, alpha):
    """scikit-learn's lbfgs solution of the same objective (C = 1 / (alpha * n))."""
    reference = LogisticRegression(C=1.0 / (alpha * len(y)), solver="lbfgs", tol=1e-12, max_iter=10_000).fit(X, y)
    return reference.coef_[0], reference.intercept_[0]


def targets_for(kind: str, n_out: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """Targets a loss accepts: labels for classifiers, counts for Poisson, values otherwise."""
    cls = MODEL_KINDS[kind]
    if cls.is_classifier:
        return rng.integers(0, max(n_out, 2), n).astype(np.float64)
    if cls.needs_nonnegative_target:
        return rng.poisson(2.0, n).astype(np.float64)
    return 2.0 * rng.standard_normal(n)
