"""Small Parquet files written in tmp dirs for the tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def write_table(path, columns: dict, row_group_size: int) -> str:
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return str(path)


@pytest.fixture
def numbered(tmp_path):
    """2,000 rows in row groups of 300: an id column, float, int and bool features and a target."""
    rng = np.random.default_rng(0)
    n = 2000
    return write_table(tmp_path / "numbered.parquet", {
        "row_id": np.arange(n, dtype=np.int64), "f": rng.standard_normal(n), "i": rng.integers(0, 9, n),
        "b": rng.random(n) < 0.5, "y": rng.standard_normal(n)}, 300)
