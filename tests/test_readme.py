"""The README's examples run as written: every ```bash and ```python block, in order, as a new user would.

All blocks run in one temporary working directory holding a copy of ``data/``; the data the later blocks use is
made by the README's own ``streamgd make-data`` lines. A shell block runs line by line, each line as
``bash -c 'set -euo pipefail; LINE'`` (the ``streamgd`` console script of this environment, importing this
checkout), and every line must exit with status 0. A Python block runs with ``exec`` in a namespace of its own.

Skipped: a block directly after ``<!-- readme-test: skip (why) -->``. ``SKIPPED`` names every such block, so a new
marker fails here until it is listed with its reason. The install block is skipped (CI runs it, and it would run
this test again), but the ``streamgd fit`` command on its first line is run on its own below.

Sizes, the one rewrite: ``--rows N`` becomes ``--rows min(N, 20000)``, followed by ``--row-group-size 2000`` unless
the line gives one, so the scaled-down data still has several row groups (what ``--validation`` and the shuffles
work on). Nothing else in a line is changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_ROWS = 20_000
ROW_GROUP_SIZE = 2_000
SKIPPED = {  # a text each skipped block holds: why it is skipped
    "pip install -c constraints.txt . &&": "the install and test commands CI runs itself",
    "--dask tcp://scheduler:8786": "needs a dask scheduler and an S3 bucket",
}
MARKER = re.compile(r"<!-- readme-test: skip \((.+)\) -->")
FENCE = re.compile(r"```(\w*)\s*")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    language: str
    line: int  # README line of the block's first code line (1-based)
    code: str
    skip: str | None  # the marker's reason, or None


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block in order, with the skip marker that directly precedes it (a stray marker is an error)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    skip: tuple[str, int] | None = None
    i = 0
    while i < len(lines):
        marker, fence = MARKER.fullmatch(lines[i].strip()), FENCE.fullmatch(lines[i])
        if marker:
            skip = (marker.group(1), i + 1)
        elif fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            blocks.append(Block(fence.group(1), i + 2, "\n".join(lines[i + 1:end]), skip and skip[0]))
            skip, i = None, end
        elif lines[i].strip() and skip is not None:
            raise AssertionError(f"README.md:{skip[1]}: the skip marker is not directly before a code block")
        i += 1
    return blocks


def scaled(line: str) -> str:
    """The line with ``--rows N`` capped at MAX_ROWS (and row groups of ROW_GROUP_SIZE unless it names a size)."""
    groups = "" if "--row-group-size" in line else f" --row-group-size {ROW_GROUP_SIZE}"
    return re.sub(r"--rows (\d+)", lambda m: f"--rows {min(int(m.group(1)), MAX_ROWS)}{groups}", line)


def shell_commands(block: Block) -> list[tuple[int, str]]:
    """(README line, command) for each command of a shell block; comments and blank lines dropped."""
    commands = []
    for offset, line in enumerate(block.code.splitlines()):
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append((block.line + offset, line))
    return commands


def environment() -> dict[str, str]:
    """This interpreter's scripts first on PATH, this checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    return env


def run_shell(line_number: int, command: str, cwd: Path) -> None:
    """Run one command with bash; fail with the README line, the command and its output unless it exits 0."""
    done = subprocess.run(["bash", "-c", f"set -euo pipefail\n{scaled(command)}"], cwd=cwd, env=environment(),
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"README.md:{line_number}: exit status {done.returncode}\n$ {scaled(command)}\n"
                    f"{done.stdout[-2000:]}{done.stderr[-3000:]}", pytrace=False)


def run_python(block: Block, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """exec the block in a fresh namespace, in ``cwd``; tracebacks name README.md and its line numbers."""
    monkeypatch.chdir(cwd)
    code = compile("\n" * (block.line - 1) + block.code, str(README), "exec")
    exec(code, {"__name__": "__readme__"})


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "data", tmp_path / "data")
    return tmp_path


def test_blocks_are_bash_or_python_and_every_skip_is_a_known_one():
    blocks = readme_blocks(README.read_text())
    assert blocks and {b.language for b in blocks} <= {"bash", "python"}, [(b.line, b.language) for b in blocks]
    skipped = [b for b in blocks if b.skip]
    for block in skipped:
        assert [key for key in SKIPPED if key in block.code], f"README.md:{block.line}: skip not listed in SKIPPED"
    for key in SKIPPED:
        assert sum(key in b.code for b in skipped) == 1, f"one skipped block should hold {key!r}"


def test_readme_examples_run_as_written(workdir, monkeypatch, s3_server):
    # the object-store examples' endpoint, credentials and bucket: a local S3 server (tests/s3_server.py)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    s3_server.boto3().create_bucket(Bucket="demo")
    timings = []
    for block in readme_blocks(README.read_text()):
        if block.skip:
            continue
        started = time.perf_counter()
        if block.language == "bash":
            for line_number, command in shell_commands(block):
                run_shell(line_number, command, workdir)
        else:
            run_python(block, workdir, monkeypatch)
        timings.append(f"README.md:{block.line} {block.language} {time.perf_counter() - started:.1f} s")
    print("\n".join(timings))
    assert len(timings) >= 8


def test_the_first_command_after_install(workdir):
    """The install block's ``streamgd fit`` on data/breast_cancer.parquet (the block itself is CI's to run)."""
    install = readme_blocks(README.read_text())[0]
    assert install.skip and install.code.startswith("pip install -c constraints.txt . && streamgd fit")
    command = install.code.splitlines()[0].split(" && ", 1)[1]
    run_shell(install.line, command, workdir)
    assert (workdir / "model.safetensors").exists()
