"""The kernels' codes agree with the registries that name them, and an optimizer state the rule cannot use is
refused before compiled code reads it (compiled code checks no bounds)."""

from __future__ import annotations

import numpy as np
import pytest

from streamgd.data.sparse_block import SparseBlock
from streamgd.kernels import api, codes
from streamgd.models.linear import MODEL_KINDS
from streamgd.optim import OPTIMIZERS


def test_every_loss_code_is_one_model_kind_and_the_kernels_name_it_so():
    by_code = {cls.loss_kind: name for name, cls in MODEL_KINDS.items()}
    assert len(by_code) == len(MODEL_KINDS) and sorted(by_code) == list(range(codes.N_LOSSES))
    assert {code: codes.loss_label(code) for code in by_code} == by_code


def test_every_optimizer_code_is_one_optimizer_with_the_state_rows_its_rule_reads():
    by_code = {cls.code: name for name, cls in OPTIMIZERS.items()}
    assert len(by_code) == len(OPTIMIZERS) and sorted(by_code) == list(range(codes.N_OPTIMIZERS))
    assert {code: codes.optimizer_label(code) for code in by_code} == by_code
    assert {name: codes.STATE_ROWS[cls.code] for name, cls in OPTIMIZERS.items()} == \
        {name: len(cls.state_names) for name, cls in OPTIMIZERS.items()}


def _chunk(n=40, d=3):
    rng = np.random.default_rng(0)
    return np.asfortranarray(rng.standard_normal((n, d))), (rng.random(n) < 0.5).astype(np.float64)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("opt", ["adam", "ftrl", "momentum"])
def test_a_state_with_too_few_rows_or_the_wrong_length_is_refused_before_training(opt, sparse):
    X, y = _chunk()
    block = SparseBlock.from_fixed(np.zeros((40, 1), dtype=np.int64), np.ones((40, 1)), n_slots=5) if sparse else None
    n_par = api.n_params(3 + (5 if sparse else 0))
    code, rows = OPTIMIZERS[opt].code, len(OPTIMIZERS[opt].state_names)
    hyper = np.zeros(api.N_HYPER)
    for state in (np.zeros((rows - 1, n_par)), np.zeros((rows, n_par - 1)), np.zeros(n_par)):
        params = np.zeros(n_par)
        with pytest.raises(ValueError, match=f"{opt} reads {rows} rows of optimizer state"):
            api.train_chunk(X, y, np.empty(0), params, state, hyper, np.full(40, 0.1), 8, 1, api.LOSS_LOG, code, 0,
                            sparse=block)
        with pytest.raises(ValueError, match=f"{opt} reads {rows} rows of optimizer state"):
            api.full_batch_step(params, np.ones(n_par), 40.0, state, hyper, 0.1, code, 0, n_par - 1)
        assert not params.any()  # nothing ran
    params = np.zeros(n_par)  # the state the rule reads, and one row more (hyper names none of it): trains
    total, done, status = api.train_chunk(X, y, np.empty(0), params, np.zeros((rows + 1, n_par)), hyper,
                                          np.full(40, 0.1), 8, 1, api.LOSS_LOG, code, 0, sparse=block)
    assert (done, status) == (40, 0) and np.isfinite(total) and params.any()


def test_an_unknown_loss_or_optimizer_code_is_refused():
    X, y = _chunk()
    with pytest.raises(ValueError, match="loss_kind must be a loss code"):
        api.chunk_loss(X, y, np.empty(0), np.zeros(4), 1, codes.N_LOSSES, np.zeros(api.N_HYPER))
    with pytest.raises(ValueError, match="opt_kind must be an optimizer code"):
        api.train_chunk(X, y, np.empty(0), np.zeros(4), np.zeros((0, 4)), np.zeros(api.N_HYPER), np.full(40, 0.1),
                        8, 1, api.LOSS_LOG, codes.N_OPTIMIZERS, 0)
