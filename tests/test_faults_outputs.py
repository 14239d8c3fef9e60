"""Issue 30, cases 5, 7, 8, 10 and 11, as an adversarial user meets them: an output never mixes with an earlier
run's files nor destroys an input, and every type or path a user can give ends in a result or in one line and
exit status 2, never a traceback nor a silently wrong model."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from conftest import reported_lines
from streamgd.cli.main import main
from streamgd.models.linear import load


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(result, *words: str) -> str:
    """The one error line of a refused command (exit 2, no traceback), which holds each of ``words``."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = reported_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """2,000 rows of a binary problem in row groups of 500: x0..x2, y."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2000, 3))
    y = (X @ [1.0, -2.0, 0.5] + 0.3 * rng.standard_normal(2000) > 0).astype(np.int64)
    path = tmp_path_factory.mktemp("faults") / "d.parquet"
    pq.write_table(pa.table({"x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "y": y}), path, row_group_size=500)
    return path


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    assert run("fit", data, "--target", "y", "--epochs", "1", "--out", path, "--quiet").exit_code == 0
    return path


def rows_under(directory) -> int:
    return sum(pq.ParquetFile(os.path.join(directory, n)).metadata.num_rows for n in os.listdir(directory))


# ---- case 5: a directory output is replaced whole ----------------------------------------------------------------
def test_make_data_parts_of_an_earlier_run_do_not_stay(tmp_path):
    out = tmp_path / "parts"
    assert run("make-data", out, "--rows", "3000", "--files", "3", "--features", "2").exit_code == 0
    assert run("make-data", out, "--rows", "2000", "--files", "2", "--features", "2").exit_code == 0
    assert sorted(os.listdir(out)) == ["part-00000.parquet", "part-00001.parquet"]
    assert rows_under(out) == 2000
    assert [n for n in os.listdir(tmp_path) if n != "parts"] == []  # no temporary directory left beside it


def test_a_directory_holding_other_files_is_not_replaced(tmp_path):
    out = tmp_path / "parts"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused(run("make-data", out, "--rows", "100", "--files", "2"), "notes.txt", "did not write")
    assert os.listdir(out) == ["notes.txt"]


def test_predict_parts_of_an_earlier_run_do_not_stay(data, model, tmp_path, client):
    """predict --dask (the parts of --workers N, on the module's cluster): a second run on 500 rows leaves 500
    rows in the directory, not the first run's parts beside them."""
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(data).slice(0, 500), small)
    out = tmp_path / "pdir"
    address = client.scheduler.address
    assert run("predict", model, data, "--out", out, "--dask", address).exit_code == 0
    assert rows_under(out) == 2000
    (out / "part-00007.parquet").write_bytes((out / "part-00000.parquet").read_bytes())  # a larger cluster's part
    result = run("predict", model, small, "--out", out, "--dask", address)
    assert result.exit_code == 0, result.output
    assert rows_under(out) == 500
    expected = load(model).predict(pq.read_table(small).select(["x0", "x1", "x2"]))
    got = np.concatenate([pq.read_table(out / name).column("prediction").to_numpy()
                          for name in sorted(os.listdir(out))])
    np.testing.assert_array_equal(got, expected)


# ---- cases 7 and 8: every output checked against the inputs and the other outputs, before training -----------
@pytest.mark.parametrize("options, words", [
    (["--init", "{model}", "--out", "{model}"], ["--out", "one of the inputs"]),
    (["--cache", "{tmp}/cx", "--out", "{tmp}/cx"], ["--out and --cache", "the same file or directory"]),
    (["--checkpoint-dir", "{tmp}/x", "--history", "{tmp}/x"],
     ["--history and --checkpoint-dir", "the same file or directory"]),
    (["--out", "{tmp}/x", "--checkpoint-dir", "{tmp}/x/ck"], ["--out", "creates a directory"]),
    (["--cache", "{data_dir}"], ["--cache", "holds the input"]),
], ids=["init-is-out", "cache-is-out", "checkpoints-are-history", "out-above-checkpoints", "cache-holds-data"])
def test_outputs_that_collide_are_refused_before_training(data, model, tmp_path, options, words):
    before = model.read_bytes()
    places = {"model": model, "tmp": tmp_path, "data_dir": data.parent}
    result = run("fit", data, "--target", "y", "--epochs", "1", "--quiet",
                 *[option.format(**places) for option in options])
    refused(result, *words)
    assert "compiling" not in result.stderr and "epoch" not in result.stderr  # nothing trained
    assert model.read_bytes() == before
    assert os.listdir(tmp_path) == []


# ---- case 10: types pandas and Spark write -----------------------------------------------------------------------
def test_timestamp_ns_features_are_seconds(data, tmp_path):
    """A timestamp[ns] column (what pandas writes) is a feature in seconds since 1970, as a timestamp[s] column
    holding the same instants is: the two models are identical."""
    table = pq.read_table(data)
    instants = 1_600_000_000 + np.arange(table.num_rows, dtype=np.int64) * 37
    paths = {}
    for unit, scale in (("ns", 10**9), ("s", 1)):
        paths[unit] = tmp_path / f"{unit}.parquet"
        column = pa.array(instants * scale, type=pa.timestamp(unit))
        pq.write_table(table.append_column("t", column), paths[unit], row_group_size=500, version="2.6")
    assert pq.read_schema(paths["ns"]).field("t").type == pa.timestamp("ns")
    coefs = []
    for unit, path in paths.items():
        out = tmp_path / f"{unit}.safetensors"
        result = run("fit", path, "--target", "y", "--epochs", "1", "--out", out, "--quiet")
        assert result.exit_code == 0, result.output
        coefs.append(load(out).coef_)
        assert "t" in load(out).input_columns
    np.testing.assert_allclose(coefs[0], coefs[1], rtol=1e-9)


def test_float16_columns_are_cast_up(data, tmp_path):
    """float16 columns train as the float32 columns of the same values do: identical models."""
    table = pq.read_table(data)
    half = pa.table({name: table.column(name).cast(pa.float16()) if name != "y" else table.column(name)
                     for name in table.column_names})
    single = pa.table({name: half.column(name).cast(pa.float32()) if name != "y" else half.column(name)
                       for name in half.column_names})
    coefs = []
    for name, t in (("half", half), ("single", single)):
        pq.write_table(t, tmp_path / f"{name}.parquet", row_group_size=500)
        result = run("fit", tmp_path / f"{name}.parquet", "--target", "y", "--epochs", "1", "--out",
                     tmp_path / f"{name}.safetensors", "--quiet")
        assert result.exit_code == 0, result.output
        coefs.append(load(tmp_path / f"{name}.safetensors").coef_)
    np.testing.assert_array_equal(coefs[0], coefs[1])


def test_duplicate_column_names_are_refused(data, tmp_path):
    table = pq.read_table(data)
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.table([table.column("x0"), table.column("x1"), table.column("x1"), table.column("y")],
                            names=["x0", "x1", "x1", "y"]), path)
    refused(run("fit", path, "--target", "y", "--quiet"), "'x1'", "more than one column")


def test_make_data_under_a_file_is_refused(data, tmp_path):
    refused(run("make-data", f"{data}/x.parquet", "--rows", "100"), "is a file")


def test_an_object_key_with_an_empty_part_is_refused(data):
    refused(run("fit", data, "--target", "y", "--out", "s3://bucket//key", "--quiet"), "s3://bucket/key")


def test_inspect_cache_with_an_index_entry_lacking_fields(data, tmp_path):
    cache = tmp_path / "cache"
    assert run("fit", data, "--target", "y", "--epochs", "2", "--cache", cache, "--quiet").exit_code == 0
    entries = sorted((cache / "units").glob("*.json"))
    entry = json.loads(entries[0].read_text())
    del entry["unit"]
    entries[0].write_text(json.dumps(entry))
    result = run("inspect", "--cache", cache)
    assert result.exit_code == 0, result.output
    assert "damaged: 1 index entries" in result.output
    assert f"units: {len(entries) - 1}, rows: {(len(entries) - 1) * 500:,}" in result.output


# ---- case 11 -----------------------------------------------------------------------------------------------------
def test_keeping_a_column_named_like_the_predictions_is_refused(data, model, tmp_path):
    table = pq.read_table(data)
    path = tmp_path / "with_prediction.parquet"
    pq.write_table(table.append_column("prediction", table.column("x0")), path)
    refused(run("predict", model, path, "--keep", "prediction", "--out", tmp_path / "p.parquet"), "'prediction'")
    assert not (tmp_path / "p.parquet").exists()


def test_drop_rows_dropping_every_row_writes_no_model(data, tmp_path):
    table = pq.read_table(data)
    path = tmp_path / "nan.parquet"
    pq.write_table(table.set_column(0, "x0", pa.array(np.full(table.num_rows, np.nan))), path)
    out = tmp_path / "m.safetensors"
    refused(run("fit", path, "--target", "y", "--missing", "drop-rows", "--out", out, "--quiet"),
            "every row", "2,000 rows")
    assert not out.exists()


def test_a_huge_local_cluster_is_refused(data, model, tmp_path):
    refused(run("fit", data, "--target", "y", "--workers", "100000", "--quiet"), "--workers 100000", "--dask")
    refused(run("predict", model, data, "--workers", "100000", "--out", tmp_path / "p"), "--workers 100000")


@pytest.mark.parametrize("missing", ["error", "impute", "drop-rows"])
def test_inf_is_not_told_to_use_missing(data, tmp_path, missing):
    table = pq.read_table(data)
    x0 = table.column("x0").to_numpy().copy()
    x0[5] = np.inf
    path = tmp_path / "inf.parquet"
    pq.write_table(table.set_column(0, "x0", pa.array(x0)), path, row_group_size=500)
    line = refused(run("fit", path, "--target", "y", "--missing", missing, "--quiet"), "inf", "row 5")
    assert "--missing" not in line and "--transform clip:x0:" in line


def test_extensionless_files_without_the_parquet_mark_are_left_out(data, tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / "000000_0").write_bytes(data.read_bytes())  # Hive's name for a Parquet file
    (directory / "README").write_text("not data")
    out = tmp_path / "m.safetensors"
    result = run("fit", directory, "--target", "y", "--epochs", "1", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    warnings = [line for line in reported_lines(result.stderr) if line.startswith("warning: ")]
    assert len(warnings) == 1 and "README" in warnings[0]
    assert load(out).history[0]["rows"] == 2000


def test_a_fifo_as_data_is_refused(tmp_path):
    fifo = tmp_path / "d.parquet"
    os.mkfifo(fifo)
    refused(run("fit", fifo, "--target", "y", "--quiet"), "not a regular file")
    directory = tmp_path / "dir"
    directory.mkdir()
    os.mkfifo(directory / "part-0.parquet")
    refused(run("fit", directory, "--target", "y", "--quiet"), "not a regular file")
