"""The interaction search's kernel (issue 29, the fixed start-up of a click-log fit): ``pair_gain`` skips the rows
of cells not in both folds and reads each exact cell's probability from its place, and still gives the plain
two-pass kernel's gain and squares bit for bit (the reference below, the search's kernel before it), so the search
crosses the same pairs, in the same order, with the same gains and z."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from streamgd.features import interaction_search as search
from streamgd.features.pair_gain_kernels import (
    PairModel,
    column_effects,
    new_scratch,
    pair_gain,
)


@njit
def reference_gain(a, b, size_b, buckets, y, effects_a, effects_b, base_margins, penalty):
    """The plain kernel: every row's cell summed in its fit fold, every row scored in the other, an ``exp`` a row
    in each pass, a work table of every cell."""
    n = y.shape[0]
    hashed = buckets > 0
    cells = buckets if hashed else (a.max() + 1) * size_b
    table = np.zeros((cells, 4))
    shift = np.uint64(64 - int(np.log2(buckets))) if hashed else np.uint64(0)
    for i in range(n):
        cell = a[i] * size_b + b[i]
        if hashed:
            cell = np.int64((np.uint64(cell) * np.uint64(0x9E3779B97F4A7C15)) >> shift)
        fold = i & 1
        p = 1.0 / (1.0 + np.exp(-(base_margins[fold] + effects_a[fold, a[i]] + effects_b[fold, b[i]])))
        table[cell, 2 * fold] += y[i] - p
        table[cell, 2 * fold + 1] += p * (1.0 - p)
    gain = 0.0
    squares = 0.0
    for i in range(n):
        cell = a[i] * size_b + b[i]
        if hashed:
            cell = np.int64((np.uint64(cell) * np.uint64(0x9E3779B97F4A7C15)) >> shift)
        fold = 1 - (i & 1)
        curvature = table[cell, 2 * fold + 1]
        if curvature == 0.0:
            continue
        delta = table[cell, 2 * fold] / (curvature + penalty[fold])
        p = 1.0 / (1.0 + np.exp(-(base_margins[fold] + effects_a[fold, a[i]] + effects_b[fold, b[i]])))
        term = delta * (y[i] - p) - 0.5 * delta * delta * p * (1.0 - p)
        gain += term
        squares += term * term
    return gain / n, squares / n


def newton_offsets(groups, n_groups, y, penalty):
    """One Newton step, from the base rate, of each group's logit offset under an L2 penalty (the search's NumPy
    form before ``column_effects``)."""
    base = y.mean()
    residual = np.bincount(groups, weights=y - base, minlength=n_groups)
    curvature = np.bincount(groups, minlength=n_groups) * (base * (1.0 - base))
    return residual / (curvature + penalty)


def _click_codes(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Four columns, three of them wide (a pair of them has more cells than small work tables) with a few frequent
    values and many rare ones, as click logs have; a pair effect planted on the frequent values of A and B."""
    rng = np.random.default_rng(seed)

    def wide(size: int) -> np.ndarray:
        return np.where(rng.random(n) < 0.9, rng.integers(0, 8, n), rng.integers(0, size, n))

    codes = {"A": wide(400), "B": wide(300), "C": rng.integers(0, 6, n), "D": wide(500)}
    margin = -1.0 + 0.3 * (codes["C"] - 2.5) + np.where((codes["A"] + codes["B"]) % 4 == 0, 1.2, -0.4)
    y = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(np.float64)
    return y, codes


def _kernel_inputs(y, a, b):
    folds = [np.arange(0, len(y), 2), np.arange(1, len(y), 2)]
    rates = np.array([y[rows].mean() for rows in folds])
    penalty = search.PRIOR_ROWS * rates * (1 - rates)
    size_a, size_b = int(a.max()) + 1, int(b.max()) + 1
    effects = [np.stack([newton_offsets(c[rows], size, y[rows], pen) for rows, pen in zip(folds, penalty)])
               for c, size in ((a, size_a), (b, size_b))]
    return size_a, size_b, effects, np.log(rates / (1 - rates)), penalty


