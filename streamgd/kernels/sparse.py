"""Compiled loops for chunks with a sparse block (its arrays: ``SparseArrays``): margins as the dense block's dot
product plus the gathered weights of each row's active slots, gradients scattered to the touched slots only, lazy
per-coordinate updates.

Parameters keep the layout of ``streamgd.kernels.pieces``: with a dense block of ``d`` columns and ``n_slots``
sparse slots, a model has ``D = d + n_slots`` features, ``coef[k, j] = params[k * D + j]`` and slot ``c`` is feature
``d + c``. The optimizer state rows have the same length.

Each mini-batch gathers what it touches into a compact vector: the dense coefficients, the coefficients of the
slots its rows name (found with a small open-addressing table, so nothing of the size of the slot space is
zeroed or scanned), and the intercepts, with the optimizer state alike. The batch's gradient, the penalty,
clipping, the optimizer rule and the L1 step then run on the compact vectors with the same compiled update as
dense chunks (``streamgd.kernels.pieces.apply_update``), and the result is written back only if it is finite. So
when every slot is active in every batch, a sparse chunk trains exactly as its dense twin. At batch size 1 a linear
model with one output takes the loop of ``streamgd.kernels.sparse_rows`` instead: the same numbers, without the
mini-batch machinery, reading parameters and state laid out per coordinate.

**Lazy updates.** A slot that no row of a batch names is not updated in that step: its optimizer state is not
decayed and its coefficient does not move, as TensorFlow's LazyAdam and PyTorch's SparseAdam define lazy Adam
(Adam's bias correction still counts every step, and so does AdaGrad's sum, which a zero gradient leaves as it
is). The penalty, which the dense update applies to every coefficient at every step, is caught up when the slot is
next touched, before the batch computes its margins:

* L2 (``alpha * (1 - l1_ratio)``), and AdamW's decoupled decay, as the product over the skipped steps of
  ``(1 - lr_t * l2) * (1 - lr_t * weight_decay)``: the exact dense result for SGD. A run-wide ledger of
  ``sum log(factor)`` (kept in the first intercept's entry of a state row, ``hyper[H_LAZY_ROW] - 1``) and a stamp
  per coefficient (the ledger when it was last touched, in the same row) give the factor in one ``exp``.
* L1: mini-batch runs take it as the cumulative penalty (``l1_prox`` in ``streamgd.kernels.pieces``), whose
  record is already lazy: the global total ``u`` against each coefficient's received ``q``.
* FTRL needs no catch-up: with no gradient its ``z`` and ``n`` do not change, so lazy is exact.
* ASGD's average of a slot takes its iterates at the steps that touch it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .arguments import (
    NO_FACTORS,
    NO_FACTORS_WORK,
    ChunkArrays,
    Columns,
    CompactMap,
    FactorArrays,
    FactorBatch,
    FactorModel,
    FactorWork,
    LinearVector,
    ModelArrays,
    RowRange,
    ScoredModel,
    SparseArrays,
    SparseWork,
    StepRates,
    SumWork,
    Tile,
    column_major_vector,
    contiguous_params,
)
from .codes import (
    FACTOR_RULES,
    H_ALPHA,
    H_HUBER_EPS,
    H_L1_RATIO,
    H_LAZY_ROW,
    H_WEIGHT_DECAY,
    OPT_ADAMW,
    loss_label,
    optimizer_label,
)
from .factors import factor_grad_add, factor_margins_add, factor_step, factor_write
from .field_factors import ffm_grad_add, ffm_margins_add
from .jit import compiled, inlined
from .pieces import (
    TILE_VALUES,
    apply_update,
    cols_grad_add,
    cols_margins,
    entries_grad_add,
    entries_margins_add,
    rows_loss_dloss,
)
from .scoring import first_bad_row_loop_for, predict_loop_for, sum_loop_for
from .sparse_rows import LANES, ROW_TABLE_SIZE, compact_positions, sparse_row_loop_for
from .specialise import specialised


@inlined
def _gather_vector(source, cmap, target):
    """target = the compact (n_out, d + m) + intercepts of ``source``: dense coefficients, touched slots'
    (``cmap``: CompactMap)."""
    d, D, n_out, touched, m = cmap.d, cmap.D, cmap.n_out, cmap.touched, cmap.m  # noqa: N806
    stride = d + m
    for k in range(n_out):
        for j in range(d):
            target[k * stride + j] = source[k * D + j]
        for p in range(m):
            target[k * stride + d + p] = source[k * D + d + touched[p]]
        target[n_out * stride + k] = source[n_out * D + k]


@inlined
def _scatter_vector(source, cmap, target):
    """The inverse of ``_gather_vector``: write the compact ``source`` back into the full ``target``."""
    d, D, n_out, touched, m = cmap.d, cmap.D, cmap.n_out, cmap.touched, cmap.m  # noqa: N806
    stride = d + m
    for k in range(n_out):
        for j in range(d):
            target[k * D + j] = source[k * stride + j]
        for p in range(m):
            target[k * D + d + touched[p]] = source[k * stride + d + p]
        target[n_out * D + k] = source[n_out * stride + k]


@compiled
def _gather(params, opt_state, cmap, cw, cstate):
    """The compact parameters and state of a batch: dense coefficients, the touched slots', intercepts."""
    _gather_vector(params, cmap, cw)
    for s in range(opt_state.shape[0]):
        _gather_vector(opt_state[s], cmap, cstate[s])


