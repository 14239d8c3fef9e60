"""The scikit-learn estimators' ``factors=`` and ``field_aware=`` on scipy.sparse CSR: a binary factorization
machine learns pair effects the linear estimator cannot, its margins are the kernels' FM (FFM) margins of its own
parameters (tests/fm_reference.py), a model fitted on dense columns predicts sparse ones alike, bad settings are
a ValueError, and scikit-learn's own estimator checks pass but for those the linear estimators fail too and, for
the classifier, the multiclass problems a factorization machine refuses."""

from __future__ import annotations

import fm_reference as ref
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.utils.estimator_checks import parametrize_with_checks
from test_estimators import EXPECTED_FAILED_CHECKS

from streamgd.estimators import SGDClassifier, SGDRegressor

# an FM has one margin per row: scikit-learn's checks that train on three or more classes get a one-line refusal
MULTICLASS = "a factorization machine is binary or a regression: multiclass targets are refused with one line"
MULTICLASS_CHECKS = (
    "check_classifiers_classes", "check_classifiers_train", "check_class_weight_classifiers",
    "check_dict_unchanged", "check_dont_overwrite_parameters", "check_dtype_object", "check_estimator_sparse_array",
    "check_estimator_sparse_matrix", "check_estimator_sparse_tag", "check_estimators_fit_returns_self",
    "check_estimators_overwrite_params", "check_estimators_partial_fit_n_features",
    "check_f_contiguous_array_estimator", "check_fit2d_predict1d", "check_fit_score_takes_y",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance", "check_n_features_in_after_fitting",
    "check_non_transformer_estimators_n_iter", "check_positive_only_tag_during_fit", "check_readonly_memmap_input",
    "check_sample_weights_list", "check_supervised_y_2d",
)


def expected_failures(estimator) -> dict[str, str]:
    """The linear estimators' expected failures, and the multiclass checks for the FM classifier."""
    failures = dict(EXPECTED_FAILED_CHECKS)
    if isinstance(estimator, SGDClassifier):
        failures.update({name: MULTICLASS for name in MULTICLASS_CHECKS})
    return failures


@parametrize_with_checks([SGDClassifier(factors=4), SGDRegressor(factors=4), SGDRegressor(factors=4, loss="huber")],
                         expected_failed_checks=expected_failures)
def test_scikit_learn_estimator_checks_of_factorization_machines(estimator, check):
    check(estimator)


def test_a_model_fitted_on_dense_columns_predicts_a_sparse_matrix_of_them_alike(pairs):
    """The factor rows of a model of a matrix's columns are its columns, whichever block they come in (the dense
    block's rows are "numeric"): predicting sparse input with a dense fit read no factor rows before."""
    X, y = pairs
    settings = {k: v for k, v in SETTINGS.items() if k != "optimizer"}
    dense = SGDRegressor(factors=2, **settings).fit(X.toarray(), y)
    assert np.abs(dense.model_.factors_).max() > 0.01
    np.testing.assert_allclose(dense.predict(X), dense.predict(X.toarray()), rtol=1e-12, atol=1e-12)
    for field_aware in (False, True):  # (a field-aware FM fits sparse input only: a field per column)
        sparse = SGDRegressor(factors=2, field_aware=field_aware, **settings).fit(X, y)
        np.testing.assert_allclose(sparse.predict(X.toarray()), sparse.predict(X), rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def pairs():
    """One-hot CSR of two columns of 6 values each (12 slots) whose values interact through rank-2 vectors."""
    rng = np.random.default_rng(8)
    n = 5000
    a, b = rng.integers(0, 6, n), rng.integers(0, 6, n)
    ua, ub = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    y = (rng.random(n) < 1 / (1 + np.exp(-2.5 * (ua[a] * ub[b]).sum(axis=1)))).astype(np.int64)
    X = sp.csr_matrix((np.ones(2 * n), np.stack([a, 6 + b], axis=1).ravel(), np.arange(0, 2 * n + 1, 2)),
                      shape=(n, 12))
    return X, y


SETTINGS = {"optimizer": "adagrad", "batch_size": 8, "max_iter": 4, "n_iter_no_change": 0, "random_state": 1}


@pytest.mark.parametrize("field_aware", [False, True], ids=["fm", "ffm"])
def test_a_sparse_fm_classifier_learns_pairs_and_predicts_its_own_margins(pairs, field_aware):
    X, y = pairs
    linear = SGDClassifier(**SETTINGS).fit(X, y)
    fm = SGDClassifier(factors=3, field_aware=field_aware, **SETTINGS).fit(X, y)
    log_loss = [float(-np.mean(np.log(m.predict_proba(X)[np.arange(len(y)), y]))) for m in (linear, fm)]
    assert log_loss[1] < log_loss[0] - 0.05
    model = fm.model_
    V = model.factors_
    if field_aware:
        assert V.shape == (12, 12, 3)  # each column of the matrix a field of its own
        margins = ref.ffm_margins(X, ref.entry_fields(X, np.arange(12)), model.intercept_[0], model.coef_[0], V)
    else:
        assert V.shape == (12, 3)
        margins = ref.fm_margins(X, model.intercept_[0], model.coef_[0], V)
    np.testing.assert_allclose(fm.decision_function(X), margins, rtol=1e-10, atol=1e-12)


def test_field_aware_factors_on_dense_input_need_unscaled_columns_and_field_aware_needs_factors(pairs):
    X, y = pairs
    with pytest.raises(ValueError, match="standardize=False"):
        SGDRegressor(factors=2, field_aware=True).fit(X.toarray(), y.astype(float))
    with pytest.raises(ValueError, match="give factors"):
        SGDClassifier(field_aware=True).fit(X, y)
    model = SGDRegressor(factors=2, standardize=False, lr=0.01, **{k: v for k, v in SETTINGS.items()
                                                                     if k != "optimizer"}).fit(X.toarray(), y)
    assert model.model_.factors_.shape == (12, 2)  # dense columns: a factor row each
