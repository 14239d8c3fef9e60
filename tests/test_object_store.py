"""Object stores end to end, against a real S3 protocol server on 127.0.0.1 (moto behind a fault-injecting proxy,
tests/s3_server.py): reading a bucket prefix, writing models, checkpoints, histories and predictions to a
bucket, resuming from a bucket, retries, and the one-line errors of a missing bucket or key, wrong credentials and
a refused write.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import reported_lines, set_environment
from s3_server import Fault

import streamgd
from streamgd.cli.main import invoke
from streamgd.data.dataset import list_files
from streamgd.training.checkpoint import list_checkpoints, read_checkpoint, serial_of

SETTINGS = dict(model="logistic", batch_size=50, epochs=2, optimizer="adam", seed=3, shuffle="row-groups")
CLI_SETTINGS = ["--target", "y", "--batch-size", "50", "--epochs", "2", "--optimizer", "adam", "--seed", "3",
                "--quiet"]


@pytest.fixture(scope="module")
def local_files(tmp_path_factory):
    """Two Parquet files of 4 row groups x 150 rows each: three features and a 0/1 target."""
    rng = np.random.default_rng(5)
    directory = tmp_path_factory.mktemp("store")
    for k in range(2):
        X = rng.standard_normal((600, 3))
        y = (rng.random(600) < 1 / (1 + np.exp(-(X @ [1.0, -2.0, 0.5])))).astype(np.int64)
        pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}),
                       directory / f"part-{k}.parquet", row_group_size=150)
    return directory


@pytest.fixture(scope="module")
def bucket(s3_server, local_files):
    """The files of ``local_files`` under s3://train/data/, uploaded with boto3; an empty bucket ``out``."""
    s3_server.upload_tree("train", "data", {p.name: p.read_bytes() for p in sorted(local_files.iterdir())})
    s3_server.boto3().create_bucket(Bucket="out")
    return "s3://train/data/"


