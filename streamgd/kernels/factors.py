"""The factorization machine's pieces (Rendle, 2010): the pair term of the margins, its gradient, and the update
of the factor rows a mini-batch touches. The sparse chunk loops (``streamgd.kernels.sparse``) call them beside
the linear part's margins, gradient and update, so an FM is the linear model plus these pieces.

A row's pair term over its entries i (the sparse slots, and the dense columns where the factors cover them) is

    sum_{i<j} <v_i, v_j> x_i x_j = 1/2 sum_f [ (sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2 ]

computed in O(k nnz) from the per-row sums ``s_f = sum_i v_if x_i``, whose gradient is
``d/dv_if = x_i (s_f - v_if x_i)`` (Rendle's eq. 4; two entries of one slot add up, as in tests/fm_reference.py).
Where the factors cover only some columns (``FactorArrays.span``: a FeatureSpec's factor columns, numbered first),
a row's other entries are left out of the sums: their slots keep a linear weight only.

The factor rows live in one block (``FactorArrays``): row ``r`` holds its k factors, then the rule's state for
them, side by side. A batch's factor gradient is summed per touched row (numbered as the sparse loop numbers its
slots), its mean plus the factors' L2 penalty (``hyper[H_FACTOR_L2]``, on touched rows only, as libffm and xLearn
regularise) is stepped by the rule ``FACTOR_RULES`` names for the run's optimizer (SGD, AdaGrad or Adam; FTRL
runs take AdaGrad), and the new rows are written only once the whole batch is known to be finite. Rows no batch
touches are not updated (lazy): their state does not decay, Adam's bias correction still counts every step.
"""

from __future__ import annotations

import math

import numpy as np

from .codes import (
    FACTOR_FLOOR,
    H_BETA1,
    H_BETA2,
    H_CLIP_NORM,
    H_EPS,
    H_FACTOR_L2,
    H_FACTOR_LR,
    H_FTRL_BETA,
    OPT_ADAGRAD,
    OPT_ADAM,
)
from .jit import compiled, inlined


@inlined
def entries_end(indptr, r, span):
    """The end of row r's entries that have factors: its first ``span`` (a FeatureSpec numbers the factor
    columns first), or all of them (``span`` 0)."""
    end = indptr[r + 1]
    if span > 0 and indptr[r] + span < end:
        end = indptr[r] + span
    return end


@compiled
def factor_margins_add(chunk, sparse, factors, tile, work, margins):
    """margins[0, b] += the pair term of chunk row t0 + b, for b in [0, hi) (``tile``: Tile); ``work.sums[b]``
    (FactorWork) keeps its ``sum_i v_i x_i``."""
    t0, hi, sums = tile.t0, tile.hi, work.sums
    x, n, d = chunk.x, chunk.n, chunk.d
    indptr, indices, values = sparse.indptr, sparse.indices, sparse.values
    V = factors.block  # noqa: N806 - the factor matrix, as in the papers
    k = factors.k
    numeric = factors.numeric > 0
    span = factors.span
    first = d if numeric else 0  # the row of slot 0
    for b in range(hi):
        r = t0 + b
        for f in range(k):
            sums[b, f] = 0.0
        squares = 0.0
        if numeric:
            for j in range(d):
                xv = np.float64(x[j * n + r])
                for f in range(k):
                    t = V[j, f] * xv
                    sums[b, f] += t
                    squares += t * t
        for e in range(indptr[r], entries_end(indptr, r, span)):
            xv = values[e]
            row = first + indices[e]
            for f in range(k):
                t = V[row, f] * xv
                sums[b, f] += t
                squares += t * t
        total = 0.0
        for f in range(k):
            total += sums[b, f] * sums[b, f]
        margins[0, b] += 0.5 * (total - squares)


@compiled
def factor_grad_add(chunk, sparse, factors, tile, dloss, work):
    """work.grad[q] += dloss[0, b] * d(pair term of row t0 + b) / d v for the touched rows q of a batch: the dense
    columns' rows first (q = j, when the factors cover them), then its slots in the sparse loop's numbering
    (q = d_num + entry_pos[e - e0]: ``tile``'s column map)."""
    t0, hi, e0, entry_pos = tile.t0, tile.hi, tile.e0, tile.columns
    sums, grad = work.sums, work.grad
    x, n, d = chunk.x, chunk.n, chunk.d
    indptr, indices, values = sparse.indptr, sparse.indices, sparse.values
    V = factors.block  # noqa: N806
    k = factors.k
    numeric = factors.numeric > 0
    span = factors.span
    first = d if numeric else 0
    for b in range(hi):
        r = t0 + b
        g = dloss[0, b]
        if numeric:
            for j in range(d):
                gx = g * np.float64(x[j * n + r])
                xv = np.float64(x[j * n + r])
                for f in range(k):
                    grad[j, f] += gx * (sums[b, f] - V[j, f] * xv)
        for e in range(indptr[r], entries_end(indptr, r, span)):
            xv = values[e]
            gx = g * xv
            row = first + indices[e]
            q = first + entry_pos[e - e0]
            for f in range(k):
                grad[q, f] += gx * (sums[b, f] - V[row, f] * xv)


