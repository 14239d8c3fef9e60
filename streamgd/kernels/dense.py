"""The dense chunk loops and their factories: one loop per use, specialised on its constants (the memo is
``streamgd.kernels.specialise``), built from the shared compiled pieces (``streamgd.kernels.pieces``).

Rows arrive in the plan's order (the reader permutes them while converting), so a mini-batch is a run of
consecutive rows. ``X`` may be float32 or float64, column-major (the reader's layout) or row-major, and reaches
a loop as a flat vector. Mini-batches of a column-major chunk are read in place; other chunks, and batches of fewer
than ``ROW_MAJOR_BELOW`` rows, are staged into a small float64 tile. The X dtype is a type, so each dtype a run
uses is its own signature of the same specialisation.

The train loop is specialised on loss, optimizer, chunk order and tile kind: one generic loop with every branch
of every rule took far longer and far more memory to compile, on every run with an empty cache (the figures are in
benchmarks/README.md, "Kernels"). The sum, bad-row and predict loops take the loss at
run time, which costs them nothing measurable (``scripts/bench_kernel.py --sum``) and saves a specialisation per
loss. The loops take a few named arguments (``streamgd.kernels.arguments``' namedtuples): the chunk
(``ChunkArrays``), the model (``ModelArrays``), the schedule (``StepRates``) and the workspace (``DenseWork``,
``SumWork``), so two arrays of one type cannot be swapped silently. They allocate nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .arguments import ModelArrays
from .codes import H_HUBER_EPS, loss_label, optimizer_label
from .jit import compiled
from .pieces import (
    apply_update,
    cols_margins,
    row_loss_dloss,
    row_tile_margins,
    rows_loss_grad,
    rows_loss_grad_of_kind,
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
        """``chunk``: ChunkArrays, ``model``: ModelArrays, ``schedule``: StepRates, ``work``: DenseWork. Returns (progressive loss sum, rows done, start row of a failed batch or -1)."""
        x, n, d = chunk.x, chunk.n, chunk.d
        params, hyper, n_out = model.params, model.hyper, model.n_out
        lrs, step0, batch_size = schedule.lrs, schedule.step0, schedule.batch_size
        tile_rows, tile, grad = work.tile_rows, work.tile, work.grad
        n_coef = n_out * d
        n_par = params.shape[0]
        backup = ModelArrays(work.backup, work.state_backup, hyper, n_out)
        eps = hyper[H_HUBER_EPS]
        total = 0.0
        batch_loss = 0.0
        batch = 0
        zero = np.int64(0)  # not a literal 0: a callee would be compiled once more for Literal[int](0)
        batch_start = zero
        batch_stop = min(batch_size, n)
        tile_start = zero
        while tile_start < n:
            tile_stop = tile_end(tile_start, n, 0, batch_size, tile_rows)
            if not IN_PLACE:
                stage_from(x, FORTRAN, n, d, tile_start, tile_stop, tile, ROWS_MAJOR)
            r = tile_start
            while r < tile_stop:  # the pieces of batches in this tile
                if r == batch_start:
                    for i in range(n_par):
                        grad[i] = 0.0
                    batch_loss = 0.0
                e = min(batch_stop, tile_stop)
                lo = r - tile_start
                hi = e - tile_start
                if IN_PLACE:
                    batch_loss += rows_loss_grad(chunk, x, n, tile_start, False, lo, hi, tile_start, params, n_out,
                                                  LOSS, eps, work)
                elif ROWS_MAJOR:  # the columns are not read: tile[0] only fills the slot
                    batch_loss += rows_loss_grad(chunk, tile[0], zero, zero, True, lo, hi, tile_start, params,
                                                  n_out, LOSS, eps, work)
                else:
                    batch_loss += rows_loss_grad(chunk, tile.reshape(tile.size), tile.shape[1], zero, False, lo,
                                                  hi, tile_start, params, n_out, LOSS, eps, work)
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


def sum_loop_for(fortran: bool, rows_major: bool) -> Any:
    """The loop of ``accumulate_chunk``, ``batch_loss_grad`` and ``chunk_loss`` for one layout (every loss)."""
    key = ("sum", bool(fortran), bool(rows_major))
    return specialised(key, "loss and gradient sums", lambda: _make_sum_loop(*key[1:]))


def _make_sum_loop(FORTRAN, ROWS_MAJOR):  # noqa: N803
    IN_PLACE = FORTRAN and not ROWS_MAJOR  # noqa: N806

    @compiled
    def sum_loop(chunk, start, stop, params, n_out, loss_kind, eps, batch_size, work):
        """Weighted loss sum of rows [start, stop) of ``chunk`` (ChunkArrays), adding their summed gradient into
        ``work.grad`` (SumWork) unless it is empty; tiled as the train loop tiles batches of ``batch_size`` rows
        starting at ``start``."""
        x, n, d = chunk.x, chunk.n, chunk.d
        tile_rows, tile = work.tile_rows, work.tile
        zero = np.int64(0)  # not a literal 0: a callee would be compiled once more for Literal[int](0)
        total = 0.0
        tile_start = start
        while tile_start < stop:
            tile_stop = tile_end(tile_start, stop, start, batch_size, tile_rows)
            if not IN_PLACE:
                stage_from(x, FORTRAN, n, d, tile_start, tile_stop, tile, ROWS_MAJOR)
            hi = tile_stop - tile_start
            if IN_PLACE:
                total += rows_loss_grad_of_kind(chunk, x, n, tile_start, False, zero, hi, tile_start, params,
                                                n_out, loss_kind, eps, work)
            elif ROWS_MAJOR:  # the columns are not read: tile[0] only fills the slot
                total += rows_loss_grad_of_kind(chunk, tile[0], zero, zero, True, zero, hi, tile_start, params,
                                                n_out, loss_kind, eps, work)
            else:
                total += rows_loss_grad_of_kind(chunk, tile.reshape(tile.size), tile.shape[1], zero, False, zero,
                                                hi, tile_start, params, n_out, loss_kind, eps, work)
            tile_start = tile_stop
        return total

    return sum_loop


def first_bad_row_loop_for(fortran: bool) -> Any:
    """The loop that finds the first bad row of a failed batch, for one chunk order (every loss)."""
    key = ("bad_row", bool(fortran))
    return specialised(key, None, lambda: _make_first_bad_row_loop(key[1]))


def _make_first_bad_row_loop(FORTRAN):  # noqa: N803
    @compiled
    def first_bad_row_loop(chunk, start, stop, params, n_out, loss_kind, eps, work):
        """The first row of [start, stop) whose features, target, weight, margins, loss or dloss are not finite,
        else ``start``. Runs only after a failure, so it recomputes rather than keep per-row results on the hot
        path. ``chunk``: ChunkArrays; ``work``: SumWork (its gradient unused)."""
        x, n, d, y, sample_weight = chunk.x, chunk.n, chunk.d, chunk.y, chunk.sample_weight
        tile_rows, tile, margins, dloss = work.tile_rows, work.tile, work.margins, work.dloss
        for tile_start in range(start, stop, tile_rows):
            tile_stop = min(tile_start + tile_rows, stop)
            stage_from(x, FORTRAN, n, d, tile_start, tile_stop, tile, True)
            row_tile_margins(tile, 0, tile_stop - tile_start, params, n_out, margins)
            weighted = sample_weight.shape[0] > 0
            for b in range(tile_stop - tile_start):
                r = tile_start + b
                weight = sample_weight[r] if weighted else 1.0
                probe = row_loss_dloss(margins, b, n_out, loss_kind, y[r], weight, eps, dloss) * 0.0
                probe += (y[r] + weight) * 0.0
                for j in range(d):
                    probe += tile[b, j] * 0.0
                for k in range(n_out):
                    probe += (margins[k, b] + dloss[k, b]) * 0.0
                if probe != 0.0:
                    return r
        return start

    return first_bad_row_loop


def predict_loop_for(fortran: bool) -> Any:
    """The loop of ``predict_margins`` for one chunk order."""
    key = ("predict", bool(fortran))
    return specialised(key, None, lambda: _make_predict_loop(*key[1:]))


def _make_predict_loop(FORTRAN):  # noqa: N803
    @compiled
    def predict_loop(chunk, params, n_out, work, out):
        """out[r, k] = margin k of row r, for every row of ``chunk`` (ChunkArrays; its target unused); ``work``:
        SumWork (its gradient unused)."""
        x, n, d = chunk.x, chunk.n, chunk.d
        tile_rows, tile, margins = work.tile_rows, work.tile, work.margins
        for tile_start in range(0, n, tile_rows):
            tile_stop = min(tile_start + tile_rows, n)
            if not FORTRAN:
                stage_from(x, FORTRAN, n, d, tile_start, tile_stop, tile, False)
                cols_margins(tile.reshape(tile.size), tile.shape[1], 0, d, 0, tile_stop - tile_start, params,
                              n_out, margins, d)
            else:
                cols_margins(x, n, tile_start, d, 0, tile_stop - tile_start, params, n_out, margins, d)
            for b in range(tile_stop - tile_start):
                for k in range(n_out):
                    out[tile_start + b, k] = margins[k, b]

    return predict_loop


def full_batch_update_for(opt_kind: int) -> Any:
    """The step of ``full_batch_step`` for one optimizer."""
    key = ("full_batch_step", int(opt_kind))
    return specialised(key, None, lambda: _make_full_batch_update(key[1]))


def _make_full_batch_update(OPT):  # noqa: N803
    @compiled
    def full_batch_update(model, grad_sum, n_rows_total, lr, step, n_coef, work):
        """The step of ``full_batch_step``: mean gradient, then ``apply_update``. ``model``: ModelArrays;
        ``work``: DenseWork (its gradient and backups)."""
        params, grad = model.params, work.grad
        inv = 1.0 / n_rows_total
        for i in range(params.shape[0]):
            grad[i] = grad_sum[i] * inv
        return apply_update(model, grad, lr, OPT, step, n_coef,
                            ModelArrays(work.backup, work.state_backup, model.hyper, model.n_out))

    return full_batch_update

