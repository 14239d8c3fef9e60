"""Standardization of numeric features, from the means and deviations of the statistics pass (``stats``).

SGD needs features on comparable scales; the trainer standardizes by default and folds the transform back into
the coefficients, so a saved model predicts on raw inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels.jit import njit


@njit(nogil=True)
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
        """The same linear function on raw inputs: coef / scale and intercept - (coef / scale) . mean. Columns of
        ``coef`` beyond the standardized ones (a model's sparse slots) are left as they are."""
        k = self.mean.shape[0]
        raw = coef.copy()
        raw[:, :k] = coef[:, :k] / self.scale
        return raw, intercept - raw[:, :k] @ self.mean

    def standardized_coefficients(self, coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of ``raw_coefficients`` (exact up to rounding): coef * scale and intercept + coef . mean."""
        k = self.mean.shape[0]
        scaled = coef.copy()
        scaled[:, :k] = coef[:, :k] * self.scale
        return scaled, intercept + coef[:, :k] @ self.mean

    def to_dict(self) -> dict:
        return {"kind": "standardize", "mean": self.mean.tolist(), "scale": self.scale.tolist()}
