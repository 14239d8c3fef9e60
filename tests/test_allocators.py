"""The command line's allocator settings: jemalloc as Arrow's C++ default pool, set before pyarrow loads (which
``import streamgd`` does not do), so the readers' own buffers come from it too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def run_python(code, env=None):
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    environment.update(env or {})
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=environment)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_importing_streamgd_loads_neither_pyarrow_nor_numba_until_a_public_name_is_used():
    loaded = run_python("import json, sys, streamgd; before = ['pyarrow' in sys.modules, 'numba' in sys.modules]; "
                        "kinds = sorted(streamgd.MODEL_KINDS); "
                        "print(json.dumps([before, 'pyarrow' in sys.modules, kinds]))")
    assert loaded[0] == [False, False]
    assert loaded[1] is True and loaded[2][:2] == ["huber", "linear"]
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        import streamgd

        streamgd.no_such_name  # noqa: B018


READ_ONE_ROW_GROUP = r"""
import json
from streamgd.cli.allocators import arrow_jemalloc_by_default
chosen = arrow_jemalloc_by_default()
import pyarrow as pa, pyarrow.parquet as pq
table = pq.ParquetFile(PATH).read_row_group(0)
print(json.dumps({"chosen": chosen, "default": pa.default_memory_pool().backend_name,
                  "mimalloc": pa.mimalloc_memory_pool().max_memory(), "jemalloc": pa.jemalloc_memory_pool().max_memory()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="set on Linux only (wheels built with jemalloc)")
def test_before_pyarrow_loads_jemalloc_becomes_arrows_cpp_default_and_the_reader_allocates_from_it(tmp_path):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"x": list(range(100_000))}), path)
    code = f"PATH = {str(path)!r}\n" + READ_ONE_ROW_GROUP
    chosen = run_python(code)
    assert chosen["chosen"] is True and chosen["default"] == "jemalloc"
    assert chosen["mimalloc"] == 0 and chosen["jemalloc"] >= 800_000  # the file's buffers and the decoded column
    # after pyarrow loaded it is too late: nothing is changed, and the reader's buffers come from mimalloc
    late = run_python(code.replace("from streamgd.cli.allocators", "import pyarrow\nfrom streamgd.cli.allocators"))
    assert late["chosen"] is False and late["mimalloc"] > 0
    # a pool the user names is kept
    named = run_python(code, env={"ARROW_DEFAULT_MEMORY_POOL": "system"})
    assert named["chosen"] is False and named["default"] == "system"


def test_the_command_line_sets_the_pool_before_it_loads_pyarrow():
    # streamgd.cli.launch runs the command line module last; a stand-in reports what the process looked like then
    seen = run_python("import json, os, sys, types\n"
                      "stand_in = types.ModuleType('streamgd.cli.main')\n"
                      "stand_in.run = lambda: print(json.dumps([os.environ.get('ARROW_DEFAULT_MEMORY_POOL'), "
                      "'pyarrow' in sys.modules]))\n"
                      "sys.modules['streamgd.cli.main'] = stand_in\n"
                      "from streamgd.cli.launch import run\n"
                      "run()")
    assert seen == ["jemalloc" if sys.platform.startswith("linux") else None, False]


MMAP_THRESHOLD_OF_A_FIT = """
import json, sys
import streamgd.cli.allocators as allocators
calls = []
fix_threshold = allocators.map_large_arrays_directly
def recorded(*args, **kwargs):
    calls.append(fix_threshold(*args, **kwargs))
    return calls[-1]
allocators.map_large_arrays_directly = recorded
from streamgd.cli.main import invoke
status = invoke(["fit", sys.argv[1], "--target", "y", "--quiet", "--out", sys.argv[2]])
print(json.dumps({"status": status, "mallopt": calls}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is Linux's")
def test_a_fit_from_the_command_line_fixes_glibcs_mmap_threshold(tmp_path):
    """``streamgd fit`` fixes glibc's mmap threshold (``map_large_arrays_directly``: mallopt accepted it), not
    only under ``--memory-budget``: chunk-sized blocks then get their own pages, handed back when freed, where
    glibc's default raises the threshold to the largest block freed. (Whether one given block is mapped is not
    tested: malloc serves a request from a free heap chunk of that size first, which a fit's freed small arrays
    can coalesce into.)"""
    import numpy as np

    data = tmp_path / "d.parquet"
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"x": rng.standard_normal(200), "y": (rng.random(200) > 0.5).astype(np.int64)}), data)
    done = subprocess.run([sys.executable, "-c", MMAP_THRESHOLD_OF_A_FIT, str(data), str(tmp_path / "m.safetensors")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"status": 0, "mallopt": [True]}
