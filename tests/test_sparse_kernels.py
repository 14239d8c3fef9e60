"""The sparse block in the kernels: margins and gradients against NumPy on the dense equivalent, lazy updates
against dense ones, and FTRL-Proximal against a NumPy transcription of the paper's Algorithm 1."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import optimizer_params
from streamgd.kernels import api as kernels
from streamgd.optim import OPTIMIZERS, make_optimizer
from streamgd.kernels import update_rules as rules
from streamgd.data.sparse_block import SparseBlock, concatenate

N_ROWS, N_DENSE, N_COLUMNS, CARDINALITY, BATCH = 256, 3, 2, 4, 32


def _problem(every_slot_in_every_batch: bool, seed: int = 0):
    """A dense block, a sparse block of N_COLUMNS one-hot columns with signed values, and binary targets."""
    rng = np.random.default_rng(seed)
    dense = np.asfortranarray(rng.standard_normal((N_ROWS, N_DENSE)))
    slots = np.stack([rng.integers(0, CARDINALITY, N_ROWS) + j * CARDINALITY for j in range(N_COLUMNS)], 1)
    if every_slot_in_every_batch:
        for start in range(0, N_ROWS, BATCH):
            for j in range(N_COLUMNS):
                slots[start: start + CARDINALITY, j] = np.arange(CARDINALITY) + j * CARDINALITY
    else:  # slot 0 of column 0 only in the first and last batch: it skips every step in between
        slots[:, 0] = np.where(slots[:, 0] == 0, 1, slots[:, 0])
        slots[[0, N_ROWS - 1], 0] = 0
    values = rng.choice([-1.0, 1.0], size=slots.shape) * rng.uniform(0.5, 1.5, size=slots.shape)
    block = SparseBlock.from_fixed(slots, values, N_COLUMNS * CARDINALITY)
    y = (rng.random(N_ROWS) < 0.4).astype(float)
    return dense, block, y


def _state(name: str, alpha: float, l1_ratio: float, n_par: int, lazy: bool):
    """Optimizer state and hyperparameters as the trainer builds them (cumulative L1 row, decay stamps)."""
    optimizer = make_optimizer(name)
    hyper = np.zeros(kernels.N_HYPER)
    hyper[kernels.H_ALPHA], hyper[kernels.H_L1_RATIO] = alpha, l1_ratio
    optimizer.write_hyper(hyper)
    state = optimizer.init_state(n_par)
    if name != "ftrl":
        if alpha * l1_ratio > 0:
            state = np.vstack([state, np.zeros((1, n_par))])
            hyper[kernels.H_L1_ROW] = state.shape[0]
        if lazy:
            state = np.vstack([state, np.zeros((1, n_par))])
            hyper[rules.H_LAZY_ROW] = state.shape[0]
    return optimizer, state, hyper


def _train_both(name, alpha, l1_ratio, dense, block, y, lazy=True, loss=kernels.LOSS_LOG):
    """(params, state) after a chunk trained as sparse and as its dense twin."""
    full = np.asfortranarray(np.hstack([dense, block.to_dense()]))
    n_par = full.shape[1] + 1
    lrs = np.full(-(-N_ROWS // BATCH), 0.05)
    results = []
    for X, sparse in ((full, None), (dense, block)):
        optimizer, state, hyper = _state(name, alpha, l1_ratio, n_par, lazy)
        params = np.zeros(n_par)
        total, done, status = kernels.train_chunk(X, y, np.empty(0), params, state, hyper, lrs, BATCH, 1, loss,
                                                  optimizer.code, 0, sparse=sparse)
        assert (done, status) == (N_ROWS, 0)
        results.append((total, params, state))
    return results


@pytest.mark.parametrize("name", optimizer_params(OPTIMIZERS))
@pytest.mark.parametrize("alpha, l1_ratio", [(1e-2, 0.0), (1e-2, 0.5)])
def test_lazy_updates_equal_dense_ones_when_every_slot_is_active_in_every_batch(name, alpha, l1_ratio):
    dense, block, y = _problem(every_slot_in_every_batch=True)
    (loss_dense, p_dense, s_dense), (loss_sparse, p_sparse, s_sparse) = _train_both(name, alpha, l1_ratio, dense,
                                                                                     block, y)
    assert np.abs(p_dense).max() > 1e-3  # it learned something
    np.testing.assert_allclose(p_sparse, p_dense, rtol=0, atol=1e-12)
    rows = make_optimizer(name).state_rows  # the optimizer's own rows (the decay stamps are the sparse run's)
    np.testing.assert_allclose(s_sparse[:rows], s_dense[:rows], rtol=0, atol=1e-12)
    assert loss_sparse == pytest.approx(loss_dense, rel=1e-13)


def test_lazy_sgd_catches_up_the_l2_decay_of_skipped_steps_exactly():
    """Slot 0 is touched in the first and the last batch only: the catch-up applies the product of the skipped
    steps' factors (1 - lr * l2), which is what the dense update did one step at a time."""
    dense, block, y = _problem(every_slot_in_every_batch=False)
    (_, p_dense, _), (_, p_sparse, _) = _train_both("sgd", 0.3, 0.0, dense, block, y)
    assert p_dense[N_DENSE] != 0.0
    np.testing.assert_allclose(p_sparse, p_dense, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["adagrad", "adam", "momentum"])
