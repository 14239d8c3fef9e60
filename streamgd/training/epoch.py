"""The one epoch driver: the end condition, the epoch and its record, early stopping, and the optimizer steps an
epoch takes.

Who trains supplies an ``EpochSource``: where an epoch's chunks come from and how their sums are combined. This
process's reader (``LocalEpochs``: ``Trainer`` and the scikit-learn estimators) and dask's workers
(``streamgd.distributed.DaskEpochs``) are the two; everything else of an epoch (the full-batch step, the
record with its cache and remote-read figures, early stopping, the cursor) happens here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..data.cache import CacheStats
from ..data.dataset import Dataset
from ..data.reader import ChunkStream
from ..data.remote_reads import ReadStats
from ..data.shuffle import ShuffleQualityMeter, make_plan
from ..errors import DataError
from .chunk_step import ChunkJob, batches_in, cache_session, cache_settings, full_batch_step, open_stream, train_stream
from .config import TrainConfig
from .holdout import constant_loss, mean_loss
from .measure import EpochMeter
from .model_of_run import final_params
from .state import Run, TrainState

__all__ = ["EpochProgress", "EpochSource", "LocalEpochs", "ReadFigures", "end_epoch", "epoch_record",
           "head_rows", "run_epoch", "steps_per_epoch", "train_epochs", "update_best"]

# ReadStats' counters, summed over streams; its depths are maxima (a worker's pass ends at its own depth)
_READ_SUMS = ("requests", "footer_requests", "files_opened", "row_groups", "bytes_read", "request_seconds")
_READ_MAXIMA = ("prefetch_depth", "max_prefetch_depth")
# the epoch's first step is delivered in two parts, about this many rows and the rest, and its last step with about
# this many rows apart: the training thread waits for the reader to featurise these rows, not the whole step, before
# it starts, and after the reader is done it trains these rows, not a whole step (issue 29, the pipeline's fill and
# drain; scripts/bench_ctr.py's epoch / slower)
HEAD_ROWS = 16384


@dataclass
class ReadFigures:
    """What an epoch's streams did with the epoch cache and with remote files, summed over the streams (dask:
    over its tasks, each on its worker's disk). Picklable: a task returns its stream's."""

    cache: dict | None = None  # CacheStats' counters (None: no cache)
    remote: dict | None = None  # ReadStats' counters (None: local files)

    @classmethod
    def of_stream(cls, stream: ChunkStream) -> ReadFigures:
        reads = stream.read_stats
        return cls(None if stream.cache is None else stream.cache.stats.as_dict(),
                   None if reads is None else {name: getattr(reads, name) for name in _READ_SUMS + _READ_MAXIMA})

    def add(self, other: ReadFigures) -> None:
        if other.cache is not None:
            total = CacheStats(**self.cache) if self.cache is not None else CacheStats()
            total.add(other.cache)
            self.cache = total.as_dict()
        if other.remote is not None:
            mine = self.remote or {name: 0 for name in _READ_SUMS + _READ_MAXIMA}
            self.remote = {**{name: mine[name] + other.remote[name] for name in _READ_SUMS},
                           **{name: max(mine[name], other.remote[name]) for name in _READ_MAXIMA}}

    def record(self) -> dict:
        """The epoch record's ``cache`` and ``remote_reads`` entries (those that apply)."""
        record: dict[str, Any] = {}
        if self.cache is not None:
            record["cache"] = dict(self.cache)
        if self.remote is not None:  # remote files: requests per row group, their latency, the fetch depth
            reads = ReadStats()
            for name, value in self.remote.items():
                setattr(reads, name, value)
            record["remote_reads"] = reads.as_dict()
        return record


@dataclass
class EpochProgress:
    """What an epoch source reports into while it trains: rows and time, the shuffle's quality, the streams'
    reads, and the per-chunk hook (a dask round counts as a chunk)."""

    after_chunk: Callable[[EpochProgress, float], None] | None = None  # (progress, RSS in MB)
    rows_total: int = 0  # the epoch plan's rows
    n_chunks: int = 0  # the epoch plan's chunks (dask: rounds)
    meter: EpochMeter = field(default_factory=EpochMeter)
    quality: ShuffleQualityMeter = field(default_factory=ShuffleQualityMeter)
    reads: ReadFigures = field(default_factory=ReadFigures)
    # wait until the state is a cursor a checkpoint can store: one thread's is after every chunk; several
    # threads' (streamgd.training.threads) once the chunks they took are trained and booked
    settle: Callable[[], None] = field(default=lambda: None)

    def chunk_done(self, rows: int) -> None:
        """A chunk (or round) of ``rows`` rows is trained: count it and run the hook."""
        rss = self.meter.add(rows)
        if self.after_chunk is not None:
            self.after_chunk(self, rss)


class EpochSource(Protocol):
    """Where an epoch's chunks come from and how their sums are combined."""

    def train_epoch(self, cfg: TrainConfig, run: Run, job: ChunkJob, state: TrainState,
                    progress: EpochProgress) -> dict:
        """Train from the state's cursor to the end of its epoch's chunks: the state holds the epoch's sums (full
        batch: the whole gradient sum, the step not taken); return the record's entries of this source."""


