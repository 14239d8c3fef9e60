"""Every ``fit`` option given a bad value: exit status 2, one line on stderr, no traceback, and no training."""

from __future__ import annotations

import pytest

from streamgd.cli.main import invoke
from conftest import reported_lines


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    n = 600
    path = tmp_path_factory.mktemp("opts") / "d.parquet"
    pq.write_table(pa.table({"a": rng.standard_normal(n), "b": rng.standard_normal(n),
                             "city": rng.choice(["x", "y", "z"], n), "y": (rng.random(n) < 0.5).astype(np.int64)}),
                   path, row_group_size=200)
    return str(path)


BAD_VALUES = [
    ("--target", "nope"), ("--features", "a,nope"), ("--exclude", "nope"), ("--exclude", "y"), ("--model", "tree"),
    ("--epsilon", "-1"), ("--class-weight", "heavy"), ("--class-weight", "7=2"), ("--sample-weight", "nope"),
    ("--sample-weight", "city"), ("--batch-size", "0"), ("--batch-size", "half"), ("--epochs", "0"),
    ("--optimizer", "lbfgs"), ("--lr", "-1"), ("--lr", "nan"), ("--schedule", "linear"), ("--warmup", "-1"),
    ("--lr-decay", "-1"), ("--lr-power", "-1"), ("--lr-gamma", "0"), ("--lr-gamma", "-2"), ("--lr-step-size", "0"),
    ("--lr-min", "-1"), ("--momentum", "1.5"), ("--momentum", "-0.1"), ("--beta1", "1"), ("--beta2", "-0.5"),
    ("--rho", "2"), ("--eps", "-1"), ("--weight-decay", "-1"), ("--average-start", "-1"), ("--penalty", "l3"),
    ("--alpha", "-1"), ("--l1-ratio", "2"), ("--clip-norm", "-1"), ("--shuffle", "sometimes"),
    ("--shuffle", "buffer:0"), ("--seed", "-1"), ("--dtype", "float16"), ("--prefetch", "-1"),
    ("--memory-budget", "lots"), ("--memory-budget", "0"), ("--categorical", "nope"), ("--missing", "ignore"),
    ("--hash-bits", "0"), ("--hash-bits", "40"), ("--max-categories", "0"), ("--max-categories", "2000000"),
    ("--validation", "1.5"),
    ("--validation-data", "nowhere.parquet"), ("--early-stopping", "-1"), ("--tol", "-1"),
    ("--checkpoint-every", "5x"), ("--keep-checkpoints", "0"), ("--workers", "-1"), ("--workers", "two"),
    ("--round-chunks", "0"), ("--history", "."), ("--out", "."), ("--init", "nowhere.safetensors"),
    ("--init", "{data}"),
]


@pytest.mark.parametrize("option,value", BAD_VALUES, ids=[f"{o}={v}" for o, v in BAD_VALUES])
def test_a_bad_option_value_is_one_line_and_exit_2(data, capsys, option, value):
    status = invoke(["fit", data, "--target", "y", "--epochs", "1", "--quiet", option, value.format(data=data)])
    captured = capsys.readouterr()
    lines = reported_lines(captured.err)
    assert status == 2, (status, captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""  # nothing trained, nothing reported


def test_resume_without_a_checkpoint_dir_and_an_unknown_option(data, capsys):
    assert invoke(["fit", data, "--target", "y", "--resume"]) == 2
    assert invoke(["fit", data, "--target", "y", "--no-such-option"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in errors if not line.startswith("note:")] == ["error", "error"]
