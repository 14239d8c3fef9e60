"""Data-parallel training on dask.distributed: every worker streams its own shard of units from the shared path.

- Full batch: each epoch every worker returns the gradient sum of its shard; the client adds them in shard order
  and takes the step, so the result equals single-process full batch up to the order of floating-point sums.
- Mini-batch and SGD: synchronous rounds of local SGD with model averaging (Zinkevich, Weimer, Smola and Li,
  2010). In a round each worker trains on its next ``round_chunks`` chunks from the broadcast parameters and
  optimizer state; the client averages them weighted by rows.

A task is a pure function of (dataset, shard, epoch, round, parameters, settings): the shard's plan comes from
``make_plan(..., shard=k, n_shards=n)``, so when a worker dies dask reruns its task elsewhere with the same
result, and the client checks that every chunk of the round was trained on exactly once.

>>> from streamgd.schedule import make_plan
>>> from streamgd.dataset import Unit
>>> units = [Unit(0, g, 0, 100, 100 * g) for g in range(10)]
>>> shards = [make_plan(units, "row-groups", seed=1, shard=k, n_shards=3).units for k in range(3)]
>>> sorted(u.row_group for s in shards for u in s) == list(range(10))
True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import kernels
from .config import TrainConfig
from .dataset import Dataset, open_dataset
from .errors import ConfigError, DivergenceError
from .measure import EpochMeter, lifetime_peak_rss_mb
from .models import MODEL_KINDS, LinearModel
from .reader import ChunkStream
from .schedule import Plan, make_plan
from .standardize import ColumnMoments, Standardizer, chunk_moments, merge_moments
from .targets import to_json_labels

__all__ = ["fit_distributed", "predict_distributed"]

_UNSUPPORTED = ("validation", "validation_data", "early_stopping", "checkpoint_dir", "class_weight", "sample_weight",
                "memory_budget")


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
    """Test hook for fault tolerance: ``STREAMGD_TEST_CRASH_ONCE=path`` kills the first task that finds no file
    at ``path`` (after creating it), as a worker dying mid-round would."""
    marker = os.environ.get("STREAMGD_TEST_CRASH_ONCE")
    if marker and not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(1)


def _stream(job: _Job, plan: Plan, start: int = 0) -> ChunkStream:
    transform = job.standardizer.apply if job.standardizer is not None else None
    return ChunkStream(job.dataset, plan, dtype=job.dtype, target_encoder=job.encoder, start_step=start,
                       transform=transform)


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
                    client: Any = None, n_workers: int = 2, round_chunks: int = 4, **options: Any) -> LinearModel:
    """Train on a dask.distributed cluster: ``client`` (an existing ``dask.distributed.Client``), else a
    ``LocalCluster`` of ``n_workers`` processes on this machine. Options as for ``streamgd.fit``."""
    from dask.distributed import Client, LocalCluster

    cfg = TrainConfig(**options).validate()
    used = [name for name in _UNSUPPORTED if getattr(cfg, name) not in (None, 0, 0.0, False)]
    if used:
        raise ConfigError(f"{used[0]} is not supported with distributed training yet; train in one process")
    if round_chunks < 1:
        raise ConfigError(f"round_chunks must be at least 1, got {round_chunks}")
    own_cluster = None
    if client is None:
        own_cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        client = Client(own_cluster)
    try:
        return _fit(client, open_dataset(data, target=target, features=features), cfg, round_chunks)
    finally:
        if own_cluster is not None:
            client.close()
            own_cluster.close()


def _fit(client: Any, dataset: Dataset, cfg: TrainConfig, round_chunks: int) -> LinearModel:
    from .train import Trainer

    if dataset.target is None:
        raise ConfigError("training needs a target column (target=...)")
    n_shards = len(client.scheduler_info()["workers"])
    helper = Trainer(cfg)
    model_cls = MODEL_KINDS[cfg.model]
    classes, encoder = helper._classes(dataset, model_cls)
    n_out = model_cls.n_outputs(len(classes) if classes else None)
    optimizer = cfg.make_optimizer()
    hyper = helper._hyper(optimizer)
    n_params = kernels.n_params(dataset.n_features, n_out)
    params, opt_state = np.zeros(n_params), optimizer.init_state(n_params)
    standardizer = None
    if cfg.standardize:
        parts = client.gather(client.map(_shard_moments, [dataset] * n_shards, range(n_shards),
                                         [n_shards] * n_shards, pure=False))
        total = parts[0]
        for part in parts[1:]:
            total = merge_moments(total, part)
        std = np.sqrt(total.var)
        standardizer = Standardizer(total.mean, np.where(std > 0, std, 1.0))
    job = _Job(dataset, n_shards, cfg.shuffle, cfg.seed, cfg.dtype, cfg.batch_size, n_out, model_cls.loss_kind,
               optimizer.code, hyper, encoder, standardizer)
    [job_future] = client.scatter([job], broadcast=True)
    schedule = cfg.make_schedule(helper._steps_per_epoch(dataset))
    history: list[dict] = []
    step = 0
    for epoch in range(cfg.epochs):
        meter = EpochMeter()
        if cfg.full_batch:
            results = client.gather([client.submit(_gradient_task, job_future, k, params, pure=False)
                                     for k in range(n_shards)])
            _check_coverage([r[3] for r in results], make_plan(dataset.units, "none"), epoch)
            grad_sum = np.sum([r[0] for r in results], axis=0)
            loss_sum, rows = sum(r[1] for r in results), sum(r[2] for r in results)
            lr = float(schedule(np.array([step]))[0])
            if kernels.full_batch_step(params, grad_sum, float(rows), opt_state, hyper, lr, optimizer.code, step,
                                       n_out * dataset.n_features) != 0:
                raise DivergenceError(f"training diverged at epoch {epoch}; lower the learning rate")
            step += 1
            rounds = 1
        else:
            params, opt_state, step, loss_sum, rows, rounds = _local_sgd_epoch(
                client, job_future, dataset, cfg, epoch, n_shards, round_chunks, params, opt_state, step, schedule)
        meter.rows = rows
        history.append({"epoch": epoch, "loss": loss_sum / max(rows, 1), "rows": rows,
                        "seconds": round(meter.seconds, 4), "rows_per_s": round(meter.rows_per_s, 1),
                        "peak_rss_mb": round(meter.peak_rss_mb, 1), "steps": step, "rounds": rounds,
                        "workers": n_shards})
    params = optimizer.final_params(params, opt_state, step)
    coef, intercept = kernels.split_params(params, dataset.n_features, n_out)
    transform = None
    if standardizer is not None:
        coef, intercept = standardizer.raw_coefficients(coef, intercept)
        transform = standardizer.to_dict()
    summary = {"feature_transform": transform, "rows": dataset.n_rows, "epochs": cfg.epochs, "steps": step,
               "workers": n_shards, "round_chunks": round_chunks, "final_loss": history[-1]["loss"],
               "peak_rss_mb": round(lifetime_peak_rss_mb(), 1)}
    return model_cls(coef.copy(), intercept.copy(), dataset.feature_names, target=dataset.target,
                     classes=to_json_labels(classes) if classes else None,
                     config={**cfg.to_dict(), "distributed": True}, history=history, optimizer_state=opt_state,
                     summary=summary)


def _local_sgd_epoch(client: Any, job_future: Any, dataset: Dataset, cfg: TrainConfig, epoch: int, n_shards: int,
                     round_chunks: int, params: np.ndarray, opt_state: np.ndarray, step: int, schedule: Any):
    """One epoch of synchronous local-SGD rounds; returns the averaged state and the epoch's sums."""
    plans = [make_plan(dataset.units, cfg.shuffle, seed=cfg.seed, epoch=epoch, shard=k, n_shards=n_shards)
             for k in range(n_shards)]
    longest = max(len(p.steps) for p in plans)
    loss_sum, rows, rounds = 0.0, 0, 0
    for first in range(0, longest, round_chunks):
        active = [k for k in range(n_shards) if first < len(plans[k].steps)]
        batches_needed = [sum(-(-s.n_rows // cfg.batch_size) for s in plans[k].steps[first:first + round_chunks])
                          for k in active]
        lrs = np.ascontiguousarray(schedule(step + np.arange(max(batches_needed))), dtype=np.float64)
        futures = [client.submit(_round_task, job_future, k, epoch, first, round_chunks, params, opt_state, step,
                                 lrs, pure=False) for k in active]
        results = client.gather(futures)
        expected = [_chunk_id(s) for k in active for s in plans[k].steps[first:first + round_chunks]]
        _check_coverage([r[5] for r in results], expected, epoch)
        weights = np.array([r[3] for r in results], dtype=np.float64)
        weights /= weights.sum()
        params = np.sum([w * r[0] for w, r in zip(weights, results)], axis=0)
        opt_state = np.sum([w * r[1] for w, r in zip(weights, results)], axis=0)
        if not (np.isfinite(params).all() and np.isfinite(opt_state).all()):
            raise DivergenceError(f"training diverged at epoch {epoch}; lower the learning rate")
        loss_sum += sum(r[2] for r in results)
        rows += sum(r[3] for r in results)
        step += max(r[4] for r in results)
        rounds += 1
    return params, opt_state, step, loss_sum, rows, rounds


def _check_coverage(covered: list[list], expected: Any, epoch: int) -> None:
    """Every chunk of the round (or epoch) trained on exactly once, whatever dask had to rerun."""
    if isinstance(expected, Plan):
        expected = [_chunk_id(s) for s in expected.steps]
    got = sorted(c for part in covered for c in part)
    if got != sorted(expected):
        raise RuntimeError(f"epoch {epoch}: the workers covered {len(got)} chunks, the plan has {len(expected)}")



# ---- prediction -------------------------------------------------------------------------------------------------
def _predict_task(model: LinearModel, dataset: Dataset, shard: int, n_shards: int, keep: list[str], out_dir: str,
                  ) -> tuple[str, int]:
    """Write the predictions of one shard (a contiguous block of units, in file order) to its own part file."""
    from .predict import iter_prediction_tables, write_tables

    shard_units = make_plan(dataset.units, "none", shard=shard, n_shards=n_shards).units
    path = os.path.join(out_dir, f"part-{shard:05d}.parquet")
    rows = write_tables(iter_prediction_tables(model, dataset.subset(shard_units), keep), path)
    return path, rows


def predict_distributed(model: LinearModel, data: Any, out_dir: str | os.PathLike, *, client: Any,
                        keep: Sequence[str] = ()) -> int:
    """Predict every row of ``data`` on the cluster, one Parquet part per worker shard in ``out_dir``
    (``part-00000.parquet``, ...): read in name order, the parts hold the rows in input order."""
    from .predict import open_for_model

    dataset = open_for_model(model, data, keep)
    n_shards = len(client.scheduler_info()["workers"])
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    futures = [client.submit(_predict_task, model, dataset, k, n_shards, list(keep), out_dir, pure=False)
               for k in range(n_shards)]
    return sum(rows for _, rows in client.gather(futures))
