"""Invariants every loss and optimizer must keep, parametrised over the registries: gradients equal finite
differences, a full-batch step does not depend on how the rows are cut into units, momentum 0 is plain SGD, and
the defaults converge (Poisson included)."""

from __future__ import annotations

import numpy as np
import pytest

import streamgd
from problems import targets_for, write_xy
from streamgd.kernels import api as kernels
from streamgd.errors import DivergenceError
from streamgd.models.linear import MODEL_KINDS

N_ROWS, N_FEATURES = 13, 4




# every loss with one output, and the multi-output ones with three classes
LOSS_CASES = [(kind, 1 if cls.n_outputs(None) == 1 else 2) for kind, cls in MODEL_KINDS.items()]
LOSS_CASES += [(kind, 3) for kind, cls in MODEL_KINDS.items() if cls.n_outputs(3) == 3]


@pytest.mark.parametrize("kind, n_out", LOSS_CASES, ids=[f"{k}-{n}" for k, n in LOSS_CASES])
@pytest.mark.parametrize("rows", [(0, N_ROWS), (3, 8)], ids=["column-tile", "row-tile"])
def test_every_loss_gradient_equals_central_differences(kind, n_out, rows):
    """batch_loss_grad's gradient against (L(p + h e_i) - L(p - h e_i)) / 2h for every parameter, and along a
    random direction, in float64 with weighted rows (h = 1e-6; agreement to 1e-7 relative)."""
    rng = np.random.default_rng(20)
    X = np.asfortranarray(rng.standard_normal((N_ROWS, N_FEATURES)))
    y = targets_for(kind, n_out, rng, N_ROWS)
    weights = rng.uniform(0.5, 2.0, N_ROWS)
    params = 0.3 * rng.standard_normal(kernels.n_params(N_FEATURES, n_out))
    hyper = np.zeros(kernels.N_HYPER)
    hyper[kernels.H_HUBER_EPS] = 1.35
    loss_kind = MODEL_KINDS[kind].loss_kind

    def loss(p: np.ndarray) -> float:
        return kernels.batch_loss_grad(X, y, weights, *rows, p, n_out, loss_kind, hyper, np.zeros_like(p))

    grad = np.zeros_like(params)
    kernels.batch_loss_grad(X, y, weights, *rows, params, n_out, loss_kind, hyper, grad)
    h = 1e-6
    unit = np.eye(len(params))
    central = np.array([(loss(params + h * e) - loss(params - h * e)) / (2 * h) for e in unit])
    np.testing.assert_allclose(grad, central, rtol=1e-7, atol=1e-7)
    direction = rng.standard_normal(len(params))
    along = (loss(params + h * direction) - loss(params - h * direction)) / (2 * h)
    assert along == pytest.approx(grad @ direction, rel=1e-7, abs=1e-7)
    assert np.abs(grad).max() > 0.1  # a real gradient, not a zero that matches a zero


