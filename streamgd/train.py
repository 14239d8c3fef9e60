"""The trainer: epochs over a plan, one compiled kernel call per chunk, and a history of every epoch.

Full batch, SGD and mini-batch are one code path that differs in batch size only: ``batch_size=1`` is SGD,
``batch_size=n`` mini-batch, and ``batch_size="full"`` sums the gradient over the whole stream and steps once
per epoch (gradient descent on data that does not fit in memory).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import kernels
from .dataset import Dataset, open_dataset
from .errors import ConfigError, DataError, DivergenceError
from .measure import EpochMeter, lifetime_peak_rss_mb
from .models import MODEL_KINDS, LinearModel
from .optim import Optimizer, make_optimizer, make_schedule
from .optim.schedules import Schedule
from .reader import (DEFAULT_PREFETCH_DEPTH, Chunk, ChunkStream, default_target_encoder, parse_memory_budget,
                     rows_per_unit_for_budget)
from .schedule import ShuffleQualityMeter, make_plan, parse_shuffle
from .standardize import Standardizer
from .targets import LabelEncoder, scan_classes, to_json_labels

PENALTIES = ("l2", "l1", "elasticnet", "none")


@dataclass
class TrainConfig:
    """Every choice of a training run; validated once, stored in the model file."""

    model: str = "logistic"
    batch_size: int | str = 1024
    epochs: int = 5
    lr: float | None = None  # None: the optimizer's default for mini-batches or full batch
    schedule: str = "invscaling"  # constant | invscaling | step | exponential | cosine
    lr_decay: float = 1e-4  # invscaling
    lr_power: float = 0.5  # invscaling
    lr_gamma: float | None = None  # step (default 0.5) and exponential (default: to 1% at the last step)
    lr_step_size: int | None = None  # step (default: one epoch)
    lr_min: float = 0.0  # cosine
    warmup: int = 0  # steps of linear warm-up before the schedule
    optimizer: str | Optimizer = "sgd"  # sgd | momentum | nesterov | adagrad | rmsprop | adam | adamw | asgd
    optimizer_options: dict = field(default_factory=dict)  # e.g. {"beta2": 0.99}
    penalty: str = "l2"
    alpha: float = 1e-4
    l1_ratio: float = 0.15
    clip_norm: float = 0.0
    shuffle: str = "row-groups"
    seed: int = 0
    dtype: str = "float32"
    prefetch_depth: int = DEFAULT_PREFETCH_DEPTH
    memory_budget: str | int | None = None
    standardize: bool = True

    def validate(self) -> TrainConfig:
        """Check every field, raising ConfigError with the field, its value and what is accepted."""
        if self.model not in MODEL_KINDS:
            _bad("model", self.model, f"one of {', '.join(MODEL_KINDS)}")
        if isinstance(self.batch_size, str):
            if self.batch_size != "full":
                try:
                    self.batch_size = int(self.batch_size)
                except ValueError:
                    _bad("batch_size", self.batch_size, "a positive integer or 'full'")
        if not isinstance(self.batch_size, str) and (not isinstance(self.batch_size, (int, np.integer))
                                                     or self.batch_size < 1):
            _bad("batch_size", self.batch_size, "a positive integer or 'full'")
        if not isinstance(self.epochs, (int, np.integer)) or self.epochs < 1:
            _bad("epochs", self.epochs, "a positive integer")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            _bad("lr", self.lr, "a positive number")
        if self.penalty not in PENALTIES:
            _bad("penalty", self.penalty, f"one of {', '.join(PENALTIES)}")
        for name in ("alpha", "clip_norm", "lr_decay", "lr_power"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                _bad(name, value, "a number >= 0")
        if not 0.0 <= self.l1_ratio <= 1.0:
            _bad("l1_ratio", self.l1_ratio, "a number in [0, 1]")
        if self.dtype not in ("float32", "float64"):
            _bad("dtype", self.dtype, "float32 or float64")
        if not isinstance(self.prefetch_depth, int) or self.prefetch_depth < 0:
            _bad("prefetch_depth", self.prefetch_depth, "an integer >= 0")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            _bad("seed", self.seed, "an integer >= 0")
        parse_shuffle(self.shuffle)
        parse_memory_budget(self.memory_budget)
        self.make_schedule(steps_per_epoch=1)
        return self

    @property
    def full_batch(self) -> bool:
        return self.batch_size == "full"

    def make_optimizer(self) -> Optimizer:
        return make_optimizer(self.optimizer, **self.optimizer_options)

    @property
    def learning_rate(self) -> float:
        """The base learning rate: ``lr``, else the optimizer's own, else its default for this batch size."""
        if self.lr is not None:
            return float(self.lr)
        return self.make_optimizer().base_lr(self.full_batch)

    def make_schedule(self, steps_per_epoch: int) -> Schedule:
        """The learning-rate schedule of a run of ``epochs`` epochs of ``steps_per_epoch`` steps."""
        return make_schedule(self.schedule, self.learning_rate, total_steps=steps_per_epoch * self.epochs,
                             steps_per_epoch=steps_per_epoch, warmup_steps=self.warmup, decay=self.lr_decay,
                             power=self.lr_power, gamma=self.lr_gamma, step_size=self.lr_step_size,
                             lr_min=self.lr_min)

    def to_dict(self) -> dict:
        """JSON-ready settings, the optimizer written out with all its hyperparameters."""
        settings = asdict(self)
        optimizer = self.make_optimizer().config()
        settings["optimizer"] = optimizer["name"]
        settings["optimizer_options"] = {k: v for k, v in optimizer.items() if k not in ("name", "state")}
        settings["lr"] = self.learning_rate
        return settings

    @property
    def effective_l1_ratio(self) -> float:
        return {"l2": 0.0, "l1": 1.0, "none": 0.0}.get(self.penalty, self.l1_ratio)

    @property
    def effective_alpha(self) -> float:
        return 0.0 if self.penalty == "none" else float(self.alpha)


