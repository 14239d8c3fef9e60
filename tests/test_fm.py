"""Factorization machines (issue 28): the compiled pair term and its gradient against tests/fm_reference.py and
finite differences, a factorization machine whose factors stay zero equal to the linear model bit for bit, lazy
updates equal to a dense NumPy transcription where every slot is touched, exact resume, model files (format 2, and
main's linear files still read) and bad input refused with one line."""

from __future__ import annotations

import base64

import fm_reference as ref
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

import streamgd
from streamgd.cli.main import main as cli
from streamgd.errors import ConfigError
from streamgd.kernels import api as K
from streamgd.kernels.arguments import SparseArrays
from streamgd.kernels.codes import H_FTRL_BETA
from streamgd.models.linear import load

# a LogisticRegression file written by main's code (commit 938ab50): coef [0.5, -1.25, 2.0], intercept 0.125,
# optimizer state [[1, 2, 3, 4]], steps 7
MAIN_MODEL = "AAIAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJmb3JtYXQiOiJzdHJlYW1nZC5tb2RlbCIsImZvcm1hdF92ZXJzaW9uIjoiMSIsInN0cmVhbWdkIjoie1wia2luZFwiOiBcImxvZ2lzdGljXCIsIFwiZmVhdHVyZV9uYW1lc1wiOiBbXCJhXCIsIFwiYlwiLCBcImNcIl0sIFwiZmVhdHVyZV9zcGVjXCI6IG51bGwsIFwidGFyZ2V0XCI6IFwieVwiLCBcImNsYXNzZXNcIjogWzAsIDFdLCBcImNvbmZpZ1wiOiB7fSwgXCJoaXN0b3J5XCI6IFtdLCBcInN1bW1hcnlcIjoge1wic3RlcHNcIjogNywgXCJlcG9jaHNcIjogMX0sIFwic3RyZWFtZ2RfdmVyc2lvblwiOiBcIjAuMS4wXCJ9In0sImNvZWYiOnsiZHR5cGUiOiJGNjQiLCJzaGFwZSI6WzEsM10sImRhdGFfb2Zmc2V0cyI6WzAsMjRdfSwiaW50ZXJjZXB0Ijp7ImR0eXBlIjoiRjY0Iiwic2hhcGUiOlsxXSwiZGF0YV9vZmZzZXRzIjpbMjQsMzJdfSwib3B0aW1pemVyX3N0YXRlIjp7ImR0eXBlIjoiRjY0Iiwic2hhcGUiOlsxLDRdLCJkYXRhX29mZnNldHMiOlszMiw2NF19fQAAAAAAAOA/AAAAAAAA9L8AAAAAAAAAQAAAAAAAAMA/AAAAAAAA8D8AAAAAAAAAQAAAAAAAAAhAAAAAAAAAEEA="


def _block(X: sp.csr_matrix) -> SparseArrays:
    return SparseArrays(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float64), X.shape[1])


def _problem(seed=0, n=40, slots=25, k=3, d=0, density=0.2):
    rng = np.random.default_rng(seed)
    X = sp.random(n, slots, density=density, random_state=seed, format="csr")
    X.sort_indices()
    dense = np.asfortranarray(rng.standard_normal((n, d)))
    y = (rng.random(n) < 0.5).astype(np.float64)
    return rng, X, dense, y


def _hyper(k, numeric=False, l2=0.0):
    hyper = np.zeros(K.N_HYPER)
    hyper[K.H_FACTORS], hyper[K.H_FACTOR_NUMERIC], hyper[K.H_FACTOR_L2] = k, float(numeric), l2
    return hyper


def _reference_view(X, dense, w, w0, V):
    """The dense columns as the first slots of one CSR matrix, as the reference reads a row."""
    return sp.hstack([sp.csr_matrix(dense), X], format="csr"), w, w0, V


