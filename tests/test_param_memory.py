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


def _per_coordinate_block(n: int, state_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(block, weights, state) as ``streamgd.optim.state.coordinate_block`` lays them out, filled at random."""
    block = np.random.default_rng(seed).standard_normal((n, 1 + state_rows))
    return block, block[:, 0], block[:, 1:].T


def _data_bytes(path) -> tuple[dict, bytes]:
    """A safetensors file's header (JSON) and its data bytes."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    import json

    return json.loads(raw[8:8 + length]), raw[8 + length:]


def test_a_strided_tensor_is_written_as_its_contiguous_copy_would_be(tmp_path, monkeypatch):
    """The writer streams strided views (a per-coordinate block's weights and state rows, whose one row is longer
    than a slice; a factor block's factors without their state) in slices: the file is byte for byte the one
    written from contiguous copies, and tensor for tensor safetensors' own writer's."""
    from safetensors.numpy import save_file

    monkeypatch.setattr(tensorfile, "SLICE_BYTES", 1 << 12)  # rows of 30,000 values are written in pieces
    _, weights, state = _per_coordinate_block(30_000, 2, seed=4)
    factors = np.random.default_rng(5).standard_normal((700, 3, 8))[:, :, :4]
    tensors = {"coef": weights.reshape(1, -1), "intercept": np.array([0.25]), "optimizer_state": state,
               "factors": factors, "empty": np.zeros((0, 3))}
    assert not weights.flags.c_contiguous and not state.flags.c_contiguous and not factors.flags.c_contiguous
    metadata = {"format": "streamgd.test", "streamgd": "{}"}
    tensorfile.save_safetensors(tensors, str(tmp_path / "strided"), metadata)
    copies = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    tensorfile.save_safetensors(copies, str(tmp_path / "contiguous"), metadata)
    assert (tmp_path / "strided").read_bytes() == (tmp_path / "contiguous").read_bytes()
    save_file(copies, str(tmp_path / "theirs"), metadata=metadata)
    assert _data_bytes(tmp_path / "strided") == _data_bytes(tmp_path / "theirs")  # their header orders keys anew


def test_writing_a_per_coordinate_block_copies_none_of_its_tensors(tmp_path):
    """A model file of a per-coordinate block's weights and state rows (what a batch-1 hashed fit hands its
    model): writing it allocates a slice (8 MB), not a copy of a state row (33.5 MB here; the old writer
    copied each row whole) nor of the coefficients; the file reads back to the same arrays."""
    n = 1 << 22
    _, weights, state = _per_coordinate_block(n, 2, seed=6)
    tensors = {"coef": weights[:-1].reshape(1, -1), "intercept": weights[-1:], "optimizer_state": state}
    path = tmp_path / "m.safetensors"
    peak = _traced_peak(lambda: tensorfile.write_tensor_file(path, tensors, "streamgd.test", 1, {}, "a test file"))
    assert peak < 1.2 * tensorfile.SLICE_BYTES, peak / 1e6
    _, read = tensorfile.read_tensor_file(path, "streamgd.test", 1, "a test file")
    np.testing.assert_array_equal(read["coef"][0], weights[:-1])
    np.testing.assert_array_equal(read["optimizer_state"], state)


@pytest.mark.parametrize("optimizer", ["sgd", "ftrl"])
def test_a_batch_1_hashed_fit_hands_its_weights_to_the_model(clicks, tmp_path, monkeypatch, optimizer):
    """A batch-1 hashed fit trains a per-coordinate block (weights and state side by side); the model takes the
    block's weights and state rows as they are, and saving writes them in slices: the traced peak of the fit and
    the save is the block and a few slices (the old code copied the weights into the model, +1/(1 + state rows),
    and each state row while saving). The model predicts as the file it wrote, and keeps the raw-input
    coefficients (the standardization folded into them) while a session continuing the fit starts from the
    weights as training left them."""
    from streamgd.training import model_of_run

    monkeypatch.setattr(tensorfile, "SLICE_BYTES", 1 << 16)  # a slice is small against the 2^20 weights
    options = {"optimizer": optimizer, "epochs": 1, "interactions": "none", "encoding": "hash", "alpha": 1e-3,
               "batch_size": 1}
    streamgd.fit(clicks, target="y", hash_bits=10, **options)  # the kernels compile outside the trace
    path = tmp_path / "m.safetensors"
    peak = _traced_peak(lambda: streamgd.fit(clicks, target="y", hash_bits=20, **options).save(path))
    again = load(path)
    params_and_state = again.params.nbytes + again.optimizer_state.nbytes
    assert params_and_state > 16e6
    assert peak < 1.1 * params_and_state, peak / params_and_state
    trainer = streamgd.Trainer(**options, hash_bits=14)
    model = trainer.fit(clicks, target="y")
    assert not model.params.flags.c_contiguous  # the block's weights
    table = pq.read_table(clicks)
    model.save(tmp_path / "small.safetensors")
    np.testing.assert_array_equal(model.predict_proba(table), load(tmp_path / "small.safetensors").predict_proba(
        table))
    assert model.params.flags.c_contiguous  # compacted once, for the kernels
    # the session's start: the dense coefficient and the intercept as training left them, not the model's raw ones
    restored = model_of_run.training_params(trainer.state)
    dense = model.n_dense
    standardizer = trainer.run.standardizer
    assert dense == 1 and standardizer is not None
    raw = restored[:dense] / standardizer.scale
    np.testing.assert_allclose(raw, model.coef_[0, :dense], rtol=1e-12)
    np.testing.assert_allclose(restored[-1] - raw @ standardizer.mean, model.intercept_, rtol=1e-12)
    assert restored[-1] != model.intercept_[0] and restored[0] != model.coef_[0, 0]  # not the folded values
    np.testing.assert_array_equal(restored[dense:-1], model.coef_[0, dense:])


def test_a_checkpoint_checksum_reads_strided_state_in_slices(monkeypatch):
    """The checkpoint's checksum of a per-coordinate block's views equals that of their contiguous copies (what
    it hashed before) and allocates one slice, not a copy of the state (16 MB here)."""
    from streamgd.training.checkpoint import checksum

    _, weights, state = _per_coordinate_block(1 << 20, 2, seed=7)
    meta = {"serial": 3}
    expected = checksum(meta, {"params": weights.copy(), "opt_state": state.copy()})
    digests = []
    peak = _traced_peak(lambda: digests.append(checksum(meta, {"params": weights, "opt_state": state})))
    assert digests == [expected]
    assert peak < 1.2 * tensorfile.SLICE_BYTES, peak / 1e6
