"""A fit of Parquet files (hashed, one-hot or both), a prediction and an evaluation import no pandas (pyarrow's
``to_numpy``, ``pa.array`` and ``pa.scalar`` would import it: streamgd.data.arrow_numpy reads and writes the buffers
instead), and the buffer reads and writes give what ``to_numpy`` and ``pa.array`` give."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamgd.data.arrow_numpy import from_numpy, numbers, strings, valid_rows

PROBE = """
import json, sys
from streamgd.cli.main import invoke
status = invoke(sys.argv[1:])
print(json.dumps({"status": status, "pandas": "pandas" in sys.modules}))
"""


def run_command_saying(*args: str) -> tuple[dict, str]:
    """A ``streamgd`` command in a fresh process: its exit status and whether it imported pandas, and what it
    printed."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], check=False, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


def run_command(*args: str) -> dict:
    """A ``streamgd`` command in a fresh process: its exit status and whether it imported pandas."""
    return run_command_saying(*args)[0]


def run_fit(*args: str) -> dict:
    """``streamgd fit`` in a fresh process: its exit status and whether it imported pandas."""
    return run_command("fit", *args)


@pytest.fixture(scope="module")
def click_log(tmp_path_factory) -> str:
    """A small click log as the benchmark's: an int8 label, counts with nulls, text columns with nulls
    (dictionary-encoded in the file; C1..C4 with at most 80 values, C5 with hundreds), a float32 and a boolean
    column, and a sample weight."""
    rng = np.random.default_rng(3)
    n = 6000
    text = {f"C{k}": pa.array([None if rng.random() < 0.05 else f"v{int(v)}" for v in rng.zipf(1.5, n) % (20 * k)])
            for k in range(1, 5)}
    text["C5"] = pa.array([f"w{int(v)}" for v in rng.integers(0, 700, n)])
    counts = rng.poisson(3.0, n).astype(np.int32)
    path = str(tmp_path_factory.mktemp("clicks") / "clicks.parquet")
    table = pa.table({"label": pa.array((rng.random(n) < 0.3).astype(np.int8)),
                      "I1": pa.array(counts, mask=rng.random(n) < 0.1), "I2": rng.standard_normal(n).astype(np.float32),
                      "flag": rng.random(n) < 0.5, "w": rng.random(n) + 0.5, **text})
    pq.write_table(table, path, row_group_size=1500)
    return path


def test_a_click_log_fit_imports_no_pandas(click_log, tmp_path):
    model = str(tmp_path / "m.safetensors")
    hashed = run_fit(click_log, "--target", "label", "--model", "logistic", "--categorical", "C1,C2,C3,C4",
                     "--hash-bits", "12", "--missing", "impute", "--epochs", "1", "--exclude", "w", "--out", model)
    assert hashed == {"status": 0, "pandas": False}
    weighted = run_fit(click_log, "--target", "label", "--missing", "impute", "--sample-weight", "w",
                       "--class-weight", "balanced", "--epochs", "1", "--batch-size", "256", "--hash-bits", "12",
                       "--quiet")
    assert weighted == {"status": 0, "pandas": False}


def test_one_hot_fits_and_their_predictions_import_no_pandas(click_log, tmp_path):
    """The default encoding (one-hot for C1..C4, whose first rows hold few values; C5 hashed), again with the
    statistics stored by the first run (``--cache``), every column one-hot (most frequent values kept), a numeric
    column as categorical; then predict and evaluate each model."""
    cache = ("--exclude", "w", "--cache", str(tmp_path / "cache"))
    fits = {"auto": (cache, "4 text columns one-hot"), "stored statistics": (cache, "4 text columns one-hot"),
            "onehot": (("--exclude", "w", "--encoding", "onehot", "--max-categories", "30"), "5 text columns one-hot"),
            "numeric": (("--exclude", "w", "--categorical", "I1"), "1 numeric column as categoricals one-hot")}
    imported = {}
    for name, (options, said) in fits.items():
        model = str(tmp_path / f"{name.replace(' ', '-')}.safetensors")
        fitted, output = run_command_saying("fit", click_log, "--target", "label", "--missing", "impute", "--epochs",
                                            "1", *options, "--out", model)
        assert fitted["status"] == 0 and said in output, output
        predicted = run_command("predict", model, click_log, "--out", model + ".parquet")
        evaluated = run_command("evaluate", model, click_log)
        imported[name] = [fitted["pandas"], predicted["pandas"], evaluated["pandas"]]
    assert imported == {name: [False, False, False] for name in fits}


def test_strings_are_pa_arrays_strings():
    values = ["a", "", "héllo", "z" * 300, "日本"]
    for arrow_type in (pa.string(), pa.large_string()):
        for mask in (None, np.array([False, True, False, False, True]), np.zeros(5, dtype=bool)):
            got = strings(values, arrow_type, mask)
            got.validate(full=True)
            assert got.equals(pa.array(values, arrow_type, mask=mask)), (arrow_type, mask)
        assert strings([], arrow_type).equals(pa.array([], arrow_type))
    assert strings(["b", "a"]).type == pa.large_string()
    for bad in ([1, "a"], [None]):
        with pytest.raises(TypeError):
            strings(bad)
    with pytest.raises(ValueError):
        strings(["a"], pa.string(), np.array([True, False]))


