"""Per-coordinate adaptive rates: AdaGrad (Duchi, Hazan and Singer, 2011), RMSProp (Tieleman and Hinton, 2012),
Adam (Kingma and Ba, 2015) and AdamW (Loshchilov and Hutter, 2019); the rules are in ``streamgd.kernels.update_rules``."""

from __future__ import annotations

from dataclasses import dataclass

from ..kernels import update_rules as rules
from .base import Optimizer, hyperparameter

# Per-coordinate rates keep their step size as the gradient shrinks, so they need a decaying rate to settle:
# lr / (1 + rows / 100,000), t counted in rows, not steps, so that batch 1 decays no faster per row than batch
# 1,024, which it matches (1e-2 per step of 1,024 rows; scripts/bench_defaults.py, tests/test_defaults.py).
DECAYING = {"schedule": "invscaling", "lr_decay": 1e-5, "lr_power": 1.0}


@dataclass(frozen=True)
class AdaGrad(Optimizer):
    """``G += g^2; w -= lr * g / (sqrt(G) + eps)``."""

    eps: float = hyperparameter(1e-10, "the denominator's floor")

    name = "adagrad"
    default_schedule = DECAYING
    code = rules.OPT_ADAGRAD
    description = "per-coordinate rates from the summed squared gradients"
    state_names = ("sum_squares",)
    slots = {"eps": rules.H_EPS}
    default_lr = (0.3, 0.5)

    def check(self) -> None:
        self._positive("eps")

    def batch_lr_factor(self, batch_size: int) -> float:
        """1: its rates shrink as 1 / sqrt(summed squares), which a batch of one row makes larger."""
        return 1.0


@dataclass(frozen=True)
class RMSProp(Optimizer):
    """``s = rho * s + (1 - rho) * g^2; w -= lr * g / (sqrt(s) + eps)``."""

    rho: float = hyperparameter(0.99, "mean-square decay")
    eps: float = hyperparameter(1e-8, "the denominator's floor")

    name = "rmsprop"
    default_schedule = DECAYING
    code = rules.OPT_RMSPROP
    description = "per-coordinate rates from a running mean square"
    state_names = ("mean_square",)
    slots = {"rho": rules.H_BETA2, "eps": rules.H_EPS}
    default_lr = (0.03, 0.1)

    def check(self) -> None:
        self._in_unit_interval("rho")
        self._positive("eps")


@dataclass(frozen=True)
class Adam(Optimizer):
    """Moment estimates with bias correction: ``w -= lr * m_hat / (sqrt(v_hat) + eps)``."""

    beta1: float = hyperparameter(0.9, "first-moment decay")
    beta2: float = hyperparameter(0.999, "second-moment decay")
    eps: float = hyperparameter(1e-8, "the denominator's floor")

    name = "adam"
    default_schedule = DECAYING
    code = rules.OPT_ADAM
    description = "bias-corrected moment estimates"
    state_names = ("m", "v")
    slots = {"beta1": rules.H_BETA1, "beta2": rules.H_BETA2, "eps": rules.H_EPS}
    default_lr = (0.03, 0.1)

    def check(self) -> None:
        self._in_unit_interval("beta1", "beta2")
        self._positive("eps")


@dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay: ``coef *= 1 - lr * weight_decay`` before each Adam step (the intercepts
    are not decayed)."""

    weight_decay: float = hyperparameter(0.01, "decoupled decay of the coefficients")

    name = "adamw"
    code = rules.OPT_ADAMW
    description = "adam with decoupled weight decay"
    slots = {**Adam.slots, "weight_decay": rules.H_WEIGHT_DECAY}

    def check(self) -> None:
        super().check()
        self._positive("weight_decay", allow_zero=True)