@pytest.fixture
def aws(s3_server, monkeypatch):
    """The standard AWS environment of the admin user, pointing at the local server; no fault left behind, and
    a request log of this test's requests only."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    s3_server.proxy.faults.clear()
    s3_server.proxy.log.clear()
    yield s3_server
    s3_server.proxy.faults.clear()


def _run(capsys, *args):
    """Run the CLI in this process; (exit status, stdout, the reported lines of stderr)."""
    status = invoke([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, reported_lines(captured.err)


def _object(server, uri):
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return server.boto3().get_object(Bucket=bucket, Key=key)["Body"].read()


def _keys(server, bucket, prefix=""):
    listed = server.boto3().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_fit_from_a_bucket_prefix_equals_fit_from_the_same_local_files(aws, bucket, local_files):
    local = streamgd.fit(str(local_files), target="y", **SETTINGS)
    aws.proxy.log.clear()
    remote = streamgd.fit(bucket, target="y", **SETTINGS)
    np.testing.assert_array_equal(remote.coef_, local.coef_)
    np.testing.assert_array_equal(remote.intercept_, local.intercept_)
    assert [e["loss"] for e in remote.history] == [e["loss"] for e in local.history]
    assert aws.proxy.log.count("GET", "/train/data/part-") > 0  # it did read the bucket


def test_fit_writes_model_history_and_checkpoints_to_a_bucket(aws, bucket, local_files, capsys, tmp_path):
    status, out, err = _run(capsys, "fit", bucket, *CLI_SETTINGS, "--out", "s3://out/fit/model.safetensors",
                            "--history", "s3://out/fit/history.json", "--checkpoint-dir", "s3://out/fit/ck")
    assert status == 0 and err == [], err
    local = streamgd.fit(str(local_files), target="y", **SETTINGS)
    model = streamgd.load("s3://out/fit/model.safetensors")
    np.testing.assert_array_equal(model.coef_, local.coef_)
    history = json.loads(_object(aws, "s3://out/fit/history.json"))
    assert [e["loss"] for e in history] == [e["loss"] for e in local.history]
    # one checkpoint per epoch end, no probe object left (pyarrow leaves an empty "fit/ck/" marker when it deletes
    # the last object under a prefix: a directory, never taken for a file)
    files = [key for key in _keys(aws, "out", "fit/") if not key.endswith("/")]
    assert [serial_of(key) for key in files] == [9, 18, None, None]
    assert files[2:] == ["fit/history.json", "fit/model.safetensors"]
    # no credentials in what was stored
    settings = read_checkpoint("s3://out/" + files[1]).settings
    assert "storage_options" not in settings and "storage_options" not in model.config


def test_predict_to_a_bucket_equals_predict_to_a_local_file(aws, bucket, local_files, capsys, tmp_path):
    streamgd.fit(str(local_files), target="y", **SETTINGS).save("s3://out/predict/model.safetensors")
    status, out, err = _run(capsys, "predict", "s3://out/predict/model.safetensors", bucket,
                            "--out", "s3://out/predict/p.parquet")
    assert status == 0 and err == [], err
    assert out.strip() == "1,200 predictions written to s3://out/predict/p.parquet"
    status, _, err = _run(capsys, "predict", "s3://out/predict/model.safetensors", str(local_files),
                          "--out", tmp_path / "p.parquet")
    assert status == 0, err
    remote = pq.read_table(io.BytesIO(_object(aws, "s3://out/predict/p.parquet")))
    assert remote.equals(pq.read_table(tmp_path / "p.parquet")) and remote.num_rows == 1200
    # evaluate and inspect read a model in a bucket too
    status, out, err = _run(capsys, "evaluate", "s3://out/predict/model.safetensors", bucket, "--json")
    assert status == 0 and err == [], err
    local_status, local_out, _ = _run(capsys, "evaluate", "s3://out/predict/model.safetensors", str(local_files),
                                      "--json")
    assert json.loads(out) == json.loads(local_out) and json.loads(out)["rows"] == 1200
    status, out, err = _run(capsys, "inspect", "s3://out/predict/model.safetensors", "--json")
    assert status == 0 and json.loads(out)["path"] == "s3://out/predict/model.safetensors"


def test_resume_from_a_checkpoint_in_a_bucket_is_bit_identical(aws, bucket, local_files):
    uninterrupted = streamgd.fit(bucket, target="y", **SETTINGS)
    directory = "s3://out/resume/ck"
    streamgd.fit(bucket, target="y", checkpoint_dir=directory, checkpoint_every=2, keep_checkpoints=100,
                 **SETTINGS)
    written = list_checkpoints(directory)
    assert len(written) == 10  # every 2 of 16 chunks (8 row groups an epoch), and at both epoch ends
    stopped_at = read_checkpoint(written[3]).serial
    for later in written[4:]:  # as if the run had stopped after 8 chunks
        aws.boto3().delete_object(Bucket="out", Key=later.removeprefix("s3://out/"))
    # an upload cut short under a checkpoint's name is skipped for the newest complete one; other names never count
    aws.boto3().put_object(Bucket="out", Key="resume/ck/ckpt-0000000099.safetensors", Body=b"\x10\x00\x00")
    aws.boto3().put_object(Bucket="out", Key="resume/ck/ckpt-0000000100.safetensors.part", Body=b"junk")
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        resumed = streamgd.fit(bucket, target="y", checkpoint_dir=directory, resume=True, **SETTINGS)
    assert resumed.summary["resumed_from"] == stopped_at == 8
    np.testing.assert_array_equal(resumed.coef_, uninterrupted.coef_)
    np.testing.assert_array_equal(resumed.intercept_, uninterrupted.intercept_)


@pytest.mark.parametrize("args, message", [
    (["fit", "s3://no-such-bucket/data/", *CLI_SETTINGS], "no such file or directory: s3://no-such-bucket/data/"),
    (["fit", "s3://train/no/such/key.parquet", *CLI_SETTINGS], "no such file or directory: s3://train/no/such/key"),
    (["fit", "{data}", *CLI_SETTINGS, "--out", "s3://no-such-bucket/m.safetensors"],
     "--out s3://no-such-bucket/m.safetensors: the bucket 'no-such-bucket' does not exist"),
    (["fit", "{data}", *CLI_SETTINGS, "--checkpoint-dir", "s3://no-such-bucket/ck"], "does not exist"),
    (["fit", "{data}", *CLI_SETTINGS, "--out", "s3://out/"], "is not a file name"),
    (["fit", "{data}", *CLI_SETTINGS, "--out", "s3://train/data/part-0.parquet"], "is one of the inputs"),
    (["fit", "foo://bucket/data", *CLI_SETTINGS], "unknown scheme foo://"),
    (["fit", "{data}", *CLI_SETTINGS, "--out", "foo://bucket/m.safetensors"], "unknown scheme foo://"),
    (["fit", "{data}", *CLI_SETTINGS, "--storage-option", "retries"], "expected KEY=VALUE"),
    (["fit", "{data}", *CLI_SETTINGS, "--storage-option", "colour=blue"], "unknown storage option 'colour'"),
    (["fit", "{data}", *CLI_SETTINGS, "--storage-option", "retries=0"], "at least 1"),
    (["fit", "{data}", *CLI_SETTINGS, "--cache", "s3://out/cache"], "must be on the local disk"),
    (["predict", "s3://out/no-model.safetensors", "{data}", "--out", "s3://out/p.parquet"],
     "no such streamgd model file: s3://out/no-model.safetensors"),
])
def test_a_missing_bucket_or_key_or_a_bad_uri_is_one_line_and_exit_2(aws, bucket, capsys, args, message):
    aws.proxy.log.clear()
    status, out, err = _run(capsys, *[a.format(data=bucket) for a in args])
    assert status == 2 and len(err) == 1 and message in err[0], err
    assert aws.proxy.log.count("PUT", ".safetensors") == 0  # nothing trained, nothing written


@pytest.mark.parametrize("user, args, message", [
    ("stranger", ["fit", "s3://train/data/", *CLI_SETTINGS],
     "cannot read s3://train/data/ as an object or list it as a prefix: the credentials are not valid"),
    ("stranger", ["fit", "{local}", *CLI_SETTINGS, "--out", "s3://out/m.safetensors"], "credentials"),
    ("reader", ["fit", "s3://train/data/", *CLI_SETTINGS, "--out", "s3://out/m.safetensors"],
     "--out s3://out/m.safetensors: cannot write there: access denied"),
    ("reader", ["fit", "s3://train/data/", *CLI_SETTINGS, "--checkpoint-dir", "s3://out/ck"],
     "--checkpoint-dir s3://out/ck: cannot write there: access denied"),
    # its HeadObject of "train/data" is refused: a listing still finds that the name is a prefix
    ("reader", ["fit", "{local}", *CLI_SETTINGS, "--out", "s3://train/data"], "is a prefix holding objects"),
])
def test_wrong_credentials_or_a_refused_write_is_one_line_before_training(aws, bucket, local_files, capsys,
                                                                          monkeypatch, user, args, message):
    for name, value in aws.env(user).items():
        monkeypatch.setenv(name, value)
    with aws.credentials_checked():
        status, out, err = _run(capsys, *[a.format(local=local_files) for a in args])
    assert status == 2 and len(err) == 1 and message in err[0], err
    assert aws.proxy.log.count("GET", "part-1.parquet") == 0  # refused before any data was read


PART_0, PART_1 = "s3://train/data/part-0.parquet", "s3://train/data/part-1.parquet"
REFUSED = "as an object or list it as a prefix: access denied"


@pytest.mark.parametrize("user, path, expected", [
    # reader: may list, may read train/data/*; AWS refuses its HeadObject of the key "train/data"
    ("reader", PART_0, [PART_0]),
    ("reader", "s3://train/data/", [PART_0, PART_1]),
    ("reader", "s3://train/data", [PART_0, PART_1]),
    ("reader", "s3://train/data/part-*.parquet", [PART_0, PART_1]),
    ("reader", "s3://train/data/no-such.parquet", "no such file or directory: s3://train/data/no-such.parquet"),
    ("reader", "s3://train/elsewhere", "cannot read s3://train/elsewhere: access denied"),
    # getter: may read objects, may not list: AWS answers 403 for a missing key, so a prefix cannot be told
    ("getter", PART_0, [PART_0]),
    ("getter", "s3://train/data/", f"cannot read s3://train/data/ {REFUSED}"),
    ("getter", "s3://train/data", f"cannot read s3://train/data {REFUSED}"),
    ("getter", "s3://train/data/no-such.parquet", f"cannot read s3://train/data/no-such.parquet {REFUSED}"),
])
def test_a_path_resolves_by_what_the_credentials_may_do(aws, bucket, local_files, capsys, monkeypatch,
                                                        user, path, expected):
    """A file, a prefix (with and without its slash), a glob and a missing path, for a caller whose HeadObject of
    the prefix's own key is refused but who may list (reader), and one who may not list (getter)."""
    for name, value in aws.env(user).items():
        monkeypatch.setenv(name, value)
    with aws.credentials_checked():
        if isinstance(expected, list):
            assert list_files(path) == expected
            model = streamgd.fit(path, target="y", **SETTINGS)  # and the data is read with these credentials
        else:
            status, out, err = _run(capsys, "fit", path, *CLI_SETTINGS)
    if isinstance(expected, list):
        local = streamgd.fit([str(local_files / uri.rsplit("/", 1)[1]) for uri in expected], target="y",
                             **SETTINGS)
        np.testing.assert_array_equal(model.coef_, local.coef_)
    else:
        assert status == 2 and len(err) == 1 and expected in err[0], err
        assert aws.proxy.log.count("GET", "part-") == 0  # refused before any data was read