@compiled
def _scatter(cw, cstate, cmap, params, opt_state):
    """Write the compact vectors of ``_gather`` back into the full parameters and state."""
    _scatter_vector(cw, cmap, params)
    for s in range(opt_state.shape[0]):
        _scatter_vector(cstate[s], cmap, opt_state[s])


LINEAR, FM, FFM = 0, 1, 2  # the model kinds of the sparse train loops: their pieces beside the linear part


def sparse_train_loop_for(loss_kind: int, opt_kind: int, model: int = LINEAR) -> Any:
    """The loop of ``train_chunk`` for one loss and optimizer, of a linear model, a factorization machine
    (``FM``) or a field-aware one (``FFM``)."""
    if model == LINEAR:  # the linear loops keep their keys
        key: tuple = ("sparse_train", int(loss_kind), int(opt_kind))
        label = f"{loss_label(key[1])}/{optimizer_label(key[2])} (sparse)"
        return specialised(key, label, lambda: _make_sparse_train_loop(key[1], key[2], LINEAR))
    key = ("fm_train" if model == FM else "ffm_train", int(loss_kind), int(opt_kind))
    kind = "factorization machine" if model == FM else "field-aware factorization machine"
    label = f"{loss_label(key[1])}/{optimizer_label(key[2])} ({kind})"
    return specialised(key, label, lambda: _make_sparse_train_loop(key[1], key[2], model))


