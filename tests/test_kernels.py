"""Compiled kernels against NumPy references: the loss and gradient of every loss on random batches (with
weights, intercepts, and the L2 term of a training step), float32 and float64, column- and row-major chunks;
bad rows; predictions."""

from __future__ import annotations

import numpy as np
import pytest

from streamgd.kernels import api as K

EPS = 0.7  # Huber threshold used throughout


def numpy_loss_grad(kind, X, y, w, params, n_out):
    """Summed weighted loss and its gradient w.r.t. params (coef row-major, then intercepts), in float64."""
    n, d = X.shape
    coef = params[: n_out * d].reshape(n_out, d)
    margins = X @ coef.T + params[n_out * d:]
    if kind == K.LOSS_SOFTMAX:
        shifted = margins - margins.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1))
        labels = y.astype(int)
        loss = log_norm - shifted[np.arange(n), labels]
        dloss = np.exp(shifted - log_norm[:, None])
        dloss[np.arange(n), labels] -= 1.0
    else:
        m = margins[:, 0]
        s = 2 * y - 1
        if kind == K.LOSS_SQUARED:
            loss, dm = 0.5 * (m - y) ** 2, m - y
        elif kind == K.LOSS_LOG:
            loss, dm = np.logaddexp(0, m) - y * m, 1 / (1 + np.exp(-m)) - y
        elif kind == K.LOSS_HINGE:
            loss, dm = np.maximum(0, 1 - s * m), np.where(s * m < 1, -s, 0.0)
        elif kind == K.LOSS_SQUARED_HINGE:
            z = np.maximum(0, 1 - s * m)
            loss, dm = z ** 2, -2 * s * z
        elif kind == K.LOSS_HUBER:
            r = m - y
            loss = np.where(np.abs(r) <= EPS, 0.5 * r ** 2, EPS * (np.abs(r) - 0.5 * EPS))
            dm = np.clip(r, -EPS, EPS)
        else:  # poisson
            loss, dm = np.exp(m) - y * m, np.exp(m) - y
        dloss = dm[:, None]
    dloss = dloss * w[:, None]
    grad = np.concatenate([(dloss.T @ X).ravel(), dloss.sum(axis=0)])
    return float((loss * w).sum()), grad


def problem(kind, n=37, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    n_out = 3 if kind == K.LOSS_SOFTMAX else 1
    params = rng.standard_normal(n_out * (d + 1)) * 0.5
    if kind == K.LOSS_SOFTMAX:
        y = rng.integers(0, 3, n).astype(np.float64)
    elif kind in (K.LOSS_LOG, K.LOSS_HINGE, K.LOSS_SQUARED_HINGE):
        y = (rng.random(n) < 0.5).astype(np.float64)
    elif kind == K.LOSS_POISSON:
        y = rng.poisson(2.0, n).astype(np.float64)
    else:
        y = rng.standard_normal(n) * 2
    return X, y, rng.uniform(0.2, 2.0, n), params, n_out


def hyper(alpha=0.0, l1_ratio=0.0):
    h = np.zeros(K.N_HYPER)
    h[K.H_ALPHA], h[K.H_L1_RATIO], h[K.H_HUBER_EPS] = alpha, l1_ratio, EPS
    return h


ALL_LOSSES = {"squared": K.LOSS_SQUARED, "log": K.LOSS_LOG, "softmax": K.LOSS_SOFTMAX, "hinge": K.LOSS_HINGE,
              "squared_hinge": K.LOSS_SQUARED_HINGE, "huber": K.LOSS_HUBER, "poisson": K.LOSS_POISSON}


@pytest.mark.parametrize("name", list(ALL_LOSSES))
@pytest.mark.parametrize("layout", ["F", "C"])
def test_batch_gradient_equals_numpy_in_float64(name, layout):
    kind = ALL_LOSSES[name]
    X, y, w, params, n_out = problem(kind)
    for start, stop in [(0, 37), (5, 6), (3, 30)]:
        grad = np.zeros_like(params)
        loss = K.batch_loss_grad(np.asarray(X, order=layout), y, w, start, stop, params, n_out, kind, hyper(),
                                 grad)
        ref_loss, ref_grad = numpy_loss_grad(kind, X[start:stop], y[start:stop], w[start:stop], params, n_out)
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-12)


def numpy_one_vs_rest(kind, X, y, w, params, n_out):
    """A hinge loss over ``n_out`` classes: class k's binary loss on ``y == k``, summed; gradient assembled."""
    d = X.shape[1]
    coef, intercept = params[: n_out * d].reshape(n_out, d), params[n_out * d:]
    total, grad = 0.0, np.zeros_like(params)
    for k in range(n_out):
        loss, g = numpy_loss_grad(kind, X, (y == k).astype(np.float64), w, np.append(coef[k], intercept[k]), 1)
        total += loss
        grad[k * d:(k + 1) * d], grad[n_out * d + k] = g[:d], g[d]
    return total, grad


