"""The settings of a training run: one dataclass, validated in one place, stored in model files and checkpoints."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..data.reader import DEFAULT_PREFETCH_DEPTH, parse_memory_budget, parse_size
from ..data.shuffle import parse_shuffle
from ..errors import ConfigError
from ..features.encoding_choice import ENCODING_CHOICES
from ..features.spec import MISSING_POLICIES, check_hash_bits, parse_interactions
from ..features.stats import MAX_CATEGORIES_LIMIT
from ..features.transforms import parse_bins, parse_transform
from ..models.linear import MODEL_KINDS
from ..optim import OPTIMIZERS, SCHEDULES, Optimizer, make_optimizer, make_schedule
from ..optim.factors import FactorSettings, check_factor_optimizer
from ..optim.penalties import PENALTIES
from ..optim.schedules import Schedule, ScheduleSettings
from .checkpoint import checkpoint_interval_seconds

DTYPES = ("float32", "float64")
# what an invscaling schedule reads when neither the run nor the optimizer's default schedule names it
SCHEDULE_FALLBACKS = {"lr_decay": ScheduleSettings.decay_per_row, "lr_power": ScheduleSettings.power}
DECAY_UNITS = ("rows", "steps")
# the defaults a run with no optimizer options gets (resolve_defaults): a model with a sparse block (categorical
# columns) learns best in one pass of per-coordinate updates, one row at a time (FTRL at batch 1, the issue's
# click-log measurements and scripts/bench_ctr.py); more passes over a click log overfit. A dense-only model
# keeps the SGD rules at mini-batches, whose few epochs of a long table do not.
SPARSE_DEFAULTS = {"optimizer": "ftrl", "epochs": 1}
AUTO_INTERACTIONS, NO_INTERACTIONS = "auto", "none"
ALL_FACTOR_FIELDS = "all"  # factor_fields: every sparse entry gets factors
DENSE_DEFAULTS = {"optimizer": "sgd", "epochs": 5}


@dataclass
class TrainConfig:
    """Every choice of a training run; validated once, stored in the model file."""

    model: str = "logistic"
    batch_size: int | str | None = None  # None: the optimizer's default_batch_size (ftrl 1, the others 1,024)
    epochs: int | None = None  # None: SPARSE_DEFAULTS' or DENSE_DEFAULTS' (resolve_defaults)
    lr: float | None = None  # None: the optimizer's default for mini-batches or full batch, times the model's scale
    schedule: str | None = None  # a name of SCHEDULES; None: the optimizer's default_schedule
    lr_decay: float | None = None  # invscaling (None: the optimizer's default, else SCHEDULE_FALLBACKS')
    lr_power: float | None = None  # invscaling (None: the optimizer's default, else SCHEDULE_FALLBACKS')
    # what invscaling's t counts: rows or steps (None: rows for a default lr_decay, steps for a given one, as
    # before; full batch: steps)
    lr_decay_unit: str | None = None
    lr_gamma: float | None = None  # step (default 0.5) and exponential (default: to 1% at the last step)
    lr_step_size: int | None = None  # step (default: one epoch)
    lr_min: float = 0.0  # cosine
    warmup: int = 0  # steps of linear warm-up before the schedule
    optimizer: str | Optimizer | None = None  # a name of OPTIMIZERS, or an Optimizer; None: chosen from the data
    optimizer_options: dict = field(default_factory=dict)  # e.g. {"beta2": 0.99}
    penalty: str = "l2"  # a name of PENALTIES
    alpha: float = 1e-4
    l1_ratio: float = 0.15
    clip_norm: float | None = None  # None: the model kind's default_clip_norm (0: off)
    shuffle: str = "row-groups"
    seed: int = 0
    dtype: str = "float32"
    prefetch_depth: int = DEFAULT_PREFETCH_DEPTH
    memory_budget: str | int | None = None
    standardize: bool = True
    # columns (names, globs, the selectors text / numeric) encoded as categoricals; text columns are anyway
    categorical: list[str] | None = None
    missing: str = "error"  # one of MISSING_POLICIES: error | drop-rows | impute (mean + a missing indicator)
    # one of ENCODING_CHOICES: auto (per column: one-hot when it has few values, else hashed;
    # streamgd.features.encoding_choice) | onehot | hash (every categorical column)
    encoding: str = "auto"
    hash_bits: int = 18  # hash: 2^hash_bits shared columns
    max_categories: int = 1000  # onehot: the most frequent values kept per column (<= 1e6), the rest: __other__
    # pairs of categorical columns hashed together, as "C1:C2,C3:C4" or [("C1", "C2")]; "none" (or []) for none;
    # None or "auto": searched on a sample of the data where that applies (streamgd.features.interaction_search)
    interactions: Any = None
    interaction_bits: int | None = None  # the interactions' own 2^bits buckets (None: the hash buckets)
    # numeric transforms, as ["log1p:I*", "clip:I3:0:1000"], and quantile bins, as ["32"] or ["32:I*"]
    # (streamgd.features.transforms)
    transforms: Any = None
    bins: Any = None
    # a factorization machine (streamgd.optim.factors): k factors per sparse slot (None: a linear model), their L2
    # penalty, the scale of their seeded initial values, and factors for the numeric columns too
    factors: int | None = None
    factor_l2: float = 2e-5
    factor_init: float = 0.05
    factor_numeric: bool = False
    factor_lr: float | None = None  # the factors' rate as a multiple of the run's (None: 0.3 under FTRL, else 1)
    field_aware: bool = False  # a field-aware FM: each categorical column (interaction, binned column) a field
    # the categorical columns that get factors: None or "auto" (the columns in pairs a sample shows pair effects
    # in: streamgd.features.interaction_search.search_factor_columns), "all" (every sparse entry), or names
    factor_fields: Any = None
    epsilon: float = 1.35  # huber: residuals beyond epsilon count linearly (scikit-learn's HuberRegressor default)
    class_weight: Any = None  # classifiers: None, "balanced" or {label: weight}
    sample_weight: str | None = None  # a column of per-row weights
    validation: float = 0.0  # fraction of units held out (chosen from the seed) and evaluated after each epoch
    validation_data: Any = None  # or a separate dataset (anything open_dataset accepts)
    early_stopping: int = 0  # stop after this many epochs without improvement (0: off)
    tol: float = 1e-4  # an improvement is a monitored loss below the best by more than tol
    checkpoint_dir: str | None = None
    checkpoint_every: int | str = 0  # chunks between checkpoints, or a time such as "30s" or "5m" (0: epoch ends)
    keep_checkpoints: int = 3
    resume: bool = False  # continue from the newest checkpoint in checkpoint_dir (if there is one)
    init: Any = None  # a LinearModel or model file to continue training from (epochs then counts more epochs)
    cache: str | None = None  # a directory: the epoch cache of transformed units (streamgd.data.cache)
    cache_max_size: str | int | None = None  # the cache's bound on disk, such as 20GB (None: no bound)
    # settings of the filesystems URIs name (s3://...: endpoint_override, region, retries, ...; streamgd.io.storage);
    # credentials may be among them, so they are never stored in a model file or a checkpoint
    storage_options: dict | None = None
    # training threads on this machine's cores (streamgd.training.threads: Hogwild); 1 trains as before
    threads: int = 1
    # the settings the data chose because the run named none ({"optimizer": "ftrl", ...}; resolve_defaults)
    chosen_defaults: dict | None = None

    def validate(self) -> TrainConfig:
        """Check every field, raising ConfigError with the field, its value and what is accepted; fill in the
        defaults that depend on the optimizer (schedule) and the model kind (clip_norm)."""
        model_cls = MODEL_KINDS.check(self.model)
        if self.optimizer is not None and not isinstance(self.optimizer, Optimizer):
            OPTIMIZERS.check(self.optimizer)
        if self.optimizer is None and self.optimizer_options:
            raise ConfigError(f"optimizer options {sorted(self.optimizer_options)} given without an optimizer; "
                              "name one (optimizer=...)")
        if self.lr_decay_unit is not None:
            _one_of("lr_decay_unit", self.lr_decay_unit, DECAY_UNITS)
        PENALTIES.check(self.penalty)
        if self.schedule is not None:
            SCHEDULES.check(self.schedule)
        _one_of("missing", self.missing, MISSING_POLICIES)
        _one_of("encoding", self.encoding, ENCODING_CHOICES)
        _one_of("dtype", self.dtype, DTYPES)
        if self.clip_norm is None:
            self.clip_norm = model_cls.default_clip_norm
        if self.batch_size is not None:
            self._check_batch_size()
        if self.epochs is not None and (not isinstance(self.epochs, (int, np.integer)) or self.epochs < 1):
            _bad("epochs", self.epochs, "a positive integer")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            _bad("lr", self.lr, "a positive number")
        for name in ("alpha", "clip_norm", "lr_decay", "lr_power"):
            value = getattr(self, name)
            if value is None and name in SCHEDULE_FALLBACKS:
                continue  # filled by resolve_defaults
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                _bad(name, value, "a number >= 0")
        if not 0.0 <= self.l1_ratio <= 1.0:
            _bad("l1_ratio", self.l1_ratio, "a number in [0, 1]")
        if not isinstance(self.prefetch_depth, int) or self.prefetch_depth < 0:
            _bad("prefetch_depth", self.prefetch_depth, "an integer >= 0")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            _bad("seed", self.seed, "an integer >= 0")
        if not isinstance(self.hash_bits, (int, np.integer)) or not 1 <= self.hash_bits <= 30:
            _bad("hash_bits", self.hash_bits, "an integer in [1, 30]")
        self.interactions = normalize_interactions(self.interactions)
        self.factor_fields = normalize_factor_fields(self.factor_fields)
        if self.interaction_bits is not None:
            check_hash_bits("interaction_bits", self.interaction_bits)
        self.transforms, self.bins = check_treatments(self.transforms, self.bins)
        categories = self.max_categories
        if not isinstance(categories, (int, np.integer)) or not 1 <= categories <= MAX_CATEGORIES_LIMIT:
            _bad("max_categories", self.max_categories, f"an integer in [1, {MAX_CATEGORIES_LIMIT}] (for more values "
                 "per column, hash them: hash_bits)")
        if not (isinstance(self.epsilon, (int, float)) and math.isfinite(self.epsilon) and self.epsilon > 0):
            _bad("epsilon", self.epsilon, "a positive number")
        if not (self.class_weight is None or self.class_weight == "balanced" or isinstance(self.class_weight, dict)):
            _bad("class_weight", self.class_weight, "None, 'balanced' or a mapping of label to weight")
        if isinstance(self.class_weight, dict) and not all(
                isinstance(w, (int, float)) and math.isfinite(w) and w >= 0 for w in self.class_weight.values()):
            _bad("class_weight", self.class_weight, "weights that are finite numbers >= 0")
        if self.class_weight is not None and not MODEL_KINDS[self.model].is_classifier:
            raise ConfigError(f"class_weight applies to classifiers; model {self.model!r} is a regressor")
        if not (isinstance(self.validation, (int, float)) and 0.0 <= self.validation < 1.0):
            _bad("validation", self.validation, "a fraction in [0, 1)")
        if self.validation and self.validation_data is not None:
            raise ConfigError("give validation (a fraction to hold out) or validation_data, not both")
        if not isinstance(self.early_stopping, (int, np.integer)) or self.early_stopping < 0:
            _bad("early_stopping", self.early_stopping, "an integer >= 0")
        self.checkpoint_every = parse_checkpoint_every(self.checkpoint_every)
        if not isinstance(self.keep_checkpoints, (int, np.integer)) or self.keep_checkpoints < 1:
            _bad("keep_checkpoints", self.keep_checkpoints, "an integer >= 1")
        if not (isinstance(self.tol, (int, float)) and math.isfinite(self.tol) and self.tol >= 0):
            _bad("tol", self.tol, "a number >= 0")
        if self.resume and self.init is not None:
            raise ConfigError("give init (start from a saved model) or resume (continue a checkpoint), not both")
        if self.resume and not self.checkpoint_dir:
            raise ConfigError("resume needs checkpoint_dir (the directory the interrupted run wrote to)")
        parse_shuffle(self.shuffle)
        parse_memory_budget(self.memory_budget)
        if self.cache is not None and not isinstance(self.cache, (str, os.PathLike)):
            _bad("cache", self.cache, "a directory path")
        if self.cache is not None:
            self.cache = os.fspath(self.cache)
        parse_size(self.cache_max_size, "cache_max_size")
        if self.storage_options is not None and not (isinstance(self.storage_options, dict) and all(
                isinstance(key, str) for key in self.storage_options)):
            _bad("storage_options", self.storage_options, "a dict of option names to values")
        if self.cache_max_size is not None and self.cache is None:
            raise ConfigError("cache_max_size bounds the epoch cache: give cache (a directory) too")
        if self.optimizer is not None and self.epochs is not None:
            self.resolve_defaults(sparse=False)  # nothing left for the data to choose
        self._check_factors(model_cls)
        self._check_threads()
        return self

    def _check_threads(self) -> None:
        """``threads``: between 1 and the cores this process may use (more threads than cores only take turns,
        which Hogwild's lost steps do not pay for), and only with the options several threads can honour."""
        threads = self.threads
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            _bad("threads", threads, "a positive integer (1: one training thread)")
        self.threads = int(threads)
        cores = available_cores()
        if self.threads > cores:
            raise ConfigError(f"threads={self.threads} is more than the {cores} cores this process may run on; "
                              f"use {cores} or fewer")
        if self.threads == 1:
            return
        if self.full_batch:
            raise ConfigError(f"threads={self.threads} trains mini-batches on several threads; batch_size='full' "
                              "steps once an epoch on one (leave threads at 1)")
        if self.memory_budget is not None:
            raise ConfigError(f"threads={self.threads} holds a chunk per thread, which memory_budget does not "
                              "count: give one or the other")

    def _check_factors(self, model_cls: Any) -> None:
        """A factorization machine's settings, refused with one line where they cannot work."""
        if self.factors is None:
            if self.factor_numeric:
                raise ConfigError("factor_numeric gives the numeric columns factors: give factors (k) too")
            if self.field_aware:
                raise ConfigError("field_aware makes the factors field-aware: give factors (k) too")
            if isinstance(self.factor_fields, list):
                raise ConfigError("factor_fields names the columns that get factors: give factors (k) too")
            return
        settings = self.factor_settings()  # checks k, the L2 penalty and the initial scale
        if model_cls.n_outputs(2) != 1:
            raise ConfigError(f"a factorization machine (factors={settings.k}) has one margin per row; the "
                              f"{model_cls.kind!r} model has one per class: use a binary or regression model")
        if settings.numeric and self.standardize and settings.field_aware:
            raise ConfigError("a field-aware factor_numeric needs standardize=False (--no-standardize): its pair "
                              "term of standardized columns does not fold into a model on raw inputs (a plain "
                              "FM's does)")
        if self.full_batch:
            raise ConfigError("a factorization machine trains in mini-batches; batch_size='full' steps a linear "
                              "model only")
        if self.optimizer is not None:
            optimizer = self.make_optimizer()
            check_factor_optimizer(optimizer.name, optimizer.code)

    def factor_settings(self) -> FactorSettings | None:
        """The factorization machine of the run (None: a linear model)."""
        if self.factors is None:
            return None
        columns = tuple(self.factor_fields) if isinstance(self.factor_fields, list) else None
        return FactorSettings(self.factors, self.factor_l2, self.factor_init, bool(self.factor_numeric),
                              bool(self.field_aware), self.factor_lr, columns)

    @property
    def resolved(self) -> bool:
        """Whether the optimizer, batch size, epochs and schedule are settled (resolve_defaults has run)."""
        return self.optimizer is not None and self.batch_size is not None and self.epochs is not None \
            and self.schedule is not None and self.lr_decay_unit is not None

    def resolve_defaults(self, sparse: bool) -> TrainConfig:
        """Fill what the run left as None from the model's shape: ``sparse`` (a sparse block: categorical
        columns) gives SPARSE_DEFAULTS, else DENSE_DEFAULTS; the batch size is the optimizer's default_batch_size
        and the schedule its default_schedule. What was chosen is kept in ``chosen_defaults`` (stored in the model
        and its checkpoints). Idempotent."""
        if self.resolved:
            return self
        table = SPARSE_DEFAULTS if sparse else DENSE_DEFAULTS
        chosen = dict(self.chosen_defaults or {})
        if self.optimizer is None:
            self.optimizer = chosen["optimizer"] = table["optimizer"]
        optimizer = self.make_optimizer()
        if self.batch_size is None:
            self.batch_size = chosen["batch_size"] = optimizer.default_batch_size
            self._check_batch_size()
        if self.epochs is None:
            one_pass = sparse and self.batch_size == 1
            self.epochs = chosen["epochs"] = SPARSE_DEFAULTS["epochs"] if one_pass else DENSE_DEFAULTS["epochs"]
        schedule = {**SCHEDULE_FALLBACKS, **optimizer.default_schedule}
        if self.lr_decay_unit is None:
            self.lr_decay_unit = "steps" if self.lr_decay is not None or self.full_batch else "rows"
        if self.schedule is None:
            self.schedule = schedule["schedule"]
        for name in SCHEDULE_FALLBACKS:
            if getattr(self, name) is None:
                setattr(self, name, schedule[name])
        for name in SCHEDULE_FALLBACKS:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                _bad(name, value, "a number >= 0")
        self.chosen_defaults = {"model": "sparse" if sparse else "dense", **chosen} if chosen else None
        if optimizer.constant_rate_reason is not None and self.schedule != "constant":
            raise ConfigError(f"optimizer {optimizer.name!r} takes a constant rate and schedule is "
                              f"{self.schedule!r}: {optimizer.constant_rate_reason} (schedule 'constant', with a "
                              "warmup if wanted)")
        self.make_schedule(steps_per_epoch=1)
        if self.factors is not None:
            check_factor_optimizer(optimizer.name, optimizer.code)
        return self

    def defaults_note(self) -> str | None:
        """One line saying what the data chose (None when the run named everything)."""
        return describe_chosen_defaults(self.chosen_defaults)

    def _check_batch_size(self) -> None:
        if isinstance(self.batch_size, str) and self.batch_size != "full":
            try:
                self.batch_size = int(self.batch_size)
            except ValueError:
                _bad("batch_size", self.batch_size, "a positive integer or 'full'")
        if not isinstance(self.batch_size, str) and (not isinstance(self.batch_size, (int, np.integer))
                                                     or self.batch_size < 1):
            _bad("batch_size", self.batch_size, "a positive integer or 'full'")

    @property
    def full_batch(self) -> bool:
        return self.batch_size == "full"

    def make_optimizer(self) -> Optimizer:
        if self.optimizer is None:
            raise ConfigError("the optimizer is chosen from the data when the run starts (resolve_defaults); "
                              "name one to know it before")
        return make_optimizer(self.optimizer, **self.optimizer_options)

    @property
    def learning_rate(self) -> float:
        """The base learning rate: ``lr``, else the optimizer's own, else its default for this batch size times the
        model kind's ``default_lr_scale``."""
        if self.lr is not None:
            return float(self.lr)
        optimizer = self.make_optimizer()
        if optimizer.lr is not None:
            return float(optimizer.lr)
        return optimizer.base_lr(self.full_batch, self.batch_size) * MODEL_KINDS[self.model].default_lr_scale

    def make_schedule(self, steps_per_epoch: int) -> Schedule:
        """The learning-rate schedule of a run of ``epochs`` epochs of ``steps_per_epoch`` steps."""
        rows_per_step = self.batch_size if self.lr_decay_unit == "rows" and not self.full_batch else 1
        return make_schedule(self.schedule, self.learning_rate, total_steps=steps_per_epoch * self.epochs,
                             steps_per_epoch=steps_per_epoch, warmup_steps=self.warmup, decay=self.lr_decay,
                             power=self.lr_power, gamma=self.lr_gamma, step_size=self.lr_step_size,
                             lr_min=self.lr_min, rows_per_step=rows_per_step)

    def to_dict(self) -> dict:
        """JSON-ready settings, the optimizer written out with all its hyperparameters."""
        # a model object is not a setting (stored as its path); storage options are the machine's, not the run's
        settings = asdict(replace(self, init=None, storage_options=None))
        del settings["storage_options"]
        if self.init is not None:
            from .warm_start import describe_init

            settings["init"] = describe_init(self.init)
        if settings["validation_data"] is not None:
            settings["validation_data"] = str(settings["validation_data"])
        if self.optimizer is None:  # not resolved yet: the data choose it when the run starts
            settings["optimizer"], settings["lr"] = None, self.lr
            return settings
        optimizer = self.make_optimizer().config()
        settings["optimizer"] = optimizer["name"]
        settings["optimizer_options"] = {k: v for k, v in optimizer.items() if k not in ("name", "state")}
        settings["lr"] = self.learning_rate
        return settings

    def resume_key(self) -> dict:
        """The settings a checkpoint must share with a run that resumes from it (all that shape the result)."""
        settings = self.to_dict()
        # the cache gives bit-identical chunks: it shapes nothing; threads: compared by the Trainer (a checkpoint
        # written before the setting existed has none, and was written by one thread)
        for name in ("checkpoint_dir", "checkpoint_every", "keep_checkpoints", "resume", "prefetch_depth", "init",
                     "cache", "cache_max_size", "threads"):
            settings.pop(name)
        return settings

    @property
    def effective_l1_ratio(self) -> float:
        return PENALTIES[self.penalty].l1_ratio(self.l1_ratio)

    @property
    def effective_alpha(self) -> float:
        return PENALTIES[self.penalty].alpha(self.alpha)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def normalize_interactions(value: Any) -> list[list[str]] | None:
    """None for "auto" (the data choose), [] for "none", else the pairs as lists.

    >>> normalize_interactions("auto"), normalize_interactions("none"), normalize_interactions("C1:C2")
    (None, [], [['C1', 'C2']])
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == AUTO_INTERACTIONS):
        return None
    if isinstance(value, str) and value.strip().lower() == NO_INTERACTIONS:
        return []
    return [list(pair) for pair in parse_interactions(value)]


def normalize_factor_fields(value: Any) -> str | list[str] | None:
    """None for "auto" (a sample chooses), "all", else the column names as a list (a string joins them by ',').

    >>> normalize_factor_fields("auto"), normalize_factor_fields("all"), normalize_factor_fields("C6, C9")
    (None, 'all', ['C6', 'C9'])
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == AUTO_INTERACTIONS):
        return None
    if isinstance(value, str) and value.strip().lower() == ALL_FACTOR_FIELDS:
        return ALL_FACTOR_FIELDS
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) and name.strip() for name in names) \
            or not names:
        _bad("factor_fields", value, "auto, all, or categorical column names (a list, or a string joined by ',')")
    names = [name.strip() for name in names]
    if len(set(names)) != len(names):
        _bad("factor_fields", value, "each column named once")
    return names


