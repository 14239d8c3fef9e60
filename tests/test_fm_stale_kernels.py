"""Numba's disk cache must not run stale code: a compiled loop links in the pieces it calls from other modules
(``sparse.py``'s loops carry ``factors.py``'s pair term), so an edit of a piece's file, not of the loop's, must
make the next process compile the loop afresh (``streamgd.kernels.jit``, "Freshness"). Checked on a copy of the
package whose ``kernels/factors.py`` is edited between two processes that share one cache directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fm_reference as ref
import numpy as np
import pytest
import scipy.sparse as sp

import streamgd

# FM margins of a fixed sparse block through the sparse predict loop; prints them and what was compiled
_CHILD = r"""
import json
import numpy as np
from numba.core import event
compiled = []
class Listener(event.Listener):
    def on_start(self, e):
        compiled.append(e.data["dispatcher"].py_func.__qualname__)
    def on_end(self, e):
        pass
event.register("numba:compile", Listener())
import streamgd
from streamgd.kernels import api as K
from streamgd.kernels.arguments import SparseArrays
indptr, indices, values, params = (np.array(v, dtype=t) for v, t in zip(json.loads(input()),
                                                                     (np.int64, np.int32, np.float64, np.float64)))
hyper = np.zeros(K.N_HYPER)
hyper[K.H_FACTORS] = 2
out = np.empty((indptr.size - 1, 1))
K.predict_margins(np.empty((indptr.size - 1, 0)), params, 1, out, SparseArrays(indptr, indices, values, 4), hyper)
print(json.dumps({"margins": out[:, 0].tolist(), "compiled": compiled, "package": streamgd.__file__}))
"""

PAIR_TERM = "margins[0, b] += 0.5 * (total - squares)"


def _margins(package: Path, cache: Path, problem: str, numba_cache_dir: bool) -> tuple[np.ndarray, list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "STREAMGD_NUMBA_PER_BLOCK_COPY")}
    env["PYTHONPATH"] = str(package)
    env["NUMBA_CACHE_DIR" if numba_cache_dir else "XDG_CACHE_HOME"] = str(cache)
    done = subprocess.run([sys.executable, "-c", _CHILD], check=False, input=problem, env=env,
                          cwd=cache.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["package"].startswith(str(package))  # the copy ran, not the installed package
    return np.array(result["margins"]), result["compiled"]


@pytest.mark.parametrize("numba_cache_dir", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["streamgd-cache", "NUMBA_CACHE_DIR"])
def test_an_edited_kernel_piece_is_compiled_afresh_by_the_next_process(tmp_path, numba_cache_dir):
    package = tmp_path / "copy"
    shutil.copytree(Path(streamgd.__file__).parent, package / "streamgd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    X = sp.random(6, 4, density=0.6, random_state=3, format="csr")
    X.sort_indices()
    rng = np.random.default_rng(3)
    w, w0, V = rng.standard_normal(4), 0.25, rng.standard_normal((4, 2))
    params = np.concatenate([w, [w0], V.ravel()])
    problem = json.dumps([X.indptr.tolist(), X.indices.tolist(), X.data.tolist(), params.tolist()])
    linear = ref.fm_margins(X, w0, w, np.zeros_like(V))
    pairs = ref.fm_margins(X, w0, w, V) - linear
    cache = tmp_path / "cache"

    first, compiled = _margins(package, cache, problem, numba_cache_dir)
    np.testing.assert_allclose(first, linear + pairs, rtol=1e-12)
    assert "_sparse_predict_loop" in compiled

    factors = package / "streamgd" / "kernels" / "factors.py"  # the piece's file, not the loop's
    source = factors.read_text()
    assert source.count(PAIR_TERM) == 1
    factors.write_text(source.replace(PAIR_TERM, PAIR_TERM.replace("0.5", "1.5")))
    second, compiled = _margins(package, cache, problem, numba_cache_dir)
    assert "_sparse_predict_loop" in compiled  # the loop that links the piece in is compiled again ...
    np.testing.assert_allclose(second, linear + 3.0 * pairs, rtol=1e-12)  # ... and runs the edited piece

    third, compiled = _margins(package, cache, problem, numba_cache_dir)
    assert compiled == [] and np.array_equal(third, second)  # unchanged sources: everything loads from the cache
