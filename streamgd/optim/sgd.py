"""Plain stochastic gradient descent: ``w <- w - lr * g``. No state; the baseline every other rule is measured
against (Robbins and Monro, 1951)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels


@dataclass(frozen=True)
class SGD:
    """Plain SGD; the learning rate comes from the schedule."""

    name = "sgd"
    code = kernels.OPT_SGD
    state_rows = 0

    def init_state(self, n_params: int) -> np.ndarray:
        """The optimizer state: an empty ``(0, n_params)`` array."""
        return np.zeros((self.state_rows, n_params), dtype=np.float64)

    def write_hyper(self, hyper: np.ndarray) -> None:
        """SGD has no hyperparameters beyond the learning rate."""

    def config(self) -> dict:
        return {"name": self.name}
