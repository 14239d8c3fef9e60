"""Model files (safetensors + JSON, atomic, no pickle) and streamed prediction."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamgd
from streamgd import ModelFileError
from streamgd.models.linear import FORMAT_VERSION, LinearRegression, LogisticRegression, load
from streamgd.models.predict import PredictionCounts, predict_to_parquet


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1000, 3))
    y = (X @ [1.0, -1.0, 2.0] + 0.2 * rng.standard_normal(1000) > 0).astype(np.int64)
    path = tmp_path_factory.mktemp("m") / "d.parquet"
    pq.write_table(pa.table({"id": np.arange(1000), "a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}), path,
                   row_group_size=300)
    model = streamgd.fit(path, target="y", features=["a", "b", "c"], epochs=3, batch_size=32)
    return model, str(path), X


def test_save_load_round_trips_exactly(fitted, tmp_path):
    model = fitted[0]
    model.save(tmp_path / "m.safetensors")
    again = load(tmp_path / "m.safetensors")
    assert type(again) is LogisticRegression
    assert np.array_equal(again.coef_, model.coef_) and np.array_equal(again.intercept_, model.intercept_)
    assert again.feature_names == ["a", "b", "c"] and again.classes_ == [0, 1] and again.target == "y"
    assert again.history == json.loads(json.dumps(model.history))
    assert again.config["batch_size"] == 32
    assert np.array_equal(again.predict_proba(fitted[2]), model.predict_proba(fitted[2]))


def test_model_file_is_plain_safetensors_without_pickle(fitted, tmp_path):
    fitted[0].save(tmp_path / "m.safetensors")
    raw = (tmp_path / "m.safetensors").read_bytes()
    header_size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + header_size])
    assert set(header) >= {"coef", "intercept", "__metadata__"}
    assert header["__metadata__"]["format"] == "streamgd.model"
    assert b"pickle" not in raw and b"\x80\x04" not in raw[:8 + header_size]


def test_predict_over_a_dataset_equals_in_memory_predictions(fitted, tmp_path):
    model, path, X = fitted
    rows = predict_to_parquet(model, path, tmp_path / "p.parquet", keep=["id"])
    out = pq.read_table(tmp_path / "p.parquet")
    assert rows == PredictionCounts(rows=1000, unscored=0) and out.column_names == ["id", "prediction", "proba"]
    assert out.column("id").to_pylist() == list(range(1000))
    assert np.array_equal(out.column("prediction").to_numpy(), model.predict(X))
    np.testing.assert_allclose(out.column("proba").to_numpy(), model.predict_proba(X)[:, 1], rtol=1e-12)


def test_linear_predict_is_the_affine_function():
    model = LinearRegression(np.array([[2.0, -1.0]]), np.array([0.5]), ["a", "b"])
    assert model.predict(np.array([[1.0, 2.0], [0.0, 0.0]])).tolist() == [0.5, 0.5]


def test_loading_something_else_fails_clearly(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="not a streamgd model"):
        load(tmp_path / "junk.bin")
    with pytest.raises(ModelFileError, match="no such model file"):
        load(tmp_path / "missing.safetensors")
    from safetensors.numpy import save_file
    save_file({"w": np.zeros(3)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="not a streamgd model"):
        load(tmp_path / "other.safetensors")


def test_a_newer_format_version_is_refused(tmp_path):
    from safetensors.numpy import save_file
    save_file({"coef": np.zeros((1, 1)), "intercept": np.zeros(1)}, str(tmp_path / "new.safetensors"),
              metadata={"format": "streamgd.model", "format_version": str(FORMAT_VERSION + 1), "streamgd": "{}"})
    with pytest.raises(ModelFileError, match="newer streamgd"):
        load(tmp_path / "new.safetensors")


def test_a_failed_save_leaves_the_previous_file_intact(fitted, tmp_path, monkeypatch):
    target = tmp_path / "m.safetensors"
    fitted[0].save(target)
    before = target.read_bytes()
    from streamgd.io import tensorfile

    def broken(tensors, path, metadata=None):
        with open(path, "wb") as stream:
            stream.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(tensorfile, "save_safetensors", broken)
    with pytest.raises(OSError):
        fitted[0].save(target)
    assert target.read_bytes() == before
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []


def test_saving_a_large_model_copies_no_tensor(tmp_path):
    """The safetensors writer streams each array's own memory to the file (the library's writer copies every
    tensor to bytes first: for a 2^24-slot model, hundreds of MB at the end of a run)."""
    import tracemalloc

    from streamgd.features.spec import CategoricalInput, FeatureSpec

    spec = FeatureSpec([], [CategoricalInput("c")], "hash", 22)  # its 2^22 names are computed, not stored
    coef = np.random.default_rng(0).standard_normal((1, 1 << 22))
    model = streamgd.LogisticRegression(coef, np.array([0.5]), None, optimizer_state=np.zeros((2, (1 << 22) + 1)),
                                        feature_spec=spec.to_dict())
    tracemalloc.start()
    model.save(tmp_path / "big.safetensors")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < (1 << 22) * 8 // 4, peak  # well below one tensor's 32 MiB
    loaded = streamgd.load(tmp_path / "big.safetensors")
    np.testing.assert_array_equal(loaded.coef_, coef)
    assert loaded.optimizer_state.shape == (2, (1 << 22) + 1)
