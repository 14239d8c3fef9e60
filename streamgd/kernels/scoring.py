"""The loops that read a model without training it: the loss and gradient sums (full-batch accumulation,
evaluation, ``batch_loss_grad``), the search for a failed batch's first bad row, and prediction. Each is written
once for dense chunks and chunks with a sparse block.

A loop is specialised on the chunk's layout (its order, and the tile kind of the sums) and on its block kind:
``SPARSE`` adds the sparse entries' pass (``entries_margins_add``, ``entries_grad_add``) and the factor pieces of
an FM to the dense columns' (``cols_margins``, ``cols_grad_add``), which every loop shares. A dense chunk's loop
prunes them, so it compiles and runs only the column passes; it is handed an empty block and no factors, of the
same types. A chunk with a sparse block is read in place, column-major (``streamgd.kernels.sparse`` converts it
once). The loops take the loss at run time, which costs them nothing measurable (``scripts/bench_kernel.py
--sum``) and saves a specialisation per loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arguments import Columns, LinearVector, SparseArrays, Tile
from .factors import factor_block_grad_add, factor_margins_add
from .field_factors import ffm_block_grad_add, ffm_margins_add
from .jit import compiled, inlined
from .pieces import (
    cols_grad_add,
    cols_margins,
    entries_grad_add,
    entries_margins_add,
    row_loss_dloss,
    row_tile_grad_add,
    row_tile_margins,
    rows_loss_dloss_of_kind,
    stage_from,
    tile_end,
)
from .specialise import specialised


def named_for_block(function: Any, sparse: bool) -> Any:
    """``function`` (a loop before it is compiled) named for its block kind: a sparse block's loop is
    ``_sparse_<name>`` in compile notices, profiles and Numba's cache index, a dense chunk's keeps its name."""
    if sparse:
        function.__name__ = function.__qualname__ = f"_sparse_{function.__name__}"
    return function


# A dense chunk's loops take an empty block (its slot count sizes the parameters) and no factors (None: they never
# read them, and each array of an empty FactorModel would cost every call its unboxing)
NO_SPARSE = SparseArrays(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32), np.empty(0), np.int64(0))


@inlined
def sparse_margins_add(chunk, sparse, tile, linear, fm, margins):
    """The sparse block's part of the margins of ``tile``'s rows: its entries', then an FM's pair term (none for
    k = 0, a plain or a field-aware FM's)."""
    entries_margins_add(sparse, tile, chunk.d, linear, margins)
    factors = fm.arrays
    if factors.k > 0:
        if factors.fields > 0:
            ffm_margins_add(chunk, sparse, factors, tile, fm.work, margins)
        else:
            factor_margins_add(chunk, sparse, factors, tile, fm.work, margins)


def sum_loop_for(fortran: bool, rows_major: bool, sparse: bool = False) -> Any:
    """The loop of ``accumulate_chunk``, ``batch_loss_grad`` and ``chunk_loss`` for one layout (every loss);
    ``sparse``: for a chunk with a sparse block (column-major, column tiles)."""
    key = ("sum", bool(fortran), bool(rows_major), bool(sparse))
    label = "loss and gradient sums" + (" (sparse)" if sparse else "")
    return specialised(key, label, lambda: _make_sum_loop(*key[1:]))


def _make_sum_loop(FORTRAN, ROWS_MAJOR, SPARSE):  # noqa: N803 - compile-time constants
    IN_PLACE = FORTRAN and not ROWS_MAJOR  # noqa: N806

    def sum_loop(chunk, sparse, rows, model, work, fm):
        """Weighted loss sum of the rows of ``rows`` (RowRange) of ``chunk`` (ChunkArrays) and its ``sparse``
        block (SparseArrays), adding their summed gradient into ``work.grad`` (SumWork; full length, or empty:
        none); ``model``: ScoredModel. An FM's factors (``fm``: FactorModel; None in a dense chunk's loop) add
        their pair term, and their gradient into ``fm.work.block_grad`` unless it is empty."""
        x, n, d = chunk.x, chunk.n, chunk.d
        start, stop, batch_size = rows.start, rows.stop, rows.batch_size
        params, n_out, loss_kind, eps = model.params, model.n_out, model.loss_kind, model.eps
        tile_rows, tile, grad = work.tile_rows, work.tile, work.grad
        D = d + sparse.n_slots  # noqa: N806 - the model's features
        linear = LinearVector(params, n_out, D)
        grads = LinearVector(grad, n_out, D)
        zero = np.int64(0)  # not a literal 0: a callee would be compiled once more for Literal[int](0)
        total = 0.0
        tile_start = start
        while tile_start < stop:
            tile_stop = tile_end(tile_start, stop, start, batch_size, tile_rows)
            hi = tile_stop - tile_start
            if IN_PLACE:
                cols = Columns(x, n, tile_start, d)
            else:  # a row-major tile's columns are not read: the slot is filled all the same
                stage_from(chunk, FORTRAN, tile_start, tile_stop, tile, ROWS_MAJOR)
                cols = Columns(tile.reshape(tile.size), tile.shape[1], zero, d)
            if ROWS_MAJOR:
                row_tile_margins(tile, zero, hi, params, n_out, work.margins)
            else:
                cols_margins(cols, zero, hi, linear, work.margins)
            if SPARSE:
                entries = Tile(tile_start, hi, zero, sparse.indices)
                sparse_margins_add(chunk, sparse, entries, linear, fm, work.margins)
            total += rows_loss_dloss_of_kind(chunk, work, zero, hi, tile_start, n_out, loss_kind, eps,
                                             not ROWS_MAJOR)
            if grad.shape[0] > 0:
                if ROWS_MAJOR:
                    row_tile_grad_add(tile, zero, hi, n_out, work.dloss, grad)
                else:
                    cols_grad_add(cols, zero, hi, work.dloss, grads)
                if SPARSE:
                    entries_grad_add(sparse, entries, d, work.dloss, grads)
            if SPARSE:
                factors = fm.arrays
                if factors.k > 0 and fm.work.block_grad.shape[0] > 0:
                    if factors.fields > 0:
                        ffm_block_grad_add(chunk, sparse, factors, entries, work.dloss, fm.work)
                    else:
                        factor_block_grad_add(chunk, sparse, factors, entries, work.dloss, fm.work)
            tile_start = tile_stop
        return total

    return compiled(named_for_block(sum_loop, SPARSE))


def first_bad_row_loop_for(fortran: bool, sparse: bool = False) -> Any:
    """The loop that finds the first bad row of a failed batch, for one chunk order and block kind (every
    loss)."""
    key = ("bad_row", bool(fortran), bool(sparse))
    return specialised(key, None, lambda: _make_first_bad_row_loop(*key[1:]))


def _make_first_bad_row_loop(FORTRAN, SPARSE):  # noqa: N803
    def first_bad_row_loop(chunk, sparse, rows, model, work, fm):
        """The first row of ``rows`` (RowRange, its batch size unused) whose features, target, weight, margins,
        loss or dloss are not finite, else its start. Runs only after a failure, so it recomputes rather than
        keep per-row results on the hot path. Arguments as in the sum loop; ``work``: SumWork (a column-major
        tile; its gradient unused)."""
        x, n, d, y, sample_weight = chunk.x, chunk.n, chunk.d, chunk.y, chunk.sample_weight
        start, stop = rows.start, rows.stop
        params, n_out, loss_kind, eps = model.params, model.n_out, model.loss_kind, model.eps
        tile_rows, tile, margins, dloss = work.tile_rows, work.tile, work.margins, work.dloss
        indptr, values = sparse.indptr, sparse.values
        linear = LinearVector(params, n_out, d + sparse.n_slots)
        weighted = sample_weight.shape[0] > 0
        zero = np.int64(0)
        for tile_start in range(start, stop, tile_rows):
            tile_stop = min(tile_start + tile_rows, stop)
            hi = tile_stop - tile_start
            if FORTRAN:
                cols = Columns(x, n, tile_start, d)
            else:
                stage_from(chunk, FORTRAN, tile_start, tile_stop, tile, False)
                cols = Columns(tile.reshape(tile.size), tile.shape[1], zero, d)
            cols_margins(cols, zero, hi, linear, margins)
            if SPARSE:
                sparse_margins_add(chunk, sparse, Tile(tile_start, hi, zero, sparse.indices), linear, fm, margins)
            src, stride, offset = cols.src, cols.stride, cols.offset
            for b in range(hi):
                r = tile_start + b
                weight = sample_weight[r] if weighted else 1.0
                probe = row_loss_dloss(margins, b, n_out, loss_kind, y[r], weight, eps, dloss) * 0.0
                probe += (y[r] + weight) * 0.0
                for j in range(d):
                    probe += src[j * stride + offset + b] * 0.0
                if SPARSE:
                    for e in range(indptr[r], indptr[r + 1]):
                        probe += values[e] * 0.0
                for k in range(n_out):
                    probe += (margins[k, b] + dloss[k, b]) * 0.0
                if probe != 0.0:
                    return r
        return start

    return compiled(named_for_block(first_bad_row_loop, SPARSE))


def predict_loop_for(fortran: bool, sparse: bool = False) -> Any:
    """The loop of ``predict_margins`` for one chunk order and block kind."""
    key = ("predict", bool(fortran), bool(sparse))
    return specialised(key, None, lambda: _make_predict_loop(*key[1:]))


def _make_predict_loop(FORTRAN, SPARSE):  # noqa: N803
    def predict_loop(chunk, sparse, model, work, fm, out):
        """out[r, k] = margin k of row r, for every row of ``chunk`` (ChunkArrays; its target unused) and its
        ``sparse`` block; ``model``: ScoredModel (its loss unused); ``work``: SumWork (its tile and margins);
        an FM's factors (``fm``) add their pair term."""
        x, n, d = chunk.x, chunk.n, chunk.d
        params, n_out = model.params, model.n_out
        tile_rows, tile, margins = work.tile_rows, work.tile, work.margins
        linear = LinearVector(params, n_out, d + sparse.n_slots)
        zero = np.int64(0)
        for tile_start in range(0, n, tile_rows):
            tile_stop = min(tile_start + tile_rows, n)
            hi = tile_stop - tile_start
            if FORTRAN:
                cols = Columns(x, n, tile_start, d)
            else:
                stage_from(chunk, FORTRAN, tile_start, tile_stop, tile, False)
                cols = Columns(tile.reshape(tile.size), tile.shape[1], zero, d)
            cols_margins(cols, zero, hi, linear, margins)
            if SPARSE:
                sparse_margins_add(chunk, sparse, Tile(tile_start, hi, zero, sparse.indices), linear, fm, margins)
            for b in range(hi):
                for k in range(n_out):
                    out[tile_start + b, k] = margins[k, b]

    return compiled(named_for_block(predict_loop, SPARSE))
