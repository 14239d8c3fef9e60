"""Field-aware factorization machines (issue 28, ``--field-aware``): the compiled pair term and its gradient against
tests/fm_reference.py's O(n^2 k) definition and finite differences, with fields by slot and by an entry's position
in its row; factors held at zero train the linear model bit for bit; lazy per-(row, field) updates equal dense
Adam where every block is reached; resume bit-identical; the model file; bad input refused with one line."""

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
from streamgd.models.linear import load
from streamgd.optim.factors import check_factor_block_fits


def _block(X: sp.csr_matrix) -> SparseArrays:
    return SparseArrays(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float64), X.shape[1])


def _hyper(k, fields, numeric=False, l2=0.0):
    hyper = np.zeros(K.N_HYPER)
    hyper[K.H_FACTORS], hyper[K.H_FIELDS], hyper[K.H_FACTOR_NUMERIC], hyper[K.H_FACTOR_L2] = k, fields, numeric, l2
    return hyper


def _problem(seed=0, n=30, slots=14, d=2, fields=3, density=0.3):
    rng = np.random.default_rng(seed)
    X = sp.random(n, slots, density=density, random_state=seed, format="csr")
    X.sort_indices()
    dense = np.asfortranarray(rng.standard_normal((n, d)))
    y = (rng.random(n) < 0.5).astype(np.float64)
    slot_fields = rng.integers(0, fields, slots).astype(np.int32)
    return rng, X, dense, y, slot_fields


def _reference(X, dense, slot_fields, V, numeric):
    """The dense columns as the first slots of one CSR matrix, each its own field (numeric) or with zero factors,
    and every entry's field, as the reference reads a row."""
    d = dense.shape[1]
    both = sp.hstack([sp.csr_matrix(dense), X], format="csr")
    both.sort_indices()
    if numeric:
        column_field = np.concatenate([np.arange(d), d + slot_fields])
        V_ref = V
    else:
        column_field = np.concatenate([np.zeros(d, dtype=np.int64), slot_fields])
        V_ref = np.concatenate([np.zeros((d, *V.shape[1:])), V])
    return both, ref.entry_fields(both, column_field), V_ref


@pytest.mark.parametrize("numeric", [False, True], ids=["slots", "slots+numeric"])
def test_margins_and_gradient_equal_the_ffm_definition(numeric):
    rng, X, dense, y, slot_fields = _problem()
    d, slots, k = dense.shape[1], X.shape[1], 3
    fields = 3 + (d if numeric else 0)
    w, w0 = rng.standard_normal(d + slots), -0.2
    V = rng.standard_normal((slots + (d if numeric else 0), fields, k)) * 0.5
    params = np.concatenate([w, [w0], V.ravel()])
    hyper = _hyper(k, fields, numeric)
    out = np.empty((X.shape[0], 1))
    K.predict_margins(dense, params, 1, out, sparse=_block(X), hyper=hyper, slot_fields=slot_fields)
    both, entry_fields, V_ref = _reference(X, dense, slot_fields, V, numeric)
    margins = ref.ffm_margins(both, entry_fields, w0, w, V_ref)
    np.testing.assert_allclose(out[:, 0], margins, rtol=1e-12, atol=1e-12)
    assert np.ptp(margins - ref.fm_margins(both, w0, w, np.zeros((d + slots, k)))) > 1.0  # the pairs count
    grad = np.zeros_like(params)
    loss = K.batch_loss_grad(dense, y, np.empty(0), 0, len(y), params, 1, K.LOSS_LOG, hyper, grad,
                             sparse=_block(X), slot_fields=slot_fields)
    g0, gw, gV = ref.ffm_batch_gradient(both, entry_fields, ref.logistic_multipliers(margins, y), w0, w, V_ref)
    np.testing.assert_allclose(grad[:d + slots], gw, rtol=1e-10, atol=1e-12)
    assert grad[d + slots] == pytest.approx(g0, rel=1e-12)
    np.testing.assert_allclose(grad[d + slots + 1:].reshape(V.shape), gV if numeric else gV[d:], rtol=1e-10,
                               atol=1e-12)
    assert loss == pytest.approx(np.sum(np.logaddexp(0.0, margins) - y * margins), rel=1e-12)


