"""Fault injection on what a resume and the epoch cache read (issue 30, cases 1, 2, 3, 4 and 6): other data
under a checkpoint, a file rewritten in place with its size, footer and time kept, flipped bytes in a
checkpoint, a checksum collision and a rewritten unit in the cache, damaged statistics, a second run in one
checkpoint directory; and a seeded fuzzer over checkpoint headers and cache index entries. Every case ends with a
bit-identical result or one line (the command line: exit 2), never a traceback or a silently different model."""

from __future__ import annotations

import json
import os
import random
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import streamgd
from streamgd.cli.main import main
from streamgd.data.cache import CacheStats, CacheWarning, EpochCache, checksum, read_entries
from streamgd.errors import ModelFileError
from streamgd.features.stats import ColumnStats, DatasetStats
from streamgd.features.stats_cache import implausible
from streamgd.io.fingerprint import footer_bytes
from streamgd.training.checkpoint import latest_checkpoint, list_checkpoints, read_checkpoint, serial_of
from conftest import reported_lines

ROWS, GROUP = 4000, 500  # eight units
SETTINGS = {"epochs": 2, "batch_size": 50, "seed": 3, "shuffle": "row-groups", "lr": 0.05}
CLI = ["--target", "y", "--epochs", "2", "--batch-size", "50", "--seed", "3", "--shuffle", "row-groups",
       "--lr", "0.05", "--quiet"]


