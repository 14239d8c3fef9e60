"""``streamgd --help`` and ``--version`` load click alone: each command's module (and with it Numba, pyarrow and
dask) is imported when that command runs (streamgd.cli.lazy_group)."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from streamgd.cli.main import COMMANDS, main

HEAVY = ("numba", "pyarrow", "dask", "distributed", "numpy", "rich")
PROBE = """
import json, sys
from streamgd.cli.main import invoke
status = invoke([{args}])
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({heavy!r}))
print(json.dumps({{"status": status, "loaded": loaded}}))
"""


def probe(*args: str) -> dict:
    code = PROBE.format(args=", ".join(repr(a) for a in args), heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_help_and_version_import_no_command():
    for args in (("--help",), ("--version",)):
        found = probe(*args)
        assert found == {"status": 0, "loaded": []}, (args, found)
    assert "numba" in probe("fit", "--help")["loaded"]  # a command's own help still has its options


def test_each_summary_is_the_start_of_its_commands_own_help():
    for name, lazy in COMMANDS.items():
        command = main.get_command(None, name)
        assert command.name == name and command.get_short_help_str(10_000).startswith(lazy.summary), name
    listed = CliRunner().invoke(main, ["--help"]).output
    assert all(f"  {name} " in listed for name in COMMANDS) and "bench      The nightly memory" in listed
