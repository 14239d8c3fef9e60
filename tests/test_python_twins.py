"""The kernels' Python twins: with ``NUMBA_DISABLE_JIT=1`` every compiled loop runs as plain Python (what a
coverage run measures, and what a debugger steps through), and must compute what the compiled code computes:
every loss and every optimizer, both layouts, SGD, mini-batch and full batch, and prediction."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from streamgd.kernels import api as K

# every loss and every optimizer at least once, both layouts, SGD and mini-batch: few specialisations, so the
# compiled side costs little compile time, and plain Python runs it in seconds
_LOSSES = ((K.LOSS_SQUARED, 1), (K.LOSS_LOG, 1), (K.LOSS_SOFTMAX, 3), (K.LOSS_HINGE, 3), (K.LOSS_SQUARED_HINGE, 1),
           (K.LOSS_HUBER, 1), (K.LOSS_POISSON, 1), (K.LOSS_LOG, 1))
_LAYOUTS = (("F", 16), ("C", 5), ("F", 1))
CASES = [(loss, n_out, opt, *_LAYOUTS[opt % 3]) for opt, (loss, n_out) in enumerate(_LOSSES)]


_RUN = r"""
import json, sys
import numpy as np
from streamgd.kernels import api as K

def run(cases):
    out = []
    for loss, n_out, opt, order, batch in cases:
        rng = np.random.default_rng(loss * 100 + opt * 10 + batch)
        n, d = 40, 3
        X = np.array(rng.standard_normal((n, d)) * 0.5, order=order)
        y = rng.integers(0, max(n_out, 2), n).astype(float) if loss in (1, 2, 3, 4) else np.abs(rng.standard_normal(n))
        params = np.zeros(n_out * (d + 1))
        hyper = np.zeros(K.N_HYPER)
        hyper[K.H_ALPHA], hyper[K.H_L1_RATIO], hyper[K.H_HUBER_EPS] = 1e-3, 0.5, 1.0
        hyper[4], hyper[5], hyper[6], hyper[7] = 0.9, 0.99, 1e-8, 0.01
        state = np.zeros((2, params.size))
        total, rows, status = K.train_chunk(X, y, np.empty(0), params, state, hyper, np.full(n, 0.05), batch, n_out,
                                            loss, opt, 0)
        grad_sum = np.zeros(params.size)
        full_loss, full_status = K.accumulate_chunk(X, y, np.empty(0), params, n_out, loss, hyper, grad_sum)
        step = K.full_batch_step(params, grad_sum, float(n), state, hyper, 0.1, opt, 1, n_out * d)
        margins = np.zeros((n, n_out))
        K.predict_margins(X, params, n_out, margins)
        out.append({"total": total, "rows": rows, "status": status, "full_loss": full_loss, "step": step,
                    "params": params.tolist(), "state": state.tolist(), "margins": margins.tolist()})
    return out

if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
"""


def _results(disable_jit: bool, tmp_path) -> list[dict]:
    script = tmp_path / "twins.py"
    script.write_text(_RUN)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1" if disable_jit else "0")
    done = subprocess.run([sys.executable, str(script), json.dumps(CASES)], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


@pytest.mark.slow  # runs every kernel twice, compiled and as plain Python: nightly
def test_the_python_twins_compute_what_the_compiled_kernels_compute(tmp_path):
    python, compiled = _results(True, tmp_path), _results(False, tmp_path)
    assert len(python) == len(compiled) == len(CASES)
    for case, a, b in zip(CASES, python, compiled):
        assert (a["rows"], a["status"], a["step"]) == (b["rows"], b["status"], b["step"]) == (40, 0, 0), case
        for key in ("total", "full_loss", "params", "state", "margins"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-10, atol=1e-12, err_msg=f"{key} of {case}")