def _columns(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((ROWS, 3))
    y = (X @ [1.0, -2.0, 0.5] + rng.standard_normal(ROWS) > 0).astype(np.int64)
    return {"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}


def _write(path, columns: dict) -> str:
    """Plain, uncompressed pages: a permutation of rows inside each row group keeps the size and the footer."""
    pq.write_table(pa.table(columns), str(path), row_group_size=GROUP, compression="none", use_dictionary=False)
    return str(path)


def _rewrite_in_place(path: str, seed: int) -> None:
    """Rewrite ``path`` with its rows permuted inside each row group, its modification time restored (what a
    regenerated file copied with ``cp -p`` or ``rsync -t`` looks like): same size, same footer, other content."""
    before = os.stat(path)
    with open(path, "rb") as stream:
        data = stream.read()
    table = pq.read_table(path)
    rng = np.random.default_rng(seed)
    order = np.concatenate([start + rng.permutation(min(GROUP, ROWS - start)) for start in range(0, ROWS, GROUP)])
    _write(path, {name: table.column(name).to_numpy()[order] for name in table.column_names})
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with open(path, "rb") as stream:
        after = stream.read()
    size = len(data)
    read_old, read_new = (lambda o, n: data[o:o + n]), (lambda o, n: after[o:o + n])
    assert len(after) == size and footer_bytes(size, read_old) == footer_bytes(size, read_new) and after != data
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns


@pytest.fixture
def data(tmp_path) -> str:
    return _write(tmp_path / "a.parquet", _columns(0))


def _same(a, b) -> bool:
    return np.array_equal(a.coef_, b.coef_) and np.array_equal(a.intercept_, b.intercept_)


def _one_line_exit_2(result) -> str:
    lines = reported_lines(result.stderr)
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# ---- case 1: resume on other data -------------------------------------------------------------------------------
def test_resume_on_other_data_of_the_same_shape_is_refused_naming_the_file(data, tmp_path):
    other = _write(tmp_path / "b.parquet", _columns(1))
    ck = str(tmp_path / "ck")
    assert CliRunner().invoke(main, ["fit", data, *CLI, "--checkpoint-dir", ck]).exit_code == 0
    line = _one_line_exit_2(CliRunner().invoke(main, ["fit", other, *CLI, "--checkpoint-dir", ck, "--resume"]))
    assert "other data" in line and other in line


def test_resume_on_a_file_rewritten_in_place_is_refused(data, tmp_path):
    ck = str(tmp_path / "ck")
    assert CliRunner().invoke(main, ["fit", data, *CLI, "--checkpoint-dir", ck]).exit_code == 0
    _rewrite_in_place(data, seed=5)
    line = _one_line_exit_2(CliRunner().invoke(main, ["fit", data, *CLI, "--checkpoint-dir", ck, "--resume"]))
    assert f"{data} differs from the file it was written on: its content" in line


# ---- case 2: a stale cache --------------------------------------------------------------------------------------
def test_a_file_rewritten_in_place_is_a_cache_miss_and_inspect_says_stale(data, tmp_path):
    cache = str(tmp_path / "cache")
    streamgd.fit(data, target="y", cache=cache, **SETTINGS)
    _rewrite_in_place(data, seed=5)
    shown = CliRunner().invoke(main, ["inspect", "--cache", cache])
    assert shown.exit_code == 0 and "(stale: the file changed since (content)" in shown.stdout, shown.stdout
    assert "(current)" not in shown.stdout
    assert _same(streamgd.fit(data, target="y", cache=cache, **SETTINGS), streamgd.fit(data, target="y", **SETTINGS))


# ---- case 3: a damaged checkpoint -------------------------------------------------------------------------------
def test_flipped_bytes_in_the_newest_checkpoint_fall_back_to_the_previous_one(data, tmp_path):
    ck = str(tmp_path / "ck")
    whole = streamgd.fit(data, target="y", checkpoint_dir=ck, checkpoint_every=3, keep_checkpoints=100, **SETTINGS)
    written = list_checkpoints(ck)
    for later in written[4:]:  # as if the run had stopped after the fourth
        os.unlink(later)
    newest = written[3]
    with open(newest, "r+b") as stream:  # 8 bytes inside the tensors (the last bytes of the file)
        stream.seek(-12, os.SEEK_END)
        flipped = bytes(b ^ 0x5A for b in stream.read(8))
        stream.seek(-12, os.SEEK_END)
        stream.write(flipped)
    with pytest.warns(UserWarning, match="checksum does not match") as said:
        resumed = streamgd.fit(data, target="y", checkpoint_dir=ck, resume=True, **SETTINGS)
    assert len([w for w in said if "skipping checkpoint" in str(w.message)]) == 1
    assert resumed.summary["resumed_from"] == serial_of(written[2])
    assert _same(resumed, whole)


# ---- case 4: the cache's bytes ----------------------------------------------------------------------------------
def _fletcher_collision(path: str, offset: int) -> None:
    """Change three 64-bit words at ``offset`` by +d, -2d, +d: both of Fletcher's sums stay the same."""
    with open(path, "r+b") as stream:
        stream.seek(offset)
        words = np.frombuffer(stream.read(24), dtype="<u8").copy()
        d = 1 << 40
        words += np.array([d, (-2 * d) % (1 << 64), d], dtype=np.uint64)  # wrapping, as the sums wrap
        stream.seek(offset)
        stream.write(words.tobytes())


def test_a_checksum_collision_of_the_old_sum_is_caught_and_the_unit_rebuilt(data, tmp_path):
    cache = str(tmp_path / "cache")
    plain = streamgd.fit(data, target="y", **SETTINGS)
    streamgd.fit(data, target="y", cache=cache, **SETTINGS)
    units = os.path.join(cache, "units")
    for name in sorted(os.listdir(units)):
        if name.endswith(".bin"):
            _fletcher_collision(os.path.join(units, name), 64)
    with pytest.warns(CacheWarning, match="checksum of its X array does not match"):
        assert _same(streamgd.fit(data, target="y", cache=cache, **SETTINGS), plain)


def test_a_unit_rewritten_after_the_run_read_it_is_caught_on_the_next_read(data, tmp_path):
    cache = str(tmp_path / "cache")
    plain = streamgd.fit(data, target="y", **{**SETTINGS, "epochs": 4})
    units = os.path.join(cache, "units")

    def damage_after_epoch_2(progress) -> None:
        if progress.record is not None and progress.record["epoch"] == 2:
            for name in os.listdir(units):
                if name.endswith(".bin"):
                    with open(os.path.join(units, name), "r+b") as stream:
                        stream.write(bytes(b ^ 1 for b in stream.read(16)))

    with pytest.warns(CacheWarning, match="does not match"):
        cached = streamgd.fit(data, target="y", cache=cache, on_chunk=damage_after_epoch_2,
                              **{**SETTINGS, "epochs": 4})
    assert _same(cached, plain)


@pytest.mark.parametrize("edit", ["digit", "negative variance", "not an object"])
def test_damaged_stored_statistics_are_computed_again(data, tmp_path, edit):
    cache = str(tmp_path / "cache")
    args = ["fit", data, *CLI, "--cache", cache]
    first = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "first.safetensors")])
    assert first.exit_code == 0, first.stderr
    stats_dir = os.path.join(cache, "stats")
    (name,) = os.listdir(stats_dir)
    path = os.path.join(stats_dir, name)
    with open(path) as stream:
        stored = json.load(stream)
    column = stored["statistics"]["columns"]["a"]
    if edit == "digit":
        text = repr(column["mean"])
        column["mean"] = float(text[:-1] + ("1" if text[-1] != "1" else "2"))
    elif edit == "negative variance":
        column["var"] = -1
    else:
        stored["statistics"]["columns"]["a"] = [1, 2]
    with open(path, "w") as stream:
        json.dump(stored, stream)
    again = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "again.safetensors")])
    assert again.exit_code == 0 and "Traceback" not in again.stderr
    assert [line for line in reported_lines(again.stderr) if "statistics" in line and "damaged" in line]
    assert _same(streamgd.load(str(tmp_path / "first.safetensors")), streamgd.load(str(tmp_path / "again.safetensors")))


