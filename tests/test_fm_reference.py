"""The FM/FFM references (tests/fm_reference.py) checked against finite differences, against each other and
against hand-computed values, so the compiled kernels can be checked against them."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fm_reference import (entry_fields, ffm_batch_gradient, ffm_gradient, ffm_margin, ffm_margins,
                          fm_batch_gradient, fm_gradient, fm_margin, fm_margin_pairwise, fm_margins,
                          linear_margin, logistic_multipliers)

N_SLOTS, K, N_FIELDS = 12, 3, 4


def _params(rng, n_fields=None):
    V = rng.normal(0, 0.7, (N_SLOTS, K) if n_fields is None else (N_SLOTS, n_fields, K))
    return float(rng.normal()), rng.normal(0, 1, N_SLOTS), V


def _rows():
    """Rows as (slots, values): distinct slots, a repeated slot (a hash collision), one entry, none."""
    return [([0, 3, 7, 11], [1.0, 0.5, -2.0, 1.5]), ([2, 2, 5], [1.0, 1.0, 0.3]), ([4], [2.0]), ([], [])]


def _fd(f, x, eps=1e-6):
    """Central differences of a scalar function of an array, entry by entry."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        g[i] = (f(up) - f(down)) / (2 * eps)
    return g


def test_a_hand_computed_fm_and_ffm_margin():
    w0, w = 0.25, np.arange(N_SLOTS, dtype=float)
    V = np.zeros((N_SLOTS, 2))
    V[1], V[4], V[6] = [1.0, 2.0], [3.0, -1.0], [0.5, 0.5]
    # pairs: (1,4): 1*3 - 2 = 1, x 2*3 = 6; (1,6): 1.5, x 2*(-1) = -3; (4,6): 1.0, x 3*(-1) = -3
    expected = 0.25 + (1 * 2 + 4 * 3 - 6 * 1) + 6 - 3 - 3
    assert fm_margin([1, 4, 6], [2.0, 3.0, -1.0], w0, w, V) == pytest.approx(expected, abs=1e-12)
    assert fm_margin_pairwise([1, 4, 6], [2.0, 3.0, -1.0], w0, w, V) == pytest.approx(expected, abs=1e-12)
    F = np.zeros((N_SLOTS, 2, 2))
    F[1, 1], F[4, 0] = [1.0, 1.0], [2.0, 0.0]  # the pair (slot 1 in field 0, slot 4 in field 1)
    F[1, 0] = [9.0, 9.0]  # slot 1's vector for field 0 is not used by this pair
    assert ffm_margin([1, 4], [1.0, 0.5], [0, 1], 0.0, np.zeros(N_SLOTS), F) == pytest.approx(2.0 * 0.5)


@pytest.mark.parametrize("row", range(4))
def test_rendle_identity_equals_the_pairwise_definition(row):
    rng = np.random.default_rng(row)
    w0, w, V = _params(rng)
    slots, values = _rows()[row]
    assert fm_margin(slots, values, w0, w, V) == pytest.approx(fm_margin_pairwise(slots, values, w0, w, V),
                                                              abs=1e-12)


def test_fm_with_zero_factors_is_the_linear_model():
    rng = np.random.default_rng(1)
    w0, w, V = _params(rng)
    for slots, values in _rows():
        assert fm_margin(slots, values, w0, w, 0 * V) == linear_margin(slots, values, w0, w)


def test_ffm_with_one_field_is_fm():
    rng = np.random.default_rng(2)
    w0, w, V = _params(rng)
    for slots, values in _rows():
        fields = np.zeros(len(slots), dtype=int)
        assert ffm_margin(slots, values, fields, w0, w, V[:, None, :]) == pytest.approx(
            fm_margin(slots, values, w0, w, V), abs=1e-12)
        g = ffm_gradient(slots, values, fields, w0, w, V[:, None, :])
        h = fm_gradient(slots, values, w0, w, V)
        assert g[0] == h[0] and np.array_equal(g[1], h[1])
        assert np.allclose(g[2][:, 0, :], h[2], atol=1e-12)


def test_ffm_differs_from_fm_when_fields_differ():
    """A check that the field index is used: a one-field FFM equals FM, a several-field one (with different
    vectors per field) does not."""
    rng = np.random.default_rng(3)
    w0, w, V = _params(rng, N_FIELDS)
    slots, values = _rows()[0]
    fm = fm_margin(slots, values, w0, w, V[:, 0, :])
    assert abs(ffm_margin(slots, values, [0, 1, 2, 3], w0, w, V) - fm) > 1e-3
    assert ffm_margin(slots, values, [0, 0, 0, 0], w0, w, V) == pytest.approx(fm, abs=1e-12)