def test_fields_by_position_number_a_rows_entries_in_order():
    """A FeatureSpec's block: one entry per categorical column a row, so an entry's field is its position."""
    rng = np.random.default_rng(4)
    n, columns, per_column, k = 25, 4, 5, 2
    slots = rng.integers(0, per_column, (n, columns)) + per_column * np.arange(columns)  # column c's own slots
    slots[:, 3] = rng.integers(0, per_column * columns, n)  # a hashed column: any slot, its own field
    values = rng.choice([-1.0, 1.0], (n, columns))
    block = SparseArrays(np.arange(0, n * columns + 1, columns, dtype=np.int64), slots.astype(np.int32).ravel(),
                         values.ravel(), per_column * columns)
    w, w0 = rng.standard_normal(per_column * columns), 0.1
    V = rng.standard_normal((per_column * columns, columns, k))
    params = np.concatenate([w, [w0], V.ravel()])
    out = np.empty((n, 1))
    K.predict_margins(np.empty((n, 0)), params, 1, out, sparse=block, hyper=_hyper(k, columns))
    expected = [ref.ffm_margin(slots[r], values[r], np.arange(columns), w0, w, V) for r in range(n)]
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-12)
    with pytest.raises(ValueError, match="more than the 3 fields"):  # a row longer than the fields: refused
        K.predict_margins(np.empty((n, 0)), params[:-(per_column * columns * k)], 1, out, sparse=block,
                          hyper=_hyper(k, 3))


@pytest.mark.parametrize("loss_kind", [K.LOSS_LOG, K.LOSS_SQUARED], ids=["log", "squared"])
def test_the_gradient_matches_finite_differences(loss_kind):
    rng, X, dense, y, slot_fields = _problem(seed=3)
    k, fields = 2, 3 + dense.shape[1]
    n_lin = dense.shape[1] + X.shape[1] + 1
    n_factors = (X.shape[1] + dense.shape[1]) * fields * k
    params = np.concatenate([rng.standard_normal(n_lin) * 0.3, rng.standard_normal(n_factors) * 0.4])
    hyper = _hyper(k, fields, numeric=True)
    grad = np.zeros_like(params)
    K.batch_loss_grad(dense, y, np.empty(0), 0, len(y), params, 1, loss_kind, hyper, grad, sparse=_block(X),
                      slot_fields=slot_fields)

    def loss(p):
        return K.chunk_loss(dense, y, np.empty(0), p, 1, loss_kind, hyper, sparse=_block(X), slot_fields=slot_fields)

    h = 1e-6
    nonzero = np.flatnonzero(grad[n_lin:])[:6] + n_lin
    for direction in [*np.eye(params.size)[nonzero], *rng.standard_normal((4, params.size))]:
        numeric = (loss(params + h * direction) - loss(params - h * direction)) / (2 * h)
        assert abs(numeric - grad @ direction) < 1e-6 * max(1.0, abs(numeric))


OPTIMIZERS = {"sgd": K.OPT_SGD, "adagrad": 3, "adam": 5, "ftrl": K.OPT_FTRL}