def _make_sparse_train_loop(LOSS, OPT, MODEL):  # noqa: N803 - compile-time constants
    FACTOR_RULE = FACTOR_RULES.get(OPT, -1)  # noqa: N806
    PLAIN = MODEL == FM
    AWARE = MODEL == FFM
    FACTORS = MODEL != LINEAR

    @compiled
    def sparse_train_loop(chunk, sparse, model, schedule, work, fm):
        """``chunk``: ChunkArrays, ``sparse``: SparseArrays, ``model``: ModelArrays, ``schedule``: StepRates,
        ``work``: SparseWork; ``fm``: an FM's factor rows and their scratch (FactorModel), unread by a linear loop
        (a field-aware FM's gradient scratch and mask come zeroed, and are left so). Returns (progressive loss
        sum, rows done, start row of a failed batch or -1)."""
        x, n, d = chunk.x, chunk.n, chunk.d
        indptr = sparse.indptr
        D = d + sparse.n_slots  # noqa: N806
        params, opt_state, hyper, n_out = model.params, model.opt_state, model.hyper, model.n_out
        lrs, step0, batch_size = schedule.lrs, schedule.step0, schedule.batch_size
        tile_rows, margins, dloss = work.tile_rows, work.margins, work.dloss
        touched, cw, cg, cstate = work.touched, work.cw, work.cg, work.cstate
        factors, fwork = fm.arrays, fm.work
        eps = hyper[H_HUBER_EPS]
        lazy_row = int(hyper[H_LAZY_ROW]) - 1
        l2 = hyper[H_ALPHA] * (1.0 - hyper[H_L1_RATIO])
        decay = hyper[H_WEIGHT_DECAY] if OPT == OPT_ADAMW else 0.0
        total = 0.0
        batch = 0
        zero = np.int64(0)
        b0 = zero
        while b0 < n:
            b1 = min(b0 + batch_size, n)
            e0 = indptr[b0]
            m = compact_positions(sparse, e0, indptr[b1], work)
            stride = d + m
            n_coef = n_out * stride
            n_par = n_coef + n_out
            cmap = CompactMap(d, D, n_out, touched, m)
            _gather(params, opt_state, cmap, cw, cstate)
            w = cw[:n_par]
            g = cg[:n_par]
            state = cstate[:, :n_par]
            linear = LinearVector(w, n_out, stride)  # the batch's compact model and its gradient
            grads = LinearVector(g, n_out, stride)
            ledger = 0.0
            if lazy_row >= 0:  # the penalty of the steps a touched slot skipped
                stamps = state[lazy_row]
                ledger = stamps[n_coef]
                for k in range(n_out):
                    for p in range(k * stride + d, k * stride + d + m):
                        if stamps[p] != ledger:
                            w[p] *= math.exp(ledger - stamps[p])
            for i in range(n_par):
                g[i] = 0.0
            n_frows = 0
            if FACTORS:  # the batch's factor rows: the dense columns' (if factorized), then its slots'
                n_frows = (d if factors.numeric > 0 else 0) + m
            if PLAIN:
                for q in range(n_frows):
                    for f in range(factors.k):
                        fwork.grad[q, f] = 0.0
            batch_loss = 0.0
            t0 = b0
            while t0 < b1:
                t1 = min(t0 + tile_rows, b1)
                hi = t1 - t0
                cols = Columns(x, n, t0, d)
                tile = Tile(t0, hi, e0, work.entry_pos)
                cols_margins(cols, zero, hi, linear, margins)
                entries_margins_add(sparse, tile, d, linear, margins)
                if PLAIN:
                    factor_margins_add(chunk, sparse, factors, tile, fwork, margins)
                elif AWARE:
                    ffm_margins_add(chunk, sparse, factors, tile, fwork, margins)
                batch_loss += rows_loss_dloss(chunk, work, zero, hi, t0, n_out, LOSS, eps, True)
                cols_grad_add(cols, zero, hi, dloss, grads)
                entries_grad_add(sparse, tile, d, dloss, grads)
                if PLAIN:
                    factor_grad_add(chunk, sparse, factors, tile, dloss, fwork)
                elif AWARE:
                    ffm_grad_add(chunk, sparse, factors, tile, dloss, fwork)
                t0 = t1
            if not math.isfinite(batch_loss):
                return total, b0, b0
            inv = 1.0 / (b1 - b0)
            for i in range(n_par):
                g[i] *= inv
            lr = lrs[batch]
            if FACTORS:
                fbatch = FactorBatch(n_frows, d, touched, inv, lr, step0 + batch)
                if not factor_step(factors, FACTOR_RULE, fwork, fbatch, hyper):
                    return total, b0, b0
            # no rollback (empty backups): a failed batch is not scattered
            if not apply_update(ModelArrays(w, state, hyper, n_out), g, lr, OPT, step0 + batch, n_coef,
                                ModelArrays(cg[:0], cstate[:, :0], hyper, n_out), False):
                return total, b0, b0
            if lazy_row >= 0:
                factor = (1.0 - lr * l2) * (1.0 - lr * decay)
                if not factor > 0.0:  # a step that would flip the coefficients' signs: a divergence
                    return total, b0, b0
                ledger += math.log(factor)
                stamps = state[lazy_row]
                for i in range(n_coef, n_par):  # the ledger, kept in the intercepts' entries
                    stamps[i] = ledger
                for k in range(n_out):
                    for p in range(k * stride + d, k * stride + d + m):
                        stamps[p] = ledger
            _scatter(w, state, cmap, params, opt_state)
            if FACTORS:
                factor_write(factors, fwork, fbatch)
            total += batch_loss
            batch += 1
            b0 = b1
        return total, n, -1

    return sparse_train_loop


# ---- the public functions for chunks with a sparse block (streamgd.kernels.api checks their arguments) ----------
def _block_args(sparse: SparseArrays) -> SparseArrays:
    """The block with its slot count as an int64 (one compiled signature for every block)."""
    return SparseArrays(sparse.indptr, sparse.indices, sparse.values, np.int64(sparse.n_slots))


