"""Where a factorization machine loses to the oracle on ``bench_fm.py``'s click log, and how close its pair
estimates come to the best any estimator could make of them (issue 28's first target).

    python3 scripts/bench_fm.py --data-dir D --rows 2000000 --holdout-rows 200000 \\
        --linear-args "--interactions none" --only fm,oracle
    python3 scripts/fm_gap_diagnosis.py --data-dir D --rows 2000000 --holdout-rows 200000 --column C17

It reads the bench's tables and the models it left in ``D/run-fm`` and ``D/run-oracle`` (FM-shaped truth only) and
prints two tables:

1. **Holdout log loss by the rarest factor value of a row**: the rows grouped by the largest Zipf rank (0 = most
   frequent) among their factor columns' values; per group the FM's and the oracle's log loss and the group's
   share of the FM's excess over the oracle (``(fm - oracle) x rows share``, summing to the whole excess).
2. **The pair estimates of one column's values, by rank**: for each value of ``--column`` in a rank range, its
   products with the ten most frequent values of every other factor column, from the FM's factors (signed by
   the hashing, as its margin uses them) against the planted ``<u_a, u_c>``: the FM's slope (its shrinkage),
   correlation and calibration (the slope of the truth on the FM's: 1 where its shrinkage is right), beside
   those of a **bound**, each value's (main effect, latent vector) fitted by Newton's method to its own training
   rows with every other term of the truth known exactly, under the truth's own Gaussian
   prior (a MAP no estimator that must also learn the other terms can beat). The correlation is what no
   shrinkage or rate changes: a calibrated estimate's share of the pair variance is about its square.
"""

from __future__ import annotations

import argparse
import os
import sys
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_fm  # the bench's table names and arguments

RANK_BUCKETS = (0, 10, 30, 100, 300, 1000, 3000, 1 << 31)
PARTNER_VALUES = 10  # each other factor column's most frequent values, the partners of table 2's products


def token_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 codes, null mask) of a column of the generator's 8-hex-digit tokens."""
    array = pc.fill_null(column.combine_chunks(), "00000000").cast(pa.string())
    null = column.combine_chunks().is_null().to_numpy(zero_copy_only=False)
    offsets = np.frombuffer(array.buffers()[1], np.int32)[array.offset:array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], np.uint8)[offsets[0]:offsets[-1]].reshape(-1, 8)
    digits = np.where(data >= ord("a"), data - ord("a") + 10, data - ord("0")).astype(np.uint32)
    codes = np.zeros(len(array), np.uint32)
    for i in range(8):
        codes = (codes << np.uint32(4)) | digits[:, i]
    return codes, null


def column_ranks(truth, table: pa.Table, columns) -> dict[int, np.ndarray]:
    """Each 0-based column's Zipf ranks in ``table``, -1 for a null."""
    out = {}
    for k in columns:
        codes, null = token_codes(table.column(f"C{k + 1}"))
        out[k] = np.where(null, -1, truth.ranks(k, codes))
    return out


def log_loss(margin: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0.0, margin) - y * margin))


def loss_by_rarest_value(truth, tables: dict, data_dir: str) -> None:
    raw = pq.read_table(tables["holdout"]["generated"])
    y = raw.column("label").to_numpy().astype(np.float64)
    margins = {}
    for name in ("fm", "oracle"):
        p = pq.read_table(os.path.join(data_dir, f"run-{name}", "preds.parquet")).column("proba").to_numpy()
        p = np.clip(p, 1e-15, 1 - 1e-15)
        margins[name] = np.log(p / (1 - p))
    ranks = column_ranks(truth, raw, truth.factor_columns)
    rarest = np.max(np.stack(list(ranks.values())), axis=0)
    excess = log_loss(margins["fm"], y) - log_loss(margins["oracle"], y)
    print(f"holdout: fm {log_loss(margins['fm'], y):.4f}, oracle {log_loss(margins['oracle'], y):.4f}, "
          f"truth {log_loss(truth.margins(raw), y):.4f}; fm's excess over the oracle {excess:.4f}\n")
    print("| rarest factor value's rank | rows | fm | oracle | share of fm's excess |\n|---|---|---|---|---|")
    for lo, hi in pairwise(RANK_BUCKETS):
        rows = (rarest >= lo) & (rarest < hi)
        if not rows.any():
            continue
        fm, oracle = log_loss(margins["fm"][rows], y[rows]), log_loss(margins["oracle"][rows], y[rows])
        print(f"| [{lo}, {hi if hi < 1 << 31 else 'max'}) | {rows.mean():.3f} | {fm:.4f} | {oracle:.4f} | "
              f"{(fm - oracle) * rows.mean() / excess:.2f} |")


def fm_vectors(model, truth, column: int, ranks: np.ndarray, bits: int) -> np.ndarray:
    """The FM's factors of the values ``ranks`` of ``column``, each signed as its hashed slot is."""
    from streamgd.features.spec import value_hashes

    tokens = pa.chunked_array([pa.array(list(truth.tokens(column, ranks)))])
    h = value_hashes(tokens, f"C{column + 1}").astype(np.int64)
    k = int(model.factorization["k"])
    first = model.n_dense if model.factorization.get("numeric") else 0
    sign = np.where(h >> 31, -1.0, 1.0)
    return model.factor_block[first + (h & ((1 << bits) - 1)), :k] * sign[:, None]


