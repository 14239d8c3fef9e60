"""Issue 30, case 10's model files: a damaged or hand-edited model file is one line and exit status 2 in
``predict`` and ``evaluate``, never a traceback; a seeded fuzzer over the JSON metadata and tensor headers of real
small models holds that for a few hundred mutations."""

from __future__ import annotations

import copy
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from conftest import reported_lines
from streamgd.cli.main import main

MUTATIONS = 300
VALUES = [None, [], {}, [1], 0, -1, 1, 2.5, 1e308, "", "x", True, [None], [[1]], {"a": 1}, ["a", "a"],
          [0, 1], ["x0"], [1, 2, 3]]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def read_file(path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + size]), raw[8 + size:]


def write_file(path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def with_meta(header: dict, change) -> dict:
    """The header with its streamgd metadata (JSON in a string) changed by ``change(meta)``."""
    header = copy.deepcopy(header)
    meta = json.loads(header["__metadata__"]["streamgd"])
    meta = change(meta)
    header["__metadata__"]["streamgd"] = json.dumps(meta)
    return header


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A binary data file with a text column, a three-class one, and models trained on them: logistic on the
    numbers, logistic with a one-hot column (a feature_spec), softmax."""
    where = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(5)
    X = rng.standard_normal((600, 2))
    binary = (X @ [1.0, -1.0] > 0).astype(np.int64)
    three = np.digitize(X[:, 0], [-0.4, 0.4])
    pq.write_table(pa.table({"x0": X[:, 0], "x1": X[:, 1], "c": rng.choice(["a", "b"], 600), "y": binary,
                             "k": three}), where / "d.parquet", row_group_size=200)
    made = {"data": where / "d.parquet"}
    for name, options in {"dense": ["--target", "y", "--features", "x0,x1"],
                          "spec": ["--target", "y", "--features", "x0,x1,c"],
                          "softmax": ["--target", "k", "--features", "x0,x1", "--model", "softmax"]}.items():
        made[name] = where / f"{name}.safetensors"
        result = run("fit", made["data"], *options, "--epochs", "1", "--out", made[name], "--quiet")
        assert result.exit_code == 0, result.output
    return made


def one_line_or_result(result) -> str:
    """'ok' for a command that worked, 'refused' for one error line and exit 2; anything else fails."""
    if result.exit_code == 0:
        return "ok"
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (result.exit_code, result.exception,
                                                                                result.output)
    lines = reported_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return "refused"


@pytest.mark.parametrize("case, words", [
    ("bf16", "bfloat16"), ("softmax_one_row", "coef has 1 rows"), ("classes_empty", "classes"),
    ("spec_not_object", "feature_spec is a list"), ("history_of_numbers", "history"), ("nan_coef", "NaN"),
])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_malformed_model_fields_are_one_line(files, tmp_path, case, words, command):
    source = files["softmax" if case == "softmax_one_row" else "dense"]
    header, data = read_file(source)
    if case == "bf16":
        header["coef"]["dtype"] = "BF16"
        header["coef"]["shape"] = [1, (header["coef"]["data_offsets"][1] - header["coef"]["data_offsets"][0]) // 2]
    elif case == "softmax_one_row":
        n = header["coef"]["shape"][1]
        header["coef"] = {"dtype": "F64", "shape": [1, n], "data_offsets": [0, 8 * n]}
        header["intercept"] = {"dtype": "F64", "shape": [1], "data_offsets": [8 * n, 8 * n + 8]}
        data = data[:8 * n + 8]
    elif case == "classes_empty":
        header = with_meta(header, lambda m: {**m, "classes": []})
    elif case == "spec_not_object":
        header = with_meta(header, lambda m: {**m, "feature_spec": [1, 2]})
    elif case == "history_of_numbers":
        header = with_meta(header, lambda m: {**m, "history": [1]})
    elif case == "nan_coef":
        values = np.frombuffer(data, dtype="<f8").copy()
        values[0] = np.nan
        data = values.tobytes()
    broken = tmp_path / "broken.safetensors"
    write_file(broken, header, data)
    out = tmp_path / "p.parquet"
    args = ["predict", broken, files["data"], "--out", out] if command == "predict" else \
        ["evaluate", broken, files["data"]]
    result = run(*args)
    assert one_line_or_result(result) == "refused"
    assert words in result.stderr and str(broken) in result.stderr
    assert not out.exists()


def mutate(rng: np.random.Generator, header: dict) -> dict:
    """One random change of a model file's header: a metadata field (top level, or one level down in the
    feature_spec, the history or the classes) deleted or replaced by a value of another shape, or a tensor's dtype
    or shape changed."""
    header = copy.deepcopy(header)
    choice = rng.integers(0, 10)
    if choice == 0:  # a tensor header
        name = rng.choice(["coef", "intercept"])
        if rng.random() < 0.5:
            header[name]["dtype"] = str(rng.choice(["BF16", "F16", "F32", "I64", "U8", "BOOL"]))
        else:
            header[name]["shape"] = [int(v) for v in rng.integers(0, 4, rng.integers(0, 3))]
        return header
    if choice == 1:  # the whole metadata
        header["__metadata__"]["streamgd"] = json.dumps(VALUES[rng.integers(len(VALUES))])
        return header

    def change(meta: dict) -> dict:
        target = meta
        nested = [k for k, v in meta.items() if isinstance(v, (dict, list)) and v]
        if nested and rng.random() < 0.5:
            parent = meta[nested[rng.integers(len(nested))]]
            target = parent
            if isinstance(parent, list):
                index = int(rng.integers(len(parent)))
                if isinstance(parent[index], dict) and parent[index] and rng.random() < 0.7:
                    target = parent[index]
                else:
                    parent[index] = VALUES[rng.integers(len(VALUES))]
                    return meta
        keys = list(target)
        if not keys:
            return meta
        key = keys[rng.integers(len(keys))]
        if rng.random() < 0.3:
            del target[key]
        else:
            target[key] = copy.deepcopy(VALUES[rng.integers(len(VALUES))])
        return meta

    return with_meta(header, change)


def test_fuzzed_model_headers_load_or_refuse_in_one_line(files, tmp_path):
    """Hundreds of seeded mutations of real models' headers: predict either writes its predictions or says one
    line with exit 2; every kind of outcome is seen (so the fuzzer reaches both)."""
    rng = np.random.default_rng(30)
    originals = {name: read_file(files[name]) for name in ("dense", "spec", "softmax")}
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(files["data"]).slice(0, 50), small)
    outcomes = {"ok": 0, "refused": 0}
    for i in range(MUTATIONS):
        name = ("dense", "spec", "softmax")[i % 3]
        header, data = originals[name]
        path = tmp_path / f"m{i}.safetensors"
        write_file(path, mutate(rng, header), data)
        result = run("predict", path, small, "--out", tmp_path / "p.parquet")
        try:
            outcomes[one_line_or_result(result)] += 1
        except AssertionError as exc:
            raise AssertionError(f"mutation {i} of {name}: {json.dumps(read_file(path)[0])[:600]}") from exc
    assert outcomes["ok"] > 20 and outcomes["refused"] > 100, outcomes
