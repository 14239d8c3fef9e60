"""The batch-1 loop of a linear model with a sparse block: one row at a time, each row's coordinates read from the
parameters and optimizer state, stepped in a small scratch and written back, with none of the mini-batch loop's
tiles.

Why a loop of its own: at batch size 1 (FTRL's default, the click-log loop) the general loop of
``streamgd.kernels.sparse`` spends its time on a mini-batch's machinery around a row of a few dozen coordinates.
This one keeps only what a row needs, and it reads the parameters and the state through whatever strides they
have, so that with the per-coordinate layout of ``streamgd.optim.state`` (``coordinate_block``: a coordinate's
weight and its state side by side) a slot's weight, ``z`` and ``n`` come in one cache line.
``scripts/bench_sparse_loop.py`` measures both loops and both layouts.

**A non-finite step is never applied.** Per row: the row's distinct coordinates (its dense columns, its slots,
numbered by ``first_seen`` or, when a row may name a slot twice, ``compact_positions``, and the intercept) and
their state rows are copied into a scratch of ``d + nnz + 1`` entries; the row's gradient, the penalty, clipping,
the rule and the L1 step run there (``streamgd.kernels.pieces.apply_update``, the same compiled update as every
loop, or the fused loop's rules written out); every value computed (weights and every state row) is checked
finite (a sum of ``value * 0.0``, NaN if any is not), and only then written back. A failed row leaves parameters
and state as they were.

**The same numbers as the general loop.** The scratch is laid out as the general loop's compact vectors at
batch 1 (dense coefficients, touched slots in order of first appearance, intercept), and the margin, the loss,
the gradient and the update are the same compiled pieces called on the same values in the same order, so a run
at batch 1 gives the general loop's parameters bit for bit (``tests/test_sparse_batch1.py``).

Several threads may call the loop at once on the same parameters (Hogwild): its scratch comes with each call.
Where the fused loop's time goes, and what each of its shortcuts gave: ``scripts/bench_sparse_loop.py`` and
benchmarks/README.md, "The batch-1 training thread".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .codes import (
    H_ALPHA,
    H_EPS,
    H_FTRL_BETA,
    H_HUBER_EPS,
    H_L1_RATIO,
    H_L1_ROW,
    H_LAZY_ROW,
    H_WEIGHT_DECAY,
    OPT_ADAGRAD,
    OPT_ADAMW,
    OPT_FTRL,
    OPT_SGD,
    loss_label,
    optimizer_label,
)
from .arguments import Columns, LinearVector, ModelArrays
from .jit import compiled, inlined
from .pieces import apply_update, clip_by_global_norm, cols_grad_add, cols_margins, l1_prox, rows_loss_dloss
from .update_rules import ftrl_coordinate
from .specialise import specialised

HASH_MULTIPLIER = 2654435761  # Knuth's multiplicative hash: consecutive slots spread over the table
ROW_TABLE_SIZE = 4096  # the batch-1 loop's slot table (a power of two): 40 slots share a bucket in 1 row of 6


@compiled
def compact_positions(sparse, e0, e1, work):
    """Number the distinct slots of ``sparse``'s (SparseArrays) entries [e0, e1) in order of first appearance, in
    ``work`` (SparseWork): ``touched[p]`` is slot p's number, ``entry_pos[e - e0]`` the number of entry e's slot.
    ``keys`` (a power-of-two table of -1) is left as found: the slots it records are cleared again before
    returning."""
    indices, keys, positions = sparse.indices, work.keys, work.positions
    entry_pos, touched, touched_keys = work.entry_pos, work.touched, work.touched_keys
    mask = keys.shape[0] - 1
    m = 0
    for e in range(e0, e1):
        c = indices[e]
        h = (np.int64(c) * HASH_MULTIPLIER) & mask
        while True:
            key = keys[h]
            if key == c:
                break
            if key < 0:
                keys[h] = c
                positions[h] = m
                touched[m] = c
                touched_keys[m] = h
                m += 1
                break
            h = (h + 1) & mask
        entry_pos[e - e0] = positions[h]
    for p in range(m):
        keys[touched_keys[p]] = -1
    return m


FUSED_RULES = (OPT_SGD, OPT_ADAGRAD, OPT_FTRL)  # the rules the fused loop steps itself


def sparse_row_loop_for(loss_kind: int, opt_kind: int, fused: bool = True) -> Any:
    """The batch-1 loop of a linear model with one output, for one loss and optimizer: the fused loop for the
    rules of ``FUSED_RULES`` (unless ``fused`` is False), else the loop that steps a copy with ``apply_update``."""
    fused = fused and int(opt_kind) in FUSED_RULES
    key = ("sparse_rows_fused" if fused else "sparse_rows", int(loss_kind), int(opt_kind))
    label = f"{loss_label(key[1])}/{optimizer_label(key[2])} (sparse, batch 1)"
    make = _make_fused_row_loop if fused else _make_sparse_row_loop
    return specialised(key, label, lambda: make(key[1], key[2]))


def _make_sparse_row_loop(LOSS, OPT):  # noqa: N803 - compile-time constants
    @compiled
    def sparse_row_loop(chunk, sparse, model, schedule, work):
        """``chunk``: ChunkArrays, ``sparse``: SparseArrays, ``model``: ModelArrays (one output; its params and
        state of any strides), ``schedule``: StepRates (one rate per row), ``work``: SparseWork (its tile unused).
        Returns (progressive loss sum, rows done, the failed row or -1)."""
        x, n, d = chunk.x, chunk.n, chunk.d
        indptr, values = sparse.indptr, sparse.values
        D = d + sparse.n_slots  # noqa: N806 - the intercept's index
        params, opt_state, hyper = model.params, model.opt_state, model.hyper
        lrs, step0 = schedule.lrs, schedule.step0
        margins, dloss = work.margins, work.dloss
        entry_pos = work.entry_pos
        touched, cw, cg, cstate = work.touched, work.cw, work.cg, work.cstate
        rows = opt_state.shape[0]
        eps = hyper[H_HUBER_EPS]
        lazy_row = int(hyper[H_LAZY_ROW]) - 1
        l2 = hyper[H_ALPHA] * (1.0 - hyper[H_L1_RATIO])
        decay = hyper[H_WEIGHT_DECAY] if OPT == OPT_ADAMW else 0.0
        total = 0.0
        zero = np.int64(0)
        one = np.int64(1)
        for r in range(n):
            e0 = indptr[r]
            e1 = indptr[r + 1]
            m = compact_positions(sparse, e0, e1, work)
            stride = d + m  # the row's coefficients; the intercept follows them
            n_par = stride + 1
            for j in range(d):  # the scratch: dense coefficients, the row's slots, the intercept, and their state
                cw[j] = params[j]
                for s in range(rows):
                    cstate[s, j] = opt_state[s, j]
            for p in range(m):
                c = d + touched[p]
                cw[d + p] = params[c]
                for s in range(rows):
                    cstate[s, d + p] = opt_state[s, c]
            cw[stride] = params[D]
            for s in range(rows):
                cstate[s, stride] = opt_state[s, D]
            w = cw[:n_par]
            g = cg[:n_par]
            state = cstate[:, :n_par]
            ledger = 0.0
            if lazy_row >= 0:  # the penalty of the steps a slot skipped
                stamps = state[lazy_row]
                ledger = stamps[stride]
                for p in range(d, stride):
                    if stamps[p] != ledger:
                        w[p] *= math.exp(ledger - stamps[p])
            for i in range(n_par):
                g[i] = 0.0
            cols_margins(Columns(x, n, r, d), zero, one, LinearVector(w, one, stride), margins)
            for e in range(e0, e1):
                margins[0, 0] += values[e] * w[d + entry_pos[e - e0]]
            loss = rows_loss_dloss(chunk, work, zero, one, r, 1, LOSS, eps, True)
            cols_grad_add(Columns(x, n, r, d), zero, one, dloss, LinearVector(g, one, stride))
            for e in range(e0, e1):
                g[d + entry_pos[e - e0]] += dloss[0, 0] * values[e]
            if not math.isfinite(loss):
                return total, r, r
            lr = lrs[r]
            if not apply_update(ModelArrays(w, state, hyper, 1), g, lr, OPT, step0 + r, stride,
                                ModelArrays(cg[:0], cstate[:, :0], hyper, 1), False):
                return total, r, r  # checked finite in the scratch: nothing was written
            if lazy_row >= 0:
                factor = (1.0 - lr * l2) * (1.0 - lr * decay)
                if not factor > 0.0:  # a step that would flip the coefficients' signs: a divergence
                    return total, r, r
                ledger += math.log(factor)
                stamps = state[lazy_row]
                for p in range(d, n_par):  # the slots' stamps and the ledger, kept in the intercept's entry
                    stamps[p] = ledger
            for j in range(d):
                params[j] = w[j]
                for s in range(rows):
                    opt_state[s, j] = state[s, j]
            for p in range(m):
                c = d + touched[p]
                params[c] = w[d + p]
                for s in range(rows):
                    opt_state[s, c] = state[s, d + p]
            params[D] = w[stride]
            for s in range(rows):
                opt_state[s, D] = state[s, stride]
            total += loss
        return total, n, -1

    return sparse_row_loop


def _make_fused_row_loop(LOSS, OPT):  # noqa: N803 - compile-time constants
    FTRL = OPT == OPT_FTRL  # noqa: N806
    ADAGRAD = OPT == OPT_ADAGRAD  # noqa: N806
    RULE_ROWS = 2 if FTRL else (1 if ADAGRAD else 0)  # noqa: N806

    @compiled
    def fused_row_loop(chunk, sparse, model, schedule, work):
        """``sparse_row_loop`` for SGD, AdaGrad and FTRL, the update written out per coordinate: each coordinate's
        weight (a slot's caught up with the penalty it skipped) and state are read once from the model into the
        scratch (``cw``: weights, ``cstate``: the rule's state and the L1 record), stepped there, and the row is
        written back only when every value it computed is finite. The arithmetic is ``apply_update``'s,
        coordinate by coordinate, so the results are the same bit for bit.

        What it leaves out, each exactly: the next row's slots are prefetched while this row runs (their weights
        and state are far apart in a large model); a row whose slots are distinct (``first_seen`` finds most rows
        so) skips ``compact_positions``; a dense coordinate whose gradient is zero (x = 0 in this row, as
        missing-value indicators mostly are) is not stepped where the rule would leave it as it is
        (``zero_step_is_identity``)."""
        x, n, d = chunk.x, chunk.n, chunk.d
        indptr, indices, values = sparse.indptr, sparse.indices, sparse.values
        D = d + sparse.n_slots  # noqa: N806 - the intercept's index
        params, opt_state, hyper = model.params, model.opt_state, model.hyper
        lrs = schedule.lrs  # the rules fused here take no step number
        margins, dloss = work.margins, work.dloss
        entry_pos, seen = work.entry_pos, work.positions
        touched, nw, g, ns = work.touched, work.cw, work.cg, work.cstate
        rows = opt_state.shape[0]
        eps = hyper[H_HUBER_EPS]
        lazy_row = int(hyper[H_LAZY_ROW]) - 1
        l1_row = int(hyper[H_L1_ROW]) - 1
        l2 = hyper[H_ALPHA] * (1.0 - hyper[H_L1_RATIO])
        l1 = hyper[H_ALPHA] * hyper[H_L1_RATIO]  # FTRL's
        rule_eps = hyper[H_EPS]
        beta = hyper[H_FTRL_BETA]
        total = 0.0
        zero = np.int64(0)
        one = np.int64(1)
        for h in range(seen.shape[0]):  # first_seen's stamps are negative, compact_positions' numbers are not
            seen[h] = 0
        previous_lr = math.nan  # FTRL's: the rate of the row before
        # the per-coordinate block: a coordinate's state rows follow its weight in memory
        side_by_side = rows > 0 and opt_state.strides[0] == params.itemsize and params.strides[0] > params.itemsize
        for r in range(n):
            e0 = indptr[r]
            e1 = indptr[r + 1]
            if r + 1 < n:  # the next row's slots: on their way from memory while this row runs
                for e in range(e1, indptr[r + 2]):
                    c = d + indices[e]
                    prefetch_item(params, c)
                    if side_by_side:  # the weight's line, and the last state row's (the two lines it may span)
                        prefetch_item(opt_state[rows - 1], c)
                    else:
                        for s in range(rows):
                            prefetch_item(opt_state[s], c)
            m = first_seen(indices, e0, e1, seen, -1 - r, touched, entry_pos)
            if m < 0:  # a slot named twice, or maybe: number them
                m = compact_positions(sparse, e0, e1, work)
            distinct = m == e1 - e0  # then entry e is slot e - e0
            stride = d + m  # the row's coefficients; the intercept follows them
            n_par = stride + 1
            ledger = opt_state[lazy_row, D] if lazy_row >= 0 else 0.0
            cumulative = l1_row >= 0  # the cumulative L1 record (never FTRL's)
            for j in range(d):  # the scratch: the dense coefficients, the slots, the intercept and their state
                nw[j] = params[j]
                for s in range(RULE_ROWS):
                    ns[s, j] = opt_state[s, j]
                if cumulative:
                    ns[l1_row, j] = opt_state[l1_row, j]
            for p in range(m):  # the slots' weights with the penalty of the steps they skipped
                c = np.uint64(d + touched[p])
                w = params[c]
                if lazy_row >= 0:
                    stamp = opt_state[lazy_row, c]
                    if stamp != ledger:
                        w *= math.exp(ledger - stamp)
                nw[d + p] = w
                for s in range(RULE_ROWS):
                    ns[s, d + p] = opt_state[s, c]
                if cumulative:
                    ns[l1_row, d + p] = opt_state[l1_row, c]
            nw[stride] = params[D]
            for s in range(RULE_ROWS):
                ns[s, stride] = opt_state[s, D]
            if cumulative:
                ns[l1_row, stride] = opt_state[l1_row, D]
            cols_margins(Columns(x, n, r, d), zero, one, LinearVector(params, one, D), margins)
            for e in range(e0, e1):
                margins[0, 0] += values[e] * nw[d + entry_pos[e - e0]]
            loss = rows_loss_dloss(chunk, work, zero, one, r, 1, LOSS, eps, True)
            slope = dloss[0, 0]
            for j in range(d):
                g[j] = 0.0 + x[j * n + r] * slope
            g[stride] = 0.0 + slope
            if distinct:
                for e in range(e0, e1):
                    g[d + e - e0] = slope * values[e]
            else:
                for p in range(d, stride):
                    g[p] = 0.0
                for e in range(e0, e1):
                    g[d + entry_pos[e - e0]] += slope * values[e]
            if not math.isfinite(loss):
                return total, r, r
            lr = lrs[r]
            if not FTRL and l2 != 0.0:  # FTRL applies its penalty itself
                for j in range(d):
                    g[j] += l2 * nw[j]
                for p in range(d, stride):
                    g[p] += l2 * nw[p]
            clip_by_global_norm(g[:n_par], hyper)
            probe = lr * 0.0  # the rule on the scratch (AdaGrad and SGD: plain loops over it)
            keep_zeros = False
            if FTRL:  # one straight loop over the scratch: LLVM steps a vector of coordinates at a time
                keep_zeros = zero_step_is_identity(OPT, lr, previous_lr, hyper)
                previous_lr = lr
                whole = (n_par + LANES - 1) & -LANES
                if whole <= nw.shape[0]:  # the scratch padded to whole vectors: no scalar remainder
                    for i in range(n_par, whole):
                        nw[i] = 0.0
                        g[i] = 0.0
                        ns[0, i] = 0.0
                        ns[1, i] = 0.0
                    probe = ftrl_scratch(nw, g, ns, whole, d, stride, keep_zeros, lr, beta, l1, l2)
                else:
                    probe = ftrl_scratch(nw, g, ns, n_par, d, stride, keep_zeros, lr, beta, l1, l2)
            elif ADAGRAD:
                sum_squares = ns[0]
                for i in range(n_par):
                    gi = g[i]
                    total_squares = sum_squares[i] + gi * gi
                    sum_squares[i] = total_squares
                    nw[i] = nw[i] - lr * gi / (math.sqrt(total_squares) + rule_eps)
                for i in range(n_par):
                    probe += (g[i] + sum_squares[i] + nw[i]) * 0.0
            else:
                for i in range(n_par):
                    nw[i] = nw[i] - lr * g[i]
                for i in range(n_par):
                    probe += nw[i] * 0.0
            if probe != 0.0:
                return total, r, r  # nothing was written
            if not FTRL:  # the L1 step: pieces' own, on the scratch (its L1 record copied in above)
                l1_prox(nw[:n_par], stride, lr, hyper, ns)
            if lazy_row >= 0:
                factor = (1.0 - lr * l2) * (1.0 - lr * 0.0)
                if not factor > 0.0:  # a step that would flip the coefficients' signs: a divergence
                    return total, r, r
                ledger += math.log(factor)
            for j in range(d):  # the dense coordinates, contiguous
                if keep_zeros and g[j] == 0.0:  # FTRL's coordinates left as they were
                    continue
                params[j] = nw[j]
                for s in range(RULE_ROWS):
                    opt_state[s, j] = ns[s, j]
                if cumulative:
                    opt_state[l1_row, j] = ns[l1_row, j]
            for p in range(m):  # the slots (an unsigned index: no negative-index wrap-around to compute)
                c = np.uint64(d + touched[p])
                i = d + p
                params[c] = nw[i]
                for s in range(RULE_ROWS):
                    opt_state[s, c] = ns[s, i]
                if cumulative:
                    opt_state[l1_row, c] = ns[l1_row, i]
                if lazy_row >= 0:  # the slots' stamps
                    opt_state[lazy_row, c] = ledger
            params[D] = nw[stride]  # the intercept
            for s in range(RULE_ROWS):
                opt_state[s, D] = ns[s, stride]
            if cumulative:  # and the penalty so far, kept in the intercept's entry
                opt_state[l1_row, D] = ns[l1_row, stride]
            if lazy_row >= 0:  # and the ledger
                opt_state[lazy_row, D] = ledger
            total += loss
        return total, n, -1

    return fused_row_loop


LANES = 8  # FTRL's rule loop: two vectors of 4 doubles a step (AVX2; LLVM's choice on this machine's AVX-512 too)


@inlined
def ftrl_scratch(nw, g, ns, count, d, stride, keep_zeros, lr, beta, l1, l2):
    """FTRL-Proximal on the first ``count`` coordinates of the fused loop's scratch (``nw`` weights, ``g``
    gradients, ``ns[0]`` z, ``ns[1]`` n; dense coordinates, slots, the intercept at ``stride``, then zeros that
    pad it to whole vectors and stay 0), in place; returns the finite probe (0.0, or NaN when a value is not
    finite). A straight loop from 0 on views, with no call and no branch that LLVM cannot make a select or a
    mask, so it steps a vector of coordinates at a time; IEEE square roots and divisions round the same in a
    vector's lanes as in scalar code. The unpenalised coordinates (the intercept, the padding) take a zero that
    LLVM cannot fold: with a constant 0.0 it turned the penalty's select into a masked add that the multiply
    before it no longer contracts into, and the lanes rounded apart from the general loop
    (``tests/test_sparse_batch1.py``, long rows). It is 0.0 because ``l1`` is finite (a run's alpha is checked)."""
    no_penalty = l1 * 0.0
    rule_w, rule_g, rule_z, rule_n = nw[:count], g[:count], ns[0, :count], ns[1, :count]
    probe = lr * 0.0
    for i in range(count):
        gi = rule_g[i]
        if keep_zeros and gi == 0.0 and i < d:  # the rule would give w, z and n back unchanged
            continue
        penalised = i < stride
        new = ftrl_coordinate(rule_w[i], gi, rule_z, rule_n, i, lr, beta, l1 if penalised else no_penalty,
                              l2 if penalised else no_penalty)
        probe += (gi + rule_z[i] + rule_n[i] + new) * 0.0
        rule_w[i] = new
    return probe


@inlined
def first_seen(indices, e0, e1, seen, stamp, touched, entry_pos):
    """``compact_positions``' numbering of a row whose slots are distinct (``touched``: the slots in order,
    ``entry_pos``: 0, 1, ...), in one pass that marks each slot's bucket of ``seen`` with the row's ``stamp``
    (negative, one per row); -1 when two entries share a bucket (the same slot, or a collision of two): then the
    row needs ``compact_positions``. No clearing: the next row has a stamp of its own."""
    mask = seen.shape[0] - 1
    for e in range(e0, e1):
        c = indices[e]
        h = (np.int64(c) * HASH_MULTIPLIER) & mask
        if seen[h] == stamp:
            return -1
        seen[h] = stamp
        touched[e - e0] = c
        entry_pos[e - e0] = e - e0
    return e1 - e0


@inlined
def zero_step_is_identity(opt_kind, lr, previous_lr, hyper):
    """Whether the rule gives a coordinate whose gradient is exactly 0 its weight and state back bit for bit in
    this row, so the fused loop may leave it (the L1 step still runs on it): SGD and AdaGrad subtract lr * 0 and
    add 0 to their state, when lr is finite (and AdaGrad's eps > 0: sqrt(0) + 0 would divide 0 by 0); FTRL keeps
    z and n, and its weight is the same function of them as after the previous row when the rate is that row's (a
    dense coordinate is stepped every row, so it was computed with that rate; a call's first row has none: NaN)."""
    if not (lr * 0.0 == 0.0 and lr != 0.0):
        return False
    if opt_kind == OPT_FTRL:
        return lr == previous_lr
    return opt_kind != OPT_ADAGRAD or hyper[H_EPS] > 0.0


def prefetch_item(array: Any, index: int) -> None:
    """Ask the CPU to bring ``array[index]``'s cache line in (LLVM's ``llvm.prefetch``, for a write, into every
    cache level); no bounds check, no effect on any value. Run as Python (``NUMBA_DISABLE_JIT=1``, the Python
    twins of the loops) it does nothing."""


@overload(prefetch_item)
def _prefetch_item_compiled(array, index):  # pragma: no cover - compiled
    def prefetch(array, index):
        _llvm_prefetch(array, index)

    return prefetch


@intrinsic
def _llvm_prefetch(typingctx, array, index):  # pragma: no cover - compiled
    """``prefetch_item``'s compiled body: the ``llvm.prefetch`` call on the item's address."""

    def codegen(context, builder, signature, args):
        array_type, index_type = signature.args
        array_struct = context.make_array(array_type)(context, builder, args[0])
        item = context.cast(builder, args[1], index_type, types.intp)
        pointer = cgutils.get_item_pointer(context, builder, array_type, array_struct, [item], wraparound=False)
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0")
        builder.call(prefetch, [builder.bitcast(pointer, byte_pointer), ir.Constant(i32, 1), ir.Constant(i32, 3),
                                ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen

