"""The epoch cache (``--cache DIR``): bit-identical models with and without it for every shuffle mode and feature
path, reuse across runs, misses on changed data or versions, damaged entries rebuilt, a full disk and the size
bound survived, exact resume, flat memory, and the command line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import streamgd
from streamgd.cli.main import main
from streamgd.data.cache import FORMAT_VERSION, CacheWarning
from streamgd.data.cache import keys as cache_keys
from streamgd.data.cache import store as cache_store
from conftest import reported_lines

ROWS, GROUP = 6000, 1000  # six units


def _table(seed: int) -> pa.Table:
    """Numeric features with nulls, a string column, a weight and a binary target."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((ROWS, 3))
    x0 = X[:, 0].copy()
    x0[rng.random(ROWS) < 0.05] = np.nan
    cat = np.array(["red", "green", "blue", "cyan", "gray"])[rng.integers(0, 5, ROWS)]
    y = (X @ [1.0, -2.0, 0.5] + (cat == "red") + rng.standard_normal(ROWS) > 0).astype(np.int64)
    return pa.table({"x0": x0, "x1": X[:, 1].astype(np.float32), "x2": X[:, 2], "c": cat, "w": rng.random(ROWS),
                     "y": y})


@pytest.fixture
def data(tmp_path) -> str:
    path = str(tmp_path / "t.parquet")
    pq.write_table(_table(0), path, row_group_size=GROUP)
    return path


DENSE = dict(features=["x1", "x2"])
HASHED = dict(categorical=["c"], encoding="hash", hash_bits=10, missing="drop-rows", sample_weight="w")
IMPUTED = dict(categorical=["c"], missing="impute")
FEATURES = {"dense": DENSE, "hashed-drop-rows-weights": HASHED, "onehot-impute": IMPUTED}


def _fit(path, cache=None, epochs=3, shuffle="row-groups", **options):
    options = {**options}
    features = options.pop("features", None)
    return streamgd.fit(path, target="y", features=features, epochs=epochs, shuffle=shuffle, batch_size=64, seed=1,
                        cache=None if cache is None else str(cache), **options)


def _same(a, b) -> None:
    assert np.array_equal(a.coef_, b.coef_) and np.array_equal(a.intercept_, b.intercept_)


def _units_on_disk(cache) -> list[str]:
    return sorted(name for name in os.listdir(os.path.join(cache, "units")) if name.endswith(".bin"))


@pytest.mark.parametrize("shuffle", ["none", "row-groups", "buffer:2"])
@pytest.mark.parametrize("kind", list(FEATURES))
def test_models_are_bit_identical_with_and_without_the_cache(data, tmp_path, shuffle, kind):
    plain = _fit(data, shuffle=shuffle, **FEATURES[kind])
    cached = _fit(data, tmp_path / "cache", shuffle=shuffle, **FEATURES[kind])
    _same(plain, cached)
    assert [e["loss"] for e in plain.history] == [e["loss"] for e in cached.history]
    first, *later = [e["cache"] for e in cached.history]
    assert (first["hits"], first["misses"], first["written"]) == (0, 6, 6)
    assert all((e["hits"], e["misses"], e["written"]) == (6, 0, 0) for e in later)
    assert len(_units_on_disk(tmp_path / "cache")) == 6


def test_a_second_run_reads_every_unit_from_the_cache_and_gives_the_same_model(data, tmp_path):
    first = _fit(data, tmp_path / "cache", **HASHED)
    second = _fit(data, tmp_path / "cache", **HASHED)
    _same(first, second)
    assert [e["cache"]["hits"] for e in second.history] == [6, 6, 6]
    assert sum(e["cache"]["written"] for e in second.history) == 0
    assert second.history[0]["cache"]["bytes_read"] == first.history[0]["cache"]["bytes_written"] > 0