def describe_chosen_defaults(chosen_defaults: dict | None) -> str | None:
    """One line for a model's ``chosen_defaults`` setting (None when the run named everything)."""
    if not chosen_defaults:
        return None
    chosen = dict(chosen_defaults)
    kind = "a sparse block (categorical columns)" if chosen.pop("model") == "sparse" else "dense features only"
    words = {"optimizer": lambda v: f"optimizer {v}", "batch_size": lambda v: f"batch size {v}",
             "epochs": lambda v: f"{v} epoch" + ("" if v == 1 else "s"),
             "interactions": lambda v: "interactions " + (", ".join(v) if v else "none")}
    options = ("--optimizer, --batch-size, --epochs and --interactions" if "interactions" in chosen
               else "--optimizer, --batch-size and --epochs")
    return (f"defaults for a model with {kind}: " + ", ".join(words[k](v) for k, v in chosen.items())
            + f" ({options} choose otherwise)")


def parse_checkpoint_every(value: int | str) -> int | str:
    """A number of chunks (an int, or digits) or a time ("30s", "5m", "1.5h"), checked; returned normalized.

    >>> parse_checkpoint_every("100"), parse_checkpoint_every("30s"), checkpoint_interval_seconds("2m")
    (100, '30s', 120.0)
    """
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    if isinstance(value, str) and checkpoint_interval_seconds(value) is not None:
        return value.strip()
    _bad("checkpoint_every", value, "a number of chunks >= 0 or a time such as 30s, 5m or 1h")


def check_treatments(transforms: Any, bins: Any) -> tuple[list[str] | None, list[str] | None]:
    """``transforms`` and ``bins`` as lists of their texts (a single text or number is a list of one), each parsed
    once so that a typo is said before the statistics pass; None when empty."""
    texts = []
    for name, value, parse in (("transforms", transforms, parse_transform), ("bins", bins, parse_bins)):
        if value is None or (isinstance(value, (list, tuple)) and not value):
            texts.append(None)
            continue
        items = [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(item, (str, int)) for item in items):
            _bad(name, value, "a text such as 'log1p:I*' (bins: '32' or '32:I*') or a list of them")
        for item in items:
            parse(item)
        texts.append([str(item) for item in items])
    return texts[0], texts[1]


def _one_of(name: str, value: Any, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        _bad(name, value, f"one of {', '.join(accepted)}")


def _bad(name: str, value: Any, accepted: str) -> None:
    raise ConfigError(f"{name}={value!r} is not accepted; expected {accepted}")