def arrays() -> list[pa.Array | pa.ChunkedArray]:
    """Numbers and booleans of every width, with and without nulls, sliced, chunked and empty."""
    found = []
    for dtype in (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint32(), pa.float32(), pa.float64(),
                  pa.bool_()):
        for with_nulls in (False, True):
            values = [i % 2 == 1 if pa.types.is_boolean(dtype) else (i * 37) % 101 for i in range(70)]
            array = pa.array([None if with_nulls and i % 9 == 4 else v for i, v in enumerate(values)], type=dtype)
            found += [array, array.slice(11, 40), pa.chunked_array([array.slice(3, 13), array.slice(29, 30)]),
                      pa.chunked_array([], type=dtype)]
    return found


def test_numbers_are_to_numpys_values():
    for array in arrays():
        expected = array.to_numpy(zero_copy_only=False)
        if expected.dtype == object:  # booleans with nulls: to_numpy gives Python objects, numbers() floats
            expected = np.array([np.nan if v is None else float(v) for v in expected])
        got = numbers(array)
        assert got.dtype == expected.dtype and np.array_equal(got, expected, equal_nan=True), (array.type, got)
        if array.null_count == 0 and isinstance(array, pa.Array) and not pa.types.is_boolean(array.type):
            assert not got.flags.writeable  # a view of Arrow's immutable buffer


def test_nulls_take_the_value_asked_for_and_validity_is_the_bitmap():
    array = pa.array([5, None, 7, None, 9], type=pa.int32()).slice(1, 4)
    assert numbers(array, null=-1).tolist() == [-1, 7, -1, 9] and numbers(array, null=-1).dtype == np.int32
    for each in arrays():
        for chunk in each.chunks if isinstance(each, pa.ChunkedArray) else [each]:
            assert valid_rows(chunk).tolist() == chunk.is_valid().to_pylist()
    text = pa.array(["a", None, "b", "a", None, "c"])
    for array in (text, text.slice(1, 4), text.dictionary_encode().slice(1, 5), pa.nulls(3)):
        assert valid_rows(array).tolist() == array.is_valid().to_pylist(), array.type


def test_from_numpy_shares_the_values():
    order = np.array([4, 0, 2], dtype=np.int64)
    assert from_numpy(order).to_pylist() == [4, 0, 2]
    assert pa.array(["a", "b", "c", "d", "e"]).take(from_numpy(order)).to_pylist() == ["e", "a", "c"]
    with pytest.raises(TypeError):
        from_numpy(np.array(["a", 1], dtype=object))
    mask = np.arange(11) % 4 == 1
    for values in (np.linspace(-1.0, 1.0, 11), np.arange(11, dtype=np.uint16), np.arange(11) % 3 == 0,
                   np.array([f"v{i}" for i in range(11)])):
        for rows in (None, mask, np.zeros(11, dtype=bool)):
            got = from_numpy(values, rows)
            got.validate(full=True)
            assert got.equals(pa.array(values, mask=rows)), (values.dtype, rows)


FRESH = """
import json, sys
import numpy as np, pyarrow as pa
from streamgd.data.arrow_numpy import from_numpy
from streamgd.features.targets import LabelEncoder
from streamgd.kernels.jit import warm_up
labels = pa.chunked_array([from_numpy(np.array([1, 0, 0, 1], dtype=np.int8))])
encoded = LabelEncoder([0, 1]).encode(labels).tolist()
before = "numba.np.arraymath" in sys.modules
warm_up().join()
print(json.dumps({"encoded": encoded, "before": before, "after": "numba.np.arraymath" in sys.modules}))
"""


def test_labels_zero_to_k_need_no_compiler_and_warm_up_sets_numba_up():
    """Integer labels 0..K-1 are encoded without a compiled call, so the set-up's label reads run beside
    ``warm_up``, whose thread loads Numba's lowering registries (numba.np.arraymath among them)."""
    done = subprocess.run([sys.executable, "-c", FRESH], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"encoded": [1.0, 0.0, 0.0, 1.0], "before": False,
                                                                 "after": True}


def test_own_index_labels_match_the_compiled_path():
    from streamgd.errors import DataError
    from streamgd.features.targets import LabelEncoder

    rng = np.random.default_rng(5)
    for classes, values in (([0, 1], rng.integers(0, 2, 500).astype(np.int8)),
                            ([0, 1, 2], rng.integers(0, 3, 500).astype(np.uint16)),
                            ([False, True], rng.random(500) < 0.4), ([1, 3], 1 + 2 * rng.integers(0, 2, 500))):
        column = pa.chunked_array([pa.array(values[:200]), pa.array(values[200:])])
        expected = np.searchsorted(np.array(classes, dtype=np.float64), values.astype(np.float64))
        assert np.array_equal(LabelEncoder(classes).encode(column), expected.astype(np.float64)), classes
    for bad, label in (([0, 1, 2, 0], 2), ([1, -1, 0], -1)):
        with pytest.raises(DataError, match=f"the label {label}, which is not among the classes"):
            LabelEncoder([0, 1]).encode(pa.chunked_array([pa.array(np.array(bad, dtype=np.int8))]))
