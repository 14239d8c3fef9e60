"""Linear models: parameters, prediction, and model files.

A model file is one ``.safetensors`` file: the arrays as tensors (``coef``, ``intercept``, ``optimizer_state``)
and everything else as JSON in the header's metadata. Loading never executes code (no pickle).

>>> import numpy as np, tempfile, os
>>> model = LinearRegression(np.array([[2.0, -1.0]]), np.array([0.5]), ["a", "b"], target="y")
>>> model.predict(np.array([[1.0, 1.0]]))
array([1.5])
>>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
>>> model.save(path)
>>> load(path).coef_.tolist()
[[2.0, -1.0]]
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..version import __version__
from ..data.sparse_block import FeatureBlocks, SparseBlock
from ..errors import DataError, ModelFileError
from ..io.storage import resolve
from ..io.tensorfile import read_tensor, read_tensor_file, read_tensor_into, tensor_layout, write_tensor_file
from ..kernels import codes as kernels  # numba-free: reading a model file loads no compiler
from ..registry import Registry
from .file_checks import check_model_fields, check_spec_applies

MODEL_FORMAT = "streamgd.model"
FORMAT_VERSION = 2  # 2: a factorization machine's files (a linear model's are still written as 1, for older readers)
LINEAR_FORMAT_VERSION = 1


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z, dtype=np.float64)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    ez = np.exp(z[~positive])
    out[~positive] = ez / (1.0 + ez)
    return out


def _is_view_of(part: np.ndarray, flat: np.ndarray, offset: int) -> bool:
    """Whether ``part`` lies in ``flat``'s memory from its value ``offset`` on (its view, as ``_take_flat`` makes)."""
    if part.size == 0:
        return True
    start = flat.__array_interface__["data"][0] + offset * (flat.strides[0] if flat.ndim else 0)
    return np.may_share_memory(part, flat) and part.__array_interface__["data"][0] == start


def _view(array: np.ndarray, shape: tuple) -> np.ndarray:
    """``array`` reshaped to ``shape`` without a copy (a plain FM's (rows, 1, k) slice is (rows, k) in place)."""
    view = array.view()
    view.shape = shape  # raises rather than copy when the strides cannot be kept
    return view