def test_another_transform_is_a_miss_not_a_stale_read(data, tmp_path):
    _fit(data, tmp_path / "cache", **IMPUTED)
    other = _fit(data, tmp_path / "cache", **{**IMPUTED, "dtype": "float64"})
    assert other.history[0]["cache"]["hits"] == 0
    _same(other, _fit(data, **{**IMPUTED, "dtype": "float64"}))
    assert len(_units_on_disk(tmp_path / "cache")) == 12


def test_a_rewritten_source_file_is_a_miss(data, tmp_path):
    _fit(data, tmp_path / "cache", **HASHED)
    pq.write_table(_table(1), data, row_group_size=GROUP)  # other values, same name and shape
    rerun = _fit(data, tmp_path / "cache", **HASHED)
    assert rerun.history[0]["cache"]["hits"] == 0 and rerun.history[0]["cache"]["written"] == 6
    _same(rerun, _fit(data, **HASHED))


def test_a_cache_of_another_streamgd_version_is_a_miss(data, tmp_path, monkeypatch):
    _fit(data, tmp_path / "cache", **DENSE)
    monkeypatch.setattr(cache_keys, "__version__", "99.0")  # what names the units
    rerun = _fit(data, tmp_path / "cache", **DENSE)
    assert rerun.history[0]["cache"]["hits"] == 0
    _same(rerun, _fit(data, **DENSE))


@pytest.mark.parametrize("damage", ["truncate", "flip", "index-not-json", "index-of-another-format"])
def test_a_damaged_cache_file_is_rebuilt_with_one_warning(data, tmp_path, damage):
    cache = tmp_path / "cache"
    reference = _fit(data, cache, **HASHED)
    for name in _units_on_disk(cache)[:2]:
        path = os.path.join(cache, "units", name)
        index = path[:-4] + ".json"
        if damage == "truncate":
            os.truncate(path, os.path.getsize(path) // 2)
        elif damage == "flip":  # same size, some bytes changed: only the checksum tells
            with open(path, "r+b") as stream:
                stream.seek(100)
                stream.write(b"\x7f" * 16)
        elif damage == "index-not-json":  # cut short by a crash of a filesystem that does not order writes
            with open(index, "r+b") as stream:
                stream.truncate(10)
        else:
            with open(index) as stream:
                entry = json.load(stream)
            with open(index, "w") as stream:
                json.dump({**entry, "format": FORMAT_VERSION + 1}, stream)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rerun = _fit(data, cache, **HASHED)
    said = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(said) == 1 and "damaged" in said[0] and "rebuilding it from Parquet" in said[0]
    stats = rerun.history[0]["cache"]
    assert (stats["damaged"], stats["hits"], stats["written"]) == (2, 4, 2)
    assert [e["cache"]["hits"] for e in rerun.history[1:]] == [6, 6]
    _same(rerun, reference)


def test_a_full_disk_while_writing_leaves_training_on_parquet_with_one_warning(data, tmp_path, monkeypatch):
    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_store, "write_unit_file", disk_full)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _fit(data, tmp_path / "cache", **HASHED)
    said = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(said) == 1 and "the disk is full" in said[0]
    assert [e["cache"]["hits"] for e in model.history] == [0, 0, 0]
    assert sum(e["cache"]["written"] for e in model.history) == 0
    assert _units_on_disk(tmp_path / "cache") == [] and os.listdir(tmp_path / "cache" / "units") == []
    _same(model, _fit(data, **HASHED))


def test_the_size_bound_is_respected_and_units_beyond_it_come_from_parquet(data, tmp_path):
    probe = _fit(data, tmp_path / "probe", epochs=1, **DENSE)
    unit_bytes = probe.history[0]["cache"]["bytes_written"] // 6
    bound = int(2.5 * (unit_bytes + 4096))  # room for two units and their index entries
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _fit(data, tmp_path / "cache", cache_max_size=bound, **DENSE)
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1
    assert [(e["cache"]["hits"], e["cache"]["misses"]) for e in model.history] == [(0, 6), (2, 4), (2, 4)]
    used = sum(entry.stat().st_size for entry in os.scandir(tmp_path / "cache" / "units"))
    assert used <= bound and len(_units_on_disk(tmp_path / "cache")) == 2
    _same(model, _fit(data, **DENSE))


