"""A library never changes its host: importing streamgd and training leave Numba's configuration, the environment
and Numba's inliner as they were; streamgd's compiled functions find their cache in streamgd's own directory,
and a second process loads them from there instead of compiling. Reading a model file loads no Numba."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# A small fit in a fresh process; prints what it left behind in the host process.
_FIT = r"""
import copy, json, os, sys
import numba
from numba.core import event, inline_closurecall
cache_dir_before = numba.config.CACHE_DIR
compiled = []
class Listener(event.Listener):
    def on_start(self, e):
        compiled.append(getattr(e.data["dispatcher"].py_func, "__module__", ""))
    def on_end(self, e):
        pass
event.register("numba:compile", Listener())
import streamgd
model = streamgd.fit(sys.argv[1], target="y", model="logistic", epochs=2, batch_size=64)
print(json.dumps({"env": "NUMBA_CACHE_DIR" in os.environ, "cache_dir": numba.config.CACHE_DIR == cache_dir_before,
                  "copy": inline_closurecall.copy is copy, "coef": model.coef_.tolist(),
                  "compiled": sorted({m for m in compiled if m.startswith("streamgd")})}))
"""


def _table(path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 3))
    y = (x @ [1.0, -2.0, 0.5] + 0.3 * rng.standard_normal(500) > 0).astype(np.int64)
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y}), path, row_group_size=100)


def _run(code, args, env):
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_fit_leaves_the_host_as_it_was_and_a_second_process_loads_the_cache_from_streamgds_directory(tmp_path):
    data = tmp_path / "train.parquet"
    _table(data)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "STREAMGD_NUMBA_PER_BLOCK_COPY")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    first, stderr = _run(_FIT, [str(data)], env)
    assert first["env"] is False and first["cache_dir"] is True and first["copy"] is True
    assert "compiling kernels for logistic/sgd (first run only)" in stderr
    assert first["compiled"]  # a cold cache: streamgd compiled its functions ...
    cached = list((tmp_path / "xdg" / "streamgd" / "numba").rglob("*.nbi"))
    assert cached and any("train_loop" in p.name for p in cached)  # ... and cached them in its own directory
    assert not list((tmp_path / "xdg").glob("numba*"))
    second, stderr = _run(_FIT, [str(data)], env)
    assert second["compiled"] == [] and "compiling" not in stderr  # loaded, not compiled
    assert second["coef"] == first["coef"] and second["env"] is False and second["copy"] is True


def test_numba_cache_dir_set_by_the_user_wins(tmp_path):
    probe = ("import streamgd.kernels.jit as jit, numba, os; "
             "print(jit.cache_dir() == numba.config.CACHE_DIR == os.environ['NUMBA_CACHE_DIR'])")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "mine"))
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"


def test_reading_a_model_file_loads_no_numba(tmp_path):
    from streamgd.models.linear import LogisticRegression

    path = tmp_path / "m.safetensors"
    LogisticRegression(np.array([[2.0, -1.0]]), np.array([0.5]), ["a", "b"], target="y").save(str(path))
    probe = ("import sys, streamgd; m = streamgd.load(sys.argv[1]); "
             "print(m.coef_.tolist(), 'numba' in sys.modules, 'streamgd.kernels.api' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[[2.0, -1.0]] False False"
