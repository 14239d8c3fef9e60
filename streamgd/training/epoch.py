"""The training core, written once: the per-chunk step, the epoch over a ChunkStream, the epoch record, early
stopping, model assembly, checkpoint writing and the resume check.

``Trainer`` (one process), the dask workers and client (``distributed.py``) and the scikit-learn estimators'
``fit`` and ``partial_fit`` all call these functions, so a feature of the chunk step (weights, a FeatureSpec,
standardization, the error that names file, row group, row and column) works in every one of them.

A ``ChunkJob`` holds what the per-chunk step needs and is small and picklable: dask ships it to the workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import numpy as np

from ..data.dataset import Dataset
from ..data.epoch_cache import CacheSession, CacheSettings, EpochCache, cache_context
from ..data.memory_plan import fetch_ahead_bytes
from ..data.reader import Chunk, ChunkStream, parse_memory_budget, parse_size
from ..data.shuffle import Plan, ShuffleQualityMeter, make_plan
from ..data.sparse_block import BlockNames
from ..errors import ConfigError, DataError, DivergenceError
from ..features.spec import FeatureSpec, OutputNames
from ..features.standardize import Standardizer
from ..features.stats import DatasetStats
from ..features.targets import to_json_labels
from ..kernels import api as kernels
from ..models.linear import LinearModel
from ..optim import Optimizer
from .checkpoint import Checkpoint, write_checkpoint
from .config import TrainConfig
from .holdout import constant_loss, mean_loss
from .measure import EpochMeter, lifetime_peak_rss_mb

__all__ = ["ChunkJob", "LearningRates", "Run", "TrainState", "assemble_model", "check_resumable", "chunk_job",
           "chunk_weights", "end_epoch", "epoch_record", "final_params", "fingerprint", "full_batch_step",
           "open_stream", "run_epoch", "save_checkpoint", "settle_lazy_penalties", "settle_state", "train_on_chunk",
           "train_stream", "update_best"]

LearningRate = Callable[[np.ndarray], np.ndarray]  # global step numbers -> learning rates (a schedule)


@dataclass
class TrainState:
    """Everything that changes during training, and all a checkpoint stores: parameters, optimizer state, the
    cursor (epoch, next chunk of its plan, global step, chunks done) and the epoch's partial sums."""

    params: np.ndarray
    opt_state: np.ndarray
    step: int = 0
    epoch: int = 0
    first_epoch: int = 0  # the epoch this run started at (a model's epochs, when continuing from one)
    next_chunk: int = 0
    chunks_done: int = 0
    epoch_loss_sum: float = 0.0
    epoch_rows: int = 0
    epoch_rows_skipped: int = 0  # rows of the epoch's chunks left out: no target, or drop-rows' missing features
    epoch_y_sum: float = 0.0
    epoch_y_sq_sum: float = 0.0
    grad_sum: np.ndarray | None = None  # full batch: the gradient summed so far this epoch
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)  # early stopping: params, loss, epoch, waited
    finished: bool = False

    def start_epoch(self, full_batch: bool) -> None:
        self.next_chunk = 0
        self.epoch_loss_sum = self.epoch_y_sum = self.epoch_y_sq_sum = 0.0
        self.epoch_rows = self.epoch_rows_skipped = 0
        self.grad_sum = np.zeros_like(self.params) if full_batch else None

    def add_sums(self, other: TrainState) -> None:
        """Add another state's epoch sums (a worker's shard) to this one's."""
        self.epoch_loss_sum += other.epoch_loss_sum
        self.epoch_rows += other.epoch_rows
        self.epoch_rows_skipped += other.epoch_rows_skipped
        self.epoch_y_sum += other.epoch_y_sum
        self.epoch_y_sq_sum += other.epoch_y_sq_sum

    def cursor(self) -> dict:
        return {"epoch": self.epoch, "first_epoch": self.first_epoch, "next_chunk": self.next_chunk, "step": self.step,
                "chunks_done": self.chunks_done, "epoch_loss_sum": self.epoch_loss_sum,
                "epoch_rows": self.epoch_rows, "epoch_rows_skipped": self.epoch_rows_skipped,
                "epoch_y_sum": self.epoch_y_sum,
                "epoch_y_sq_sum": self.epoch_y_sq_sum, "finished": self.finished}

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> TrainState:
        cursor = checkpoint.cursor
        return cls(params=checkpoint.params.copy(), opt_state=checkpoint.opt_state.copy(), step=cursor["step"],
                   epoch=cursor["epoch"], first_epoch=cursor.get("first_epoch", 0), next_chunk=cursor["next_chunk"],
                   chunks_done=cursor["chunks_done"],
                   epoch_loss_sum=cursor["epoch_loss_sum"], epoch_rows=cursor["epoch_rows"],
                   epoch_rows_skipped=cursor.get("epoch_rows_skipped", 0),  # absent from older checkpoints
                   epoch_y_sum=cursor["epoch_y_sum"], epoch_y_sq_sum=cursor["epoch_y_sq_sum"],
                   grad_sum=None if checkpoint.grad_sum is None else checkpoint.grad_sum.copy(),
                   history=list(checkpoint.history), best=dict(checkpoint.best), finished=cursor["finished"])


