"""A run's set-up, written once: the data opened for the memory budget, the validation split, the classes and
class weights, the statistics pass, the FeatureSpec and standardizer, the optimizer state, and where training
starts (fresh, from a checkpoint, or continuing a saved model).

The passes over the data (statistics, classes, class counts) go through ``DataScans``: this process's
(``LocalScans``) or dask's workers' (``streamgd.distributed.DaskEpochs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from ..data.columns import did_you_mean, is_numeric_type, is_temporal_type
from ..data.dataset import Dataset, open_dataset
from ..data.memory_plan import MemoryPlan, plan_for_dataset
from ..data.reader import default_target_encoder, parse_memory_budget
from ..data.shuffle import parse_shuffle
from ..errors import ConfigError, DataError
from ..features.encoding_choice import choose_encodings
from ..features.interaction_search import (
    FACTOR_SAMPLE_ROWS,
    MAX_PAIRS,
    SAMPLE_ROWS,
    describe_factor_search,
    read_samples,
    describe_search,
    search_factor_columns,
    search_interactions,
)
from ..features.spec import FeatureSpec
from ..features.standardize import Standardizer
from ..features.stats import DatasetStats, compute_stats
from ..features.stats_cache import cached_statistics
from ..features.targets import LabelEncoder, NonNegativeTarget, class_counts, scan_classes, to_json_labels
from ..features.transforms import ColumnTreatment, heavy_tail_note, treatments
from ..kernels.update_rules import OPT_FTRL
from ..models.linear import MODEL_KINDS, LinearModel
from ..optim.factors import spec_fields
from ..optim.state import initial_state, kernel_hyper
from .checkpoint import Checkpoint, check_resumable, fingerprint
from .config import ALL_FACTOR_FIELDS, TrainConfig
from .epoch import steps_per_epoch
from .holdout import holdout_units
from .state import Run, TrainState
from .warm_start import check_data, check_settings, describe_init, starting_point, stored_standardizer

__all__ = ["DataScans", "LocalScans", "RunSetup", "needs_feature_spec", "open_training_data"]


class DataScans(Protocol):
    """Where the set-up's passes over the data run."""

    def statistics(self, dataset: Dataset, columns: list[str], categorical: list[str],
                   max_categories: int, treatments: dict | None = None) -> DatasetStats:
        """The statistics pass (as ``compute_stats``)."""

    def classes(self, dataset: Dataset) -> list:
        """The class labels of the target (as ``scan_classes``)."""

    def class_counts(self, dataset: Dataset, encoder: LabelEncoder) -> np.ndarray:
        """Rows per class (as ``class_counts``)."""


class LocalScans:
    """The set-up's passes in this process (``workers`` reader threads for the statistics pass)."""

    def __init__(self, workers: int = 2):
        self.workers = workers

    def statistics(self, dataset: Dataset, columns: list[str], categorical: list[str],
                   max_categories: int, treatments: dict | None = None) -> DatasetStats:
        extra = {"treatments": treatments} if treatments else {}
        return compute_stats(dataset, columns, categorical, max_categories, workers=self.workers, **extra)

    def classes(self, dataset: Dataset) -> list:
        return scan_classes(dataset)

    def class_counts(self, dataset: Dataset, encoder: LabelEncoder) -> np.ndarray:
        return class_counts(dataset, encoder)


def open_training_data(cfg: TrainConfig, data: Any, target: str | None = None,
                       features: Sequence[str] | None = None, exclude: Sequence[str] = (),
                       init: LinearModel | None = None) -> tuple[Dataset, MemoryPlan | None]:
    """The data opened with units sized to the memory budget (``exclude``: columns left out of the features;
    ``init``: the model a run continues, whose categorical columns stay categorical) and the budget's plan."""
    categorical = cfg.categorical or ()
    if not categorical and init is not None and init.spec is not None:
        categorical = [column.name for column in init.spec.categorical]  # as the model was trained
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
            if features is not None and weight in features:  # named; matched by a glob or a selector is not
                raise ConfigError(f"the column {weight!r} is named both as a feature and as the sample weight")
            features = [name for name in probe.feature_names if name != weight]
    plan = None
    budget = parse_memory_budget(cfg.memory_budget)
    if budget is not None:
        plan = plan_for_dataset(budget, probe, np.dtype(cfg.dtype).itemsize, cfg.prefetch_depth,
                                parse_shuffle(cfg.shuffle).units_per_step, probe.categorical,
                                planned_interactions(cfg, probe), cached=cfg.cache is not None)
    if features is None and plan is None:
        return probe, None
    max_rows = plan.max_unit_rows if plan is not None else None
    return open_dataset(data, target=target, features=features, max_unit_rows=max_rows,
                        categorical=categorical, exclude=exclude, footers_of=probe,
                        storage_options=cfg.storage_options), plan


