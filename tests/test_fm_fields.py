"""Factors on some columns only (``factor_fields``, issue 28): the kernels' pair term over a row's first m entries
against the NumPy reference, the automatic choice of the columns with pair effects, and named columns checked;
an FM on standardized dense columns folded into a model on raw inputs."""

from __future__ import annotations

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


def _first_entries(X: sp.csr_matrix, m: int) -> sp.csr_matrix:
    """Each row's first m entries (in the block's order)."""
    rows = [X[r] for r in range(X.shape[0])]
    return sp.vstack([sp.csr_matrix((row.data[:m], row.indices[:m], [0, min(m, row.nnz)]), shape=(1, X.shape[1]))
                      for row in rows], format="csr")


@pytest.mark.parametrize("span", [1, 2, 3])
def test_a_span_gives_only_a_rows_first_entries_factors(span):
    """Rows of four entries (four columns hashed into 30 slots, as a FeatureSpec lays them out): with span m the
    pair term and its gradient are the reference's over the first m entries, the linear part over all four."""
    rng = np.random.default_rng(4)
    n, slots, k, width = 50, 30, 3, 4
    indices = np.stack([rng.choice(slots, width, replace=False) for _ in range(n)]).ravel()
    X = sp.csr_matrix((rng.choice([-1.0, 1.0], n * width), indices, np.arange(0, n * width + 1, width)),
                      shape=(n, slots))
    block = SparseArrays(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.copy(), slots)
    y = (rng.random(n) < 0.5).astype(np.float64)
    w, w0, V = rng.standard_normal(slots), 0.2, rng.standard_normal((slots, k)) * 0.5
    params = np.concatenate([w, [w0], V.ravel()])
    hyper = np.zeros(K.N_HYPER)
    hyper[K.H_FACTORS], hyper[K.H_FACTOR_SPAN] = k, span
    dense = np.empty((n, 0), order="F")
    out = np.empty((n, 1))
    K.predict_margins(dense, params, 1, out, sparse=block, hyper=hyper)
    paired = _first_entries(X, span)
    margins = X @ w + w0 + ref.fm_margins(paired, 0.0, np.zeros(slots), V)
    np.testing.assert_allclose(out[:, 0], margins, rtol=1e-12, atol=1e-12)
    assert np.abs(margins - ref.fm_margins(X, w0, w, V)).max() > 0.1  # the span changes the margins
    grad = np.zeros_like(params)
    K.batch_loss_grad(dense, y, np.empty(0), 0, n, params, 1, K.LOSS_LOG, hyper, grad, sparse=block)
    multipliers = ref.logistic_multipliers(margins, y)
    _, _, gV = ref.fm_batch_gradient(paired, multipliers, 0.0, np.zeros(slots), V)
    np.testing.assert_allclose(grad[:slots], X.T @ multipliers, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad[slots + 1:].reshape(V.shape), gV, rtol=1e-10, atol=1e-12)