def test_transient_errors_are_retried_and_the_result_is_the_same(aws, bucket, local_files, capsys):
    reads = aws.proxy.inject(Fault(status=503, times=2, method="GET", path="/train/data/part-1.parquet"))
    upload = aws.proxy.inject(Fault(status=500, times=1, method="PUT", path="/out/retried/model.safetensors"))
    status, out, err = _run(capsys, "fit", bucket, *CLI_SETTINGS, "--out", "s3://out/retried/model.safetensors")
    assert status == 0 and err == [], err
    assert reads.failed == 2 and upload.failed == 1  # the server failed them, the retries got through
    local = streamgd.fit(str(local_files), target="y", **SETTINGS)
    np.testing.assert_array_equal(streamgd.load("s3://out/retried/model.safetensors").coef_, local.coef_)


def test_exhausted_retries_give_one_line_naming_the_object(aws, bucket, capsys):
    aws.proxy.inject(Fault(status=503, times=None, method="GET", path="/train/data/part-1.parquet"))
    status, out, err = _run(capsys, "fit", bucket, *CLI_SETTINGS, "--storage-option", "retries=2")
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("error: cannot read s3://train/data/part-1.parquet: the store kept failing, retries "
                             "exhausted (") and "HTTP status 503" in err[0]
    # at most the 2 attempts asked for (the AWS SDK sometimes makes one fewer, whatever max_attempts is)
    assert 1 <= aws.proxy.log.count("GET", "/train/data/part-1.parquet") <= 2


