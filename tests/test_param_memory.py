"""What a run and a model hold beside their parameters and optimizer state (issue 28: peak RSS within the
parameters + state + a constant): traced allocations of predicting a factorization machine chunk by chunk, and of
a hashed model's fit, against the arrays' own sizes. scripts/bench_param_memory.py measures the processes' RSS."""

from __future__ import annotations

import tracemalloc
import weakref

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamgd
from streamgd.io import tensorfile
from streamgd.models.linear import LogisticRegression, load


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """Three text columns and a numeric one, 4,000 rows in row groups of 500."""
    rng = np.random.default_rng(3)
    n = 4000
    a, b, c = rng.integers(0, 50, n), rng.integers(0, 50, n), rng.integers(0, 50, n)
    margin = 0.8 * np.sin(a) * np.cos(b) + 0.5 * np.sin(c)
    y = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(np.int64)
    path = tmp_path_factory.mktemp("param_memory") / "c.parquet"
    pq.write_table(pa.table({"A": [f"a{v}" for v in a], "B": [f"b{v}" for v in b], "C": [f"c{v}" for v in c],
                             "x": rng.standard_normal(n), "y": y}), path, row_group_size=500)
    return str(path)


def _traced_peak(call) -> int:
    """The peak of traced allocations while ``call()`` runs, above what was allocated when it started."""
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start


FFM = {"factors": 4, "field_aware": True, "optimizer": "adagrad", "batch_size": 8, "epochs": 1, "seed": 2,
       "interactions": "none", "encoding": "hash"}


def test_predicting_an_ffm_chunk_by_chunk_does_not_copy_its_parameters(clicks, tmp_path):
    """The kernels read the model's linear vector and its factor block (factors and their state) where they
    are: a chunk's prediction or loss allocates a small part of the parameters (the old code assembled the linear
    part and the factors without their state into a new vector on every call: half the block each time)."""
    model = streamgd.fit(clicks, target="y", hash_bits=16, **FFM)
    model.save(tmp_path / "ffm.safetensors")
    model = load(tmp_path / "ffm.safetensors")
    held = model.params.nbytes + model.factor_block.nbytes
    assert model.factor_block.nbytes > 10e6  # 2^16 slots x 3 fields x k=4 x (1 + 1 AdaGrad row) x 8 B
    table = pq.read_table(clicks)
    chunks = [table.slice(start, 500) for start in range(0, table.num_rows, 500)]
    reference = model.predict_proba(table)  # compiles outside the trace
    y = np.asarray(table.column("y")).astype(np.float64)
    model.loss(chunks[0], y[:500])
    out = []
    peak = _traced_peak(lambda: out.extend(model.predict_proba(chunk) for chunk in chunks))
    assert peak < 0.2 * held, peak / held
    np.testing.assert_array_equal(np.vstack(out), reference)
    losses = []
    peak = _traced_peak(lambda: losses.extend(model.loss(chunk, y[i * 500:(i + 1) * 500])
                                              for i, chunk in enumerate(chunks)))
    assert peak < 0.2 * held, peak / held
    # the same loss as the kernels computed from the factors without their state (the old vector)
    k = model.factorization["k"]
    factors = model.factor_block.reshape(model.factor_block.shape[0], 3, -1)[:, :, :k]
    stateless = LogisticRegression(model.coef_, model.intercept_, None, feature_spec=model.feature_spec,
                                   factors=factors.reshape(factors.shape[0], -1),
                                   factorization=model.factorization)
    assert losses == [stateless.loss(chunk, y[i * 500:(i + 1) * 500]) for i, chunk in enumerate(chunks)]


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_a_hashed_fit_holds_its_parameters_and_state_and_one_copy_of_the_coefficients(clicks, optimizer):
    """The peak traced allocation of a hashed fit (2^18 slots; the L2 penalty keeps a row of decay stamps that
    the model settles) is the run's parameters and state, and the model's coefficient vector: the settled
    penalties are computed in the run's own arrays when training is over, the raw-input coefficients in the
    model's vector (the old code held copies of the parameters and state to settle, the raw coefficients and
    the model's concatenated vector at once: about 3.4x the parameters + state for SGD)."""
    options = {"optimizer": optimizer, "epochs": 1, "interactions": "none", "encoding": "hash", "alpha": 1e-3}
    streamgd.fit(clicks, target="y", hash_bits=10, **options)  # the kernels compile outside the trace
    models = []
    peak = _traced_peak(lambda: models.append(streamgd.fit(clicks, target="y", hash_bits=18, **options)))
    model = models[0]
    params_and_state = model.params.nbytes + model.optimizer_state.nbytes
    assert model.optimizer_state.shape[0] == (1 if optimizer == "sgd" else 2)  # (adagrad's sums and) the stamps
    assert params_and_state > 4e6
    assert peak < 1.15 * params_and_state + model.params.nbytes, peak / params_and_state
    # the penalties were settled: every slot's stamp is the ledger's, as a touch at the last step leaves it
    stamps = model.optimizer_state[-1]
    n_coef = model.coef_.size
    assert np.all(stamps[model.n_dense:n_coef] == stamps[n_coef])


def test_loading_a_model_reads_its_arrays_into_place(clicks, tmp_path, monkeypatch):
    """``load`` reads the coefficients into the model's flat vector and the factors and their state into one
    block, a slice at a time (64 KB here, so the slice is small against this model): the traced peak is the
    model's arrays (the old code held the file's coef, factors and factor state beside the model's
    concatenated copies: 2.0x)."""
    monkeypatch.setattr(tensorfile, "SLICE_BYTES", 1 << 16)  # coef's one row is read in pieces too
    model = streamgd.fit(clicks, target="y", hash_bits=16, **FFM)
    model.save(tmp_path / "ffm.safetensors")
    loaded = []
    peak = _traced_peak(lambda: loaded.append(load(tmp_path / "ffm.safetensors")))
    again = loaded[0]
    held = again.params.nbytes + again.factor_block.nbytes
    assert peak < 1.1 * held, peak / held
    np.testing.assert_array_equal(again.params, model.params)
    np.testing.assert_array_equal(again.factor_block, model.factor_block)
    np.testing.assert_array_equal(again.optimizer_state, model.optimizer_state)  # read when asked for


def test_the_search_samples_are_not_held_beside_the_parameters(clicks, monkeypatch):
    """An FM left to choose its interactions and factor columns reads both searches' samples in one pass (up to
    700k rows x each categorical column as int64); they are freed before the statistics pass and the parameters
    are allocated, not held until the set-up returns (they were: 153 MB on a 1M-row click log)."""
    from streamgd.training import run_setup

    refs: list[weakref.ref] = []
    real_read = run_setup.read_samples

    def reading(*args, **kwargs):
        samples = real_read(*args, **kwargs)
        refs.extend(weakref.ref(codes) for _, by_column in samples for codes in by_column.values())
        return samples

    alive: list[int] = []
    real_initial = run_setup.initial_state

    def allocating(*args, **kwargs):
        alive.append(sum(ref() is not None for ref in refs))
        return real_initial(*args, **kwargs)

    monkeypatch.setattr(run_setup, "read_samples", reading)
    monkeypatch.setattr(run_setup, "initial_state", allocating)
    streamgd.fit(clicks, target="y", factors=4, hash_bits=12, epochs=1, seed=2)
    assert len(refs) == 2 * 3 and alive == [0]  # two samples of the three text columns, none alive
