"""Local-SGD rounds of a hashed model that ship only the touched coordinates (streamgd.distributed_rounds), on a
dask LocalCluster of two worker processes: the same model, bit for bit, as the rounds that ship the whole vectors,
and bytes per round that follow the slots the workers' rows hold, counted here from the data itself."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from streamgd.bench.synthetic_ctr import make_ctr_dataset
from streamgd.data.shuffle import make_plan
from streamgd.distributed import DaskEpochs, fit_distributed
from streamgd.distributed_rounds import Touched, apply_average, average_touched, forget_bases
from streamgd.training.config import TrainConfig
from streamgd.training.trainer import Trainer

CATEGORICAL = ["C1", "C2", "C3", "C4"]
HASH_BITS = 16
ROWS, ROW_GROUP = 16_000, 2000  # 8 row groups: 4 per worker, 2 per round, so both workers weigh 0.5
BASE = dict(model="logistic", batch_size=8, epochs=2, dtype="float64", categorical=CATEGORICAL, encoding="hash",
            hash_bits=HASH_BITS, interactions="none", shuffle="row-groups", seed=5)


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """A click log of 2 numeric and 4 text columns (20 to 3,000 values, 5% nulls)."""
    path = tmp_path_factory.mktemp("touched") / "clicks.parquet"
    make_ctr_dataset(path, n_rows=ROWS, row_group_size=ROW_GROUP, seed=4, n_numeric=2, n_categorical=4,
                     cardinalities=(20, 100, 500, 3000), null_fractions=0.05, numeric_null_fraction=0.0,
                     interactions=())
    return str(path)


@pytest.mark.parametrize("options", [
    pytest.param(dict(optimizer="ftrl"), id="ftrl"),
    pytest.param(dict(optimizer="adagrad", alpha=0.0, lr=0.1), id="adagrad"),
    pytest.param(dict(optimizer="sgd", alpha=0.0, lr=0.1), id="sgd"),
    # an L2 penalty: each worker settles the decay every slot owes before the average, so every nonzero
    # coefficient and every decay stamp changes in every round; still the same model
    pytest.param(dict(optimizer="sgd", alpha=1e-3, lr=0.1), id="sgd-l2"),
])
def test_touched_rounds_give_the_whole_vector_rounds_model_bit_for_bit(client, clicks, options):
    touched = fit_distributed(clicks, target="label", client=client, round_chunks=2, ship="touched", **BASE,
                              **options)
    whole = fit_distributed(clicks, target="label", client=client, round_chunks=2, ship="whole", **BASE, **options)
    assert np.count_nonzero(whole.coef_) > 1000  # the model learned thousands of slots
    np.testing.assert_array_equal(touched.coef_, whole.coef_)
    np.testing.assert_array_equal(touched.intercept_, whole.intercept_)
    assert [r["loss"] for r in touched.history] == [r["loss"] for r in whole.history]
    sent, got = (sum(r["bytes_to_client"] for r in m.history) for m in (touched, whole))
    if options.get("alpha", 1) == 0 or options["optimizer"] == "ftrl":
        assert sent < got / 5  # 2^16 slots, a few thousand touched per round


def _fnv1a(text: bytes, seed: int) -> int:
    h = seed
    for byte in text:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def _slots(table, mask: int) -> set[int]:
    """The hashed slots the rows of ``table`` hold, from the definition (FNV-1a of the value, seeded by the
    column's name; a null hashes as the seed ^ 0x9E3779B9), not from streamgd's code."""
    slots = set()
    for name in CATEGORICAL:
        seed = _fnv1a(name.encode() + b"=", 2166136261)
        for value in set(table.column(name).to_pylist()):
            h = (seed ^ 0x9E3779B9) if value is None else _fnv1a(value.encode(), seed)
            slots.add(h & mask)
    return slots


def test_bytes_per_round_follow_the_slots_the_workers_rows_hold(client, clicks):
    cfg = TrainConfig(optimizer="ftrl", alpha=0.0, **BASE).validate()
    runner = DaskEpochs(client, round_chunks=2, ship="touched")
    trainer = Trainer(cfg, runner=runner)
    model = trainer.fit(clicks, target="label")
    runner.close()
    file = pq.ParquetFile(clicks)
    run = trainer.run
    n_dense, state_rows = 2, int(run.optimizer.state_rows)
    n_params = 2 + 2**HASH_BITS + 1
    per_column = 4 + 8 + 4 + 8 * state_rows  # a parameter's index and value, a state column's index and values
    assert [(r["epoch"], r["first_chunk"]) for r in runner.round_log] == [(1, 0), (1, 2), (2, 0), (2, 2)]
    previous_union = None
    for record in runner.round_log:
        per_worker = []
        for shard in range(2):
            plan = make_plan(run.train.units, cfg.shuffle, seed=cfg.seed, epoch=record["epoch"] - 1, shard=shard,
                             n_shards=2)
            units = [u for step in plan.steps[record["first_chunk"]:record["first_chunk"] + 2] for u in step.units]
            rows = [file.read_row_group(u.row_group, columns=CATEGORICAL).slice(u.offset, u.n_rows) for u in units]
            per_worker.append(set().union(*(_slots(t, 2**HASH_BITS - 1) for t in rows)))
        union = set().union(*per_worker)
        assert 1000 < len(union) < 2**HASH_BITS / 4
        # every slot of a row, the two numeric features and the intercept; nothing else
        assert record["touched"] == record["touched_state_columns"] == len(union) + n_dense + 1
        assert record["bytes_to_client"] == sum(len(s) + n_dense + 1 for s in per_worker) * per_column
        if previous_union is None:  # the first round sends both workers the whole vectors
            assert record["bytes_to_workers"] == 2 * 8 * n_params * (1 + state_rows)
            assert record["whole_sends"] == 2
        else:  # then what the last average changed, to each worker
            assert record["bytes_to_workers"] == 2 * (previous_union + n_dense + 1) * per_column
            assert record["whole_sends"] == 0
        previous_union = len(union)
    assert model.history[-1]["bytes_to_client"] == sum(r["bytes_to_client"] for r in runner.round_log[2:])


def test_an_average_of_touched_coordinates_is_the_whole_vector_average_where_any_worker_changed_one():
    """Unequal weights: on the union the same bits as ``sum(w * v)`` of the whole vectors; elsewhere the base,
    where the whole-vector sum rounds ``w0 * b + w1 * b`` to ``b`` or its neighbour."""
    rng = np.random.default_rng(3)
    base_p, base_s = rng.standard_normal(1000), rng.standard_normal((2, 1000))
    weights = np.array([0.3, 0.7])
    wholes, parts = [], []
    for k in range(2):
        index = np.sort(rng.choice(1000, 60, replace=False)).astype(np.int32)
        p, s = base_p.copy(), base_s.copy()
        p[index] += rng.standard_normal(60)
        s[:, index] += rng.standard_normal((2, 60))
        wholes.append((p, s))
        parts.append(Touched(index, p[index], index, s[:, index]))
    params, opt_state = base_p.copy(), base_s.copy()
    union_p, averaged_p, union_s, averaged_s = average_touched(base_p, base_s, parts, weights)
    apply_average(params, opt_state, union_p, averaged_p, union_s, averaged_s)
    whole_p = np.sum([w * p for w, (p, _) in zip(weights, wholes)], axis=0)
    whole_s = np.sum([w * s for w, (_, s) in zip(weights, wholes)], axis=0)
    np.testing.assert_array_equal(union_p, np.union1d(parts[0].param_index, parts[1].param_index))
    np.testing.assert_array_equal(params[union_p], whole_p[union_p])
    np.testing.assert_array_equal(opt_state[:, union_s], whole_s[:, union_s])
    rest = np.setdiff1d(np.arange(1000), union_p)
    np.testing.assert_array_equal(params[rest], base_p[rest])
    assert (whole_p[rest] != base_p[rest]).any()  # the whole-vector sum moved some untouched coordinates ...
    np.testing.assert_array_less(np.abs(whole_p[rest] - base_p[rest]), 2 * np.spacing(np.abs(base_p[rest])) + 1e-300)


def test_a_worker_that_lost_its_kept_state_or_died_is_sent_the_whole_vectors_and_the_model_is_the_same(
        client, clicks, tmp_path):
    options = dict(BASE, optimizer="adagrad", alpha=0.0, lr=0.1)
    whole = fit_distributed(clicks, target="label", client=client, round_chunks=2, ship="whole", **options)
    cfg = TrainConfig(**options).validate()
    runner = DaskEpochs(client, round_chunks=2, ship="touched")

    def forget_after_the_first_round(progress):
        if len(runner.round_log) == 1 and progress.record is None:
            client.run(forget_bases)  # as a worker process replaced between rounds would

    marker = str(tmp_path / "crashed")
    client.run(exec, f"import os; os.environ['STREAMGD_TEST_CRASH_ONCE'] = {marker!r}")  # the first task dies
    try:
        touched = Trainer(cfg, runner=runner, on_chunk=forget_after_the_first_round).fit(clicks, target="label")
    finally:
        client.run(exec, "import os; os.environ.pop('STREAMGD_TEST_CRASH_ONCE', None)")
    runner.close()
    assert os.path.exists(marker)  # a worker did die
    assert [r["whole_sends"] for r in runner.round_log] == [2, 2, 0, 0]  # the second round found nothing kept
    np.testing.assert_array_equal(touched.coef_, whole.coef_)
    np.testing.assert_array_equal(touched.intercept_, whole.intercept_)