@pytest.mark.parametrize("numeric", [False, True], ids=["slots", "slots+numeric"])
def test_margins_and_gradient_equal_rendles_formula(numeric):
    rng, X, dense, y = _problem(d=3)
    d, slots, k = dense.shape[1], X.shape[1], 3
    w, w0 = rng.standard_normal(d + slots), 0.3
    V = rng.standard_normal((slots + (d if numeric else 0), k)) * 0.5
    params = np.concatenate([w, [w0], V.ravel()])
    hyper = _hyper(k, numeric)
    out = np.empty((X.shape[0], 1))
    K.predict_margins(dense, params, 1, out, sparse=_block(X), hyper=hyper)
    both = sp.hstack([sp.csr_matrix(dense), X], format="csr")
    # without numeric factors the dense columns' factor rows are zero in the reference
    V_ref = V if numeric else np.vstack([np.zeros((d, k)), V])
    margins = ref.fm_margins(both, w0, w, V_ref)
    np.testing.assert_allclose(out[:, 0], margins, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(margins, ref.fm_margins(both, w0, w, V_ref, pairwise=True), rtol=1e-12)
    grad = np.zeros_like(params)
    loss = K.batch_loss_grad(dense, y, np.empty(0), 0, len(y), params, 1, K.LOSS_LOG, hyper, grad, sparse=_block(X))
    g0, gw, gV = ref.fm_batch_gradient(both, ref.logistic_multipliers(margins, y), w0, w, V_ref)
    np.testing.assert_allclose(grad[:d + slots], gw, rtol=1e-10, atol=1e-12)
    assert grad[d + slots] == pytest.approx(g0, rel=1e-12)
    np.testing.assert_allclose(grad[d + slots + 1:].reshape(V.shape), gV if numeric else gV[d:], rtol=1e-10,
                               atol=1e-12)
    assert loss == pytest.approx(np.sum(np.logaddexp(0.0, margins) - y * margins), rel=1e-12)


@pytest.mark.parametrize("loss_kind", [K.LOSS_LOG, K.LOSS_SQUARED], ids=["log", "squared"])
def test_the_gradient_matches_finite_differences(loss_kind):
    rng, X, dense, y = _problem(seed=3, d=2)
    k = 4
    n_lin = dense.shape[1] + X.shape[1] + 1
    params = np.concatenate([rng.standard_normal(n_lin) * 0.3, rng.standard_normal((X.shape[1] + 2) * k) * 0.4])
    hyper = _hyper(k, numeric=True)
    grad = np.zeros_like(params)
    K.batch_loss_grad(dense, y, np.empty(0), 0, len(y), params, 1, loss_kind, hyper, grad, sparse=_block(X))

    def loss(p):
        return K.chunk_loss(dense, y, np.empty(0), p, 1, loss_kind, hyper, sparse=_block(X))

    h = 1e-6
    for direction in [*np.eye(params.size)[n_lin:n_lin + 6], *rng.standard_normal((4, params.size))]:
        numeric = (loss(params + h * direction) - loss(params - h * direction)) / (2 * h)
        assert abs(numeric - grad @ direction) < 1e-6 * max(1.0, abs(numeric))


OPTIMIZERS = {"sgd": K.OPT_SGD, "adagrad": 3, "adam": 5, "ftrl": K.OPT_FTRL}


@pytest.mark.parametrize("batch_size", [1, 16])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_factors_held_at_zero_train_the_linear_model_bit_for_bit(name, batch_size):
    opt = OPTIMIZERS[name]
    _, X, dense, y = _problem(seed=5, n=64, d=2)
    n_lin = dense.shape[1] + X.shape[1] + 1
    rows = {K.OPT_SGD: 0, 3: 1, 5: 2, K.OPT_FTRL: 2}[opt]
    hyper = np.zeros(K.N_HYPER)
    hyper[5], hyper[6] = 0.999, 1e-8  # adam's beta2 and every rule's eps
    hyper[4] = 0.9
    lrs = np.full(64, 0.05)
    linear, state = np.zeros(n_lin), np.zeros((rows, n_lin))
    K.train_chunk(dense, y, np.empty(0), linear, state, hyper, lrs, batch_size, 1, K.LOSS_LOG, opt, 0,
                  sparse=_block(X))
    fm_hyper = hyper.copy()
    fm_hyper[K.H_FACTORS], fm_hyper[K.H_FACTOR_L2] = 3, 0.01
    fm = np.zeros(n_lin + K.n_factor_params(X.shape[1], 3, opt))
    fm_state = np.zeros((rows, n_lin))
    _, done, status = K.train_chunk(dense, y, np.empty(0), fm, fm_state, fm_hyper, lrs, batch_size, 1, K.LOSS_LOG,
                                    opt, 0, sparse=_block(X))
    assert (done, status) == (64, 0)
    assert np.array_equal(fm[:n_lin], linear) and np.array_equal(fm_state, state)
    assert not fm[n_lin:].any()  # zero factors have a zero gradient: they stay zero


def _ftrl_factor_reference(X, y, V, lr, share, beta, l2):
    """AdaGrad on the factor rows of an FTRL run, one row a step, as the module docstring of
    streamgd.optim.factors says: lr * share / (beta + sqrt(G)); the linear part stays at zero on the first row
    (FTRL's w is a function of z and n, both zero), so the margin is the pair term."""
    V, G = V.copy(), np.zeros_like(V)
    for r in range(X.shape[0]):
        margin = ref.fm_margins(X[r], 0.0, np.zeros(X.shape[1]), V)
        _, _, gV = ref.fm_batch_gradient(X[r], ref.logistic_multipliers(margin, y[r:r + 1]), 0.0,
                                         np.zeros(X.shape[1]), V)
        touched = np.unique(X[r].indices)
        g = gV[touched] + l2 * V[touched]
        G[touched] += g * g
        V[touched] -= lr * share * g / (beta + np.sqrt(G[touched]))
    return V, G


def test_ftrl_runs_step_their_factors_by_ftrls_per_coordinate_rate():
    """The first step of a factor row under FTRL is about lr * share * g, not lr * sign(g): a tiny gradient
    moves a factor a tiny way (the bare 1e-10 floor moved it by the whole rate, and every rare value's vector
    jumped on its first row)."""
    rng = np.random.default_rng(3)
    slots, k = 6, 2
    X = sp.csr_matrix(np.array([[1.0, 0, -1, 0, 1, 0]]))  # signed hashed slots, as a click log's
    y = np.array([1.0])
    V = rng.standard_normal((slots, k)) * 0.05
    hyper = _hyper(k, l2=0.01)
    hyper[H_FTRL_BETA], hyper[K.H_FACTOR_LR] = 1.0, 0.3
    block = np.zeros((slots, 2 * k))
    block[:, :k] = V
    params = np.concatenate([np.zeros(slots + 1), block.ravel()])
    _, done, status = K.train_chunk(np.empty((1, 0)), y, np.empty(0), params, np.zeros((2, slots + 1)), hyper,
                                    np.full(1, 0.1), 1, 1, K.LOSS_LOG, K.OPT_FTRL, 0, sparse=_block(X))
    assert (done, status) == (1, 0)
    expected_V, expected_G = _ftrl_factor_reference(X, y, V, 0.1, 0.3, 1.0, 0.01)
    got = params[slots + 1:].reshape(slots, 2 * k)
    np.testing.assert_allclose(got[:, :k], expected_V, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got[:, k:], expected_G, rtol=1e-12, atol=1e-18)
    step = np.abs(got[:, :k] - V).max()
    assert 0 < step < 0.01  # a small gradient's step is small: far below the rate (0.1)


def _dense_adam_reference(X, y, w, w0, V, lr, batch, steps, l2, b1=0.9, b2=0.999, eps=1e-8):
    """Adam on every parameter at every step (dense), the factor L2 on every factor row: where every row names
    every slot, what lazy updates must equal. The linear part takes Adam without a penalty."""
    theta = np.concatenate([w, [w0], V.ravel()])
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    n_w = w.size
    for t in range(steps):
        rows = slice(t * batch, (t + 1) * batch)
        w, w0, V = theta[:n_w], theta[n_w], theta[n_w + 1:].reshape(V.shape)
        margins = ref.fm_margins(X[rows], w0, w, V)
        g0, gw, gV = ref.fm_batch_gradient(X[rows], ref.logistic_multipliers(margins, y[rows]), w0, w, V)
        g = np.concatenate([gw, [g0], gV.ravel()]) / batch
        g[n_w + 1:] += l2 * theta[n_w + 1:]
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + eps)
    return theta


