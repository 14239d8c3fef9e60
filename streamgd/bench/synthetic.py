"""Synthetic Parquet datasets of any size from a known true model, written row group by row group.

Memory is bounded by one row group; the values depend only on the seed and the row-group size, so a dataset can
be regenerated exactly instead of being committed.

>>> import tempfile, os, pyarrow.parquet as pq
>>> path = os.path.join(tempfile.mkdtemp(), "s.parquet")
>>> info = make_dataset(path, n_rows=1000, n_features=3, task="regression", row_group_size=400)
>>> pq.ParquetFile(path).metadata.num_row_groups, info.coef.shape
(3, (1, 3))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError

TASKS = ("regression", "binary", "multiclass")
LEVELS = ("a", "b", "c", "d")  # the values of each synthetic text column


@dataclass(frozen=True)
class SyntheticInfo:
    """What was written and the true model behind it."""

    path: str
    n_rows: int
    n_features: int
    task: str
    coef: np.ndarray  # (n_outputs, n_features)
    intercept: np.ndarray  # (n_outputs,)
    files: list[str]
    category_effects: np.ndarray | None = None  # (n_outputs, n_categorical, len(LEVELS)): each value's margin


def _check(n_rows: int, n_features: int, task: str, n_classes: int, row_group_size: int, n_files: int,
           dtype: str, nan_fraction: float, noise: float, n_categorical: int = 0) -> None:
    rules = [
        ("n_rows", n_rows, n_rows >= 1, "an integer >= 1"),
        ("n_features", n_features, n_features >= 1, "an integer >= 1"),
        ("task", task, task in TASKS, f"one of {', '.join(TASKS)}"),
        ("n_classes", n_classes, n_classes >= 2, "an integer >= 2"),
        ("row_group_size", row_group_size, row_group_size >= 1, "an integer >= 1"),
        ("n_files", n_files, 1 <= n_files <= n_rows, "an integer between 1 and n_rows"),
        ("dtype", dtype, dtype in ("float32", "float64"), "float32 or float64"),
        ("nan_fraction", nan_fraction, 0.0 <= nan_fraction < 1.0, "a number in [0, 1)"),
        ("noise", noise, noise >= 0.0, "a number >= 0"),
        ("n_categorical", n_categorical, n_categorical >= 0, "an integer >= 0"),
    ]
    for name, value, ok, accepted in rules:
        if not ok:
            raise ConfigError(f"{name}={value!r} is not accepted; expected {accepted}")


def output_files(path: str, n_rows: int, n_files: int) -> tuple[list[str], np.ndarray]:
    """The files a dataset of ``n_rows`` is written to (``path`` itself, or ``n_files`` parts in the directory
    ``path``), created folders, and the first row of each (with ``n_rows`` last)."""
    if n_files == 1:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        files = [path]
    else:
        os.makedirs(path, exist_ok=True)
        files = [os.path.join(path, f"part-{i:05d}.parquet") for i in range(n_files)]
    return files, np.linspace(0, n_rows, n_files + 1).astype(np.int64)


def true_model(n_features: int, task: str, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The coefficients and intercepts a dataset with this seed is drawn from."""
    rng = np.random.default_rng([seed, 0xC0EF])
    n_out = n_classes if task == "multiclass" else 1
    coef = rng.standard_normal((n_out, n_features)) / np.sqrt(n_features)
    intercept = 0.5 * rng.standard_normal(n_out)
    return coef, intercept


def category_effects(n_categorical: int, n_outputs: int, seed: int) -> np.ndarray:
    """Each text column's effect on the margins, per value: shape (n_outputs, n_categorical, len(LEVELS))."""
    rng = np.random.default_rng([seed, 0xCA7])
    return rng.standard_normal((n_outputs, n_categorical, len(LEVELS)))