@dataclass
class Run:
    """What stays fixed during a run: the data split, the model's shape and the compiled settings."""

    train: Dataset | None
    validation: Dataset | None
    model_cls: type[LinearModel]
    classes: list | None
    encoder: Any
    n_out: int
    optimizer: Optimizer
    hyper: np.ndarray
    schedule: Any
    standardizer: Standardizer | None
    class_weights: np.ndarray | None = None
    spec: FeatureSpec | None = None
    feature_names: list[str] | None = None  # the model's features (the spec's outputs, or the numeric inputs)
    stats: DatasetStats | None = None
    cache: CacheSettings | None = None  # the epoch cache, opened once per run (``cache_settings``)

    @property
    def n_slots(self) -> int:
        """The model's sparse slots (the last features): its FeatureSpec's or an in-memory sparse matrix's."""
        return _n_slots(self.spec, self.feature_names)


def _n_slots(spec: FeatureSpec | None, feature_names: Sequence[str]) -> int:
    if spec is not None:
        return spec.n_slots
    return feature_names.n_slots if isinstance(feature_names, BlockNames) else 0


@dataclass(frozen=True)
class ChunkJob:
    """What the per-chunk step needs, fixed for a run: the data (to name a bad row), the model's shape, the
    kernels' settings and the chunk transform. Picklable: dask ships it to the workers."""

    dataset: Dataset
    feature_names: list[str]
    n_out: int
    loss_kind: int
    opt_code: int
    hyper: np.ndarray
    batch_size: int | str
    dtype: str
    prefetch_depth: int
    defer_conversion: bool
    encoder: Any
    standardizer: Standardizer | None
    spec: FeatureSpec | None
    sample_weight: str | None
    class_weights: np.ndarray | None
    learning_rate: float  # named in the divergence message
    cache: CacheSettings | None = None  # the epoch cache (each process opens it on its own disk)
    fetch_bytes: int | None = None  # remote files: bytes fetched ahead and not yet decoded at most (None: default)

    @property
    def full_batch(self) -> bool:
        return self.batch_size == "full"

    @property
    def n_slots(self) -> int:
        """The model's sparse slots (the last features): its FeatureSpec's or an in-memory sparse matrix's."""
        return _n_slots(self.spec, self.feature_names)


def chunk_job(cfg: TrainConfig, run: Run) -> ChunkJob:
    """The per-chunk settings of a run."""
    return ChunkJob(run.train, _names(run.feature_names), run.n_out, run.model_cls.loss_kind, run.optimizer.code,
                    run.hyper, cfg.batch_size, cfg.dtype, cfg.prefetch_depth,
                    cfg.memory_budget is None,  # a budget counts one copy per chunk: convert on the prefetch thread
                    run.encoder, run.standardizer, run.spec, cfg.sample_weight, run.class_weights, cfg.learning_rate,
                    cache_settings(cfg, run), fetch_bytes(cfg))