def test_lazy_adaptive_rules_leave_untouched_slots_and_their_state_alone(name):
    """LazyAdam's meaning: a slot no row of a batch names keeps its coefficient and its state in that step."""
    dense, block, y = _problem(every_slot_in_every_batch=False)
    optimizer, state, hyper = _state(name, 0.0, 0.0, N_DENSE + block.n_slots + 1, lazy=False)
    params = np.zeros(state.shape[1])
    first = block.take(np.arange(BATCH))
    kernels.train_chunk(dense[:BATCH], y[:BATCH], np.empty(0), params, state, hyper, np.full(1, 0.05), BATCH, 1,
                        kernels.LOSS_LOG, optimizer.code, 0, sparse=first)
    slot0 = N_DENSE  # touched by row 0 of the first batch
    before, state_before = params.copy(), state.copy()
    middle = block.take(np.arange(BATCH, 2 * BATCH))  # never names slot 0
    kernels.train_chunk(np.asfortranarray(dense[BATCH: 2 * BATCH]), y[BATCH: 2 * BATCH], np.empty(0), params, state,
                        hyper, np.full(1, 0.05), BATCH, 1, kernels.LOSS_LOG, optimizer.code, 1, sparse=middle)
    assert params[slot0] == before[slot0] != 0.0
    np.testing.assert_array_equal(state[:, slot0], state_before[:, slot0])
    assert not np.array_equal(params[:N_DENSE], before[:N_DENSE])


def _reference_margins_and_grad(dense, block, y, params, n_out=1):
    full = np.hstack([dense, block.to_dense()])
    coef = params[: n_out * full.shape[1]].reshape(n_out, -1)
    margins = full @ coef.T + params[n_out * full.shape[1]:]
    residual = 1.0 / (1.0 + np.exp(-margins[:, 0])) - y
    grad = np.concatenate([full.T @ residual, [residual.sum()]])
    loss = np.sum(np.logaddexp(0.0, margins[:, 0]) - y * margins[:, 0])
    return margins, grad, loss


def test_sparse_margins_loss_and_gradient_equal_numpy_on_the_dense_equivalent():
    dense, block, y = _problem(every_slot_in_every_batch=False, seed=3)
    params = np.random.default_rng(1).standard_normal(N_DENSE + block.n_slots + 1)
    margins, grad, loss = _reference_margins_and_grad(dense, block, y, params)
    out = np.empty((N_ROWS, 1))
    kernels.predict_margins(dense, params, 1, out, sparse=block)
    np.testing.assert_allclose(out, margins, rtol=1e-12, atol=1e-12)
    got = np.empty_like(params)
    total = kernels.batch_loss_grad(dense, y, np.empty(0), 0, N_ROWS, params, 1, kernels.LOSS_LOG,
                                    np.zeros(kernels.N_HYPER), got, sparse=block)
    np.testing.assert_allclose(got, grad, rtol=1e-11, atol=1e-11)
    assert total == pytest.approx(loss, rel=1e-12)
    summed = np.zeros_like(params)
    assert kernels.accumulate_chunk(dense, y, np.empty(0), params, 1, kernels.LOSS_LOG, np.zeros(kernels.N_HYPER),
                                    summed, sparse=block) == (pytest.approx(loss, rel=1e-12), 0)
    np.testing.assert_allclose(summed, grad, rtol=1e-11, atol=1e-11)


def test_softmax_with_a_sparse_block_equals_its_dense_twin():
    dense, block, _ = _problem(every_slot_in_every_batch=True, seed=5)
    y = np.random.default_rng(2).integers(0, 3, N_ROWS).astype(float)
    full = np.asfortranarray(np.hstack([dense, block.to_dense()]))
    n_par = 3 * (full.shape[1] + 1)
    results = []
    for X, sparse in ((full, None), (dense, block)):
        optimizer, state, hyper = _state("adam", 1e-3, 0.0, n_par, lazy=True)
        params = np.zeros(n_par)
        kernels.train_chunk(X, y, np.empty(0), params, state, hyper, np.full(N_ROWS, 0.01), BATCH, 3,
                            kernels.LOSS_SOFTMAX, optimizer.code, 0, sparse=sparse)
        results.append(params)
    np.testing.assert_allclose(results[1], results[0], rtol=0, atol=1e-12)
    out = np.empty((N_ROWS, 3))
    kernels.predict_margins(dense, results[1], 3, out, sparse=block)
    coef = results[1][: 3 * full.shape[1]].reshape(3, -1)
    np.testing.assert_allclose(out, full @ coef.T + results[1][3 * full.shape[1]:], rtol=1e-12, atol=1e-12)


