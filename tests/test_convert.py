"""CSV and JSON lines: a one-line answer naming `streamgd convert` where Parquet is read, and `streamgd convert`
streaming them into Parquet row groups in bounded memory, atomically."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import reported_lines

import streamgd
from streamgd.cli.main import main
from streamgd.data.dataset import open_dataset
from streamgd.errors import ConfigError, DataError


def _table(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"x": rng.standard_normal(n), "count": rng.integers(0, 1000, n),
                     "flag": rng.random(n) < 0.3, "c": np.array(["a", "bb", "ccc"])[rng.integers(0, 3, n)],
                     "label": rng.integers(0, 2, n)})


def _row_groups(path) -> list[int]:
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]


@pytest.mark.parametrize("rows, size", [(10_007, 1_000), (3_000, 3_000), (5, 2)])
def test_a_csv_becomes_parquet_with_the_values_and_types_pyarrow_infers(tmp_path, rows, size):
    source = tmp_path / "d.csv"
    pacsv.write_csv(_table(rows), source)
    result = streamgd.convert(source, tmp_path / "d.parquet", row_group_size=size, block_size=1 << 14)
    expected = pacsv.read_csv(source)  # the whole file at once: the types pyarrow infers
    written = pq.read_table(tmp_path / "d.parquet")
    assert written.equals(expected)
    assert [str(t) for t in written.schema.types] == ["double", "int64", "bool", "string", "int64"]
    groups = _row_groups(tmp_path / "d.parquet")
    assert groups == [size] * (rows // size) + ([rows % size] if rows % size else [])
    assert (result.rows, result.row_groups) == (rows, len(groups))


def test_json_lines_become_parquet(tmp_path):
    source = tmp_path / "d.jsonl"
    table = _table(2_500, seed=1)
    with open(source, "w") as stream:
        stream.writelines(json.dumps(row) + "\n" for row in table.to_pylist())
    result = streamgd.convert(source, tmp_path / "d.parquet", row_group_size=1_000, block_size=1 << 14)
    written = pq.read_table(tmp_path / "d.parquet")
    assert written.equals(pajson.read_json(source))
    assert written.column("x").to_pylist() == table.column("x").to_pylist()  # the doubles round-trip exactly
    assert _row_groups(tmp_path / "d.parquet") == [1_000, 1_000, 500] and result.rows == 2_500


def test_a_compressed_tab_separated_file_with_a_column_type_given(tmp_path):
    source = tmp_path / "d.tsv.gz"
    with gzip.open(source, "wt") as stream:
        stream.write("a\tb\n1\tx\n2\ty\n3\tz\n")
    streamgd.convert(source, tmp_path / "d.parquet", column_types={"a": "float32"})
    written = pq.read_table(tmp_path / "d.parquet")
    assert written.schema.field("a").type == pa.float32() and written.column("a").to_pylist() == [1.0, 2.0, 3.0]
    assert written.column("b").to_pylist() == ["x", "y", "z"]


def test_a_type_that_changes_after_the_first_block_is_one_line_and_leaves_no_file(tmp_path):
    source = tmp_path / "d.csv"
    source.write_text("a,b\n" + "1,2\n" * 100 + "1.5,2\n")
    (tmp_path / "d.parquet").write_bytes(b"old")
    with pytest.raises(DataError, match=r"in a block after row \d+: .*invalid value '1.5'; .*--column-type NAME=TYPE"):
        streamgd.convert(source, tmp_path / "d.parquet", block_size=64)
    assert (tmp_path / "d.parquet").read_bytes() == b"old"  # atomic: the old output stays, no temporary is left
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "d.parquet"]
    streamgd.convert(source, tmp_path / "d.parquet", block_size=64, column_types={"a": "float64"})
    assert pq.read_table(tmp_path / "d.parquet").column("a").to_pylist()[-2:] == [1.0, 1.5]


def test_an_output_that_is_the_input_is_refused(tmp_path):
    source = tmp_path / "d.csv"
    source.write_text("a\n1\n")
    with pytest.raises(ConfigError, match="is one of the inputs"):
        streamgd.convert(source, source)
    assert source.read_text() == "a\n1\n"


MEASURE = """
import sys
from streamgd.data.convert import convert

def peak_growth(source):  # KiB: the peak RSS of converting source, less the RSS before
    with open("/proc/self/clear_refs", "w") as reset:  # the peak (VmHWM) starts again from the current RSS
        reset.write("5")
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    start = int(status["VmRSS"].split()[0])
    convert(source, sys.argv[3], row_group_size=int(sys.argv[4]), block_size=1 << 16)
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(status["VmHWM"].split()[0]) - start