@pytest.mark.parametrize("batch_size", [1, 16])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_factors_held_at_zero_train_the_linear_model_bit_for_bit(name, batch_size):
    opt = OPTIMIZERS[name]
    _, X, dense, y, slot_fields = _problem(seed=5, n=64)
    n_lin = dense.shape[1] + X.shape[1] + 1
    rows = {K.OPT_SGD: 0, 3: 1, 5: 2, K.OPT_FTRL: 2}[opt]
    hyper = np.zeros(K.N_HYPER)
    hyper[4], hyper[5], hyper[6] = 0.9, 0.999, 1e-8
    lrs = np.full(64, 0.05)
    linear, state = np.zeros(n_lin), np.zeros((rows, n_lin))
    K.train_chunk(dense, y, np.empty(0), linear, state, hyper, lrs, batch_size, 1, K.LOSS_LOG, opt, 0,
                  sparse=_block(X))
    ffm_hyper = hyper + _hyper(3, 3, l2=0.01)
    ffm = np.zeros(n_lin + K.n_factor_params(X.shape[1], 3, opt, 3))
    ffm_state = np.zeros((rows, n_lin))
    _, done, status = K.train_chunk(dense, y, np.empty(0), ffm, ffm_state, ffm_hyper, lrs, batch_size, 1,
                                    K.LOSS_LOG, opt, 0, sparse=_block(X), slot_fields=slot_fields)
    assert (done, status) == (64, 0)
    assert np.array_equal(ffm[:n_lin], linear) and np.array_equal(ffm_state, state)
    assert not ffm[n_lin:].any()


def _dense_adam_reference(X, entry_fields, y, w, w0, V, lr, batch, steps, l2, b1=0.9, b2=0.999, eps=1e-8):
    """Adam on every parameter at every step, the factor L2 on every factor: where every (slot, field) block is
    reached by every batch, what the lazy per-block updates must equal."""
    theta = np.concatenate([w, [w0], V.ravel()])
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    n_w = w.size
    per_row = X.indptr[1]
    for t in range(steps):
        rows = slice(t * batch, (t + 1) * batch)
        fields = entry_fields[t * batch * per_row:(t + 1) * batch * per_row]
        w, w0, V = theta[:n_w], theta[n_w], theta[n_w + 1:].reshape(V.shape)
        margins = ref.ffm_margins(X[rows], fields, w0, w, V)
        g0, gw, gV = ref.ffm_batch_gradient(X[rows], fields, ref.logistic_multipliers(margins, y[rows]), w0, w, V)
        g = np.concatenate([gw, [g0], gV.ravel()]) / batch
        g[n_w + 1:] += l2 * theta[n_w + 1:]
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + eps)
    return theta


def test_lazy_updates_equal_dense_adam_where_every_block_is_reached():
    rng = np.random.default_rng(7)
    n, slots, fields, k, batch = 24, 6, 3, 2, 4
    X = sp.csr_matrix(rng.uniform(0.5, 1.5, (n, slots)))  # every row names every slot
    slot_fields = np.array([0, 0, 1, 1, 2, 2], dtype=np.int32)  # each field has two slots: every block is reached
    y = (rng.random(n) < 0.5).astype(np.float64)
    V = rng.standard_normal((slots, fields, k)) * 0.3
    hyper = _hyper(k, fields, l2=0.01)
    hyper[4], hyper[5], hyper[6] = 0.9, 0.999, 1e-8
    block = np.zeros((slots, fields, 3 * k))
    block[:, :, :k] = V
    params = np.concatenate([np.zeros(slots + 1), block.ravel()])
    state = np.zeros((2, slots + 1))
    K.train_chunk(np.empty((n, 0)), y, np.empty(0), params, state, hyper, np.full(6, 0.05), batch, 1, K.LOSS_LOG,
                  5, 0, sparse=_block(X), slot_fields=slot_fields)
    expected = _dense_adam_reference(X, ref.entry_fields(X, slot_fields), y, np.zeros(slots), 0.0, V, 0.05, batch,
                                     n // batch, 0.01)
    np.testing.assert_allclose(params[:slots + 1], expected[:slots + 1], rtol=1e-10, atol=1e-13)
    got_V = params[slots + 1:].reshape(slots, fields, 3 * k)[:, :, :k]
    np.testing.assert_allclose(got_V, expected[slots + 1:].reshape(V.shape), rtol=1e-10, atol=1e-13)


def test_a_block_no_pair_reaches_is_not_updated():
    """Slot 0 (field 0) meets only field-1 partners: its field-0 and field-2 vectors stay as they were, L2 too."""
    X = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]))
    slot_fields = np.array([0, 1, 2], dtype=np.int32)
    block = np.random.default_rng(1).standard_normal((3, 3, 2))  # sgd: no state
    params = np.concatenate([np.zeros(4), block.ravel()])
    K.train_chunk(np.empty((2, 0)), np.array([1.0, 0.0]), np.empty(0), params, np.zeros((0, 4)),
                  _hyper(2, 3, l2=0.5), np.full(2, 0.1), 1, 1, K.LOSS_LOG, K.OPT_SGD, 0, sparse=_block(X),
                  slot_fields=slot_fields)
    after = params[4:].reshape(3, 3, 2)
    assert not np.array_equal(after[0, 1], block[0, 1]) and not np.array_equal(after[1, 0], block[1, 0])
    for row, field in [(0, 0), (0, 2), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]:
        assert np.array_equal(after[row, field], block[row, field])


