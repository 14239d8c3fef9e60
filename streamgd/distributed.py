"""Data-parallel training on dask.distributed: every worker streams its own shard of units from the shared path.

- Full batch: each epoch every worker returns the gradient sum of its shard; the client adds them in shard order
  and takes the step, so the result equals single-process full batch up to the order of floating-point sums.
- Mini-batch and SGD: synchronous rounds of local SGD with model averaging (Zinkevich, Weimer, Smola and Li,
  2010). In a round each worker trains on its next ``round_chunks`` chunks from the broadcast parameters and
  optimizer state; the client averages them weighted by rows. A model with sparse slots ships only the
  coordinates a round changed, each way (``streamgd.distributed_rounds``).

A task is a pure function of (dataset, shard, epoch, round, parameters, settings): the shard's plan comes from
``make_plan(..., shard=k, n_shards=n)``, so when a worker dies dask reruns its task elsewhere with the same
result, and the client checks that every chunk of the round was trained on exactly once. With
``checkpoint_dir`` the client writes a checkpoint every ``checkpoint_every`` rounds and at each epoch's end; a
lost client resumes from it (``resume=True``) with the same final model. ("Chunks" in the checkpoint cursor
count rounds here.)

The client is a ``Trainer`` with a ``DaskEpochs`` runner, which supplies the epoch driver's hooks only (where an
epoch's chunks are trained and how the workers' sums combine): set-up (validation split, classes and class
weights, the statistics pass, run on the workers, the FeatureSpec and standardizer, the resume check, ``init``),
the epoch record with the validation loss and the cache and remote-read figures, early stopping, checkpoints and
the model are one process's, and each task runs ``streamgd.training.chunk_step``, so bad data raises the same
error naming file, row group, row and column.

>>> from streamgd.data.shuffle import make_plan
>>> from streamgd.data.dataset import Unit
>>> units = [Unit(0, g, 0, 100, 100 * g) for g in range(10)]
>>> shards = [make_plan(units, "row-groups", seed=1, shard=k, n_shards=3).units for k in range(3)]
>>> sorted(u.row_group for s in shards for u in s) == list(range(10))
True
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .data.dataset import Dataset
from .data.shuffle import Plan, make_plan
from .distributed_rounds import (STALE, Broadcast, ClientBases, Touched, apply_average, average_touched, forget_bases,
                                 keep_end, start_state, touched)
from .errors import ConfigError, DivergenceError, TrainingInterrupted
from .features.stats import DatasetStats, merge_stats, units_stats
from .features.targets import LabelEncoder, class_counts, merge_classes, scan_classes
from .io.atomic import replaced_directory
from .io.outputs import PART_FILES
from .io.storage import Location, delete, list_names, resolve
from .models.linear import LinearModel
from .models.predict import PredictionCounts
from .training.chunk_step import ChunkJob, LearningRates, batches_in, divergence_message, open_stream, train_stream
from .training.config import TrainConfig
from .training.epoch import EpochProgress, ReadFigures
from .training.measure import lifetime_peak_rss_mb
from .training.model_of_run import settle_state
from .training.state import Run, TrainState
from .training.trainer import ChunkProgress, Trainer

__all__ = ["fit_distributed", "predict_distributed"]

MAX_LOCAL_WORKERS_PER_CORE = 4  # a local cluster's worker processes per core at most
SHIP_MODES = ("auto", "touched", "whole")  # what a local-SGD round ships (DaskEpochs)


# ---- tasks (run on the workers) ---------------------------------------------------------------------------------
def _crash_if_asked() -> None:
    """Test hook for fault tolerance: ``STREAMGD_TEST_CRASH_ONCE=path`` kills the one task that creates the file
    at ``path``, as a worker dying mid-round would."""
    marker = os.environ.get("STREAMGD_TEST_CRASH_ONCE")
    if not marker:
        return
    try:  # created atomically: when two workers start a task at once, exactly one of them dies
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)


def _process_peak() -> tuple[tuple[str, int], float]:
    """This process (host, pid) and its peak RSS in MB."""
    import socket

    return (socket.gethostname(), os.getpid()), lifetime_peak_rss_mb()


def _identity(value: Any) -> Any:
    return value


def worker_count(client: Any) -> int:
    """The cluster's workers, one shard each, asked of the scheduler directly. Not ``scheduler_info()``: its
    reply is a cached identity that the client's periodic refresh (every 2 s) replaces with one listing no
    workers, so a read racing that refresh counts zero (seen in CI: every shard's class scan was then empty)."""
    count = len(client.nthreads())
    if count == 0:
        raise ConfigError("the dask cluster has no workers: start some (or wait for them) before training on it")
    return count


def _shard_stats(dataset: Dataset, shard: int, n_shards: int, columns: list[str], categorical: list[str],
                 max_categories: int, treatments: dict | None = None) -> DatasetStats:
    """The statistics pass over one shard's units (merged on the client)."""
    units = make_plan(dataset.units, "none", shard=shard, n_shards=n_shards).units
    return units_stats(dataset, units, columns, set(categorical), max_categories, treatments)


def _shard_classes(dataset: Dataset, shard: int, n_shards: int) -> list:
    """The class labels in one shard's units (merged on the client)."""
    return scan_classes(dataset.subset(make_plan(dataset.units, "none", shard=shard, n_shards=n_shards).units))


def _shard_class_counts(dataset: Dataset, shard: int, n_shards: int, encoder: LabelEncoder) -> np.ndarray:
    """Rows per class in one shard's units (summed on the client)."""
    return class_counts(dataset.subset(make_plan(dataset.units, "none", shard=shard, n_shards=n_shards).units),
                        encoder)


def _gradient_task(job: ChunkJob, shard: int, n_shards: int, epoch: int, params: np.ndarray, step: int
                   ) -> tuple[TrainState, list, ReadFigures]:
    """Full batch: the gradient summed over one shard at ``params`` (in the state's ``grad_sum``), the shard's
    epoch sums, the chunks it covered and the worker's reads (epoch cache, remote files)."""
    _crash_if_asked()
    plan = make_plan(job.dataset.units, "none", shard=shard, n_shards=n_shards)
    state = TrainState(params=params, opt_state=np.empty(0), step=step, epoch=epoch)
    state.start_epoch(full_batch=True)
    covered: list = []
    reads = _train_shard(job, state, plan, LearningRates(step, np.empty(0)), covered)
    return state, covered, reads


def _train_shard(job: ChunkJob, state: TrainState, plan: Plan, lrs: LearningRates, covered: list) -> ReadFigures:
    """Train on a plan's chunks, noting each one covered; what the stream read (the epoch cache in the directory
    ``job.cache`` names, on this worker's disk; remote files)."""
    stream = open_stream(job, plan)
    train_stream(job, state, stream, lrs, lambda chunk: covered.append(_chunk_id(chunk.step)))
    return ReadFigures.of_stream(stream)


def _round_task(job: ChunkJob, shard: int, n_shards: int, shuffle: str, seed: int, epoch: int, first: int,
                count: int, params: np.ndarray, opt_state: np.ndarray, step: int, lrs: np.ndarray
                ) -> tuple[TrainState, list, ReadFigures]:
    """Local SGD on chunks [first, first + count) of this shard's epoch plan, from the broadcast state: the
    state after them (parameters, optimizer state, step, epoch sums), the chunks covered and the worker's
    reads."""
    state = TrainState(params=params.copy(), opt_state=opt_state.copy(), step=step, epoch=epoch)
    return (state, *_train_round(job, shard, n_shards, shuffle, seed, first, count, state, lrs))


def _train_round(job: ChunkJob, shard: int, n_shards: int, shuffle: str, seed: int, first: int, count: int,
                 state: TrainState, lrs: np.ndarray) -> tuple[list, ReadFigures]:
    """Train ``state`` in place on the round's chunks of this shard's plan for its epoch; the chunks covered and
    the reads."""
    _crash_if_asked()
    plan = make_plan(job.dataset.units, shuffle, seed=seed, epoch=state.epoch, shard=shard, n_shards=n_shards)
    plan = Plan(plan.mode, plan.seed, plan.epoch, plan.shard, plan.n_shards, plan.steps[first:first + count])
    state.start_epoch(full_batch=False)
    covered: list = []
    reads = _train_shard(job, state, plan, LearningRates(state.step, lrs), covered)
    # sparse slots this worker has not touched since some step still owe that step's penalty: settled here, the
    # parameters averaged are what the dense twin of this round would hold
    settle_state(job, state)
    return covered, reads


def _touched_round_task(job: ChunkJob, shard: int, n_shards: int, shuffle: str, seed: int, epoch: int, first: int,
                        count: int, message: Broadcast, token: str, step: int, lrs: np.ndarray) -> tuple:
    """``_round_task`` from a ``Broadcast`` (the whole vectors, or what changed since the end state this process
    keeps), returning only the coordinates the round changed (``Touched``), this worker's address and the task's
    seconds, with the state's sums and cursor; ``STALE`` when a delta starts from an end state this process does
    not keep. The end state is kept for the next round's delta."""
    from dask.distributed import get_worker

    started = time.perf_counter()
    base = start_state(token, shard, message)
    if base is None:
        return STALE, None, None, None, None, 0.0
    base, work = base
    state = TrainState(params=work[0], opt_state=work[1], step=step, epoch=epoch)
    covered, reads = _train_round(job, shard, n_shards, shuffle, seed, first, count, state, lrs)
    part = touched(*base, state.params, state.opt_state)
    keep_end(token, shard, message, base, work)
    state.params = state.opt_state = np.empty(0)  # sent as ``part``
    return state, covered, reads, part, get_worker().address, time.perf_counter() - started


def _chunk_id(step: Any) -> tuple:
    return tuple((u.source, u.row_group, u.offset) for u in step.units)


# ---- the client -------------------------------------------------------------------------------------------------
def fit_distributed(data: Any, target: str | None = None, features: Sequence[str] | None = None, *,
                    client: Any = None, n_workers: int = 2, round_chunks: int = 4, exclude: Sequence[str] = (),
                    on_chunk: Callable[[ChunkProgress], None] | None = None, ship: str = "auto",
                    **options: Any) -> LinearModel:
    """Train on a dask.distributed cluster: ``client`` (an existing ``dask.distributed.Client``), else a
    ``LocalCluster`` of ``n_workers`` processes on this machine. Options as for ``streamgd.fit``: the same
    Trainer sets the run up, keeps its history, validation, early stopping and checkpoints; the workers run
    the same chunk step on their shards. ``on_chunk`` hears of each round and each booked epoch, as a Trainer's
    does of chunks; the model's summary holds each worker's peak RSS (``workers_peak_rss_mb``). ``ship``: what a
    local-SGD round sends each way, ``"touched"`` coordinates only (``streamgd.distributed_rounds``), the
    ``"whole"`` vectors, or ``"auto"``: touched for a model with sparse slots."""
    from dask.distributed import Client

    cfg = TrainConfig(**options).validate()
    if round_chunks < 1:
        raise ConfigError(f"round_chunks must be at least 1, got {round_chunks}")
    if client is None and n_workers < 1:
        raise ConfigError(f"n_workers must be at least 1, got {n_workers}")
    own_cluster = None
    if client is None:
        # silent: a task's error reaches the user once, as the one-line error the client re-raises, not also as
        # the workers' "Compute Failed" log with its traceback
        own_cluster = local_cluster(n_workers, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL)
        client = Client(own_cluster)
    stopped, runner = False, None
    try:
        runner = DaskEpochs(client, round_chunks, ship=ship)
        model = Trainer(cfg, on_chunk=on_chunk, runner=runner).fit(data, target=target, features=features,
                                                                   exclude=exclude)
        model.summary["workers_peak_rss_mb"] = runner.workers_peak_rss_mb()
        return model
    except (KeyboardInterrupt, TrainingInterrupted):
        stopped = True
        raise
    finally:
        if runner is not None and not stopped:
            runner.close()
        if own_cluster is not None:
            client.close()
            close_cluster(own_cluster, quickly=stopped)


class DaskEpochs:
    """A Trainer's passes and epochs on a dask cluster (an ``EpochRunner``): full batch sums the workers'
    gradients, mini-batch runs synchronous local-SGD rounds of ``round_chunks`` chunks per worker with
    row-weighted model averaging."""

    def __init__(self, client: Any, round_chunks: int, ship: str = "auto"):
        if ship not in SHIP_MODES:
            raise ConfigError(f"ship must be one of {', '.join(SHIP_MODES)}, got {ship!r}")
        self.client = client
        self.round_chunks = round_chunks
        self.ship = ship
        self.n_shards = worker_count(client)
        self.round_log: list[dict] = []  # one record per local-SGD round: what was shipped, how long it took
        self._job: tuple[ChunkJob, Any] | None = None  # the job and its future
        self._peaks: dict[str, float] = {}  # each worker process's peak RSS in MB, by address
        self._token = uuid.uuid4().hex  # names the end states this run's workers keep between rounds
        self._bases = ClientBases()
        self._where: dict[int, str] = {}  # shard -> the worker that keeps its end state

    def ships_touched(self, job: ChunkJob) -> bool:
        """Whether local-SGD rounds ship only the touched coordinates: ``ship="touched"``, or ``"auto"`` for a
        model with sparse slots (a dense model changes every coordinate in every round)."""
        return self.ship == "touched" or (self.ship == "auto" and job.n_slots > 0)

    def close(self) -> None:
        """Drop the end states the workers keep for this run's rounds."""
        with contextlib.suppress(Exception):
            self.client.run(forget_bases, self._token)

    def workers_peak_rss_mb(self) -> list[float]:
        """Each worker process's peak RSS so far, in MB (by address: a worker that died keeps its last figure):
        every worker asked for its own high-water mark, which no sampling between rounds can miss."""
        try:
            peaks = self.client.run(_process_peak)
        except Exception:  # a worker lost mid-call: the figures known so far
            peaks = {}
        for address, (process, peak) in peaks.items():
            if process != _process_peak()[0]:  # a worker thread of this very process is the client's figure
                self._peaks[address] = max(peak, self._peaks.get(address, 0.0))
        return [round(self._peaks[address], 1) for address in sorted(self._peaks)]

    def settings(self) -> dict:
        return {"workers": self.n_shards, "round_chunks": self.round_chunks}

    def statistics(self, dataset: Dataset, columns: list[str], categorical: list[str],
                   max_categories: int, treatments: dict | None = None) -> DatasetStats:
        """The statistics pass, one task per shard, merged on the client in shard order (quantile sketches of
        binned columns merge like the rest)."""
        n = self.n_shards
        tasks = self.client.map(_shard_stats, [dataset] * n, range(n), [n] * n, [columns] * n, [categorical] * n,
                                [max_categories] * n, [treatments] * n, pure=False)
        parts = gather_or_cancel(self.client, tasks)
        return merge_stats(parts, columns)

    def classes(self, dataset: Dataset) -> list:
        """The target's classes, one scan per shard on the workers (the client reads footers only)."""
        n = self.n_shards
        parts = gather_or_cancel(self.client, self.client.map(_shard_classes, [dataset] * n, range(n), [n] * n,
                                                              pure=False))
        return merge_classes(parts, dataset.target)

    def class_counts(self, dataset: Dataset, encoder: LabelEncoder) -> np.ndarray:
        """Rows per class, counted per shard on the workers."""
        n = self.n_shards
        parts = gather_or_cancel(self.client, self.client.map(_shard_class_counts, [dataset] * n, range(n), [n] * n,
                                                   [encoder] * n, pure=False))
        return np.sum(parts, axis=0)

    def _job_future(self, job: ChunkJob) -> Any:
        # the job (dataset index, settings, feature spec, standardizer) as the result of a task rather than
        # scattered data: when a worker dies, dask recomputes a lost task result, while scattered data lost with
        # its workers is gone for good
        if self._job is None or self._job[0] is not job:
            self._job = (job, self.client.submit(_identity, job, pure=False))
        return self._job[1]

    def train_epoch(self, cfg: TrainConfig, run: Run, job: ChunkJob, state: TrainState,
                    progress: EpochProgress) -> dict:
        """The epoch on the workers: the record's ``rounds`` and ``workers``, and for local SGD the bytes its
        rounds shipped each way (``bytes_to_workers``, ``bytes_to_client``; each round's in ``round_log``)."""
        shipped = {}
        if job.full_batch:
            self._full_batch_epoch(run, job, state, progress)
            rounds = 1
        else:
            logged = len(self.round_log)
            rounds = self._local_sgd_epoch(cfg, run, job, state, progress)
            shipped = {key: sum(entry[key] for entry in self.round_log[logged:])
                       for key in ("bytes_to_workers", "bytes_to_client")}
        state.chunks_done += 1  # the epoch's end counts as a round, for checkpoint_every and the serials
        return {"rounds": rounds, "workers": self.n_shards, "workers_peak_rss_mb": self.workers_peak_rss_mb(),
                **shipped}

    def _full_batch_epoch(self, run: Run, job: ChunkJob, state: TrainState, progress: EpochProgress) -> None:
        """Every shard's gradient sum at the state's parameters, added in shard order into ``state.grad_sum``."""
        n = self.n_shards
        future = self._job_future(job)
        tasks = [self.client.submit(_gradient_task, future, k, n, state.epoch, state.params, state.step, pure=False)
                 for k in range(n)]
        results = gather_or_cancel(self.client, tasks)
        _check_coverage([covered for _, covered, _ in results], make_plan(run.train.units, "none"), state.epoch)
        for part, _, reads in results:
            state.add_sums(part)
            progress.reads.add(reads)
        progress.meter.add(state.epoch_rows)  # not the per-chunk hook: a checkpoint here would hold the sums
        state.grad_sum = np.sum([part.grad_sum for part, _, _ in results], axis=0)

    def _local_sgd_epoch(self, cfg: TrainConfig, run: Run, job: ChunkJob, state: TrainState,
                         progress: EpochProgress) -> int:
        """The epoch's synchronous rounds from the state's cursor (``next_chunk``: the first chunk of the next
        round in every shard's plan); after each, the progress hook (the Trainer's checkpoint clock and Ctrl-C
        check). Each round is logged in ``round_log``. Returns the number of rounds in the epoch."""
        n, size = self.n_shards, self.round_chunks
        future = self._job_future(job)
        plans = [make_plan(run.train.units, cfg.shuffle, seed=cfg.seed, epoch=state.epoch, shard=k, n_shards=n)
                 for k in range(n)]
        longest = max(len(p.steps) for p in plans)
        progress.rows_total, progress.n_chunks = sum(p.n_rows for p in plans), -(-longest // size)
        touched_only = self.ships_touched(job)
        for first in range(state.next_chunk, longest, size):
            started = time.perf_counter()
            active = [k for k in range(n) if first < len(plans[k].steps)]
            batches_needed = [sum(batches_in(s.n_rows, cfg.batch_size) for s in plans[k].steps[first:first + size])
                              for k in active]
            lrs = np.ascontiguousarray(run.schedule(state.step + np.arange(max(batches_needed))), dtype=np.float64)
            task = (future, n, cfg.shuffle, cfg.seed, state.epoch, first, size)
            try:
                if touched_only:
                    results, log = self._touched_round(task, active, state, lrs)
                else:
                    results, log = self._whole_round(task, active, state, lrs)
            except KeyboardInterrupt:
                # the round is cancelled; the state is the last round's, so the progress hook (the Trainer's stop)
                # may checkpoint it and raise TrainingInterrupted, as after any chunk
                progress.chunk_done(0)
                raise
            steps = [s for k in active for s in plans[k].steps[first:first + size]]
            _check_coverage([covered for _, covered, _ in results], [_chunk_id(s) for s in steps], state.epoch)
            parts = [part for part, _, _ in results]
            if not log.pop("finite"):
                raise DivergenceError(divergence_message(job, state))
            for part, _, reads in results:
                state.add_sums(part)
                progress.reads.add(reads)
            state.step = max(part.step for part in parts)
            state.next_chunk = first + size
            state.chunks_done += 1
            for step in steps:
                progress.quality.add(step.file_positions())
            self.round_log.append({"epoch": state.epoch + 1, "first_chunk": first, "workers": len(active), **log,
                                   "seconds": round(time.perf_counter() - started, 4)})
            progress.chunk_done(sum(part.epoch_rows for part in parts))
        return progress.n_chunks

    def _whole_round(self, task: tuple, active: list[int], state: TrainState, lrs: np.ndarray
                     ) -> tuple[list, dict]:
        """A round that sends every worker the whole parameter and state vectors and gets theirs back; the
        row-weighted average becomes the state's. The results (sums, covered chunks, reads) and the round's log."""
        future, n, shuffle, seed, epoch, first, size = task
        results = gather_or_cancel(self.client, [
            self.client.submit(_round_task, future, k, n, shuffle, seed, epoch, first, size, state.params,
                               state.opt_state, state.step, lrs, pure=False)
            for k in active])
        parts = [part for part, _, _ in results]
        whole = state.params.nbytes + state.opt_state.nbytes
        weights = _row_weights(parts)
        params = np.sum([w * part.params for w, part in zip(weights, parts)], axis=0)
        opt_state = np.sum([w * part.opt_state for w, part in zip(weights, parts)],
                           axis=0).reshape(state.opt_state.shape)
        finite = bool(np.isfinite(params).all() and np.isfinite(opt_state).all())
        if finite:
            state.params, state.opt_state = params, opt_state
        return results, {"ship": "whole", "bytes_to_workers": whole * len(active),
                         "bytes_to_client": whole * len(active), "finite": finite}

    def _touched_round(self, task: tuple, active: list[int], state: TrainState, lrs: np.ndarray
                       ) -> tuple[list, dict]:
        """A round that sends each worker what changed since the state it keeps (the whole vectors when it keeps
        none, or when that is smaller) and gets back the coordinates it changed (``streamgd.distributed_rounds``).
        The log counts the coordinates the average changed (``touched``) and the bytes of the arrays sent each
        way."""
        future, n, shuffle, seed, epoch, first, size = task
        messages = self._bases.messages(active, state.params, state.opt_state)
        sent, full_sends, results = 0, 0, {}
        pending = dict(messages)
        while pending:
            futures = {k: self.client.submit(_touched_round_task, future, k, n, shuffle, seed, epoch, first, size,
                                             message, self._token, state.step, lrs, pure=False,
                                             **({"workers": [self._where[k]], "allow_other_workers": True}
                                                if k in self._where else {}))
                       for k, message in pending.items()}
            sent += sum(message.nbytes for message in pending.values())
            full_sends += sum(message.since is None for message in pending.values())
            answers = dict(zip(futures, gather_or_cancel(self.client, list(futures.values()))))
            pending = {}
            for k, answer in answers.items():
                if isinstance(answer[0], str):  # STALE
                    pending[k] = self._bases.full(k, state.params, state.opt_state)  # kept no usable state
                else:
                    results[k] = answer
                    self._where[k] = answer[4]
        ordered = [results[k] for k in active]
        parts: list[Touched] = [answer[3] for answer in ordered]
        weights = _row_weights([answer[0] for answer in ordered])
        averaging = time.perf_counter()
        union_p, params, union_s, opt_state = average_touched(state.params, state.opt_state, parts, weights)
        finite = bool(np.isfinite(params).all() and np.isfinite(opt_state).all())
        if finite:
            apply_average(state.params, state.opt_state, union_p, params, union_s, opt_state)
            self._bases.averaged(active, union_p, union_s)
        averaging = time.perf_counter() - averaging
        return [answer[:3] for answer in ordered], {
            "ship": "touched", "touched": int(union_p.size), "touched_state_columns": int(union_s.size),
            "bytes_to_workers": int(sent), "bytes_to_client": int(sum(part.nbytes for part in parts)),
            "whole_sends": int(full_sends), "worker_seconds": round(max(answer[5] for answer in ordered), 4),
            "average_seconds": round(averaging, 4), "finite": finite}


def _row_weights(parts: list[TrainState]) -> np.ndarray:
    """Each worker's share of the round's rows (the model average's weights)."""
    weights = np.array([part.epoch_rows for part in parts], dtype=np.float64)
    weights /= max(weights.sum(), 1.0)
    return weights


def gather_or_cancel(client: Any, futures: Any) -> Any:
    """``client.gather(futures)`` that Ctrl-C (SIGINT; the command line turns SIGTERM into it) stops at once: the
    futures are cancelled and KeyboardInterrupt raised, after the handler in place has heard of it (the
    Trainer's, which then stops with a checkpoint). A blocked gather otherwise waits for the whole round, and
    for ever when the workers died of the same Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        return client.gather(futures)
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:  # a process told to ignore Ctrl-C keeps ignoring it
        return client.gather(futures)

    stopped = []

    def stop(signum: int, frame: Any) -> None:
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)
        if not stopped:
            stopped.append(signum)
            client.cancel(futures)  # the gather then ends with CancelledError: no task of it is left behind

    signal.signal(signal.SIGINT, stop)
    try:
        return client.gather(futures)
    except BaseException:
        if stopped:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def workers_ignore_ctrl_c() -> Iterator[None]:
    """Worker processes started inside this block ignore SIGINT (an ignored signal stays ignored in a child,
    and Python then installs no KeyboardInterrupt handler): a Ctrl-C at the terminal reaches the whole process
    group, and the client alone stops the run, rather than every worker dying with a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def local_cluster(n_workers: int, **options: Any) -> Any:
    """A LocalCluster of ``n_workers`` processes of one thread each, whose workers ignore Ctrl-C; refused above
    ``MAX_LOCAL_WORKERS_PER_CORE`` per core (each is a Python process of a few hundred MB)."""
    from dask.distributed import LocalCluster

    check_local_workers(n_workers)
    with workers_ignore_ctrl_c():
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, **options)


def close_cluster(cluster: Any, quickly: bool = False) -> None:
    """Close a local cluster; ``quickly`` (after Ctrl-C): its workers are given half a second to stop before
    they are killed, not the nannies' five, since their tasks' results are no longer wanted."""
    if quickly:
        for nanny in list(cluster.workers.values()):
            with contextlib.suppress(Exception):
                cluster.sync(nanny.close, timeout=0.5)
    cluster.close()


def check_local_workers(n_workers: int, option: str = "n_workers") -> None:
    """ConfigError above ``MAX_LOCAL_WORKERS_PER_CORE`` worker processes per core of this machine."""
    limit = MAX_LOCAL_WORKERS_PER_CORE * (os.cpu_count() or 1)
    if n_workers > limit:
        raise ConfigError(f"{option} {n_workers}: a local cluster takes at most {limit} worker processes here "
                          f"({MAX_LOCAL_WORKERS_PER_CORE} per core); for more, start a dask cluster and give its "
                          "scheduler's address (--dask ADDRESS; client= in Python)")


def _check_coverage(covered: list[list], expected: Any, epoch: int) -> None:
    """Every chunk of the round (or epoch) trained on exactly once, whatever dask had to rerun."""
    if isinstance(expected, Plan):
        expected = [_chunk_id(s) for s in expected.steps]
    got = sorted(c for part in covered for c in part)
    if got != sorted(expected):
        raise RuntimeError(f"epoch {epoch}: the workers covered {len(got)} chunks, the plan has {len(expected)}")


# ---- prediction -------------------------------------------------------------------------------------------------
def _predict_task(model: LinearModel, dataset: Dataset, shard: int, n_shards: int, keep: list[str],
                  out_dir: Location) -> tuple[str | None, PredictionCounts]:
    """Write the predictions of one shard (a contiguous block of units, in file order) to its own part file;
    return its path (None: the shard has no units) and its ``PredictionCounts``."""
    from .models.predict import iter_prediction_tables, write_tables

    shard_units = make_plan(dataset.units, "none", shard=shard, n_shards=n_shards).units
    if not shard_units:  # more workers than units: no part, rather than an empty file that is not Parquet
        return None, PredictionCounts(0, 0)
    part = out_dir.join(f"part-{shard:05d}.parquet")
    counts = write_tables(iter_prediction_tables(model, dataset.subset(shard_units), keep), part)
    return part.uri, counts


def predict_distributed(model: LinearModel, data: Any, out_dir: str | os.PathLike, *, client: Any,
                        keep: Sequence[str] = (), storage_options: dict | None = None) -> PredictionCounts:
    """Predict every row of ``data`` on the cluster, one Parquet part per worker shard in ``out_dir``
    (``part-00000.parquet``, ...; a prefix in a store such as ``s3://bucket/predictions``, each part uploaded by
    its worker): read in name order, the parts hold the rows in input order. Returns the ``PredictionCounts`` of
    all parts (rows written, rows with a null prediction).

    A local ``out_dir`` is written as a new directory beside it and swapped in whole, so an earlier run's parts
    never mix with these (it must hold nothing but parts: ``check_output_dir(..., replaced=PART_FILES)``); under
    a prefix in a store, the parts an earlier run left beyond this run's are deleted once these are written."""
    from .models.predict import open_for_model

    dataset = open_for_model(model, data, keep, storage_options=storage_options)
    n_shards = worker_count(client)
    where = resolve(out_dir, storage_options)

    def write_parts(location: Location) -> tuple[PredictionCounts, set[str]]:
        futures = [client.submit(_predict_task, model, dataset, k, n_shards, list(keep), location, pure=False)
                   for k in range(n_shards)]
        written = gather_or_cancel(client, futures)
        names = {uri.rstrip("/").rsplit("/", 1)[-1] for uri, _ in written if uri is not None}
        return sum((counts for _, counts in written), PredictionCounts(0, 0)), names

    if where.is_local:
        with replaced_directory(where.path) as scratch:
            return write_parts(resolve(scratch))[0]
    counts, ours = write_parts(where)
    for name in list_names(where):
        if fnmatch.fnmatch(name, PART_FILES) and name not in ours:
            delete(where.join(name))
    return counts
