"""The model of a run's state: the parameters a model keeps (the optimizer's final ones, every sparse slot's owed
penalty settled) and the ``LinearModel`` on raw inputs with its summary."""

from __future__ import annotations

import numpy as np

from ..features.targets import to_json_labels
from ..kernels import api as kernels
from ..models.linear import LinearModel
from ..optim.factors import fold_standardization
from .chunk_step import ChunkJob
from .config import TrainConfig
from .measure import lifetime_peak_rss_mb
from .state import Run, TrainState

__all__ = ["assemble_model", "final_params", "settle_lazy_penalties", "settle_state", "training_params"]


SETTLE_SLOTS = 1 << 16  # sparse slots settled at a time: the temporaries stay a few MB for any number of slots


def final_params(run: Run, state: TrainState) -> np.ndarray:
    """The parameters a model of the state keeps: the optimizer's (ASGD: the average), every sparse slot having
    taken the penalty of the steps it skipped (``settle_lazy_penalties``). A copy when anything was owed (the
    state is left as it was: training goes on), else the state's own vector (callers that keep it copy it)."""
    params = state.params
    if _owes_penalties(run.hyper, run.n_slots):
        params = params.copy()
        settle_lazy_penalties(params, state.opt_state, run.hyper, run.n_out, len(run.feature_names) - run.n_slots,
                              run.n_slots, records=False)
    return run.optimizer.final_params(params, state.opt_state, state.step)


def _owes_penalties(hyper: np.ndarray, n_slots: int) -> bool:
    """Whether sparse slots can owe penalties: there are some, and the state keeps a decay or L1 record."""
    return bool(n_slots and (hyper[kernels.H_LAZY_ROW] or hyper[kernels.H_L1_ROW]))


def settle_state(job: ChunkJob, state: TrainState) -> None:
    """Settle, in place, the penalties the state's sparse slots owe (``settle_lazy_penalties``): what a dask
    worker does before its parameters are averaged with the others', which saw other slots at other steps."""
    if _owes_penalties(job.hyper, job.n_slots):
        settle_lazy_penalties(state.params, state.opt_state, job.hyper, job.n_out,
                              len(job.feature_names) - job.n_slots, job.n_slots)


def settle_lazy_penalties(params: np.ndarray, opt_state: np.ndarray, hyper: np.ndarray, n_out: int, d: int,
                          n_slots: int, records: bool = True) -> None:
    """Give every sparse slot's coefficients, in place, the penalty of the steps since it was last touched, as
    its next touch would (``streamgd.kernels.sparse``: the L2 and weight decay product from the ledger and its
    stamp, then the cumulative L1 it has not received), and bring its records up to date (``records``; False:
    ``params`` is a copy whose state is not kept, and ``opt_state`` is only read). Without this a slot untouched
    since some step would keep its coefficient undecayed in the model: a hashed model's rare slots, or every slot
    a worker's round did not see.

    Dense coefficients are updated at every step and are left alone (their records hold nothing owed). The slots
    are settled ``SETTLE_SLOTS`` at a time, so a 2^24-slot model takes no temporary of its own size.
    """
    width = d + n_slots
    n_coef = n_out * width
    coefs = params[:n_coef].reshape(n_out, width)
    lazy_row = int(hyper[kernels.H_LAZY_ROW]) - 1
    l1_row = int(hyper[kernels.H_L1_ROW]) - 1
    for start in range(d, width, SETTLE_SLOTS):
        columns = slice(start, min(start + SETTLE_SLOTS, width))
        coef = coefs[:, columns]
        if lazy_row >= 0:
            stamps = opt_state[lazy_row, :n_coef].reshape(n_out, width)[:, columns]
            ledger = opt_state[lazy_row, n_coef]
            owed = stamps != ledger
            coef[owed] *= np.exp(ledger - stamps[owed])
            if records:
                stamps[...] = ledger
        if l1_row >= 0:
            received = opt_state[l1_row, :n_coef].reshape(n_out, width)[:, columns]
            total = opt_state[l1_row, n_coef]  # what every coefficient could have received so far
            settled = np.where(coef > 0.0, np.maximum(0.0, coef - (total + received)),
                               np.where(coef < 0.0, np.minimum(0.0, coef + (total - received)), coef))
            if records:
                received += settled - coef
            coef[...] = settled


def training_params(state: TrainState) -> np.ndarray:
    """A copy of the state's parameters as training left them: where a model was handed the run's vector
    (``assemble_model`` with ``share_factors``) and folded the standardization into it, the dense coefficients
    and intercepts it replaced are put back (a session training on from a finished fit starts from these)."""
    params = state.params.copy()
    if state.unfolded_linear is not None:
        width, dense_coef, intercept = state.unfolded_linear
        n_out, dense = dense_coef.shape
        coef, intercepts = params[:n_out * width].reshape(n_out, width), params[n_out * width:n_out * (width + 1)]
        coef[:, :dense], intercepts[:] = dense_coef, intercept
    return params


