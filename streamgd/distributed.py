"""Data-parallel training on dask.distributed: every worker streams its own shard of units from the shared path.

- Full batch: each epoch every worker returns the gradient sum of its shard; the client adds them in shard order
  and takes the step, so the result equals single-process full batch up to the order of floating-point sums.
- Mini-batch and SGD: synchronous rounds of local SGD with model averaging (Zinkevich, Weimer, Smola and Li,
  2010). In a round each worker trains on its next ``round_chunks`` chunks from the broadcast parameters and
  optimizer state; the client averages them weighted by rows.

A task is a pure function of (dataset, shard, epoch, round, parameters, settings): the shard's plan comes from
``make_plan(..., shard=k, n_shards=n)``, so when a worker dies dask reruns its task elsewhere with the same
result, and the client checks that every chunk of the round was trained on exactly once. With
``checkpoint_dir`` the client writes a checkpoint every ``checkpoint_every`` rounds and at each epoch's end; a
lost client resumes from it (``resume=True``) with the same final model. ("Chunks" in the checkpoint cursor
count rounds here.)

>>> from streamgd.schedule import make_plan
>>> from streamgd.dataset import Unit
>>> units = [Unit(0, g, 0, 100, 100 * g) for g in range(10)]
>>> shards = [make_plan(units, "row-groups", seed=1, shard=k, n_shards=3).units for k in range(3)]
>>> sorted(u.row_group for s in shards for u in s) == list(range(10))
True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import kernels
from .checkpoint import Checkpoint, CheckpointClock, latest_checkpoint, write_checkpoint
from .config import TrainConfig
from .dataset import Dataset, open_dataset
from .errors import ConfigError, DivergenceError
from .measure import EpochMeter, lifetime_peak_rss_mb
from .models import MODEL_KINDS, LinearModel
from .predict import PredictionCounts
from .reader import ChunkStream
from .schedule import Plan, make_plan
from .standardize import ColumnMoments, Standardizer, chunk_moments, merge_moments
from .targets import to_json_labels

__all__ = ["fit_distributed", "predict_distributed"]

_UNSUPPORTED = ("validation", "validation_data", "early_stopping", "class_weight", "sample_weight", "memory_budget",
                "init")


@dataclass(frozen=True)
class _Job:
    """What every task needs besides its shard: the data, the model and the compiled settings."""

    dataset: Dataset
    n_shards: int
    shuffle: str
    seed: int
    dtype: str
    batch_size: int | str
    n_out: int
    loss_kind: int
    opt_code: int
    hyper: np.ndarray
    encoder: Any
    standardizer: Standardizer | None


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


def _identity(value: Any) -> Any:
    return value


def _stream(job: _Job, plan: Plan, start: int = 0) -> ChunkStream:
    transform = job.standardizer.apply if job.standardizer is not None else None
    return ChunkStream(job.dataset, plan, dtype=job.dtype, target_encoder=job.encoder, start_step=start,
                       transform=transform, defer_conversion=True)


def _shard_moments(dataset: Dataset, shard: int, n_shards: int) -> ColumnMoments:
    """Feature moments of one shard (the statistics pass, in parallel)."""
    d = dataset.n_features
    total = ColumnMoments(np.zeros(d), np.zeros(d), np.zeros(d))
    plan = make_plan(dataset.units, "none", shard=shard, n_shards=n_shards)
    with ChunkStream(dataset, plan, dtype=np.float64, with_target=False) as stream:
        for chunk in stream:
            total = merge_moments(total, chunk_moments(chunk.X))
    return total


def _gradient_task(job: _Job, shard: int, params: np.ndarray) -> tuple[np.ndarray, float, int, list]:
    """Summed gradient, loss and rows of one shard at ``params``, and the chunks it covered."""
    _crash_if_asked()
    plan = make_plan(job.dataset.units, "none", shard=shard, n_shards=job.n_shards)
    grad_sum = np.zeros_like(params)
    loss_sum, rows, covered = 0.0, 0, []
    with _stream(job, plan) as stream:
        for chunk in stream:
            loss, status = kernels.accumulate_chunk(chunk.X, chunk.y, np.empty(0), params, job.n_out,
                                                    job.loss_kind, job.hyper, grad_sum)
            if status != 0:
                raise DivergenceError(f"a non-finite loss or gradient in shard {shard}")
            loss_sum += loss
            rows += chunk.n_rows
            covered.append(_chunk_id(chunk.step))
    return grad_sum, loss_sum, rows, covered


def _round_task(job: _Job, shard: int, epoch: int, first: int, count: int, params: np.ndarray,
                opt_state: np.ndarray, step: int, lrs: np.ndarray) -> tuple:
    """Local SGD on chunks [first, first + count) of this shard's epoch plan, from the broadcast state."""
    _crash_if_asked()
    plan = make_plan(job.dataset.units, job.shuffle, seed=job.seed, epoch=epoch, shard=shard,
                     n_shards=job.n_shards)
    plan = Plan(plan.mode, plan.seed, plan.epoch, plan.shard, plan.n_shards, plan.steps[first:first + count])
    params, opt_state = params.copy(), opt_state.copy()
    loss_sum, rows, batches, covered = 0.0, 0, 0, []
    with _stream(job, plan) as stream:
        for chunk in stream:
            n_batches = -(-chunk.n_rows // job.batch_size)
            loss, _, status = kernels.train_chunk(chunk.X, chunk.y, np.empty(0), params, opt_state, job.hyper,
                                                  lrs[batches:batches + n_batches], job.batch_size, job.n_out,
                                                  job.loss_kind, job.opt_code, step + batches)
            if status != 0:
                raise DivergenceError(f"training diverged in shard {shard}, epoch {epoch}")
            loss_sum += loss
            rows += chunk.n_rows
            batches += n_batches
            covered.append(_chunk_id(chunk.step))
    return params, opt_state, loss_sum, rows, batches, covered


def _chunk_id(step: Any) -> tuple:
    return tuple((u.source, u.row_group, u.offset) for u in step.units)


# ---- the client -------------------------------------------------------------------------------------------------
def fit_distributed(data: Any, target: str | None = None, features: Sequence[str] | None = None, *,
                    client: Any = None, n_workers: int = 2, round_chunks: int = 4, exclude: Sequence[str] = (),
                    **options: Any) -> LinearModel:
    """Train on a dask.distributed cluster: ``client`` (an existing ``dask.distributed.Client``), else a
    ``LocalCluster`` of ``n_workers`` processes on this machine. Options as for ``streamgd.fit``."""
    from dask.distributed import Client, LocalCluster

    cfg = TrainConfig(**options).validate()
    used = [name for name in _UNSUPPORTED if getattr(cfg, name) not in (None, 0, 0.0, False)]
    if used:
        raise ConfigError(f"{used[0]} is not supported with distributed training yet; train in one process")
    if round_chunks < 1:
        raise ConfigError(f"round_chunks must be at least 1, got {round_chunks}")
    if client is None and n_workers < 1:
        raise ConfigError(f"n_workers must be at least 1, got {n_workers}")
    own_cluster = None
    if client is None:
        own_cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        client = Client(own_cluster)
    try:
        return _fit(client, open_dataset(data, target=target, features=features, exclude=exclude), cfg,
                    round_chunks)
    finally:
        if own_cluster is not None:
            client.close()
            own_cluster.close()


def _fit(client: Any, dataset: Dataset, cfg: TrainConfig, round_chunks: int) -> LinearModel:
    from .train import Trainer, TrainState, kernel_hyper

    if dataset.target is None:
        raise ConfigError("training needs a target column (target=...)")
    n_shards = len(client.scheduler_info()["workers"])
    helper = Trainer(cfg)
    helper.dataset = dataset
    if helper._needs_spec(dataset):
        raise ConfigError("categorical, date or timestamp features and --missing drop-rows|impute are not "
                          "supported with distributed training yet; train in one process")
    model_cls = MODEL_KINDS[cfg.model]
    classes, encoder = helper._classes(dataset, model_cls)
    n_out = model_cls.n_outputs(len(classes) if classes else None)
    optimizer = cfg.make_optimizer()
    hyper = kernel_hyper(cfg, optimizer)
    n_params = kernels.n_params(dataset.n_features, n_out)
    settings = {**cfg.to_dict(), "workers": n_shards, "round_chunks": round_chunks}
    checkpoint = latest_checkpoint(cfg.checkpoint_dir) if cfg.resume else None
    if checkpoint is not None:
        _check_resumable(checkpoint, settings, helper._fingerprint(dataset), cfg.checkpoint_dir)
        state = TrainState.from_checkpoint(checkpoint)
        standardizer = Standardizer(*checkpoint.standardizer) if checkpoint.standardizer else None
    else:
        state = TrainState(params=np.zeros(n_params), opt_state=optimizer.init_state(n_params))
        standardizer = _parallel_standardizer(client, dataset, n_shards) if cfg.standardize else None
    job = _Job(dataset, n_shards, cfg.shuffle, cfg.seed, cfg.dtype, cfg.batch_size, n_out, model_cls.loss_kind,
               optimizer.code, hyper, encoder, standardizer)
    # the job (dataset index, settings, standardizer) as the result of a task rather than scattered data: when a
    # worker dies, dask recomputes a lost task result, while scattered data lost with its workers is gone for good
    job_future = client.submit(_identity, job, pure=False)
    schedule = cfg.make_schedule(helper.steps_per_epoch(dataset))

    def write() -> None:
        if cfg.checkpoint_dir:
            write_checkpoint(cfg.checkpoint_dir, Checkpoint(
                serial=state.chunks_done, params=state.params, opt_state=state.opt_state, cursor=state.cursor(),
                history=state.history, settings=settings, fingerprint=helper._fingerprint(dataset),
                standardizer=(standardizer.mean, standardizer.scale) if standardizer else None),
                keep=cfg.keep_checkpoints)

    save = _Saver(cfg, write)

    while state.epoch < cfg.epochs and not state.finished:
        meter = EpochMeter()
        if cfg.full_batch:
            _full_batch_epoch(client, job_future, dataset, state, schedule, optimizer, hyper, n_out, n_shards)
            rounds = 1
        else:
            rounds = _local_sgd_epoch(client, job_future, dataset, cfg, state, n_shards, round_chunks, schedule,
                                      save)
        meter.rows = state.epoch_rows
        state.history.append({"epoch": state.epoch, "loss": state.epoch_loss_sum / max(state.epoch_rows, 1),
                              "rows": state.epoch_rows, "seconds": round(meter.seconds, 4),
                              "rows_per_s": round(meter.rows_per_s, 1), "peak_rss_mb": round(meter.peak_rss_mb, 1),
                              "steps": state.step, "rounds": rounds, "workers": n_shards})
        state.epoch += 1
        state.finished = state.epoch >= cfg.epochs
        state.start_epoch(full_batch=False)
        state.chunks_done += 1  # the serial of the end-of-epoch checkpoint
        save()
    params = optimizer.final_params(state.params, state.opt_state, state.step)
    coef, intercept = kernels.split_params(params, dataset.n_features, n_out)
    transform = None
    if standardizer is not None:
        coef, intercept = standardizer.raw_coefficients(coef, intercept)
        transform = standardizer.to_dict()
    summary = {"feature_transform": transform, "rows": dataset.n_rows, "epochs": cfg.epochs, "steps": state.step,
               "workers": n_shards, "round_chunks": round_chunks, "final_loss": state.history[-1]["loss"],
               "peak_rss_mb": round(lifetime_peak_rss_mb(), 1),
               "resumed_from": checkpoint.serial if checkpoint is not None else None}
    return model_cls(coef.copy(), intercept.copy(), dataset.feature_names, target=dataset.target,
                     classes=to_json_labels(classes) if classes else None,
                     config={**cfg.to_dict(), "distributed": True}, history=state.history,
                     optimizer_state=state.opt_state, summary=summary)


def _parallel_standardizer(client: Any, dataset: Dataset, n_shards: int) -> Standardizer:
    """The statistics pass, one task per shard, merged on the client."""
    parts = client.gather(client.map(_shard_moments, [dataset] * n_shards, range(n_shards), [n_shards] * n_shards,
                                     pure=False))
    total = parts[0]
    for part in parts[1:]:
        total = merge_moments(total, part)
    std = np.sqrt(total.var)
    return Standardizer(total.mean, np.where(std > 0, std, 1.0))


def _check_resumable(checkpoint: Checkpoint, settings: dict, fingerprint: dict, directory: str) -> None:
    for name, value in settings.items():
        if name in ("checkpoint_dir", "checkpoint_every", "keep_checkpoints", "resume", "prefetch_depth"):
            continue
        if checkpoint.settings.get(name) != value:
            raise ConfigError(f"the checkpoint in {directory} was written with {name}="
                              f"{checkpoint.settings.get(name)!r} and this run has {name}={value!r}; resume with "
                              "the same settings and number of workers")
    if checkpoint.fingerprint != fingerprint:
        raise ConfigError(f"the checkpoint in {directory} was written for other data; resume on the same data")


def _full_batch_epoch(client: Any, job_future: Any, dataset: Dataset, state: Any, schedule: Any,
                      optimizer: Any, hyper: np.ndarray, n_out: int, n_shards: int) -> None:
    results = client.gather([client.submit(_gradient_task, job_future, k, state.params, pure=False)
                             for k in range(n_shards)])
    _check_coverage([r[3] for r in results], make_plan(dataset.units, "none"), state.epoch)
    grad_sum = np.sum([r[0] for r in results], axis=0)
    state.epoch_loss_sum, state.epoch_rows = sum(r[1] for r in results), sum(r[2] for r in results)
    lr = float(schedule(np.array([state.step]))[0])
    if kernels.full_batch_step(state.params, grad_sum, float(state.epoch_rows), state.opt_state, hyper, lr,
                               optimizer.code, state.step, n_out * dataset.n_features) != 0:
        raise DivergenceError(f"training diverged at epoch {state.epoch}; lower the learning rate")
    state.step += 1


def _local_sgd_epoch(client: Any, job_future: Any, dataset: Dataset, cfg: TrainConfig, state: Any, n_shards: int,
                     round_chunks: int, schedule: Any, save: _Saver) -> int:
    """The epoch's synchronous local-SGD rounds from the state's cursor (``next_chunk``: the first chunk of the
    next round in every shard's plan); checkpoints after every ``checkpoint_every`` rounds. Returns the number
    of rounds in the epoch."""
    epoch = state.epoch
    plans = [make_plan(dataset.units, cfg.shuffle, seed=cfg.seed, epoch=epoch, shard=k, n_shards=n_shards)
             for k in range(n_shards)]
    longest = max(len(p.steps) for p in plans)
    for first in range(state.next_chunk, longest, round_chunks):
        active = [k for k in range(n_shards) if first < len(plans[k].steps)]
        batches_needed = [sum(-(-s.n_rows // cfg.batch_size) for s in plans[k].steps[first:first + round_chunks])
                          for k in active]
        lrs = np.ascontiguousarray(schedule(state.step + np.arange(max(batches_needed))), dtype=np.float64)
        futures = [client.submit(_round_task, job_future, k, epoch, first, round_chunks, state.params,
                                 state.opt_state, state.step, lrs, pure=False) for k in active]
        results = client.gather(futures)
        expected = [_chunk_id(s) for k in active for s in plans[k].steps[first:first + round_chunks]]
        _check_coverage([r[5] for r in results], expected, epoch)
        weights = np.array([r[3] for r in results], dtype=np.float64)
        weights /= weights.sum()
        params = np.sum([w * r[0] for w, r in zip(weights, results)], axis=0)
        opt_state = np.sum([w * r[1] for w, r in zip(weights, results)], axis=0).reshape(state.opt_state.shape)
        if not (np.isfinite(params).all() and np.isfinite(opt_state).all()):
            raise DivergenceError(f"training diverged at epoch {epoch}; lower the learning rate")
        state.params, state.opt_state = params, opt_state
        state.epoch_loss_sum += sum(r[2] for r in results)
        state.epoch_rows += sum(r[3] for r in results)
        state.step += max(r[4] for r in results)
        state.next_chunk = first + round_chunks
        state.chunks_done += 1
        if save.due(state.chunks_done):
            save()
    return -(-longest // round_chunks)


class _Saver:
    """Writes the client's checkpoint, and knows when the next is due (every N rounds, or after a time)."""

    def __init__(self, cfg: TrainConfig, write: Callable[[], None]):
        self.write, self.clock = write, CheckpointClock(cfg.checkpoint_every)

    def __call__(self) -> None:
        self.write()
        self.clock.written()

    def due(self, rounds_done: int) -> bool:
        return self.clock.due(rounds_done)


def _check_coverage(covered: list[list], expected: Any, epoch: int) -> None:
    """Every chunk of the round (or epoch) trained on exactly once, whatever dask had to rerun."""
    if isinstance(expected, Plan):
        expected = [_chunk_id(s) for s in expected.steps]
    got = sorted(c for part in covered for c in part)
    if got != sorted(expected):
        raise RuntimeError(f"epoch {epoch}: the workers covered {len(got)} chunks, the plan has {len(expected)}")



# ---- prediction -------------------------------------------------------------------------------------------------
def _predict_task(model: LinearModel, dataset: Dataset, shard: int, n_shards: int, keep: list[str], out_dir: str,
                  ) -> tuple[str, PredictionCounts]:
    """Write the predictions of one shard (a contiguous block of units, in file order) to its own part file;
    return its path and its ``PredictionCounts``."""
    from .predict import iter_prediction_tables, write_tables

    shard_units = make_plan(dataset.units, "none", shard=shard, n_shards=n_shards).units
    path = os.path.join(out_dir, f"part-{shard:05d}.parquet")
    counts = write_tables(iter_prediction_tables(model, dataset.subset(shard_units), keep), path)
    return path, counts


def predict_distributed(model: LinearModel, data: Any, out_dir: str | os.PathLike, *, client: Any,
                        keep: Sequence[str] = ()) -> PredictionCounts:
    """Predict every row of ``data`` on the cluster, one Parquet part per worker shard in ``out_dir``
    (``part-00000.parquet``, ...): read in name order, the parts hold the rows in input order. Returns the
    ``PredictionCounts`` of all parts (rows written, rows with a null prediction)."""
    from .predict import open_for_model

    dataset = open_for_model(model, data, keep)
    n_shards = len(client.scheduler_info()["workers"])
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    futures = [client.submit(_predict_task, model, dataset, k, n_shards, list(keep), out_dir, pure=False)
               for k in range(n_shards)]
    return sum((counts for _, counts in client.gather(futures)), PredictionCounts(0, 0))
