"""Invariants of the sparse kernels, for every loss: the gradient equals central differences of the loss the same
kernel computes, and a sparse block whose slots are all active in every row trains as its dense twin, also for
batches of fewer than 8 rows (where the dense loops use their row-major tile) and for hinge, Huber and Poisson."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import optimizer_params
from problems import targets_for
from streamgd.data.sparse_block import SparseBlock
from streamgd.kernels import api as dense_kernels  # the kernel modules, named once: a move is a one-line change
from streamgd.kernels import sparse as sparse_kernels
from streamgd.models.linear import MODEL_KINDS
from streamgd.optim import OPTIMIZERS, make_optimizer

N_ROWS, N_DENSE, N_SLOTS = 29, 3, 11
HUBER_EPS = 1.35

# every loss with one output, and the multi-output ones with three classes (as tests/test_invariants.py)
LOSS_CASES = [(kind, cls.n_outputs(None)) for kind, cls in MODEL_KINDS.items()]
LOSS_CASES += [(kind, 3) for kind, cls in MODEL_KINDS.items() if cls.n_outputs(3) == 3 and cls.n_outputs(None) != 3]
LOSS_IDS = [f"{kind}-{n_out}" for kind, n_out in LOSS_CASES]




def ragged_block(rng: np.random.Generator, n_rows: int) -> SparseBlock:
    """0 to 4 entries a row (a row without any; one row naming a slot twice, as two hashed values colliding),
    signed values; slots 9 and 10 named by no row."""
    lengths = rng.integers(0, 5, n_rows)
    lengths[0], lengths[1] = 0, 3
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.concatenate([rng.choice(N_SLOTS - 2, size=k, replace=False) for k in lengths]).astype(np.int32)
    indices[indptr[1] + 1] = indices[indptr[1]]  # row 1 names its first slot twice
    values = rng.choice([-1.0, 1.0], indptr[-1]) * rng.uniform(0.3, 1.7, indptr[-1])
    return SparseBlock(indptr, indices, values, N_SLOTS)


def loss_and_grad(X, block, y, weights, rows, params, n_out, loss_kind):
    """(loss sum, summed gradient) of rows [start, stop) by the sparse kernel."""
    grad = np.zeros_like(params)
    total = sparse_kernels.loss_sum(X, block, y, weights, *rows, params, n_out, loss_kind, HUBER_EPS, grad)
    return total, grad


@pytest.mark.parametrize("kind, n_out", LOSS_CASES, ids=LOSS_IDS)
@pytest.mark.parametrize("rows", [(0, N_ROWS), (3, 11)], ids=["all-rows", "rows-3-to-11"])
def test_sparse_gradient_equals_central_differences(kind, n_out, rows):
    """loss_sum's gradient against (L(p + h e_i) - L(p - h e_i)) / 2h for every parameter (dense coefficients,
    every slot's, intercepts) and along random directions, with weighted rows, in float64 (h = 1e-6, agreement to
    1e-7 relative: the truncation error is O(h^2) and the rounding error O(eps / h), both far below it). A
    slot no row names has a zero gradient, and so has its difference."""
    rng = np.random.default_rng(40 + n_out)
    X = np.asfortranarray(rng.standard_normal((N_ROWS, N_DENSE)))
    block = ragged_block(rng, N_ROWS)
    y = targets_for(kind, n_out, rng, N_ROWS)
    weights = rng.uniform(0.5, 2.0, N_ROWS)
    params = 0.3 * rng.standard_normal(n_out * (N_DENSE + N_SLOTS + 1))
    loss_kind = MODEL_KINDS[kind].loss_kind

    def loss(p: np.ndarray) -> float:
        return loss_and_grad(X, block, y, weights, rows, p, n_out, loss_kind)[0]

    _, grad = loss_and_grad(X, block, y, weights, rows, params, n_out, loss_kind)
    h = 1e-6
    central = np.array([(loss(params + h * e) - loss(params - h * e)) / (2 * h) for e in np.eye(len(params))])
    np.testing.assert_allclose(grad, central, rtol=1e-7, atol=1e-7)
    for _ in range(3):
        direction = rng.standard_normal(len(params))
        along = (loss(params + h * direction) - loss(params - h * direction)) / (2 * h)
        assert along == pytest.approx(grad @ direction, rel=1e-7, abs=1e-7)
    stride = N_DENSE + N_SLOTS
    slot_grads = np.concatenate([grad[k * stride + N_DENSE: (k + 1) * stride] for k in range(n_out)])
    assert np.abs(slot_grads).max() > 0.05  # the slots' gradient is real, not a zero that matches a zero
    for k in range(n_out):  # slots 9 and 10: no row names them
        assert not grad[k * stride + N_DENSE + 9: (k + 1) * stride].any()


# ---- sparse = dense when every slot is active in every row ---------------------------------------------------------
def full_block_problem(kind: str, n_out: int, seed: int = 0):
    """A dense block, a sparse block naming each of its slots in every row (in a different order each row, with
    signed values), its dense twin, and targets."""
    rng = np.random.default_rng(seed)
    n_slots = 4
    dense = np.asfortranarray(0.7 * rng.standard_normal((N_ROWS, N_DENSE)))
    slots = np.stack([rng.permutation(n_slots) for _ in range(N_ROWS)])
    values = rng.choice([-1.0, 1.0], slots.shape) * rng.uniform(0.3, 1.2, slots.shape)
    block = SparseBlock.from_fixed(slots, values, n_slots)
    twin = np.asfortranarray(np.hstack([dense, block.to_dense()]))
    return dense, block, twin, targets_for(kind, n_out, rng, N_ROWS)


def optimizer_and_state(name: str, n_par: int, lazy: bool):
    """Optimizer state and hyperparameters as the trainer builds them (an L2 penalty; the sparse run's decay
    stamps as an extra row, which the dense run does not have)."""
    optimizer = make_optimizer(name)
    hyper = np.zeros(dense_kernels.N_HYPER)
    hyper[dense_kernels.H_ALPHA], hyper[dense_kernels.H_HUBER_EPS] = 1e-2, HUBER_EPS
    optimizer.write_hyper(hyper)
    state = optimizer.init_state(n_par)
    if lazy and name != "ftrl":
        state = np.vstack([state, np.zeros((1, n_par))])
        hyper[dense_kernels.H_LAZY_ROW] = state.shape[0]
    return optimizer, state, hyper


def train_sparse_and_dense(kind: str, n_out: int, name: str, batch_size: int):
    """(params, state, loss sum) after two chunks trained with the sparse block, and with its dense twin."""
    dense, block, twin, y = full_block_problem(kind, n_out)
    n_par = n_out * (twin.shape[1] + 1)
    n_batches = -(-N_ROWS // batch_size)
    lrs = 0.05 / np.sqrt(1.0 + np.arange(2 * n_batches))
    loss_kind = MODEL_KINDS[kind].loss_kind
    results = []
    for sparse in (True, False):
        optimizer, state, hyper = optimizer_and_state(name, n_par, lazy=sparse)
        params = np.zeros(n_par)
        total = 0.0
        for chunk in range(2):  # the second chunk starts from learned parameters and state
            rates = lrs[chunk * n_batches:]
            if sparse:
                got = sparse_kernels.train_chunk(dense, block, y, np.empty(0), params, state, hyper, rates,
                                                 batch_size, n_out, loss_kind, optimizer.code, chunk * n_batches)
            else:
                got = dense_kernels.train_chunk(twin, y, np.empty(0), params, state, hyper, rates, batch_size,
                                                n_out, loss_kind, optimizer.code, chunk * n_batches)
            assert got[1:] == (N_ROWS, 0), (kind, name, batch_size, sparse)
            total += got[0]
        results.append((params, state[: optimizer.state_rows], total))
    return results


def assert_trains_as_its_dense_twin(kind, n_out, name, batch_size):
    """Compared to 1e-12 (absolute and relative), not bit for bit: the dense twin's margin is one dot product
    over all of a row's features, the sparse kernel's the dense block's dot product plus each entry of the row in
    its own order (here a different permutation each row), and the loops are compiled with ``reassoc`` (the
    compiler may reorder a sum); floating-point addition is not associative. Measured: the parameters differ
    by 6e-17 at most, bitwise equal in a few cases, whether or not the entries are sorted by slot."""
    (p_sparse, s_sparse, loss_sparse), (p_dense, s_dense, loss_dense) = train_sparse_and_dense(kind, n_out, name,
                                                                                               batch_size)
    assert np.abs(p_dense).max() > 1e-3  # it learned something
    assert (p_dense[N_DENSE: N_DENSE + 4] != 0).all()  # every slot's coefficient moved
    np.testing.assert_allclose(p_sparse, p_dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s_sparse, s_dense, rtol=1e-12, atol=1e-12)
    assert loss_sparse == pytest.approx(loss_dense, rel=1e-12, abs=1e-12)


EVERY_RUN_KINDS = ("svm", "huber", "poisson")  # hinge, Huber and Poisson; log loss and the rest nightly


@pytest.mark.parametrize("kind", EVERY_RUN_KINDS)
@pytest.mark.parametrize("batch_size", [1, 3, 7, 8])
def test_a_sparse_block_active_everywhere_trains_as_its_dense_twin(kind, batch_size):
    """Batches of 1, 3 and 7 rows: the dense twin's row-major tile path; 8: its column path, the control."""
    assert_trains_as_its_dense_twin(kind, 1, "sgd", batch_size)


