"""The epoch's first step delivered in two parts (issue 29, item 3: the pipeline's fill): they hold exactly the
rows, features, weights and targets of the whole step, in its order; a fit trained on them is bit for bit the fit
trained on whole steps, at batch 1 and in mini-batches; checkpoints count whole steps and a resume is exact."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamgd
from streamgd.data.dataset import open_dataset
from streamgd.data.reader import ChunkStream
from streamgd.data.shuffle import make_plan
from streamgd.data.warm_up_rows import sample_rows
from streamgd.features.spec import CategoricalInput, FeatureSpec, NumericInput
from streamgd.training import epoch as epoch_module
from streamgd.training.checkpoint import list_checkpoints, read_checkpoint
from streamgd.training.chunk_step import chunk_weights

GROUP_ROWS = 1000
GROUPS = 3
HEAD = 256


@pytest.fixture(scope="module")
def clicks(tmp_path_factory) -> str:
    """Three row groups of a small click log: a numeric column with nulls (the rows drop-rows leaves out), text
    columns (one with nulls), a weight and a label."""
    rng = np.random.default_rng(293)
    n = GROUP_ROWS * GROUPS
    numbers = rng.normal(size=n).astype(np.float32)
    many = np.array([f"v{k}" for k in range(400)])[rng.integers(0, 400, n)]
    few = np.array(["p", "q", "r", "s"])[rng.integers(0, 4, n)]
    margin = numbers + (np.char.str_len(many) % 3 - 1.0) + (few == "q") - 0.3
    label = (margin + rng.logistic(size=n) > 0).astype(np.float64)
    table = pa.table({
        "n": pa.array(numbers, mask=rng.random(n) < 0.1),
        "a": pa.array(many.tolist(), mask=rng.random(n) < 0.05),
        "b": pa.array(few.tolist()),
        "w": pa.array(rng.uniform(0.5, 2.0, n)),
        "y": pa.array(label),
    })
    path = str(tmp_path_factory.mktemp("slices") / "clicks.parquet")
    pq.write_table(table, path, row_group_size=GROUP_ROWS)
    return path


@pytest.fixture(scope="module")
def unlabelled(clicks, tmp_path_factory) -> str:
    """The click log with a few rows of every row group unlabelled."""
    table = pq.read_table(clicks)
    labels = table.column("y").to_numpy().copy()
    labels[::97] = np.nan
    path = str(tmp_path_factory.mktemp("unlabelled") / "clicks.parquet")
    pq.write_table(table.set_column(4, "y", pa.array(labels, mask=np.isnan(labels))), path, row_group_size=GROUP_ROWS)
    return path


def _spec(missing: str) -> FeatureSpec:
    impute = 0.0 if missing == "impute" else None
    return FeatureSpec([NumericInput("n", impute, missing == "impute")], [CategoricalInput("a"), CategoricalInput("b")],
                       "hash", 10, missing=missing, interactions=[("a", "b")])


def _chunks(path: str, missing: str, shuffle: str, depth: int, head_rows: int) -> list:
    data = open_dataset(path, target="y")
    plan = make_plan(data.units, shuffle, seed=7, epoch=1)
    job = SimpleNamespace(sample_weight="w", class_weights=None, dataset=data)
    out = []
    with ChunkStream(data, plan, dtype=np.float64, features=_spec(missing), extra_columns=["w"],
                     prefetch_depth=depth, head_rows=head_rows) as stream:
        for chunk in stream:
            n = chunk.n_rows
            order = np.arange(n) if chunk.row_order is None else chunk.row_order
            out.append(SimpleNamespace(
                X=chunk.X.copy(), y=chunk.y.copy(), order=order.copy(), weights=chunk_weights(job, chunk),
                slots=chunk.sparse.indices.copy(), values=chunk.sparse.values.copy(), n=n,
                ends_step=chunk.ends_step, rows_before=chunk.rows_before, left_out=chunk.rows_left_out,
                located=np.array([(unit.row_group, row) for unit, row in map(chunk.locate, range(n))]).reshape(n, 2),
                step=chunk.step))
    return out


KEYS = ("X", "y", "order", "weights", "slots", "values", "located")


def _assert_same_chunks(chunks, reference) -> None:
    assert len(chunks) == len(reference)
    for chunk, expected in zip(chunks, reference):
        for key in KEYS:
            np.testing.assert_array_equal(getattr(chunk, key), getattr(expected, key), err_msg=key)
        assert (chunk.ends_step, chunk.rows_before, chunk.left_out) == (True, 0, expected.left_out)


def _steps(chunks: list) -> list[list]:
    """The chunks grouped by step: a step's parts, the last of which ends it."""
    steps, parts = [], []
    for chunk in chunks:
        parts.append(chunk)
        if chunk.ends_step:
            steps.append(parts)
            parts = []
    assert not parts
    return steps


