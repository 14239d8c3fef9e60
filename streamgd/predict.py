"""Streamed predictions: a dataset in, a Parquet file of predictions out, in input row order, chunk by chunk."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .dataset import Dataset, open_dataset
from .errors import DataError
from .fileio import atomic_write
from .models import LinearModel
from .reader import ChunkStream
from .schedule import make_plan


def open_for_model(model: LinearModel, data: Any, keep: Sequence[str] = (), target: str | None = None) -> Dataset:
    """Open ``data`` with the model's feature columns, and the ``target`` column if one is named (evaluation)."""
    spec = model.spec
    dataset = open_dataset(data, target=target, features=model.input_columns,
                           categorical=[c.name for c in spec.categorical] if spec is not None else (),
                           allow_string_target=model.is_classifier)
    missing = [c for c in keep if c not in dataset.schema.names]
    if missing:
        raise DataError(f"the column {missing[0]!r} to keep is not in the data")
    return dataset


def iter_prediction_tables(model: LinearModel, dataset: Dataset, keep: Sequence[str] = (),
                           prefetch_depth: int = 2) -> Iterator[pa.Table]:
    """One Arrow table of predictions per unit, in file order."""
    plan = make_plan(dataset.units, "none")
    with ChunkStream(dataset, plan, dtype=np.float64, prefetch_depth=prefetch_depth, with_target=False,
                     extra_columns=list(keep), features=model.spec) as stream:
        for chunk in stream:
            yield prediction_table(model, chunk.X, chunk.extra if keep else None)


def prediction_table(model: LinearModel, X: np.ndarray, kept: pa.Table | None = None) -> pa.Table:
    """The ``prediction`` column (and ``proba`` or ``proba_<class>`` for classifiers) for a feature matrix."""
    columns: dict[str, Any] = {}
    if kept is not None:
        for name in kept.column_names:
            columns[name] = kept.column(name)
    labels = model.predict(X)
    columns["prediction"] = pa.array(labels.tolist() if labels.dtype == object else labels)
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        if proba.shape[1] == 2:
            columns["proba"] = pa.array(proba[:, 1])
        else:
            for k, label in enumerate(model.classes_):
                columns[f"proba_{label}"] = pa.array(proba[:, k])
    return pa.table(columns)


def write_tables(tables: Iterator[pa.Table], out: str | os.PathLike) -> int:
    """Write a stream of tables as one Parquet file, atomically; return the number of rows."""
    rows = 0

    def write(temporary: str) -> None:
        nonlocal rows
        writer = None
        try:
            for table in tables:
                if writer is None:
                    writer = pq.ParquetWriter(temporary, table.schema)
                writer.write_table(table)
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()

    atomic_write(out, write)
    return rows


def predict_to_parquet(model: LinearModel, data: Any, out: str | os.PathLike, keep: Sequence[str] = (),
                       prefetch_depth: int = 2) -> int:
    """Write predictions for every row of ``data`` to ``out`` (atomically); return the number of rows."""
    dataset = open_for_model(model, data, keep)
    return write_tables(iter_prediction_tables(model, dataset, keep, prefetch_depth), out)
