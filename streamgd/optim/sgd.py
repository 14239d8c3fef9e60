"""The stochastic-gradient family: plain SGD (Robbins and Monro, 1951), heavy-ball momentum (Polyak, 1964),
Nesterov momentum as Sutskever et al. (2013) write it, and averaged SGD (Polyak and Ruppert): the rules are in
``streamgd.kernels.update_rules``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..kernels import update_rules as rules
from .base import Optimizer, hyperparameter


@dataclass(frozen=True)
class SGD(Optimizer):
    """``w -= lr * g``; no state."""

    name = "sgd"
    code = rules.OPT_SGD
    description = "plain stochastic gradient steps"


@dataclass(frozen=True)
class Momentum(Optimizer):
    """Heavy ball: ``v = momentum * v + g; w -= lr * v``."""

    momentum: float = hyperparameter(0.9, "the velocity's decay")

    name = "momentum"
    code = rules.OPT_MOMENTUM
    description = "heavy-ball momentum"
    state_names = ("velocity",)
    slots = {"momentum": rules.H_BETA1}
    default_lr = (0.03, 0.05)  # the velocity sums ~1 / (1 - momentum) gradients

    def check(self) -> None:
        self._in_unit_interval("momentum")


@dataclass(frozen=True)
class Nesterov(Momentum):
    """Nesterov's look-ahead: ``v = momentum * v + g; w -= lr * (g + momentum * v)``."""

    name = "nesterov"
    code = rules.OPT_NESTEROV
    description = "Nesterov's look-ahead momentum"


@dataclass(frozen=True)
class AveragedSGD(Optimizer):
    """Plain SGD steps; the model keeps the mean of the iterates from step ``average_start`` on (scikit-learn's
    ``average=True``), which converges at the optimal rate with larger, slowly decaying steps."""

    average_start: int = hyperparameter(0, "the first step in the average")

    name = "asgd"
    code = rules.OPT_ASGD
    description = "SGD keeping the average of its iterates"
    state_names = ("average",)
    slots = {"average_start": rules.H_AVERAGE_START}
    default_lr = (0.5, 0.5)  # the average tames the noise of larger steps

    def check(self) -> None:
        if int(self.average_start) != self.average_start or self.average_start < 0:
            raise ConfigError(f"asgd option average_start={self.average_start!r} is not accepted; "
                              "expected an integer >= 0")

    def final_params(self, params: np.ndarray, state: np.ndarray, steps: int) -> np.ndarray:
        """The average of the iterates, once at least one entered it."""
        return state[0].copy() if steps > self.average_start else params

