"""Learning-rate schedules: plain functions of the 0-based step, vectorised over an array of steps.

A schedule is any callable ``lr(steps: np.ndarray) -> np.ndarray``; the trainer evaluates it once per chunk for
the chunk's mini-batches and hands the rates to the compiled loop. Each built-in carries its settings in
``.config`` (stored in the model file).

>>> float(inverse_scaling(0.1, decay=1.0, power=1.0)(np.array([3]))[0])
0.025
>>> step_decay(1.0, gamma=0.5, step_size=10)(np.array([0, 9, 10, 25])).tolist()
[1.0, 1.0, 0.5, 0.25]
>>> np.round(cosine(1.0, total_steps=100)(np.array([0, 50, 100, 200])), 6).tolist()
[1.0, 0.5, 0.0, 0.0]
>>> warmup(constant(1.0), 4)(np.array([0, 1, 3, 4, 100])).tolist()
[0.25, 0.5, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..registry import Registry

Schedule = Callable[[np.ndarray], np.ndarray]


def _steps(steps: np.ndarray) -> np.ndarray:
    return np.asarray(steps, dtype=np.float64)


def _named(rate: Callable, **config: object) -> Schedule:
    rate.config = config  # type: ignore[attr-defined]
    return rate


def constant(lr: float) -> Schedule:
    """The same rate at every step."""
    return _named(lambda steps: np.full(np.shape(steps), float(lr)), name="constant", lr=lr)


def inverse_scaling(lr: float, decay: float = 1e-4, power: float = 0.5) -> Schedule:
    """``lr / (1 + decay * t) ** power`` (scikit-learn's ``invscaling`` is the case decay = 1)."""
    return _named(lambda steps: lr / np.power(1.0 + decay * _steps(steps), power),
                  name="invscaling", lr=lr, decay=decay, power=power)


def step_decay(lr: float, gamma: float = 0.5, step_size: int = 1000) -> Schedule:
    """``lr * gamma ** floor(t / step_size)``: the rate drops by ``gamma`` every ``step_size`` steps."""
    return _named(lambda steps: lr * np.power(gamma, np.floor(_steps(steps) / step_size)),
                  name="step", lr=lr, gamma=gamma, step_size=step_size)


def exponential(lr: float, gamma: float = 0.999) -> Schedule:
    """``lr * gamma ** t``."""
    return _named(lambda steps: lr * np.power(gamma, _steps(steps)), name="exponential", lr=lr, gamma=gamma)


def cosine(lr: float, total_steps: int, lr_min: float = 0.0) -> Schedule:
    """``lr_min + (lr - lr_min) * (1 + cos(pi * t / total_steps)) / 2``, then ``lr_min`` after ``total_steps``
    (Loshchilov and Hutter's SGDR without restarts)."""
    def rate(steps: np.ndarray) -> np.ndarray:
        progress = np.minimum(_steps(steps) / max(total_steps, 1), 1.0)
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + np.cos(np.pi * progress))
    return _named(rate, name="cosine", lr=lr, total_steps=total_steps, lr_min=lr_min)


def warmup(schedule: Schedule, warmup_steps: int) -> Schedule:
    """Linear warm-up: ``schedule(0) * (t + 1) / warmup_steps`` for the first ``warmup_steps`` steps, then
    ``schedule(t - warmup_steps)``: the wrapped schedule starts once the warm-up ends."""
    if warmup_steps <= 0:
        return schedule
    peak = float(schedule(np.zeros(1))[0])

    def rate(steps: np.ndarray) -> np.ndarray:
        t = _steps(steps)
        after = schedule(np.maximum(t - warmup_steps, 0.0))
        return np.where(t < warmup_steps, peak * (t + 1.0) / warmup_steps, after)
    return _named(rate, **getattr(schedule, "config", {}), warmup=warmup_steps)


@dataclass(frozen=True)
class ScheduleSettings:
    """What a named schedule may read: the run's length and TrainConfig's ``lr_*`` settings."""

    total_steps: int = 1  # after the warm-up
    steps_per_epoch: int | None = None
    decay: float = 1e-4  # invscaling's decay per unit of t (a step, or a row: see rows_per_step)
    # invscaling counts t in rows when rows_per_step > 1: decay * rows_per_step per step. A decay per step makes
    # the rate at a given row depend on the batch size (1,024 times faster at batch 1 than at batch 1,024)
    rows_per_step: int = 1
    decay_per_row: float = 1e-7  # the SGD rules' default: a step of 1,024 rows decays as 1e-4 per step did
    power: float = 0.5
    gamma: float | None = None
    step_size: int | None = None
    lr_min: float = 0.0


@dataclass(frozen=True)
class ScheduleKind:
    """A named schedule: a line of help, the TrainConfig settings it reads and how it is built from them."""

    name: str
    description: str
    settings: tuple[str, ...]
    build: Callable[[float, ScheduleSettings], Schedule]


_KINDS = (
    ScheduleKind("constant", "the same rate at every step", (), lambda lr, s: constant(lr)),
    ScheduleKind("invscaling", "lr / (1 + lr_decay t)^lr_power", ("lr_decay", "lr_power"),
                 lambda lr, s: inverse_scaling(lr, decay=s.decay * s.rows_per_step, power=s.power)),
    ScheduleKind("step", "times lr_gamma (0.5) every lr_step_size steps (one epoch)", ("lr_gamma", "lr_step_size"),
                 lambda lr, s: step_decay(lr, gamma=0.5 if s.gamma is None else s.gamma,
                                          step_size=int(s.step_size or s.steps_per_epoch or 1000))),
    ScheduleKind("exponential", "times lr_gamma every step (default: to 1% at the last step)", ("lr_gamma",),
                 lambda lr, s: exponential(lr, gamma=0.01 ** (1.0 / s.total_steps) if s.gamma is None else s.gamma)),
    ScheduleKind("cosine", "half a cosine from lr to lr_min at the last step", ("lr_min",),
                 lambda lr, s: cosine(lr, total_steps=s.total_steps, lr_min=s.lr_min)),
)
SCHEDULES: Registry[ScheduleKind] = Registry("schedule", {k.name: k for k in _KINDS},
                                             {k.name: k.description for k in _KINDS})
