"""The kernels' Python twins: with ``NUMBA_DISABLE_JIT=1`` every compiled loop runs as plain Python (what a
coverage run measures, and what a debugger steps through), and must compute what the compiled code computes:
every loss and every optimizer (FTRL too), column-major, row-major and sparse chunks, SGD, mini-batch and full
batch, a bad row found and named, and prediction. A small subset (one loss x one optimizer per layout) runs every
time; the whole matrix nightly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

# the kernel modules the twin script imports, named once: a move of the kernels is a change of these two lines
DENSE_KERNELS, SPARSE_KERNELS = "streamgd.kernels.api", "streamgd.kernels.sparse"

LOSSES = {"linear": (0, 1), "logistic": (1, 1), "softmax": (2, 3), "svm": (3, 3), "squared-hinge": (4, 1),
          "huber": (5, 1), "poisson": (6, 1)}  # name: (loss code, outputs)
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "asgd", "ftrl")
LAYOUTS = {"F": 16, "C": 5, "sparse": 4}  # layout: batch size (C at 5: the dense loops' row-major tile)


def case(loss: str, optimizer: str, layout: str, batch: int | None = None) -> dict:
    code, n_out = LOSSES[loss]
    return {"loss": code, "n_out": n_out, "opt": optimizer, "layout": layout,
            "batch": LAYOUTS[layout] if batch is None else batch}


# every run: one loss x one optimizer per layout, FTRL among them (a few specialisations; plain Python runs them
# in seconds)
EVERY_RUN = [case("logistic", "adam", "F"), case("huber", "momentum", "C"), case("logistic", "ftrl", "sparse", 1)]
# nightly: every loss with every optimizer on each layout (in turn, so each pair appears), and every loss and
# every optimizer on the sparse block
_NAMES = list(LOSSES)
FULL = [case(_NAMES[k % len(_NAMES)], opt, layout) for layout in ("F", "C")
        for k, opt in enumerate(OPTIMIZERS)] + [case(loss, "sgd", "F", 1) for loss in LOSSES]
FULL += [case(loss, OPTIMIZERS[k % len(OPTIMIZERS)], "sparse") for k, loss in enumerate(LOSSES)]
FULL += [case("logistic", opt, "sparse", 3) for opt in OPTIMIZERS]

_RUN = r"""
import importlib, json, sys
import numpy as np
from streamgd.data.sparse_block import SparseBlock
from streamgd.optim import make_optimizer

K = importlib.import_module(sys.argv[1])
S = importlib.import_module(sys.argv[2])


def problem(c, rng, n, d):
    if c["layout"] == "sparse":
        X = np.asfortranarray(rng.standard_normal((n, d)) * 0.5)
        lengths = rng.integers(0, 4, n)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        indices = rng.integers(0, 7, indptr[-1]).astype(np.int32)
        block = SparseBlock(indptr, indices, rng.uniform(-1.0, 1.0, indptr[-1]), 7)
        return X, block
    return np.array(rng.standard_normal((n, d)) * 0.5, order=c["layout"]), None


def run(cases):
    out = []
    for c in cases:
        loss, n_out, batch = c["loss"], c["n_out"], c["batch"]
        rng = np.random.default_rng(loss * 100 + batch + len(c["opt"]))
        n, d = 40, 3
        X, block = problem(c, rng, n, d)
        width = d + (block.n_slots if block is not None else 0)
        y = rng.integers(0, max(n_out, 2), n).astype(float) if loss in (1, 2, 3, 4) else np.abs(rng.standard_normal(n))
        weights = rng.uniform(0.5, 1.5, n)
        params = np.zeros(n_out * (width + 1))
        optimizer = make_optimizer(c["opt"])
        hyper = np.zeros(K.N_HYPER)
        hyper[K.H_ALPHA], hyper[K.H_L1_RATIO], hyper[K.H_HUBER_EPS] = 1e-3, 0.5, 1.0
        optimizer.write_hyper(hyper)
        state = optimizer.init_state(params.size)
        if block is not None and c["opt"] != "ftrl":  # the sparse slots' decay stamps, as the trainer adds them
            state = np.vstack([state, np.zeros((1, params.size))])
            hyper[K.H_LAZY_ROW] = state.shape[0]
        lrs = np.full(n, 0.05)
        total, rows, status = K.train_chunk(X, y, weights, params, state, hyper, lrs, batch, n_out, loss,
                                            optimizer.code, 0, sparse=block)
        grad_sum = np.zeros(params.size)
        full_loss, full_status = K.accumulate_chunk(X, y, weights, params, n_out, loss, hyper, grad_sum, sparse=block)
        full_state, full_hyper = optimizer.init_state(params.size), hyper.copy()
        full_hyper[K.H_LAZY_ROW] = 0  # the decay stamps are the sparse train loop's, not a full-batch step's
        step = K.full_batch_step(params.copy(), grad_sum, float(n), full_state, full_hyper, 0.1, optimizer.code, 1,
                                 n_out * width)
        margins = np.zeros((n, n_out))
        K.predict_margins(X, params, n_out, margins, sparse=block)
        bad = X.copy(order="K")
        bad[17, 1] = np.nan  # a bad row: the batch holding it is not applied, and the row is named
        bad_params, bad_state = params.copy(), state.copy()
        bad_total, bad_rows, bad_status = K.train_chunk(bad, y, weights, bad_params, bad_state, hyper, lrs, batch,
                                                        n_out, loss, optimizer.code, 1, sparse=block)
        record = {"total": total, "rows": rows, "status": status, "full_loss": full_loss, "full_status": full_status,
                  "grad_sum": grad_sum.tolist(), "step": step, "full_state": full_state.tolist(),
                  "params": params.tolist(), "state": state.tolist(), "margins": margins.tolist(),
                  "bad": [bad_total, bad_rows, bad_status], "bad_params": bad_params.tolist()}
        if block is not None:  # the sparse module's own functions, on a slice of rows
            grad = np.zeros(params.size)
            record["loss_sum"] = S.loss_sum(X, block, y, weights, 5, 30, params, n_out, loss, 1.0, grad)
            record["loss_sum_grad"] = grad.tolist()
            record["first_bad_row"] = S.first_bad_row(bad, block, y, weights, 9, 30, params, n_out, loss, 1.0)
        out.append(record)
    return out