def _row_group(rng: np.random.Generator, n: int, coef: np.ndarray, intercept: np.ndarray, task: str,
               dtype: str, nan_fraction: float, noise: float, effects: np.ndarray | None = None,
               first_id: int | None = None) -> pa.Table:
    d = coef.shape[1]
    X = rng.standard_normal((d, n), dtype=np.float32 if dtype == "float32" else np.float64)  # row j = column j
    margins = coef @ X + intercept[:, None]
    levels = None
    if effects is not None and effects.shape[1]:
        levels = rng.integers(0, len(LEVELS), (effects.shape[1], n))
        for k in range(effects.shape[1]):
            margins += effects[:, k, levels[k]]
    if task == "regression":
        y = margins[0] + noise * rng.standard_normal(n)
    elif task == "binary":
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-margins[0]))).astype(np.int64)
    else:
        p = np.exp(margins - margins.max(axis=0))
        p /= p.sum(axis=0)
        y = (rng.random(n)[None, :] > np.cumsum(p, axis=0)).sum(axis=0).astype(np.int64)
        y = np.minimum(y, coef.shape[0] - 1)
    if nan_fraction > 0:
        X[rng.random(X.shape) < nan_fraction] = np.nan
    columns = {} if first_id is None else {"id": np.arange(first_id, first_id + n, dtype=np.int64)}
    columns.update({f"x{j}": X[j] for j in range(d)})
    if levels is not None:
        names = np.array(LEVELS, dtype=object)
        columns.update({f"c{k}": pa.array(names[levels[k]], type=pa.string()) for k in range(len(levels))})
    columns["y"] = y
    return pa.table(columns)


def make_dataset(path: str | os.PathLike, n_rows: int, n_features: int = 32, task: str = "binary",
                 n_classes: int = 3, row_group_size: int = 65_536, n_files: int = 1, dtype: str = "float32",
                 nan_fraction: float = 0.0, noise: float = 0.1, sorted_by_target: bool = False,
                 seed: int = 0, id_column: bool = False, n_categorical: int = 0,
                 model_seed: int | None = None, on_rows: Callable[[int], None] | None = None) -> SyntheticInfo:
    """Write ``n_rows`` rows of ``x0..x{d-1}`` and ``y`` drawn from a known linear model; one file or a directory
    of ``n_files`` parts. ``sorted_by_target`` (small data only) sorts rows by ``y``, to test shuffling.

    ``id_column`` adds ``id`` (int64, the row number 0..n_rows-1 across the files); ``n_categorical`` adds text
    columns ``c0..`` whose values (``LEVELS``) enter the true model; ``model_seed`` (default ``seed``) seeds the
    true model alone, so another ``seed`` draws new rows from the same model (a test set). ``nan_fraction``
    applies to the ``x`` columns. ``on_rows`` is called with the rows of each row group written (progress)."""
    _check(n_rows, n_features, task, n_classes, row_group_size, n_files, dtype, nan_fraction, noise, n_categorical)
    if sorted_by_target and n_rows > 5_000_000:
        raise ConfigError(f"sorted_by_target holds all rows in memory; n_rows={n_rows} is over 5,000,000")
    path = os.fspath(path)
    model_seed = seed if model_seed is None else model_seed
    coef, intercept = true_model(n_features, task, n_classes, model_seed)
    effects = category_effects(n_categorical, coef.shape[0], model_seed) if n_categorical else None
    files, bounds = output_files(path, n_rows, n_files)
    for index, file in enumerate(files):
        rows = int(bounds[index + 1] - bounds[index])
        first_id = int(bounds[index]) if id_column else None
        groups = (_row_group(np.random.default_rng([seed, index, g]), min(row_group_size, rows - start), coef,
                             intercept, task, dtype, nan_fraction, noise, effects,
                             None if first_id is None else first_id + start)
                  for g, start in enumerate(range(0, rows, row_group_size)))
        if sorted_by_target:
            table = pa.concat_tables(list(groups))
            table = table.take(np.argsort(table.column("y").to_numpy(), kind="stable"))
            pq.write_table(table, file, row_group_size=row_group_size)
            if on_rows is not None:
                on_rows(table.num_rows)
            continue
        writer = None
        try:
            for table in groups:  # one row group in memory at a time
                if writer is None:
                    writer = pq.ParquetWriter(file, table.schema)
                writer.write_table(table, row_group_size=row_group_size)
                if on_rows is not None:
                    on_rows(table.num_rows)
        finally:
            if writer is not None:
                writer.close()
    return SyntheticInfo(path, n_rows, n_features, task, coef, intercept, files, effects)
