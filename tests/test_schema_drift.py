"""Schema drift across the files of a dataset: columns stored at other widths are unified, unused columns never
block, a used column that cannot be reconciled is one line naming the files, and inspect shows the difference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import reported_lines

import streamgd
from streamgd.cli.main import main
from streamgd.data.dataset import open_dataset
from streamgd.data.schema import reconcile, unify_types
from streamgd.data.unit_reader import UnitTableReader
from streamgd.errors import SchemaError

ROWS = 600  # per file, in row groups of 200


def _columns(rng: np.random.Generator) -> dict:
    x = rng.standard_normal((ROWS, 2))
    n = rng.integers(-50, 50, ROWS)
    y = x @ [1.5, -2.0] + 0.03 * n + 0.1 * rng.standard_normal(ROWS)
    return {"x0": x[:, 0], "x1": x[:, 1], "n": n, "y": y}


@pytest.fixture
def drifted(tmp_path):
    """Two files: x0 float32 then float64, n int32 then int64, z text then numbers (z never used), w only in the
    second; and ``whole``: one file of the same rows in float64 / int64, with the same row groups."""
    rng = np.random.default_rng(7)
    first, second = _columns(rng), _columns(rng)
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(pa.table({"x0": first["x0"].astype(np.float32), "x1": first["x1"],
                             "n": first["n"].astype(np.int32), "z": ["a"] * ROWS, "y": first["y"]}),
                   folder / "p0.parquet", row_group_size=200)
    pq.write_table(pa.table({"x0": second["x0"], "x1": second["x1"], "n": second["n"].astype(np.int64),
                             "z": np.zeros(ROWS), "w": np.ones(ROWS), "y": second["y"]}),
                   folder / "p1.parquet", row_group_size=200)
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({
        "x0": np.concatenate([first["x0"].astype(np.float32).astype(np.float64), second["x0"]]),
        "x1": np.concatenate([first["x1"], second["x1"]]),
        "n": np.concatenate([first["n"], second["n"]]).astype(np.int64),
        "y": np.concatenate([first["y"], second["y"]])}), whole, row_group_size=200)
    return str(folder), str(whole)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_files_at_other_widths_train_the_model_of_one_float64_file(drifted, dtype):
    folder, whole = drifted
    options = {"target": "y", "model": "linear", "features": ["x0", "x1", "n"], "epochs": 5, "batch_size": 32,
               "lr": 0.05, "dtype": dtype, "seed": 3}
    parts = streamgd.fit(folder, **options)
    reference = streamgd.fit(whole, **options)
    # bit-identical: every file's values are exact in the unified type, so the chunks equal the reference's
    np.testing.assert_array_equal(parts.coef_, reference.coef_)
    np.testing.assert_array_equal(parts.intercept_, reference.intercept_)
    # and it learned: near the least-squares solution (not two equal zero models)
    table = pq.read_table(whole)
    X = np.column_stack([table.column(c).to_numpy() for c in ("x0", "x1", "n")] + [np.ones(table.num_rows)])
    exact = np.linalg.lstsq(X, table.column("y").to_numpy(), rcond=None)[0]
    assert np.abs(reference.coef_[0] - exact[:3]).max() < 0.05, (reference.coef_, exact)


def test_the_dataset_reads_every_file_at_the_unified_type(drifted):
    folder, _ = drifted
    data = open_dataset(folder, target="y")
    assert data.schema.field("x0").type == pa.float64() and data.schema.field("n").type == pa.int64()
    assert data.feature_names == ["x0", "x1", "n"]  # z (text and numbers) and w (one file) left out, and said so
    assert data.ignored_columns["z"].startswith("of incompatible types: string in ")
    assert data.ignored_columns["w"] == f"missing from {folder}/p0.parquet"
    drift = {d.name: d for d in data.schema_drift}
    assert set(drift) == {"x0", "n", "z", "w"}
    assert drift["x0"].files_by_type == {"float": [f"{folder}/p0.parquet"], "double": [f"{folder}/p1.parquet"]}


@pytest.mark.parametrize("selection", [{"categorical": ["*"]}, {"features": ["text", "numeric"]}, {"features": ["*"]}])
def test_a_glob_or_selector_leaves_a_drifted_column_out_as_the_default_does(drifted, selection):
    folder, _ = drifted
    data = open_dataset(folder, target="y", **selection)
    assert "z" not in data.feature_names and "z" not in data.categorical
    assert data.ignored_columns["z"].startswith("of incompatible types: string in ")


def test_an_unused_mismatched_column_does_not_block(tmp_path):
    rng = np.random.default_rng(1)
    parts = [_columns(rng) for _ in range(2)]
    for index, (columns, z) in enumerate(zip(parts, [np.zeros(ROWS, np.float32), ["a"] * ROWS])):
        pq.write_table(pa.table({**columns, "z": z}), tmp_path / f"p{index}.parquet", row_group_size=200)
    options = {"target": "y", "model": "linear", "epochs": 5, "lr": 0.05, "batch_size": 32, "dtype": "float64",
               "shuffle": "none"}
    by_default = streamgd.fit(str(tmp_path), **options)  # z is numbers in one file, text in the other
    named = streamgd.fit(str(tmp_path), features=["x0", "x1", "n"], **options)
    assert by_default.feature_names == ["x0", "x1", "n"]
    np.testing.assert_array_equal(by_default.coef_, named.coef_)
    assert np.abs(named.coef_[0, :2] - [1.5, -2.0]).max() < 0.1


@pytest.mark.parametrize("named, problem", [
    (["--features", "x0,z"], ("the column 'z' is of incompatible types: string in {d}/p0.parquet; double in "
                              "{d}/p1.parquet; ")),
    (["--features", "x0,w"], "the column 'w' is missing from {d}/p0.parquet; "),
    (["--categorical", "z"], "the column 'z' is of incompatible types: "),
])
def test_a_used_column_that_cannot_be_reconciled_is_one_line_naming_the_files(drifted, named, problem):
    folder, _ = drifted
    result = CliRunner().invoke(main, ["fit", folder, "--target", "y", "--epochs", "1", *named])
    assert result.exit_code == 2
    lines = reported_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: " + problem.format(d=folder)), lines


def test_a_missing_target_is_refused_naming_the_file(drifted, tmp_path):
    folder, _ = drifted
    pq.write_table(pa.table({"x0": [1.0], "x1": [2.0], "n": [1], "z": ["b"]}), f"{folder}/p2.parquet")
    with pytest.raises(SchemaError, match=f"the column 'y' is missing from {folder}/p2.parquet; "):
        open_dataset(folder, target="y", features=["x0"])


def test_inspect_shows_which_files_differ_and_how(drifted):
    folder, _ = drifted
    result = CliRunner().invoke(main, ["inspect", folder, "--target", "y"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = lines.index("schema differs across files (4 columns):")
    table = [" ".join(line.split()) for line in lines[start + 1:start + 15]]
    p0, p1 = f"{folder}/p0.parquet", f"{folder}/p1.parquet"
    assert table[:8] == ["column type files",
                         f"x0 float {p0}", f"double {p1}", "-> read as double from every file",
                         f"n int32 {p0}", f"int64 {p1}", "-> read as int64 from every file",
                         f"z string {p0}"]
    assert table[9:13] == ["-> not usable: left out of the default features; a run that names it stops",
                           f"w double {p1}", f"(missing) {p0}",
                           "-> not usable: left out of the default features; a run that names it stops"]


@pytest.mark.parametrize("kinds, unified", [
    ([pa.float32(), pa.float64()], pa.float64()),
    ([pa.float16(), pa.float32()], pa.float32()),
    ([pa.int8(), pa.int16(), pa.int32()], pa.int32()),
    ([pa.int32(), pa.int64()], pa.int64()),
    ([pa.uint8(), pa.uint32()], pa.uint32()),
    ([pa.int8(), pa.uint32()], pa.int64()),
    ([pa.int64(), pa.uint64()], pa.float64()),
    ([pa.int64(), pa.float32()], pa.float64()),
    ([pa.bool_(), pa.int8()], pa.int8()),
    ([pa.decimal128(10, 2), pa.int32()], pa.float64()),
    ([pa.null(), pa.float32()], pa.float32()),
    ([pa.string(), pa.dictionary(pa.int32(), pa.string())], pa.string()),
    ([pa.string(), pa.large_string()], pa.large_string()),
    ([pa.timestamp("ms"), pa.timestamp("us")], pa.timestamp("us")),
    ([pa.timestamp("ms", tz="UTC"), pa.timestamp("ms")], None),
    ([pa.string(), pa.float64()], None),
    ([pa.date32(), pa.int32()], None),
], ids=lambda v: str(v))
def test_unified_types(kinds, unified):
    assert unify_types(kinds) == unified


def test_unified_types_hold_every_value_exactly():
    values = {pa.int8(): [-128, 127], pa.int32(): [-2 ** 31, 2 ** 31 - 1], pa.uint32(): [0, 2 ** 32 - 1],
              pa.float32(): [1.1, -3.3e38], pa.int64(): [-2 ** 63, 2 ** 63 - 1]}
    for a in values:
        for b in values:
            kind = unify_types([a, b])
            for source in (a, b):
                if source == pa.int64() and pa.types.is_floating(kind):
                    continue  # integers beyond 2^53 are not exact in a double: training reads them as floats anyway
                column = pa.array(values[source], type=source)
                cast = column.cast(kind)
                assert cast.cast(source).equals(column), (a, b, kind)


def test_text_stored_as_dictionaries_in_one_file_is_read_as_strings(tmp_path):
    values = ["a", "b", "a", "c"]
    pq.write_table(pa.table({"c": pa.array(values).dictionary_encode(), "y": [0, 1, 0, 1]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"c": values, "y": [1, 1, 0, 0]}), tmp_path / "b.parquet")
    data = open_dataset(str(tmp_path), target="y", categorical=["c"])
    assert data.schema_drift[0].files_by_type == {"dictionary<string>": [f"{tmp_path}/a.parquet"],
                                                  "string": [f"{tmp_path}/b.parquet"]}
    reader = UnitTableReader(data, ["c", "y"])
    tables = [reader.read(unit) for unit in data.units]
    assert pa.concat_tables(tables).column("c").to_pylist() == values + values  # one type: the chunks concatenate


def test_identical_schemas_have_no_drift():
    schema = pa.schema([("x", pa.float32()), ("t", pa.string())])
    merged = reconcile(["a", "b", "c"], [schema, schema, schema])
    assert merged.drift == [] and merged.schema.equals(schema)