def test_a_resumed_run_with_the_cache_equals_an_uninterrupted_run_without(data, tmp_path):
    settings = dict(HASHED, epochs=4, shuffle="buffer:2", checkpoint_dir=str(tmp_path / "ck"), checkpoint_every=1)

    def stop_in_the_second_epoch(progress):
        if progress.epoch == 1 and progress.rows_done >= GROUP:  # after the first step (two units)
            trainer._interrupted = True

    trainer = streamgd.Trainer(on_chunk=stop_in_the_second_epoch, model="logistic", batch_size=64, seed=1,
                               cache=str(tmp_path / "cache"), **settings)
    with pytest.raises(streamgd.errors.TrainingInterrupted):
        trainer.fit(data, target="y")
    resumed = _fit(data, tmp_path / "cache", resume=True, **settings)
    assert resumed.summary["resumed_from"] is not None
    # the first epoch's record is the interrupted run's; it stopped after the second epoch's second step (the
    # stop asked after a chunk takes effect after the next one), so the resumed run read its last step's two units
    assert [e["cache"]["hits"] for e in resumed.history] == [0, 2, 6, 6]
    _same(resumed, _fit(data, **dict(HASHED, epochs=4, shuffle="buffer:2")))


def test_validation_reads_the_cache_too_and_its_losses_are_identical(data, tmp_path):
    plain = _fit(data, validation=0.34, **IMPUTED)
    cached = _fit(data, tmp_path / "cache", validation=0.34, **IMPUTED)
    assert [e["validation_loss"] for e in plain.history] == [e["validation_loss"] for e in cached.history]
    _same(plain, cached)
    assert len(_units_on_disk(tmp_path / "cache")) == 6  # four training units, two held out