def test_a_bad_value_in_a_sparse_block_is_named_by_its_row_and_nothing_is_applied():
    dense, block, y = _problem(every_slot_in_every_batch=False)
    block.values[5 * N_COLUMNS + 1] = np.nan  # row 5
    optimizer, state, hyper = _state("sgd", 0.0, 0.0, N_DENSE + block.n_slots + 1, lazy=False)
    params = np.zeros(state.shape[1])
    _, done, status = kernels.train_chunk(dense, y, np.empty(0), params, state, hyper, np.full(8, 0.1), BATCH, 1,
                                          kernels.LOSS_LOG, optimizer.code, 0, sparse=block)
    assert (done, status) == (0, -5 - 1)
    assert not params.any()


def test_a_malformed_block_is_refused_before_compiled_code_reads_it():
    dense, block, y = _problem(every_slot_in_every_batch=False)
    block.indices[3] = block.n_slots  # outside the slots
    with pytest.raises(ValueError, match="outside"):
        kernels.predict_margins(dense, np.zeros(N_DENSE + block.n_slots + 1), 1, np.empty((N_ROWS, 1)), sparse=block)


def test_blocks_take_and_concatenate_rows():
    _, block, _ = _problem(every_slot_in_every_batch=False)
    order = np.random.default_rng(0).permutation(N_ROWS)
    np.testing.assert_array_equal(block.take(order).to_dense(), block.to_dense()[order])
    halves = concatenate([block.take(np.arange(100)), block.take(np.arange(100, N_ROWS))])
    np.testing.assert_array_equal(halves.to_dense(), block.to_dense())


# ---- FTRL-Proximal against the paper ------------------------------------------------------------------------------
def _ftrl_reference(X, y, alpha, beta, l1, l2):
    """McMahan et al. (2013), Algorithm 1, for logistic loss: one example at a time, per coordinate; the last
    coordinate is the intercept (a feature always 1, not penalised)."""
    n, d = X.shape
    z, sq, w = np.zeros(d + 1), np.zeros(d + 1), np.zeros(d + 1)
    for t in range(n):
        x = np.append(X[t], 1.0)
        active = np.flatnonzero(x)
        for i in active:
            lam1, lam2 = (0.0, 0.0) if i == d else (l1, l2)
            if abs(z[i]) <= lam1:
                w[i] = 0.0
            else:
                w[i] = -(z[i] - np.sign(z[i]) * lam1) / ((beta + np.sqrt(sq[i])) / alpha + lam2)
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        for i in active:
            g = (p - y[t]) * x[i]
            sigma = (np.sqrt(sq[i] + g * g) - np.sqrt(sq[i])) / alpha
            z[i] += g - sigma * w[i]
            sq[i] += g * g
    lam = np.where(np.arange(d + 1) == d, 0.0, 1.0)
    return np.where(np.abs(z) <= l1 * lam, 0.0,
                    -(z - np.sign(z) * l1 * lam) / ((beta + np.sqrt(sq)) / alpha + l2 * lam)), z, sq


@pytest.mark.parametrize("sparse", [False, True])
def test_ftrl_equals_the_papers_algorithm_one(sparse):
    dense, block, y = _problem(every_slot_in_every_batch=False, seed=7)
    full = np.hstack([dense, block.to_dense()])
    alpha, beta, alpha_penalty, l1_ratio = 0.1, 1.0, 2.5, 0.8  # lambda1 2, lambda2 0.5
    expected, z, sq = _ftrl_reference(full, y, alpha, beta, alpha_penalty * l1_ratio, alpha_penalty * (1 - l1_ratio))
    assert (expected == 0.0).sum() >= 3 and (expected != 0.0).sum() >= 5  # exact zeros, and weights
    optimizer, state, hyper = _state("ftrl", alpha_penalty, l1_ratio, full.shape[1] + 1, lazy=False)
    hyper[rules.H_FTRL_BETA] = beta
    params = np.zeros(full.shape[1] + 1)
    X = dense if sparse else np.asfortranarray(full)
    kernels.train_chunk(X, y, np.empty(0), params, state, hyper, np.full(N_ROWS, alpha), 1, 1, kernels.LOSS_LOG,
                        optimizer.code, 0, sparse=block if sparse else None)
    np.testing.assert_allclose(params, expected, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(state[0], z, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(state[1], sq, rtol=1e-10, atol=1e-13)