def test_lazy_updates_equal_dense_adam_where_every_slot_is_touched():
    rng = np.random.default_rng(7)
    n, slots, k, batch = 24, 6, 2, 4
    X = sp.csr_matrix(rng.uniform(0.5, 1.5, (n, slots)))  # every row names every slot
    y = (rng.random(n) < 0.5).astype(np.float64)
    V = rng.standard_normal((slots, k)) * 0.3
    hyper = _hyper(k, l2=0.01)
    hyper[4], hyper[5], hyper[6] = 0.9, 0.999, 1e-8
    block = np.zeros((slots, 3 * k))
    block[:, :k] = V
    params = np.concatenate([np.zeros(slots + 1), block.ravel()])
    state = np.zeros((2, slots + 1))
    K.train_chunk(np.empty((n, 0)), y, np.empty(0), params, state, hyper, np.full(6, 0.05), batch, 1, K.LOSS_LOG,
                  5, 0, sparse=_block(X))
    expected = _dense_adam_reference(X, y, np.zeros(slots), 0.0, V, 0.05, batch, n // batch, 0.01)
    np.testing.assert_allclose(params[:slots + 1], expected[:slots + 1], rtol=1e-10, atol=1e-13)
    got_V = params[slots + 1:].reshape(slots, 3 * k)[:, :k]
    np.testing.assert_allclose(got_V, expected[slots + 1:].reshape(slots, k), rtol=1e-10, atol=1e-13)


def test_a_non_finite_batch_leaves_the_factors_as_they_were():
    rng, X, dense, y = _problem(seed=9, d=1)
    hyper = _hyper(2)
    params = np.concatenate([np.zeros(X.shape[1] + 2), rng.standard_normal(X.shape[1] * 2) * 1e200])
    before = params.copy()
    _, done, status = K.train_chunk(dense, y, np.empty(0), params, np.zeros((0, X.shape[1] + 2)), hyper,
                                    np.full(40, 1e300), 8, 1, K.LOSS_SQUARED, K.OPT_SGD, 0, sparse=_block(X))
    assert status < 0 and done == 0  # the first batch's pair term overflows: nothing is applied
    assert np.array_equal(params, before)


# ---- through the trainer: files, resume, the command line --------------------------------------------------------
@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """Two categorical columns whose values interact through planted rank-2 vectors (a linear model cannot)."""
    rng = np.random.default_rng(11)
    n = 6000
    a, b = rng.integers(0, 12, n), rng.integers(0, 12, n)
    ua, ub = rng.standard_normal((12, 2)), rng.standard_normal((12, 2))
    margin = 2.0 * (ua[a] * ub[b]).sum(axis=1)
    y = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(np.int64)
    path = tmp_path_factory.mktemp("clicks") / "c.parquet"
    pq.write_table(pa.table({"A": [f"a{v}" for v in a], "B": [f"b{v}" for v in b], "x": rng.standard_normal(n),
                             "y": y}), path, row_group_size=500)
    return str(path)


FM = {"factors": 4, "optimizer": "adagrad", "batch_size": 8, "epochs": 3, "seed": 2,
      "interactions": "none"}  # a searched cross would learn the pairs in the linear model too


def test_an_fm_learns_pairs_a_linear_model_cannot_and_its_file_predicts_the_same(clicks, tmp_path):
    linear = streamgd.fit(clicks, target="y", **{k: v for k, v in FM.items() if k != "factors"})
    fm = streamgd.fit(clicks, target="y", **FM)
    assert fm.history[-1]["loss"] < linear.history[-1]["loss"] - 0.05  # the pair effect is learned
    fm.save(tmp_path / "fm.safetensors")
    again = load(tmp_path / "fm.safetensors")
    table = pq.read_table(clicks)
    assert again.factorization["k"] == 4 and again.factor_block.shape == fm.factor_block.shape
    np.testing.assert_array_equal(again.predict_proba(table), fm.predict_proba(table))
    assert set(again.factor_norms()) == {"A", "B"}  # one-hot columns: a norm each


def _planted_click_log(seed, n, u):
    """Two columns whose values meet through planted rank-2 vectors, and six noise columns of mostly rare values
    (a click log's long tail: what an FM's factors memorise when they step too far)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 15, n), rng.integers(0, 15, n)
    margin = 1.5 * (u[0][a] * u[1][b]).sum(axis=1) - 1.0
    columns = {"A": [f"a{v}" for v in a], "B": [f"b{v}" for v in b]}
    for j in range(6):
        columns[f"N{j}"] = [f"n{j}_{v}" for v in rng.integers(0, 4000, n)]
    columns["y"] = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(np.int64)
    return pa.table(columns), margin


def test_an_fm_at_the_defaults_beats_the_linear_model_on_a_holdout_over_three_epochs(tmp_path):
    """At the click-log defaults (FTRL at batch 1, the factors' AdaGrad beside it) the FM closes a good part of
    the linear model's holdout gap to the truth over 3 epochs; with the factors' old step (lr * sign(g) on a
    row's first touch, FTRL's full rate) it memorised the noise columns' rare values (train 0.07, holdout
    worse than the linear model's)."""
    u = np.random.default_rng(0).standard_normal((2, 15, 2))
    train, _ = _planted_click_log(1, 10000, u)
    holdout, margin = _planted_click_log(2, 5000, u)
    pq.write_table(train, tmp_path / "train.parquet", row_group_size=2000)
    y = holdout.column("y").to_numpy()

    def log_loss(p):
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))

    truth = log_loss(1 / (1 + np.exp(-margin)))
    linear = streamgd.fit(tmp_path / "train.parquet", target="y", epochs=3, seed=0)
    fm = streamgd.fit(tmp_path / "train.parquet", target="y", epochs=3, seed=0, factors=4)
    assert fm.config["optimizer"] == "ftrl" and fm.config["batch_size"] == 1  # the defaults chose them
    closed = (log_loss(linear.predict_proba(holdout)[:, 1]) - log_loss(fm.predict_proba(holdout)[:, 1])) \
        / (log_loss(linear.predict_proba(holdout)[:, 1]) - truth)
    assert closed > 0.25  # measured 0.41; the old factor step: -1.34