# every loss with SGD, and every optimizer with Huber and with log loss: the loss enters through the gradient, the
# optimizer through the update, so each piece is met by both paths without compiling all 81 pairs twice
NIGHTLY_CASES = [(kind, n_out, "sgd") for kind, n_out in LOSS_CASES]
NIGHTLY_CASES += [(kind, 1, name) for kind in ("huber", "logistic") for name in OPTIMIZERS if name != "sgd"]


@pytest.mark.slow  # a specialisation each, sparse and dense: nightly
@pytest.mark.parametrize("kind, n_out, name", NIGHTLY_CASES, ids=[f"{k}-{n}-{o}" for k, n, o in NIGHTLY_CASES])
def test_every_loss_and_optimizer_trains_on_an_active_sparse_block_as_its_dense_twin(kind, n_out, name):
    """Batch 5 (the dense twin's row-major path); tests/test_sparse_kernels.py has every optimizer at batch 32."""
    assert_trains_as_its_dense_twin(kind, n_out, name, 5)


@pytest.mark.parametrize("name", optimizer_params(["sgd", "adagrad", "ftrl"]))
def test_a_sparse_block_active_everywhere_trains_as_its_dense_twin_per_optimizer(name):
    """Batch 3, log loss (whose sparse specialisations tests/test_sparse_kernels.py compiles too): the lazy
    catch-up (adagrad, sgd) and FTRL's per-coordinate rule against the dense row-major tile path."""
    assert_trains_as_its_dense_twin("logistic", 1, name, 3)
