"""Optimizers (hyperparameters + state layout + a compiled update rule) and learning-rate schedules.

>>> make_optimizer("adam", beta2=0.99).config()
{'name': 'adam', 'lr': None, 'beta1': 0.9, 'beta2': 0.99, 'eps': 1e-08, 'state': ['m', 'v']}
>>> make_schedule("cosine", 0.1, total_steps=1000, warmup_steps=100).config["name"]
'cosine'
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..errors import ConfigError
from ..kernels.codes import name_optimizers
from ..registry import Registry
from .adaptive import AdaGrad, Adam, AdamW, RMSProp
from .base import Optimizer
from .ftrl import FTRL
from .schedules import (
    SCHEDULES,
    Schedule,
    ScheduleKind,
    ScheduleSettings,
    constant,
    cosine,
    exponential,
    inverse_scaling,
    step_decay,
    warmup,
)
from .sgd import SGD, AveragedSGD, Momentum, Nesterov

_RULES = (SGD, Momentum, Nesterov, AdaGrad, RMSProp, Adam, AdamW, AveragedSGD, FTRL)
OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer", {cls.name: cls for cls in _RULES},
                                                 {cls.name: cls.description for cls in _RULES})
name_optimizers({cls.code: cls.name for cls in _RULES})  # the compile notice's names of the rules

__all__ = ["FTRL", "OPTIMIZERS", "SCHEDULES", "SGD", "AdaGrad", "Adam", "AdamW", "AveragedSGD", "Momentum", "Nesterov",
           "Optimizer", "RMSProp", "Schedule", "ScheduleKind", "ScheduleSettings", "constant", "cosine",
           "exponential", "hyperparameter_table", "inverse_scaling", "make_optimizer", "make_schedule",
           "optimizer_options", "step_decay", "warmup"]


def optimizer_options(name: str) -> list[str]:
    """The hyperparameters optimizer ``name`` accepts."""
    return [f.name for f in dataclasses.fields(OPTIMIZERS[name])]


def hyperparameter_table() -> dict[str, dict[str, tuple[Any, str]]]:
    """Every optimizer hyperparameter but ``lr`` -> {optimizer name: (its default, help)}, in registry order.

    >>> hyperparameter_table()["momentum"]
    {'momentum': (0.9, "the velocity's decay"), 'nesterov': (0.9, "the velocity's decay")}
    """
    table: dict[str, dict[str, tuple[Any, str]]] = {}
    for name, rule in OPTIMIZERS.items():
        for option, described in rule.hyperparameters().items():
            table.setdefault(option, {})[name] = described
    return table


def make_optimizer(name: str | Optimizer = "sgd", **options: Any) -> Optimizer:
    """An optimizer by name (one of ``OPTIMIZERS``) with its options, or an Optimizer object itself."""
    if isinstance(name, Optimizer):
        if options:
            raise ConfigError(f"options {sorted(options)} given with an optimizer object; set them on the object")
        return name
    rule = OPTIMIZERS.check(name)
    accepted = optimizer_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"optimizer {name!r} has no option {unknown[0]!r}; it takes {', '.join(accepted)}")
    return rule(**options)


def make_schedule(name: str | Schedule = "constant", lr: float = 0.01, *, total_steps: int | None = None,
                  steps_per_epoch: int | None = None, warmup_steps: int = 0, decay: float = ScheduleSettings.decay,
                  power: float = ScheduleSettings.power, gamma: float | None = None, step_size: int | None = None,
                  lr_min: float = 0.0, rows_per_step: int = 1) -> Schedule:
    """A learning-rate schedule by name, or the callable itself, with linear warm-up if ``warmup_steps``.

    Defaults that depend on the run: ``step`` halves the rate every ``step_size`` steps (default: one epoch);
    ``exponential`` decays by ``gamma`` a step (default: to 1% of ``lr`` at the last step); ``cosine`` reaches
    ``lr_min`` at the last step. ``total_steps`` counts the warm-up. ``rows_per_step`` > 1: invscaling's
    ``decay`` is per row (the rate at a row is then the same at every batch size).
    """
    if callable(name):
        return warmup(name, warmup_steps)
    kind = SCHEDULES.check(name)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"the learning rate must be positive, got {lr}")
    if not (isinstance(warmup_steps, int) and warmup_steps >= 0):
        raise ConfigError(f"warmup must be a number of steps >= 0, got {warmup_steps!r}")
    total = max(int(total_steps or 1) - warmup_steps, 1)
    if gamma is not None and not 0.0 < gamma <= 1.0:
        raise ConfigError(f"lr_gamma must be in (0, 1], got {gamma}")
    if step_size is not None and not (int(step_size) == step_size and step_size >= 1):
        raise ConfigError(f"lr_step_size must be a positive number of steps, got {step_size}")
    if not 0.0 <= lr_min <= lr:
        raise ConfigError(f"lr_min must be in [0, lr={lr}], got {lr_min}")
    settings = ScheduleSettings(total_steps=total, steps_per_epoch=steps_per_epoch, decay=decay, power=power,
                                gamma=gamma, step_size=step_size, lr_min=lr_min, rows_per_step=int(rows_per_step))
    return warmup(kind.build(lr, settings), warmup_steps)