def fetch_bytes(cfg: TrainConfig) -> int | None:
    """What remote row groups fetched ahead may hold: their share of the memory budget (None: no budget, the
    reader's default); the budget's unit sizes are planned on the rest (``streamgd.data.memory_plan``)."""
    return fetch_ahead_bytes(parse_memory_budget(cfg.memory_budget))


def cache_settings(cfg: TrainConfig, run: Run) -> CacheSettings | None:
    """The run's epoch cache settings (None: no cache), made once per run: its training and validation streams
    share one opening of the cache."""
    if cfg.cache is None:
        return None
    if run.cache is None or run.cache.directory != str(cfg.cache):
        run.cache = CacheSettings(str(cfg.cache), parse_size(cfg.cache_max_size, "cache_max_size"), uuid4().hex)
    return run.cache


def _names(names: Sequence[str]) -> Sequence[str]:
    """A list of the names, unless they are computed on demand (a FeatureSpec's or a sparse matrix's: there can
    be 2^30)."""
    return names if isinstance(names, (OutputNames, BlockNames)) else list(names)


@dataclass(frozen=True)
class LearningRates:
    """A slice of a schedule, precomputed: the rates of steps ``first``, ``first + 1``, ... (what a dask task
    gets instead of the schedule itself)."""

    first: int
    rates: np.ndarray

    def __call__(self, steps: np.ndarray) -> np.ndarray:
        return self.rates[np.asarray(steps) - self.first]


# ---- the chunk step ---------------------------------------------------------------------------------------------
def open_stream(job: ChunkJob, plan: Plan, start: int = 0, quality: ShuffleQualityMeter | None = None
                ) -> ChunkStream:
    """The chunks of ``plan`` from step ``start``, as training reads them (weights, features, standardized)."""
    extra = [job.sample_weight] if job.sample_weight else []
    return ChunkStream(job.dataset, plan, dtype=job.dtype, prefetch_depth=job.prefetch_depth,
                       target_encoder=job.encoder, quality=quality, start_step=start,
                       extra_columns=extra or None, features=job.spec,
                       transform=job.standardizer.apply if job.standardizer is not None else None,
                       defer_conversion=job.defer_conversion, fetch_bytes=job.fetch_bytes,
                       cache=cache_session(job.cache, job.dataset, job.dtype, job.encoder, job.spec,
                                           job.standardizer, extra))


_CONTEXTS: list[tuple[tuple, tuple, str, dict]] = []  # (objects, other parts, digest, summary): a few recent


def cache_session(settings: CacheSettings | None, dataset: Dataset, dtype: str, encoder: Any,
                  spec: FeatureSpec | None, standardizer: Standardizer | None, extra: list[str],
                  all_rows: bool = False) -> CacheSession | None:
    """A stream's session of the epoch cache, for data the cache can key (local or remote files; not in-memory
    tables or dask frames), else None."""
    if settings is None or dataset.table is not None or dataset.dask_frame is not None:
        return None
    objects = (spec, standardizer, encoder)
    others = (dataset.schema, tuple(dataset.feature_names), dataset.target, str(dtype), tuple(extra), all_rows)
    for held, parts, digest, summary in _CONTEXTS:  # a FeatureSpec's JSON can be large: digested once per run
        if parts == others and all(a is b for a, b in zip(held, objects)):
            break
    else:
        digest, summary = cache_context(dataset, dtype, dataset.target, encoder, spec, standardizer, extra, all_rows)
        _CONTEXTS.insert(0, (objects, others, digest, summary))
        del _CONTEXTS[4:]
    return EpochCache.shared(settings).session(dataset, digest, summary)


