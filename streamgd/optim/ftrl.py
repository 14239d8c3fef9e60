"""FTRL-Proximal (McMahan et al., 2013, "Ad Click Prediction: a View from the Trenches"), the per-coordinate
learner of click logs; the rule is in ``streamgd.kernels.update_rules``.

The paper's alpha is the learning rate (``lr``, constant by default: the per-coordinate rates
``alpha / (beta + sqrt(n_i))`` already decay), its beta is ``beta``, and its lambda1 and lambda2 are the run's
penalty: ``alpha * l1_ratio`` and ``alpha * (1 - l1_ratio)`` (``--alpha``, ``--penalty``, ``--l1-ratio``). The paper
sums the losses of single examples; with mini-batches the gradient is the batch's mean, so batch size 1 is the
paper's algorithm exactly. Coefficients with ``|z| <= lambda1`` are exactly zero; the intercepts are not penalised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..kernels import update_rules as rules
from .base import Optimizer, hyperparameter


@dataclass(frozen=True)
class FTRL(Optimizer):
    """``z += g - sigma * w; n += g^2; w = prox(z, n)`` per coordinate (see the module docstring)."""

    beta: float = hyperparameter(1.0, "the per-coordinate rate's offset: lr / (beta + sqrt(n))")

    name = "ftrl"
    code = rules.OPT_FTRL
    description = "FTRL-Proximal, per-coordinate rates with exact L1 zeros"
    state_names = ("z", "n")
    slots = {"beta": rules.H_FTRL_BETA}
    default_lr = (0.1, 0.1)
    default_schedule = {"schedule": "constant"}
    constant_rate_reason = ("its rate scales every weight (w = -z * lr / (beta + sqrt(n))), so a decaying rate shrinks "
                            "the whole model toward zero; its per-coordinate rates already decay")
    default_batch_size = 1  # the paper's per-example algorithm: the best holdout loss in one pass of a click log

    def batch_lr_factor(self, batch_size: int) -> float:
        """sqrt(batch_size): w_i is about lr * sqrt(steps) after steps of one sign, whatever the gradient's scale,
        so at batch B a rate lr * sqrt(B) reaches as far as B single-row steps (tests/test_defaults.py)."""
        return math.sqrt(float(batch_size))

    def check(self) -> None:
        self._positive("beta", allow_zero=True)