@pytest.mark.parametrize("shuffle", ["none", "buffer:2"])
@pytest.mark.parametrize("depth", [0, 2])
def test_the_first_and_last_steps_delivered_in_two_parts_hold_the_whole_steps_rows(clicks, shuffle, depth):
    whole = _chunks(clicks, "impute", shuffle, depth, 0)
    split = _steps(_chunks(clicks, "impute", shuffle, depth, HEAD))
    assert len(split) == len(whole) and len(split[0]) == len(split[-1]) == 2
    last = whole[-1].n - HEAD - (whole[-1].n - HEAD) % HEAD  # the tail: at least HEAD rows, the cut whole HEADs
    assert [p.n for p in split[0]] == [HEAD, whole[0].n - HEAD] and [p.n for p in split[-1]] == [last, whole[-1].n - last]
    for parts, reference in zip(split, whole):
        assert [(p.ends_step, p.rows_before) for p in parts] == [(False, 0), (True, parts[0].n)][-len(parts):] \
            if len(parts) == 2 else [(True, 0)]
        assert all(p.step is parts[0].step for p in parts) and parts[0].step == reference.step
        # features, targets, weights, the rows' order and where each came from: the whole step's, cut in two
        for key in KEYS:
            joined = np.concatenate([getattr(p, key) for p in parts])
            np.testing.assert_array_equal(joined, getattr(reference, key), err_msg=key)
        assert sum(p.left_out for p in parts) == reference.left_out == 0


@pytest.mark.parametrize("shuffle", ["none", "buffer:2"])
@pytest.mark.parametrize("depth", [0, 2])
def test_a_step_with_rows_left_out_goes_whole(clicks, unlabelled, shuffle, depth):
    """Rows left out (drop-rows and a missing feature, or a missing target) would leave parts that are no longer
    whole mini-batches: such a step goes whole."""
    for path, missing in ((clicks, "drop-rows"), (unlabelled, "impute")):
        whole = _chunks(path, missing, shuffle, depth, 0)
        assert whole[0].left_out > 0
        _assert_same_chunks(_chunks(path, missing, shuffle, depth, HEAD), whole)


def test_only_the_first_and_last_steps_are_split_and_only_when_they_are_longer(clicks):
    assert len(_chunks(clicks, "impute", "row-groups", 2, GROUP_ROWS)) == GROUPS  # a head of the whole step
    assert len(_chunks(clicks, "impute", "row-groups", 2, 501)) == GROUPS + 1  # no tail: 1000 < 2 x 501
    chunks = _chunks(clicks, "impute", "row-groups", 2, 100)
    assert [c.n for c in chunks] == [100, 900] + [GROUP_ROWS] * (GROUPS - 2) + [900, 100]


def test_a_stream_from_a_later_step_splits_only_the_last(clicks):
    """A resumed run's stream starts at a later step of the plan: its first step is not the plan's, and goes whole
    (the loss is then added up as the run it resumes did)."""
    data = open_dataset(clicks, target="y")
    plan = make_plan(data.units, "row-groups", seed=7, epoch=1)
    with ChunkStream(data, plan, features=_spec("impute"), start_step=1, head_rows=100) as stream:
        assert [c.n_rows for c in stream] == [GROUP_ROWS] * (GROUPS - 2) + [900, 100]


FIT = {"target": "y", "model": "logistic", "categorical": ["a", "b"], "hash_bits": 10, "missing": "impute",
       "interactions": [("a", "b")], "sample_weight": "w", "shuffle": "buffer:2", "seed": 4, "epochs": 2}


def _fit(path: str, monkeypatch, head, **options):
    with monkeypatch.context() as patch:
        patch.setattr(epoch_module, "head_rows", head)
        return streamgd.fit(path, **{**FIT, **options})


def _same_model(a, b) -> None:
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)


@pytest.mark.parametrize("options", [{"batch_size": 1, "optimizer": "ftrl"}, {"batch_size": 64, "optimizer": "adagrad"},
                                     {"batch_size": 64, "optimizer": "sgd", "missing": "drop-rows"}])
