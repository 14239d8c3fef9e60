"""Factorization machines wherever a linear model works (issue 28, item 4): ``inspect MODEL`` shows the factors'
norm per column, ``--clip-norm`` clips the factor gradient as the linear one (a NumPy transcription of one step),
the epoch cache changes nothing (a second cached run is the first bit for bit, and both the uncached run), and
dask: full batch refused with one line, a local-SGD round the row-weighted average of the two shards' rounds
computed in this process."""

from __future__ import annotations

import fm_reference as ref
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

import streamgd
from streamgd.cli.inspect_model import model_report
from streamgd.cli.main import main as cli
from streamgd.data.dataset import open_dataset
from streamgd.distributed import _round_task, fit_distributed
from streamgd.kernels import api as K
from streamgd.kernels.arguments import SparseArrays
from streamgd.models.linear import load
from streamgd.training.config import TrainConfig
from streamgd.training.trainer import Trainer


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """Two one-hot columns whose values interact through planted rank-2 vectors, one column without any (C)."""
    rng = np.random.default_rng(5)
    n = 4000
    a, b, c = rng.integers(0, 8, n), rng.integers(0, 8, n), rng.integers(0, 8, n)
    ua, ub = rng.standard_normal((8, 2)), rng.standard_normal((8, 2))
    y = (rng.random(n) < 1 / (1 + np.exp(-2.0 * (ua[a] * ub[b]).sum(axis=1)))).astype(np.int64)
    path = tmp_path_factory.mktemp("everywhere") / "c.parquet"
    pq.write_table(pa.table({"A": [f"a{v}" for v in a], "B": [f"b{v}" for v in b], "C": [f"c{v}" for v in c],
                             "y": y}), path, row_group_size=500)
    return str(path)


FM = {"factors": 4, "optimizer": "adagrad", "batch_size": 16, "epochs": 2, "seed": 3, "encoding": "onehot",
      "interactions": "none", "factor_fields": "all"}  # the three columns as the fields, no searched cross


@pytest.mark.parametrize("field_aware", [False, True], ids=["fm", "ffm"])
def test_inspect_shows_each_columns_factor_norm(clicks, tmp_path, field_aware):
    model = streamgd.fit(clicks, target="y", field_aware=field_aware, **FM)
    model.save(tmp_path / "m.safetensors")
    report = model_report(load(tmp_path / "m.safetensors"))
    factors = report["factors"]
    assert factors["k"] == 4 and factors["fields"] == (3 if field_aware else 0)
    norms = {e["column"]: e["norm"] for e in factors["columns"]}
    V = model.factors_.reshape(model.factors_.shape[0], -1)
    starts = model.spec.onehot_starts()
    for i, column in enumerate(["A", "B", "C"]):
        assert norms[column] == pytest.approx(np.linalg.norm(V[starts[i]:starts[i + 1]]), rel=1e-12)
    done = CliRunner().invoke(cli, ["inspect", str(tmp_path / "m.safetensors")])
    assert done.exit_code == 0, done.output
    assert f"factors:    {'ffm' if field_aware else 'fm'}, k 4" in done.output
    assert "factor norm per source column (largest first):" in done.output
    line = next(row for row in done.output.splitlines() if row.strip().startswith("A ") and "one-hot" in row
                and f"{norms['A']:.5g}" in row)
    assert line


def test_a_linear_models_report_has_no_factors(clicks):
    model = streamgd.fit(clicks, target="y", **{k: v for k, v in FM.items() if k != "factors"})
    assert model_report(model)["factors"] is None