def test_resume_of_an_fm_is_bit_identical(clicks, tmp_path):
    whole = streamgd.fit(clicks, target="y", **FM)

    def stop(info):
        if info.epoch == 1 and info.rows_done >= 1500:
            trainer._interrupted = True

    trainer = streamgd.Trainer(on_chunk=stop, checkpoint_dir=str(tmp_path / "ck"), checkpoint_every=1, **FM)
    with pytest.raises(streamgd.errors.TrainingInterrupted):
        trainer.fit(clicks, target="y")
    resumed = streamgd.fit(clicks, target="y", checkpoint_dir=str(tmp_path / "ck"), checkpoint_every=1,
                           resume=True, **FM)
    assert np.array_equal(resumed.coef_, whole.coef_) and np.array_equal(resumed.factor_block, whole.factor_block)


def test_a_model_file_written_by_main_is_read(tmp_path):
    path = tmp_path / "main.safetensors"
    path.write_bytes(base64.b64decode(MAIN_MODEL))
    model = load(path)
    assert model.coef_.tolist() == [[0.5, -1.25, 2.0]] and model.intercept_.tolist() == [0.125]
    assert model.factorization is None and model.optimizer_state.tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert model.decision_function(np.array([[1.0, 1.0, 1.0]])).tolist() == [1.375]


