"""scripts/fm_gap_diagnosis.py's bound (issue 28): each value's MAP from its own rows with every other term of the
truth known recovers the planted latent vectors where the rows are many, and no better than chance for vectors
that are not the planted ones; the token decoding inverts the generator's."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pyarrow.parquet as pq

from streamgd.bench.synthetic_ctr import make_ctr_dataset

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")


def _diagnosis():
    sys.path.insert(0, SCRIPTS)  # the script imports bench_fm, which imports bench_ctr, beside it
    try:
        spec = importlib.util.spec_from_file_location("fm_gap_diagnosis", os.path.join(SCRIPTS, "fm_gap_diagnosis.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(SCRIPTS)
    return module


def test_the_bound_recovers_well_observed_planted_vectors(tmp_path):
    diagnosis = _diagnosis()
    info = make_ctr_dataset(tmp_path / "clicks.parquet", n_rows=150_000, n_numeric=1, n_categorical=6,
                            cardinalities=(3, 10, 20, 30, 40, 50), interactions=(), factor_rank=4,
                            row_group_size=50_000, seed=0)
    truth = info.model
    assert truth.factor_columns == (1, 2, 3, 4)
    table = pq.read_table(info.path)
    ranks = diagnosis.column_ranks(truth, table, [4])[4]
    nulls = table.column("C5").is_null().to_numpy(zero_copy_only=False)
    assert np.array_equal(ranks < 0, nulls) and ranks.max() < 40  # the tokens decoded to the generator's ranks
    bound = diagnosis.bound_vectors(truth, info.path, 4, 0, 40)
    values = np.array(sorted(bound))
    estimated = np.stack([bound[r] for r in values])
    planted = truth.factor_vectors(4, values)
    corr = np.corrcoef(estimated.ravel(), planted.ravel())[0, 1]
    other = np.corrcoef(estimated.ravel(), truth.factor_vectors(3, values).ravel())[0, 1]  # another column's
    assert len(values) == 40 and corr > 0.95 and abs(other) < 0.3, (corr, other)