def _planted(seed: int, n: int, u: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """Columns A and B meet through rank-2 vectors; N0..N3 are noise of many rare values; C has a main effect."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.integers(0, 15, n), rng.integers(0, 15, n), rng.integers(0, 15, n)
    margin = 1.5 * (u[0][a] * u[1][b]).sum(axis=1) + 0.1 * c - 1.0
    columns = {"N0": [f"n0_{v}" for v in rng.integers(0, 3000, n)], "A": [f"a{v}" for v in a],
               "C": [f"c{v}" for v in c], "B": [f"b{v}" for v in b]}
    for j in range(1, 4):
        columns[f"N{j}"] = [f"n{j}_{v}" for v in rng.integers(0, 3000, n)]
    columns["y"] = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(np.int64)
    return pa.table(columns), margin


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    u = np.random.default_rng(0).standard_normal((2, 15, 2))
    path = tmp_path_factory.mktemp("planted") / "train.parquet"
    pq.write_table(_planted(1, 12000, u)[0], path, row_group_size=3000)
    return str(path), _planted(2, 6000, u)


def _log_loss(model, table: pa.Table) -> float:
    y = table.column("y").to_numpy()
    p = np.clip(model.predict_proba(table)[:, 1], 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def test_auto_gives_factors_to_the_columns_with_pair_effects_and_beats_all(planted):
    path, (holdout, _) = planted
    auto = streamgd.fit(path, target="y", epochs=3, seed=0, factors=4, interactions="none")
    every = streamgd.fit(path, target="y", epochs=3, seed=0, factors=4, interactions="none", factor_fields="all")
    assert auto.factorization["columns"] == ["A", "B"] and "columns" not in every.factorization
    assert [c.name for c in auto.spec.categorical][:2] == ["A", "B"]  # numbered first: the kernels' span
    assert _log_loss(auto, holdout) < _log_loss(every, holdout) - 0.005
    named = streamgd.fit(path, target="y", epochs=3, seed=0, factors=4, interactions="none", factor_fields="A,B")
    np.testing.assert_array_equal(named.predict_proba(holdout), auto.predict_proba(holdout))


def test_auto_gives_factors_to_exactly_the_click_logs_planted_low_rank_columns(tmp_path):
    """The benchmark's premise (scripts/bench_fm.py): on the generator's click log, the columns it gave latent
    vectors (C3..C6 of 8 here, 300 to 10,000 Zipf-distributed values) get factors, and none of the others, whose
    values only have main effects."""
    from streamgd.bench.synthetic_ctr import make_ctr_dataset

    info = make_ctr_dataset(tmp_path / "clicks.parquet", n_rows=100_000, n_numeric=1, n_categorical=8,
                            cardinalities=(3, 10, 300, 1000, 3000, 10000, 1000, 5000), interactions=(),
                            factor_rank=4, row_group_size=20_000, seed=0)
    model = streamgd.fit(info.path, target="label", factors=4, epochs=1, interactions="none", missing="impute",
                         categorical=[f"C{k}" for k in range(1, 9)])
    assert info.factor_columns == ["C3", "C4", "C5", "C6"]
    assert model.factorization["columns"] == info.factor_columns


def test_named_factor_fields_are_checked_with_one_line(planted, tmp_path):
    path, _ = planted
    with pytest.raises(ConfigError, match="'Z', which is not in the data"):
        streamgd.fit(path, target="y", factors=4, factor_fields=["A", "Z"])
    with pytest.raises(ConfigError, match="give factors"):
        streamgd.fit(path, target="y", factor_fields="A,B")
    result = CliRunner().invoke(cli, ["fit", path, "--target", "y", "--factors", "4", "--factor-fields", "A,A",
                                      "--out", str(tmp_path / "m.safetensors")])
    assert result.exit_code == 2 and "each column named once" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_standardized_dense_fm_predicts_on_raw_inputs_as_it_was_trained():
    """Dense columns with factors, standardized while training: the model on raw inputs (factors, coefficients
    and intercept folded) predicts what the same FM trained on the columns standardized beforehand predicts on
    them."""
    from streamgd.estimators import SGDRegressor

    rng = np.random.default_rng(5)
    X = rng.standard_normal((800, 4)) * [1.0, 10.0, 0.1, 3.0] + [5.0, -20.0, 0.3, 0.0]
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    y = Z @ [1.0, -0.5, 0.2, 0.0] + 0.7 * Z[:, 0] * Z[:, 1] + 0.1 * rng.standard_normal(800)
    settings = {"factors": 2, "optimizer": "adagrad", "lr": 0.05, "max_iter": 3, "n_iter_no_change": 0,
                "random_state": 0}
    raw = SGDRegressor(**settings).fit(X, y)
    scaled = SGDRegressor(standardize=False, **settings).fit(Z, y)
    np.testing.assert_allclose(raw.predict(X), scaled.predict(Z), rtol=1e-7, atol=1e-9)
    assert np.abs(raw.model_.factors_ - scaled.model_.factors_ / X.std(axis=0)[:, None]).max() < 1e-7