def test_a_fit_on_head_first_steps_is_bit_for_bit_the_fit_on_whole_steps(clicks, monkeypatch, options):
    whole = _fit(clicks, monkeypatch, lambda batch_size: 0, **options)
    split = _fit(clicks, monkeypatch, lambda batch_size: max(1, 300 // int(batch_size)) * int(batch_size),
                 **options)
    _same_model(split, whole)
    assert [e["rows"] for e in split.history] == [e["rows"] for e in whole.history]
    assert [e["steps"] for e in split.history] == [e["steps"] for e in whole.history]
    assert [e["rows_skipped"] for e in split.history] == [e["rows_skipped"] for e in whole.history]
    # the epoch's loss is summed in two parts for the first step: equal but for rounding
    np.testing.assert_allclose([e["loss"] for e in split.history], [e["loss"] for e in whole.history], rtol=1e-12)


def test_a_head_that_splits_a_mini_batch_gives_another_model(clicks, monkeypatch):
    """Why the head is whole mini-batches: 100 rows at batch 64 end the first chunk with a short batch of 36, and
    the comparison above sees that."""
    whole = _fit(clicks, monkeypatch, lambda batch_size: 0, batch_size=64, optimizer="adagrad")
    broken = _fit(clicks, monkeypatch, lambda batch_size: 100, batch_size=64, optimizer="adagrad")
    assert not np.array_equal(broken.coef_, whole.coef_)


def test_the_head_is_whole_mini_batches_and_none_for_full_batch():
    assert epoch_module.head_rows(1) == epoch_module.HEAD_ROWS
    assert epoch_module.head_rows(1000) == 1000 * (epoch_module.HEAD_ROWS // 1000)
    assert epoch_module.head_rows(64) % 64 == 0
    assert epoch_module.head_rows(100_000) == 100_000 and epoch_module.head_rows("full") == 0


def test_checkpoints_count_whole_steps_and_a_resume_mid_epoch_is_exact(clicks, monkeypatch, tmp_path):
    options = {"batch_size": 1, "optimizer": "ftrl", "epochs": 3}

    def head(batch_size):
        return 300

    uninterrupted = _fit(clicks, monkeypatch, head, **options)
    checkpoints = tmp_path / "ck"
    _fit(clicks, monkeypatch, head, checkpoint_dir=str(checkpoints), checkpoint_every=1, keep_checkpoints=100,
         **options)
    written = list_checkpoints(checkpoints)
    cursors = [read_checkpoint(path).cursor for path in written]
    # one after each step, none after a head part: each cursor's rows are its epoch's first steps' rows, whole
    data = open_dataset(clicks, target="y")
    steps = {e: [step.n_rows for step in make_plan(data.units, FIT["shuffle"], seed=FIT["seed"], epoch=e).steps]
             for e in range(3)}
    assert len(cursors) == sum(len(s) + 1 for s in steps.values())  # after each step, and at each epoch end
    for c in cursors:
        assert c["epoch_rows"] == sum(steps.get(c["epoch"], [])[:c["next_chunk"]])
        assert c["step"] == sum(sum(s) for e, s in steps.items() if e < c["epoch"]) + c["epoch_rows"]
    mid = next(i for i, c in enumerate(cursors) if c["epoch"] == 1 and c["next_chunk"] == 1)
    for later in written[mid + 1:]:  # as if the run had died in epoch 2, after its first step
        os.unlink(later)
    resumed = _fit(clicks, monkeypatch, head, checkpoint_dir=str(checkpoints), resume=True, **options)
    _same_model(resumed, uninterrupted)
    assert [e["loss"] for e in resumed.history] == [e["loss"] for e in uninterrupted.history]


def test_sample_rows_have_the_types_a_dictionary_reader_gives(clicks):
    data = open_dataset(clicks, target="y")
    table = sample_rows(data.schema, ["n", "a", "b"], {"n": True, "a": False}, {"a", "b"})
    assert table.num_rows == 2 and table.column("n").null_count == 1 and table.column("a").null_count == 0
    assert table.column("b").null_count == 1  # not in the footer's counts: a null, as the safe guess
    assert pa.types.is_dictionary(table.schema.field("a").type)
    assert table.schema.field("a").type.index_type == pa.int32() and table.schema.field("n").type == pa.float32()
    read = pq.ParquetFile(clicks, read_dictionary=["a", "b"]).read_row_group(0)
    assert read.schema.field("a").type == table.schema.field("a").type


@pytest.mark.parametrize("with_nulls", [True, False])
def test_sample_rows_are_the_zeros_and_nulls_pa_array_gives(with_nulls):
    """Built from buffers (no pandas import), the sample rows equal ``pa.array([zero, null or zero])`` for every
    type a feature column may have, a decimal of no integer digits included."""
    kinds = {"s": pa.string(), "ls": pa.large_string(), "b": pa.bool_(), "i8": pa.int8(), "u32": pa.uint32(),
             "h": pa.float16(), "f32": pa.float32(), "f": pa.float64(), "d": pa.decimal128(10, 2),
             "d0": pa.decimal128(2, 2), "d256": pa.decimal256(40, 5), "t": pa.timestamp("ms")}
    schema = pa.schema([pa.field(name, kind) for name, kind in kinds.items()])
    table = sample_rows(schema, list(kinds), {name: with_nulls for name in kinds}, {"s", "ls"})
    zeros = {"s": "0", "ls": "0", "b": False, "h": np.float16(0), "t": None}
    for name, kind in kinds.items():
        zero = zeros.get(name, 0)
        expected = pa.array([zero, None if with_nulls else zero], type=kind)
        if name in ("s", "ls"):
            expected = expected.dictionary_encode()
        assert table.column(name).chunk(0).equals(expected), name
