"""The compiled kernel of the interaction search: one pair's held-out gain (``interaction_search`` module docstring,
steps 2-3), from the two columns' value numbers and main effects.

Most of a pair's rows cannot gain: a row held out of fold ``f`` gains only where its cell has rows of fold ``f``
to fit on, and a cell's fit sums in fold ``f`` are read only by its rows of the other fold. So a first pass notes
which folds each cell has rows in, and only the cells with rows in both get a place in a small table (place 0
takes the rest, its sums never read). The additive model's probability of a row depends on its exact cell alone,
so a place keeps its exact cell's probability in each fold (a hashed cell: its first row's exact cell; the few
rows of another exact cell in the same bucket get theirs in a list of their own), and each row reads it there:
an ``exp`` per place, not two per row. Within a place, a row's held-out term depends on its fold and label alone,
so it is computed once per place, fold and label. The passes over the rows compute no ``exp`` (a loop that may
call one ran markedly slower even where it never did). Every sum adds the same numbers in the same order as the
plain two-pass kernel (a cell's rows in row order, the held-out terms in row order; a row that cannot gain adds
+0.0, which leaves a sum from +0.0 as it was), so the gains are the same bit for bit:
``tests/test_interaction_search_kernel.py`` compares them with that kernel, and ``scripts/bench_search.py`` times
them against another source tree's.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels.jit import njit

GOLDEN = 0x9E3779B97F4A7C15  # the multiply-shift hash of a pair's exact cell number into its buckets


class PairScratch(NamedTuple):
    """One thread's work arrays for ``pair_gain`` (``new_scratch``), handed back as they were given."""

    folds: np.ndarray  # uint8 per cell (at least the largest pair's cells), zeroed: the folds it has rows in (bits)
    marks: np.ndarray  # int32 per cell, zeroed: its place in ``table`` if it has rows in both folds
    places: np.ndarray  # int32 per row: its cell, then its cell's place in ``table`` (0: a cell not in both folds)
    table: np.ndarray  # float64 (rows // 2 + 2, 6) zeroed: per place, residual and curvature per fold, p per fold
    exact: np.ndarray  # int64 per place: the exact cell whose probabilities the place keeps
    terms: np.ndarray  # float64 (places, 4) zeroed: per place, the held-out term of a row per fold and label
    others: np.ndarray  # int32 per row + 1: the rows of a second exact cell in a hashed cell, in row order
    other_p: np.ndarray  # float64 (rows + 1, 2): their probabilities in their fit fold and their held-out fold


COLLIDED = 1 << 30  # in ``places``: the row's exact cell is not its place's (a hashed cell holding two)


def new_scratch(rows: int, cells: int) -> PairScratch:
    """Work arrays for pairs of at most ``cells`` cells (or hash buckets) on ``rows`` rows. A cell in both folds
    has at least two rows, so ``rows // 2`` places are enough, after place 0 (every other cell's)."""
    if rows >= 1 << 29:
        raise ValueError(f"the interaction search takes a sample of fewer than 2^29 rows, not {rows:,}")
    places = rows // 2 + 2
    return PairScratch(np.zeros(cells, dtype=np.uint8), np.zeros(cells, dtype=np.int32),
                       np.empty(rows, dtype=np.int32), np.zeros((places, 6)), np.empty(places, dtype=np.int64),
                       np.zeros((places, 4)), np.empty(rows + 1, dtype=np.int32), np.zeros((rows + 1, 2)))


class PairModel(NamedTuple):
    """The additive model a pair's cells are scored against, and the sample's labels."""

    y: np.ndarray  # uint8 per row, its label 0 or 1; row i fits fold i % 2
    base_margins: np.ndarray  # float64 (2,): each fold's base-rate logit
    penalty: np.ndarray  # float64 (2,): each fold's L2 penalty of a cell's offset


@njit(nogil=True, inline="always")
def probability(model, effects_a, effects_b, fold, va, vb):  # pragma: no cover - compiled
    """The additive model's probability of a row of values (va, vb) in ``fold``: one expression, so one set of bits
    wherever it is evaluated."""
    return 1.0 / (1.0 + np.exp(-(model.base_margins[fold] + effects_a[fold, va] + effects_b[fold, vb])))


