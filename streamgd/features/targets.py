"""Class labels of a target column: found by one streaming pass over that column, mapped to indices 0..K-1.

Labels keep the type the column holds (ints, strings, booleans); models store them and ``predict`` returns them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..data.arrow_numpy import numbers
from ..data.cache import CheckingEncoder
from ..data.dataset import Dataset
from ..data.unit_reader import UnitTableReader
from ..errors import DataError
from ..kernels.jit import njit

MAX_CLASSES = 1000


def _python_labels(values: pa.Array) -> list:
    return [v.item() if isinstance(v, np.generic) else v for v in values.to_pylist()]


def scan_classes(dataset: Dataset, max_classes: int = MAX_CLASSES) -> list:
    """The sorted distinct non-null values of the target column, read column by column (bounded memory)."""
    if dataset.target is None:
        raise DataError("a classifier needs a target column")
    tables = UnitTableReader(dataset, [dataset.target], read_ahead=dataset.units)
    seen: set = set()
    try:
        for unit in dataset.units:
            column = tables.read(unit).column(0)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            if pa.types.is_floating(column.type):
                values = numbers(column)
                if not np.isfinite(values[~np.isnan(values)]).all():
                    raise DataError(f"the target column {dataset.target!r} holds inf in "
                                    f"{dataset.describe_row(unit, 0).rsplit(',', 1)[0]}")
            seen.update(_python_labels(pc.unique(column.drop_null())))
            _check_class_count(seen, dataset.target, max_classes)
    finally:
        tables.close()
    return _sorted_labels(seen)


def merge_classes(parts: list[list], target: str, max_classes: int = MAX_CLASSES) -> list:
    """The classes of a dataset from those of its shards (``scan_classes`` of each, on dask workers)."""
    seen = {label for part in parts for label in part}
    _check_class_count(seen, target, max_classes)
    return _sorted_labels(seen)


def _check_class_count(seen: set, target: str, max_classes: int) -> None:
    if len(seen) > max_classes:
        raise DataError(f"the target column {target!r} has more than {max_classes} distinct values; "
                        "a classifier cannot use it: for a continuous target use --model linear (or huber, "
                        "poisson)")


def _sorted_labels(seen: set) -> list:
    seen = {v for v in seen if not (isinstance(v, float) and np.isnan(v))}
    try:
        return sorted(seen)
    except TypeError:
        return sorted(seen, key=repr)


def class_counts(dataset: Dataset, encoder: LabelEncoder) -> np.ndarray:
    """Rows per class (in the encoder's order), from one pass over the target column."""
    tables = UnitTableReader(dataset, [dataset.target], read_ahead=dataset.units)
    counts = np.zeros(len(encoder.classes), dtype=np.int64)
    try:
        for unit in dataset.units:
            index = encoder.encode(tables.read(unit).column(0))
            index = index[np.isfinite(index)].astype(np.int64)
            counts += np.bincount(index, minlength=len(counts))
    finally:
        tables.close()
    return counts


@njit(nogil=True)
def _index_numbers(values, classes, out):  # pragma: no cover - compiled
    """out[i] = the index of values[i] in classes, NaN for NaN; returns the first unknown row or -1. One
    branch-free pass per class (K is small), so random labels cost no mispredicted branches."""
    n = values.shape[0]
    for i in range(n):
        out[i] = -1.0
    for k in range(classes.shape[0]):
        label = classes[k]
        index = np.float64(k)
        for i in range(n):
            out[i] = index if np.float64(values[i]) == label else out[i]
    for i in range(n):
        if out[i] < 0.0:
            if values[i] != values[i]:
                out[i] = np.nan
            else:
                return i
    return -1


class LabelEncoder:
    """Maps class labels to indices 0..K-1 (as float64, the kernels' target type) and back."""

    def __init__(self, classes: list):
        self.classes = list(classes)
        numeric = all(isinstance(c, (bool, int, float, np.number, np.bool_)) for c in self.classes)
        self._numbers = np.array(self.classes, dtype=np.float64) if numeric else None
        # classes 0..K-1 (and False, True): an integer label is its own index
        self._own_indices = numeric and np.array_equal(self._numbers, np.arange(len(self.classes)))
        self._labels: pa.Array | None = None  # the classes as Arrow, built when a column needs them

    @property
    def _value_set(self) -> pa.Array:
        """The classes as an Arrow array (``pa.array`` imports pandas: built only for the columns the compiled
        path does not take)."""
        if self._labels is None:
            self._labels = pa.array(self.classes)
        return self._labels

    def encode(self, column: pa.ChunkedArray) -> np.ndarray:
        """Indices of the labels; a null target becomes NaN, a label not among the classes is an error."""
        if self._numbers is not None and column.null_count == 0 and (
                pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                or pa.types.is_boolean(column.type)):
            return self._encode_numbers(column)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_floating(column.type):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        try:
            index = pc.index_in(column, value_set=self._value_set.cast(column.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            index = pc.index_in(column.cast(self._value_set.type), value_set=self._value_set)
        unknown = pc.sum(pc.and_(pc.is_null(index), pc.is_valid(column))).as_py() or 0
        if unknown:
            bad = pc.filter(column, pc.and_(pc.is_null(index), pc.is_valid(column)))[0].as_py()
            raise DataError(f"the target holds the label {bad!r}, which is not among the classes {self.classes}")
        return np.asarray(numbers(pc.cast(index, pa.float64())), dtype=np.float64)

    def _encode_numbers(self, column: pa.ChunkedArray) -> np.ndarray:
        """Numeric labels: integers 0..K-1 by a range check and a cast; others by the compiled path (a linear scan
        of the K classes per row, K is small). The first keeps the label reads of the run's set-up (the
        interaction search's sample) off the compiler while ``streamgd.kernels.jit.warm_up`` sets it up."""
        values = numbers(column)
        if values.dtype == np.bool_:
            values = values.view(np.uint8)
        if self._own_indices and values.dtype.kind in "iu":
            outside = len(values) > 0 and (values.min() < 0 or values.max() >= len(self.classes))
            bad = int(np.flatnonzero((values < 0) | (values >= len(self.classes)))[0]) if outside else -1
            out = values.astype(np.float64)
        else:
            out = np.empty(values.shape[0])
            bad = _index_numbers(values, self._numbers, out)
        if bad >= 0:
            raise DataError(f"the target holds the label {column[int(bad)].as_py()!r}, which is not among the "
                            f"classes {self.classes}")
        return out

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """Labels for class indices."""
        labels = np.asarray(self.classes, dtype=object if isinstance(self.classes[0], str) else None)
        return labels[np.asarray(indices, dtype=np.int64)]

    def __call__(self, column: pa.ChunkedArray) -> np.ndarray:
        return self.encode(column)


def to_json_labels(classes: list) -> list[Any]:
    """Labels as JSON values (numpy scalars become Python numbers)."""
    return [c.item() if isinstance(c, np.generic) else c for c in classes]


class NonNegativeTarget(CheckingEncoder):
    """A target encoder that refuses negative values (counts: ``model.needs_nonnegative_target``); a class, so
    that it pickles (dask ships it to the workers), and a ``CheckingEncoder``, so that the epoch cache keys it."""

    def __init__(self, encoder: Callable, target: str, kind: str):
        self.encoder, self.target, self.kind = encoder, target, kind

    def __call__(self, column: Any) -> np.ndarray:
        values = self.encoder(column)
        if (values < 0).any():
            raise DataError(f"the target column {self.target!r} holds {values[values < 0][0]}; model {self.kind!r} "
                            "needs counts >= 0")
        return values
