"""Compile per use: a run compiles only its loss x optimizer x layout x batch-mode specialisation, a second chunk
of the same kind adds no compiled signature, and a second process loads it from Numba's cache without compiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from streamgd.kernels import api as K
from streamgd.kernels import dense
from streamgd.kernels.codes import OPT_ADAM

# Trains logistic/sgd on two float32 column-major chunks of different lengths, then prints what was compiled.
_CHILD = r"""
import json, sys
import numpy as np
from numba.core import event
from streamgd.kernels import api as K
from streamgd.kernels import dense, specialise
import streamgd.optim, streamgd.models.linear  # the registries name the codes

compiled = []
class Listener(event.Listener):
    def on_start(self, e):
        compiled.append(e.data["dispatcher"].py_func.__qualname__)
    def on_end(self, e):
        pass
event.register("numba:compile", Listener())

rng = np.random.default_rng(0)
params = np.zeros(6)
signatures = []
for n in (300, 211):
    X = np.asfortranarray(rng.standard_normal((n, 5)).astype(np.float32))
    y = (rng.random(n) < 0.5).astype(np.float64)
    total, rows, status = K.train_chunk(X, y, np.empty(0), params, np.zeros((0, 6)), np.zeros(K.N_HYPER),
                                        np.full(10, 0.01), 64, 1, K.LOSS_LOG, K.OPT_SGD, 0)
    assert (rows, status) == (n, 0)
    signatures.append([str(s) for s in dense.train_loop_for(K.LOSS_LOG, K.OPT_SGD, True, False).signatures])
trains = sorted(str(key) for key in specialise.MEMO)
print(json.dumps({"signatures": signatures, "specialisations": trains, "compiled": compiled,
                  "params": params.tolist()}))
"""


def _run_child(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    env.pop("STREAMGD_NUMBA_PER_BLOCK_COPY", None)
    done = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout), done.stderr


def test_a_run_compiles_only_its_specialisation_once_and_a_second_process_loads_it_from_the_cache(tmp_path):
    first, stderr = _run_child(tmp_path)
    # the second chunk adds no compiled signature
    assert len(first["signatures"][0]) == 1 and first["signatures"][1] == first["signatures"][0]
    # one specialisation: logistic loss, plain SGD, column-major chunk, column tiles; nothing for the others
    assert first["specialisations"] == ["('train', 1, 0, True, False)"]
    assert first["compiled"].count("_make_train_loop.<locals>.train_loop") == 1
    # the pieces compiled on their own: the column passes and the vectorised binary log loss; none of softmax's
    pieces = {name for name in first["compiled"] if "<locals>" not in name}
    assert pieces == {"cols_margins", "cols_grad_add", "_binary_log_loss_rows"}
    assert stderr.count("compiling kernels for logistic/sgd (first run only)") == 1
    # a second process compiles nothing: everything loads from the disk cache, and it says nothing
    second, stderr = _run_child(tmp_path)
    assert second["compiled"] == []
    assert "compiling" not in stderr
    assert second["params"] == first["params"]


def test_a_second_chunk_of_the_same_kind_adds_no_compiled_signature():
    rng = np.random.default_rng(1)
    loop = dense.train_loop_for(K.LOSS_SQUARED, OPT_ADAM, True, False)
    params, state = np.zeros(4), np.zeros((2, 4))
    counts = []
    for n in (100, 57, 100):
        X = np.asfortranarray(rng.standard_normal((n, 3)))
        K.train_chunk(X, rng.standard_normal(n), np.empty(0), params, state, np.zeros(K.N_HYPER),
                      np.full(10, 0.01), 16, 1, K.LOSS_SQUARED, OPT_ADAM, 0)
        counts.append((len(loop.signatures), len(loop.overloads)))
    assert counts[1:] == [counts[0]] * 2  # the first call may add one, the next chunks none
