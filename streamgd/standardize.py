"""Standardization of numeric features from one streaming statistics pass (Chan et al.'s parallel merge).

SGD needs features on comparable scales; the trainer standardizes by default and folds the transform back into
the coefficients, so a saved model predicts on raw inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .dataset import Dataset
from .reader import ChunkStream
from .shuffle import make_plan


@dataclass(frozen=True)
class ColumnMoments:
    """Count of finite values, mean and population variance per column."""

    count: np.ndarray
    mean: np.ndarray
    var: np.ndarray


def merge_moments(a: ColumnMoments, b: ColumnMoments) -> ColumnMoments:
    """Combine the moments of two disjoint row sets (Chan, Golub and LeVeque, 1979)."""
    count = a.count + b.count
    safe = np.maximum(count, 1)
    delta = b.mean - a.mean
    mean = a.mean + delta * b.count / safe
    m2 = a.var * a.count + b.var * b.count + delta ** 2 * a.count * b.count / safe
    return ColumnMoments(count, mean, m2 / safe)


def chunk_moments(X: np.ndarray) -> ColumnMoments:
    """Moments of one chunk over its finite values, in float64."""
    finite = np.isfinite(X)
    count = finite.sum(axis=0).astype(np.float64)
    values = np.where(finite, X, 0.0).astype(np.float64)
    mean = values.sum(axis=0) / np.maximum(count, 1)
    centred = np.where(finite, values - mean, 0.0)
    return ColumnMoments(count, mean, (centred ** 2).sum(axis=0) / np.maximum(count, 1))


def compute_moments(dataset: Dataset, prefetch_depth: int = 2) -> ColumnMoments:
    """One streaming pass over the feature columns (memory of a few chunks)."""
    d = dataset.n_features
    total = ColumnMoments(np.zeros(d), np.zeros(d), np.zeros(d))
    plan = make_plan(dataset.units, "none")
    with ChunkStream(dataset, plan, dtype=np.float64, prefetch_depth=prefetch_depth, with_target=False) as stream:
        for chunk in stream:
            total = merge_moments(total, chunk_moments(chunk.X))
    return total


@numba.njit(nogil=True, cache=True)
def _standardize_in_place(X, mean, scale):  # pragma: no cover - compiled
    for j in range(X.shape[1]):
        m = mean[j]
        inv = 1.0 / scale[j]
        for i in range(X.shape[0]):
            X[i, j] = (X[i, j] - m) * inv


@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / scale`` per column; a constant column gets scale 1."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, dataset: Dataset) -> Standardizer:
        moments = compute_moments(dataset)
        std = np.sqrt(moments.var)
        return cls(moments.mean, np.where(std > 0, std, 1.0))

    @classmethod
    def from_stats(cls, means: np.ndarray, stds: np.ndarray) -> Standardizer:
        """From the statistics pass: a column with no spread (or no values) gets scale 1."""
        means = np.nan_to_num(np.asarray(means, dtype=np.float64))
        stds = np.asarray(stds, dtype=np.float64)
        return cls(means, np.where(stds > 0, stds, 1.0))

    def apply(self, X: np.ndarray) -> np.ndarray:
        """Standardize a chunk in place and return it."""
        _standardize_in_place(X, self.mean.astype(X.dtype), self.scale.astype(X.dtype))
        return X

    def raw_coefficients(self, coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The same linear function on raw inputs: coef / scale and intercept - (coef / scale) . mean."""
        raw = coef / self.scale
        return raw, intercept - raw @ self.mean

    def standardized_coefficients(self, coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of ``raw_coefficients`` (exact up to rounding): coef * scale and intercept + coef . mean."""
        return coef * self.scale, intercept + coef @ self.mean

    def to_dict(self) -> dict:
        return {"kind": "standardize", "mean": self.mean.tolist(), "scale": self.scale.tolist()}