def rows_for(kind: str, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(21)
    X = rng.standard_normal((n, 3))
    n_out = MODEL_KINDS[kind].n_outputs(3 if kind == "softmax" else None)
    return X, targets_for(kind, n_out, rng, n)


@pytest.mark.parametrize("kind", list(MODEL_KINDS))
def test_a_full_batch_step_is_the_same_for_units_of_1_7_and_all_rows(kind, tmp_path):
    """One gradient-descent epoch sums the gradient over the units the file is cut into: row groups of 1, 7 and
    all 60 rows give the same coefficients to 1e-12 (only the order of the float64 sums differs)."""
    X, y = rows_for(kind)
    fitted = {}
    for size in (1, 7, len(y)):
        path = write_xy(tmp_path / f"rg{size}.parquet", X, y, size)
        fitted[size] = streamgd.fit(path, target="y", model=kind, batch_size="full", epochs=1, lr=0.5,
                                    schedule="constant", dtype="float64", standardize=False)
    whole = np.concatenate([fitted[len(y)].coef_.ravel(), fitted[len(y)].intercept_])
    assert np.abs(whole).max() > 1e-3  # the step moved the parameters
    for size in (1, 7):
        got = np.concatenate([fitted[size].coef_.ravel(), fitted[size].intercept_])
        np.testing.assert_allclose(got, whole, rtol=1e-12, atol=1e-15)


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    rng = np.random.default_rng(22)
    X = rng.standard_normal((2000, 4))
    y = (rng.random(2000) < 1 / (1 + np.exp(-(X @ [1.0, -2.0, 0.5, 0.0] + 0.3)))).astype(np.int64)
    return write_xy(tmp_path_factory.mktemp("inv") / "c.parquet", X, y, 300)


@pytest.mark.parametrize("name", ["momentum", pytest.param("nesterov", marks=pytest.mark.slow)])
@pytest.mark.parametrize("batch_size", [pytest.param(1, marks=pytest.mark.slow), 32, "full"])
def test_momentum_zero_is_plain_sgd_bit_for_bit(classification, name, batch_size):
    run = dict(target="y", batch_size=batch_size, epochs=2, lr=0.1, schedule="invscaling", lr_decay=0.01,
               lr_power=1.0, dtype="float64", seed=3)
    sgd = streamgd.fit(classification, optimizer="sgd", **run)
    momentum = streamgd.fit(classification, optimizer=name, optimizer_options={"momentum": 0.0}, **run)
    np.testing.assert_array_equal(momentum.coef_, sgd.coef_)
    np.testing.assert_array_equal(momentum.intercept_, sgd.intercept_)
    with_momentum = streamgd.fit(classification, optimizer=name, **run)
    assert np.abs(with_momentum.coef_ - sgd.coef_).max() > 1e-6  # the option reaches the rule


# ---- Poisson at its defaults ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def abs_regression():
    """abs(make_regression) targets (mean 170, up to 710), standardized features."""
    from sklearn.datasets import make_regression

    X, y = make_regression(n_samples=2000, n_features=10, noise=10.0, random_state=0)
    return (X - X.mean(axis=0)) / X.std(axis=0), np.abs(y)


def poisson_objective(X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float, alpha: float) -> float:
    m = X @ coef + intercept
    return float(np.mean(np.exp(m) - y * m) + 0.5 * alpha * coef @ coef)


def test_poisson_defaults_converge_near_scikit_learn_poisson_regressor(abs_regression):
    """SGDRegressor(loss="poisson") at its defaults (sgd, rate 0.2 x 0.25, clipped to norm 1) against
    PoissonRegressor on the same objective (mean(exp(m) - y m) + alpha/2 ||coef||^2): relative gap below 2e-3
    (measured 1.0e-3; the objective is about -701)."""
    from sklearn.linear_model import PoissonRegressor

    from streamgd.estimators import SGDRegressor

    X, y = abs_regression
    reference = PoissonRegressor(alpha=1e-4, tol=1e-12, max_iter=10_000, solver="newton-cholesky").fit(X, y)
    best = poisson_objective(X, y, reference.coef_, reference.intercept_, 1e-4)
    model = SGDRegressor(loss="poisson").fit(X, y)
    got = poisson_objective(X, y, model.coef_, model.intercept_[0], 1e-4)
    assert 0 <= (got - best) / abs(best) < 2e-3, (got, best)
    assert model.intercept_[0] == pytest.approx(reference.intercept_, abs=0.05)


def test_poisson_at_the_former_defaults_diverges(abs_regression, tmp_path):
    """Why the defaults changed: rate 0.2 without clipping overflows exp in the first steps."""
    X, y = abs_regression
    path = write_xy(tmp_path / "p.parquet", X, y, 65_536)
    with pytest.raises(DivergenceError, match="diverged at epoch 1"):
        streamgd.fit(path, target="y", model="poisson", batch_size=32, lr=0.2, clip_norm=0.0, dtype="float64")
