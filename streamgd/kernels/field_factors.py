"""The field-aware factorization machine's pieces (FFM; Juan et al., 2016): its pair term, its gradient, and
the entries of a row they loop over. The sparse chunk loops (``streamgd.kernels.sparse``) call them where a plain
FM calls ``streamgd.kernels.factors``' pair term, and step the factor rows with the same ``factor_step``.

Each entry i of a row (a dense column where the factors cover them, a sparse slot) has a factor row ``s_i``, a
value ``x_i`` and a field ``f_i`` (``FactorArrays``), and each factor row holds one k-vector per field, so a row's
pair term is

    sum_{i<j} <V[s_i, f_j], V[s_j, f_i]> x_i x_j

in O(k n^2) for n entries (no identity folds it, as it folds a plain FM's), with gradient
``d/dV[s_i, f_j] += x_i x_j V[s_j, f_i]`` and its mirror (tests/fm_reference.py's ``ffm_gradient``). A batch's
gradient reaches only the (row, field) blocks its pairs use, and only those are stepped (``mask``): a factor
row's vector for a field no partner of a batch had is left as it was, L2 included (lazy, per block).
"""

from __future__ import annotations

import numpy as np

from .jit import compiled, inlined


@inlined
def row_entries(chunk, sparse, factors, r, tile, work):
    """Write row r's entries into ``work``'s entry arrays (the dense columns first, when the factors cover them);
    return their number. Each entry's compact row ``q`` is its slot's number in ``tile``'s column map: the train
    loop's numbering of its batch, or in the read loops the slot itself (its factor row)."""
    e0, entry_pos = tile.e0, tile.columns
    x, n, d = chunk.x, chunk.n, chunk.d
    indptr, indices, values = sparse.indptr, sparse.indices, sparse.values
    slot_fields = factors.slot_fields
    by_slot = slot_fields.shape[0] > 0
    d_num = d if factors.numeric > 0 else 0
    rows, fields, xs, qs = work.entry_rows, work.entry_fields, work.entry_values, work.entry_q
    m = 0
    for j in range(d_num):
        rows[m] = j
        fields[m] = j
        xs[m] = np.float64(x[j * n + r])
        qs[m] = j
        m += 1
    start = indptr[r]
    end = indptr[r + 1]
    if factors.span > 0 and start + factors.span < end:  # only the factor columns' entries (numbered first)
        end = start + factors.span
    for e in range(start, end):
        slot = indices[e]
        rows[m] = d_num + slot
        fields[m] = d_num + (np.int64(slot_fields[slot]) if by_slot else e - start)
        xs[m] = values[e]
        qs[m] = d_num + entry_pos[e - e0]
        m += 1
    return m


@compiled
def ffm_margins_add(chunk, sparse, factors, tile, work, margins):
    """margins[0, b] += the field-aware pair term of chunk row t0 + b, for b in [0, hi) (``tile``: Tile)."""
    t0, hi = tile.t0, tile.hi
    V = factors.block  # noqa: N806 - the factor matrix, as in the papers
    k = factors.k
    width = V.shape[1] // factors.fields
    rows, fields, xs = work.entry_rows, work.entry_fields, work.entry_values
    for b in range(hi):
        m = row_entries(chunk, sparse, factors, t0 + b, tile, work)
        total = 0.0
        for a in range(m):
            row_a, base_a = rows[a], fields[a] * width
            for c in range(a + 1, m):
                row_c, base_c = rows[c], fields[c] * width
                dot = 0.0
                for f in range(k):
                    dot += V[row_a, base_c + f] * V[row_c, base_a + f]
                total += dot * (xs[a] * xs[c])
        margins[0, b] += total


@compiled
def ffm_grad_add(chunk, sparse, factors, tile, dloss, work):
    """work.grad[q, field * k ..] += dloss[0, b] * d(pair term of row t0 + b) / d V[row q, field] for the touched
    rows q of a batch (the train loop's numbering: ``tile``'s column map), marking each (q, field) block reached in
    ``work.mask``."""
    t0, hi = tile.t0, tile.hi
    V = factors.block  # noqa: N806
    k = factors.k
    width = V.shape[1] // factors.fields
    grad, mask = work.grad, work.mask
    rows, fields, xs, qs = work.entry_rows, work.entry_fields, work.entry_values, work.entry_q
    for b in range(hi):
        g = dloss[0, b]
        m = row_entries(chunk, sparse, factors, t0 + b, tile, work)
        for a in range(m):
            row_a, field_a, q_a = rows[a], fields[a], qs[a]
            for c in range(a + 1, m):
                row_c, field_c, q_c = rows[c], fields[c], qs[c]
                gxx = g * (xs[a] * xs[c])
                for f in range(k):
                    grad[q_a, field_c * k + f] += gxx * V[row_c, field_a * width + f]
                    grad[q_c, field_a * k + f] += gxx * V[row_a, field_c * width + f]
                mask[q_a, field_c] = 1
                mask[q_c, field_a] = 1


@compiled
def ffm_block_grad_add(chunk, sparse, factors, tile, dloss, work):
    """work.block_grad[row, field * width ..] += dloss[0, b] * d(pair term of row t0 + b) / d V[row, field] over
    every factor row: the full gradient the sum loops return (laid out as the block; its state stays 0)."""
    t0, hi = tile.t0, tile.hi
    V = factors.block  # noqa: N806
    k = factors.k
    width = V.shape[1] // factors.fields
    block_grad = work.block_grad
    rows, fields, xs = work.entry_rows, work.entry_fields, work.entry_values
    for b in range(hi):
        g = dloss[0, b]
        m = row_entries(chunk, sparse, factors, t0 + b, tile, work)
        for a in range(m):
            row_a, base_a = rows[a], fields[a] * width
            for c in range(a + 1, m):
                row_c, base_c = rows[c], fields[c] * width
                gxx = g * (xs[a] * xs[c])
                for f in range(k):
                    block_grad[row_a, base_c + f] += gxx * V[row_c, base_a + f]
                    block_grad[row_c, base_a + f] += gxx * V[row_a, base_c + f]
