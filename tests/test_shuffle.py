"""Epoch plans: every row exactly once, determinism, disjoint complete shards, and measurable mixing."""

from __future__ import annotations

import numpy as np
import pytest

from streamgd.data.dataset import Unit
from streamgd.data.shuffle import MODES as SHUFFLE_MODES
from streamgd.data.shuffle import make_plan, shard_units, takes_unit_count


def units_of(sizes, slice_rows=None):
    units, position = [], 0
    for group, n in enumerate(sizes):
        step = slice_rows or n
        for offset in range(0, n, step):
            count = min(step, n - offset)
            units.append(Unit(0, group, offset, count, position))
            position += count
    return units


SIZES = [100, 37, 100, 64, 100, 1, 90]
# every registered mode; those written name:K with 1 and 3 units per step
MODES = [text for name in SHUFFLE_MODES for text in ([f"{name}:1", f"{name}:3"] if takes_unit_count(name) else [name])]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_shards", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_every_row_once_per_epoch_for_every_mode_shard_count_and_seed(mode, n_shards, seed):
    units = units_of(SIZES, slice_rows=30)
    rows = []
    for shard in range(n_shards):
        plan = make_plan(units, mode, seed=seed, epoch=2, shard=shard, n_shards=n_shards)
        rows.extend(np.concatenate([s.file_positions() for s in plan.steps]) if plan.steps else [])
    assert np.array_equal(np.sort(rows), np.arange(sum(SIZES)))


def test_plans_are_pure_functions_of_their_inputs():
    units = units_of(SIZES)
    a = make_plan(units, "buffer:2", seed=3, epoch=1)
    b = make_plan(units, "buffer:2", seed=3, epoch=1)
    assert a == b
    assert all(np.array_equal(x.file_positions(), y.file_positions()) for x, y in zip(a.steps, b.steps))
    orders = {tuple(np.concatenate([s.file_positions() for s in make_plan(units, "row-groups", seed=s, epoch=e).steps]))
              for s in (0, 1) for e in (0, 1)}
    assert len(orders) == 4


@pytest.mark.parametrize("n_shards", range(1, 9))
def test_shards_are_disjoint_and_complete(n_shards):
    units = units_of([50] * 20 + [7], slice_rows=20)
    shards = [shard_units(units, k, n_shards) for k in range(n_shards)]
    flat = [u for s in shards for u in s]
    assert sorted(flat, key=lambda u: u.first_row) == units
    assert len(set(flat)) == len(units)


def test_none_is_file_order_and_buffer_mixes_far_more_than_row_groups():
    units = units_of([1000] * 64)
    none = make_plan(units, "none").shuffle_quality()
    groups = make_plan(units, "row-groups", seed=1).shuffle_quality()
    buffered = make_plan(units, "buffer:8", seed=1).shuffle_quality()
    assert none.rank_correlation == 1.0 and none.local_mixing < 1e-3
    assert abs(groups.rank_correlation) < 0.35
    # consecutive rows of row-groups come from one unit: mean gap ~ unit/3 -> mixing ~ 1/64
    assert groups.local_mixing < 0.05
    # with K units mixed, consecutive rows come from different units with probability (K-1)/K
    assert abs(buffered.local_mixing - 7 / 8) < 0.08


def test_buffer_mixes_batches_of_data_sorted_by_target():
    units = units_of([1000] * 64)
    y = np.arange(64_000) / 64_000  # the target rises along the files
    batch = 256

    def batch_means(mode):
        order = np.concatenate([s.file_positions() for s in make_plan(units, mode, seed=4).steps])
        return y[order][: len(order) // batch * batch].reshape(-1, batch).mean(axis=1)

    # a buffer of 16 units holds 16 random units of the 64; a batch of 256 rows draws from all 16. The mean of
    # 16 uniform unit positions has standard deviation 0.29/4 = 0.072: |mean - 0.5| < 0.35 leaves > 4 sigma.
    assert np.abs(batch_means("buffer:16") - 0.5).max() < 0.35
    plain = batch_means("none")
    assert plain.min() < 0.01 and plain.max() > 0.99
