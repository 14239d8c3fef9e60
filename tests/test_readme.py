"""The README's and the docs pages' examples run as written: every ```bash and ```python block, in order, as a
new user would.

Each page (README.md, docs/*.md) runs in a temporary working directory of its own holding a copy of ``data/``;
the data a page's later blocks use is made by that page's own ``streamgd make-data`` lines, so a page can be read,
and run, alone. A failure names the page and its line. A shell block runs line by line, each line as
``bash -c 'set -euo pipefail; LINE'`` (the ``streamgd`` console script of this environment, importing this
checkout), and every line must exit with status 0. A Python block runs with ``exec`` in a namespace of its own.
A ```text block is output shown to the reader and is not run.

Skipped: a block directly after ``<!-- readme-test: skip (why) -->``. ``SKIPPED`` names every such block per page,
so a new marker fails here until it is listed with its reason. The README's install block is skipped (CI runs it,
and it would run this test again), but the ``streamgd fit`` command on its first line is run on its own below.

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
README = "README.md"
PAGES = [README] + sorted(f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md"))
MAX_ROWS = 20_000
ROW_GROUP_SIZE = 2_000
SKIPPED = {  # page -> {a text each skipped block of the page holds: why it is skipped}
    README: {"pip install -c constraints.txt . &&": "the install and test commands CI runs itself"},
    "docs/dask.md": {"--dask tcp://scheduler:8786": "needs a dask scheduler and an S3 bucket"},
}
MARKER = re.compile(r"<!-- readme-test: skip \((.+)\) -->")
FENCE = re.compile(r"```(\w*)\s*")
RUN = {"bash", "python"}  # the languages run; "text" is output shown, never run
LINK = re.compile(r"\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    language: str
    line: int  # the page's line of the block's first code line (1-based)
    code: str
    skip: str | None  # the marker's reason, or None


def page_text(page: str) -> str:
    return (ROOT / page).read_text()


def page_blocks(page: str) -> list[Block]:
    """Every fenced block of the page in order, with the skip marker that directly precedes it (a stray marker is
    an error)."""
    lines = page_text(page).splitlines()
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
            raise AssertionError(f"{page}:{skip[1]}: the skip marker is not directly before a code block")
        i += 1
    return blocks


def runnable(page: str) -> list[Block]:
    return [block for block in page_blocks(page) if block.language in RUN and not block.skip]


def scaled(line: str) -> str:
    """The line with ``--rows N`` capped at MAX_ROWS (and row groups of ROW_GROUP_SIZE unless it names a size)."""
    groups = "" if "--row-group-size" in line else f" --row-group-size {ROW_GROUP_SIZE}"
    return re.sub(r"--rows (\d+)", lambda m: f"--rows {min(int(m.group(1)), MAX_ROWS)}{groups}", line)


def shell_commands(block: Block) -> list[tuple[int, str]]:
    """(page line, command) for each command of a shell block; comments and blank lines dropped."""
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


def run_shell(where: str, command: str, cwd: Path) -> None:
    """Run one command with bash; fail with the page and line, the command and its output unless it exits 0."""
    done = subprocess.run(["bash", "-c", f"set -euo pipefail\n{scaled(command)}"], cwd=cwd, env=environment(),
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"{where}: exit status {done.returncode}\n$ {scaled(command)}\n"
                    f"{done.stdout[-2000:]}{done.stderr[-3000:]}", pytrace=False)


def run_python(page: str, block: Block, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """exec the block in a fresh namespace, in ``cwd``; tracebacks name the page and its line numbers."""
    monkeypatch.chdir(cwd)
    code = compile("\n" * (block.line - 1) + block.code, str(ROOT / page), "exec")
    exec(code, {"__name__": "__readme__"})


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: str) -> set[str]:
    text = re.sub(r"```.*?```", "", page_text(page), flags=re.S)
    return {anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "data", tmp_path / "data")
    return tmp_path


@pytest.mark.parametrize("page", PAGES)
def test_blocks_are_bash_python_or_text_and_every_skip_is_a_known_one(page):
    blocks = page_blocks(page)
    assert {b.language for b in blocks} <= RUN | {"text"}, [(page, b.line, b.language) for b in blocks]
    skipped = [b for b in blocks if b.skip]
    known = SKIPPED.get(page, {})
    for block in skipped:
        assert [key for key in known if key in block.code], f"{page}:{block.line}: skip not listed in SKIPPED"
    for key in known:
        assert sum(key in b.code for b in skipped) == 1, f"{page}: one skipped block should hold {key!r}"


@pytest.mark.parametrize("page", [page for page in PAGES if runnable(page)])
def test_examples_run_as_written(page, workdir, monkeypatch, request):
    blocks = runnable(page)
    if any("s3://" in block.code for block in blocks):
        # the object-store examples' endpoint, credentials and bucket: a local S3 server (tests/s3_server.py)
        s3_server = request.getfixturevalue("s3_server")
        for name, value in s3_server.env().items():
            monkeypatch.setenv(name, value)
        s3_server.boto3().create_bucket(Bucket="demo")
    timings = []
    for block in blocks:
        started = time.perf_counter()
        if block.language == "bash":
            for line_number, command in shell_commands(block):
                run_shell(f"{page}:{line_number}", command, workdir)
        else:
            run_python(page, block, workdir, monkeypatch)
        timings.append(f"{page}:{block.line} {block.language} {time.perf_counter() - started:.1f} s")
    print("\n".join(timings))


def test_the_pages_run_hold_the_examples():
    """The parser finds the blocks: the README's journeys and the pages with commands are run, not passed over."""
    counts = {page: len(runnable(page)) for page in PAGES}
    assert counts[README] >= 4, counts
    assert sum(counts.values()) >= 15, counts


def test_the_first_command_after_install(workdir):
    """The install block's ``streamgd fit`` on data/breast_cancer.parquet (the block itself is CI's to run)."""
    install = page_blocks(README)[0]
    assert install.skip and install.code.startswith("pip install -c constraints.txt . && streamgd fit")
    command = install.code.splitlines()[0].split(" && ", 1)[1]
    run_shell(f"{README}:{install.line}", command, workdir)
    assert (workdir / "model.safetensors").exists()


@pytest.mark.parametrize("page", PAGES)
def test_links_lead_somewhere(page):
    """Every relative link of the page names a file of the repository and, after a #, one of its headings."""
    for target in LINK.findall(page_text(page)):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, fragment = target.partition("#")
        linked = ((ROOT / page).parent / path).resolve() if path else ROOT / page
        assert linked.exists(), f"{page}: the link {target!r} names no file"
        if fragment:
            assert fragment in anchors(str(linked.relative_to(ROOT))), f"{page}: the link {target!r} names no heading"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {target.partition("#")[0] for target in LINK.findall(page_text(README))}
    assert {page for page in PAGES if page != README} <= linked