def may_search_interactions(cfg: TrainConfig, dataset: Dataset) -> bool:
    """Whether the run may search its interactions: it names none (``interactions`` None, "auto"), continues no
    model, and trains a logistic model of two or more categorical columns (a binary target, known later)."""
    return cfg.interactions is None and cfg.init is None and cfg.model == "logistic" and len(dataset.categorical) >= 2


def planned_interactions(cfg: TrainConfig, dataset: Dataset) -> int:
    """The interactions the memory plan allows for: the named ones, or the most a search may choose."""
    if cfg.interactions is not None:
        return len(cfg.interactions)
    return MAX_PAIRS if may_search_interactions(cfg, dataset) else 0


def needs_feature_spec(cfg: TrainConfig, dataset: Dataset) -> bool:
    """Whether the inputs need a FeatureSpec (categorical or date columns, a missing-value policy), not just
    numeric columns read as they are."""
    temporal = any(is_temporal_type(dataset.schema.field(name).type) for name in dataset.feature_names)
    treated = bool(cfg.transforms or cfg.bins)
    return bool(dataset.categorical) or cfg.missing != "error" or temporal or treated


class RunSetup:
    """Sets a run up from its config: ``start`` gives the fixed ``Run`` and the ``TrainState`` training starts
    from (``resumed_from``: the serial of the checkpoint it continues, if any)."""

    def __init__(self, cfg: TrainConfig, scans: DataScans, init: LinearModel | None = None,
                 memory_plan: MemoryPlan | None = None, settings: dict | None = None):
        self.cfg = cfg
        self.scans = scans
        self.init = init  # the model this run continues (config ``init``)
        self.memory_plan = memory_plan
        self.settings = settings or {}  # the epoch source's settings a checkpoint must share (dask: workers)
        self.notes: list[str] = []  # lines for the user from the statistics pass (heavy-tailed columns)
        self.encodings: dict[str, str] = {}  # each categorical column's encoding (choose_encodings)
        self.resumed_from: int | None = None

    def start(self, dataset: Dataset, checkpoint: Checkpoint | None = None, classes: list | None = None
              ) -> tuple[Run, TrainState]:
        """The run on ``dataset`` and its starting state (``classes``: the class labels when known, else
        scanned)."""
        cfg, init = self.cfg, self.init
        train, validation = self._split(dataset)
        model_cls = MODEL_KINDS[cfg.model]
        classes, encoder = self._classes(dataset, model_cls, classes)
        if model_cls.needs_nonnegative_target:
            encoder = NonNegativeTarget(encoder, dataset.target, model_cls.kind)
        class_weights = self._class_weights(train, classes, encoder)
        n_out = model_cls.n_outputs(len(classes) if classes else None)
        if init is not None:  # its spec and transform: no statistics pass
            cfg.resolve_defaults(sparse=init.spec is not None and init.spec.n_slots > 0)
            self._check_continuable(train, classes)
            columns = (init.factorization or {}).get("columns")
            cfg.factor_fields = list(columns) if columns else ALL_FACTOR_FIELDS  # the model's factor columns
            stats, spec, feature_names = None, init.spec, init.feature_names
            slots = spec.n_slots if spec is not None else 0
        else:
            self._check_interactions(train)
            samples = self._search_samples(train, classes, encoder)
            self._search_interactions(train, classes, encoder, samples.get("interactions"))
            self._choose_factor_fields(train, classes, encoder, samples.get("factors"))
            del samples  # up to 700k rows x each categorical column as int64: not held beside the parameters
            self.encodings = choose_encodings(train, train.categorical, self.cfg.encoding, self.cfg.max_categories)
            stats = self._statistics(train)
            spec = self._feature_spec(train, stats)
            feature_names = spec.output_names if spec is not None else dataset.model_feature_names
            slots = spec.n_slots if spec is not None else dataset.n_slots
            cfg.resolve_defaults(sparse=slots > 0)  # the optimizer, batch size and epochs the run left to the data
        optimizer = cfg.make_optimizer()
        factors = cfg.factor_settings()
        hyper = kernel_hyper(optimizer, cfg.effective_alpha, cfg.effective_l1_ratio, cfg.clip_norm, cfg.epsilon,
                             factors)
        per_coordinate = cfg.batch_size == 1 and slots > 0 and n_out == 1  # what the batch-1 sparse loop reads
        params, opt_state = initial_state(optimizer, hyper, len(feature_names), n_out, slots, cfg.full_batch,
                                          factors, cfg.seed, spec_fields(spec, slots), per_coordinate)
        if init is not None:
            standardizer = stored_standardizer(init)
            params, opt_state, step, epoch = starting_point(init, describe_init(cfg.init), standardizer, opt_state)
            state = TrainState(params=params, opt_state=opt_state, step=step, epoch=epoch, first_epoch=epoch,
                               history=list(init.history))
            state.start_epoch(cfg.full_batch)
        elif checkpoint is not None:
            wanted = {**cfg.resume_key(), **self.settings}
            check_resumable(checkpoint, wanted, fingerprint(dataset), cfg.checkpoint_dir)
            state = TrainState.from_checkpoint(checkpoint, per_coordinate)
            self.resumed_from = checkpoint.serial
            standardizer = Standardizer(*checkpoint.standardizer) if checkpoint.standardizer else None
        else:
            state = TrainState(params=params, opt_state=opt_state)
            state.start_epoch(cfg.full_batch)
            standardizer = self._standardizer(stats, spec) if cfg.standardize else None
        schedule = cfg.make_schedule(steps_per_epoch(cfg, train))
        return Run(train, validation, model_cls, classes, encoder, n_out, optimizer, hyper, schedule, standardizer,
                   class_weights, spec, feature_names, stats, memory_plan=self.memory_plan), state

    # ---- continuing a model ------------------------------------------------------------------------------------
    def _check_continuable(self, train: Dataset, classes: list | None) -> None:
        """The model to continue has this run's settings, classes and inputs (see warm_start.py)."""
        cfg, model = self.cfg, self.init
        name = describe_init(cfg.init)
        check_settings(model, cfg.to_dict(), name)
        check_data(model, name, to_json_labels(classes) if classes else None, list(train.feature_names),
                   ordered=model.spec is None)
        if cfg.make_optimizer().code == OPT_FTRL:
            raise ConfigError("ftrl keeps its weights in its own state (z, n), so it cannot continue a saved model "
                              "(--init); train it from the start")

    # ---- features ----------------------------------------------------------------------------------------------
    def _statistics(self, train: Dataset) -> DatasetStats | None:
        """The statistics pass over the input columns, when standardization or a FeatureSpec needs it."""
        cfg = self.cfg
        if not (cfg.standardize or needs_feature_spec(cfg, train)):
            return None
        # hashing needs no vocabulary: the pass then reads the numeric columns only
        counted = [name for name in train.categorical if self.encodings.get(name) == "onehot"]
        columns = [name for name in train.feature_names if name not in train.categorical or name in counted]
        treated = self._treatments(train)
        extra = {"treatments": treated} if treated else {}  # transforms and bins: computed inside the pass

        def compute() -> DatasetStats:
            return self.scans.statistics(train, columns, counted, cfg.max_categories, **extra)

        if cfg.cache is not None and train.table is None and train.dask_frame is None:  # a later run skips the pass
            stats = cached_statistics(cfg.cache, train, columns, counted, cfg.max_categories, compute, **extra)
        else:
            stats = compute()
        self._note_heavy_tails(train, stats, treated)
        return stats

    def _treatments(self, train: Dataset) -> dict[str, ColumnTreatment]:
        """The numeric feature columns' transforms and bins (``transforms`` and ``bins`` of the config)."""
        numeric = [name for name in train.feature_names if name not in train.categorical]
        return treatments(numeric, self.cfg.transforms, self.cfg.bins)

    def _note_heavy_tails(self, train: Dataset, stats: DatasetStats, treated: dict) -> None:
        """``self.notes``: a line naming the untreated numeric features whose values are heavy-tailed, if any."""
        skewness = {name: stats.columns[name].skewness for name in train.feature_names
                    if name not in train.categorical and name not in treated and name in stats.columns}
        note = heavy_tail_note(skewness)
        self.notes += [] if note is None else [note]

    def _check_interactions(self, train: Dataset) -> None:
        """Every column an interaction names must be a categorical feature: said before the statistics pass."""
        for pair in self.cfg.interactions or ():
            for name in pair:
                if name not in train.categorical:
                    kind = "not in the data" if name not in train.schema.names else (
                        "not a feature" if name not in train.feature_names else "not categorical")
                    kind += did_you_mean(name, train.categorical)
                    raise ConfigError(f"--interactions names {name!r}, which is {kind}; interactions pair "
                                      f"categorical columns ({', '.join(train.categorical) or 'there are none'}; "
                                      "--categorical makes a column categorical)")

    def _search_samples(self, train: Dataset, classes: list | None, encoder: Any) -> dict:
        """When both searches will run, their two samples read in one pass over their units (``read_samples``);
        else nothing (a search reads its own)."""
        cfg = self.cfg
        binary = len(classes or ()) == 2 and len(train.categorical) >= 2
        if not (binary and may_search_interactions(cfg, train) and cfg.factors is not None
                and cfg.factor_fields is None):
            return {}
        found = read_samples(train, list(train.categorical), encoder.encode, [SAMPLE_ROWS, FACTOR_SAMPLE_ROWS])
        return dict(zip(["interactions", "factors"], found))

    def _search_interactions(self, train: Dataset, classes: list | None, encoder: Any, sample: Any = None) -> None:
        """A binary model of two or more categorical columns that names no interactions crosses the pairs found
        on a sample of the data (streamgd.features.interaction_search); recorded in ``chosen_defaults``."""
        cfg = self.cfg
        if not (may_search_interactions(cfg, train) and len(classes or ()) == 2):
            return
        found = search_interactions(train, list(train.categorical), encoder.encode, sample=sample)
        cfg.interactions = [[pair.a, pair.b] for pair in found.chosen]
        cfg.chosen_defaults = {"model": "sparse", **(cfg.chosen_defaults or {}),
                               "interactions": [pair.label for pair in found.chosen]}
        self.notes.append(describe_search(found, len(train.categorical)))

    def _choose_factor_fields(self, train: Dataset, classes: list | None, encoder: Any, sample: Any = None) -> None:
        """A factorization machine's factor columns: the ones named (checked to be categorical), or under "auto"
        those a sample shows in pairs with pair effects (a binary model of two or more categorical columns;
        streamgd.features.interaction_search.search_factor_columns), else every column ("all")."""
        cfg = self.cfg
        if cfg.factors is None:
            return
        if isinstance(cfg.factor_fields, list):
            for name in cfg.factor_fields:
                if name not in train.categorical:
                    kind = "not in the data" if name not in train.schema.names else "not categorical"
                    raise ConfigError(f"--factor-fields names {name!r}, which is {kind}"
                                      f"{did_you_mean(name, train.categorical)}; factors go to categorical columns "
                                      f"({', '.join(train.categorical) or 'there are none'})")
            return
        if cfg.factor_fields is not None or len(train.categorical) < 2 or len(classes or ()) != 2:
            cfg.factor_fields = ALL_FACTOR_FIELDS
            return
        found = search_factor_columns(train, list(train.categorical), encoder.encode, sample=sample)
        cfg.factor_fields = found.columns or ALL_FACTOR_FIELDS
        self.notes.append(describe_factor_search(found, len(train.categorical)))

    def _feature_spec(self, train: Dataset, stats: DatasetStats | None) -> FeatureSpec | None:
        cfg = self.cfg
        if not needs_feature_spec(cfg, train):
            return None
        numeric = [name for name in train.feature_names if name not in train.categorical]
        categorical = list(train.categorical)
        if isinstance(cfg.factor_fields, list):  # the factor columns first: the kernels take a row's first entries
            categorical = cfg.factor_fields + [name for name in categorical if name not in cfg.factor_fields]
        spec = FeatureSpec.fit(numeric, categorical, stats, missing=cfg.missing, encoding=cfg.encoding,
                               hash_bits=cfg.hash_bits, max_categories=cfg.max_categories,
                               interactions=[tuple(pair) for pair in cfg.interactions or ()],
                               interaction_bits=cfg.interaction_bits, encodings=self.encodings)
        treated = self._treatments(train)
        return spec.with_treatments(treated, stats) if treated else spec

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

    # ---- data and classes --------------------------------------------------------------------------------------
    def _split(self, dataset: Dataset) -> tuple[Dataset, Dataset | None]:
        cfg = self.cfg
        if cfg.validation:
            train_units, held_units = holdout_units(dataset.units, cfg.validation, cfg.seed)
            return dataset.subset(train_units), dataset.subset(held_units)
        if cfg.validation_data is not None:
            held = open_dataset(cfg.validation_data, target=dataset.target, features=dataset.feature_names,
                                storage_options=cfg.storage_options)
            return dataset, held
        return dataset, None

    def _classes(self, dataset: Dataset, model_cls: type[LinearModel], known: list | None
                 ) -> tuple[list | None, Any]:
        if not model_cls.is_classifier:
            return None, default_target_encoder
        classes = known if known is not None else self.scans.classes(dataset)
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
        wanted = self.cfg.class_weight
        if wanted is None:
            return None
        if wanted == "balanced":
            counts = self.scans.class_counts(dataset, encoder)
            return counts.sum() / (len(classes) * np.maximum(counts, 1))
        unknown = [label for label in wanted if label not in classes]
        if unknown:
            raise ConfigError(f"class_weight names {unknown[0]!r}, which is not a class of {dataset.target!r} "
                              f"(classes: {classes})")
        return np.array([float(wanted.get(label, 1.0)) for label in classes])
