"""Outputs never destroy inputs, and a bad output path is refused before any training."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from streamgd.cli.main import invoke
from streamgd.errors import ConfigError
from streamgd.io.atomic import atomic_write
from streamgd.io.outputs import check_output_dir, check_output_file
from streamgd.io.storage import DEFAULT_S3_RETRIES
from conftest import reported_lines


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, regression):
    path = regression[0]
    model = str(tmp_path_factory.mktemp("model") / "m.safetensors")
    assert invoke(["fit", path, "--target", "y", "--model", "linear", "--epochs", "1", "--quiet", "--out", model]) == 0
    return path, model


def _fails_with(capsys, args, words):
    status = invoke(args)
    err = capsys.readouterr().err
    lines = reported_lines(err)
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert words in lines[0], lines[0]


def test_predict_refuses_to_overwrite_its_input_or_the_model(trained, tmp_path, capsys):
    data, model = trained
    before, model_before = _digest(data), _digest(model)
    _fails_with(capsys, ["predict", model, data, "--out", data], "is one of the inputs")
    _fails_with(capsys, ["predict", model, data, "--out", model], "is one of the inputs")
    link = tmp_path / "link.parquet"
    os.symlink(data, link)
    _fails_with(capsys, ["predict", model, str(link), "--out", data], "is one of the inputs")
    _fails_with(capsys, ["predict", model, data, "--out", str(link)], "is one of the inputs")
    assert _digest(data) == before and _digest(model) == model_before


def test_predict_refuses_a_device_and_a_directory(trained, tmp_path, capsys):
    data, model = trained
    _fails_with(capsys, ["predict", model, data, "--out", "/dev/null"], "not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    _fails_with(capsys, ["predict", model, data, "--out", str(tmp_path)], "is a directory")


def test_remote_outputs_are_never_written_to_a_local_folder(trained, tmp_path, capsys, monkeypatch):
    data, model = trained
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there: refused at once
    _fails_with(capsys, ["predict", model, data, "--out", "s3://bucket/p.parquet"],
                "--out s3://bucket/p.parquet: cannot reach it: the store kept failing")
    _fails_with(capsys, ["fit", data, "--target", "y", "--out", "s3://bucket/m.safetensors"], "s3://bucket/m")
    _fails_with(capsys, ["fit", data, "--target", "y", "--checkpoint-dir", "foo://bucket/ckpt"],
                "unknown scheme foo://")
    assert os.listdir(tmp_path) == []


@pytest.fixture
def failing_store(monkeypatch):
    """An S3 endpoint that answers 503 Service Unavailable to every request and logs each one (tests/s3_server.py's
    proxy, with nothing behind it), set as the environment's endpoint, with credentials."""
    from s3_server import Fault, FaultProxy

    proxy = FaultProxy(("127.0.0.1", 9))
    proxy.inject(Fault(status=503, times=None))
    for name, value in {"AWS_ENDPOINT_URL": proxy.url, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("command, out", [
    (["predict", "{model}", "{data}", "--out"], "s3://bucket/p.parquet"),
    (["fit", "{data}", "--target", "y", "--out"], "s3://bucket/m.safetensors"),
    (["fit", "{data}", "--target", "y", "--checkpoint-dir"], "s3://bucket/ckpt"),
])
def test_the_checks_before_a_run_try_a_failing_store_three_times_not_ten(trained, failing_store, capsys, command,
                                                                         out):
    """The run's own requests are tried 10 times (storage.DEFAULT_S3_RETRIES, with backoff); the checks
    before it, 3 times (storage.QUICK_S3_RETRIES), counted where they arrive: the first check (does the bucket exist?)
    reaches the store 2 or 3 times, then the command stops with one line. The SDK's standard strategy makes
    max_attempts attempts against a store that keeps failing, or one fewer (measured here: 2, 2 and 3; with 10
    attempts allowed, 9 requests)."""
    data, model = trained
    args = [part.format(model=model, data=data) for part in command] + [out]
    _fails_with(capsys, args, f"{out}: cannot reach it: the store kept failing")
    requests = [(method, path) for method, path, _, _ in failing_store.log.entries]
    assert requests and set(requests) == {("HEAD", "/bucket")}, requests
    print(f"{args[0]} {out}: {len(requests)} requests")
    assert len(requests) in (2, 3) and DEFAULT_S3_RETRIES == 10


@pytest.mark.parametrize("option,value,words", [
    ("--out", "/proc/m.safetensors", "cannot create files in /proc"),
    ("--out", "{tmp}", "is a directory"),
    ("--out", "{data}", "is one of the inputs"),
    ("--history", "{data}", "is one of the inputs"),
    ("--checkpoint-dir", "{data}/ckpt", "is a file"),
    ("--checkpoint-dir", "{data}", "not a directory"),
])
def test_fit_checks_every_output_before_training(trained, tmp_path, capsys, option, value, words):
    data, _ = trained
    before = _digest(data)
    _fails_with(capsys, ["fit", data, "--target", "y", "--model", "linear", "--quiet",
                         option, value.format(tmp=tmp_path, data=data)], words)
    assert _digest(data) == before


def test_fit_refuses_the_same_file_for_two_outputs(trained, tmp_path, capsys):
    data, _ = trained
    same = str(tmp_path / "m.safetensors")
    _fails_with(capsys, ["fit", data, "--target", "y", "--out", same, "--history", same], "the same file")


def test_fit_without_out_says_the_model_is_not_saved(trained, capsys):
    data, _ = trained
    assert invoke(["fit", data, "--target", "y", "--model", "linear", "--epochs", "1", "--quiet"]) == 0
    assert "the trained model will not be saved" in capsys.readouterr().err


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_honour_the_umask(trained, tmp_path, mask):
    data, _ = trained
    previous = os.umask(mask)
    try:
        out, history = tmp_path / "m.safetensors", tmp_path / "h.json"
        predictions, ckpt = tmp_path / "p.parquet", tmp_path / "ckpt"
        assert invoke(["fit", data, "--target", "y", "--model", "linear", "--epochs", "1", "--quiet", "--out",
                       str(out), "--history", str(history), "--checkpoint-dir", str(ckpt)]) == 0
        assert invoke(["predict", str(out), data, "--out", str(predictions)]) == 0
        written = [out, history, predictions] + sorted(ckpt.iterdir())
        assert len(written) >= 4
        for path in written:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask, path
    finally:
        os.umask(previous)


def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "kept.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    atomic_write(path, lambda tmp: open(tmp, "w").write("new"))
    assert path.read_text() == "new" and stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_checks_as_functions(tmp_path):
    assert check_output_file("file://" + str(tmp_path / "a.parquet")) == str(tmp_path / "a.parquet")
    assert check_output_dir(tmp_path / "new" / "deeper") == str(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # checked, not created
    with pytest.raises(ConfigError, match="unknown scheme foo://"):
        check_output_file("foo://container/x.parquet", what="--out")


def test_the_python_api_refuses_to_overwrite_the_input(trained):
    import streamgd

    data, model = trained
    before = _digest(data)
    with pytest.raises(ConfigError, match="is one of the inputs"):
        streamgd.predict_to_parquet(streamgd.load(model), data, data)
    assert _digest(data) == before
