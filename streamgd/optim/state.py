"""A fresh run's optimizer set-up: the kernels' hyperparameter vector, zero parameters and the optimizer state,
with the extra state rows the penalties need (the cumulative L1 record, the sparse slots' decay stamps).

The layout is the kernels' (``streamgd.kernels.update_rules``): ``hyper[H_L1_ROW]`` and ``hyper[H_LAZY_ROW]``
hold 1 + the row of the state that keeps each record (0: none), so the compiled rules find them.
"""

from __future__ import annotations

import numpy as np
import psutil

from ..errors import ConfigError
from ..kernels import codes as rules
from ..kernels.api import factor_rows, n_params
from .base import Optimizer
from .factors import FactorSettings, check_factor_block_fits

__all__ = ["check_model_fits", "coordinate_block", "initial_state", "kernel_hyper", "laid_out"]

def kernel_hyper(optimizer: Optimizer, alpha: float, l1_ratio: float, clip_norm: float, huber_epsilon: float,
                 factors: FactorSettings | None = None) -> np.ndarray:
    """The kernels' hyperparameter vector: penalty (the effective ``alpha`` and ``l1_ratio``), clipping, Huber's
    epsilon, the optimizer's own and a factorization machine's (``factors``)."""
    hyper = np.zeros(rules.N_HYPER)
    hyper[rules.H_ALPHA] = alpha
    hyper[rules.H_L1_RATIO] = l1_ratio
    hyper[rules.H_CLIP_NORM] = clip_norm
    hyper[rules.H_HUBER_EPS] = huber_epsilon
    optimizer.write_hyper(hyper)
    if factors is not None:
        factors.write_hyper(hyper, optimizer.code)
    return hyper


def coordinate_block(n_params: int, state_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(block, params, opt_state): zeros laid out per coordinate, ``block[i]`` = coordinate i's weight and then its
    ``state_rows`` state values, with ``params`` (``block[:, 0]``) and ``opt_state`` (``block[:, 1:].T``, a row per
    state vector) as views of it. A sparse update then finds a slot's weight and state in one cache line, not in
    one line per array (as Vowpal Wabbit and libffm lay them out; ``scripts/bench_sparse_loop.py`` measures it).
    Everything but the kernels reads the two views as it reads separate arrays; a copy of a view is an ordinary
    contiguous array."""
    block = np.zeros((n_params, 1 + state_rows))
    return block, block[:, 0], block[:, 1:].T


def laid_out(params: np.ndarray, opt_state: np.ndarray, per_coordinate: bool) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``params`` and ``opt_state`` (a resumed run's), as views of one ``coordinate_block`` when
    ``per_coordinate`` and the state covers every parameter (a linear model; a factorization machine keeps its
    factors' state in its factor block), else as contiguous arrays. The values are the same either way."""
    if per_coordinate and opt_state.ndim == 2 and opt_state.shape[1] == params.shape[0]:
        _, block_params, block_state = coordinate_block(params.shape[0], opt_state.shape[0])
        block_params[:] = params
        block_state[:] = opt_state
        return block_params, block_state
    return np.array(params, dtype=np.float64), np.array(opt_state, dtype=np.float64)


def initial_state(optimizer: Optimizer, hyper: np.ndarray, n_features: int, n_out: int, n_slots: int,
                  full_batch: bool, factors: FactorSettings | None = None, seed: int = 0, sparse_fields: int = 0,
                  per_coordinate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Zero parameters and the optimizer's initial state for a fresh run (``n_slots`` of the features are a
    sparse block's slots); ``hyper`` gets the rows of the penalty records the state holds. A factorization
    machine's parameters go on with its factor block (seeded from ``seed``; ``streamgd.kernels.factors``), which
    holds the factors' optimizer state beside them: ``opt_state`` covers the linear part. A field-aware one
    takes its fields from ``sparse_fields`` (the FeatureSpec's, ``spec_fields``), written to ``hyper``.
    ``per_coordinate``: a linear model with sparse slots gets its parameters and state as views of one
    ``coordinate_block`` (what the batch-1 loop reads fastest); otherwise separate contiguous arrays."""
    size = n_params(n_features, n_out)
    factor_block = None  # (rows, state rows, seed, fields) of a factorization machine's block
    if factors is not None:
        rows = factor_rows(n_features - n_slots, n_slots, factors.numeric)
        state_rows = rules.factor_state_rows(optimizer.code)
        fields = factors.fields(n_features - n_slots, sparse_fields)
        hyper[rules.H_FIELDS] = fields
        if fields:
            check_factor_block_fits(rows, fields, factors.k, state_rows)
        check_model_fits(size + rows * max(fields, 1) * factors.k * (1 + state_rows), optimizer.state_rows, n_slots)
        factor_block = (rows, state_rows, seed, fields)  # drawn into the parameter vector below: no copy
    stochastic = not full_batch and optimizer.code != rules.OPT_FTRL  # FTRL applies its penalty itself
    # stochastic steps take the L1 penalty cumulatively (exact zeros despite gradient noise); its record is one
    # more row of the optimizer state. Full batch uses the plain proximal step (ISTA).
    cumulative_l1 = stochastic and hyper[rules.H_ALPHA] * hyper[rules.H_L1_RATIO] > 0
    # sparse slots catch up the L2 penalty (and AdamW's decay) of the steps they skipped: a row of stamps
    decays = hyper[rules.H_ALPHA] * (1 - hyper[rules.H_L1_RATIO]) > 0 or getattr(optimizer, "weight_decay", 0)
    lazy = stochastic and n_slots > 0 and bool(decays)
    rows = optimizer.state_rows + cumulative_l1 + lazy
    check_model_fits(size, rows, n_slots)
    next_row = optimizer.state_rows
    for needed, slot in ((cumulative_l1, rules.H_L1_ROW), (lazy, rules.H_LAZY_ROW)):
        if needed:
            next_row += 1
            hyper[slot] = next_row  # 1 + the row that keeps the record
    if per_coordinate and factor_block is None and n_slots > 0 and n_out == 1:
        _, params, opt_state = coordinate_block(size, rows)
        return params, opt_state
    opt_state = np.zeros((rows, size))
    if factor_block is not None:
        rows, state_rows, seed, fields = factor_block
        params = np.zeros(size + rows * max(fields, 1) * factors.k * (1 + state_rows))
        factors.initial_rows(rows, state_rows, seed, fields, out=params[size:])
        return params, opt_state
    return np.zeros(size), opt_state


def check_model_fits(n_params: int, state_rows: int, n_slots: int) -> None:
    """ConfigError, before any training, when the parameters and optimizer state would not fit in the memory
    this machine has available (a hashed or one-hot model grows with its slots)."""
    need = 8 * n_params * (1 + state_rows) * 2  # and about as much again: checkpoints, the model's coef copy
    available = psutil.virtual_memory().available
    if need > available:
        raise ConfigError(f"the model's {n_params:,} parameters and {state_rows} optimizer state rows would need "
                          f"{need / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB available"
                          + (f"; it has {n_slots:,} sparse slots: lower --hash-bits or --max-categories"
                             if n_slots else ""))