def test_an_unwritable_cache_directory_is_one_line_and_exit_2(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(main, ["fit", data, "--target", "y", "--cache", str(blocker / "cache"), "--quiet"])
    assert result.exit_code == 2
    assert reported_lines(result.stderr) == [f"error: --cache {blocker / 'cache'}: {blocker} is a file, so nothing "
                                             "can be created under it"]
    with pytest.raises(streamgd.ConfigError, match="is a file"):
        _fit(data, blocker / "cache", **DENSE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_cache_directory_is_refused_before_training(data, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        result = CliRunner().invoke(main, ["fit", data, "--target", "y", "--cache", str(cache), "--quiet"])
    finally:
        cache.chmod(0o700)
    assert result.exit_code == 2 and "cannot create files" in result.stderr


def test_bad_cache_settings_are_one_line_errors(data, tmp_path):
    for args, expected in ((["--cache-max-size", "lots"], "cache_max_size 'lots' is not a size"),
                           (["--cache", str(tmp_path / "c"), "--cache-max-size", "-5MB"], "is not a size")):
        result = CliRunner().invoke(main, ["fit", data, "--target", "y", "--quiet", *args])
        assert result.exit_code == 2 and expected in result.stderr and "Traceback" not in result.stderr
    result = CliRunner().invoke(main, ["fit", data, "--target", "y", "--quiet", "--cache-max-size", "1GB"])
    assert result.exit_code == 2 and "give cache (a directory) too" in result.stderr


def test_the_command_line_caches_and_inspect_shows_the_cache(data, tmp_path):
    cache = tmp_path / "cache"
    args = ["fit", data, "--target", "y", "--epochs", "2", "--cache", str(cache), "--quiet", "--json",
            "--categorical", "c", "--hash-bits", "10", "--missing", "impute"]
    first = CliRunner().invoke(main, args)
    second = CliRunner().invoke(main, args)
    assert first.exit_code == second.exit_code == 0, first.stderr
    assert reported_lines(second.stderr) == []
    shown = CliRunner().invoke(main, ["inspect", "--cache", str(cache)])
    assert shown.exit_code == 0
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"epoch cache {cache} (format {FORMAT_VERSION} of streamgd")
    assert lines[1].startswith(f"  units: 6, rows: {ROWS:,}, bytes: ")
    assert lines[2] == "  statistics passes stored: 1 (a later run on the same files skips its pass)"
    assert f"    {os.path.abspath(data)}: 6 units, {ROWS:,} rows" in shown.stdout and "(current)" in shown.stdout
    pq.write_table(_table(2), data, row_group_size=GROUP)
    assert "the file changed since" in CliRunner().invoke(main, ["inspect", "--cache", str(cache)]).stdout


def test_cache_files_are_raw_arrays_described_by_their_index_entry(data, tmp_path):
    _fit(data, tmp_path / "cache", epochs=1, **HASHED)
    name = _units_on_disk(tmp_path / "cache")[0]
    with open(os.path.join(tmp_path / "cache", "units", name[:-4] + ".json")) as stream:
        entry = json.load(stream)
    assert set(entry["arrays"]) == {"X", "y", "slot", "indptr", "indices", "values", "extra"}
    X, slot = entry["arrays"]["X"], entry["arrays"]["slot"]
    kept = X["shape"][0]  # the rows drop-rows kept (x0 is null in about 5% of them)
    assert X["dtype"] == "<f4" and X["shape"][1] == 3 and X["order"] == "F"  # x0, x1, x2 (w: the weight)
    assert 0.9 * GROUP < kept < GROUP and slot["shape"] == [GROUP] and entry["arrays"]["y"]["shape"] == [kept]
    assert entry["source"]["path"] == os.path.abspath(data) and entry["unit"]["n_rows"] == GROUP
    assert os.path.getsize(os.path.join(tmp_path / "cache", "units", name)) == entry["size"]


@pytest.mark.slow
def test_peak_memory_with_the_cache_stays_within_ten_percent_of_without(tmp_path):
    """2M rows x 16 float32 (128 MB decoded), three epochs, each run in its own process."""
    from streamgd.bench.synthetic import make_dataset

    path = str(tmp_path / "big.parquet")
    make_dataset(path, n_rows=2_000_000, n_features=16, task="binary", seed=0)
    script = ("import sys, json, streamgd, resource; m = streamgd.fit(sys.argv[1], target='y', epochs=3, "
              "cache=sys.argv[2] or None, standardize=False); print(json.dumps([resource.getrusage("
              "resource.RUSAGE_SELF).ru_maxrss / 1024, m.history[-1].get('cache', {}).get('hits', 0)]))")

    def peak(cache: str) -> tuple[float, int]:
        done = subprocess.run([sys.executable, "-c", script, path, cache], capture_output=True, text=True,
                              check=True)
        return tuple(json.loads(done.stdout.strip().splitlines()[-1]))

    without, _ = peak("")
    first_run, _ = peak(str(tmp_path / "cache"))
    second_run, hits = peak(str(tmp_path / "cache"))
    assert hits > 0
    assert first_run <= 1.1 * without + 10 and second_run <= 1.1 * without + 10, (without, first_run, second_run)


def test_an_estimators_fit_parquet_with_the_cache_equals_one_without(data, tmp_path):
    from streamgd.estimators import SGDClassifier

    settings = dict(max_iter=3, batch_size=64, random_state=1)
    plain = SGDClassifier(**settings).fit_parquet(data, target="y", features=["x1", "x2"])
    cached = SGDClassifier(**settings).fit_parquet(data, target="y", features=["x1", "x2"],
                                                   cache=str(tmp_path / "cache"), cache_max_size="1GB")
    assert np.array_equal(plain.coef_, cached.coef_) and np.array_equal(plain.intercept_, cached.intercept_)
    assert [(e["cache"]["hits"], e["cache"]["misses"]) for e in cached.history_] == [(0, 6), (6, 0), (6, 0)]


@pytest.mark.parametrize("kind", ["onehot-impute", "hashed-drop-rows-weights"])
def test_a_later_run_takes_the_statistics_from_the_cache_and_skips_the_pass(data, tmp_path, monkeypatch,
                                                                                  kind):
    """The statistics pass's result (numbers and one-hot vocabularies) is stored in the cache: a second run skips
    the pass, and its model is the uncached run's, bit for bit."""
    from streamgd.training import run_setup

    plain = _fit(data, **FEATURES[kind])
    _fit(data, tmp_path / "cache", epochs=1, **FEATURES[kind])
    assert len(os.listdir(tmp_path / "cache" / "stats")) == 1

    def no_pass(*args, **kwargs):
        raise AssertionError("the statistics pass ran")

    monkeypatch.setattr(run_setup, "compute_stats", no_pass)
    again = _fit(data, tmp_path / "cache", **FEATURES[kind])
    _same(plain, again)
    assert again.summary["statistics"] == plain.summary["statistics"]
    assert all(e["cache"]["misses"] == 0 for e in again.history)


def test_statistics_of_a_rewritten_file_are_computed_afresh(data, tmp_path):
    _fit(data, tmp_path / "cache", epochs=1, **IMPUTED)
    table = _table(5)
    pq.write_table(table, data, row_group_size=GROUP)
    fresh = _fit(data, tmp_path / "cache", epochs=1, **IMPUTED)
    assert fresh.summary["statistics"]["rows"] == ROWS
    assert fresh.summary["statistics"] == _fit(data, epochs=1, **IMPUTED).summary["statistics"]
    assert len(os.listdir(tmp_path / "cache" / "stats")) == 2


def test_a_damaged_statistics_file_is_computed_afresh(data, tmp_path):
    first = _fit(data, tmp_path / "cache", epochs=1, **IMPUTED)
    (stored,) = os.listdir(tmp_path / "cache" / "stats")
    with open(tmp_path / "cache" / "stats" / stored, "w") as stream:
        stream.write('{"format": 1, "key": "')
    again = _fit(data, tmp_path / "cache", epochs=1, **IMPUTED)
    assert again.summary["statistics"] == first.summary["statistics"]
    _same(again, first)
    with open(tmp_path / "cache" / "stats" / stored) as stream:
        assert json.load(stream)["statistics"]["rows"] == ROWS  # rewritten whole


def test_a_cache_directory_whose_units_folder_is_a_file_is_one_line_and_exit_2(data, tmp_path):
    """(Root writes into read-only directories, so an unwritable cache is tested this way too.)"""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "units").write_text("not a folder")
    result = CliRunner().invoke(main, ["fit", data, "--target", "y", "--cache", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 2
    assert reported_lines(result.stderr) == [f"error: --cache {tmp_path / 'cache'}: cannot create "
                                             f"{tmp_path / 'cache' / 'units'} (File exists); give another directory"]


def test_a_slow_disk_does_not_stall_the_first_epoch_units_wait_for_the_second(data, tmp_path, monkeypatch):
    """A unit that finds the writer busy (its backlog full) is not written in the first epoch: training goes on,
    the second epoch's miss writes it (waiting for room), the third reads every unit from the cache, and the model
    is the uncached one, bit for bit."""
    import time

    write = cache_store.write_unit_file

    def slow_write(*args):
        time.sleep(0.2)
        write(*args)

    monkeypatch.setattr(cache_store, "write_unit_file", slow_write)
    monkeypatch.setattr(cache_store, "_WRITE_BACKLOG_BYTES", 1)  # one unit in flight at a time
    model = _fit(data, tmp_path / "cache", epochs=4, **DENSE)
    first, second, *later = [e["cache"] for e in model.history]
    assert first["hits"] == 0 and first["written"] >= 1 and first["deferred"] >= 1
    assert first["written"] + first["deferred"] == 6
    assert (second["hits"], second["misses"], second["written"], second["deferred"]) == \
        (first["written"], first["deferred"], first["deferred"], 0)
    assert all((c["hits"], c["misses"]) == (6, 0) for c in later)
    _same(model, _fit(data, epochs=4, **DENSE))