@pytest.mark.parametrize("row", range(4))
def test_fm_gradient_by_finite_differences(row):
    rng = np.random.default_rng(10 + row)
    w0, w, V = _params(rng)
    slots, values = _rows()[row]
    g0, g_w, g_V = fm_gradient(slots, values, w0, w, V)
    assert g0 == pytest.approx((fm_margin(slots, values, w0 + 1e-6, w, V)
                                - fm_margin(slots, values, w0 - 1e-6, w, V)) / 2e-6, abs=1e-6)
    assert np.allclose(g_w, _fd(lambda p: fm_margin(slots, values, w0, p, V), w), atol=1e-6)
    assert np.allclose(g_V, _fd(lambda p: fm_margin_pairwise(slots, values, w0, w, p), V), atol=1e-6)
    untouched = np.setdiff1d(np.arange(N_SLOTS), slots)
    assert not g_V[untouched].any() and not g_w[untouched].any()


@pytest.mark.parametrize("row", range(4))
def test_ffm_gradient_by_finite_differences(row):
    rng = np.random.default_rng(20 + row)
    w0, w, V = _params(rng, N_FIELDS)
    slots, values = _rows()[row]
    fields = rng.integers(0, N_FIELDS, len(slots))
    if row == 1:
        fields[:2] = 1  # the repeated slot in one field: the pair's two vectors are one vector
    _, g_w, g_V = ffm_gradient(slots, values, fields, w0, w, V)
    assert np.allclose(g_w, _fd(lambda p: ffm_margin(slots, values, fields, w0, p, V), w), atol=1e-6)
    assert np.allclose(g_V, _fd(lambda p: ffm_margin(slots, values, fields, w0, w, p), V), atol=1e-6)


def test_batch_helpers_over_csr_match_row_by_row_and_a_dense_pair_formula():
    rng = np.random.default_rng(5)
    w0, w, V = _params(rng)
    X = sp.random(40, N_SLOTS, density=0.3, random_state=7, format="csr")
    dense = X.toarray()
    # dense form of the pairwise sum: 1/2 (x^T V V^T x - sum_s x_s^2 |v_s|^2)
    expected = w0 + dense @ w + 0.5 * (np.einsum("rs,st,rt->r", dense, V @ V.T, dense)
                                       - (dense ** 2) @ (V ** 2).sum(axis=1))
    assert np.allclose(fm_margins(X, w0, w, V), expected, atol=1e-12)
    assert np.allclose(fm_margins(X, w0, w, V, pairwise=True), expected, atol=1e-12)

    y = rng.random(40) < 0.3
    c = logistic_multipliers(expected, y)

    def loss(w0_, w_, V_):
        m = fm_margins(X, w0_, w_, V_)
        return float(np.sum(np.logaddexp(0.0, np.where(y, -m, m))))

    g0, g_w, g_V = fm_batch_gradient(X, c, w0, w, V)
    assert g0 == pytest.approx(np.sum(c), abs=1e-12)
    assert np.allclose(g_w, _fd(lambda p: loss(w0, p, V), w), atol=1e-5)
    assert np.allclose(g_V, _fd(lambda p: loss(w0, w, p), V), atol=1e-5)

    column_field = np.arange(N_SLOTS) % N_FIELDS
    fields = entry_fields(X, column_field)
    W = rng.normal(0, 0.5, (N_SLOTS, N_FIELDS, K))
    rows = [ffm_margin(X[r].indices, X[r].data, column_field[X[r].indices], w0, w, W) for r in range(40)]
    assert np.allclose(ffm_margins(X, fields, w0, w, W), rows, atol=1e-12)
    assert np.allclose(ffm_margins(X, np.zeros(X.nnz, int), w0, w, W), fm_margins(X, w0, w, W[:, 0]), atol=1e-12)
    m = ffm_margins(X, fields, w0, w, W)
    c = logistic_multipliers(m, y)

    def ffm_loss(W_):
        m_ = ffm_margins(X, fields, w0, w, W_)
        return float(np.sum(np.logaddexp(0.0, np.where(y, -m_, m_))))

    _, _, g_W = ffm_batch_gradient(X, fields, c, w0, w, W)
    assert np.allclose(g_W, _fd(ffm_loss, W), atol=1e-5)