@compiled
def factor_block_grad_add(chunk, sparse, factors, tile, dloss, work):
    """work.block_grad[row, :k] += dloss[0, b] * d(pair term of row t0 + b) / d v_row over every factor row: the
    full gradient the sum loops return (laid out as the block; its state columns stay untouched)."""
    t0, hi, sums, block_grad = tile.t0, tile.hi, work.sums, work.block_grad
    x, n, d = chunk.x, chunk.n, chunk.d
    indptr, indices, values = sparse.indptr, sparse.indices, sparse.values
    V = factors.block  # noqa: N806
    k = factors.k
    numeric = factors.numeric > 0
    span = factors.span
    first = d if numeric else 0
    for b in range(hi):
        r = t0 + b
        g = dloss[0, b]
        if numeric:
            for j in range(d):
                xv = np.float64(x[j * n + r])
                for f in range(k):
                    block_grad[j, f] += g * xv * (sums[b, f] - V[j, f] * xv)
        for e in range(indptr[r], entries_end(indptr, r, span)):
            xv = values[e]
            row = first + indices[e]
            for f in range(k):
                block_grad[row, f] += g * xv * (sums[b, f] - V[row, f] * xv)


@compiled
def factor_step(factors, rule, work, batch, hyper):
    """The touched rows' next values and state into ``updated[q]`` (the block is not written): the mean
    gradient ``grad[q] * inv`` plus the factor L2, clipped, stepped by ``rule`` (OPT_SGD, OPT_ADAGRAD or OPT_ADAM).
    Rows q < d_num are the dense columns', the others slot ``touched[q - d_num]``'s. A field-aware FM steps only
    the (row, field) blocks ``mask`` marks, and clears their gradient for the next batch. False if any result is
    not finite. ``work``: FactorWork (its gradient, mask and updated rows); ``batch``: FactorBatch.

    Clipping (``hyper[H_CLIP_NORM]`` > 0) scales the factors' gradient down to that global L2 norm, as the
    linear part's is (``streamgd.kernels.pieces``): the factor block is a parameter group of its own (its own
    penalty, and AdaGrad under FTRL), so its norm is taken, and bounded, on its own."""
    grad, mask, updated = work.grad, work.mask, work.updated
    n_rows, d, touched, inv, lr, step = batch.n_rows, batch.d, batch.touched, batch.inv, batch.lr, batch.step
    V = factors.block  # noqa: N806
    k = factors.k
    aware = factors.fields > 0
    n_fields = factors.fields if aware else 1
    numeric = factors.numeric > 0
    d_num = d if numeric else 0
    first = d_num
    width = V.shape[1] // n_fields  # one field's k factors and their state
    l2 = hyper[H_FACTOR_L2]
    if hyper[H_FACTOR_LR] > 0.0:  # the factors' own share of the run's rate
        lr *= hyper[H_FACTOR_LR]
    # AdaGrad's denominator: the run's eps, or under FTRL its offset beta (lr / (beta + sqrt(G)), as FTRL's own
    # rate), so that a row's first step is about lr * g, not lr * sign(g) whatever the gradient's size
    eps = hyper[H_EPS] if hyper[H_EPS] > 0.0 else hyper[H_FTRL_BETA] if hyper[H_FTRL_BETA] > 0.0 else FACTOR_FLOOR
    beta1 = hyper[H_BETA1]
    beta2 = hyper[H_BETA2]
    t = step + 1.0
    correction1 = 1.0 - beta1 ** t
    correction2 = 1.0 - beta2 ** t
    scale = 1.0
    clip = hyper[H_CLIP_NORM]
    if clip > 0.0:  # the norm of the whole step's gradient first
        norm = 0.0
        for q in range(n_rows):
            row = q if q < d_num else first + touched[q - d_num]
            for field in range(n_fields):
                if aware and mask[q, field] == 0:
                    continue
                for f in range(k):
                    g = grad[q, field * k + f] * inv + l2 * V[row, field * width + f]
                    norm += g * g
        norm = math.sqrt(norm)
        if norm > clip:
            scale = clip / norm
    probe = 0.0
    for q in range(n_rows):
        row = q if q < d_num else first + touched[q - d_num]
        for field in range(n_fields):
            if aware and mask[q, field] == 0:
                continue
            base = field * width
            out = updated[q, base:base + width]
            source = V[row, base:base + width]
            g_row = grad[q, field * k:(field + 1) * k]
            for c in range(width):
                out[c] = source[c]
            for f in range(k):
                g = g_row[f] * inv + l2 * out[f]
                if scale != 1.0:
                    g *= scale
                if rule == OPT_ADAGRAD:
                    total = out[k + f] + g * g
                    out[k + f] = total
                    out[f] -= lr * g / (math.sqrt(total) + eps)
                elif rule == OPT_ADAM:
                    m = beta1 * out[k + f] + (1.0 - beta1) * g
                    v = beta2 * out[2 * k + f] + (1.0 - beta2) * g * g
                    out[k + f] = m
                    out[2 * k + f] = v
                    out[f] -= lr * (m / correction1) / (math.sqrt(v / correction2) + eps)
                else:  # OPT_SGD
                    out[f] -= lr * g
                if aware:
                    g_row[f] = 0.0
            for c in range(width):
                probe += out[c] * 0.0
    return probe == 0.0


@compiled
def factor_write(factors, work, batch):
    """Write the rows ``factor_step`` computed back into the block (a field-aware FM: the blocks ``mask`` marks,
    clearing the marks for the next batch)."""
    updated, mask = work.updated, work.mask
    n_rows, d, touched = batch.n_rows, batch.d, batch.touched
    V = factors.block  # noqa: N806
    aware = factors.fields > 0
    n_fields = factors.fields if aware else 1
    width = V.shape[1] // n_fields
    d_num = d if factors.numeric > 0 else 0
    for q in range(n_rows):
        row = q if q < d_num else d_num + touched[q - d_num]
        for field in range(n_fields):
            if aware:
                if mask[q, field] == 0:
                    continue
                mask[q, field] = 0
            base = field * width
            target = V[row, base:base + width]
            source = updated[q, base:base + width]
            for c in range(width):
                target[c] = source[c]
