"""The trainer: epochs over a plan, one compiled kernel call per chunk, and a history of every epoch.

Full batch, SGD and mini-batch are one code path that differs in batch size only: ``batch_size=1`` is SGD,
``batch_size=n`` mini-batch, and ``batch_size="full"`` sums the gradient over the whole stream and steps once
per epoch (gradient descent on data that does not fit in memory). Around that loop: held-out validation, early
stopping, checkpoints with exact resume, a divergence guard and Ctrl-C handling.

The Trainer sets a run up (split, classes, statistics, features, standardizer, resume check) and drives its
epochs; the chunk step, the epoch record, early stopping, the model and checkpoints are ``streamgd.training.epoch``'s.
An ``EpochRunner`` (dask's, in ``distributed.py``) can run the epochs elsewhere with the same set-up and
bookkeeping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import psutil
import pyarrow as pa

from ..data.cache import check_cache_dir
from ..data.dataset import Dataset, is_numeric_type, is_temporal_type, open_dataset
from ..data.memory_plan import MemoryPlan, plan_for_dataset
from ..data.reader import default_target_encoder, parse_memory_budget
from ..data.shuffle import Plan, ShuffleQualityMeter, make_plan, parse_shuffle
from ..errors import ConfigError, DataError, TrainingInterrupted
from ..features.encoding_choice import choose_encodings
from ..features.spec import FeatureSpec
from ..features.standardize import Standardizer
from ..features.stats import DatasetStats, compute_stats
from ..features.stats_cache import cached_statistics
from ..features.targets import LabelEncoder, class_counts, scan_classes, to_json_labels
from ..kernels import dense as kernels
from ..models.linear import MODEL_KINDS, LinearModel
from ..optim import Optimizer
from . import epoch as core
from .checkpoint import Checkpoint, CheckpointClock, latest_checkpoint
from .config import TrainConfig
from .epoch import ChunkJob, Run, TrainState
from .holdout import holdout_units
from .measure import EpochMeter
from .warm_start import check_data, check_settings, describe_init, load_init, starting_point, stored_standardizer

__all__ = ["ChunkProgress", "EpochRunner", "TrainConfig", "TrainState", "Trainer", "fit"]

_Run = Run  # the name scripts/ and older code use


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


class EpochRunner(Protocol):
    """Runs a Trainer's epochs somewhere else (dask workers): same set-up, record, early stopping, checkpoints."""

    def settings(self) -> dict:
        """Settings that shape the result besides the TrainConfig (stored in checkpoints, models, summaries)."""

    def statistics(self, dataset: Dataset, columns: list[str], categorical: list[str],
                   max_categories: int) -> DatasetStats:
        """The statistics pass (as ``compute_stats``)."""

    def classes(self, dataset: Dataset) -> list:
        """The class labels of the target (as ``scan_classes``)."""

    def class_counts(self, dataset: Dataset, encoder: LabelEncoder) -> np.ndarray:
        """Rows per class (as ``class_counts``)."""

    def run_epoch(self, trainer: Trainer, run: Run, state: TrainState) -> dict:
        """Train from the state's cursor to the end of its epoch; return the epoch's record."""


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
                 runner: EpochRunner | None = None, **options: Any):
        self.config = (config or TrainConfig(**options)).validate()
        self.on_chunk = on_chunk
        self.runner = runner  # None: the epochs run in this process
        self.job: ChunkJob | None = None  # the per-chunk settings of the current run
        self._known_classes: list | None = None  # classes given rather than scanned (partial_fit)
        self.kernel_calls = 0
        self.dataset: Dataset | None = None
        self.standardizer: Standardizer | None = None
        self.resumed_from: int | None = None  # the serial of the checkpoint this run continued from
        self.memory_plan: MemoryPlan | None = None  # how the memory budget is spent (None: no budget)
        self.run: Run | None = None  # the last fit's settings and its final state (to continue training from)
        self.init: LinearModel | None = None  # the model this run continues (config ``init``)
        self.state: TrainState | None = None
        self.encodings: dict[str, str] = {}  # each categorical column's encoding (choose_encodings)
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
        probe = open_dataset(data, target=target, features=features, categorical=categorical, exclude=exclude,
                             storage_options=cfg.storage_options)
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
            self.memory_plan = plan_for_dataset(budget, probe, np.dtype(cfg.dtype).itemsize, cfg.prefetch_depth,
                                                parse_shuffle(cfg.shuffle).units_per_step, probe.categorical,
                                                len(cfg.interactions or ()), cached=cfg.cache is not None)
            max_rows = self.memory_plan.max_unit_rows
        if features is None and max_rows is None:
            return probe
        return open_dataset(data, target=target, features=features, max_unit_rows=max_rows, categorical=categorical,
                            exclude=exclude, footers_of=probe, storage_options=cfg.storage_options)

    def fit(self, data: Any, target: str | None = None, features: Sequence[str] | None = None,
            exclude: Sequence[str] = ()) -> LinearModel:
        """Train on ``data`` (anything ``open_dataset`` accepts) and return the model; ``exclude`` names columns
        (ids, partition keys) left out of the default features."""
        cfg = self.config
        if cfg.cache is not None:
            check_cache_dir(cfg.cache, "the cache directory")  # before the statistics pass, not after it
        self.init = load_init(cfg.init, cfg.storage_options) if cfg.init is not None else None
        if self.init is not None and features is None:
            features = self.init.input_columns  # the model's inputs, not every numeric column
        dataset = data if isinstance(data, Dataset) else self.open(data, target, features, exclude)
        if dataset.target is None:
            raise ConfigError("training needs a target column (target=...)")
        self.dataset = dataset
        checkpoint = latest_checkpoint(cfg.checkpoint_dir, cfg.storage_options) if cfg.resume else None
        run, state = self._set_up(dataset, checkpoint)
        self.run, self.state = run, state
        self.job = core.chunk_job(cfg, run)
        self._clock = CheckpointClock(cfg.checkpoint_every, now=time.monotonic)
        with self._stop_on_ctrl_c():
            while not state.finished and state.epoch < state.first_epoch + cfg.epochs:
                record = self._run_epoch(run, state)
                core.end_epoch(cfg, run, state, record)
                state.finished = state.finished or state.epoch >= state.first_epoch + cfg.epochs
                self._write_checkpoint(run, state)
        return self._model(run, state)

    def prepare(self, dataset: Dataset, classes: list | None = None) -> tuple[Run, TrainState]:
        """Set up a fresh run on ``dataset`` without training (``classes``: the class labels, when the data need
        not hold all of them); ``partial_fit`` trains its epochs one call at a time."""
        self.init, self.dataset, self._known_classes = None, dataset, classes
        run, state = self._set_up(dataset, None)
        self.run, self.state, self.job = run, state, core.chunk_job(self.config, run)
        return run, state

    # ---- set-up ------------------------------------------------------------------------------------------------
    def _set_up(self, dataset: Dataset, checkpoint: Checkpoint | None) -> tuple[Run, TrainState]:
        cfg = self.config
        train, validation = self._split(dataset)
        model_cls = MODEL_KINDS[cfg.model]
        classes, encoder = self._classes(dataset, model_cls)
        if model_cls.needs_nonnegative_target:
            encoder = NonNegativeTarget(encoder, dataset.target, model_cls.kind)
        class_weights = self._class_weights(train, classes, encoder)
        n_out = model_cls.n_outputs(len(classes) if classes else None)
        if self.init is not None:
            return self._continue(train, validation, model_cls, classes, encoder, n_out, class_weights)
        self._check_interactions(train)
        self.encodings = choose_encodings(train, train.categorical, cfg.encoding, cfg.max_categories)
        stats = self._statistics(train)
        spec = self._feature_spec(train, stats)
        feature_names = spec.output_names if spec is not None else dataset.model_feature_names
        optimizer, params, opt_state, hyper = initial_state(cfg, len(feature_names), n_out,
                                                            spec.n_slots if spec is not None else dataset.n_slots)
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
        return Run(train, validation, model_cls, classes, encoder, n_out, optimizer, hyper, schedule,
                    standardizer, class_weights, spec, feature_names, stats), state

    def _continue(self, train: Dataset, validation: Dataset | None, model_cls: type[LinearModel], classes: list | None,
                  encoder: Any, n_out: int, class_weights: np.ndarray | None) -> tuple[Run, TrainState]:
        """Set up a run that continues ``self.init``: its spec, its transform, its parameters, optimizer state,
        step and epoch (see warmstart.py); no statistics pass."""
        cfg, model = self.config, self.init
        name = describe_init(cfg.init)
        check_settings(model, cfg.to_dict(), name)
        spec = model.spec
        check_data(model, name, to_json_labels(classes) if classes else None, list(train.feature_names),
                   ordered=spec is None)
        if cfg.make_optimizer().code == kernels.OPT_FTRL:
            raise ConfigError("ftrl keeps its weights in its own state (z, n), so it cannot continue a saved model "
                              "(--init); train it from the start")
        optimizer, _, fresh_state, hyper = initial_state(cfg, model.n_features, n_out,
                                                         spec.n_slots if spec is not None else 0)
        standardizer = stored_standardizer(model)
        params, opt_state, step, epoch = starting_point(model, name, standardizer, fresh_state)
        state = TrainState(params=params, opt_state=opt_state, step=step, epoch=epoch, first_epoch=epoch,
                           history=list(model.history))
        state.start_epoch(cfg.full_batch)
        self.standardizer = standardizer
        schedule = cfg.make_schedule(self.steps_per_epoch(train))
        return Run(train, validation, model_cls, classes, encoder, n_out, optimizer, hyper, schedule, standardizer,
                    class_weights, spec, model.feature_names, None), state

    def _statistics(self, train: Dataset) -> DatasetStats | None:
        """The statistics pass over the input columns, when standardization or a FeatureSpec needs it."""
        cfg = self.config
        if not (cfg.standardize or self._needs_spec(train)):
            return None
        # each concurrent pyarrow reader keeps ~80 MB of buffers of its own (measured, 8 MB row groups), which the
        # budget does not count: under a memory budget the pass reads with one thread
        # hashing needs no vocabulary: the pass then reads the numeric columns only
        counted = [name for name in train.categorical if self.encodings.get(name) == "onehot"]
        columns = [name for name in train.feature_names if name not in train.categorical or name in counted]
        workers = 1 if cfg.memory_budget is not None else 2

        def compute() -> DatasetStats:
            if self.runner is not None:
                return self.runner.statistics(train, columns, counted, cfg.max_categories)
            return compute_stats(train, columns, counted, cfg.max_categories, workers=workers)

        if cfg.cache is not None and train.table is None and train.dask_frame is None:  # a later run skips the pass
            return cached_statistics(cfg.cache, train, columns, counted, cfg.max_categories, compute)
        return compute()

    def _check_interactions(self, train: Dataset) -> None:
        """Every column an interaction names must be a categorical feature: said before the statistics pass."""
        for pair in self.config.interactions or ():
            for name in pair:
                if name not in train.categorical:
                    kind = "not in the data" if name not in train.schema.names else (
                        "not a feature" if name not in train.feature_names else "not categorical")
                    raise ConfigError(f"--interactions names {name!r}, which is {kind}; interactions pair "
                                      f"categorical columns ({', '.join(train.categorical) or 'there are none'}; "
                                      "--categorical makes a column categorical)")

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
                               hash_bits=cfg.hash_bits, max_categories=cfg.max_categories,
                               interactions=[tuple(pair) for pair in cfg.interactions or ()],
                               interaction_bits=cfg.interaction_bits, encodings=self.encodings)

    @staticmethod
    def _standardizer(stats: DatasetStats, spec: FeatureSpec | None) -> Standardizer:
        """Mean and scale of every feature: the numeric columns' from the statistics pass; indicators and
        encoded categories are left as they are."""
        if spec is None:
            columns = list(stats.columns.values())
            return Standardizer.from_stats(np.array([c.mean for c in columns]), np.array([c.std for c in columns]))
        means, stds = np.zeros(spec.n_dense), np.ones(spec.n_dense)
        for j, numeric in enumerate(spec.numeric):
            means[j], stds[j] = stats.columns[numeric.name].mean, stats.columns[numeric.name].std
        return Standardizer.from_stats(means, stds)

    def _split(self, dataset: Dataset) -> tuple[Dataset, Dataset | None]:
        cfg = self.config
        if cfg.validation:
            train_units, held_units = holdout_units(dataset.units, cfg.validation, cfg.seed)
            return dataset.subset(train_units), dataset.subset(held_units)
        if cfg.validation_data is not None:
            held = open_dataset(cfg.validation_data, target=dataset.target, features=dataset.feature_names,
                                storage_options=cfg.storage_options)
            return dataset, held
        return dataset, None

    def settings(self) -> dict:
        """The settings a checkpoint stores: the config's, and the epoch runner's (dask: workers, rounds)."""
        return {**self.config.to_dict(), **(self.runner.settings() if self.runner is not None else {})}

    def _fingerprint(self, dataset: Dataset) -> dict:
        return core.fingerprint(dataset)

    def _check_resumable(self, checkpoint: Checkpoint, dataset: Dataset) -> None:
        wanted = {**self.config.resume_key(), **(self.runner.settings() if self.runner is not None else {})}
        core.check_resumable(checkpoint, wanted, core.fingerprint(dataset), self.config.checkpoint_dir)

    def _classes(self, dataset: Dataset, model_cls: type[LinearModel]):
        if not model_cls.is_classifier:
            return None, default_target_encoder
        scan = self.runner.classes if self.runner is not None else scan_classes  # the workers read the data
        classes = self._known_classes if self._known_classes is not None else scan(dataset)
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
            counts = (self.runner.class_counts if self.runner is not None else class_counts)(dataset, encoder)
            return counts.sum() / (len(classes) * np.maximum(counts, 1))
        unknown = [label for label in wanted if label not in classes]
        if unknown:
            raise ConfigError(f"class_weight names {unknown[0]!r}, which is not a class of {dataset.target!r} "
                              f"(classes: {classes})")
        return np.array([float(wanted.get(label, 1.0)) for label in classes])

    def steps_per_epoch(self, dataset: Dataset) -> int:
        """Optimizer steps in one epoch (the first epoch's plan; other epochs differ by a few at most)."""
        cfg = self.config
        if cfg.full_batch:
            return 1
        plan = make_plan(dataset.units, cfg.shuffle, seed=cfg.seed, epoch=0)
        return sum(-(-sum(unit.n_rows for unit in step.units) // cfg.batch_size) for step in plan.steps)

    # ---- one epoch ---------------------------------------------------------------------------------------------
    def _run_epoch(self, run: Run, state: TrainState) -> dict:
        """Train from the state's cursor to the end of its epoch; return the epoch's record."""
        if self.runner is not None:
            return self.runner.run_epoch(self, run, state)

        def after_chunk(plan: Plan, meter: EpochMeter, rss: float) -> None:
            self.kernel_calls += 1
            self.after_chunk(run, state, meter, rss, plan.n_rows, len(plan.steps))

        return self._with_memory_plan(core.run_epoch(self.config, run, self.job, state, after_chunk))

    def after_chunk(self, run: Run, state: TrainState, meter: EpochMeter, rss: float, rows_total: int,
                    n_chunks: int) -> None:
        """After a chunk (a dask round): a checkpoint when due, Ctrl-C's stop, progress."""
        cfg = self.config
        if self._interrupted or self._clock.due(state.chunks_done):
            self._write_checkpoint(run, state)
        if self._interrupted:
            where = "; resume with the same command and --resume" if cfg.checkpoint_dir and cfg.init is None else ""
            raise TrainingInterrupted(f"interrupted at epoch {state.epoch + 1}/{state.first_epoch + cfg.epochs}, "
                                      f"chunk {state.next_chunk} of {n_chunks}{where}")
        if self.on_chunk is not None:
            previous = state.history[-1].get("validation_loss") if state.history else None
            self.on_chunk(ChunkProgress(state.epoch, state.first_epoch + cfg.epochs, state.epoch_rows, rows_total,
                                        meter.rows_per_s, state.epoch_loss_sum / max(state.epoch_rows, 1), rss,
                                        previous))

    def epoch_record(self, run: Run, state: TrainState, meter: EpochMeter, quality: ShuffleQualityMeter) -> dict:
        """The epoch's history entry (with the validation loss when there is validation data, and how a memory
        budget was spent)."""
        return self._with_memory_plan(core.epoch_record(self.config, run, state, meter, quality))

    def _with_memory_plan(self, record: dict) -> dict:
        if self.memory_plan is not None:
            record["memory_budget"] = dataclasses.asdict(self.memory_plan)
        return record

    # ---- checkpoints, the model --------------------------------------------------------------------------------
    def _write_checkpoint(self, run: Run, state: TrainState) -> None:
        self._clock.written()
        core.save_checkpoint(self.config, run, state, core.fingerprint(self.dataset), self.settings())

    def _model(self, run: Run, state: TrainState) -> LinearModel:
        summary = {"resumed_from": self.resumed_from,
                   "continued_from_epoch": state.first_epoch if self.init is not None else None}
        config = None
        if self.runner is not None:
            summary.update(self.runner.settings())
            config = {"distributed": True}
        return core.assemble_model(self.config, run, state, self.dataset.target, run.train.n_rows, summary, config)

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

def kernel_hyper(cfg: TrainConfig, optimizer: Optimizer) -> np.ndarray:
    """The kernels' hyperparameter vector: penalty, clipping, Huber's epsilon and the optimizer's own."""
    hyper = np.zeros(kernels.N_HYPER)
    hyper[kernels.H_ALPHA] = cfg.effective_alpha
    hyper[kernels.H_L1_RATIO] = cfg.effective_l1_ratio
    hyper[kernels.H_CLIP_NORM] = cfg.clip_norm
    hyper[kernels.H_HUBER_EPS] = cfg.epsilon
    optimizer.write_hyper(hyper)
    return hyper


def initial_state(cfg: TrainConfig, n_features: int, n_out: int, n_slots: int = 0
                  ) -> tuple[Optimizer, np.ndarray, np.ndarray, np.ndarray]:
    """The optimizer, zero parameters, its initial state and the kernels' hyperparameters for a fresh run
    (``n_slots`` of the features are a sparse block's slots)."""
    optimizer = cfg.make_optimizer()
    n_params = kernels.n_params(n_features, n_out)
    hyper = kernel_hyper(cfg, optimizer)
    stochastic = not cfg.full_batch and optimizer.code != kernels.OPT_FTRL  # FTRL applies its penalty itself
    # stochastic steps take the L1 penalty cumulatively (exact zeros despite gradient noise); its record is one
    # more row of the optimizer state. Full batch uses the plain proximal step (ISTA).
    cumulative_l1 = stochastic and hyper[kernels.H_ALPHA] * hyper[kernels.H_L1_RATIO] > 0
    # sparse slots catch up the L2 penalty (and AdamW's decay) of the steps they skipped: a row of stamps
    decays = hyper[kernels.H_ALPHA] * (1 - hyper[kernels.H_L1_RATIO]) > 0 or getattr(optimizer, "weight_decay", 0)
    lazy = stochastic and n_slots > 0 and bool(decays)
    check_model_fits(n_params, optimizer.state_rows + cumulative_l1 + lazy, n_slots)
    opt_state = optimizer.init_state(n_params)
    for needed, slot in ((cumulative_l1, kernels.H_L1_ROW), (lazy, kernels.H_LAZY_ROW)):
        if needed:
            opt_state = np.vstack([opt_state, np.zeros((1, n_params))])
            hyper[slot] = opt_state.shape[0]
    return optimizer, np.zeros(n_params), opt_state, hyper


def check_model_fits(n_params: int, state_rows: int, n_slots: int) -> None:
    """ConfigError, before any training, when the parameters and optimizer state would not fit in the memory
    this machine has available (a hashed or one-hot model grows with its slots)."""
    need = 8 * n_params * (1 + state_rows) * 2  # and about as much again: checkpoints, the model's coef copy
    available = psutil.virtual_memory().available
    if need > available:
        raise ConfigError(f"the model's {n_params:,} parameters and {state_rows} optimizer state rows would need "
                          f"{need / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB available"
                          + (f"; it has {n_slots:,} sparse slots: lower --hash-bits or --max-categories"
                             if n_slots else ""))


class NonNegativeTarget:
    """A target encoder that refuses negative values (counts); a class, so that it pickles."""

    def __init__(self, encoder: Callable, target: str, kind: str):
        self.encoder, self.target, self.kind = encoder, target, kind

    def __call__(self, column: Any) -> np.ndarray:
        values = self.encoder(column)
        if (values < 0).any():
            raise DataError(f"the target column {self.target!r} holds {values[values < 0][0]}; model {self.kind!r} "
                            "needs counts >= 0")
        return values


def fit(data: Any, target: str | None = None, model: str = "logistic", features: Sequence[str] | None = None,
        on_chunk: Callable[[ChunkProgress], None] | None = None, exclude: Sequence[str] = (),
        **options: Any) -> LinearModel:
    """Train a model on a Parquet dataset streamed from disk (see ``TrainConfig`` for the options)."""
    return Trainer(model=model, on_chunk=on_chunk, **options).fit(data, target=target, features=features,
                                                                  exclude=exclude)
