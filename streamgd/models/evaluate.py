"""Evaluate a model on a labelled dataset streamed chunk by chunk: memory stays that of a few chunks plus the
metrics' fixed state (see ``streamgd.models.metrics``), whatever the number of rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from ..data.reader import ChunkStream, default_target_encoder
from ..data.shuffle import make_plan
from ..data.sparse_block import FeatureBlocks
from ..errors import ConfigError, DataError
from ..features.targets import LabelEncoder, to_json_labels
from .linear import LinearModel, load
from .metrics import ClassificationMetrics, MeanLoss, RegressionMetrics
from .predict import open_for_model, unscorable_rows

# The loss reported next to the other metrics, per model kind (no entry: none).
LOSS_OF_KIND = {"logistic": "log_loss", "softmax": "log_loss", "svm": "hinge_loss",
                "squared-hinge": "squared_hinge_loss", "poisson": "mean_poisson_deviance"}


class _BadTarget(DataError):
    """A target value that cannot be evaluated, at ``row`` of its unit (None: somewhere in the unit)."""

    def __init__(self, reason: str, row: int | None):
        super().__init__(reason)
        self.reason = reason
        self.row = row


class _CheckedTarget:
    """A target encoder that refuses rows it cannot evaluate instead of letting them through as NaN (or, under
    ``missing="drop-rows"``, letting the reader drop them)."""

    def __init__(self, column: str, encoder: Callable[[pa.ChunkedArray], np.ndarray], counts_of: str | None):
        self.column = column
        self.encoder = encoder
        self.counts_of = counts_of  # the model kind, when it needs counts >= 0

    def __call__(self, values: pa.ChunkedArray) -> np.ndarray:
        try:
            y = self.encoder(values)
        except DataError as exc:  # a label the model does not know, a text target for a regressor
            raise _BadTarget(str(exc), None) from None
        bad = ~np.isfinite(y)
        if self.counts_of:
            bad |= y < 0
        if bad.any():
            row = int(np.argmax(bad))
            value = y[row]
            if np.isnan(value):
                what = "is missing (null or NaN)"
            elif np.isinf(value):
                what = f"holds {value}"
            else:
                what = f"holds {value}; model {self.counts_of!r} needs counts >= 0"
            raise _BadTarget(f"the target column {self.column!r} {what}", row)
        return y


def _target_encoder(model: LinearModel, target: str) -> _CheckedTarget:
    """The encoder training used (labels -> class indices, or numbers as they are), checked row by row."""
    if model.is_classifier:
        encoder: Callable[[pa.ChunkedArray], np.ndarray] = LabelEncoder(_classes(model))
    else:
        encoder = default_target_encoder
    return _CheckedTarget(target, encoder, model.kind if model.needs_nonnegative_target else None)


def _classes(model: LinearModel) -> list:
    return model.classes_ if model.classes_ is not None else [0, 1]


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def evaluate(model: LinearModel | str, data: Any, target: str | None = None, prefetch_depth: int = 2,
             storage_options: dict | None = None) -> dict:
    """Metrics of ``model`` (or a model file) on ``data``, streamed chunk by chunk; a JSON-able dict.

    Classifiers: the loss (log loss, or the mean hinge or squared hinge for SVMs), accuracy, ROC AUC (from
    score histograms: an approximation with a stated bound, see ``HistogramAUC``) and the confusion matrix (rows: true class, columns:
    predicted, in the model's class order). Regressors: RMSE, MAE, R², and the mean deviance for Poisson.
    ``target`` defaults to the column the model was trained on. Rows the model cannot score (a missing or
    non-finite feature it does not impute: those ``predict`` leaves null) are skipped and counted in
    ``rows_skipped``; a missing or bad target value is an error naming its row. URIs (``s3://...``) of the model
    or the data are opened with ``storage_options``.
    """
    if not isinstance(model, LinearModel):
        model = load(model, storage_options)
    target = target or model.target
    if target is None:
        raise ConfigError("the model does not record its target column; name it (--target)")
    dataset = open_for_model(model, data, target=target, storage_options=storage_options)
    if dataset.target != target:  # a Dataset passed in is used as it was opened
        raise ConfigError(f"the dataset was opened with target {dataset.target!r}, not {target!r}")
    spec = model.spec
    plan = make_plan(dataset.units, "none")
    loss = MeanLoss(LOSS_OF_KIND[model.kind]) if model.kind in LOSS_OF_KIND else None
    if model.is_classifier:
        metrics: ClassificationMetrics | RegressionMetrics = ClassificationMetrics(
            len(_classes(model)), one_vs_rest=model.kind in ("svm", "squared-hinge"))
    else:
        metrics = RegressionMetrics()
    skipped = consumed = 0
    stream = ChunkStream(dataset, plan, dtype=np.float64, prefetch_depth=prefetch_depth, with_target=True,
                         target_encoder=_target_encoder(model, target), features=spec, all_rows=True)
    try:
        with stream:
            for chunk in stream:
                consumed += 1
                X, y, sparse = chunk.X, chunk.y, chunk.sparse
                bad = unscorable_rows(X)
                if bad is not None:  # rows predict would leave null: skipped and counted
                    skipped += int(bad.sum())
                    X, y = X[~bad], y[~bad]
                    sparse = None if sparse is None else sparse.take(~bad)
                margins = model.decision_function(FeatureBlocks(X, sparse))
                metrics.update(y, margins if model.is_classifier else model.values_from_margins(margins))
                if loss is not None:
                    loss.update(y, margins)
    except _BadTarget as exc:
        unit = plan.steps[consumed].units[0]  # the plan reads one unit per step, in order
        where = (dataset.describe_row(unit, exc.row) if exc.row is not None
                 else dataset.describe_row(unit, 0).rsplit(",", 1)[0])
        raise DataError(f"{exc.reason} at {where}") from None
    values = metrics.result()
    rows = values.pop("rows")
    if loss is not None:
        values = {**loss.result(), **values}
    result: dict[str, Any] = {"model": model.kind, "target": target, "rows": rows, "rows_skipped": skipped,
                              "metrics": {name: _finite_or_none(v) for name, v in values.items()}}
    if isinstance(metrics, ClassificationMetrics):
        result["confusion_matrix"] = {"labels": to_json_labels(_classes(model)),
                                      "matrix": metrics.confusion.counts.tolist()}
    return result


def format_report(result: dict) -> str:
    """The result of ``evaluate`` as a few aligned lines for a terminal."""
    skipped = (f", {result['rows_skipped']:,} skipped for a missing or non-finite feature"
               if result.get("rows_skipped") else "")
    lines = [f"{result['model']} model, target {result['target']!r}: {result['rows']:,} rows{skipped}"]
    width = max(len(name) for name in result["metrics"])
    for name, value in result["metrics"].items():
        lines.append(f"  {name:<{width}}  {'n/a' if value is None else f'{value:.6g}'}")
    confusion = result.get("confusion_matrix")
    if confusion is not None:
        labels = [str(label) for label in confusion["labels"]]
        cells = [[str(count) for count in row] for row in confusion["matrix"]]
        first = max(len(label) for label in labels)
        widths = [max(len(labels[j]), *(len(row[j]) for row in cells)) for j in range(len(labels))]
        lines.append("confusion matrix (rows: true class, columns: predicted)")
        lines.append("  " + " " * first + "".join(f"  {label:>{w}}" for label, w in zip(labels, widths)))
        for label, row in zip(labels, cells):
            lines.append(f"  {label:>{first}}" + "".join(f"  {cell:>{w}}" for cell, w in zip(row, widths)))
    return "\n".join(lines)