def _settled_linear(run: Run, state: TrainState, n_linear: int, in_place: bool) -> tuple[np.ndarray, np.ndarray]:
    """The linear parameters and the optimizer state with every sparse slot's owed penalty settled: the state's
    own, settled where they are (``in_place``: training on this state is over), or a copy of each (training goes
    on: a model keeps both, and continuing it must not apply the settled decay again). Nothing owed: the state's
    own. A factorization machine's factor block owes nothing and is never copied here."""
    linear, opt_state = state.params[:n_linear], state.opt_state
    if _owes_penalties(run.hyper, run.n_slots):
        if not in_place:
            linear, opt_state = linear.copy(), opt_state.copy()
        settle_lazy_penalties(linear, opt_state, run.hyper, run.n_out, len(run.feature_names) - run.n_slots,
                              run.n_slots)
    return linear, opt_state


def assemble_model(cfg: TrainConfig, run: Run, state: TrainState, target: str, rows: int,
                   summary: dict | None = None, config: dict | None = None, share_factors: bool = False
                   ) -> LinearModel:
    """The model of a run's state (early stopping's best epoch if there is one) on raw inputs: the
    standardization folded into the coefficients; ``summary`` adds to the run's summary, ``config`` to its
    settings.

    ``share_factors``: training on this state is over (``Trainer.fit``): a factorization machine's factor block
    (slots x fields x k x (1 + state), gigabytes for a hashed FFM) becomes the model's without a copy, a view of
    the run's parameters, and the sparse slots' owed penalties are settled in the state itself, whose optimizer
    state the model then keeps. A model assembled while training goes on (the estimators' ``partial_fit``) gets
    its own copies, or later epochs would change it. The model's linear parameters are one vector, the
    raw-input coefficients computed in it: with ``share_factors`` (and no early-stopping best) the run's own,
    handed over without a copy (a per-coordinate block's strided weights: the model file's writer reads them in
    slices), the values the fold replaced kept in ``state.unfolded_linear`` (``training_params``); else a copy
    (scripts/bench_param_memory.py measures the peak)."""
    n_linear = kernels.n_params(len(run.feature_names), run.n_out)
    linear, opt_state = _settled_linear(run, state, n_linear, in_place=share_factors)
    if state.best:
        params = state.best["params"]
        linear = params[:n_linear]
    else:
        params = state.params
        linear = run.optimizer.final_params(linear, opt_state, state.step)[:n_linear]
    handed_over = share_factors and not state.best  # the run's last parameters, which nothing trains on
    if not handed_over and (linear.base is not None
                            or any(np.may_share_memory(linear, kept) for kept in (params, state.opt_state))):
        linear = linear.copy()  # the model's own vector: neither the run's, nor a view keeping a larger array
    factors, factorization = None, None
    settings = cfg.factor_settings()
    if settings is not None:  # a factorization machine: its factor block follows the linear parameters
        factor_rows = kernels.factor_rows(len(run.feature_names) - run.n_slots, run.n_slots, settings.numeric)
        factors = params[n_linear:].reshape(factor_rows, -1)
        if not (share_factors or state.best):  # early stopping's best is a copy already
            factors = factors.copy()
        fields = int(run.hyper[kernels.H_FIELDS])
        factorization = {"kind": "ffm" if fields else "fm", **settings.config(),
                         **({"fields": fields} if fields else {})}
    coef, intercept = kernels.split_params(linear, len(run.feature_names), run.n_out)  # views of the vector
    transform = None
    if run.standardizer is not None:  # in place, on the dense columns only: the slots are not standardized
        dense = run.standardizer.mean.shape[0]
        if handed_over and np.may_share_memory(linear, state.params):  # the state's own: keep what it held
            state.unfolded_linear = (coef.shape[1], coef[:, :dense].copy(), intercept.copy())
        coef[:, :dense], intercept[:] = run.standardizer.raw_coefficients(coef[:, :dense], intercept)
        if factors is not None and settings.numeric:  # the dense columns' factors fold too (plain FM only)
            factors, folded_coef, folded_intercept = fold_standardization(
                factors, settings.k, coef, intercept, run.standardizer.mean, run.standardizer.scale)
            coef[...], intercept[...] = folded_coef, folded_intercept  # into the model's one vector
        transform = run.standardizer.to_dict()
    state_rows = list(run.optimizer.state_names) + (["l1_applied"] if run.hyper[kernels.H_L1_ROW] else []) \
        + (["decay_stamps"] if run.hyper[kernels.H_LAZY_ROW] else [])
    info = {"feature_transform": transform, "rows": rows, "epochs": len(state.history), "steps": state.step,
            "optimizer_state_rows": state_rows,
            "final_loss": state.history[-1]["loss"] if state.history else None,
            "peak_rss_mb": round(lifetime_peak_rss_mb(), 1)}
    if run.validation is not None:
        info["validation_rows"] = run.validation.n_rows
    if state.best:
        info["best_epoch"] = state.best["epoch"] + 1  # counted from 1, as the history's records
        info["best_loss"] = state.best["loss"]
    if run.stats is not None:
        info["statistics"] = run.stats.as_dict()
    info.update(summary or {})
    return run.model_cls(coef, intercept, run.feature_names, target=target, params=linear,
                         classes=to_json_labels(run.classes) if run.classes else None,
                         config={**cfg.to_dict(), **(config or {})}, history=state.history,
                         optimizer_state=opt_state, summary=info,
                         feature_spec=run.spec.to_dict() if run.spec is not None else None, factors=factors,
                         factorization=factorization)
