"""Optimizers (state layout + compiled update rule) and learning-rate schedules."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .schedules import SCHEDULES, Schedule, constant, inverse_scaling
from .sgd import SGD

OPTIMIZERS: dict[str, Any] = {"sgd": SGD}

__all__ = ["OPTIMIZERS", "SCHEDULES", "SGD", "Schedule", "constant", "inverse_scaling", "make_optimizer",
           "make_schedule"]


def make_optimizer(name: str | Any = "sgd", **hyper: Any) -> Any:
    """An optimizer by name (``sgd``, ...) or the optimizer object itself."""
    if not isinstance(name, str):
        return name
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](**hyper)


def make_schedule(name: str | Schedule = "constant", lr: float = 0.01, **options: Any) -> Schedule:
    """A learning-rate schedule by name (``constant``, ``invscaling``) or the callable itself."""
    if callable(name):
        return name
    if name not in SCHEDULES:
        raise ConfigError(f"unknown learning-rate schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    if not lr > 0:
        raise ConfigError(f"the learning rate must be positive, got {lr}")
    return SCHEDULES[name](lr, **options)
