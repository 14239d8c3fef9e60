"""The obvious command learns: every column is used unless excluded (text columns as categoricals, one-hot or hashed
by a stated rule), what each group of columns became is one line on stderr, and columns are named by globs and the
selectors text / numeric."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import streamgd
from streamgd.bench.synthetic_ctr import make_ctr_dataset
from streamgd.cli.main import main
from streamgd.errors import DataError
from streamgd.features.encoding_choice import choose_encodings, onehot_limit
from streamgd.features.spec import (
    CategoricalInput,
    FeatureSpec,
    NumericInput,
    value_hashes,
)
from streamgd.models.evaluate import evaluate


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """A small click log from one planted truth: a training file and a holdout drawn apart."""
    folder = tmp_path_factory.mktemp("clicks")
    make_ctr_dataset(folder / "train.parquet", 30_000, row_group_size=10_000, seed=1, model_seed=7)
    make_ctr_dataset(folder / "holdout.parquet", 10_000, row_group_size=10_000, seed=2, model_seed=7)
    return folder


def holdout_constant_loss(clicks) -> float:
    """The holdout log loss of the constant model: the training click rate for every row."""
    p = pq.read_table(clicks / "train.parquet", columns=["label"]).column("label").to_numpy().mean()
    y = pq.read_table(clicks / "holdout.parquet", columns=["label"]).column("label").to_numpy()
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_the_obvious_command_on_a_click_log_uses_the_text_columns_and_learns(clicks):
    out = clicks / "m.safetensors"
    result = run("fit", clicks / "train.parquet", "--target", "label", "--missing", "impute", "--out", out)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "13 numeric columns standardized, with 13 missing-value indicators: I1..I13" in lines
    # the default cardinalities run from 3 to 10^6: the first seven show few values in 30,000 rows, the rest many
    assert "19 text columns hashed into 2^18 buckets: C8..C26" in lines
    assert any(line.startswith("7 text columns one-hot (3 to ") and line.endswith(": C1..C7") for line in lines)
    assert "not used: label (the target)" in lines
    model = streamgd.load(out)
    assert [c.name for c in model.spec.categorical] == [f"C{k}" for k in range(1, 27)]
    loss = evaluate(model, clicks / "holdout.parquet")["metrics"]["log_loss"]
    numeric_only = streamgd.fit(clicks / "train.parquet", target="label", missing="impute", features=["numeric"])
    numeric_loss = evaluate(numeric_only, clicks / "holdout.parquet")["metrics"]["log_loss"]
    constant = holdout_constant_loss(clicks)
    # measured: constant 0.574, numeric columns only 0.559, every column (the default) 0.509
    assert loss < 0.93 * constant and loss < numeric_loss - 0.03, (loss, numeric_loss, constant)


def test_the_python_api_has_the_same_defaults(clicks):
    model = streamgd.fit(clicks / "train.parquet", target="label", missing="impute", epochs=1)
    encodings = {c.name: model.spec.column_encoding(c) for c in model.spec.categorical}
    assert encodings == {f"C{k}": "onehot" if k <= 7 else "hash" for k in range(1, 27)}
    assert model.spec.encoding == "mixed" and model.spec.hash_bits == 18
    # one-hot slots first (each column's vocabulary and __other__), then the 2^18 shared buckets
    assert model.spec.n_slots == sum(len(c.vocabulary) + 1 for c in model.spec.onehot_columns) + (1 << 18)
    assert model.spec.categorical[0].vocabulary and not model.spec.categorical[10].vocabulary


def test_the_encoding_rule_counts_the_first_rows_distinct_values(tmp_path):
    n = 4000
    values = np.array([f"v{i}" for i in range(n)])
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"few": values[np.arange(n) % 100], "many": values[np.arange(n) % 101],
                             "y": np.arange(n) % 2}), path, row_group_size=1000)
    data = streamgd.open_dataset(path, target="y")
    assert onehot_limit(1000) == 100
    assert choose_encodings(data, data.categorical) == {"few": "onehot", "many": "hash"}
    assert choose_encodings(data, data.categorical, max_categories=2000) == {"few": "onehot", "many": "onehot"}
    assert choose_encodings(data, data.categorical, "hash") == {"few": "hash", "many": "hash"}
    assert choose_encodings(data, data.categorical, "onehot") == {"few": "onehot", "many": "onehot"}


def test_a_mixed_spec_puts_one_hot_slots_first_then_the_hash_buckets():
    spec = FeatureSpec([NumericInput("x")], [CategoricalInput("h", encoding="hash"),
                                             CategoricalInput("c", ["a", "b"], encoding="onehot")],
                       "mixed", hash_bits=4, interactions=[("h", "c")])
    table = pa.table({"x": [1.0, 2.0, 3.0], "h": ["p", "q", None], "c": ["b", "z", "a"]})
    _, sparse, _ = spec.to_blocks(table, None, "float64")
    h = value_hashes(pa.chunked_array([table.column("h").chunk(0)]), "h")
    expected_h = 3 + (h & 15)  # after c=a, c=b, c=__other__
    slots = sparse.indices.reshape(3, 3)
    assert slots[:, 0].tolist() == expected_h.tolist()
    assert slots[:, 1].tolist() == [1, 2, 0]
    assert spec.n_slots == 3 + 16 and spec.own_interaction_bits is None  # interactions share the hash buckets
    assert (slots[:, 2] >= 3).all() and (slots[:, 2] < 19).all()
    names = spec.output_names
    assert [names[1], names[2], names[3], names[4], names[19]] == ["c=a", "c=b", "c=__other__", "hash_0", "hash_15"]
    again = FeatureSpec.from_dict(spec.to_dict())
    assert again == spec


def test_a_model_with_mixed_encodings_predicts_the_same_after_loading(clicks, tmp_path):
    model = streamgd.fit(clicks / "train.parquet", target="label", missing="impute", epochs=1)
    model.save(tmp_path / "m.safetensors")
    table = pq.read_table(clicks / "holdout.parquet").slice(0, 500)
    assert np.array_equal(streamgd.load(tmp_path / "m.safetensors").predict_proba(table), model.predict_proba(table))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    n = 600
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("mixed") / "m.parquet"
    pq.write_table(pa.table({
        "id": np.arange(n), "I1": rng.standard_normal(n), "I2": rng.standard_normal(n), "I3": rng.standard_normal(n),
        "C1": rng.choice(["a", "b"], n), "C2": rng.choice(["a", "b", "c"], n), "C3": rng.choice(["x", "y"], n),
        "tags": pa.array([["t"]] * n), "blob": pa.array([b"\x00"] * n), "y": rng.integers(0, 2, n)}),
        path, row_group_size=200)
    return str(path)


def test_every_group_and_every_column_not_used_is_one_line(mixed):
    result = run("fit", mixed, "--target", "y", "--exclude", "id", "--epochs", "1", "--categorical", "I3")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[:4] == [
        "2 numeric columns standardized: I1, I2",
        "1 numeric column as categoricals hashed into 2^18 buckets: I3",  # 600 distinct values: many
        "3 text columns one-hot (2 to 3 values each, other values and nulls in <name>=__other__): C1..C3",
        "not used: id (excluded); tags (nested); blob (binary); y (the target)"]
    assert "logistic: 1 epoch, 600 rows/epoch" in result.stdout


@pytest.mark.parametrize("option,value,features,categorical", [
    ("categorical", ["I*"], ["I1", "I2", "I3", "C1", "C2", "C3", "id"], ["I1", "I2", "I3", "C1", "C2", "C3"]),
    ("features", ["text"], ["C1", "C2", "C3"], ["C1", "C2", "C3"]),
    ("features", ["numeric"], ["id", "I1", "I2", "I3"], []),
    ("features", ["C?", "I1"], ["C1", "C2", "C3", "I1"], ["C1", "C2", "C3"]),
    ("exclude", ["text", "i?"], ["I1", "I2", "I3"], []),
    ("features", ["*"], ["id", "I1", "I2", "I3", "C1", "C2", "C3"], ["C1", "C2", "C3"]),  # not tags, blob, y
])
def test_globs_and_selectors_name_columns(mixed, option, value, features, categorical):
    data = streamgd.open_dataset(mixed, target="y", **{option: value})
    assert sorted(data.feature_names) == sorted(features) and sorted(data.categorical) == sorted(categorical)
    if value == ["*"]:
        assert data.ignored_columns == {"tags": "nested", "blob": "binary", "y": "the target"}


def test_the_cli_takes_globs_and_selectors(mixed):
    result = run("fit", mixed, "--target", "y", "--features", "C*,I1", "--exclude", "C3", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "2 text columns one-hot" in result.stderr and ": C1, C2\n" in result.stderr
    assert "1 numeric column standardized: I1" in result.stderr


def test_a_pattern_that_matches_nothing_is_one_line(mixed):
    result = run("fit", mixed, "--target", "y", "--categorical", "Z*")
    assert result.exit_code == 2 and result.stderr.startswith("error: the categorical pattern 'Z*' matches no column")
    with pytest.raises(DataError, match="did you mean 'C1', 'C2', 'C3'"):
        streamgd.open_dataset(mixed, target="y", exclude=["C4"])


def test_the_help_states_the_rule():
    text = " ".join(run("fit", "--help").output.split())
    assert "text features are categorical anyway" not in text
    assert "globs ('I*') or the selectors text and numeric" in text
    assert "encodes a column whose first 65,536 rows hold at most --max-categories/10 distinct values" in text