# ---- through the trainer -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """Three categorical columns whose pairs interact through field-specific rank-2 vectors: A's vector towards B
    differs from A's towards C (what an FFM models and a plain FM shares)."""
    rng = np.random.default_rng(12)
    n = 6000
    a, b, c = rng.integers(0, 10, n), rng.integers(0, 10, n), rng.integers(0, 10, n)
    u_ab, u_ba, u_ac, u_ca = (rng.standard_normal((10, 2)) for _ in range(4))
    margin = 1.5 * ((u_ab[a] * u_ba[b]).sum(axis=1) + (u_ac[a] * u_ca[c]).sum(axis=1))
    y = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(np.int64)
    path = tmp_path_factory.mktemp("ffm") / "c.parquet"
    pq.write_table(pa.table({"A": [f"a{v}" for v in a], "B": [f"b{v}" for v in b], "C": [f"c{v}" for v in c],
                             "x": rng.standard_normal(n), "y": y}), path, row_group_size=500)
    return str(path)


FFM = {"factors": 4, "field_aware": True, "optimizer": "adagrad", "batch_size": 8, "epochs": 3, "seed": 2,
       "interactions": "none"}  # a searched cross would learn the pairs in the linear model too


def test_an_ffm_learns_field_specific_pairs_and_its_file_predicts_the_same(clicks, tmp_path):
    linear = streamgd.fit(clicks, target="y", **{k: v for k, v in FFM.items() if k not in ("factors", "field_aware")})
    ffm = streamgd.fit(clicks, target="y", **FFM)
    assert ffm.history[-1]["loss"] < linear.history[-1]["loss"] - 0.05
    assert ffm.factorization["kind"] == "ffm" and ffm.factorization["fields"] == 3
    assert ffm.factors_.shape == (ffm.n_slots, 3, 4)
    ffm.save(tmp_path / "ffm.safetensors")
    again = load(tmp_path / "ffm.safetensors")
    table = pq.read_table(clicks)
    np.testing.assert_array_equal(again.factor_block, ffm.factor_block)
    np.testing.assert_array_equal(again.predict_proba(table), ffm.predict_proba(table))
    assert set(again.factor_norms()) == {"A", "B", "C"} and min(again.factor_norms().values()) > 0


def test_resume_of_an_ffm_is_bit_identical(clicks, tmp_path):
    whole = streamgd.fit(clicks, target="y", **FFM)

    def stop(info):
        if info.epoch == 1 and info.rows_done >= 1500:
            trainer._interrupted = True

    trainer = streamgd.Trainer(on_chunk=stop, checkpoint_dir=str(tmp_path / "ck"), checkpoint_every=1, **FFM)
    with pytest.raises(streamgd.errors.TrainingInterrupted):
        trainer.fit(clicks, target="y")
    resumed = streamgd.fit(clicks, target="y", checkpoint_dir=str(tmp_path / "ck"), checkpoint_every=1,
                           resume=True, **FFM)
    assert np.array_equal(resumed.coef_, whole.coef_) and np.array_equal(resumed.factor_block, whole.factor_block)