@pytest.mark.parametrize("options, says", [
    (["--factors", "0"], "factors=0 is not accepted"),
    (["--factors", "-2"], "factors=-2 is not accepted"),
    (["--factors", "100000"], "factors=100000 is not accepted"),
    (["--factors", "4", "--model", "softmax"], "one margin per row"),
    (["--factors", "4", "--optimizer", "momentum"], "does not train factors"),
    (["--factors", "4", "--batch-size", "full"], "trains in mini-batches"),
    (["--factor-numeric"], "give factors"),
], ids=["zero", "negative", "absurd", "softmax", "momentum", "full-batch", "numeric-alone"])
def test_bad_factor_options_are_one_line_and_exit_2(clicks, options, says):
    done = CliRunner().invoke(cli, ["fit", clicks, "--target", "y", "--quiet", *options])
    assert done.exit_code == 2, done.output
    assert says in done.output and "Traceback" not in done.output and done.output.count("\n") == 1


def test_an_fm_model_on_data_missing_a_column_is_one_line(clicks, tmp_path):
    model = streamgd.fit(clicks, target="y", **{**FM, "epochs": 1})
    model.save(tmp_path / "fm.safetensors")
    pq.write_table(pq.read_table(clicks).drop(["B"]), tmp_path / "noB.parquet")
    done = CliRunner().invoke(cli, ["predict", str(tmp_path / "fm.safetensors"), str(tmp_path / "noB.parquet"),
                                    "--out", str(tmp_path / "p.parquet")])
    assert done.exit_code == 2 and "'B'" in done.output and done.output.count("\n") == 1, done.output


def test_the_python_api_refuses_factors_with_full_batch():
    with pytest.raises(ConfigError, match="mini-batches"):
        streamgd.Trainer(factors=4, batch_size="full", optimizer="sgd")
