"""The per-chunk step, written once: a chunk's stream, its weights, one compiled call per chunk (a mini-batch
pass, or full batch's gradient sum), its status turned into an error a user can act on, and the epoch's sums.

A ``ChunkJob`` holds what the step needs and is small and picklable: dask ships it to the workers, so a feature
of the step (weights, a FeatureSpec, standardization, the error that names file, row group, row and column)
works in one process, in the scikit-learn estimators and on dask alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import numpy as np

from ..data.arrow_numpy import numbers
from ..data.cache import CacheSession, CacheSettings, EpochCache, cache_context
from ..data.dataset import Dataset
from ..data.memory_plan import fetch_ahead_bytes
from ..data.reader import Chunk, ChunkStream, parse_memory_budget, parse_size
from ..data.shuffle import Plan, ShuffleQualityMeter
from ..data.sparse_block import BlockNames
from ..errors import DataError, DivergenceError
from ..features.spec import FeatureSpec, OutputNames
from ..features.standardize import Standardizer
from ..kernels import api as kernels
from .config import TrainConfig
from .state import Run, TrainState, n_slots

__all__ = ["ChunkJob", "LearningRates", "batches_in", "cache_session", "cache_settings", "check_status",
           "chunk_job", "chunk_weights", "divergence_message", "full_batch_step", "open_stream", "train_on_chunk",
           "train_stream"]

LearningRate = Callable[[np.ndarray], np.ndarray]  # global step numbers -> learning rates (a schedule)


def batches_in(rows: int, batch_size: int) -> int:
    """The optimizer steps a chunk of ``rows`` rows takes: its mini-batches, the last one possibly short."""
    return -(-rows // batch_size)


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
    slot_fields: np.ndarray | None = None  # a field-aware FM without a FeatureSpec: each slot's field (None: by position)

    @property
    def full_batch(self) -> bool:
        return self.batch_size == "full"

    @property
    def n_slots(self) -> int:
        """The model's sparse slots (the last features): its FeatureSpec's or an in-memory sparse matrix's."""
        return n_slots(self.spec, self.feature_names)


def chunk_job(cfg: TrainConfig, run: Run) -> ChunkJob:
    """The per-chunk settings of a run."""
    return ChunkJob(
        dataset=run.train, feature_names=_names(run.feature_names), n_out=run.n_out,
        loss_kind=run.model_cls.loss_kind, opt_code=run.optimizer.code, hyper=run.hyper,
        batch_size=cfg.batch_size, dtype=cfg.dtype, prefetch_depth=cfg.prefetch_depth,
        defer_conversion=cfg.memory_budget is None,  # a budget counts one copy per chunk: convert while prefetching
        encoder=run.encoder, standardizer=run.standardizer, spec=run.spec, sample_weight=cfg.sample_weight,
        class_weights=run.class_weights, learning_rate=cfg.learning_rate, cache=cache_settings(cfg, run),
        fetch_bytes=fetch_ahead_bytes(parse_memory_budget(cfg.memory_budget)), slot_fields=_slot_fields(run))


def _slot_fields(run: Run) -> np.ndarray | None:
    """A field-aware FM's field of each slot where no FeatureSpec numbers a row's entries by column (a sparse
    matrix's columns: each its own field, ``streamgd.optim.factors.spec_fields``); None otherwise."""
    if not run.hyper[kernels.H_FIELDS] or run.spec is not None:
        return None
    return np.arange(run.n_slots, dtype=np.int32)


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


# ---- a stream of chunks -----------------------------------------------------------------------------------------
def open_stream(job: ChunkJob, plan: Plan, start: int = 0, quality: ShuffleQualityMeter | None = None,
                head_rows: int = 0) -> ChunkStream:
    """The chunks of ``plan`` from step ``start``, as training reads them (weights, features, standardized); the
    first step's first ``head_rows`` rows as a chunk of their own (``ChunkStream``)."""
    extra = [job.sample_weight] if job.sample_weight else []
    return ChunkStream(job.dataset, plan, dtype=job.dtype, prefetch_depth=job.prefetch_depth,
                       target_encoder=job.encoder, quality=quality, start_step=start,
                       extra_columns=extra or None, features=job.spec,
                       transform=job.standardizer.apply if job.standardizer is not None else None,
                       defer_conversion=job.defer_conversion, fetch_bytes=job.fetch_bytes, head_rows=head_rows,
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


# ---- the step ---------------------------------------------------------------------------------------------------
def chunk_weights(job: ChunkJob, chunk: Chunk) -> np.ndarray:
    """Per-row weights of a chunk in its row order (sample weight column x class weight), or empty."""
    weights = None
    name = job.sample_weight
    if name is not None:
        column = chunk.extra.column(name)
        weights = np.asarray(numbers(column), dtype=np.float64)
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
        n_batches = batches_in(chunk.n_rows, job.batch_size)
        lrs = np.ascontiguousarray(lr_at(state.step + np.arange(n_batches)), dtype=np.float64)
        chunk_loss, _, status = kernels.train_chunk(
            chunk.X, chunk.y, weights, state.params, state.opt_state, job.hyper, lrs, job.batch_size, job.n_out,
            job.loss_kind, job.opt_code, state.step, sparse=chunk.sparse, slot_fields=job.slot_fields)
        check_status(job, status, chunk, state)
        state.step += n_batches
    state.epoch_loss_sum += chunk_loss
    state.epoch_rows += chunk.n_rows
    state.epoch_rows_skipped += chunk.rows_left_out
    state.epoch_y_sum += float(chunk.y.sum())
    state.epoch_y_sq_sum += float(np.einsum("i,i->", chunk.y, chunk.y))  # no BLAS: see quality.py
    if chunk.ends_step:  # the cursor counts whole steps (a step's parts but its last: it goes on)
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


def full_batch_step(job: ChunkJob, state: TrainState, lr_at: LearningRate) -> None:
    """Full batch's one step of the epoch, from the gradient summed over the whole stream (``state.grad_sum``)."""
    lr = float(lr_at(np.array([state.step]))[0])
    status = kernels.full_batch_step(state.params, state.grad_sum, float(state.epoch_rows), state.opt_state,
                                     job.hyper, lr, job.opt_code, state.step, job.n_out * len(job.feature_names))
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
        name = job.feature_names[bad[0]]
        nan = np.isnan(values[bad[0]])  # inf: neither --missing policy helps
        fix = "train with --missing drop-rows or --missing impute" if nan else \
            f"clip the column (--transform clip:{name}:LOW:HIGH)"
        what = "is missing (null or NaN)" if nan else f"holds {values[bad[0]]}"  # a null reaches the kernel as NaN
        raise DataError(f"the feature column {name!r} {what} at {where}; clean the data, or {fix}")
    if chunk.y is not None and not np.isfinite(chunk.y[row]):
        raise DataError(f"the target column {job.dataset.target!r} is missing (null or NaN) at {where}; "
                        "--missing drop-rows or --missing impute skip unlabelled rows")
    raise DivergenceError(divergence_message(job, state))


def divergence_message(job: ChunkJob, state: TrainState) -> str:
    return (f"training diverged at epoch {state.epoch + 1}, step {state.step}: the loss or a parameter became "
            f"NaN or inf; lower the learning rate (now {job.learning_rate}) or standardize the features")
