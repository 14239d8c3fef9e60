"""A factorization machine's settings (``--factors K``, ``--factor-l2``, ``--factor-init``, ``--factor-numeric``)
and its factor rows' initial values; the compiled pieces are in ``streamgd.kernels.factors``.

The factors are trained by the run's optimizer where it has a per-coordinate form for them (SGD, AdaGrad, Adam)
and by AdaGrad where the run's optimizer is FTRL: FTRL-Proximal's L1 zeros suit the linear weights of a click log,
not latent vectors, so the linear part keeps FTRL and the factors take AdaGrad with the same base rate, as libffm
and xLearn combine them.

>>> FactorSettings(4, init=0.1).initial_rows(3, 0, seed=1).shape
(3, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..kernels import codes

MAX_FACTORS = 1024  # beyond it the pair term costs more than any click log's rows can pay for
_INIT_STREAM = 0xFAC7_0125  # the factors' own seed stream: they do not move with the shuffle's


@dataclass(frozen=True)
class FactorSettings:
    """``k`` factors per row, their L2 penalty, the scale of their seeded normal initial values, and whether the
    dense (numeric) columns get factor rows too (else only the sparse slots do)."""

    k: int
    l2: float = 2e-5
    init: float = 0.05
    numeric: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or not 1 <= self.k <= MAX_FACTORS:
            raise ConfigError(f"factors={self.k!r} is not accepted; expected an integer in [1, {MAX_FACTORS}] "
                              "(leave it out for a linear model)")
        for name in ("l2", "init"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"factor_{name}={value!r} is not accepted; expected a number >= 0")

    def write_hyper(self, hyper: np.ndarray) -> None:
        """Write k, the L2 penalty and the numeric switch into the kernels' hyperparameter vector."""
        hyper[codes.H_FACTORS] = self.k
        hyper[codes.H_FACTOR_L2] = self.l2
        hyper[codes.H_FACTOR_NUMERIC] = 1.0 if self.numeric else 0.0

    def initial_rows(self, n_rows: int, state_rows: int, seed: int) -> np.ndarray:
        """The factor block of a fresh run: per row, k normal values of scale ``init`` drawn from ``seed``, then
        ``state_rows * k`` zeros of optimizer state (the layout of ``streamgd.kernels.factors``)."""
        block = np.zeros((n_rows, self.k * (1 + state_rows)))
        rng = np.random.default_rng([int(seed), _INIT_STREAM])
        block[:, :self.k] = rng.standard_normal((n_rows, self.k)) * self.init
        return block

    def config(self) -> dict:
        return {"k": int(self.k), "l2": float(self.l2), "init": float(self.init), "numeric": bool(self.numeric)}


def check_factor_optimizer(name: str, code: int) -> None:
    """ConfigError unless optimizer ``name`` (code ``code``) can train a factorization machine."""
    if code not in codes.FACTOR_RULES:
        accepted = ", ".join(codes.optimizer_label(c) for c in codes.FACTOR_RULES)
        raise ConfigError(f"optimizer {name!r} does not train factors; a factorization machine (factors) takes "
                          f"{accepted}")