def _tile_rows(d: int) -> int:
    return max(16, TILE_VALUES // max(d, 1))


def max_batch_entries(indptr: np.ndarray, batch_size: int) -> int:
    """The most entries any mini-batch of ``batch_size`` rows holds."""
    n = indptr.shape[0] - 1
    if n == 0:
        return 0
    starts = np.arange(0, n, batch_size)
    return int((indptr[np.minimum(starts + batch_size, n)] - indptr[starts]).max())


def _factor_work(factors: FactorArrays, sparse: SparseArrays, d: int, tile_rows: int, rows: int = 0,
                 block_grad: np.ndarray | None = None) -> FactorWork:
    """Scratch for ``factors`` (none for a linear model): a plain FM's per-row sums of a tile; for a batch of
    ``rows`` factor rows their gradient and updated copies (a field-aware FM's gradient and mask zeroed, its
    pieces leave them so); a field-aware FM's entries of one row."""
    if factors.k == 0:
        return NO_FACTORS_WORK
    block_grad = np.empty((0, 0)) if block_grad is None else block_grad
    updated = np.empty((rows, factors.block.shape[1]))
    if factors.fields == 0:
        return FactorWork(np.empty((tile_rows, factors.k)), np.empty((rows, factors.k)), NO_FACTORS_WORK.mask,
                          updated, block_grad, *NO_FACTORS_WORK[5:])
    n_entries = (d if factors.numeric else 0) + max_batch_entries(sparse.indptr, 1)
    index = np.empty(n_entries, dtype=np.int64)
    return FactorWork(NO_FACTORS_WORK.sums, np.zeros((rows, factors.fields * factors.k)),
                      np.zeros((rows, factors.fields), dtype=np.uint8), updated, block_grad, index,
                      np.empty_like(index), np.empty(n_entries), np.empty_like(index))


def train_chunk(X: np.ndarray, sparse: SparseArrays, y: np.ndarray, sample_weight: np.ndarray, params: np.ndarray,
                opt_state: np.ndarray, hyper: np.ndarray, lrs: np.ndarray, batch_size: int, n_out: int,
                loss_kind: int, opt_kind: int, step0: int, factors: FactorArrays = NO_FACTORS, per_row: bool = True,
                fused: bool = True) -> tuple[float, int, int]:
    """``api.train_chunk`` for a chunk with a sparse block (its arguments checked by ``api``); ``factors``: an
    FM's factor rows (``params`` then holds the linear part only). A linear model with one output at batch size 1
    takes the batch-1 loop (``streamgd.kernels.sparse_rows``) unless ``per_row`` is False (the benchmark's and the
    tests' way to run the general loop on the same rows; ``fused`` False: its copy-and-``apply_update`` form)."""
    if per_row and batch_size == 1 and factors.k == 0 and n_out == 1:
        return _train_rows(X, sparse, y, sample_weight, params, opt_state, hyper, lrs, loss_kind, opt_kind, step0,
                           fused)
    x, n, d = column_major_vector(X)
    block = _block_args(sparse)
    entries = max(max_batch_entries(sparse.indptr, batch_size), 1)
    capacity = 16
    while capacity < 2 * entries:
        capacity *= 2
    width = n_out * (d + min(entries, sparse.n_slots) + 1)
    rows = opt_state.shape[0]
    tile_rows = _tile_rows(d)
    margins = np.empty((n_out, tile_rows))
    work = SparseWork(tile_rows, margins, np.empty_like(margins), np.full(capacity, -1, dtype=np.int64),
                      np.empty(capacity, dtype=np.int64), np.empty(entries, dtype=np.int64),
                      np.empty(entries, dtype=np.int64), np.empty(entries, dtype=np.int64), np.empty(width),
                      np.empty(width), np.empty((rows, width)))
    factor_rows = (d if factors.numeric else 0) + min(entries, sparse.n_slots)
    loop = sparse_train_loop_for(loss_kind, opt_kind, LINEAR if factors.k == 0 else FFM if factors.fields else FM)
    total, done, failed = loop(ChunkArrays(x, n, d, y, sample_weight), block,
                               ModelArrays(params, opt_state, hyper, int(n_out)),
                               StepRates(lrs, int(step0), int(batch_size)), work,
                               FactorModel(factors, _factor_work(factors, sparse, d, tile_rows, factor_rows)))
    if failed < 0:
        return total, done, 0
    bad = first_bad_row(X, sparse, y, sample_weight, failed, min(failed + batch_size, n), contiguous_params(params),
                        n_out, loss_kind, hyper[H_HUBER_EPS], factors)
    return total, done, -bad - 1


def _train_rows(X: np.ndarray, sparse: SparseArrays, y: np.ndarray, sample_weight: np.ndarray, params: np.ndarray,
                opt_state: np.ndarray, hyper: np.ndarray, lrs: np.ndarray, loss_kind: int, opt_kind: int,
                step0: int, fused: bool = True) -> tuple[float, int, int]:
    """``train_chunk`` at batch size 1 for a linear model with one output: the batch-1 loop, its scratch for the
    longest row."""
    x, n, d = column_major_vector(X)
    block = _block_args(sparse)
    entries = max(max_batch_entries(sparse.indptr, 1), 1)
    capacity = ROW_TABLE_SIZE  # the batch-1 loop's first_seen finds a row's slots distinct in a table this size
    while capacity < 2 * entries:
        capacity *= 2
    width = d + min(entries, sparse.n_slots) + LANES  # the intercept, and room to pad to whole vectors
    margins = np.empty((1, 1))
    work = SparseWork(1, margins, np.empty_like(margins), np.full(capacity, -1, dtype=np.int64),
                      np.empty(capacity, dtype=np.int64), np.empty(entries, dtype=np.int64),
                      np.empty(entries, dtype=np.int64), np.empty(entries, dtype=np.int64), np.empty(width),
                      np.empty(width), np.empty((opt_state.shape[0], width)))
    loop = sparse_row_loop_for(loss_kind, opt_kind, fused)
    total, done, failed = loop(ChunkArrays(x, n, d, y, sample_weight), block, ModelArrays(params, opt_state, hyper, 1),
                               StepRates(lrs, int(step0), 1), work)
    if failed < 0:
        return total, done, 0
    bad = first_bad_row(X, sparse, y, sample_weight, failed, failed + 1, contiguous_params(params), 1, loss_kind,
                        hyper[H_HUBER_EPS])
    return total, done, -bad - 1


def _sum_work(n_out: int, tile_rows: int, grad: np.ndarray) -> SumWork:
    """Scratch of the read loops for a chunk with a sparse block: read in place, so no tile (its margins fill the
    slot)."""
    margins = np.empty((n_out, tile_rows))
    return SumWork(tile_rows, margins, margins, np.empty_like(margins), grad)


def loss_sum(X: np.ndarray, sparse: SparseArrays, y: np.ndarray, sample_weight: np.ndarray, start: int, stop: int,
             params: np.ndarray, n_out: int, loss_kind: int, eps: float, grad: np.ndarray,
             factors: FactorArrays = NO_FACTORS, factor_grad: np.ndarray | None = None) -> float:
    """Weighted loss sum of rows [start, stop), adding their gradient into ``grad`` (full length, or empty) and an
    FM's factor gradient into ``factor_grad`` (shaped as the factor block; None: not wanted)."""
    x, n, d = column_major_vector(X)
    tile_rows = _tile_rows(d)
    rows = RowRange(int(start), int(stop), max(int(stop) - int(start), 1))  # one batch: tiles from ``start``
    return sum_loop_for(True, False, True)(ChunkArrays(x, n, d, y, sample_weight), _block_args(sparse), rows,
                                           ScoredModel(params, int(n_out), int(loss_kind), float(eps)),
                                           _sum_work(n_out, tile_rows, grad),
                                           FactorModel(factors, _factor_work(factors, sparse, d, tile_rows, 0,
                                                                             factor_grad)))


def first_bad_row(X: np.ndarray, sparse: SparseArrays, y: np.ndarray, sample_weight: np.ndarray, start: int,
                  stop: int, params: np.ndarray, n_out: int, loss_kind: int, eps: float,
                  factors: FactorArrays = NO_FACTORS) -> int:
    """The first row of [start, stop) whose inputs, margins or loss are not finite, else ``start``."""
    x, n, d = column_major_vector(X)
    tile_rows = _tile_rows(d)
    return first_bad_row_loop_for(True, True)(ChunkArrays(x, n, d, y, sample_weight), _block_args(sparse),
                                              RowRange(int(start), int(stop), 1),
                                              ScoredModel(params, int(n_out), int(loss_kind), float(eps)),
                                              _sum_work(n_out, tile_rows, np.empty(0)),
                                              FactorModel(factors, _factor_work(factors, sparse, d, tile_rows)))


def predict_margins(X: np.ndarray, sparse: SparseArrays, params: np.ndarray, n_out: int, out: np.ndarray,
                    factors: FactorArrays = NO_FACTORS) -> None:
    """Write the margins of every row, shape (n_rows, n_out), into ``out``."""
    x, n, d = column_major_vector(X)
    tile_rows = _tile_rows(d)
    predict_loop_for(True, True)(ChunkArrays(x, n, d, np.empty(0), np.empty(0)), _block_args(sparse),
                                 ScoredModel(params, int(n_out), 0, 0.0), _sum_work(n_out, tile_rows, np.empty(0)),
                                 FactorModel(factors, _factor_work(factors, sparse, d, tile_rows)), out)


__all__ = ["NO_FACTORS", "SparseArrays", "first_bad_row", "loss_sum", "max_batch_entries", "predict_margins",
           "train_chunk"]