class LinearModel:
    """Coefficients ``coef_`` (n_outputs, n_features), intercepts ``intercept_`` (n_outputs,), and metadata."""

    kind = "base"
    description = ""  # one line for the command line's help
    loss_kind = -1
    is_classifier = False
    needs_nonnegative_target = False
    # training defaults of this loss when the run names none (see TrainConfig.learning_rate and clip_norm)
    default_lr_scale = 1.0  # times the optimizer's default learning rate
    default_clip_norm = 0.0  # 0: no clipping

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, feature_names: list[str], target: str | None = None,
                 classes: list | None = None, config: dict | None = None, history: list | None = None,
                 optimizer_state: np.ndarray | None = None, summary: dict | None = None,
                 feature_spec: dict | None = None, factors: np.ndarray | None = None,
                 factorization: dict | None = None, params: np.ndarray | None = None):
        coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        intercept = np.atleast_1d(np.asarray(intercept, dtype=np.float64))
        # coef_ and intercept_ are views of one flat vector in the kernels' layout, so predicting does not copy
        # a 2^28-slot model for every chunk; ``params``: that vector already (coef row-major, then the
        # intercepts: a trained run's), taken as the model's memory without a copy; a finished run's may be a
        # strided view (a per-coordinate block's weights, ``streamgd.optim.state.coordinate_block``), which the
        # model compacts the first time it predicts (``_kernel_params``)
        if params is not None and not (isinstance(params, np.ndarray) and params.dtype == np.float64
                                       and params.shape == (coef.size + intercept.size,)
                                       and _is_view_of(coef, params, 0) and _is_view_of(intercept, params, coef.size)):
            raise ValueError(f"params must be a float64 vector of {coef.size + intercept.size} values, coef and "
                             "intercept its views")
        self._take_flat(np.concatenate([coef.ravel(), intercept]) if params is None else params, coef.shape)
        if feature_names is None and feature_spec is not None:  # a model file stores a spec's names as the spec
            from ..features.spec import FeatureSpec

            feature_names = FeatureSpec.from_dict(feature_spec).output_names
        self.feature_names = feature_names if isinstance(feature_names, Sequence) and not isinstance(
            feature_names, (list, tuple, str)) else list(feature_names)
        self.target = target
        self.classes_ = list(classes) if classes is not None else None
        self.config = dict(config or {})
        self.history = list(history or [])
        self.optimizer_state = optimizer_state
        self.summary = dict(summary or {})
        self.feature_spec = feature_spec  # FeatureSpec.to_dict(): how input columns become feature_names
        if self.coef_.shape != (self.intercept_.shape[0], len(self.feature_names)):
            raise ValueError(f"coef has shape {self.coef_.shape}, expected ({self.intercept_.shape[0]}, "
                             f"{len(self.feature_names)})")
        # a factorization machine: ``factors`` (rows, stride) holds each factor row's k factors, then its optimizer
        # state (streamgd.kernels.factors), per field for a field-aware FM; ``factorization`` = {"kind": "fm" or
        # "ffm", "k", "numeric", "fields" (ffm), ...}
        self.factorization = dict(factorization) if factors is not None else None
        self.factor_block = None if factors is None else np.ascontiguousarray(factors, dtype=np.float64)
        if self.factor_block is not None:
            self._check_factors()

    @staticmethod
    def n_outputs(n_classes: int | None) -> int:
        """Number of rows of ``coef_`` for a target with ``n_classes`` classes."""
        return 1

    # ---- factorization machines --------------------------------------------------------------------------------
    @property
    def n_fields(self) -> int:
        """A field-aware FM's number of fields (0: a plain FM or a linear model)."""
        return int((self.factorization or {}).get("fields", 0))

    def _check_factors(self) -> None:
        k, block = int(self.factorization.get("k", 0)), self.factor_block
        rows = self.n_slots + (self.n_dense if self.factorization.get("numeric") else 0)
        vector = k * max(self.n_fields, 1)
        if not (k >= 1 and block.ndim == 2 and block.shape[0] == rows and block.shape[1] % vector == 0
                and self.coef_.shape[0] == 1):
            raise ValueError(f"the factors have shape {block.shape}, expected ({rows}, a multiple of "
                             f"{vector} = k x fields) for one output")

    @property
    def factors_(self) -> np.ndarray | None:
        """A factorization machine's factors, (rows, k), or (rows, fields, k) for a field-aware one: the dense
        columns' rows (when they have factors), then the sparse slots'; None for a linear model."""
        if self.factor_block is None:
            return None
        k = int(self.factorization["k"])
        if self.n_fields:
            return self.factor_block.reshape(self.factor_block.shape[0], self.n_fields, -1)[:, :, :k]
        return self.factor_block[:, :k]

    @property
    def n_slots(self) -> int:
        """The sparse slots among the features (the last ones): its FeatureSpec's or a sparse matrix's."""
        spec = self.spec
        if spec is not None:
            return spec.n_slots
        return int(getattr(self.feature_names, "n_slots", 0))

    @property
    def n_dense(self) -> int:
        return self.n_features - self.n_slots

    def kernel_hyper(self) -> np.ndarray | None:
        """The kernels' hyperparameters that describe the model's pair term (None: a linear model)."""
        if self.factorization is None:
            return None
        hyper = np.zeros(kernels.N_HYPER)
        hyper[kernels.H_FACTORS] = int(self.factorization["k"])
        hyper[kernels.H_FACTOR_NUMERIC] = 1.0 if self.factorization.get("numeric") else 0.0
        hyper[kernels.H_FIELDS] = self.n_fields
        hyper[kernels.H_FACTOR_SPAN] = len(self.factorization.get("columns") or ())  # they come first in the spec
        return hyper

    def slot_fields(self) -> np.ndarray | None:
        """A field-aware FM's field of each sparse slot where no FeatureSpec numbers a row's entries by column (a
        sparse matrix's columns: each its own field); None otherwise (the kernels' default: by position)."""
        if not self.n_fields or self.spec is not None:
            return None
        return np.arange(self.n_slots, dtype=np.int32)

    def factor_norms(self) -> dict[str, float]:
        """The L2 norm of the factors of each input column (its slots' rows together): which columns' pairs the
        model uses. Empty for a linear model."""
        factors = self.factors_
        if factors is None:
            return {}
        norms: dict[str, float] = {}
        first = self.n_dense if self.factorization.get("numeric") else 0
        if first:
            for j in range(first):
                norms[str(self.feature_names[j])] = float(np.linalg.norm(factors[j]))
        spec = self.spec
        slots = factors[first:]
        if spec is None:
            norms["sparse slots"] = float(np.linalg.norm(slots))
            return norms
        starts = spec.onehot_starts()
        chosen = self.factorization.get("columns")  # factor_fields: the other columns' rows are never read
        for column, start, stop in zip(spec.onehot_columns, starts[:-1], starts[1:]):
            if not chosen or column.name in chosen:
                norms[column.name] = float(np.linalg.norm(slots[start:stop]))
        if spec.n_slots > starts[-1]:  # hashed columns share their buckets: their rows are one group
            norms["hashed, interaction and bin slots"] = float(np.linalg.norm(slots[starts[-1]:]))
        return norms

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def input_columns(self) -> list[str]:
        """The data columns the model reads (its features, or the FeatureSpec's inputs)."""
        return self.spec.input_columns if self.spec is not None else self.feature_names

    @property
    def spec(self) -> Any:
        """The FeatureSpec of the inputs, or None when the features are the numeric columns themselves."""
        if self.feature_spec is None:
            return None
        from ..features.spec import FeatureSpec

        return FeatureSpec.from_dict(self.feature_spec)

    def _take_flat(self, flat: np.ndarray, coef_shape: tuple[int, ...]) -> None:
        """Make ``flat`` the model's vector, ``coef_`` and ``intercept_`` its views."""
        n_coef = math.prod(coef_shape)
        self._flat = flat
        self._views = (flat[:n_coef].reshape(coef_shape), flat[n_coef:])  # reshape keeps a 1-D view's stride
        self.coef_, self.intercept_ = self._views

    @property
    def params(self) -> np.ndarray:
        """The flat parameter vector in the kernels' layout (coef row-major, then intercepts): the model's own
        memory (possibly strided: a finished run's weights) while ``coef_`` and ``intercept_`` are its views, a
        new vector if they were replaced."""
        flat = self._flat
        if self.coef_ is self._views[0] and self.intercept_ is self._views[1] and (  # not separate arrays since
                flat.size == 0 or np.may_share_memory(self.coef_, flat)):  # (unpickled: each its own copy)
            return flat
        return np.concatenate([np.ravel(self.coef_), np.ravel(self.intercept_)])

    def _kernel_params(self) -> np.ndarray:
        """``params`` as the prediction kernels read it, contiguous: a strided vector (a finished run's weights,
        handed over without a copy for saving) is replaced, once, by a contiguous copy, which ``coef_`` and
        ``intercept_`` then view; otherwise every chunk predicted would copy it."""
        flat = self.params
        if flat is self._flat and not flat.flags.c_contiguous:
            self._take_flat(np.ascontiguousarray(flat), self.coef_.shape)
            return self._flat
        return flat

    @property
    def optimizer_state(self) -> np.ndarray | None:
        """The optimizer state the model was saved with, read from its file when first asked for (predicting
        never needs it, and a hashed model's can be gigabytes)."""
        if self._optimizer_state is None and self._state_file is not None:
            self._optimizer_state = read_tensor(self._state_file, "optimizer_state")
            self._state_file = None
        return self._optimizer_state

    @optimizer_state.setter
    def optimizer_state(self, value: np.ndarray | None) -> None:
        self._optimizer_state, self._state_file = value, None

    def _blocks(self, X: Any) -> FeatureBlocks:
        """The input as the dense and sparse blocks the kernels read: a table through the model's FeatureSpec, a
        ``scipy.sparse`` matrix as a sparse block, a FeatureBlocks as it is, anything else as a dense matrix."""
        if isinstance(X, FeatureBlocks):
            return X
        if hasattr(X, "tocsr") and hasattr(X, "nnz"):  # scipy.sparse
            if X.shape[1] != self.n_features:
                raise DataError(f"expected {self.n_features} features, got a sparse matrix of shape {X.shape}")
            return FeatureBlocks(np.empty((X.shape[0], 0)), SparseBlock.from_csr(X))
        spec = self.spec
        if spec is not None and hasattr(X, "columns") and not isinstance(X, np.ndarray):
            table = X if isinstance(X, pa.Table) else pa.Table.from_pandas(X, preserve_index=False)
            missing = [n for n in spec.input_columns if n not in table.column_names]
            if missing:
                raise DataError(f"the input has no column {missing[0]!r}, which the model was trained on")
            dense, sparse, _ = spec.to_blocks(table, None, np.float64)
            return FeatureBlocks(dense, sparse)
        return FeatureBlocks(self._matrix(X), None)

    def _matrix(self, X: Any) -> np.ndarray:
        if hasattr(X, "columns") and not isinstance(X, np.ndarray):  # pandas DataFrame or pyarrow Table
            names = list(X.columns) if not hasattr(X, "column_names") else X.column_names
            missing = [n for n in self.feature_names if n not in names]
            if missing:
                raise DataError(f"the input has no column {missing[0]!r}, which the model was trained on")
            if hasattr(X, "column_names"):
                X = np.column_stack([X.column(n).to_numpy(zero_copy_only=False) for n in self.feature_names])
            else:
                X = X[self.feature_names].to_numpy()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(f"expected {self.n_features} features, got an array of shape {X.shape}")
        return X

    def decision_function(self, X: Any) -> np.ndarray:
        """Margins ``X @ coef.T + intercept``: shape (n,) for one output, (n, n_outputs) otherwise."""
        margins = self._margins(X)
        return margins[:, 0] if margins.shape[1] == 1 else margins

    def _margins(self, X: Any) -> np.ndarray:
        """Margins of every row, shape (n, n_outputs), by the compiled kernel: a NumPy matrix product of a chunk
        wakes OpenBLAS's threads, whose spinning takes the core the reader needs while streaming."""
        from ..kernels import api  # the compiled kernels load where a model first predicts

        X, sparse = self._blocks(X)
        out = np.empty((X.shape[0], self.coef_.shape[0]))
        hyper, slot_fields = self._factor_layout(sparse)
        api.predict_margins(X, self._kernel_params(), self.coef_.shape[0], out, sparse=sparse, hyper=hyper,
                            slot_fields=slot_fields, factor_block=self.factor_block)
        return out

    def _factor_layout(self, sparse: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The kernels' hyperparameters and slot fields for input whose sparse block is ``sparse``. A model of a
        matrix's columns (no FeatureSpec) has a factor row per column whichever block holds them: fitted on dense
        columns (their rows "numeric") and given a sparse matrix, or the other way round, the rows are the same."""
        hyper, slot_fields = self.kernel_hyper(), self.slot_fields()
        if hyper is None or self.spec is not None:
            return hyper, slot_fields
        by_slot = sparse is not None
        hyper[kernels.H_FACTOR_NUMERIC] = 0.0 if by_slot else 1.0
        slot_fields = np.arange(self.n_features, dtype=np.int32) if by_slot and self.n_fields else None
        return hyper, slot_fields

    def predict(self, X: Any) -> np.ndarray:
        return self.values_from_margins(self.decision_function(X))

    def values_from_margins(self, margins: np.ndarray) -> np.ndarray:
        """A regressor's predicted values from its margins (the inverse link: identity here)."""
        return margins

    def loss(self, X: Any, y: np.ndarray) -> float:
        """Mean data loss (no penalty) on encoded targets ``y``, computed by the same kernel as training."""
        from ..kernels import api

        X, sparse = self._blocks(X)
        hyper, slot_fields = self._factor_layout(sparse)
        hyper = hyper if hyper is not None else np.zeros(kernels.N_HYPER)
        hyper[kernels.H_HUBER_EPS] = self.config.get("epsilon", 1.0)
        total = api.chunk_loss(X, np.asarray(y, dtype=np.float64), np.empty(0), self._kernel_params(),
                               self.coef_.shape[0], self.loss_kind, hyper, sparse=sparse, slot_fields=slot_fields,
                               factor_block=self.factor_block)
        return float(total) / max(len(X), 1)

    # ---- files -------------------------------------------------------------------------------------------------
    def metadata(self) -> dict:
        names = None if self.feature_spec is not None and not isinstance(self.feature_names, list) \
            else list(self.feature_names)  # a spec's names are computed from the spec
        return {"kind": self.kind, "feature_names": names, "feature_spec": self.feature_spec,
                "target": self.target,
                "classes": self.classes_, "config": self.config, "history": self.history,
                "summary": self.summary, "streamgd_version": __version__,
                **({"factorization": self.factorization} if self.factorization is not None else {})}

    def save(self, path: str | os.PathLike, storage_options: dict | None = None) -> None:
        """Write the model as one safetensors file, atomically (``path`` may be a URI such as
        ``s3://bucket/model.safetensors``, written with ``storage_options``; see ``streamgd.io.storage``)."""
        # the vectors as they are, written in slices when strided (a finished run's weights): no copy of either
        tensors = {"coef": np.asarray(self.coef_), "intercept": np.asarray(self.intercept_)}
        if self.optimizer_state is not None and self.optimizer_state.size:
            tensors["optimizer_state"] = self.optimizer_state
        version = LINEAR_FORMAT_VERSION
        if self.factor_block is not None:  # format 2: a reader of format 1 refuses it rather than drop the pairs
            k = int(self.factorization["k"])
            rows, fields = self.factor_block.shape[0], max(self.n_fields, 1)
            by_field = self.factor_block.reshape(rows, fields, -1)  # a field-aware FM's (rows, fields, k) tensors
            shape = (rows, fields, -1) if self.n_fields else (rows, -1)
            # views, written a slice of rows at a time (streamgd.io.tensorfile): a contiguous copy of each would
            # hold the block twice over while saving (the FFM's peak; scripts/bench_fm.py)
            tensors["factors"] = _view(by_field[:, :, :k], shape)
            if by_field.shape[2] > k:
                tensors["factor_state"] = _view(by_field[:, :, k:], shape)
            version = FORMAT_VERSION
        write_tensor_file(path, tensors, MODEL_FORMAT, version, self.metadata(), "a model file",
                          storage_options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_features={self.n_features}, target={self.target!r})"


class LinearRegression(LinearModel):
    """Least squares: squared loss, ``predict`` returns the margin."""

    kind = "linear"
    description = "least squares (squared loss)"
    loss_kind = kernels.LOSS_SQUARED


class LogisticRegression(LinearModel):
    """Binary logistic regression: log loss; ``predict_proba`` is the probability of ``classes_[1]``."""

    kind = "logistic"
    description = "binary classes, log loss"
    loss_kind = kernels.LOSS_LOG
    is_classifier = True

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of (classes_[0], classes_[1]) per row, shape (n, 2)."""
        p = _sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return _labels(self.classes_, (self.decision_function(X) > 0).astype(np.int64))


class SoftmaxRegression(LinearModel):
    """Multinomial logistic regression over K classes: one coefficient row per class, softmax probabilities."""

    kind = "softmax"
    description = "K classes, multinomial log loss"
    loss_kind = kernels.LOSS_SOFTMAX
    is_classifier = True

    @staticmethod
    def n_outputs(n_classes: int | None) -> int:
        return int(n_classes or 2)

    def decision_function(self, X: Any) -> np.ndarray:
        return self._margins(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of each class in ``classes_`` order, shape (n, K)."""
        margins = self.decision_function(X)
        margins -= margins.max(axis=1, keepdims=True)
        np.exp(margins, out=margins)
        return margins / margins.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        return _labels(self.classes_, self.decision_function(X).argmax(axis=1))


class LinearSVM(LinearModel):
    """Linear support vector machine: hinge loss ``max(0, 1 - s m)`` with s = +-1 (scikit-learn's LinearSVC
    and SGDClassifier(loss="hinge")); more than two classes are one-vs-rest (a margin per class, the largest
    wins). No probabilities; ``decision_function`` is the signed margin."""

    kind = "svm"
    description = "linear SVM, hinge loss (one-vs-rest for K classes)"
    loss_kind = kernels.LOSS_HINGE
    is_classifier = True

    @staticmethod
    def n_outputs(n_classes: int | None) -> int:
        """One margin for two classes; one-vs-rest margins (one row per class) for more."""
        return 1 if (n_classes or 2) <= 2 else int(n_classes)

    def predict(self, X: Any) -> np.ndarray:
        margins = self.decision_function(X)
        index = margins.argmax(axis=1) if margins.ndim == 2 else (margins > 0).astype(np.int64)
        return _labels(self.classes_, index)


class SquaredHingeSVM(LinearSVM):
    """Linear SVM with the squared hinge ``max(0, 1 - s m)^2`` (LinearSVC's default loss): smooth, so it
    converges with larger steps."""

    kind = "squared-hinge"
    description = "linear SVM, squared hinge loss (smooth)"
    loss_kind = kernels.LOSS_SQUARED_HINGE


class HuberRegression(LinearModel):
    """Robust regression: squared loss for residuals within ``epsilon``, linear beyond (config ``epsilon``)."""

    kind = "huber"
    description = "robust regression, squared loss within --epsilon, linear beyond"
    loss_kind = kernels.LOSS_HUBER


class PoissonRegression(LinearModel):
    """Counts with a log link: loss ``exp(m) - y m``; ``predict`` returns the expected count ``exp(m)``."""

    kind = "poisson"
    description = "counts, Poisson loss with a log link"
    loss_kind = kernels.LOSS_POISSON
    needs_nonnegative_target = True
    # The exp link's curvature grows with the counts: on abs(make_regression) targets (mean 170) the first SGD
    # step at rate 0.2 overflowed exp. A quarter of the rate and steps clipped to norm 1 converge there and on
    # counts of mean 0.2 to 30 (tests/test_invariants.py, test_poisson_defaults_converge).
    default_lr_scale = 0.25
    default_clip_norm = 1.0

    def values_from_margins(self, margins: np.ndarray) -> np.ndarray:
        return np.exp(margins)


_KINDS = (LinearRegression, LogisticRegression, SoftmaxRegression, LinearSVM, SquaredHingeSVM, HuberRegression,
          PoissonRegression)
MODEL_KINDS: Registry[type[LinearModel]] = Registry("model", {cls.kind: cls for cls in _KINDS},
                                                    {cls.kind: cls.description for cls in _KINDS})
kernels.name_losses({cls.loss_kind: cls.kind for cls in _KINDS})  # the compile notice's names of the losses


def _labels(classes: list | None, indices: np.ndarray) -> np.ndarray:
    """Class labels (of the type the target held) for class indices."""
    classes = classes if classes is not None else [0, 1]
    return np.asarray(classes, dtype=object if isinstance(classes[0], str) else None)[indices]


def load(path: str | os.PathLike, storage_options: dict | None = None) -> LinearModel:
    """Read a model file written by ``save`` (a local path, or a URI read with ``storage_options``); anything else
    fails with ModelFileError."""
    location = resolve(path, storage_options)
    path = location.uri
    if location.is_local and not os.path.isfile(location.path):
        raise ModelFileError(f"no such model file: {path}")
    # a remote file is read once, whole: its optimizer state cannot be fetched later from a local copy
    meta, tensors = read_tensor_file(location, MODEL_FORMAT, FORMAT_VERSION, "streamgd model file",
                                     names=("intercept",) if location.is_local else None)
    params = _read_parameters(location.path, tensors) if location.is_local else None
    check_model_fields(meta, tensors, path, MODEL_KINDS)
    try:
        cls = MODEL_KINDS[meta["kind"]]
        factors = None
        if meta.get("factorization") is not None:  # a factorization machine: its factors, then their state
            factors = _read_factors(location.path, tensors) if location.is_local else _joined_factors(tensors)
        model = cls(tensors["coef"], tensors["intercept"], meta["feature_names"], target=meta.get("target"),
                    classes=meta.get("classes"), config=meta.get("config"), history=meta.get("history"),
                    summary=meta.get("summary"), feature_spec=meta.get("feature_spec"), factors=factors,
                    factorization=meta.get("factorization"), params=params)
        check_spec_applies(model.spec, model.n_features, path)  # now, not at the first prediction
        if "optimizer_state" in tensors:
            model.optimizer_state = tensors["optimizer_state"]
        elif "optimizer_state" in tensors.get("__names__", ()):
            model._state_file = location.path  # read when asked for
        return model
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # a feature_spec's fields
        raise ModelFileError(f"{path} is a damaged streamgd model file ({type(exc).__name__}: {exc})") from None


def _read_parameters(path: str, tensors: dict) -> np.ndarray | None:
    """A local file's ``coef`` read straight into the model's flat vector, its intercepts after it (the vector,
    with ``tensors``' coef and intercept its views); where the file's tensors are not a float matrix and vector,
    ``coef`` as it is stored and None (``check_model_fields`` then says what is wrong)."""
    layout = tensor_layout(path)
    dtype, shape = layout.get("coef", (None, ()))
    intercept = tensors.get("intercept")
    if not (dtype is not None and dtype.kind == "f" and len(shape) == 2 and isinstance(intercept, np.ndarray)
            and intercept.dtype.kind == "f" and intercept.ndim == 1):
        if "coef" in layout:
            tensors["coef"] = read_tensor(path, "coef")
        return None
    n_coef = shape[0] * shape[1]
    params = np.empty(n_coef + intercept.size)
    tensors["coef"] = params[:n_coef].reshape(shape)
    read_tensor_into(path, "coef", tensors["coef"])
    params[n_coef:] = intercept
    tensors["intercept"] = params[n_coef:]
    return params


def _read_factors(path: str, tensors: dict) -> np.ndarray:
    """A local file's factor block, (rows, per field: the k factors, then their state), each tensor read into its
    place: the block is held once (a plain FM: one field)."""
    layout = tensor_layout(path)
    if "factors" not in layout:
        raise KeyError("factors")
    factors_shape = layout["factors"][1]
    state_shape = layout["factor_state"][1] if "factor_state" in layout else factors_shape[:-1] + (0,)
    if len(factors_shape) not in (2, 3) or state_shape[:-1] != factors_shape[:-1]:
        raise ValueError(f"factors of shape {factors_shape} and their state of shape {state_shape} do not match")
    k = factors_shape[-1]
    block = np.empty(factors_shape[:-1] + (k + state_shape[-1],))
    read_tensor_into(path, "factors", block[..., :k])
    if "factor_state" in layout:
        read_tensor_into(path, "factor_state", block[..., k:])
    return block.reshape(block.shape[0], -1)


def _joined_factors(tensors: dict) -> np.ndarray:
    """The factor block of a file read whole (a remote one): its factors, then their state, per field."""
    factors = tensors["factors"]
    if "factor_state" in tensors:
        factors = np.concatenate([factors, tensors["factor_state"]], axis=-1)
    return factors.reshape(factors.shape[0], -1)
