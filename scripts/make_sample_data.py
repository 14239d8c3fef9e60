"""Regenerate the sample data in data/ from the copies of two public datasets bundled with scikit-learn.

    python3 scripts/make_sample_data.py
"""

from __future__ import annotations

import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_breast_cancer, load_diabetes

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")


def snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def main() -> None:
    cancer = load_breast_cancer()
    order = np.random.default_rng(0).permutation(len(cancer.target))
    columns = {snake(n): cancer.data[order, j] for j, n in enumerate(cancer.feature_names)}
    columns["malignant"] = (cancer.target[order] == 0).astype(np.int64)  # scikit-learn codes malignant as 0
    pq.write_table(pa.table(columns), os.path.join(HERE, "breast_cancer.parquet"), row_group_size=100)

    diabetes = load_diabetes(scaled=False)
    columns = {snake(n): diabetes.data[:, j] for j, n in enumerate(diabetes.feature_names)}
    columns["progression"] = diabetes.target.astype(np.float64)
    pq.write_table(pa.table(columns), os.path.join(HERE, "diabetes.parquet"), row_group_size=100)


if __name__ == "__main__":
    main()
