"""The trainer: epochs over a plan, one compiled kernel call per chunk, and a history of every epoch.

Full batch, SGD and mini-batch are one code path that differs in batch size only: ``batch_size=1`` is SGD,
``batch_size=n`` mini-batch, and ``batch_size="full"`` sums the gradient over the whole stream and steps once
per epoch (gradient descent on data that does not fit in memory). Around that loop: held-out validation, early
stopping, checkpoints with exact resume, a divergence guard and Ctrl-C handling.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from . import kernels
from .checkpoint import Checkpoint, CheckpointClock, latest_checkpoint, write_checkpoint
from .config import TrainConfig
from .dataset import Dataset, is_numeric_type, is_temporal_type, open_dataset
from .features import FeatureSpec
from .errors import ConfigError, DataError, DivergenceError, TrainingInterrupted
from .measure import EpochMeter, lifetime_peak_rss_mb
from .models import MODEL_KINDS, LinearModel
from .optim import Optimizer
from .reader import Chunk, ChunkStream, default_target_encoder, parse_memory_budget, rows_per_unit_for_budget
from .schedule import ShuffleQualityMeter, make_plan, parse_shuffle
from .standardize import Standardizer
from .stats import DatasetStats, compute_stats
from .targets import LabelEncoder, class_counts, scan_classes, to_json_labels
from .validation import constant_loss, holdout_units, mean_loss
from .warmstart import check_data, check_settings, describe_init, load_init, starting_point, stored_standardizer

__all__ = ["ChunkProgress", "TrainConfig", "TrainState", "Trainer", "fit"]


@dataclass
class ChunkProgress:
    """What the trainer reports after each chunk (for progress bars)."""

    epoch: int
    epochs: int
    rows_done: int
    rows_total: int
    rows_per_s: float
    loss: float
    rss_mb: float
    validation_loss: float | None = None  # of the previous epoch, when there is validation data


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
class _Run:
    """What stays fixed during a run: the data split, the model's shape and the compiled settings."""

    train: Dataset
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


