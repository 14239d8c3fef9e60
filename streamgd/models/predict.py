"""Streamed predictions: a dataset in, a Parquet file of predictions out, in input row order, chunk by chunk.

Every input row gets one output row. A row the model cannot score (a missing or non-finite feature that its
FeatureSpec does not impute, whatever its missing-value policy) gets a null prediction, and null probabilities;
the writers count those rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..data.arrow_numpy import from_numpy
from ..data.columns import unknown_column
from ..data.dataset import Dataset, open_dataset
from ..data.reader import ChunkStream
from ..data.shuffle import make_plan
from ..data.sparse_block import FeatureBlocks, SparseBlock
from ..errors import DataError
from ..io.outputs import check_output_file
from ..io.storage import Location, resolve, uri_of, write_object
from .linear import LinearModel


@dataclass(frozen=True)
class PredictionCounts:
    """What a prediction run wrote: ``rows`` (one per input row) of which ``unscored`` hold a null prediction."""

    rows: int
    unscored: int

    def __add__(self, other: PredictionCounts) -> PredictionCounts:
        return PredictionCounts(self.rows + other.rows, self.unscored + other.unscored)


def unscorable_rows(X: np.ndarray) -> np.ndarray | None:
    """Mask of the rows of ``X`` with a NaN or infinite feature, or None when every row can be scored.

    A column's sum is finite only when all its values are, so the row-by-row check runs only on a chunk that holds
    such a value (or whose sums overflow)."""
    if np.isfinite(X.sum(axis=0)).all():
        return None
    bad = ~np.isfinite(X).all(axis=1)
    return bad if bad.any() else None


def open_for_model(model: LinearModel, data: Any, keep: Sequence[str] = (), target: str | None = None,
                   storage_options: dict | None = None) -> Dataset:
    """Open ``data`` with the model's feature columns, and the ``target`` column if one is named (evaluation)."""
    spec = model.spec
    dataset = open_dataset(data, target=target, features=model.input_columns,
                           categorical=[c.name for c in spec.categorical] if spec is not None else (),
                           allow_string_target=model.is_classifier, storage_options=storage_options)
    missing = [c for c in keep if c not in dataset.schema.names]
    if missing:
        raise unknown_column(missing[0], dataset.schema.names, "--keep")
    taken = [c for c in keep if c in prediction_columns(model)]
    if taken:
        raise DataError(f"the column {taken[0]!r} to keep has the name of a column the predictions write "
                        f"({', '.join(prediction_columns(model))}); rename it in the data to keep it")
    return dataset


def prediction_columns(model: LinearModel) -> list[str]:
    """The columns ``prediction_table`` writes for this model."""
    if not hasattr(model, "predict_proba"):
        return ["prediction"]
    classes = model.classes_ or [0, 1]
    return ["prediction", "proba"] if len(classes) == 2 else ["prediction", *(f"proba_{c}" for c in classes)]


def iter_prediction_tables(model: LinearModel, dataset: Dataset, keep: Sequence[str] = (),
                           prefetch_depth: int = 2) -> Iterator[pa.Table]:
    """One Arrow table of predictions per unit, in file order, a row for every input row."""
    plan = make_plan(dataset.units, "none")
    with ChunkStream(dataset, plan, dtype=np.float64, prefetch_depth=prefetch_depth, with_target=False,
                     extra_columns=list(keep), features=model.spec, all_rows=True) as stream:
        for chunk in stream:
            yield prediction_table(model, chunk.X, chunk.extra if keep else None, chunk.sparse)


def prediction_table(model: LinearModel, X: np.ndarray, kept: pa.Table | None = None,
                     sparse: SparseBlock | None = None) -> pa.Table:
    """The ``prediction`` column (and ``proba`` or ``proba_<class>`` for classifiers) for a feature matrix and
    its sparse block; rows with a NaN or infinite feature get nulls."""
    columns: dict[str, Any] = {}
    if kept is not None:
        for name in kept.column_names:
            columns[name] = kept.column(name)
    bad = unscorable_rows(X)
    if bad is not None:
        X = np.where(bad[:, None], 0.0, X)  # scored as zeros (no NaN warnings), then masked
    X = FeatureBlocks(X, sparse)
    labels = model.predict(X)
    columns["prediction"] = arrow_column(labels, bad)
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        if proba.shape[1] == 2:
            columns["proba"] = arrow_column(proba[:, 1], bad)
        else:
            for k, label in enumerate(model.classes_):
                columns[f"proba_{label}"] = arrow_column(proba[:, k], bad)
    return pa.table(columns)


def arrow_column(values: np.ndarray, mask: np.ndarray | None) -> pa.Array:
    """A column of predictions, null where ``mask``: from its buffers (numbers, booleans, str), so that predicting
    imports no pandas (``streamgd.data.arrow_numpy``); other labels (Python objects) by ``pa.array``."""
    try:
        return from_numpy(values, mask)
    except TypeError:
        return pa.array(values, mask=mask)


def write_tables(tables: Iterator[pa.Table], out: str | os.PathLike | Location,
                 storage_options: dict | None = None) -> PredictionCounts:
    """Write a stream of prediction tables as one Parquet file, atomically (an object in a store: uploaded whole
    once written); return the rows and the null predictions among them."""
    rows = unscored = 0

    def write(temporary: str) -> None:
        nonlocal rows, unscored
        writer = None
        try:
            for table in tables:
                if writer is None:
                    writer = pq.ParquetWriter(temporary, table.schema)
                writer.write_table(table)
                rows += table.num_rows
                unscored += table.column("prediction").null_count
        finally:
            if writer is not None:
                writer.close()

    write_object(resolve(out, storage_options), write)
    return PredictionCounts(rows, unscored)


def predict_to_parquet(model: LinearModel, data: Any, out: str | os.PathLike, keep: Sequence[str] = (),
                       prefetch_depth: int = 2, storage_options: dict | None = None) -> PredictionCounts:
    """Write a prediction for every row of ``data`` to ``out`` (atomically), in input order, with the ``keep``
    columns beside it; return the rows written and how many of them could not be scored (null predictions).
    ``out`` must not be one of the inputs, nor a directory or a device (ConfigError, before anything is read).
    ``data`` and ``out`` may be URIs (``s3://...``), opened with ``storage_options``."""
    dataset = open_for_model(model, data, keep, storage_options=storage_options)
    inputs = [uri_of(dataset.filesystem, source) for source in dataset.sources]
    out = check_output_file(out, inputs, "the predictions' path", storage_options)
    return write_tables(iter_prediction_tables(model, dataset, keep, prefetch_depth), out, storage_options)
