"""Penalties on the coefficients (never the intercepts): how each splits ``alpha`` between L2 and L1.

The kernels take ``alpha`` and ``l1_ratio`` and penalise ``alpha * ((1 - l1_ratio) / 2 ||coef||^2 + l1_ratio
||coef||_1)``; a penalty is the ``l1_ratio`` it fixes, or the run's own for ``elasticnet``.

>>> PENALTIES["l1"].l1_ratio(0.15), PENALTIES["elasticnet"].l1_ratio(0.15), PENALTIES["none"].alpha(1e-4)
(1.0, 0.15, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry


@dataclass(frozen=True)
class Penalty:
    """A named penalty: a line of help and the L1 share it fixes (None: the run's ``l1_ratio``)."""

    name: str
    description: str
    fixed_l1_ratio: float | None
    penalised: bool = True

    def l1_ratio(self, l1_ratio: float) -> float:
        """The L1 share of ``alpha`` the kernels get."""
        return float(l1_ratio) if self.fixed_l1_ratio is None else self.fixed_l1_ratio

    def alpha(self, alpha: float) -> float:
        """The penalty strength the kernels get."""
        return float(alpha) if self.penalised else 0.0


_KINDS = (
    Penalty("l2", "alpha / 2 ||coef||^2", 0.0),
    Penalty("l1", "alpha ||coef||_1, exact zeros", 1.0),
    Penalty("elasticnet", "l1_ratio of L1, the rest L2", None),
    Penalty("none", "no penalty", 0.0, penalised=False),
)
PENALTIES: Registry[Penalty] = Registry("penalty", {p.name: p for p in _KINDS}, {p.name: p.description for p in _KINDS})