def test_implausible_statistics_are_named():
    good = ColumnStats(count=10, mean=0.5, var=1.0, min=-1.0, max=2.0)
    assert implausible(DatasetStats(10, {"a": good}), ["a"]) is None
    for bad in (ColumnStats(count=10, mean=0.5, var=-1.0, min=-1.0, max=2.0),
                ColumnStats(count=10, mean=5.0, var=1.0, min=-1.0, max=2.0),
                ColumnStats(count=11, mean=0.5, var=1.0, min=-1.0, max=2.0),
                ColumnStats(count=10, mean=float("nan"), var=1.0, min=-1.0, max=2.0)):
        assert implausible(DatasetStats(10, {"a": bad}), ["a"]) is not None
    assert "no statistics of column 'b'" in implausible(DatasetStats(10, {"a": good}), ["a", "b"])


# ---- case 6: runs sharing a checkpoint directory ----------------------------------------------------------------
def test_a_second_run_neither_prunes_nor_is_resumed_for_the_first(data, tmp_path):
    other = _write(tmp_path / "b.parquet", _columns(1))
    ck = str(tmp_path / "ck")
    first = streamgd.fit(data, target="y", checkpoint_dir=ck, checkpoint_every=3, keep_checkpoints=2, **SETTINGS)
    kept = list_checkpoints(ck)
    assert len(kept) == 2
    streamgd.fit(other, target="y", checkpoint_dir=ck, checkpoint_every=3, keep_checkpoints=2, **SETTINGS)
    assert set(kept) < set(list_checkpoints(ck)) and len(list_checkpoints(ck)) == 4  # the first run's are kept
    # --resume on the first run's data takes the first run's newest, though the second run's are newer
    assert latest_checkpoint(ck, data=None).run != read_checkpoint(kept[-1]).run
    resumed = streamgd.fit(data, target="y", checkpoint_dir=ck, resume=True, **SETTINGS)
    assert resumed.summary["resumed_from"] == serial_of(kept[-1]) and _same(resumed, first)


# ---- the fuzzer -------------------------------------------------------------------------------------------------
def _mutate(text: bytes, rng: random.Random) -> bytes:
    """One random edit of a byte string: a flipped bit, a changed, removed or inserted byte, a cut, a swap."""
    data = bytearray(text)
    kind = rng.randrange(6)
    at = rng.randrange(len(data))
    if kind == 0:
        data[at] ^= 1 << rng.randrange(8)
    elif kind == 1:
        data[at] = rng.choice(b'0123456789-.,:{}[]" eE')
    elif kind == 2:
        del data[at]
    elif kind == 3:
        data.insert(at, rng.choice(b'0123456789-,"'))
    elif kind == 4:
        del data[at:]
    else:
        other = rng.randrange(len(data))
        data[at], data[other] = data[other], data[at]
    return bytes(data)


def test_fuzzed_checkpoint_headers_load_identically_or_are_refused(data, tmp_path):
    ck = str(tmp_path / "ck")
    streamgd.fit(data, target="y", checkpoint_dir=ck, **SETTINGS)
    path = list_checkpoints(ck)[-1]
    original = read_checkpoint(path)
    with open(path, "rb") as stream:
        raw = stream.read()
    header_end = 8 + int.from_bytes(raw[:8], "little")
    rng = random.Random(30)
    target = str(tmp_path / "fuzzed.safetensors")
    outcomes = {"refused": 0, "same": 0}
    for _ in range(300):
        head = raw[:header_end]
        for _ in range(rng.randrange(1, 4)):
            head = _mutate(head, rng) or head
        with open(target, "wb") as stream:
            stream.write(head + raw[header_end:])
        try:
            loaded = read_checkpoint(target)
        except ModelFileError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
            continue
        assert loaded.cursor == original.cursor and loaded.fingerprint == original.fingerprint
        assert loaded.settings == original.settings and loaded.run == original.run
        assert np.array_equal(loaded.params, original.params) and np.array_equal(loaded.opt_state, original.opt_state)
        outcomes["same"] += 1
    assert outcomes["refused"] > 250, outcomes