@pytest.mark.parametrize("field_aware", [False, True], ids=["fm", "ffm"])
def test_clip_norm_clips_the_factor_gradient_as_the_linear_one(field_aware):
    """One SGD step of a batch that names every slot: each parameter group's mean gradient (with its penalty) is
    scaled down to the clip norm, then stepped (a NumPy transcription)."""
    rng = np.random.default_rng(2)
    n, slots, k, lr, clip, l2 = 8, 4, 3, 0.1, 0.05, 0.01
    X = sp.csr_matrix(rng.uniform(0.5, 1.5, (n, slots)))
    y = (rng.random(n) < 0.5).astype(np.float64)
    slot_fields = np.array([0, 0, 1, 1], dtype=np.int32)
    fields = 2 if field_aware else 0
    V = rng.standard_normal((slots, fields, k) if field_aware else (slots, k)) * 0.5
    w = rng.standard_normal(slots) * 0.3
    params = np.concatenate([w, [0.2], V.ravel()])
    hyper = np.zeros(K.N_HYPER)
    hyper[K.H_FACTORS], hyper[K.H_FIELDS], hyper[K.H_FACTOR_L2], hyper[K.H_CLIP_NORM] = k, fields, l2, clip
    block = SparseArrays(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data, slots)
    _, done, status = K.train_chunk(np.empty((n, 0)), y, np.empty(0), params, np.zeros((0, slots + 1)), hyper,
                                    np.full(1, lr), n, 1, K.LOSS_LOG, K.OPT_SGD, 0, sparse=block,
                                    slot_fields=slot_fields if field_aware else None)
    assert (done, status) == (n, 0)
    if field_aware:
        entry_fields = ref.entry_fields(X, slot_fields)
        margins = ref.ffm_margins(X, entry_fields, 0.2, w, V)
        g0, gw, gV = ref.ffm_batch_gradient(X, entry_fields, ref.logistic_multipliers(margins, y), 0.2, w, V)
    else:
        margins = ref.fm_margins(X, 0.2, w, V)
        g0, gw, gV = ref.fm_batch_gradient(X, ref.logistic_multipliers(margins, y), 0.2, w, V)
    linear = np.concatenate([gw, [g0]]) / n
    factor = gV / n + l2 * V
    assert np.linalg.norm(linear) > clip and np.linalg.norm(factor) > clip  # both groups are clipped
    expected_linear = np.concatenate([w, [0.2]]) - lr * linear * clip / np.linalg.norm(linear)
    expected_V = V - lr * factor * clip / np.linalg.norm(factor)
    np.testing.assert_allclose(params[:slots + 1], expected_linear, rtol=1e-12)
    np.testing.assert_allclose(params[slots + 1:].reshape(V.shape), expected_V, rtol=1e-12)


@pytest.mark.parametrize("field_aware", [False, True], ids=["fm", "ffm"])
def test_the_epoch_cache_changes_nothing(clicks, tmp_path, field_aware):
    options = dict(FM, field_aware=field_aware, epochs=3)
    uncached = streamgd.fit(clicks, target="y", **options)
    first = streamgd.fit(clicks, target="y", cache=str(tmp_path / "cache"), **options)
    second = streamgd.fit(clicks, target="y", cache=str(tmp_path / "cache"), **options)
    assert sum(e["cache"]["written"] for e in first.history) > 0 and first.history[1]["cache"]["hits"] > 0
    assert all(e["cache"]["hits"] > 0 for e in second.history)  # the second run reads every epoch from it
    assert sum(e["cache"]["written"] for e in second.history) == 0
    for model in (first, second):
        assert np.array_equal(model.coef_, uncached.coef_) and np.array_equal(model.intercept_, uncached.intercept_)
        assert np.array_equal(model.factor_block, uncached.factor_block)


def test_full_batch_on_dask_is_refused_with_one_line(clicks):
    done = CliRunner().invoke(cli, ["fit", clicks, "--target", "y", "--quiet", "--workers", "2", "--factors", "4",
                                    "--batch-size", "full"])
    assert done.exit_code == 2 and "mini-batches" in done.output and done.output.count("\n") == 1, done.output


@pytest.mark.parametrize("field_aware", [False, True], ids=["fm", "ffm"])
def test_a_local_sgd_round_on_two_workers_is_the_average_of_the_shards_rounds(client, clicks, field_aware):
    options = dict(FM, field_aware=field_aware, epochs=1, penalty="none", features=["A", "B", "C"])
    on_dask = fit_distributed(clicks, target="y", client=client, round_chunks=100, **options)  # one round
    assert on_dask.summary["workers"] == 2 and on_dask.history[0]["rounds"] == 1
    cfg = TrainConfig(model="logistic", **{k: v for k, v in options.items() if k != "features"}).validate()
    trainer = Trainer(cfg)
    run, state = trainer.prepare(open_dataset(clicks, target="y", features=["A", "B", "C"]))
    lrs = np.ascontiguousarray(run.schedule(np.arange(trainer.steps_per_epoch(run.train) + 8)), dtype=np.float64)
    parts = [_round_task(trainer.job, shard, 2, cfg.shuffle, cfg.seed, 0, 0, 100, state.params, state.opt_state, 0,
                         lrs)[0] for shard in range(2)]
    weights = np.array([part.epoch_rows for part in parts], dtype=np.float64)
    weights /= weights.sum()
    params = np.sum([w * part.params for w, part in zip(weights, parts)], axis=0)
    n_lin = K.n_params(len(run.feature_names))
    assert not np.array_equal(parts[0].params[n_lin:], parts[1].params[n_lin:])  # the shards did differ
    np.testing.assert_array_equal(on_dask.factor_block.ravel(), params[n_lin:])
    np.testing.assert_array_equal(on_dask.coef_.ravel(), params[:n_lin - 1])
    np.testing.assert_array_equal(on_dask.intercept_, params[n_lin - 1:n_lin])
