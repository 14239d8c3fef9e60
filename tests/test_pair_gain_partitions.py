"""The interaction search's partitioned kernel (issue 29, the fixed start-up of a click-log fit): a hashed pair
scored partition by partition gives ``_pair_gain``'s gain and squares bit for bit, so the search crosses the same
pairs, in the same order, with the same gains."""

from __future__ import annotations

import numpy as np
import pytest

from streamgd.features import interaction_search as search


def _click_codes(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Four columns, three of them wide (a pair of them has far more cells than the work table) but with a few
    frequent values, as click logs have; a pair effect planted on the frequent values of A and B."""
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
    effects = [np.stack([search._newton_offsets(c[rows], size, y[rows], pen) for rows, pen in zip(folds, penalty)])
               for c, size in ((a, size_a), (b, size_b))]
    return size_b, effects, np.log(rates / (1 - rates)), penalty


@pytest.mark.parametrize("cell_bits", [search.PARTITION_BITS, search.PARTITION_BITS + 2])
def test_the_partitioned_kernel_equals_the_direct_one_bit_for_bit(cell_bits):
    y, codes = _click_codes(40_000, cell_bits)
    a, b = codes["A"], codes["B"]
    size_b, (ea, eb), base, penalty = _kernel_inputs(y, a, b)
    cells = 1 << cell_bits  # 400 x 300 cells hashed into one partition, or into four
    none = np.empty((2, 0))
    table = np.zeros((cells, 4))
    expected = search._pair_gain(a, b, size_b, True, y, ea, eb, base, penalty, table, none)
    records, terms = np.empty((len(y), 6)), np.empty(len(y))
    found = search._partitioned_pair_gain(a, b, size_b, True, y, ea, eb, base, penalty, table, none, cells,
                                          records, terms)
    assert found == expected  # floats equal bit for bit, not approximately
    assert expected[0] > 0  # the planted pair gains
    assert not table.any()  # the work table is handed back zeroed
    again = search._partitioned_pair_gain(a, b, size_b, True, y, ea, eb, base, penalty, table, none, cells,
                                          records, terms)
    assert again == expected


def test_the_search_with_partitions_crosses_what_it_crossed_without(monkeypatch):
    y, codes = _click_codes(30_000, 5)
    monkeypatch.setattr(search, "CELL_BUCKETS", 1 << (search.PARTITION_BITS + 1))  # A:B, A:D, B:D are hashed
    partitioned = search.pair_gains(y, codes)
    monkeypatch.setattr(search, "PARTITION_BITS", 40)  # no pair large enough: every pair scored directly
    direct = search.pair_gains(y, codes)
    assert partitioned == direct  # the same gains, z and order, bit for bit
    assert partitioned[0].label == "A:B" and partitioned[0].z > search.MIN_Z