def test_fuzzed_cache_index_entries_are_misses_or_the_same_arrays(data, tmp_path):
    cache = str(tmp_path / "cache")
    streamgd.fit(data, target="y", cache=cache, **SETTINGS)
    entry = read_entries(cache)[0]
    key = entry["key"]
    store = EpochCache(streamgd.data.cache.CacheSettings(cache, run="fuzz"))
    data_path, index_path = (os.path.join(cache, "units", key + suffix) for suffix in (".bin", ".json"))
    with open(index_path, "rb") as stream:
        raw = stream.read()
    with open(data_path, "rb") as stream:
        bin_bytes = stream.read()

    def read_x():
        with store.mapped(key, CacheStats(), "the unit") as arrays:
            return None if arrays is None else (checksum(np.ascontiguousarray(arrays.X).reshape(-1)),
                                                np.asarray(arrays.y).tobytes())

    expected = read_x()
    assert expected is not None
    rng = random.Random(6)
    outcomes = {"miss": 0, "same": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        for _ in range(300):
            mutated = raw
            for _ in range(rng.randrange(1, 4)):
                mutated = _mutate(mutated, rng) or mutated
            with open(index_path, "wb") as stream:
                stream.write(mutated)
            if not os.path.exists(data_path):  # a damaged entry is discarded: put the unit back
                with open(data_path, "wb") as stream:
                    stream.write(bin_bytes)
            found = read_x()
            if found is None:
                outcomes["miss"] += 1
            else:
                assert found == expected
                outcomes["same"] += 1
    assert outcomes["miss"] > 100, outcomes


def test_a_cache_entry_pointing_at_other_bytes_is_a_miss(data, tmp_path):
    """An index entry edited by hand (an array's offset moved, its checksum recomputed as the old sum was) is a
    miss: the entry's own checksum covers it."""
    cache = str(tmp_path / "cache")
    plain = streamgd.fit(data, target="y", **SETTINGS)
    streamgd.fit(data, target="y", cache=cache, **SETTINGS)
    for entry in read_entries(cache):
        path = os.path.join(cache, "units", entry["key"] + ".json")
        entry.pop("_data_size")
        entry["arrays"]["X"]["shape"] = entry["arrays"]["X"]["shape"][::-1]  # the same bytes, read transposed
        with open(path, "w") as stream:
            json.dump(entry, stream)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        again = streamgd.fit(data, target="y", cache=cache, **SETTINGS)
    assert any("damaged" in str(w.message) for w in said) and _same(again, plain)


def test_the_content_check_covers_small_files_whole_and_samples_larger_ones(tmp_path):
    """A file up to WHOLE_FILE_BYTES: any byte changed is seen. A larger one: a byte of a sample is seen; a byte
    between the samples is not (what the check promises, and what it does not)."""
    from streamgd.io import fingerprint

    def content_after(size: int, flip: int | None) -> str:
        raw = bytearray(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes())
        if flip is not None:
            raw[flip] ^= 0xFF
        path = tmp_path / "f.bin"
        path.write_bytes(bytes(raw))
        return fingerprint.content_identity(str(path))["content"]

    small = fingerprint.WHOLE_FILE_BYTES
    assert all(content_after(small, at) != content_after(small, None) for at in (0, small // 3, small - 1))
    large = 40 * fingerprint.WHOLE_FILE_BYTES
    ranges = fingerprint.sample_ranges(large)
    assert len(ranges) == fingerprint.SAMPLES and ranges[0][0] == 0 and sum(ranges[-1]) == large
    sampled = ranges[5][0] + 17
    between = ranges[5][0] + fingerprint.SAMPLE_BYTES + 1
    assert between < ranges[6][0]
    assert content_after(large, sampled) != content_after(large, None)
    assert content_after(large, between) == content_after(large, None)


def test_an_object_rewritten_in_a_store_is_told_by_its_etag_and_content(s3_server, monkeypatch, data, tmp_path):
    from streamgd.data.cache import source_identity

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    s3 = s3_server.boto3()
    s3.create_bucket(Bucket="faults")
    with open(data, "rb") as stream:
        s3.put_object(Bucket="faults", Key="d/a.parquet", Body=stream.read())
    uri = "s3://faults/d/a.parquet"
    before = source_identity(uri)
    assert before["etag"] and before["size"] == os.path.getsize(data)
    ck = str(tmp_path / "ck")
    assert CliRunner().invoke(main, ["fit", uri, *CLI, "--checkpoint-dir", ck]).exit_code == 0
    _rewrite_in_place(data, seed=5)  # same size and footer, other rows
    with open(data, "rb") as stream:
        s3.put_object(Bucket="faults", Key="d/a.parquet", Body=stream.read())
    after = source_identity(uri)
    assert after["size"] == before["size"] and after["footer_sha256"] == before["footer_sha256"]
    assert after["etag"] != before["etag"] and after["content"] != before["content"]
    line = _one_line_exit_2(CliRunner().invoke(main, ["fit", uri, *CLI, "--checkpoint-dir", ck, "--resume"]))
    assert f"{uri} differs from the file it was written on: its content, etag" in line