# exact cells (a table of 400 x 300), or hashed into 2^17 buckets (few collisions) or 2^10 (every bucket shared)
@pytest.mark.parametrize("buckets", [0, 1 << 17, 1 << 10], ids=["exact", "hashed", "hashed-crowded"])
@pytest.mark.parametrize("pair", ["AB", "AC", "CD"])
def test_the_kernel_equals_the_plain_kernel_bit_for_bit(buckets, pair):
    y, codes = _click_codes(40_000, 7)
    a, b = codes[pair[0]], codes[pair[1]]
    size_a, size_b, (ea, eb), base, penalty = _kernel_inputs(y, a, b)
    expected = reference_gain(a, b, size_b, buckets, y, ea, eb, base, penalty)
    scratch = new_scratch(len(y), buckets or size_a * size_b)
    model = PairModel(y.astype(np.uint8), base, penalty)
    found = pair_gain(a, b, size_b, buckets, model, ea, eb, scratch)
    assert found == expected  # floats equal bit for bit, not approximately
    assert not scratch.marks.any() and not scratch.table.any()  # the work arrays are handed back zeroed
    assert pair_gain(a.astype(np.int32), b.astype(np.int32), size_b, buckets, model, ea, eb, scratch) == expected
    if pair == "AB":
        assert expected[0] > 0.01  # the planted pair gains
    if buckets == 1 << 10:  # hashed cells holding many exact cells: the probabilities computed a row
        cells = np.unique(a * size_b + b)
        assert len(cells) > buckets


def test_the_search_crosses_what_the_plain_kernel_crosses(monkeypatch):
    y, codes = _click_codes(30_000, 5)
    monkeypatch.setattr(search, "CELL_BUCKETS", 1 << 15)  # A:B, A:D, B:D are hashed
    found = search.pair_gains(y, codes)
    names = list(codes)
    expected = {}
    for i, x in enumerate(names):
        for z in names[i + 1:]:
            size_a, size_b, (ea, eb), base, penalty = _kernel_inputs(y, codes[x], codes[z])
            buckets = 1 << 15 if size_a * size_b > 1 << 15 else 0
            expected[x + ":" + z] = reference_gain(codes[x], codes[z], size_b, buckets, y, ea, eb, base, penalty)
    for pair in found:
        gain, squares = expected[pair.label]
        assert pair.gain == gain  # bit for bit
        error = np.sqrt(max(squares - gain * gain, 0.0) / len(y))
        assert pair.z == gain / error
    assert [pair.label for pair in found] == sorted(expected, key=lambda label: -expected[label][0])
    assert found[0].label == "A:B" and found[0].z > search.MIN_Z
    assert search.pair_gains(y, codes, threads=1) == found == search.pair_gains(y, codes, threads=3)


def test_the_search_scores_labels_zero_and_one_alone():
    y, codes = _click_codes(2_000, 1)
    with pytest.raises(ValueError, match="labels 0 and 1"):
        search.pair_gains(np.where(y > 0, 0.7, 0.0), codes)


def test_column_effects_are_the_numpy_newton_step_bit_for_bit():
    y, codes = _click_codes(30_001, 3)
    folds = [np.arange(0, len(y), 2), np.arange(1, len(y), 2)]
    means = np.array([y[rows].mean() for rows in folds])
    penalty = search.PRIOR_ROWS * means * (1 - means)
    for values in codes.values():
        size = int(values.max()) + 1
        effects, narrow = np.empty((2, size)), np.empty(len(y), dtype=np.int32)
        column_effects(values, y, means, penalty, effects, narrow)
        expected = np.stack([newton_offsets(values[rows], size, y[rows], pen) for rows, pen in zip(folds, penalty)])
        assert np.array_equal(effects, expected) and effects.tobytes() == expected.tobytes()
        assert np.array_equal(narrow, values)
