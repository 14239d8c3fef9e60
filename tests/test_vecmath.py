"""The vectorisable exp and log1p against math's, over the ranges the log loss uses."""

import math

import numba
import numpy as np
import pytest

from streamgd.kernels.vecmath import exp_nonpositive, log1p_unit


@numba.njit
def _exp_all(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = exp_nonpositive(x[i])
    return out


@numba.njit
def _log1p_all(e):
    out = np.empty_like(e)
    for i in range(e.shape[0]):
        out[i] = log1p_unit(e[i])
    return out


def _ulps(got, want):
    return np.abs(got - want) / np.spacing(np.abs(want))


def test_exp_is_within_two_ulps_of_math_down_to_the_smallest_normal():
    rng = np.random.default_rng(0)
    x = np.concatenate([-rng.exponential(3.0, 200_000), -rng.uniform(0, 708, 50_000), [0.0, -0.0, -1e-300, -708.0]])
    want = np.array([math.exp(v) for v in x])
    assert _ulps(_exp_all(x), want).max() <= 2


def test_exp_underflows_like_math_and_keeps_nan():
    x = np.array([-720.0, -745.0, -745.2, -1000.0, -np.inf, 5.0, np.nan])
    got = _exp_all(x)
    want = np.array([math.exp(v) for v in x[:5]])
    np.testing.assert_allclose(got[:5], want, rtol=1e-12, atol=1e-320)  # subnormal results lose bits, as math's do
    assert got[5] == 1.0 and np.isnan(got[6])


def test_log1p_is_within_three_ulps_of_math():
    rng = np.random.default_rng(1)
    e = np.concatenate([rng.uniform(0, 1, 200_000), np.exp(-rng.uniform(0, 700, 50_000)), [0.0, 1.0]])
    want = np.array([math.log1p(v) for v in e])
    got = _log1p_all(e)
    assert got[-2] == 0.0
    nonzero = want > 0
    assert _ulps(got[nonzero], want[nonzero]).max() <= 3


@pytest.mark.parametrize("value", [np.nan])
def test_log1p_keeps_nan(value):
    assert np.isnan(_log1p_all(np.array([value]))[0])