def test_storage_options_give_the_endpoint_and_credentials_without_the_environment(s3_server, bucket, local_files,
                                                                                   monkeypatch):
    for name in s3_server.env():
        monkeypatch.delenv(name, raising=False)
    key, secret = s3_server.keys["admin"]
    options = {"endpoint_override": s3_server.endpoint, "region": "us-east-1", "access_key": key,
               "secret_key": secret}
    remote = streamgd.fit(bucket, target="y", storage_options=options, **SETTINGS)
    remote.save("s3://out/options/model.safetensors", storage_options=options)
    local = streamgd.fit(str(local_files), target="y", **SETTINGS)
    np.testing.assert_array_equal(streamgd.load("s3://out/options/model.safetensors", options).coef_, local.coef_)


def test_a_scheme_pyarrow_lacks_goes_through_fsspec(local_files):
    model = streamgd.fit(str(local_files), target="y", **SETTINGS)
    model.save("memory://models/m.safetensors")
    np.testing.assert_array_equal(streamgd.load("memory://models/m.safetensors").coef_, model.coef_)



def test_distributed_fit_reads_the_bucket_on_the_workers_and_equals_the_local_files(
        client, s3_server, bucket, local_files, monkeypatch):
    from streamgd.distributed import fit_distributed

    # the client signs its requests with the admin's key (its environment), the workers with the reader's (theirs):
    # the server's log then says who read what. The endpoint and region travel with the dataset.
    for name, value in s3_server.env("admin").items():
        monkeypatch.setenv(name, value)
    previous = client.run(set_environment, s3_server.env("reader"))
    settings = dict(SETTINGS, standardize=False, epochs=1)
    try:
        local = fit_distributed(str(local_files), target="y", client=client, round_chunks=2, **settings)
        s3_server.proxy.log.clear()
        remote = fit_distributed(bucket, target="y", client=client, round_chunks=2, **settings)
    finally:
        for worker, values in previous.items():
            client.run(set_environment, values, workers=[worker])
    np.testing.assert_array_equal(remote.coef_, local.coef_)
    np.testing.assert_array_equal(remote.intercept_, local.intercept_)
    admin, reader = s3_server.keys["admin"][0], s3_server.keys["reader"][0]
    client_reads = s3_server.proxy.log.count("GET", "/train/data/part-", key=admin)
    worker_reads = s3_server.proxy.log.count("GET", "/train/data/part-", key=reader)
    assert 1 <= client_reads <= 2 * 2  # the footers of the two files, nothing more
    assert worker_reads >= 8  # every row group, read by the workers themselves


