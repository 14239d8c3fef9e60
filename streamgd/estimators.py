"""scikit-learn estimators over streamgd's trainer.

``SGDClassifier`` mirrors ``sklearn.linear_model.SGDClassifier`` (losses ``log_loss``, ``hinge``,
``squared_hinge``) and ``SGDRegressor`` mirrors ``sklearn.linear_model.SGDRegressor`` (``squared_error``,
``huber``, and ``poisson``). ``fit`` trains on arrays or data frames with the same Trainer as ``streamgd fit``
(the rows become an in-memory table cut into units of 65,536 rows, so a Parquet file written with row groups of
that size trains to the same model), ``fit_parquet`` streams a Parquet dataset out of core, and ``partial_fit``
trains one epoch of the same core on each batch it is given, continuing the optimizer's state: its row order
comes from the shuffle package with the call number as the epoch, so ``partial_fit`` called k times on the rows
``fit`` trains on gives ``fit(max_iter=k)``'s model bit for bit (with ``n_iter_no_change=0``: ``partial_fit``
never stops early).

``scipy.sparse`` input (CSR; CSC, COO and the other formats are converted to CSR, as scikit-learn's own
``SGDClassifier`` takes them) is never made dense: the units are row ranges of the matrix and each chunk's sparse
block is the rows of its units in the plan's row order, trained by the sparse kernels' lazy updates, so a
``FeatureHasher(2**20)`` matrix trains in memory proportional to its entries and the parameters. Shuffling,
epochs, weights, class weights, early stopping and ``partial_fit`` behave as for dense input. Sparse input is
not standardized (scikit-learn does not centre sparse input either: it would make the matrix dense); scale its
columns beforehand if their scales differ (``sklearn.preprocessing.MaxAbsScaler``).

``transforms`` and ``bins`` are ``streamgd.fit``'s (``["log1p:x*"]``, ``["16:x3"]``; columns named ``x0, x1, ...``
or by the data frame's columns): the model's FeatureSpec applies them in ``fit``, ``partial_fit`` and every
prediction alike; ``coef_`` then holds the coefficients of the transformed inputs, then of the bins' slots.

>>> import numpy as np
>>> rng = np.random.default_rng(0); X = rng.standard_normal((500, 3)); y = (X @ [2.0, -1.0, 0.5] > 0)
>>> clf = SGDClassifier(random_state=0).fit(X, y)
>>> clf.classes_.tolist(), clf.coef_.shape, round(clf.score(X, y), 2) >= 0.95
([False, True], (1, 3), True)
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as error:  # an optional dependency
    raise ImportError("streamgd.estimators needs scikit-learn >= 1.6: pip install 'streamgd[sklearn]'") from error

from .data.dataset import Dataset, open_table
from .data.sparse_block import SparseBlock
from .errors import DataError
from .features.targets import scan_classes, to_json_labels
from .models.linear import LinearModel
from .training.chunk_step import chunk_job
from .training.config import TrainConfig
from .training.epoch import train_epochs
from .training.model_of_run import assemble_model, training_params
from .training.run_setup import needs_feature_spec, open_training_data
from .training.state import Run, TrainState
from .training.trainer import Trainer

TARGET_COLUMN = "__target__"
WEIGHT_COLUMN = "__sample_weight__"
CLASSIFIER_LOSSES = {"log_loss": "logistic", "hinge": "svm", "squared_hinge": "squared-hinge"}
REGRESSOR_LOSSES = {"squared_error": "linear", "huber": "huber", "poisson": "poisson"}
# what validate_data accepts: float arrays, and scipy.sparse matrices and arrays converted to CSR (not densified)
INPUT = dict(accept_sparse="csr", dtype=[np.float64, np.float32])


def _is_sparse(X: Any) -> bool:
    """Whether X is a ``scipy.sparse`` matrix or array (without importing SciPy for dense input)."""
    return hasattr(X, "tocsr") and hasattr(X, "nnz")


def _seed(random_state: Any) -> int:
    """streamgd's seed from scikit-learn's ``random_state``: None is seed 0 (streamgd is deterministic by
    default), an int is itself, a RandomState draws one."""
    if random_state is None:
        return 0
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _sample_weight(sample_weight: Any, n_rows: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.ndim == 0:
        weights = np.full(n_rows, float(weights))
    if weights.shape != (n_rows,):
        raise ValueError(f"sample_weight.shape == {weights.shape}, expected {(n_rows,)}")
    if not np.all(np.isfinite(weights)) or (weights < 0).any():
        raise ValueError("sample_weight must hold finite numbers >= 0")
    if n_rows and not weights.any():
        raise ValueError("the sample weights are all zero: there is nothing to train on")
    return weights


@dataclass
class _Session:
    """What ``partial_fit`` continues from: a run's fixed settings (without its data or schedule, which are
    given again for each call) and its state. Each call is one epoch of the epoch driver (``streamgd.training.epoch``)
    over the batch, the epoch number counting the calls, so k calls on the rows ``fit`` trains on are
    ``fit(max_iter=k)``."""

    config: TrainConfig
    run: Run
    state: TrainState
    steps_per_epoch: int
    calls: int = 0

    @classmethod
    def start(cls, config: TrainConfig, dataset: Dataset, classes: list | None) -> _Session:
        """A fresh session, its statistics (standardization) from the first batch, as ``fit`` takes them."""
        trainer = Trainer(config)
        try:
            trainer.prepare(dataset, classes)
        except DataError as error:  # scikit-learn's contract: bad data is a ValueError
            raise ValueError(str(error)) from None
        return cls._of(trainer, 0)

    @classmethod
    def from_trainer(cls, trainer: Trainer) -> _Session:
        """Continue where ``Trainer.fit`` stopped (its last state, not an early-stopping best)."""
        session = cls._of(trainer, 0)
        session.state.best = {}
        return session

    @classmethod
    def _of(cls, trainer: Trainer, calls: int) -> _Session:
        run, state = trainer.run, trainer.state
        steps = trainer.steps_per_epoch(run.train)
        run = replace(run, train=None, validation=None, schedule=None)  # no data kept; schedules are closures
        state = replace(state, params=training_params(state), opt_state=state.opt_state.copy(),
                        history=list(state.history), unfolded_linear=None)
        # weights are per call; partial_fit never stops early (its model is the last call's)
        return cls(replace(trainer.config, sample_weight=None, early_stopping=0), run, state, steps, calls)

    @property
    def step(self) -> int:
        return self.state.step

    def train(self, dataset: Dataset, weighted: bool) -> dict:
        """One epoch over the batch ``dataset`` (its weight column when ``weighted``); its history record."""
        cfg = self.config
        run = replace(self.run, train=dataset, schedule=cfg.make_schedule(self.steps_per_epoch))
        job = replace(chunk_job(cfg, run), sample_weight=WEIGHT_COLUMN if weighted else None)
        self.state.finished = False  # never stops early: each call is one more epoch
        try:
            train_epochs(cfg, run, job, self.state, last_epoch=self.state.epoch + 1)
        except DataError as error:
            raise ValueError(str(error)) from None
        self.calls += 1
        return self.state.history[-1]

    def model(self, n_rows: int) -> LinearModel:
        """The model of the current parameters, on raw (unstandardized) inputs."""
        return assemble_model(self.config, self.run, self.state, TARGET_COLUMN, n_rows,
                                   {"partial_fit_calls": self.calls})


class _StreamgdSGD(BaseEstimator):
    """What the classifier and the regressor share: the settings, fitting in memory, from Parquet and in parts."""

    _losses: dict[str, str] = {}

    # ---- settings ----------------------------------------------------------------------------------------------
    def _kind(self, n_classes: int | None) -> str:
        if self.loss not in self._losses:
            raise ValueError(f"loss={self.loss!r} is not supported; expected one of {', '.join(self._losses)}")
        return self._losses[self.loss]

    def _config(self, kind: str, sparse: bool = False, **extra: Any) -> TrainConfig:
        """The run's settings; ``sparse`` input is not standardized (see the module docstring). ``factors``: a
        factorization machine over the input columns (dense columns: each with factors of its own, so unscaled:
        ``standardize=False``); ``field_aware``: each column of a sparse matrix is a field of its own."""
        factors = getattr(self, "factors", None)
        if factors is not None:
            if not sparse and self.standardize and getattr(self, "field_aware", False):
                raise ValueError(f"factors={factors!r}, field_aware=True on dense input gives each column factors "
                                 "per field, whose pair term of standardized columns does not fold into a model "
                                 "on raw inputs: pass standardize=False (and scale the columns yourself), or "
                                 "sparse input")
            extra.update(factors=factors, field_aware=bool(getattr(self, "field_aware", False)),
                         factor_numeric=not sparse)
        elif getattr(self, "field_aware", False):
            raise ValueError("field_aware=True makes the factors field-aware: give factors (k) too")
        return TrainConfig(model=kind, batch_size=self.batch_size, epochs=self.max_iter, lr=self.lr,
                           schedule=self.schedule, optimizer=self.optimizer, penalty=self.penalty,
                           alpha=self.alpha, l1_ratio=self.l1_ratio, shuffle=self.shuffle,
                           seed=_seed(self.random_state), dtype="float64",
                           standardize=self.standardize and not sparse,
                           early_stopping=self.n_iter_no_change, tol=self.tol, transforms=self.transforms,
                           bins=self.bins, **extra).validate()

    def _feature_names(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        return [str(name) for name in names] if names is not None else [f"x{j}" for j in range(self.n_features_in_)]

    # ---- fitting -----------------------------------------------------------------------------------------------
    def _table(self, X: Any, y: np.ndarray, weights: np.ndarray | None) -> Dataset:
        """The rows as an in-memory table cut into units of 65,536 rows (as a Parquet file of such row groups); a
        sparse X stays a sparse matrix beside the table of the target and weights, its units row ranges."""
        sparse = _is_sparse(X)
        names = [] if sparse else self._feature_names()
        columns = {name: X[:, j] for j, name in enumerate(names)}
        columns[TARGET_COLUMN] = y
        if weights is not None:
            columns[WEIGHT_COLUMN] = weights
        return open_table(pa.table(columns), target=TARGET_COLUMN, features=names,
                          sparse=SparseBlock.from_csr(X) if sparse else None)

    def _partial_fit(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None, kind: str,
                     classes: list | None, **extra: Any) -> None:
        """One epoch of the core over this batch, continuing the session (started here on the first call)."""
        sparse = _is_sparse(X)
        if not hasattr(self, "_session"):
            self._session = _Session.start(self._config(kind, sparse, **extra), self._table(X, y, weights), classes)
        elif sparse and self._session.run.standardizer is not None:
            raise ValueError("this model standardizes its inputs (it started on dense input with standardize=True), "
                             "and sparse input cannot be standardized without making it dense: pass dense input, "
                             "or start again with standardize=False")
        self._session.train(self._table(X, y, weights), weights is not None)
        self.model_ = self._session.model(X.shape[0])
        self._set_fitted(self.model_)

    def _fit_arrays(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None, kind: str,
                    **extra: Any) -> Trainer:
        if weights is not None:
            extra["sample_weight"] = WEIGHT_COLUMN
        dataset = self._table(X, y, weights)
        trainer = Trainer(self._config(kind, _is_sparse(X), **extra))
        try:
            self.model_ = trainer.fit(dataset)
        except DataError as error:  # scikit-learn's contract: bad data is a ValueError
            raise ValueError(str(error)) from None
        self._session = _Session.from_trainer(trainer)
        self._set_fitted(self.model_)
        return trainer

    def fit_parquet(self, data: Any, target: str, features: list[str] | None = None,
                    sample_weight: str | None = None, exclude: Sequence[str] = (), cache: str | None = None,
                    cache_max_size: str | int | None = None, storage_options: dict | None = None) -> _StreamgdSGD:
        """Train out of core on a Parquet file, directory or glob (anything ``streamgd.open_dataset`` takes, an
        ``s3://`` prefix read with ``storage_options`` too), streamed chunk by chunk; ``sample_weight`` names a
        column of per-row weights, ``exclude`` columns (an id) left out of the default features (the numeric
        columns); ``cache`` a
        directory for the epoch cache (``streamgd.data.cache``: the second and later epochs, and later fits, read
        the transformed units from it), bounded by ``cache_max_size`` (such as ``"20GB"``). Data that would need a
        FeatureSpec (categorical or date columns) is refused before anything is read."""
        self._reset()
        extra: dict[str, Any] = {"sample_weight": sample_weight, "cache": cache, "cache_max_size": cache_max_size,
                                 "storage_options": storage_options}
        if getattr(self, "class_weight", None) is not None:
            extra["class_weight"] = self.class_weight
        config = self._config(self._kind(None), **extra)
        # the default features are the numeric columns: scikit-learn's arrays hold numbers (streamgd.fit takes text)
        features = ["numeric"] if features is None else features
        dataset, _ = open_training_data(config, data, target, features, exclude)  # footers only
        if needs_feature_spec(config, dataset):  # its model would predict on tables, not on scikit-learn's arrays
            why = f"the columns {', '.join(map(repr, dataset.categorical))} are categorical" if dataset.categorical \
                else "its features need a FeatureSpec (dates)"
            raise ValueError(f"fit_parquet takes numeric feature columns and {why}; use streamgd.fit for them")
        classes = self._scan_classes(dataset)  # the one pass over the target; the Trainer is given its result
        trainer = Trainer(self._config(self._kind(len(classes) if classes else None), **extra))
        model = trainer.fit(dataset, classes=classes)
        self.model_ = model
        self.feature_names_in_ = np.asarray(model.feature_names, dtype=object)
        self.n_features_in_ = len(model.feature_names)
        if model.classes_ is not None:
            self.classes_ = np.asarray(model.classes_)
        self._session = _Session.from_trainer(trainer)
        self._set_fitted(model)
        return self

    def _scan_classes(self, dataset: Dataset) -> list | None:
        """The class labels of the dataset's target (None for regressors)."""
        return None

    def _reset(self) -> None:
        for name in ("feature_names_in_", "classes_", "_session"):
            if hasattr(self, name):
                delattr(self, name)

    def _set_fitted(self, model: LinearModel) -> None:
        self.coef_ = model.coef_.copy()
        self.intercept_ = model.intercept_.copy()
        self.n_iter_ = max(len(model.history), int(model.summary.get("partial_fit_calls", 0)))
        self.history_ = list(model.history)

    # ---- predicting --------------------------------------------------------------------------------------------
    def _fitted(self, X: Any) -> tuple[LinearModel, Any]:
        """The fitted model, and X checked against its inputs (a sparse X stays sparse)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, **INPUT)
        if self.model_.spec is not None:  # transforms or bins: the model's FeatureSpec reads named columns
            X = pa.table({name: X[:, j] for j, name in enumerate(self._feature_names())})
        return self.model_, X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        tags.non_deterministic = False
        return tags


class SGDClassifier(ClassifierMixin, _StreamgdSGD):
    """Linear classifier trained by streamgd (mirrors ``sklearn.linear_model.SGDClassifier``).

    ``loss="log_loss"`` is logistic regression (binary) or multinomial softmax regression (more classes),
    ``"hinge"`` a linear SVM and ``"squared_hinge"`` its smooth variant (one-vs-rest for more classes). ``max_iter`` is the number
    of epochs, ``n_iter_no_change`` stops early on the training loss (0: off), ``lr``, ``schedule`` and
    ``optimizer`` are streamgd's (see ``streamgd.optim``), and dense inputs are standardized unless
    ``standardize=False``: the fitted ``coef_`` apply to raw inputs. ``X`` may be a ``scipy.sparse`` matrix
    (``FeatureHasher``'s output), trained without making it dense and not standardized.
    ``random_state=None`` is seed 0. ``factors=K`` trains a factorization machine (binary ``log_loss`` or
    ``hinge``; its factors in ``model_.factors_``): a K-vector per sparse column, or per dense column (then
    ``standardize=False``); ``field_aware=True`` a field-aware one whose fields are a sparse matrix's columns.
    """

    _losses = CLASSIFIER_LOSSES

    def __init__(self, loss: str = "log_loss", *, penalty: str = "l2", alpha: float = 1e-4, l1_ratio: float = 0.15,
                 max_iter: int = 20, tol: float = 1e-4, n_iter_no_change: int = 5, batch_size: int | str = 32,
                 optimizer: str = "sgd", lr: float | None = None, schedule: str | None = None,
                 shuffle: str = "row-groups", standardize: bool = True, class_weight: Any = None,
                 random_state: Any = None, transforms: Any = None, bins: Any = None, factors: int | None = None,
                 field_aware: bool = False):
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.schedule = schedule
        self.shuffle = shuffle
        self.standardize = standardize
        self.class_weight = class_weight
        self.random_state = random_state
        self.transforms = transforms
        self.bins = bins
        self.factors = factors
        self.field_aware = field_aware

    def _kind(self, n_classes: int | None) -> str:
        kind = super()._kind(n_classes)
        return "softmax" if kind == "logistic" and n_classes is not None and n_classes > 2 else kind

    def _scan_classes(self, dataset: Dataset) -> list:
        return scan_classes(dataset)

    def _class_weight_by_index(self) -> Any:
        if self.class_weight is None or isinstance(self.class_weight, str):
            return self.class_weight
        unknown = [label for label in self.class_weight if label not in self.classes_]
        if unknown:
            raise ValueError(f"class_weight names {unknown[0]!r}, which is not a class (classes: "
                             f"{self.classes_.tolist()})")
        index = {label: k for k, label in enumerate(self.classes_.tolist())}
        return {index[label]: float(weight) for label, weight in self.class_weight.items()}

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> SGDClassifier:
        """Train ``max_iter`` epochs on the rows in memory (a fresh model each call)."""
        self._reset()
        X, y = validate_data(self, X, y, **INPUT)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"the target needs samples of at least 2 classes; got 1 class: {self.classes_[0]!r}")
        kind = self._kind(len(self.classes_))
        weights = _sample_weight(sample_weight, X.shape[0])
        self._fit_arrays(X, y_index.astype(np.int64), weights, kind, class_weight=self._class_weight_by_index())
        self.model_.classes_ = to_json_labels(self.classes_.tolist())  # trained on indices; saved with the labels
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> SGDClassifier:
        """One epoch over this batch, continuing the optimizer's state; the first call needs ``classes``.

        Without an earlier ``fit``, inputs are standardized with the mean and scale of the first batch (fixed
        afterwards), computed as ``fit`` computes them."""
        first = not hasattr(self, "_session")
        X, y = validate_data(self, X, y, reset=first, **INPUT)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            self.classes_ = np.unique(np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError("partial_fit needs at least 2 classes")
            if isinstance(self.class_weight, str):
                raise ValueError(f"class_weight={self.class_weight!r} is not supported for partial_fit; "
                                 "pass a mapping {label: weight}")
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes={classes!r} is not the same as on the first call ({self.classes_.tolist()})")
        y_index = np.searchsorted(self.classes_, y)
        unknown = (y_index >= len(self.classes_)) | (self.classes_[np.minimum(y_index, len(self.classes_) - 1)] != y)
        if unknown.any():
            raise ValueError(f"the label {y[np.flatnonzero(unknown)[0]]!r} is not one of classes "
                             f"{self.classes_.tolist()}")
        self._partial_fit(X, y_index.astype(np.int64), _sample_weight(sample_weight, X.shape[0]),
                          self._kind(len(self.classes_)), list(range(len(self.classes_))),
                          class_weight=self._class_weight_by_index())
        self.model_.classes_ = to_json_labels(self.classes_.tolist())  # trained on indices; saved with the labels
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Margins ``X @ coef_.T + intercept_``: shape (n,) for two classes, (n, n_classes) otherwise."""
        model, X = self._fitted(X)
        return model.decision_function(X)

    def predict(self, X: Any) -> np.ndarray:
        """The class labels of the largest margin (the model's labels, of ``classes_``' type)."""
        model, X = self._fitted(X)
        return np.asarray(model.predict(X), dtype=self.classes_.dtype)

    def _has_proba(self) -> bool:
        return self.loss == "log_loss"

    @available_if(_has_proba)
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), columns in the order of ``classes_``."""
        model, X = self._fitted(X)
        return model.predict_proba(X)

    @available_if(_has_proba)
    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The logarithm of ``predict_proba``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))


class SGDRegressor(RegressorMixin, _StreamgdSGD):
    """Linear regressor trained by streamgd (mirrors ``sklearn.linear_model.SGDRegressor``).

    ``loss="squared_error"`` is least squares, ``"huber"`` robust regression (``epsilon``) and ``"poisson"``
    Poisson regression with a log link (``predict`` returns the expected count). Settings as ``SGDClassifier``,
    ``factors`` and ``field_aware`` too.
    """

    _losses = REGRESSOR_LOSSES

    def __init__(self, loss: str = "squared_error", *, penalty: str = "l2", alpha: float = 1e-4,
                 l1_ratio: float = 0.15, epsilon: float = 1.35, max_iter: int = 20, tol: float = 1e-4,
                 n_iter_no_change: int = 5, batch_size: int | str = 32, optimizer: str = "sgd",
                 lr: float | None = None, schedule: str | None = None, shuffle: str = "row-groups",
                 standardize: bool = True, random_state: Any = None, transforms: Any = None, bins: Any = None,
                 factors: int | None = None, field_aware: bool = False):
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.epsilon = epsilon
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.schedule = schedule
        self.shuffle = shuffle
        self.standardize = standardize
        self.random_state = random_state
        self.transforms = transforms
        self.bins = bins
        self.factors = factors
        self.field_aware = field_aware

    def _config(self, kind: str, sparse: bool = False, **extra: Any) -> TrainConfig:
        return super()._config(kind, sparse, epsilon=self.epsilon, **extra)

    def _targets(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError("loss='poisson' needs a target of counts >= 0")
        return y

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> SGDRegressor:
        """Train ``max_iter`` epochs on the rows in memory (a fresh model each call)."""
        self._reset()
        X, y = validate_data(self, X, y, y_numeric=True, **INPUT)
        y = self._targets(column_or_1d(y, warn=True))
        self._fit_arrays(X, y, _sample_weight(sample_weight, X.shape[0]), self._kind(None))
        return self

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> SGDRegressor:
        """One epoch over this batch, continuing the optimizer's state (standardized as the first batch, unless
        ``fit`` came first)."""
        first = not hasattr(self, "_session")
        X, y = validate_data(self, X, y, y_numeric=True, reset=first, **INPUT)
        y = self._targets(column_or_1d(y, warn=True))
        self._partial_fit(X, y, _sample_weight(sample_weight, X.shape[0]), self._kind(None), None)
        return self

    def _set_fitted(self, model: LinearModel) -> None:
        super()._set_fitted(model)
        self.coef_ = self.coef_[0]  # scikit-learn's regressors: coef_ (n_features,), intercept_ (1,)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values (poisson: the expected counts, ``exp`` of the linear predictor)."""
        model, X = self._fitted(X)
        return model.predict(X)