class LocalEpochs:
    """An epoch's chunks from this process's reader, in the plan's order from the state's cursor."""

    def __init__(self) -> None:
        self.chunks_trained = 0  # compiled chunk calls this process made

    def train_epoch(self, cfg: TrainConfig, run: Run, job: ChunkJob, state: TrainState,
                    progress: EpochProgress) -> dict:
        plan = make_plan(run.train.units, cfg.shuffle, seed=cfg.seed, epoch=state.epoch)
        progress.rows_total, progress.n_chunks = plan.n_rows, len(plan.steps)

        def each(chunk: Any) -> None:
            self.chunks_trained += 1
            if not chunk.ends_step:  # a step's first parts: the hooks (checkpoints, Ctrl-C) wait for its end
                progress.meter.add(chunk.n_rows)
                return
            progress.chunk_done(chunk.n_rows)

        stream = open_stream(job, plan, state.next_chunk, progress.quality, head_rows(job.batch_size))
        train_stream(job, state, stream, run.schedule, each)
        progress.reads.add(ReadFigures.of_stream(stream))
        return {}


def head_rows(batch_size: int | str) -> int:
    """The rows of the head of an epoch's first step and about those of the tail of its last (``ChunkStream``'s
    ``head_rows``): about ``HEAD_ROWS``, a whole number of mini-batches, so the model is the one whole steps give;
    0 for full batch, whose gradient sum would be added up in another order."""
    if batch_size == "full":
        return 0
    return max(1, HEAD_ROWS // int(batch_size)) * int(batch_size)


LOCAL = LocalEpochs()  # for callers that keep no count of their chunk calls


# ---- the epochs -------------------------------------------------------------------------------------------------
def train_epochs(cfg: TrainConfig, run: Run, job: ChunkJob, state: TrainState, source: EpochSource = LOCAL,
                 last_epoch: int | None = None, after_chunk: Callable[[EpochProgress, float], None] | None = None,
                 after_epoch: Callable[[dict], None] | None = None) -> None:
    """Train epochs until the state is finished: early stopping's patience ran out, or epoch ``last_epoch``
    (default: ``cfg.epochs`` after the run's first) is done. ``after_epoch(record)`` runs after each epoch is
    booked (checkpoints)."""
    last = state.first_epoch + cfg.epochs if last_epoch is None else last_epoch
    while not state.finished and state.epoch < last:
        record = run_epoch(cfg, run, job, state, source, after_chunk)
        end_epoch(cfg, run, state, record, last)
        if after_epoch is not None:
            after_epoch(record)


def run_epoch(cfg: TrainConfig, run: Run, job: ChunkJob, state: TrainState, source: EpochSource = LOCAL,
              after_chunk: Callable[[EpochProgress, float], None] | None = None) -> dict:
    """Train from the state's cursor to the end of its epoch (full batch: then step); return the epoch's
    record."""
    progress = EpochProgress(after_chunk)
    entries = source.train_epoch(cfg, run, job, state, progress)
    if state.epoch_rows == 0 and state.epoch_rows_skipped:
        why = "a missing target or feature (--missing drop-rows)" if cfg.missing == "drop-rows" else "no target"
        raise DataError(f"every row of the data was left out ({state.epoch_rows_skipped:,} rows: {why}); there is "
                        "nothing to train on")
    if job.full_batch:
        full_batch_step(job, state, run.schedule)
    record = epoch_record(cfg, run, state, progress.meter, progress.quality)
    record.update(entries)
    record.update(progress.reads.record())
    if run.memory_plan is not None:
        record["memory_budget"] = asdict(run.memory_plan)
    return record


def end_epoch(cfg: TrainConfig, run: Run, state: TrainState, record: dict, last_epoch: int | None = None) -> None:
    """Book an epoch: early stopping, the history, the cursor at the next epoch (``finished`` when early
    stopping's patience has run out, or when epoch ``last_epoch`` is done)."""
    stop = update_best(cfg, run, state, record)
    state.history.append(record)
    state.epoch += 1
    state.finished = stop or (last_epoch is not None and state.epoch >= last_epoch)
    state.start_epoch(cfg.full_batch)


def steps_per_epoch(cfg: TrainConfig, dataset: Dataset) -> int:
    """Optimizer steps in one epoch (the first epoch's plan; other epochs differ by a few at most)."""
    if cfg.full_batch:
        return 1
    plan = make_plan(dataset.units, cfg.shuffle, seed=cfg.seed, epoch=0)
    return sum(batches_in(step.n_rows, cfg.batch_size) for step in plan.steps)


# ---- the epoch's record and early stopping ----------------------------------------------------------------------
def epoch_record(cfg: TrainConfig, run: Run, state: TrainState, meter: EpochMeter,
                 quality: ShuffleQualityMeter) -> dict:
    """The history entry of the epoch just trained: losses (and the validation loss), rows, time, memory.
    ``epoch`` counts from 1, as every line a user reads does (the state's cursor counts from 0)."""
    seconds = meter.seconds
    record = {"epoch": state.epoch + 1, "loss": state.epoch_loss_sum / max(state.epoch_rows, 1),
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