@njit(nogil=True)
def pair_gain(a, b, size_b, buckets, model, effects_a, effects_b, scratch):  # pragma: no cover - compiled
    """(held-out gain, mean of its squared terms) of crossing columns ``a`` and ``b`` (value numbers), both folds
    at once: row i fits fold i % 2 and is held out of the other. ``buckets``: 0 for exact cells
    (``a * size_b + b``), else the power of two they are hashed into. A first pass sums each cell's residual and
    curvature at the additive model per fold; a second scores each row with the other fold's Newton offset of its
    cell, to second order: ``delta (y - p) - delta^2 p (1 - p) / 2`` (the module docstring says how).
    ``scratch``: ``new_scratch``'s arrays."""
    y = model.y
    folds, marks, places, table, exact = scratch.folds, scratch.marks, scratch.places, scratch.table, scratch.exact
    terms = scratch.terms
    others, other_p = scratch.others, scratch.other_p
    n = y.shape[0]
    hashed = buckets > 0
    shift = np.uint64(64 - int(np.log2(buckets))) if hashed else np.uint64(0)
    n_cells = buckets if hashed else 0
    for i in range(n):  # each row's cell, and the folds each cell has rows in
        cell = np.int64(a[i]) * size_b + b[i]
        if hashed:
            cell = np.int64((np.uint64(cell) * np.uint64(GOLDEN)) >> shift)
        else:
            n_cells = max(n_cells, cell + 1)
        places[i] = cell
        folds[cell] |= 1 + (i & 1)
    used = 1  # place 0 sums the rows of every cell not in both folds, and is never read
    for cell in range(n_cells):  # a place for each cell in both folds (an exact cell's probabilities at once)
        if folds[cell] == 3:
            marks[cell] = used
            exact[used] = -1 if hashed else cell
            if not hashed:
                table[used, 4] = probability(model, effects_a, effects_b, 0, cell // size_b, cell % size_b)
                table[used, 5] = probability(model, effects_a, effects_b, 1, cell // size_b, cell % size_b)
            used += 1
    folds[:n_cells] = 0
    n_others = 0
    if hashed:
        exact[0] = 0
        for i in range(n):  # each row's place (a loop of its own: quicker than within the next)
            places[i] = marks[places[i]]
        for i in range(n):  # each place's exact cell is its first row's; the rows of another exact cell, listed
            place = places[i]
            code = np.int64(a[i]) * size_b + b[i]
            first = exact[place]
            first = code if first < 0 else first
            exact[place] = first
            other = (place != 0) & (code != first)
            places[i] = place | (COLLIDED if other else 0)
            others[n_others] = i
            n_others += np.int64(other)
        for place in range(1, used):  # each place's exact cell's probabilities
            va = exact[place] // size_b
            table[place, 4] = probability(model, effects_a, effects_b, 0, va, exact[place] - va * size_b)
            table[place, 5] = probability(model, effects_a, effects_b, 1, va, exact[place] - va * size_b)
        for k in range(n_others):  # and those of the rows listed, in their fit fold and their held-out fold
            i = others[k]
            other_p[k, 0] = probability(model, effects_a, effects_b, i & 1, a[i], b[i])
            other_p[k, 1] = probability(model, effects_a, effects_b, 1 - (i & 1), a[i], b[i])
    else:
        for i in range(n):
            places[i] = marks[places[i]]
    k = 0
    for i in range(n):  # the fit sums, each row in its own fold, in row order within each cell
        place = places[i] & (COLLIDED - 1)
        other = places[i] != place
        fold = i & 1
        p = other_p[k, 0] if other else table[place, 4 + fold]
        k += np.int64(other)
        table[place, 2 * fold] += y[i] - p
        table[place, 2 * fold + 1] += p * (1.0 - p)
    for place in range(1, used):  # each place's held-out term, per fold and label (its rows differ in y alone)
        for fold in range(2):
            curvature = table[place, 2 * fold + 1]
            if curvature == 0.0:  # no fit in this fold: its rows gain nothing
                terms[place, 2 * fold] = terms[place, 2 * fold + 1] = 0.0
                continue
            delta = table[place, 2 * fold] / (curvature + model.penalty[fold])
            p = table[place, 4 + fold]
            for label in range(2):
                terms[place, 2 * fold + label] = delta * (label - p) - 0.5 * delta * delta * p * (1.0 - p)
    for k in range(n_others):  # the rows of a second exact cell in a hashed cell: their own
        i = others[k]
        place = places[i] & (COLLIDED - 1)
        fold = 1 - (i & 1)
        curvature = table[place, 2 * fold + 1]
        if curvature == 0.0:
            other_p[k, 0] = 0.0
            continue
        delta = table[place, 2 * fold] / (curvature + model.penalty[fold])
        p = other_p[k, 1]
        other_p[k, 0] = delta * (y[i] - p) - 0.5 * delta * delta * p * (1.0 - p)  # now its held-out term
    gain = 0.0
    squares = 0.0
    k = 0
    for i in range(n):  # each row held out of the other fold, in row order
        place = places[i] & (COLLIDED - 1)
        other = places[i] != place
        term = terms[place, 2 * (1 - (i & 1)) + y[i]]
        term = other_p[k, 0] if other else term
        k += np.int64(other)
        # a row of place 0 (its cell not in both folds) gains nothing: adding +0.0 leaves a sum's bits alone, as
        # leaving the row out would (a sum from +0.0 is never -0.0)
        gain += term
        squares += term * term
    marks[:n_cells] = 0
    table[:used] = 0.0
    return gain / n, squares / n


@njit(nogil=True)
def column_effects(codes, y, base, penalty, effects, narrow):  # pragma: no cover - compiled
    """One column's main effects per fold (``effects``: (2, values), row i in fold i % 2): one Newton step from
    the fold's base rate ``base[fold]`` under the L2 ``penalty[fold]``, the sums ``np.bincount`` adds, in its order
    (so its bits); and the column's value numbers copied into ``narrow`` (int32), in the same pass."""
    size = effects.shape[1]
    residual = np.zeros((2, size))
    counts = np.zeros((2, size), dtype=np.int64)
    for i in range(codes.shape[0]):
        fold = i & 1
        value = codes[i]
        residual[fold, value] += y[i] - base[fold]
        counts[fold, value] += 1
        narrow[i] = value
    for fold in range(2):
        scale = base[fold] * (1.0 - base[fold])
        for value in range(size):
            effects[fold, value] = residual[fold, value] / (counts[fold, value] * scale + penalty[fold])
