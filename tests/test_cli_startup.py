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


LOADED = """
import json, sys
from streamgd.cli.main import invoke
status = invoke(sys.argv[2:])
print(json.dumps({"status": status, "loaded": sorted(set(sys.argv[1].split(",")) & set(sys.modules))}))
"""


def loaded_by(modules: tuple[str, ...], *args: str) -> dict:
    """Which of ``modules`` a command run in a fresh process has loaded when it ends."""
    done = subprocess.run([sys.executable, "-c", LOADED, ",".join(modules), *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_inspect_of_a_dataset_loads_no_numba_and_a_plain_fit_no_pyarrow_dataset(tmp_path):
    """``inspect DATA`` reads a footer: no compiler (the statistics, a shuffle or a budget load it when asked
    for). A fit of files loads neither ``pyarrow.dataset`` nor the optional libraries it does not use."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = str(tmp_path / "d.parquet")
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"x": rng.standard_normal(300), "c": [f"v{i % 7}" for i in range(300)],
                             "y": (rng.random(300) > 0.5).astype(np.int64)}), data, row_group_size=100)
    assert loaded_by(("numba", "pandas"), "inspect", data) == {"status": 0, "loaded": []}
    assert loaded_by(("numba",), "inspect", data, "--shuffle", "buffer:2") == {"status": 0, "loaded": ["numba"]}
    unused = ("pyarrow.dataset", "dask", "distributed", "sklearn", "matplotlib", "rich", "torch")
    found = loaded_by(unused + ("numba",), "fit", data, "--target", "y", "--epochs", "1", "--quiet",
                      "--interactions", "none", "--out", str(tmp_path / "m.safetensors"))
    assert found == {"status": 0, "loaded": ["numba"]}