class Trainer:
    """Train a linear model on a dataset streamed from disk.

    >>> import tempfile, os, numpy as np, pyarrow as pa, pyarrow.parquet as pq
    >>> rng = np.random.default_rng(0); X = rng.standard_normal((2000, 2)); y = X @ [1.5, -2.0] + 0.5
    >>> path = os.path.join(tempfile.mkdtemp(), "d.parquet")
    >>> pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "y": y}), path, row_group_size=500)
    >>> model = Trainer(model="linear", batch_size=32, epochs=5, lr=0.05, alpha=0.0).fit(path, target="y")
    >>> np.round(model.coef_, 2).tolist(), np.round(model.intercept_, 2).tolist()
    ([[1.5, -2.0]], [0.5])
    """

    def __init__(self, config: TrainConfig | None = None, on_chunk: Callable[[ChunkProgress], None] | None = None,
                 **options: Any):
        self.config = (config or TrainConfig(**options)).validate()
        self.on_chunk = on_chunk
        self.kernel_calls = 0
        self.dataset: Dataset | None = None
        self.standardizer: Standardizer | None = None
        self.resumed_from: int | None = None  # the serial of the checkpoint this run continued from
        self.run: _Run | None = None  # the last fit's settings and its final state (to continue training from)
        self.init: LinearModel | None = None  # the model this run continues (config ``init``)
        self.state: TrainState | None = None
        self._clock = CheckpointClock(self.config.checkpoint_every)  # restarted by each fit
        self._interrupted = False

    # ---- set-up ------------------------------------------------------------------------------------------------
    def open(self, data: Any, target: str | None = None, features: Sequence[str] | None = None,
             exclude: Sequence[str] = ()) -> Dataset:
        """Open the data with units sized to the memory budget (``exclude``: columns left out of the features)."""
        cfg = self.config
        categorical = cfg.categorical or ()
        if not categorical and self.init is not None and self.init.spec is not None:
            categorical = [column.name for column in self.init.spec.categorical]  # as the model was trained
        probe = open_dataset(data, target=target, features=features, categorical=categorical, exclude=exclude)
        weight = cfg.sample_weight
        if weight is not None:
            if weight not in probe.schema.names:
                raise DataError(f"the sample weight column {weight!r} is not in the data (columns: "
                                f"{', '.join(probe.schema.names)})")
            if not is_numeric_type(probe.schema.field(weight).type):
                raise DataError(f"the sample weight column {weight!r} has type {probe.schema.field(weight).type}; "
                                "weights must be numbers")
            if weight in probe.feature_names:
                if features is not None:
                    raise ConfigError(f"the column {weight!r} is named both as a feature and as the sample weight")
                features = [name for name in probe.feature_names if name != weight]
        max_rows = None
        budget = parse_memory_budget(cfg.memory_budget)
        if budget is not None:
            itemsize = np.dtype(cfg.dtype).itemsize
            max_rows = rows_per_unit_for_budget(budget, probe.n_features, itemsize, cfg.prefetch_depth,
                                                parse_shuffle(cfg.shuffle).units_per_step)
        if features is None and max_rows is None:
            return probe
        return open_dataset(data, target=target, features=features, max_unit_rows=max_rows, categorical=categorical,
                            exclude=exclude)

    def fit(self, data: Any, target: str | None = None, features: Sequence[str] | None = None,
            exclude: Sequence[str] = ()) -> LinearModel:
        """Train on ``data`` (anything ``open_dataset`` accepts) and return the model; ``exclude`` names columns
        (ids, partition keys) left out of the default features."""
        cfg = self.config
        self.init = load_init(cfg.init) if cfg.init is not None else None
        if self.init is not None and features is None:
            features = self.init.input_columns  # the model's inputs, not every numeric column
        dataset = data if isinstance(data, Dataset) else self.open(data, target, features, exclude)
        if dataset.target is None:
            raise ConfigError("training needs a target column (target=...)")
        self.dataset = dataset
        checkpoint = latest_checkpoint(cfg.checkpoint_dir) if cfg.resume else None
        run, state = self._set_up(dataset, checkpoint)
        self.run, self.state = run, state
        self._clock = CheckpointClock(cfg.checkpoint_every, now=time.monotonic)
        with self._stop_on_ctrl_c():
            while not state.finished and state.epoch < state.first_epoch + cfg.epochs:
                record = self._run_epoch(run, state)
                stop = self._update_best(run, state, record)
                state.history.append(record)
                state.epoch += 1
                state.finished = stop or state.epoch >= state.first_epoch + cfg.epochs
                state.start_epoch(cfg.full_batch)
                self._write_checkpoint(run, state)
        return self._model(run, state)

    # ---- set-up ------------------------------------------------------------------------------------------------
    def _set_up(self, dataset: Dataset, checkpoint: Checkpoint | None) -> tuple[_Run, TrainState]:
        cfg = self.config
        train, validation = self._split(dataset)
        model_cls = MODEL_KINDS[cfg.model]
        classes, encoder = self._classes(dataset, model_cls)
        if model_cls.needs_nonnegative_target:
            encoder = _nonnegative(encoder, dataset.target, model_cls.kind)
        class_weights = self._class_weights(train, classes, encoder)
        n_out = model_cls.n_outputs(len(classes) if classes else None)
        if self.init is not None:
            return self._continue(train, validation, model_cls, classes, encoder, n_out, class_weights)
        stats = self._statistics(train)
        spec = self._feature_spec(train, stats)
        feature_names = spec.output_names if spec is not None else list(dataset.feature_names)
        optimizer, params, opt_state, hyper = initial_state(cfg, len(feature_names), n_out)
        if checkpoint is not None:
            self._check_resumable(checkpoint, dataset)
            state = TrainState.from_checkpoint(checkpoint)
            self.resumed_from = checkpoint.serial
            standardizer = Standardizer(*checkpoint.standardizer) if checkpoint.standardizer else None
        else:
            state = TrainState(params=params, opt_state=opt_state)
            state.start_epoch(cfg.full_batch)
            standardizer = self._standardizer(stats, spec) if cfg.standardize else None
        self.standardizer = standardizer
        schedule = cfg.make_schedule(self.steps_per_epoch(train))
        return _Run(train, validation, model_cls, classes, encoder, n_out, optimizer, hyper, schedule,
                    standardizer, class_weights, spec, feature_names, stats), state

    def _continue(self, train: Dataset, validation: Dataset | None, model_cls: type[LinearModel], classes: list | None,
                  encoder: Any, n_out: int, class_weights: np.ndarray | None) -> tuple[_Run, TrainState]:
        """Set up a run that continues ``self.init``: its spec, its transform, its parameters, optimizer state,
        step and epoch (see warmstart.py); no statistics pass."""
        cfg, model = self.config, self.init
        name = describe_init(cfg.init)
        check_settings(model, cfg.to_dict(), name)
        spec = model.spec
        check_data(model, name, to_json_labels(classes) if classes else None, list(train.feature_names),
                   ordered=spec is None)
        optimizer, _, fresh_state, hyper = initial_state(cfg, model.n_features, n_out)
        standardizer = stored_standardizer(model)
        params, opt_state, step, epoch = starting_point(model, name, standardizer, fresh_state)
        state = TrainState(params=params, opt_state=opt_state, step=step, epoch=epoch, first_epoch=epoch,
                           history=list(model.history))
        state.start_epoch(cfg.full_batch)
        self.standardizer = standardizer
        schedule = cfg.make_schedule(self.steps_per_epoch(train))
        return _Run(train, validation, model_cls, classes, encoder, n_out, optimizer, hyper, schedule, standardizer,
                    class_weights, spec, list(model.feature_names), None), state

    def _statistics(self, train: Dataset) -> DatasetStats | None:
        """The statistics pass over the input columns, when standardization or a FeatureSpec needs it."""
        cfg = self.config
        if not (cfg.standardize or self._needs_spec(train)):
            return None
        # each concurrent pyarrow reader keeps ~80 MB of buffers of its own (measured, 8 MB row groups), which the
        # budget does not count: under a memory budget the pass reads with one thread
        workers = 1 if cfg.memory_budget is not None else 2
        return compute_stats(train, train.feature_names, train.categorical, cfg.max_categories, workers=workers)

    def _needs_spec(self, dataset: Dataset) -> bool:
        """Whether the inputs need more than reading numeric columns as they are."""
        temporal = any(is_temporal_type(dataset.schema.field(name).type) for name in dataset.feature_names)
        return bool(dataset.categorical) or self.config.missing != "error" or temporal

    def _feature_spec(self, train: Dataset, stats: DatasetStats | None) -> FeatureSpec | None:
        if not self._needs_spec(train):
            return None
        cfg = self.config
        numeric = [name for name in train.feature_names if name not in train.categorical]
        return FeatureSpec.fit(numeric, list(train.categorical), stats, missing=cfg.missing, encoding=cfg.encoding,
                               hash_bits=cfg.hash_bits, max_categories=cfg.max_categories)

    @staticmethod
    def _standardizer(stats: DatasetStats, spec: FeatureSpec | None) -> Standardizer:
        """Mean and scale of every feature: the numeric columns' from the statistics pass; indicators and
        encoded categories are left as they are."""
        if spec is None:
            columns = list(stats.columns.values())
            return Standardizer.from_stats(np.array([c.mean for c in columns]), np.array([c.std for c in columns]))
        means, stds = np.zeros(spec.n_outputs), np.ones(spec.n_outputs)
        for j, numeric in enumerate(spec.numeric):
            means[j], stds[j] = stats.columns[numeric.name].mean, stats.columns[numeric.name].std
        return Standardizer.from_stats(means, stds)

    def _split(self, dataset: Dataset) -> tuple[Dataset, Dataset | None]:
        cfg = self.config
        if cfg.validation:
            train_units, held_units = holdout_units(dataset.units, cfg.validation, cfg.seed)
            return dataset.subset(train_units), dataset.subset(held_units)
        if cfg.validation_data is not None:
            held = open_dataset(cfg.validation_data, target=dataset.target, features=dataset.feature_names)
            return dataset, held
        return dataset, None

    def _fingerprint(self, dataset: Dataset) -> dict:
        return {"rows": dataset.n_rows, "units": len(dataset.units), "features": dataset.feature_names,
                "target": dataset.target}

    def _check_resumable(self, checkpoint: Checkpoint, dataset: Dataset) -> None:
        if checkpoint.settings.get("init") is not None:
            raise ConfigError(f"the checkpoint in {self.config.checkpoint_dir} belongs to a run that continued "
                              f"{checkpoint.settings['init']} (init); resuming such a run is not supported: run it "
                              "again with init")
        wanted, found = self.config.resume_key(), checkpoint.settings
        for name in wanted:
            if wanted[name] != found.get(name):
                raise ConfigError(f"the checkpoint in {self.config.checkpoint_dir} was written with {name}="
                                  f"{found.get(name)!r} and this run has {name}={wanted[name]!r}; resume with the "
                                  "same settings, or train afresh in another checkpoint directory")
        if checkpoint.fingerprint != self._fingerprint(dataset):
            raise ConfigError(f"the checkpoint in {self.config.checkpoint_dir} was written for other data "
                              f"({checkpoint.fingerprint}); resume on the same data")

    def _classes(self, dataset: Dataset, model_cls: type[LinearModel]):
        if not model_cls.is_classifier:
            return None, default_target_encoder
        classes = scan_classes(dataset)
        if len(classes) < 2:
            raise DataError(f"the target column {dataset.target!r} has a single class {classes}; "
                            "a classifier needs at least two")
        if model_cls.n_outputs(len(classes)) == 1 and len(classes) != 2:
            if pa.types.is_floating(dataset.schema.field(dataset.target).type):
                raise DataError(f"the target column {dataset.target!r} is a float column with {len(classes)} "
                                f"distinct values and model {model_cls.kind!r} is a binary classifier: for a "
                                "continuous target use --model linear (or huber, poisson); for class labels "
                                "--model softmax")
            raise DataError(f"the target column {dataset.target!r} has {len(classes)} classes; "
                            f"model {model_cls.kind!r} is binary (use --model softmax)")
        return classes, LabelEncoder(classes)

    def _class_weights(self, dataset: Dataset, classes: list | None, encoder: Any) -> np.ndarray | None:
        """Weight per class index, from ``class_weight``: 'balanced' is n / (K * rows of the class)."""
        wanted = self.config.class_weight
        if wanted is None:
            return None
        if wanted == "balanced":
            counts = class_counts(dataset, encoder)
            return counts.sum() / (len(classes) * np.maximum(counts, 1))
        unknown = [label for label in wanted if label not in classes]
        if unknown:
            raise ConfigError(f"class_weight names {unknown[0]!r}, which is not a class of {dataset.target!r} "
                              f"(classes: {classes})")
        return np.array([float(wanted.get(label, 1.0)) for label in classes])

    def _chunk_weights(self, run: _Run, chunk: Chunk) -> np.ndarray:
        """Per-row weights of a chunk in its row order (sample weight column x class weight), or empty."""
        weights = None
        name = self.config.sample_weight
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
                                f"{self.dataset.describe_row(unit, row_in_unit)}; weights must be numbers >= 0")
        if run.class_weights is not None:
            per_row = run.class_weights[np.nan_to_num(chunk.y).astype(np.int64)]
            weights = per_row if weights is None else weights * per_row
        return np.empty(0) if weights is None else np.ascontiguousarray(weights)

    def steps_per_epoch(self, dataset: Dataset) -> int:
        """Optimizer steps in one epoch (the first epoch's plan; other epochs differ by a few at most)."""
        cfg = self.config
        if cfg.full_batch:
            return 1
        plan = make_plan(dataset.units, cfg.shuffle, seed=cfg.seed, epoch=0)
        return sum(-(-sum(unit.n_rows for unit in step.units) // cfg.batch_size) for step in plan.steps)

    # ---- one epoch ---------------------------------------------------------------------------------------------
    def _run_epoch(self, run: _Run, state: TrainState) -> dict:
        """Train from the state's cursor to the end of its epoch; return the epoch's record."""
        cfg = self.config
        plan = make_plan(run.train.units, cfg.shuffle, seed=cfg.seed, epoch=state.epoch)
        last_epoch = state.first_epoch + cfg.epochs
        quality = ShuffleQualityMeter()
        meter = EpochMeter()
        stream = ChunkStream(run.train, plan, dtype=cfg.dtype, prefetch_depth=cfg.prefetch_depth,
                             target_encoder=run.encoder, quality=quality, start_step=state.next_chunk,
                             extra_columns=[cfg.sample_weight] if cfg.sample_weight else None, features=run.spec,
                             transform=run.standardizer.apply if run.standardizer is not None else None,
                             defer_conversion=cfg.memory_budget is None)  # a budget counts one copy per chunk
        with stream:
            for chunk in stream:
                weights = self._chunk_weights(run, chunk)
                if cfg.full_batch:
                    chunk_loss, status = kernels.accumulate_chunk(chunk.X, chunk.y, weights, state.params,
                                                                  run.n_out, run.model_cls.loss_kind, run.hyper,
                                                                  state.grad_sum)
                    self.kernel_calls += 1
                    self._check(status, chunk, state, run.feature_names)
                else:
                    n_batches = -(-chunk.n_rows // cfg.batch_size)
                    lrs = np.ascontiguousarray(run.schedule(state.step + np.arange(n_batches)), dtype=np.float64)
                    chunk_loss, _, status = kernels.train_chunk(
                        chunk.X, chunk.y, weights, state.params, state.opt_state, run.hyper, lrs,
                        cfg.batch_size, run.n_out, run.model_cls.loss_kind, run.optimizer.code, state.step)
                    self.kernel_calls += 1
                    self._check(status, chunk, state, run.feature_names)
                    state.step += n_batches
                state.epoch_loss_sum += chunk_loss
                state.epoch_rows += chunk.n_rows
                state.epoch_rows_skipped += _rows_left_out(chunk)
                state.epoch_y_sum += float(chunk.y.sum())
                state.epoch_y_sq_sum += float(np.einsum("i,i->", chunk.y, chunk.y))  # no BLAS: see quality.py
                state.next_chunk += 1
                state.chunks_done += 1
                rss = meter.add(chunk.n_rows)
                if self._interrupted or self._clock.due(state.chunks_done):
                    self._write_checkpoint(run, state)
                if self._interrupted:
                    where = ("; resume with the same command and --resume" if cfg.checkpoint_dir
                             and cfg.init is None else "")
                    raise TrainingInterrupted(f"interrupted at epoch {state.epoch + 1}/{last_epoch}, "
                                              f"chunk {state.next_chunk} of {len(plan.steps)}{where}")
                if self.on_chunk is not None:
                    previous = state.history[-1].get("validation_loss") if state.history else None
                    self.on_chunk(ChunkProgress(state.epoch, last_epoch, state.epoch_rows, plan.n_rows,
                                                meter.rows_per_s, state.epoch_loss_sum / state.epoch_rows, rss,
                                                previous))
                del chunk, weights  # before the next chunk is built, so its arrays can take this one's memory
        if cfg.full_batch:
            lr = float(run.schedule(np.array([state.step]))[0])
            status = kernels.full_batch_step(state.params, state.grad_sum, float(state.epoch_rows),
                                             state.opt_state, run.hyper, lr, run.optimizer.code, state.step,
                                             run.n_out * len(run.feature_names))
            if status != 0:
                raise DivergenceError(self._divergence_message(state))
            state.step += 1
        return self._epoch_record(run, state, meter, quality)

    def _epoch_record(self, run: _Run, state: TrainState, meter: EpochMeter, quality: ShuffleQualityMeter) -> dict:
        seconds = meter.seconds
        record = {"epoch": state.epoch, "loss": state.epoch_loss_sum / max(state.epoch_rows, 1),
                  "baseline_loss": constant_loss(run.model_cls.loss_kind, state.epoch_rows, state.epoch_y_sum,
                                                 state.epoch_y_sq_sum),
                  "rows": state.epoch_rows, "rows_skipped": state.epoch_rows_skipped, "seconds": round(seconds, 4),
                  "rows_per_s": round(meter.rows / max(seconds, 1e-9), 1),
                  "peak_rss_mb": round(meter.peak_rss_mb, 1), "steps": state.step,
                  "shuffle_quality": quality.result().as_dict()}
        if run.validation is not None:
            params = run.optimizer.final_params(state.params, state.opt_state, state.step)
            record["validation_loss"] = mean_loss(run.validation, params, run.n_out, run.model_cls.loss_kind,
                                                  run.hyper, self.config.dtype, run.encoder,
                                                  run.standardizer.apply if run.standardizer else None, run.spec)
        return record

    # ---- early stopping, checkpoints, the model ----------------------------------------------------------------
    def _update_best(self, run: _Run, state: TrainState, record: dict) -> bool:
        """Track the best epoch of the monitored loss; True when early stopping's patience has run out."""
        cfg = self.config
        if not cfg.early_stopping:
            return False
        monitored = record.get("validation_loss", record["loss"])
        best = state.best
        if not best or monitored < best["loss"] - cfg.tol:
            params = run.optimizer.final_params(state.params, state.opt_state, state.step)
            state.best = {"params": params.copy(), "loss": monitored, "epoch": state.epoch, "waited": 0}
            return False
        best["waited"] += 1
        record["epochs_without_improvement"] = best["waited"]
        return best["waited"] >= cfg.early_stopping

    def _write_checkpoint(self, run: _Run, state: TrainState) -> None:
        cfg = self.config
        self._clock.written()
        if not cfg.checkpoint_dir:
            return
        standardizer = (run.standardizer.mean, run.standardizer.scale) if run.standardizer else None
        write_checkpoint(cfg.checkpoint_dir, Checkpoint(
            serial=state.chunks_done + state.epoch, params=state.params, opt_state=state.opt_state,
            cursor=state.cursor(), history=state.history, settings=cfg.to_dict(),
            fingerprint=self._fingerprint(self.dataset), grad_sum=state.grad_sum, standardizer=standardizer,
            best=state.best), keep=cfg.keep_checkpoints)

    def _model(self, run: _Run, state: TrainState) -> LinearModel:
        cfg = self.config
        dataset = self.dataset
        if state.best:  # early stopping keeps the best epoch's parameters
            params = state.best["params"]
        else:
            params = run.optimizer.final_params(state.params, state.opt_state, state.step)
        coef, intercept = kernels.split_params(params, len(run.feature_names), run.n_out)
        transform = None
        if run.standardizer is not None:
            # the model predicts on raw inputs: fold the standardization into the coefficients
            coef, intercept = run.standardizer.raw_coefficients(coef, intercept)
            transform = run.standardizer.to_dict()
        state_rows = list(run.optimizer.state_names) + (["l1_applied"] if run.hyper[kernels.H_L1_ROW] else [])
        summary = {"feature_transform": transform, "rows": run.train.n_rows, "epochs": len(state.history),
                   "steps": state.step, "optimizer_state_rows": state_rows,
                   "final_loss": state.history[-1]["loss"] if state.history else None,
                   "peak_rss_mb": round(lifetime_peak_rss_mb(), 1), "resumed_from": self.resumed_from,
                   "continued_from_epoch": state.first_epoch if self.init is not None else None}
        if run.validation is not None:
            summary["validation_rows"] = run.validation.n_rows
        if state.best:
            summary["best_epoch"] = state.best["epoch"]
            summary["best_loss"] = state.best["loss"]
        if run.stats is not None:
            summary["statistics"] = run.stats.as_dict()
        return run.model_cls(coef.copy(), intercept.copy(), run.feature_names, target=dataset.target,
                             classes=to_json_labels(run.classes) if run.classes else None, config=cfg.to_dict(),
                             history=state.history, optimizer_state=state.opt_state, summary=summary,
                             feature_spec=run.spec.to_dict() if run.spec is not None else None)

    @contextlib.contextmanager
    def _stop_on_ctrl_c(self) -> Iterator[None]:
        """Turn Ctrl-C (SIGINT) into a stop after the current chunk (with a checkpoint if asked)."""
        self._interrupted = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: Any) -> None:
            self._interrupted = True

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _check(self, status: int, chunk: Chunk, state: TrainState, names: list[str]) -> None:
        if status == 0:
            return
        row = -int(status) - 1
        unit, row_in_unit = chunk.locate(row)
        where = self.dataset.describe_row(unit, row_in_unit)
        values = chunk.X[row]
        bad = [j for j, v in enumerate(values) if not np.isfinite(v)]
        if bad:
            raise DataError(f"the feature column {names[bad[0]]!r} holds {values[bad[0]]} at {where}; clean the "
                            "data, or train with --missing drop-rows or --missing impute")
        if chunk.y is not None and not np.isfinite(chunk.y[row]):
            raise DataError(f"the target column {self.dataset.target!r} is missing (null or NaN) at {where}; "
                            "--missing drop-rows or --missing impute skip unlabelled rows")
        raise DivergenceError(self._divergence_message(state))

    def _divergence_message(self, state: TrainState) -> str:
        return (f"training diverged at epoch {state.epoch + 1}, step {state.step}: the loss or a parameter became "
                f"NaN or inf; lower the learning rate (now {self.config.learning_rate}) or standardize the features")


def kernel_hyper(cfg: TrainConfig, optimizer: Optimizer) -> np.ndarray:
    """The kernels' hyperparameter vector: penalty, clipping, Huber's epsilon and the optimizer's own."""
    hyper = np.zeros(kernels.N_HYPER)
    hyper[kernels.H_ALPHA] = cfg.effective_alpha
    hyper[kernels.H_L1_RATIO] = cfg.effective_l1_ratio
    hyper[kernels.H_CLIP_NORM] = cfg.clip_norm
    hyper[kernels.H_HUBER_EPS] = cfg.epsilon
    optimizer.write_hyper(hyper)
    return hyper


def initial_state(cfg: TrainConfig, n_features: int, n_out: int
                  ) -> tuple[Optimizer, np.ndarray, np.ndarray, np.ndarray]:
    """The optimizer, zero parameters, its initial state and the kernels' hyperparameters for a fresh run."""
    optimizer = cfg.make_optimizer()
    n_params = kernels.n_params(n_features, n_out)
    opt_state = optimizer.init_state(n_params)
    hyper = kernel_hyper(cfg, optimizer)
    if hyper[kernels.H_ALPHA] * hyper[kernels.H_L1_RATIO] > 0 and not cfg.full_batch:
        # stochastic steps take the L1 penalty cumulatively (exact zeros despite gradient noise); its record
        # is one more row of the optimizer state. Full batch uses the plain proximal step (ISTA).
        opt_state = np.vstack([opt_state, np.zeros((1, n_params))])
        hyper[kernels.H_L1_ROW] = opt_state.shape[0]
    return optimizer, np.zeros(n_params), opt_state, hyper


def _rows_left_out(chunk: Chunk) -> int:
    """Rows of the chunk's units the reader did not deliver (a missing target, or a missing feature under
    drop-rows)."""
    return sum(unit.n_rows for unit in chunk.step.units) - chunk.n_rows


def _nonnegative(encoder: Callable, target: str, kind: str) -> Callable:
    """Wrap a target encoder to refuse negative values (counts)."""
    def encode(column: Any) -> np.ndarray:
        values = encoder(column)
        if (values < 0).any():
            raise DataError(f"the target column {target!r} holds {values[values < 0][0]}; model {kind!r} needs "
                            "counts >= 0")
        return values
    return encode


def fit(data: Any, target: str | None = None, model: str = "logistic", features: Sequence[str] | None = None,
        on_chunk: Callable[[ChunkProgress], None] | None = None, exclude: Sequence[str] = (),
        **options: Any) -> LinearModel:
    """Train a model on a Parquet dataset streamed from disk (see ``TrainConfig`` for the options)."""
    return Trainer(model=model, on_chunk=on_chunk, **options).fit(data, target=target, features=features,
                                                                  exclude=exclude)