if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[3])), default=lambda value: value.item()))  # NumPy scalars
"""


def _results(cases: list[dict], disable_jit: bool, tmp_path) -> list[dict]:
    script = tmp_path / "twins.py"
    script.write_text(_RUN)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1" if disable_jit else "0")
    done = subprocess.run([sys.executable, str(script), DENSE_KERNELS, SPARSE_KERNELS, json.dumps(cases)], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _assert_twins_agree(cases: list[dict], tmp_path) -> None:
    python, compiled = _results(cases, True, tmp_path), _results(cases, False, tmp_path)
    assert len(python) == len(compiled) == len(cases)
    for c, a, b in zip(cases, python, compiled):
        assert (a["rows"], a["status"], a["full_status"], a["step"]) == \
               (b["rows"], b["status"], b["full_status"], b["step"]) == (40, 0, 0, 0), c
        batch_start = 17 // c["batch"] * c["batch"]
        assert a["bad"][1:] == b["bad"][1:] == [batch_start, -17 - 1], c  # stopped at its batch, row 17 named
        assert np.abs(b["params"]).max() > 1e-3, c  # it trained
        keys = ["total", "full_loss", "grad_sum", "full_state", "params", "state", "margins", "bad_params"]
        if c["layout"] == "sparse":
            assert a["first_bad_row"] == b["first_bad_row"] == 17, c
            keys += ["loss_sum", "loss_sum_grad"]
        for key in keys:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-10, atol=1e-12, err_msg=f"{key} of {c}")
        np.testing.assert_allclose(a["bad"][0], b["bad"][0], rtol=1e-10, atol=1e-12, err_msg=f"bad loss of {c}")


def test_every_run_the_python_twins_of_one_loss_and_optimizer_per_layout_compute_what_compiled_code_does(tmp_path):
    assert {c["layout"] for c in EVERY_RUN} == set(LAYOUTS) and "ftrl" in {c["opt"] for c in EVERY_RUN}
    _assert_twins_agree(EVERY_RUN, tmp_path)


@pytest.mark.slow  # runs every kernel twice, compiled and as plain Python: nightly
def test_the_python_twins_compute_what_the_compiled_kernels_compute(tmp_path):
    assert {c["opt"] for c in FULL if c["layout"] == "sparse"} == set(OPTIMIZERS)
    assert {c["loss"] for c in FULL if c["layout"] == "sparse"} == {code for code, _ in LOSSES.values()}
    for layout in ("F", "C"):
        assert {c["opt"] for c in FULL if c["layout"] == layout} == set(OPTIMIZERS)
    _assert_twins_agree(FULL, tmp_path)


def test_the_twins_lists_name_every_loss_and_optimizer_of_the_registries():
    from streamgd.kernels import codes
    from streamgd.models.linear import MODEL_KINDS
    from streamgd.optim import OPTIMIZERS as REGISTERED

    assert [codes.optimizer_label(code) for code in range(len(OPTIMIZERS))] == list(OPTIMIZERS)
    assert set(OPTIMIZERS) == set(REGISTERED)
    assert {code: name for name, (code, _) in LOSSES.items()} == {
        code: codes.loss_label(code) for code in range(codes.N_LOSSES)} == {
        cls.loss_kind: name for name, cls in MODEL_KINDS.items()}
