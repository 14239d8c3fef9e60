"""Learning-rate schedules: plain functions of the step, vectorised over an array of steps.

A schedule is any callable ``lr(steps: np.ndarray) -> np.ndarray``; the trainer evaluates it once per chunk for
the chunk's mini-batches, and passes the rates to the compiled loop.

>>> float(inverse_scaling(0.1, decay=1.0, power=1.0)(np.array([3]))[0])
0.025
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Schedule = Callable[[np.ndarray], np.ndarray]


def constant(lr: float) -> Schedule:
    """The same rate at every step."""
    def rate(steps: np.ndarray) -> np.ndarray:
        return np.full(np.shape(steps), float(lr))
    rate.config = {"name": "constant", "lr": lr}  # type: ignore[attr-defined]
    return rate


def inverse_scaling(lr: float, decay: float = 1e-4, power: float = 0.5) -> Schedule:
    """``lr / (1 + decay * t) ** power`` (scikit-learn's ``invscaling`` is the case decay = 1)."""
    def rate(steps: np.ndarray) -> np.ndarray:
        return lr / np.power(1.0 + decay * np.asarray(steps, dtype=np.float64), power)
    rate.config = {"name": "invscaling", "lr": lr, "decay": decay, "power": power}  # type: ignore[attr-defined]
    return rate


SCHEDULES: dict[str, Callable[..., Schedule]] = {"constant": constant, "invscaling": inverse_scaling}
