"""A factorization machine's settings (``--factors K``, ``--factor-l2``, ``--factor-init``, ``--factor-numeric``,
``--field-aware``), its fields and its factor rows' initial values; the compiled pieces are in
``streamgd.kernels.factors`` and ``streamgd.kernels.field_factors``.

**Fields** (``--field-aware``, Juan et al., 2016): each categorical column is a field, and so is each interaction
(a categorical column of its own, made of two) and each binned numeric column; under ``--factor-numeric`` each
numeric column is a field of its own, the paper's "dummy fields" for numerical features, so a numeric column's
pairs with every other column keep vectors of their own, as a categorical column's do (one shared field would
save memory, but then all numeric columns would meet each categorical column through one vector). A factor row
then holds a k-vector per field: the model takes slots x fields x k values, and as many again per optimizer state
row, checked against the memory available before training (``check_factor_block_fits``).

The factors are trained by the run's optimizer where it has a per-coordinate form for them (SGD, AdaGrad, Adam)
and by AdaGrad where the run's optimizer is FTRL: FTRL-Proximal's L1 zeros suit the linear weights of a click log,
not latent vectors, so the linear part keeps FTRL and the factors take AdaGrad, as libffm and xLearn combine them.
Under FTRL that AdaGrad takes FTRL's per-coordinate form ``lr / (beta + sqrt(G))`` (beta from the run, 1 by default:
libffm starts its sums of squares at 1 for the same reason): with a bare floor a row's first step is ``lr`` times
the gradient's sign, however small the gradient, and every rare value's vector jumped by ``lr`` on its first row.
Its rate is ``FTRL_FACTOR_LR`` times the linear part's where every column has factors: at FTRL's full rate the
factors of the many rare values of columns without pair effects memorise their rows within an epoch or two. Where
only the columns with pair effects have factors (``columns``, ``factor_fields``) nothing is left for them to
memorise, and the full rate (``FTRL_CHOSEN_FACTOR_LR``) learns the pairs faster (issue 28's benchmark,
``scripts/bench_fm.py``; the measurements are in benchmarks/README.md, "Factorization machines"). Plain SGD steps
the factors at ``SGD_FACTOR_LR`` of its rate: the pair term's curvature grows with the residual, and
scikit-learn's estimator checks' unscaled regression target (standard deviation 42) diverged at a share of 0.3 at
SGD's default rate (``tests/test_estimators_fm.py``). ``lr_scale`` names another share.

>>> FactorSettings(4, init=0.1).initial_rows(3, 0, seed=1).shape
(3, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil

from ..errors import ConfigError
from ..kernels import codes

MAX_FACTORS = 1024  # beyond it the pair term costs more than any click log's rows can pay for
FTRL_FACTOR_LR = 0.3  # the factors' share of an FTRL run's rate with factors on every column (benchmarks/README.md)
FTRL_CHOSEN_FACTOR_LR = 1.0  # ... and with factors on the columns with pair effects only (factor_fields)
SGD_FACTOR_LR = 0.1  # the factors' share of a plain SGD run's rate (an unscaled target's residuals)
_INIT_STREAM = 0xFAC7_0125  # the factors' own seed stream: they do not move with the shuffle's


@dataclass(frozen=True)
class FactorSettings:
    """``k`` factors per row, their L2 penalty, the scale of their seeded normal initial values, and whether the
    dense (numeric) columns get factor rows too (else only the sparse slots do); ``lr_scale``: the factors' rate
    as a multiple of the run's (None: ``FTRL_FACTOR_LR`` under FTRL, else 1); ``columns``: the categorical
    columns whose entries have factors (the FeatureSpec numbers them first; None: every entry)."""

    k: int
    l2: float = 2e-5
    init: float = 0.05
    numeric: bool = False
    field_aware: bool = False
    lr_scale: float | None = None
    columns: tuple[str, ...] | None = None  # the categorical columns with factors, numbered first (None: all)

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or not 1 <= self.k <= MAX_FACTORS:
            raise ConfigError(f"factors={self.k!r} is not accepted; expected an integer in [1, {MAX_FACTORS}] "
                              "(leave it out for a linear model)")
        for name in ("l2", "init"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"factor_{name}={value!r} is not accepted; expected a number >= 0")
        if self.lr_scale is not None and not (isinstance(self.lr_scale, (int, float)) and
                                              math.isfinite(self.lr_scale) and self.lr_scale > 0):
            raise ConfigError(f"factor_lr={self.lr_scale!r} is not accepted; expected a number > 0 (the factors' "
                              "rate as a multiple of the run's)")

    def rate_share(self, opt_code: int) -> float:
        """The factors' rate as a multiple of the run's under optimizer ``opt_code``."""
        if self.lr_scale is not None:
            return float(self.lr_scale)
        if int(opt_code) == codes.OPT_FTRL:
            return FTRL_CHOSEN_FACTOR_LR if self.columns else FTRL_FACTOR_LR
        return SGD_FACTOR_LR if int(opt_code) == codes.OPT_SGD else 1.0

    def write_hyper(self, hyper: np.ndarray, opt_code: int = -1) -> None:
        """Write k, the L2 penalty, the numeric switch and the factors' share of the rate (under optimizer
        ``opt_code``) into the kernels' hyperparameter vector."""
        hyper[codes.H_FACTORS] = self.k
        hyper[codes.H_FACTOR_L2] = self.l2
        hyper[codes.H_FACTOR_NUMERIC] = 1.0 if self.numeric else 0.0
        hyper[codes.H_FACTOR_LR] = self.rate_share(opt_code)
        hyper[codes.H_FACTOR_SPAN] = len(self.columns or ())

    def fields(self, n_dense: int, sparse_fields: int) -> int:
        """The number of fields of the model (0: a plain FM): ``sparse_fields`` (the categorical columns,
        interactions and binned columns) and, under ``numeric``, one per dense column. ConfigError when
        field-aware without a categorical column."""
        if not self.field_aware:
            return 0
        if sparse_fields == 0:
            raise ConfigError("field_aware makes each categorical column a field, and this data has none: leave "
                              "--field-aware out (a plain FM) or name categorical columns (--categorical)")
        if self.columns:  # only the factor columns' entries meet
            sparse_fields = len(self.columns)
        return sparse_fields + (n_dense if self.numeric else 0)

    def initial_rows(self, n_rows: int, state_rows: int, seed: int, fields: int = 0,
                     out: np.ndarray | None = None) -> np.ndarray:
        """The factor block of a fresh run: per row (and per field: ``fields`` > 0), k normal values of scale
        ``init`` drawn from ``seed``, then ``state_rows * k`` zeros of optimizer state (the layout of
        ``streamgd.kernels.factors``). Written into ``out`` (zeros, as long as the block) where given, and drawn
        a slice of rows at a time: a field-aware block is GBs, and a whole draw held two more halves of it."""
        n_fields = max(int(fields), 1)
        width = self.k * (1 + state_rows)
        if out is None:
            out = np.zeros(n_rows * n_fields * width)
        block = out.reshape(n_rows, n_fields, width)
        rng = np.random.default_rng([int(seed), _INIT_STREAM])
        step = max(1, (1 << 18) // (n_fields * self.k))  # about 2 MB of draws at a time, the same stream
        for start in range(0, n_rows, step):
            stop = min(start + step, n_rows)
            draws = rng.standard_normal((stop - start, n_fields, self.k))
            draws *= self.init
            block[start:stop, :, :self.k] = draws
        return block.reshape(n_rows, -1)

    def config(self) -> dict:
        return {"k": int(self.k), "l2": float(self.l2), "init": float(self.init), "numeric": bool(self.numeric),
                **({"field_aware": True} if self.field_aware else {}),
                **({"lr_scale": float(self.lr_scale)} if self.lr_scale is not None else {}),
                **({"columns": list(self.columns)} if self.columns else {})}


def spec_fields(spec: Any, n_slots: int = 0) -> int:
    """The fields a FeatureSpec's sparse block numbers its entries by (one entry per row each, in this order):
    its categorical columns, interactions and binned columns. Without a spec, the ``n_slots`` slots of a sparse
    matrix (the scikit-learn estimators' input) are each a field of their own, as its columns are the inputs."""
    if spec is None:
        return int(n_slots)
    return len(spec.categorical) + len(spec.interactions) + len(spec.binned)


def check_factor_block_fits(rows: int, fields: int, k: int, state_rows: int, available: int | None = None) -> None:
    """ConfigError, before training, when a field-aware FM's factor block (rows x fields x k x (1 + state rows)
    float64 values, and the linear model's few beside it) would not fit in the memory available."""
    need = 8 * rows * fields * k * (1 + state_rows)
    available = psutil.virtual_memory().available if available is None else available
    if need > available:
        raise ConfigError(f"a field-aware FM of {rows:,} factor rows x {fields} fields x k={k} x (1 + {state_rows} "
                          f"state) would need {need / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB "
                          "available: lower --hash-bits (or --max-categories) or --factors, or leave --field-aware "
                          "out")


def check_factor_optimizer(name: str, code: int) -> None:
    """ConfigError unless optimizer ``name`` (code ``code``) can train a factorization machine."""
    if code not in codes.FACTOR_RULES:
        accepted = ", ".join(codes.optimizer_label(c) for c in codes.FACTOR_RULES)
        raise ConfigError(f"optimizer {name!r} does not train factors; a factorization machine (factors) takes "
                          f"{accepted}")


def fold_standardization(block: np.ndarray, k: int, coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray,
                         scale: np.ndarray, inverse: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A plain FM whose first ``len(mean)`` factor rows are standardized dense columns ``z = (x - mean) / scale``,
    as the same function of the raw inputs (``inverse``: back): (factor block, coef, intercept), new arrays.

    ``coef`` and ``intercept`` are the linear part on raw inputs already (``Standardizer.raw_coefficients``). With
    ``v'_i = v_i / scale_i`` and ``u = sum_j v'_j mean_j`` over the dense columns, the pair term expands to
    ``sum_{i<j} <v'_i, v'_j> x_i x_j - sum_i x_i <v'_i, u - v'_i mean_i> + (|u|^2 - sum_i |v'_i|^2 mean_i^2) / 2``
    (a sparse slot's mean is 0): the factors scale, each entry's coefficient and the intercept take the rest, so
    an FM trained on standardized columns predicts on raw ones exactly (as the linear part folds)."""
    d = mean.shape[0]
    block = block.copy()
    if inverse:  # the raw factors are given
        raw = block[:d, :k]
    else:
        raw = block[:d, :k] / scale[:, None]
    u = mean @ raw  # (k,)
    shift = block[:, :k] @ u  # <v_i, u> for every row (the dense rows overwritten below)
    shift[:d] = raw @ u - np.einsum("if,if->i", raw, raw) * mean
    constant = 0.5 * (u @ u - np.einsum("if,if->i", raw, raw) @ (mean * mean))
    sign = 1.0 if inverse else -1.0
    coef = coef.copy()
    coef[0, :block.shape[0]] += sign * shift
    intercept = intercept - sign * constant
    block[:d, :k] = raw * scale[:, None] if inverse else raw
    return block, coef, intercept
