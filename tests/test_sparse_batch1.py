"""The batch-1 loop of a sparse linear model (``streamgd.kernels.sparse_rows``) against the general mini-batch loop
run on the same rows at batch size 1: the same parameters and optimizer state bit for bit, for FTRL, AdaGrad and
SGD with every record their state can hold (lazy L2 stamps, the cumulative L1 row), with clipping, with rows that
name a slot twice, and on parameters laid out per coordinate (``streamgd.optim.state.coordinate_block``). A row
whose step would not be finite is not applied."""

from __future__ import annotations

import numpy as np
import pytest

from streamgd.data.sparse_block import SparseBlock
from streamgd.kernels import api as kernel_api
from streamgd.kernels import sparse as sparse_kernels
from streamgd.kernels import sparse_rows
from streamgd.kernels.arguments import SparseArrays, SparseWork
from streamgd.optim import make_optimizer
from streamgd.optim.state import coordinate_block, initial_state, kernel_hyper

N_ROWS, N_DENSE, N_SLOTS = 400, 3, 64


def click_rows(rng: np.random.Generator, n_rows: int = N_ROWS) -> tuple[np.ndarray, SparseBlock, np.ndarray]:
    """Dense columns, 0 to 6 hashed entries a row (a slot named twice in some rows), binary targets."""
    X = rng.standard_normal((n_rows, N_DENSE))
    X[:, 1] = rng.random(n_rows) < 0.2  # a missing-value indicator: 0 in most rows (the loop leaves its zero steps)
    X[::5, 2] = 0.0  # an imputed column: 0 in some rows
    X = np.asfortranarray(X)
    lengths = rng.integers(0, 7, n_rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = rng.integers(0, N_SLOTS - 1, indptr[-1]).astype(np.int32)  # the last slot: named by no row
    for r in range(0, n_rows, 7):  # collisions: a row names its first slot again
        if lengths[r] >= 2:
            indices[indptr[r] + 1] = indices[indptr[r]]
    values = rng.uniform(0.5, 1.5, indptr[-1])
    y = (rng.random(n_rows) < 0.3).astype(np.float64)
    return X, SparseBlock(indptr, indices, values, N_SLOTS), y


CASES = {  # name: (optimizer, alpha, l1_ratio, clip_norm)
    "ftrl": ("ftrl", 1e-3, 0.5, 0.0),
    "ftrl-clipped": ("ftrl", 1e-3, 0.5, 0.5),
    "ftrl-sparse": ("ftrl", 0.3, 1.0, 0.0),  # an L1 penalty that keeps some weights at 0
    "adagrad-lazy-l2": ("adagrad", 1e-3, 0.0, 0.0),
    "adagrad-elasticnet": ("adagrad", 1e-3, 0.5, 0.0),
    "sgd-l1-clipped": ("sgd", 1e-3, 1.0, 0.5),
    "sgd-l1": ("sgd", 1e-3, 1.0, 0.0),
    "adam-lazy-l2": ("adam", 1e-3, 0.15, 0.0),
}


def set_up(name: str, per_coordinate: bool, n_dense: int = N_DENSE, n_slots: int = N_SLOTS):
    optimizer = make_optimizer(CASES[name][0])
    alpha, l1_ratio, clip = CASES[name][1:]
    hyper = kernel_hyper(optimizer, alpha, l1_ratio, clip, 1.35)
    params, opt_state = initial_state(optimizer, hyper, n_dense + n_slots, 1, n_slots, False)
    if not per_coordinate:
        params, opt_state = np.ascontiguousarray(params), np.ascontiguousarray(opt_state)
    return optimizer, hyper, params, opt_state


def train(name: str, per_row: bool, per_coordinate: bool, chunks: int = 3, fused: bool = True,
          decaying: bool = False):
    """``decaying``: a rate that falls every 50 rows (else constant), so rows meet a rate unlike the row before's."""
    rng = np.random.default_rng(7)
    optimizer, hyper, params, opt_state = set_up(name, per_coordinate)
    lr = 0.3
    totals = []
    for k in range(chunks):
        X, block, y = click_rows(rng)
        lrs = np.full(N_ROWS, lr)
        if decaying:
            lrs /= np.sqrt(1.0 + (k * N_ROWS + np.arange(N_ROWS)) // 50)
        total, done, status = sparse_kernels.train_chunk(X, block, y, np.empty(0), params, opt_state, hyper, lrs, 1,
                                                         1, kernel_api.LOSS_LOG, optimizer.code, k * N_ROWS,
                                                         per_row=per_row, fused=fused)
        assert (done, status) == (N_ROWS, 0)
        totals.append(total)
    return params, opt_state, totals, hyper


@pytest.mark.parametrize("decaying", [False, True], ids=["constant", "decaying"])
@pytest.mark.parametrize("name", list(CASES))
def test_batch1_loop_equals_general_loop_bit_for_bit(name, decaying):
    """Three chunks of 400 rows: parameters, every state row (the lazy stamps, the L1 record) and the progressive
    loss of the batch-1 loop (fused, and stepping a copy with apply_update) equal the general loop's exactly, on
    split arrays and on the per-coordinate block, at a constant rate and at one that changes between rows (where
    FTRL's weights move even where the gradient is 0)."""
    reference, reference_state, reference_totals, hyper = train(name, per_row=False, per_coordinate=False,
                                                                decaying=decaying)
    assert np.count_nonzero(reference[N_DENSE:-1]) > 10  # the slots learned something (L1 zeroes some)
    if hyper[kernel_api.H_LAZY_ROW] or hyper[kernel_api.H_L1_ROW]:
        assert reference_state.shape[0] > make_optimizer(CASES[name][0]).state_rows
    for per_coordinate, fused in ((False, True), (True, True), (True, False)):
        params, opt_state, totals, _ = train(name, per_row=True, per_coordinate=per_coordinate, fused=fused,
                                             decaying=decaying)
        np.testing.assert_array_equal(params, reference)
        np.testing.assert_array_equal(opt_state, reference_state)
        assert totals == reference_totals



WIDE_DENSE, WIDE_SLOTS = 24, 2048


def wide_rows(rng: np.random.Generator, n_rows: int) -> tuple[np.ndarray, SparseBlock, np.ndarray]:
    """Rows as long as a click log's: 24 dense columns (every other one an indicator, 0 in most rows) and 20 to 40
    slots (the first named twice in every ninth row), so a row's rule loop runs in vector lanes and not only in
    the scalar remainder that the short rows of ``click_rows`` reach."""
    X = rng.standard_normal((n_rows, WIDE_DENSE))
    X[:, ::2] = rng.random((n_rows, WIDE_DENSE // 2)) < 0.1
    X = np.asfortranarray(X)
    lengths = rng.integers(20, 41, n_rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = rng.integers(0, WIDE_SLOTS, indptr[-1]).astype(np.int32)
    indices[indptr[:-1:9] + 1] = indices[indptr[:-1:9]]
    values = rng.uniform(0.5, 1.5, indptr[-1])
    y = (rng.random(n_rows) < 0.3).astype(np.float64)
    return X, SparseBlock(indptr, indices, values, WIDE_SLOTS), y


@pytest.mark.parametrize("decaying", [False, True], ids=["constant", "decaying"])
@pytest.mark.parametrize("name", ["ftrl", "ftrl-clipped", "ftrl-sparse", "adagrad-lazy-l2", "sgd-l1"])
def test_batch1_loop_equals_general_loop_bit_for_bit_on_long_rows(name, decaying):
    """Two chunks of 600 rows of 45 to 65 coordinates: the fused loop (split arrays and the block) gives the
    general loop's parameters and state exactly, and so its vector lanes round as the general loop's scalar
    code."""
    results = []
    for per_row, per_coordinate in ((False, False), (True, False), (True, True)):
        rng = np.random.default_rng(11)
        optimizer, hyper, params, opt_state = set_up(name, per_coordinate, WIDE_DENSE, WIDE_SLOTS)
        for k in range(2):
            X, block, y = wide_rows(rng, 600)
            lrs = np.full(600, 0.3)
            if decaying:
                lrs /= np.sqrt(1.0 + (k * 600 + np.arange(600)) // 50)
            _, done, status = sparse_kernels.train_chunk(X, block, y, np.empty(0), params, opt_state, hyper, lrs, 1,
                                                         1, kernel_api.LOSS_LOG, optimizer.code, k * 600,
                                                         per_row=per_row)
            assert (done, status) == (600, 0)
        results.append((np.array(params), np.array(opt_state)))
    reference, reference_state = results[0]
    slots = reference[WIDE_DENSE:-1]
    assert np.count_nonzero(slots) > 500
    if name == "ftrl-sparse":  # lanes on both sides of the L1 threshold
        assert 100 < np.count_nonzero(slots == 0.0) < 1500
    for params, opt_state in results[1:]:
        np.testing.assert_array_equal(params, reference)
        np.testing.assert_array_equal(opt_state, reference_state)


def test_fused_ftrl_without_room_to_pad_steps_the_same(monkeypatch):
    """A scratch too narrow to pad a row to whole vectors (the loop then takes its unpadded form, scalar
    remainder and all) gives the same parameters and state bit for bit."""
    results = []
    for lanes in (sparse_kernels.LANES, 1):
        monkeypatch.setattr(sparse_kernels, "LANES", lanes)
        rng = np.random.default_rng(5)
        optimizer, hyper, params, opt_state = set_up("ftrl", True, WIDE_DENSE, WIDE_SLOTS)
        X, block, y = wide_rows(rng, 300)
        _, done, status = sparse_kernels.train_chunk(X, block, y, np.empty(0), params, opt_state, hyper,
                                                     np.full(300, 0.3), 1, 1, kernel_api.LOSS_LOG, optimizer.code, 0)
        assert (done, status) == (300, 0)
        results.append((np.array(params), np.array(opt_state)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])

def test_per_coordinate_block_holds_params_and_state_side_by_side():
    """The block's row i is coordinate i's weight and then its state; params and opt_state are views of it."""
    block, params, opt_state = coordinate_block(5, 2)
    params[3] = 1.5
    opt_state[1, 3] = -2.0
    assert block.shape == (5, 3) and block[3].tolist() == [1.5, 0.0, -2.0]
    assert np.shares_memory(params, block) and np.shares_memory(opt_state, block)


@pytest.mark.parametrize("name", ["adagrad-lazy-l2", "ftrl", "sgd-l1", "adam-lazy-l2"])
@pytest.mark.parametrize("per_coordinate", [False, True], ids=["split", "block"])
def test_a_non_finite_step_is_not_applied(per_coordinate, name):
    """A row whose values and rate are huge makes the step overflow: the loop stops at that row, names it, and the
    parameters and state are those after the row before it (the same as training on the rows before alone); for
    the fused rules and one that steps a copy (Adam)."""
    rng = np.random.default_rng(3)
    X, block, y = click_rows(rng, 50)
    bad_row = next(r for r in range(30, 50) if block.indptr[r + 1] - block.indptr[r] >= 2)
    start = block.indptr[bad_row]
    block.indices[start:start + 2] = N_SLOTS - 1  # a fresh slot (its margin stays finite) named twice with huge
    block.values[start:start + 2] = 1e308  # values, and a huge rate: every rule's step overflows
    lrs = np.full(50, 0.3)
    lrs[bad_row] = 1e10
    optimizer, hyper, params, opt_state = set_up(name, per_coordinate)
    total, done, status = sparse_kernels.train_chunk(X, block, y, np.empty(0), params, opt_state, hyper, lrs, 1, 1,
                                                     kernel_api.LOSS_LOG, optimizer.code, 0)
    assert done == bad_row and status != 0
    _, _, before_params, before_state = set_up(name, False)
    head = SparseBlock(block.indptr[:bad_row + 1].copy(), block.indices[:start].copy(),
                       block.values[:start].copy(), N_SLOTS)
    sparse_kernels.train_chunk(np.asfortranarray(X[:bad_row]), head, y[:bad_row], np.empty(0), before_params,
                               before_state, hyper, np.full(bad_row, 0.3), 1, 1, kernel_api.LOSS_LOG, optimizer.code,
                               0)
    np.testing.assert_array_equal(params, before_params)
    np.testing.assert_array_equal(opt_state, before_state)
    assert np.isfinite(params).all() and np.isfinite(opt_state).all()


def test_compact_positions_numbers_distinct_slots_in_order_of_first_appearance():
    indptr = np.array([0, 5], dtype=np.int64)
    indices = np.array([9, 4, 9, 70, 4], dtype=np.int32)
    keys = np.full(16, -1, dtype=np.int64)
    positions, entry_pos, touched, touched_keys = (np.empty(16, dtype=np.int64), np.empty(5, dtype=np.int64),
                                                   np.empty(5, dtype=np.int64), np.empty(5, dtype=np.int64))
    none = np.empty((0, 0))
    sparse = SparseArrays(indptr, indices, np.ones(5), 71)
    work = SparseWork(1, none, none, keys, positions, entry_pos, touched, touched_keys, np.empty(0), np.empty(0), none)
    m = sparse_rows.compact_positions(sparse, 0, 5, work)
    assert m == 3 and touched[:3].tolist() == [9, 4, 70] and entry_pos.tolist() == [0, 1, 0, 2, 1]
    assert (keys == -1).all()


@pytest.fixture(scope="module")
def small_clicks(tmp_path_factory):
    from streamgd.bench.synthetic_ctr import make_ctr_dataset

    folder = tmp_path_factory.mktemp("clicks1")
    return make_ctr_dataset(str(folder / "train.parquet"), n_rows=20_000, n_numeric=3, n_categorical=4,
                            cardinalities=(8, 30, 1000, 5_000), seed=0, model_seed=0, row_group_size=4096).path


@pytest.mark.parametrize("optimizer", ["ftrl", "adagrad"])
def test_batch1_run_on_the_block_resumes_bit_identically_and_equals_split_arrays(small_clicks, tmp_path, optimizer,
                                                                                  monkeypatch):
    """A batch-1 click-log run (its parameters and state views of one per-coordinate block) interrupted after two
    chunks and resumed from its checkpoint gives the uninterrupted run's model bit for bit, and so does the same
    run on separate arrays (the layout changes where values live, never the values)."""
    import streamgd
    from streamgd.optim import state as optim_state
    from streamgd.training import run_setup

    settings = dict(model="logistic", categorical=["C1", "C2", "C3", "C4"], encoding="hash", hash_bits=10,
                    missing="impute", optimizer=optimizer, batch_size=1, epochs=2, seed=1, alpha=1e-3)
    layouts = []
    laid_out = optim_state.initial_state

    def recording(*args, **kwargs):
        params, opt_state = laid_out(*args, **kwargs)
        layouts.append(params.base is not None and params.base is opt_state.base)  # views of one block
        return params, opt_state

    monkeypatch.setattr(run_setup, "initial_state", recording)
    whole = streamgd.fit(small_clicks, target="label", **settings)
    assert layouts == [True]  # the run trained on the block
    checkpoints = tmp_path / "ck"
    seen = []

    def stop_after_two(info):
        seen.append(info)
        if len(seen) == 2:
            trainer._interrupted = True

    trainer = streamgd.Trainer(on_chunk=stop_after_two, checkpoint_dir=str(checkpoints), checkpoint_every=1,
                               **settings)
    with pytest.raises(streamgd.errors.TrainingInterrupted):
        trainer.fit(small_clicks, target="label")
    resumed = streamgd.fit(small_clicks, target="label", checkpoint_dir=str(checkpoints), resume=True, **settings)
    assert resumed.summary.get("resumed_from") is not None
    np.testing.assert_array_equal(resumed.coef_, whole.coef_)
    np.testing.assert_array_equal(resumed.intercept_, whole.intercept_)
    np.testing.assert_array_equal(resumed.optimizer_state, whole.optimizer_state)

    monkeypatch.setattr(run_setup, "initial_state", lambda *a: laid_out(*a[:9]))  # per_coordinate left False
    split = streamgd.fit(small_clicks, target="label", **settings)
    np.testing.assert_array_equal(split.coef_, whole.coef_)
    np.testing.assert_array_equal(split.optimizer_state, whole.optimizer_state)
    assert np.count_nonzero(whole.coef_) > 50