@pytest.mark.parametrize("options, says", [
    (["--field-aware"], "give factors"),
    (["--factors", "4", "--field-aware", "--features", "x"], "has none"),
    (["--factors", "1024", "--field-aware", "--hash-bits", "24", "--encoding", "hash", "--interactions", "A:B",
      "--factor-fields", "all"],
     "a field-aware FM of 16,777,216 factor rows x 4 fields x k=1024"),
], ids=["without-factors", "without-categorical", "too-big"])
def test_bad_field_aware_options_are_one_line_and_exit_2(clicks, options, says):
    done = CliRunner().invoke(cli, ["fit", clicks, "--target", "y", "--quiet", *options])
    assert done.exit_code == 2, done.output
    assert says in done.output and "Traceback" not in done.output and done.output.count("\n") == 1, done.output


def test_the_memory_check_counts_rows_fields_k_and_state():
    check_factor_block_fits(1000, 26, 8, 1, available=8 * 1000 * 26 * 8 * 2)  # exactly fits
    with pytest.raises(ConfigError, match="1,000 factor rows x 26 fields x k=8 x \\(1 \\+ 1 state\\)"):
        check_factor_block_fits(1000, 26, 8, 1, available=8 * 1000 * 26 * 8 * 2 - 1)


def test_a_fresh_ffm_block_is_drawn_into_the_parameters_without_copies():
    """initial_state allocates the parameter vector once and draws the factors into it a slice at a time: its
    peak allocation is the vector (the block drawn whole, then concatenated, held about twice it: issue 28's
    benchmark peaked at 5.7 GB for a 1.7 GB FFM block)."""
    import tracemalloc

    from streamgd.optim.adaptive import AdaGrad
    from streamgd.optim.factors import FactorSettings
    from streamgd.optim.state import initial_state

    settings = FactorSettings(4, init=0.05, field_aware=True)
    n_dense, n_slots, fields, seed = 3, 1 << 16, 12, 7  # a 50 MB block
    hyper = np.zeros(K.N_HYPER)
    tracemalloc.start()
    params, _ = initial_state(AdaGrad(), hyper, n_dense + n_slots, 1, n_slots, False, settings, seed, fields)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1.25 * params.nbytes  # the vector and a slice of draws (2 MB)
    n_linear = n_dense + n_slots + 1
    assert not params[:n_linear].any()
    assert np.array_equal(params[n_linear:], settings.initial_rows(n_slots, 1, seed, fields).ravel())


def test_an_ffm_fit_and_its_save_hold_the_factor_block_once(clicks, tmp_path):
    """After training, the model takes the run's factor block without a copy and the save writes its factors and
    their state a slice at a time: the peak traced allocation of fit + save stays near the parameters and the
    optimizer state (three copies of the block were alive at once: issue 28's FFM benchmark peaked at 5.55 GB
    for a 1.74 GB block)."""
    import tracemalloc

    options = dict(FFM, encoding="hash", epochs=1)
    streamgd.fit(clicks, target="y", hash_bits=10, **options)  # the kernels compile outside the trace
    tracemalloc.start()
    try:
        model = streamgd.fit(clicks, target="y", hash_bits=18, **options)
        model.save(tmp_path / "ffm.safetensors")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = model.factor_block.nbytes + model.params.nbytes + model.optimizer_state.nbytes
    assert model.factor_block.nbytes > 40e6  # 2^18 slots x 3 fields x k=4 x (1 + 1 AdaGrad row) x 8 B
    assert peak < 1.3 * held, (peak / held)
    again = load(tmp_path / "ffm.safetensors")
    np.testing.assert_array_equal(again.factor_block, model.factor_block)
    np.testing.assert_array_equal(again.factors_, model.factors_)