def chunk_weights(job: ChunkJob, chunk: Chunk) -> np.ndarray:
    """Per-row weights of a chunk in its row order (sample weight column x class weight), or empty."""
    weights = None
    name = job.sample_weight
    if name is not None:
        column = chunk.extra.column(name)
        weights = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        if chunk.row_order is not None:
            weights = weights[chunk.row_order]
        usable = np.isfinite(weights) & (weights >= 0)
        if not usable.all():
            row = int(np.flatnonzero(~usable)[0])
            unit, row_in_unit = chunk.locate(row)
            raise DataError(f"the sample weight column {name!r} holds {weights[row]} at "
                            f"{job.dataset.describe_row(unit, row_in_unit)}; weights must be numbers >= 0")
    if job.class_weights is not None:
        per_row = job.class_weights[np.nan_to_num(chunk.y).astype(np.int64)]
        weights = per_row if weights is None else weights * per_row
    return np.empty(0) if weights is None else np.ascontiguousarray(weights)


def train_on_chunk(job: ChunkJob, state: TrainState, chunk: Chunk, lr_at: LearningRate) -> None:
    """One compiled call on a chunk (a mini-batch pass, or full batch's gradient sum), its status checked, and the
    epoch's sums updated."""
    weights = chunk_weights(job, chunk)
    if job.full_batch:
        chunk_loss, status = kernels.accumulate_chunk(chunk.X, chunk.y, weights, state.params, job.n_out,
                                                      job.loss_kind, job.hyper, state.grad_sum, sparse=chunk.sparse)
        check_status(job, status, chunk, state)
    else:
        n_batches = -(-chunk.n_rows // job.batch_size)
        lrs = np.ascontiguousarray(lr_at(state.step + np.arange(n_batches)), dtype=np.float64)
        chunk_loss, _, status = kernels.train_chunk(
            chunk.X, chunk.y, weights, state.params, state.opt_state, job.hyper, lrs, job.batch_size, job.n_out,
            job.loss_kind, job.opt_code, state.step, sparse=chunk.sparse)
        check_status(job, status, chunk, state)
        state.step += n_batches
    state.epoch_loss_sum += chunk_loss
    state.epoch_rows += chunk.n_rows
    state.epoch_rows_skipped += _rows_left_out(chunk)
    state.epoch_y_sum += float(chunk.y.sum())
    state.epoch_y_sq_sum += float(np.einsum("i,i->", chunk.y, chunk.y))  # no BLAS: see quality.py
    state.next_chunk += 1
    state.chunks_done += 1


def train_stream(job: ChunkJob, state: TrainState, stream: ChunkStream, lr_at: LearningRate,
                 after_chunk: Callable[[Chunk], None] | None = None) -> None:
    """Train on every chunk of ``stream``; ``after_chunk`` runs after each (progress, checkpoints, Ctrl-C)."""
    with stream:
        for chunk in stream:
            train_on_chunk(job, state, chunk, lr_at)
            if after_chunk is not None:
                after_chunk(chunk)
            del chunk  # before the next chunk is built, so its arrays can take this one's memory


def full_batch_step(job: ChunkJob, state: TrainState, grad_sum: np.ndarray, lr_at: LearningRate) -> None:
    """Full batch's one step of the epoch, from the gradient summed over the whole stream."""
    lr = float(lr_at(np.array([state.step]))[0])
    status = kernels.full_batch_step(state.params, grad_sum, float(state.epoch_rows), state.opt_state, job.hyper,
                                     lr, job.opt_code, state.step, job.n_out * len(job.feature_names))
    if status != 0:
        raise DivergenceError(divergence_message(job, state))
    state.step += 1


def check_status(job: ChunkJob, status: int, chunk: Chunk, state: TrainState) -> None:
    """Turn a kernel's status into the error a user can act on: the bad value's column, file, row group and row;
    else divergence."""
    if status == 0:
        return
    row = -int(status) - 1
    unit, row_in_unit = chunk.locate(row)
    where = job.dataset.describe_row(unit, row_in_unit)
    values = chunk.X[row]
    bad = [j for j, v in enumerate(values) if not np.isfinite(v)]
    if bad:
        raise DataError(f"the feature column {job.feature_names[bad[0]]!r} holds {values[bad[0]]} at {where}; "
                        "clean the data, or train with --missing drop-rows or --missing impute")
    if chunk.y is not None and not np.isfinite(chunk.y[row]):
        raise DataError(f"the target column {job.dataset.target!r} is missing (null or NaN) at {where}; "
                        "--missing drop-rows or --missing impute skip unlabelled rows")
    raise DivergenceError(divergence_message(job, state))


def divergence_message(job: ChunkJob, state: TrainState) -> str:
    return (f"training diverged at epoch {state.epoch + 1}, step {state.step}: the loss or a parameter became "
            f"NaN or inf; lower the learning rate (now {job.learning_rate}) or standardize the features")


def _rows_left_out(chunk: Chunk) -> int:
    """Rows of the chunk's units the reader did not deliver (a missing target, or a missing feature under
    drop-rows)."""
    return sum(unit.n_rows for unit in chunk.step.units) - chunk.n_rows


# ---- the epoch ------------------------------------------------------------------------------------------------
def run_epoch(cfg: TrainConfig, run: Run, job: ChunkJob, state: TrainState,
              after_chunk: Callable[[Plan, EpochMeter, float], None] | None = None) -> dict:
    """Train from the state's cursor to the end of its epoch's plan (full batch: then step); return the epoch's
    record. ``after_chunk(plan, meter, rss)`` runs after each chunk."""
    plan = make_plan(run.train.units, cfg.shuffle, seed=cfg.seed, epoch=state.epoch)
    quality, meter = ShuffleQualityMeter(), EpochMeter()

    def each(chunk: Chunk) -> None:
        rss = meter.add(chunk.n_rows)
        if after_chunk is not None:
            after_chunk(plan, meter, rss)

    stream = open_stream(job, plan, state.next_chunk, quality)
    train_stream(job, state, stream, run.schedule, each)
    if job.full_batch:
        full_batch_step(job, state, state.grad_sum, run.schedule)
    record = epoch_record(cfg, run, state, meter, quality)
    if stream.cache is not None:
        record["cache"] = stream.cache.stats.as_dict()
    if stream.read_stats is not None:  # remote files: requests per row group, their latency, the fetch depth
        record["remote_reads"] = stream.read_stats.as_dict()
    return record


def end_epoch(cfg: TrainConfig, run: Run, state: TrainState, record: dict) -> None:
    """Book an epoch: early stopping, the history, the cursor at the next epoch (``finished`` when early
    stopping's patience has run out)."""
    stop = update_best(cfg, run, state, record)
    state.history.append(record)
    state.epoch += 1
    state.finished = stop
    state.start_epoch(cfg.full_batch)


# ---- the epoch's record and early stopping ----------------------------------------------------------------------
def epoch_record(cfg: TrainConfig, run: Run, state: TrainState, meter: EpochMeter,
                 quality: ShuffleQualityMeter) -> dict:
    """The history entry of the epoch just trained: losses (and the validation loss), rows, time, memory."""
    seconds = meter.seconds
    record = {"epoch": state.epoch, "loss": state.epoch_loss_sum / max(state.epoch_rows, 1),
              "baseline_loss": constant_loss(run.model_cls.loss_kind, state.epoch_rows, state.epoch_y_sum,
                                             state.epoch_y_sq_sum),
              "rows": state.epoch_rows, "rows_skipped": state.epoch_rows_skipped, "seconds": round(seconds, 4),
              "rows_per_s": round(meter.rows / max(seconds, 1e-9), 1),
              "peak_rss_mb": round(meter.peak_rss_mb, 1), "steps": state.step,
              "shuffle_quality": quality.result().as_dict()}
    if run.validation is not None:
        params = final_params(run, state)
        cache = cache_session(cache_settings(cfg, run), run.validation, cfg.dtype, run.encoder, run.spec,
                              run.standardizer, [])
        record["validation_loss"] = mean_loss(run.validation, params, run.n_out, run.model_cls.loss_kind,
                                              run.hyper, cfg.dtype, run.encoder,
                                              run.standardizer.apply if run.standardizer else None, run.spec,
                                              cache=cache)
    return record


def update_best(cfg: TrainConfig, run: Run, state: TrainState, record: dict) -> bool:
    """Track the best epoch of the monitored loss; True when early stopping's patience has run out."""
    if not cfg.early_stopping:
        return False
    monitored = record.get("validation_loss", record["loss"])
    best = state.best
    if not best or monitored < best["loss"] - cfg.tol:
        params = final_params(run, state)
        state.best = {"params": params.copy(), "loss": monitored, "epoch": state.epoch, "waited": 0}
        return False
    best["waited"] += 1
    record["epochs_without_improvement"] = best["waited"]
    return best["waited"] >= cfg.early_stopping


# ---- the model --------------------------------------------------------------------------------------------------
def final_params(run: Run, state: TrainState) -> np.ndarray:
    """The parameters a model of the state keeps: the optimizer's (ASGD: the average), after every sparse slot has
    taken the penalty of the steps it skipped (``settle_lazy_penalties``, on copies: training goes on as it was)."""
    params, opt_state = _settled(run, state)
    return run.optimizer.final_params(params, opt_state, state.step)


def _settled(run: Run, state: TrainState) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the parameters and the optimizer state with the lazy penalties settled (the state itself when
    nothing can be owed). A model keeps both: continuing it must not apply the settled decay again."""
    params, opt_state = state.params, state.opt_state
    if run.n_slots and (run.hyper[kernels.H_LAZY_ROW] or run.hyper[kernels.H_L1_ROW]):
        params, opt_state = params.copy(), opt_state.copy()
        settle_lazy_penalties(params, opt_state, run.hyper, run.n_out, len(run.feature_names) - run.n_slots,
                              run.n_slots)
    return params, opt_state


def settle_state(job: ChunkJob, state: TrainState) -> None:
    """Settle, in place, the penalties the state's sparse slots owe (``settle_lazy_penalties``): what a dask
    worker does before its parameters are averaged with the others', which saw other slots at other steps."""
    n_slots = job.n_slots
    if n_slots and (job.hyper[kernels.H_LAZY_ROW] or job.hyper[kernels.H_L1_ROW]):
        settle_lazy_penalties(state.params, state.opt_state, job.hyper, job.n_out,
                              len(job.feature_names) - n_slots, n_slots)


def settle_lazy_penalties(params: np.ndarray, opt_state: np.ndarray, hyper: np.ndarray, n_out: int, d: int,
                          n_slots: int) -> None:
    """Give every sparse slot's coefficients, in place, the penalty of the steps since it was last touched, as
    its next touch would (``streamgd.kernels.sparse``: the L2 and weight decay product from the ledger and its
    stamp, then the cumulative L1 it has not received), and bring its records up to date. Without this a slot
    untouched since some step would keep its coefficient undecayed in the model: a hashed model's rare slots, or
    every slot a worker's round did not see.

    Dense coefficients are updated at every step and are left alone (their records hold nothing owed).
    """
    width = d + n_slots
    n_coef = n_out * width
    coef = params[:n_coef].reshape(n_out, width)[:, d:]
    lazy_row = int(hyper[kernels.H_LAZY_ROW]) - 1
    if lazy_row >= 0:
        stamps = opt_state[lazy_row, :n_coef].reshape(n_out, width)[:, d:]
        ledger = opt_state[lazy_row, n_coef]
        owed = stamps != ledger
        coef[owed] *= np.exp(ledger - stamps[owed])
        stamps[...] = ledger
    l1_row = int(hyper[kernels.H_L1_ROW]) - 1
    if l1_row >= 0:
        received = opt_state[l1_row, :n_coef].reshape(n_out, width)[:, d:]
        total = opt_state[l1_row, n_coef]  # what every coefficient could have received so far
        settled = np.where(coef > 0.0, np.maximum(0.0, coef - (total + received)),
                           np.where(coef < 0.0, np.minimum(0.0, coef + (total - received)), coef))
        received += settled - coef
        coef[...] = settled


def assemble_model(cfg: TrainConfig, run: Run, state: TrainState, target: str, rows: int,
                   summary: dict | None = None, config: dict | None = None) -> LinearModel:
    """The model of a run's state (early stopping's best epoch if there is one) on raw inputs: the
    standardization folded into the coefficients; ``summary`` adds to the run's summary, ``config`` to its
    settings."""
    settled_params, opt_state = _settled(run, state)
    if state.best:
        params = state.best["params"]
    else:
        params = run.optimizer.final_params(settled_params, opt_state, state.step)
    coef, intercept = kernels.split_params(params, len(run.feature_names), run.n_out)
    transform = None
    if run.standardizer is not None:
        coef, intercept = run.standardizer.raw_coefficients(coef, intercept)
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
        info["best_epoch"] = state.best["epoch"]
        info["best_loss"] = state.best["loss"]
    if run.stats is not None:
        info["statistics"] = run.stats.as_dict()
    info.update(summary or {})
    if run.standardizer is None:  # raw_coefficients made copies already
        coef, intercept = coef.copy(), intercept.copy()
    return run.model_cls(coef, intercept, run.feature_names, target=target,
                         classes=to_json_labels(run.classes) if run.classes else None,
                         config={**cfg.to_dict(), **(config or {})}, history=state.history,
                         optimizer_state=opt_state, summary=info,
                         feature_spec=run.spec.to_dict() if run.spec is not None else None)


# ---- checkpoints ------------------------------------------------------------------------------------------------
def fingerprint(dataset: Dataset) -> dict:
    """What a checkpoint records of its data, to refuse resuming on other data."""
    return {"rows": dataset.n_rows, "units": len(dataset.units), "features": dataset.feature_names,
            "target": dataset.target}


def save_checkpoint(cfg: TrainConfig, run: Run, state: TrainState, data: dict, settings: dict) -> None:
    """Write the state as checkpoint ``chunks_done + epoch`` of ``cfg.checkpoint_dir`` (nothing without one)."""
    if not cfg.checkpoint_dir:
        return
    standardizer = (run.standardizer.mean, run.standardizer.scale) if run.standardizer else None
    write_checkpoint(cfg.checkpoint_dir, Checkpoint(
        serial=state.chunks_done + state.epoch, params=state.params, opt_state=state.opt_state,
        cursor=state.cursor(), history=state.history, settings=settings, fingerprint=data,
        grad_sum=state.grad_sum, standardizer=standardizer, best=state.best), keep=cfg.keep_checkpoints,
        storage_options=cfg.storage_options)


def check_resumable(checkpoint: Checkpoint, wanted: dict, data: dict, directory: str) -> None:
    """Refuse a checkpoint of another run: a continued model's, other settings (``wanted``), or other data."""
    if checkpoint.settings.get("init") is not None:
        raise ConfigError(f"the checkpoint in {directory} belongs to a run that continued "
                          f"{checkpoint.settings['init']} (init); resuming such a run is not supported: run it "
                          "again with init")
    found = checkpoint.settings
    for name in wanted:
        if wanted[name] != found.get(name):
            raise ConfigError(f"the checkpoint in {directory} was written with {name}={found.get(name)!r} and this "
                              f"run has {name}={wanted[name]!r}; resume with the same settings, or train afresh in "
                              "another checkpoint directory")
    if checkpoint.fingerprint != data:
        raise ConfigError(f"the checkpoint in {directory} was written for other data ({checkpoint.fingerprint}); "
                          "resume on the same data")