def bound_vectors(truth, train_path: str, column: int, lo: int, hi: int) -> dict[int, np.ndarray]:
    """Each value of ``column`` with rank in [lo, hi): its latent vector's MAP from its training rows with every
    other term of the truth known (the bound of table 2)."""
    partners = [c for c in truth.factor_columns if c != column]
    parts = {"rank": [], "S": [], "offset": [], "y": []}
    source = pq.ParquetFile(train_path)
    for group in range(source.num_row_groups):
        table = source.read_row_group(group)
        ranks = column_ranks(truth, table, [column])[column]
        keep = (ranks >= lo) & (ranks < hi)
        table = table.filter(pa.array(keep))
        ranks = ranks[keep]
        margin = truth.margins(table)
        others = column_ranks(truth, table, partners)
        S = np.zeros((len(ranks), truth.factor_rank))
        for c in partners:
            seen = others[c] >= 0
            S[seen] += truth.factor_vectors(c, others[c][seen])
        own = truth.value_effects(column, ranks) + np.einsum("nq,nq->n", truth.factor_vectors(column, ranks), S)
        for name, value in (("rank", ranks), ("S", S), ("offset", margin - own),
                            ("y", table.column("label").to_numpy().astype(np.float64))):
            parts[name].append(value)
    rank, S, offset, y = (np.concatenate(parts[name]) for name in ("rank", "S", "offset", "y"))
    order = np.argsort(rank, kind="stable")
    rank, S, offset, y = rank[order], S[order], offset[order], y[order]
    values, starts = np.unique(rank, return_index=True)
    precision = np.diag([1 / truth.category_scale[column] ** 2] + [1 / truth.factor_sigma ** 2] * truth.factor_rank)
    out = {}
    for value, start, stop in zip(values, starts, np.append(starts[1:], len(rank))):
        X = np.hstack([np.ones((stop - start, 1)), S[start:stop]])
        theta = np.zeros(X.shape[1])
        for _ in range(25):  # Newton on the penalised log likelihood: converges in a handful of steps
            p = 1 / (1 + np.exp(-(offset[start:stop] + X @ theta)))
            hessian = X.T @ (X * (p * (1 - p))[:, None]) + precision
            theta -= np.linalg.solve(hessian, X.T @ (p - y[start:stop]) + precision @ theta)
        out[int(value)] = theta[1:]
    return out


def pair_estimates(model, truth, tables: dict, column: int, bits: int) -> None:
    partners = [c for c in truth.factor_columns if c != column]
    top = np.arange(PARTNER_VALUES)
    fm_partners = np.concatenate([fm_vectors(model, truth, c, top, bits) for c in partners])
    true_partners = np.concatenate([truth.factor_vectors(c, top) for c in partners])
    print(f"\n| C{column + 1} ranks | values | fm slope | fm corr | truth on fm | bound slope | bound corr |\n"
          "|---|---|---|---|---|---|---|")
    buckets = [(lo, hi) for lo, hi in pairwise(RANK_BUCKETS[2:]) if lo < truth.cardinalities[column]]
    for lo, hi in buckets:
        hi = min(hi, truth.cardinalities[column])
        bound = bound_vectors(truth, tables["train"]["generated"], column, lo, hi)
        ranks = np.array(sorted(bound))
        true = (truth.factor_vectors(column, ranks) @ true_partners.T).ravel()
        fm = (fm_vectors(model, truth, column, ranks, bits) @ fm_partners.T).ravel()
        best = (np.stack([bound[r] for r in ranks]) @ true_partners.T).ravel()
        cells = [f"{(e @ true) / (true @ true):.3f} | {np.corrcoef(e, true)[0, 1]:.3f}" for e in (fm, best)]
        calibration = np.cov(fm, true)[0, 1] / fm.var(ddof=1)  # 1: the FM's shrinkage is the right one
        print(f"| [{lo}, {hi}) | {len(ranks):,} | {cells[0]} | {calibration:.2f} | {cells[1]} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--column", default="C17", help="The factor column whose values table 2 follows.")
    own, rest = parser.parse_known_args(argv)
    args = bench_fm.parse_args(rest)
    if args.truth != "fm":
        parser.error("--truth ffm: the bound is written for an FM-shaped truth")
    from streamgd.bench.synthetic_ctr import ctr_model
    from streamgd.models.linear import load

    tables = bench_fm.make_tables(args)
    truth = ctr_model(seed=args.model_seed, interactions=(), factor_rank=args.factor_rank)
    column = int(own.column.lstrip("C")) - 1
    if column not in truth.factor_columns:
        parser.error(f"--column {own.column}: expected one of the factor columns {bench_fm.factor_columns()}")
    loss_by_rarest_value(truth, tables, args.data_dir)
    pair_estimates(load(os.path.join(args.data_dir, "run-fm", "model.safetensors")), truth, tables, column,
                   args.hash_bits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