def _bad(name: str, value: Any, accepted: str) -> None:
    raise ConfigError(f"{name}={value!r} is not accepted; expected {accepted}")


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


@dataclass
class TrainState:
    """Everything that changes during training: parameters, optimizer state, step, cursor and history."""

    params: np.ndarray
    opt_state: np.ndarray
    step: int = 0
    epoch: int = 0
    history: list[dict] = field(default_factory=list)


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

    # ---- set-up ------------------------------------------------------------------------------------------------
    def open(self, data: Any, target: str | None = None, features: Sequence[str] | None = None) -> Dataset:
        """Open the data with units sized to the memory budget."""
        cfg = self.config
        max_rows = None
        budget = parse_memory_budget(cfg.memory_budget)
        if budget is not None:
            probe = open_dataset(data, target=target, features=features)
            itemsize = np.dtype(cfg.dtype).itemsize
            max_rows = rows_per_unit_for_budget(budget, probe.n_features, itemsize, cfg.prefetch_depth,
                                                parse_shuffle(cfg.shuffle).units_per_step)
        return open_dataset(data, target=target, features=features, max_unit_rows=max_rows)

    def fit(self, data: Any, target: str | None = None, features: Sequence[str] | None = None) -> LinearModel:
        """Train on ``data`` (anything ``open_dataset`` accepts) and return the model."""
        cfg = self.config
        dataset = data if isinstance(data, Dataset) else self.open(data, target, features)
        if dataset.target is None:
            raise ConfigError("training needs a target column (target=...)")
        self.dataset = dataset
        model_cls = MODEL_KINDS[cfg.model]
        classes, encoder = self._classes(dataset, model_cls)
        n_out = model_cls.n_outputs(len(classes) if classes else None)
        optimizer = cfg.make_optimizer()
        n_params = kernels.n_params(dataset.n_features, n_out)
        opt_state = optimizer.init_state(n_params)
        hyper = self._hyper(optimizer)
        if hyper[kernels.H_ALPHA] * hyper[kernels.H_L1_RATIO] > 0 and not cfg.full_batch:
            # stochastic steps take the L1 penalty cumulatively (exact zeros despite gradient noise); its record
            # is one more row of the optimizer state. Full batch uses the plain proximal step (ISTA).
            opt_state = np.vstack([opt_state, np.zeros((1, n_params))])
            hyper[kernels.H_L1_ROW] = opt_state.shape[0]
        state = TrainState(params=np.zeros(n_params), opt_state=opt_state)
        self.standardizer = Standardizer.fit(dataset) if cfg.standardize else None
        schedule = cfg.make_schedule(self._steps_per_epoch(dataset))
        for epoch in range(cfg.epochs):
            state.epoch = epoch
            record = self._run_epoch(dataset, state, hyper, schedule, optimizer, n_out, model_cls.loss_kind,
                                     encoder)
            state.history.append(record)
        params = optimizer.final_params(state.params, state.opt_state, state.step)
        coef, intercept = kernels.split_params(params, dataset.n_features, n_out)
        transform = None
        if self.standardizer is not None:
            # the model predicts on raw inputs: fold the standardization into the coefficients
            coef, intercept = self.standardizer.raw_coefficients(coef, intercept)
            transform = self.standardizer.to_dict()
        state_rows = list(optimizer.state_names) + (["l1_applied"] if hyper[kernels.H_L1_ROW] else [])
        summary = {"feature_transform": transform, "rows": dataset.n_rows, "epochs": cfg.epochs, "steps": state.step,
                   "optimizer_state_rows": state_rows,
                   "final_loss": state.history[-1]["loss"], "peak_rss_mb": round(lifetime_peak_rss_mb(), 1)}
        return model_cls(coef.copy(), intercept.copy(), dataset.feature_names, target=dataset.target,
                         classes=to_json_labels(classes) if classes else None, config=cfg.to_dict(),
                         history=state.history, optimizer_state=state.opt_state, summary=summary)

    def _classes(self, dataset: Dataset, model_cls: type[LinearModel]):
        if not model_cls.is_classifier:
            return None, default_target_encoder
        classes = scan_classes(dataset)
        if len(classes) < 2:
            raise DataError(f"the target column {dataset.target!r} has a single class {classes}; "
                            "a classifier needs at least two")
        if model_cls.n_outputs(len(classes)) == 1 and len(classes) != 2:
            raise DataError(f"the target column {dataset.target!r} has {len(classes)} classes; "
                            f"model {model_cls.kind!r} is binary (use a multiclass model)")
        return classes, LabelEncoder(classes)

    def _steps_per_epoch(self, dataset: Dataset) -> int:
        """Optimizer steps in one epoch (the first epoch's plan; other epochs differ by a few at most)."""
        cfg = self.config
        if cfg.full_batch:
            return 1
        plan = make_plan(dataset.units, cfg.shuffle, seed=cfg.seed, epoch=0)
        return sum(-(-sum(unit.n_rows for unit in step.units) // cfg.batch_size) for step in plan.steps)

    def _hyper(self, optimizer: Optimizer) -> np.ndarray:
        cfg = self.config
        hyper = np.zeros(kernels.N_HYPER)
        hyper[kernels.H_ALPHA] = cfg.effective_alpha
        hyper[kernels.H_L1_RATIO] = cfg.effective_l1_ratio
        hyper[kernels.H_CLIP_NORM] = cfg.clip_norm
        hyper[kernels.H_HUBER_EPS] = 1.0
        optimizer.write_hyper(hyper)
        return hyper

    # ---- one epoch ---------------------------------------------------------------------------------------------
    def _run_epoch(self, dataset: Dataset, state: TrainState, hyper: np.ndarray, schedule: Any, optimizer: Any,
                   n_out: int, loss_kind: int, encoder: Any) -> dict:
        cfg = self.config
        plan = make_plan(dataset.units, cfg.shuffle, seed=cfg.seed, epoch=state.epoch)
        quality = ShuffleQualityMeter()
        meter = EpochMeter()
        loss_sum = 0.0
        empty_weights = np.empty(0)
        grad_sum = np.zeros_like(state.params) if cfg.full_batch else None
        stream = ChunkStream(dataset, plan, dtype=cfg.dtype, prefetch_depth=cfg.prefetch_depth,
                             target_encoder=encoder, quality=quality,
                             transform=self.standardizer.apply if self.standardizer is not None else None)
        with stream:
            for chunk in stream:
                if cfg.full_batch:
                    chunk_loss, status = kernels.accumulate_chunk(chunk.X, chunk.y, empty_weights, state.params,
                                                                  n_out, loss_kind, hyper, grad_sum)
                    self.kernel_calls += 1
                    self._check(status, chunk, state)
                else:
                    n_batches = -(-chunk.n_rows // cfg.batch_size)
                    lrs = np.ascontiguousarray(schedule(state.step + np.arange(n_batches)), dtype=np.float64)
                    chunk_loss, _, status = kernels.train_chunk(
                        chunk.X, chunk.y, empty_weights, state.params, state.opt_state, hyper, lrs,
                        cfg.batch_size, n_out, loss_kind, optimizer.code, state.step)
                    self.kernel_calls += 1
                    self._check(status, chunk, state)
                    state.step += n_batches
                loss_sum += chunk_loss
                rss = meter.add(chunk.n_rows)
                if self.on_chunk is not None:
                    self.on_chunk(ChunkProgress(state.epoch, cfg.epochs, meter.rows, plan.n_rows, meter.rows_per_s,
                                                loss_sum / meter.rows, rss))
        if cfg.full_batch:
            lr = float(schedule(np.array([state.step]))[0])
            status = kernels.full_batch_step(state.params, grad_sum, float(meter.rows), state.opt_state, hyper, lr,
                                             optimizer.code, state.step, n_out * dataset.n_features)
            if status != 0:
                raise DivergenceError(self._divergence_message(state))
            state.step += 1
        seconds = meter.seconds
        return {"epoch": state.epoch, "loss": loss_sum / max(meter.rows, 1), "rows": meter.rows,
                "seconds": round(seconds, 4), "rows_per_s": round(meter.rows / max(seconds, 1e-9), 1),
                "peak_rss_mb": round(meter.peak_rss_mb, 1), "steps": state.step,
                "shuffle_quality": quality.result().as_dict()}

    def _check(self, status: int, chunk: Chunk, state: TrainState) -> None:
        if status == 0:
            return
        row = -int(status) - 1
        unit, row_in_unit = chunk.locate(row)
        where = self.dataset.describe_row(unit, row_in_unit)
        values = chunk.X[row]
        bad = [name for name, v in zip(self.dataset.feature_names, values) if not np.isfinite(v)]
        if bad:
            raise DataError(f"the feature column {bad[0]!r} holds {values[self.dataset.feature_names.index(bad[0])]} "
                            f"at {where}; clean the data or drop those rows")
        if chunk.y is not None and not np.isfinite(chunk.y[row]):
            raise DataError(f"the target column {self.dataset.target!r} is missing (null or NaN) at {where}")
        raise DivergenceError(self._divergence_message(state))

    def _divergence_message(self, state: TrainState) -> str:
        return (f"training diverged at epoch {state.epoch}, step {state.step}: the loss or a parameter became "
                f"NaN or inf; lower the learning rate (now {self.config.learning_rate}) or standardize the features")


def fit(data: Any, target: str | None = None, model: str = "logistic", features: Sequence[str] | None = None,
        on_chunk: Callable[[ChunkProgress], None] | None = None, **options: Any) -> LinearModel:
    """Train a model on a Parquet dataset streamed from disk (see ``TrainConfig`` for the options)."""
    return Trainer(model=model, on_chunk=on_chunk, **options).fit(data, target=target, features=features)