@pytest.mark.parametrize("name", ["hinge", "squared_hinge"])
def test_hinge_over_three_classes_is_one_vs_rest(name):
    kind = ALL_LOSSES[name]
    X, _, w, _, _ = problem(kind, seed=5)
    rng = np.random.default_rng(5)
    y, params = rng.integers(0, 3, len(w)).astype(np.float64), rng.standard_normal(3 * (X.shape[1] + 1)) * 0.5
    grad = np.zeros_like(params)
    loss = K.batch_loss_grad(np.asfortranarray(X), y, w, 0, len(y), params, 3, kind, hyper(), grad)
    ref_loss, ref_grad = numpy_one_vs_rest(kind, X, y, w, params, 3)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-12)
    y[4] = 3.0  # a label outside the classes is a bad row, not a silent zero
    assert not np.isfinite(K.batch_loss_grad(np.asfortranarray(X), y, w, 0, len(y), params, 3, kind, hyper(),
                                             np.zeros_like(params)))


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_float32_chunks_agree_within_float32_tolerance(name):
    kind = ALL_LOSSES[name]
    X, y, w, params, n_out = problem(kind, seed=1)
    X32 = np.asfortranarray(X.astype(np.float32))
    grad = np.zeros_like(params)
    loss = K.batch_loss_grad(X32, y, np.empty(0), 0, len(y), params, n_out, kind, hyper(), grad)
    ref_loss, ref_grad = numpy_loss_grad(kind, X32.astype(np.float64), y, np.ones(len(y)), params, n_out)
    assert loss == pytest.approx(ref_loss, rel=1e-12)  # float32 inputs, float64 arithmetic
    _, exact = numpy_loss_grad(kind, X, y, np.ones(len(y)), params, n_out)
    np.testing.assert_allclose(grad, exact, rtol=1e-5, atol=1e-5 * np.abs(exact).max())


@pytest.mark.parametrize("name", ["squared", "log", "softmax", "huber"])
@pytest.mark.parametrize("batch_size", [1, 4, 37])
def test_train_chunk_steps_equal_numpy_sgd_with_l2(name, batch_size):
    kind = ALL_LOSSES[name]
    X, y, w, params, n_out = problem(kind, seed=2)
    alpha = 0.05
    n_coef = n_out * X.shape[1]
    lrs = np.linspace(0.1, 0.05, -(-len(y) // batch_size))
    expected = params.copy()
    expected_loss = 0.0
    for b, start in enumerate(range(0, len(y), batch_size)):
        stop = min(start + batch_size, len(y))
        loss, grad = numpy_loss_grad(kind, X[start:stop], y[start:stop], w[start:stop], expected, n_out)
        expected_loss += loss
        grad /= stop - start
        grad[:n_coef] += alpha * expected[:n_coef]  # the intercepts are not penalised
        expected -= lrs[b] * grad
    got = params.copy()
    total, rows, status = K.train_chunk(np.asfortranarray(X), y, w, got, np.zeros((0, len(got))),
                                        hyper(alpha), lrs, batch_size, n_out, kind, K.OPT_SGD, 0)
    assert (rows, status) == (len(y), 0)
    assert total == pytest.approx(expected_loss, rel=1e-11)
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-13)


def test_log_loss_is_stable_for_huge_margins():
    X = np.array([[1000.0], [-1000.0]])
    grad = np.zeros(2)
    loss = K.batch_loss_grad(X, np.array([0.0, 1.0]), np.empty(0), 0, 2, np.array([1.0, 0.0]), 1, K.LOSS_LOG,
                             hyper(), grad)
    assert loss == pytest.approx(2000.0) and np.isfinite(grad).all()
    np.testing.assert_allclose(grad, [1000.0 + 1000.0, 1.0 - 1.0])


def test_a_nan_row_stops_the_chunk_before_its_batch_and_names_the_row():
    X, y, w, params, n_out = problem(K.LOSS_LOG, seed=3)
    X[13, 2] = np.nan
    before = params.copy()
    total, rows, status = K.train_chunk(np.asfortranarray(X), y, np.empty(0), params, np.zeros((0, len(params))),
                                        hyper(), np.full(10, 0.1), 4, 1, K.LOSS_LOG, K.OPT_SGD, 0)
    assert (rows, status) == (12, -14)  # the batch [12, 16) holds row 13: not applied
    assert not np.array_equal(params, before) and np.isfinite(params).all()


def test_predict_margins_and_chunk_loss_match_numpy():
    X, y, w, params, n_out = problem(K.LOSS_SOFTMAX, seed=4)
    out = np.empty((len(y), 3))
    K.predict_margins(np.asfortranarray(X.astype(np.float32)), params, 3, out)
    coef = params[:15].reshape(3, 5)
    np.testing.assert_allclose(out, X.astype(np.float32).astype(np.float64) @ coef.T + params[15:], rtol=1e-12)
    loss = K.chunk_loss(X, y, np.empty(0), params, 3, K.LOSS_SOFTMAX, hyper())
    assert loss == pytest.approx(numpy_loss_grad(K.LOSS_SOFTMAX, X, y, np.ones(len(y)), params, 3)[0], rel=1e-12)


@pytest.mark.parametrize("name", ["log", "squared", "softmax"])
@pytest.mark.parametrize("batch_size", [8, 100, 300, 1000])
def test_column_major_chunks_read_in_place_train_bitwise_as_staged_row_major_ones(name, batch_size):
    """Column-major mini-batches skip the float64 tile; row-major ones are staged into it. Over several tiles
    (256 rows each at 32 features) and batches that straddle them, both give the same bits."""
    kind = ALL_LOSSES[name]
    rng = np.random.default_rng(7)
    n, d = 1000, 32
    n_out = 3 if kind == K.LOSS_SOFTMAX else 1
    X = (rng.standard_normal((n, d)) * 3).astype(np.float32)
    y = rng.integers(0, n_out if n_out > 1 else 2, n).astype(np.float64)
    results = []
    for layout in ("F", "C"):
        params = np.zeros(n_out * (d + 1))
        lrs = np.full(-(-n // batch_size), 0.05)
        total, rows, status = K.train_chunk(np.asarray(X, order=layout), y, np.empty(0), params,
                                            np.zeros((0, len(params))), hyper(0.01), lrs, batch_size, n_out, kind,
                                            K.OPT_SGD, 0)
        assert (rows, status) == (n, 0)
        results.append((total, params))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
