"""The dense train loop and the full-batch step, specialised on their constants (the memo is
``streamgd.kernels.specialise``), built from the shared compiled pieces (``streamgd.kernels.pieces``). The loops
that read a model without training it (sums, first bad row, prediction) serve dense and sparse chunks alike:
``streamgd.kernels.scoring``.

Rows arrive in the plan's order (the reader permutes them while converting), so a mini-batch is a run of
consecutive rows. ``X`` may be float32 or float64, column-major (the reader's layout) or row-major, and reaches
a loop as a flat vector. Mini-batches of a column-major chunk are read in place; other chunks, and batches of fewer
than ``ROW_MAJOR_BELOW`` rows, are staged into a small float64 tile. The X dtype is a type, so each dtype a run
uses is its own signature of the same specialisation.

The train loop is specialised on loss, optimizer, chunk order and tile kind: one generic loop with every branch
of every rule took far longer and far more memory to compile, on every run with an empty cache (the figures are in
benchmarks/README.md, "Kernels"). The loops take a few named arguments (``streamgd.kernels.arguments``'
namedtuples): the chunk (``ChunkArrays``), the model (``ModelArrays``), the schedule (``StepRates``) and the
workspace (``DenseWork``), and pass the column passes a block's columns (``Columns``) and the parameters' layout
(``LinearVector``), as the sparse loop does, so two arrays of one type cannot be swapped silently. They allocate
nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .arguments import Columns, LinearVector, ModelArrays
from .codes import H_HUBER_EPS, loss_label, optimizer_label
from .jit import compiled
from .pieces import (
    apply_update,
    cols_grad_add,
    cols_margins,
    row_tile_grad_add,
    row_tile_margins,
    rows_loss_dloss,
    stage_from,
    tile_end,
)
from .specialise import specialised


def train_loop_for(loss_kind: int, opt_kind: int, fortran: bool, rows_major: bool) -> Any:
    """The loop of ``train_chunk`` for one loss, optimizer, chunk order and tile kind (``rows_major``: batches of
    fewer than ``ROW_MAJOR_BELOW`` rows, on a row-major tile)."""
    key = ("train", int(loss_kind), int(opt_kind), bool(fortran), bool(rows_major))
    label = f"{loss_label(key[1])}/{optimizer_label(key[2])}"
    return specialised(key, label, lambda: _make_train_loop(*key[1:]))


def _make_train_loop(LOSS, OPT, FORTRAN, ROWS_MAJOR):  # noqa: N803 - compile-time constants
    IN_PLACE = FORTRAN and not ROWS_MAJOR  # noqa: N806 - column-major mini-batches are read from X, not staged

    @compiled
    def train_loop(chunk, model, schedule, work):
        """``chunk``: ChunkArrays, ``model``: ModelArrays, ``schedule``: StepRates, ``work``: DenseWork. Returns
        (progressive loss sum, rows done, start row of a failed batch or -1)."""
        x, n, d = chunk.x, chunk.n, chunk.d
        params, hyper, n_out = model.params, model.hyper, model.n_out
        lrs, step0, batch_size = schedule.lrs, schedule.step0, schedule.batch_size
        tile_rows, tile, grad = work.tile_rows, work.tile, work.grad
        n_coef = n_out * d
        n_par = params.shape[0]
        backup = ModelArrays(work.backup, work.state_backup, hyper, n_out)
        eps = hyper[H_HUBER_EPS]
        linear = LinearVector(params, n_out, d)
        grads = LinearVector(grad, n_out, d)
        total = 0.0
        batch_loss = 0.0
        batch = 0
        zero = np.int64(0)  # not a literal 0: a callee would be compiled once more for Literal[int](0)
        batch_start = zero
        batch_stop = min(batch_size, n)
        tile_start = zero
        while tile_start < n:
            tile_stop = tile_end(tile_start, n, 0, batch_size, tile_rows)
            if IN_PLACE:  # the batch's rows of each column, in the chunk
                cols = Columns(x, n, tile_start, d)
            else:  # a row-major tile's columns are not read: the slot is filled all the same
                stage_from(chunk, FORTRAN, tile_start, tile_stop, tile, ROWS_MAJOR)
                cols = Columns(tile.reshape(tile.size), tile.shape[1], zero, d)
            r = tile_start
            while r < tile_stop:  # the pieces of batches in this tile
                if r == batch_start:
                    for i in range(n_par):
                        grad[i] = 0.0
                    batch_loss = 0.0
                e = min(batch_stop, tile_stop)
                lo = r - tile_start
                hi = e - tile_start
                if ROWS_MAJOR:
                    row_tile_margins(tile, lo, hi, params, n_out, work.margins)
                else:
                    cols_margins(cols, lo, hi, linear, work.margins)
                batch_loss += rows_loss_dloss(chunk, work, lo, hi, tile_start, n_out, LOSS, eps, not ROWS_MAJOR)
                if ROWS_MAJOR:
                    row_tile_grad_add(tile, lo, hi, n_out, work.dloss, grad)
                else:
                    cols_grad_add(cols, lo, hi, work.dloss, grads)
                if e == batch_stop:  # the batch is complete: step
                    if not math.isfinite(batch_loss):
                        return total, batch_start, batch_start
                    inv = 1.0 / (batch_stop - batch_start)
                    for i in range(n_par):
                        grad[i] *= inv
                    if not apply_update(model, grad, lrs[batch], OPT, step0 + batch, n_coef, backup):
                        return total, batch_start, batch_start
                    total += batch_loss
                    batch += 1
                    batch_start = batch_stop
                    batch_stop = min(batch_start + batch_size, n)
                r = e
            tile_start = tile_stop
        return total, n, -1

    return train_loop


def full_batch_update_for(opt_kind: int) -> Any:
    """The step of ``full_batch_step`` for one optimizer."""
    key = ("full_batch_step", int(opt_kind))
    return specialised(key, None, lambda: _make_full_batch_update(key[1]))


def _make_full_batch_update(OPT):  # noqa: N803
    @compiled
    def full_batch_update(model, grad_sum, step, work):
        """The step of ``full_batch_step``: mean gradient, then ``apply_update``. ``model``: ModelArrays;
        ``step``: FullBatchStep; ``work``: DenseWork (its gradient and backups)."""
        params, grad = model.params, work.grad
        inv = 1.0 / step.n_rows
        for i in range(params.shape[0]):
            grad[i] = grad_sum[i] * inv
        return apply_update(model, grad, step.lr, OPT, step.step, step.n_coef,
                            ModelArrays(work.backup, work.state_backup, model.hyper, model.n_out))

    return full_batch_update