peak_growth(sys.argv[1])  # libraries loaded
print(peak_growth(sys.argv[1]), peak_growth(sys.argv[2]))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="measures the peak RSS through Linux's /proc")
def test_peak_memory_is_bounded_by_a_few_row_groups_not_the_file(tmp_path):
    rows_per_group = 20_000
    table = pa.table({**{f"x{i}": np.random.default_rng(i).standard_normal(20 * rows_per_group) for i in range(8)},
                      "k": np.arange(20 * rows_per_group)})
    pacsv.write_csv(table, tmp_path / "big.csv")  # 20 row groups
    pacsv.write_csv(table.slice(0, rows_per_group), tmp_path / "one.csv")  # one row group
    group_bytes = table.nbytes / 20
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}  # as the command line runs (cli/allocators.py)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path / "one.csv"), str(tmp_path / "big.csv"),
                          str(tmp_path / "o.parquet"), str(rows_per_group)], env=env, capture_output=True, text=True,
                         check=True).stdout
    one_group_kb, twenty_groups_kb = (int(v) for v in out.split())
    assert pq.ParquetFile(tmp_path / "o.parquet").metadata.num_rows == 20 * rows_per_group
    # the whole file would be 20 row groups as Arrow, and more as text: the peak grows by a few row groups
    # (the one being filled, the one being written and the reader's blocks), whatever the file's length
    print(f"peak RSS growth: one row group {one_group_kb} KiB, twenty {twenty_groups_kb} KiB; a row group "
          f"{group_bytes / 1024:.0f} KiB, the file {table.nbytes / 1024:.0f} KiB as Arrow")
    assert twenty_groups_kb * 1024 < 5 * group_bytes, (one_group_kb, twenty_groups_kb, group_bytes)


@pytest.fixture
def text_files(tmp_path):
    csv = tmp_path / "clicks.csv"
    pacsv.write_csv(_table(50), csv)
    jsonl = tmp_path / "clicks.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in _table(50).to_pylist()))
    plain = tmp_path / "export"  # no suffix: known by its first bytes
    plain.write_bytes(csv.read_bytes())
    return {"csv": csv, "jsonl": jsonl, "plain": plain}


@pytest.mark.parametrize("kind, what", [("csv", "a CSV file"), ("jsonl", "a JSON lines file"),
                                        ("plain", "a CSV file")])
@pytest.mark.parametrize("command", [["fit", "--target", "label"], ["inspect"]])
def test_a_text_file_given_as_data_gets_one_line_naming_streamgd_convert(text_files, kind, what, command):
    path = str(text_files[kind])
    result = CliRunner().invoke(main, [command[0], path, *command[1:]])
    assert result.exit_code == 2
    stem = path.rsplit(".", 1)[0] if kind != "plain" else path
    assert reported_lines(result.stderr) == [(
        f"error: {path} is {what}, and streamgd reads Parquet: convert it once with "
        f"`streamgd convert {path} {stem}.parquet` (streamed, in bounded memory)")]


def test_a_directory_of_csv_files_names_streamgd_convert(text_files, tmp_path):
    text_files["plain"].unlink()  # a file without a suffix is taken for Parquet, and named as a CSV file itself
    with pytest.raises(DataError, match=r"holds no Parquet files but 2 CSV or JSON lines files: convert each "
                                        r"once with `streamgd convert .*clicks.csv .*clicks.parquet`"):
        open_dataset(str(tmp_path), target="label")


def test_the_command_converts_then_the_data_trains(text_files, tmp_path):
    out = tmp_path / "clicks.parquet"
    result = CliRunner().invoke(main, ["convert", str(text_files["csv"]), str(out), "--row-group-size", "20"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (f"wrote {out}: 50 rows in 3 row groups, 5 columns (x double, count int64, "
                                     "flag bool, c string, label int64)")
    data = open_dataset(str(out), target="label", features=["x", "count", "flag"])
    assert data.n_rows == 50 and [u.n_rows for u in data.units] == [20, 20, 10]
    bad = CliRunner().invoke(main, ["convert", str(text_files["csv"]), str(out), "--column-type", "x"])
    assert bad.exit_code == 2
    assert reported_lines(bad.stderr) == ["error: --column-type 'x': give NAME=TYPE, e.g. price=float64"]


def test_progress_on_a_terminal_is_one_line_rewritten(capsys):
    from streamgd.cli.convert import ConvertProgress

    progress = ConvertProgress(enabled=True, interval=0.0)
    progress.update(1_000, 250_000, 1_000_000)
    progress.update(4_000, 1_000_000, 1_000_000)
    progress.finish()
    assert capsys.readouterr().err == ("\rconverting: 1,000 rows, 25% of 1.0 MB read"
                                       "\rconverting: 4,000 rows, 100% of 1.0 MB read\n")
    quiet = ConvertProgress(enabled=False, interval=0.0)  # not a terminal, or --quiet
    quiet.update(1, 1, 1)
    quiet.finish()
    assert capsys.readouterr().err == ""