def test_distributed_predictions_are_written_to_a_bucket_by_the_workers(client, s3_server, bucket, local_files,
                                                                        monkeypatch, tmp_path):
    from streamgd.distributed import predict_distributed

    for name, value in s3_server.env("admin").items():
        monkeypatch.setenv(name, value)
    previous = client.run(set_environment, s3_server.env("admin"))
    model = streamgd.fit(str(local_files), target="y", **SETTINGS)
    try:
        counts = predict_distributed(model, bucket, "s3://out/parts", client=client)
    finally:
        for worker, values in previous.items():
            client.run(set_environment, values, workers=[worker])
    assert counts.rows == 1200
    parts = [key for key in _keys(s3_server, "out", "parts/") if not key.endswith("/")]
    assert parts == ["parts/part-00000.parquet", "parts/part-00001.parquet"]
    remote = pa.concat_tables([pq.read_table(io.BytesIO(_object(s3_server, f"s3://out/{key}"))) for key in parts])
    streamgd.predict_to_parquet(model, str(local_files), tmp_path / "p.parquet")
    assert remote.equals(pq.read_table(tmp_path / "p.parquet"))


def test_make_data_writes_a_dataset_to_a_bucket_that_trains_as_the_local_one(aws, bucket, tmp_path, capsys):
    local = tmp_path / "made"
    for out in (str(local), "s3://out/made/"):
        status, said, errors = _run(capsys, "make-data", out, "--rows", 3000, "--features", 3, "--files", 2,
                                    "--row-group-size", 500, "--seed", 4)
        assert status == 0 and not errors and f"to {out} (2 file(s)" in said, (said, errors)
    # (``made/``: the empty marker pyarrow leaves when the output check deletes its probe object)
    assert _keys(aws, "out", "made/") == ["made/", "made/part-00000.parquet", "made/part-00001.parquet"]
    for name in ("part-00000.parquet", "part-00001.parquet"):
        assert _object(aws, f"s3://out/made/{name}") == (local / name).read_bytes()
    status, _, errors = _run(capsys, "make-data", "s3://nowhere/x.parquet", "--rows", 100)
    assert status == 2 and len(errors) == 1 and "does not exist" in errors[0]


def test_validation_data_and_init_from_a_bucket_equal_the_same_local_files(aws, bucket, local_files, tmp_path):
    held_out = str(local_files / "part-1.parquet")
    remote_held_out = bucket + "part-1.parquet"
    options = dict(SETTINGS, validation_data=held_out)
    local = streamgd.fit(str(local_files / "part-0.parquet"), target="y", **options)
    remote = streamgd.fit(bucket + "part-0.parquet", target="y", **dict(options, validation_data=remote_held_out))
    assert [e["validation_loss"] for e in remote.history] == [e["validation_loss"] for e in local.history]
    np.testing.assert_array_equal(remote.coef_, local.coef_)
    # a model in the bucket as the starting point (--init) continues as the same model on disk does
    local.save(str(tmp_path / "start.safetensors"))
    local.save("s3://out/init/start.safetensors")
    continued = streamgd.fit(str(local_files), target="y", init="s3://out/init/start.safetensors", **SETTINGS)
    on_disk = streamgd.fit(str(local_files), target="y", init=str(tmp_path / "start.safetensors"), **SETTINGS)
    np.testing.assert_array_equal(continued.coef_, on_disk.coef_)
