"""Factorization machines on a click log with low-rank pair effects: streamgd linear, FM and FFM against a
PyTorch FM and Vowpal Wabbit ``--lrq``, in one run: rows/s, peak RSS, holdout log loss, gap to the truth closed.

    python3 scripts/bench_fm.py                                  # 2M rows, rank-4 FM-shaped truth, every contender
    python3 scripts/bench_fm.py --rows 200000 --only linear,fm,torch-fm
    python3 scripts/bench_fm.py --truth ffm                      # field-specific pair effects (FFM-shaped truth)

The training table (``--rows``, ``--seed``) and the holdout (``--holdout-rows``, ``--seed`` + 1) are written once
into ``--data-dir`` by ``streamgd make-data --task ctr --factor-rank R --factor-shape fm|ffm --interactions ''``
(13 counts, 26 tokens, the default factor columns C6, C9, C11, C14, C17; no pair cell effects besides the
low-rank ones, so the truth's whole pair term is of the shape an FM (or, with ``--truth ffm``, an FFM) can
represent); every contender reads a copy with the counts as log1p(count). Each contender trains in its own
child process for ``--epochs`` passes, then another child scores the holdout:

- ``linear``: ``streamgd fit --model logistic --categorical C1..C26 --hash-bits B --missing impute --epochs E``
  (the click-log defaults: FTRL at batch 1), plus ``--linear-args``.
- ``linear-pairs``: the same with ``--interactions`` over every pair of the factor columns (10 crosses).
- ``fm``: the same plus ``--fm-args`` (default ``--factors 8``); ``ffm``: plus ``--ffm-args`` (default
  ``--field-aware --factors 4``).
- ``oracle``: the linear command on a copy with the planted pair term as a numeric column ``PAIR``: the pairs
  exact, the rest as the linear model estimates it, so the share of the gap any pair model can close here.
- ``torch-fm``: PyTorch on the CPU (``--torch-threads``, default 1): the linear part over the same 2^B signed hashed slots as
  streamgd (an ``nn.EmbeddingBag`` sum with the signs as per-sample weights, plus the 13 counts), the pair term
  by Rendle's identity over an ``nn.Embedding`` of K-vectors of the 26 slots of a row (EmbeddingBag's sum
  gives sum v x but not sum (v x)^2), sparse gradients, ``torch.optim.Adagrad``, batches of ``--torch-batch``
  rows (512: per-batch overhead small against the row work, still many steps per epoch); the tokens are hashed
  in the child (the slots equal streamgd's: checked here before training).
- ``vw-lrq``: ``vowpalwabbit.Workspace`` (the PyPI wheel has no ``vw`` command) on the tables as VW text
  (``|n I1:v ... |c C1=token ...``, written apart and not timed), ``-b B --loss_function logistic --lrq ccK``
  (every pair within the categorical namespace), ``--passes E -c -k --holdout_off`` when E > 1.

A contender whose command fails (a streamgd option not built yet, a missing package) is a row saying "not
available: " and the last line of its stderr, and the others still run. rows/s is training rows x epochs over
the wall time of the training child (interpreter start, imports and compiles included); peak RSS is that
child's own ``ru_maxrss`` (through ``bench_ctr.py``'s launcher). Holdout log losses are computed here from each
contender's margins or probabilities; the planted truth's (the floor) and the training click rate's (the
ceiling) on the same holdout come from the generator's own ``margins``. "gap closed" is (linear - contender) /
(linear - truth) of the holdout log losses: issue 28's target is FM at 0.6 or more within 3 epochs, FFM at least
as much on an FFM-shaped truth, FM at 0.4x the linear model's rows/s and 3x the PyTorch FM's.
Needs ``pip install vowpalwabbit torch`` for the two outside contenders.
``scripts/fm_gap_diagnosis.py`` then reads a run's ``fm`` and ``oracle`` outputs and says where FM loses to the
oracle and how close its pair estimates come to the best possible (benchmarks/README.md, "Why FM stops at 0.58").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ctr  # noqa: E402  the launcher, the VW child and text, the log1p copy, the holdout's log loss

# numpy, pyarrow and torch are imported where they are used: this file is also each child process.

CONTENDERS = ("linear", "linear-pairs", "fm", "ffm", "oracle", "torch-fm", "vw-lrq")
FM_ARGS = "--factors 8"
FFM_ARGS = "--field-aware --factors 4"
SCRIPT = os.path.abspath(__file__)
N_CATEGORICAL = 26


# ---- the PyTorch FM children ------------------------------------------------------------------------------------
def hashed_slots(table, bits: int):
    """(slots int64 (n, 26), signs float32 (n, 26)) of the C columns, as streamgd's hashing gives them:
    32-bit FNV-1a of the token seeded by fnv1a(name + '='), slot h & (2^B - 1), sign -1 where bit 31 is set; a
    null hashes as seed ^ 0x9E3779B9. Vectorised over the tokens, which are all 8 bytes."""
    import numpy as np
    import pyarrow.compute as pc

    names = [n for n in table.column_names if n.startswith("C")]
    n = table.num_rows
    slots, signs = np.empty((n, len(names)), np.int64), np.empty((n, len(names)), np.float32)
    for j, name in enumerate(names):
        column = table.column(name).combine_chunks()
        seed = 2166136261
        for byte in (name + "=").encode():
            seed = ((seed ^ byte) * 16777619) & 0xFFFFFFFF
        filled = pc.fill_null(column, "00000000").cast("string")
        offsets = np.frombuffer(filled.buffers()[1], np.int32)[filled.offset:filled.offset + n + 1]
        if n and not np.all(np.diff(offsets) == 8):
            raise ValueError(f"{name}: expected tokens of 8 bytes")
        data = np.frombuffer(filled.buffers()[2], np.uint8)[offsets[0]:offsets[-1]].reshape(n, 8).astype(np.uint64)
        h = np.full(n, seed, np.uint64)
        for k in range(8):
            h = ((h ^ data[:, k]) * np.uint64(16777619)) & np.uint64(0xFFFFFFFF)
        null = column.is_null().to_numpy(zero_copy_only=False)
        h[null] = np.uint64(seed ^ 0x9E3779B9)
        slots[:, j] = (h & np.uint64((1 << bits) - 1)).astype(np.int64)
        signs[:, j] = np.where(h >> np.uint64(31), -1.0, 1.0)
    return slots, signs


def numeric_block(table):
    """(n, 13) float32: the log1p counts, a null as 0."""
    import numpy as np

    names = [n for n in table.column_names if n.startswith("I")]
    out = np.zeros((table.num_rows, len(names)), np.float32)
    for j, name in enumerate(names):
        out[:, j] = np.nan_to_num(table.column(name).to_numpy(zero_copy_only=False).astype(np.float32), nan=0.0)
    return out


def child_torch_train(train: str, bits: str, factors: str, epochs: str, batch: str, lr: str, out: str,
                      seed: str = "0", threads: str = "1") -> None:
    import numpy as np
    import pyarrow.parquet as pq
    import torch

    started = time.perf_counter()
    torch.manual_seed(int(seed))
    torch.set_num_threads(int(threads))
    n_slots, k, batch = 1 << int(bits), int(factors), int(batch)
    source = pq.ParquetFile(train)
    n_numeric = sum(1 for n in source.schema_arrow.names if n.startswith("I"))

    class FM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(1))
            self.numeric = torch.nn.Linear(n_numeric, 1, bias=False)
            torch.nn.init.zeros_(self.numeric.weight)
            self.linear = torch.nn.EmbeddingBag(n_slots, 1, mode="sum", sparse=True)
            torch.nn.init.zeros_(self.linear.weight)
            self.factors = torch.nn.Embedding(n_slots, k, sparse=True)
            torch.nn.init.normal_(self.factors.weight, std=0.01)

        def forward(self, dense, slots, signs):
            v = self.factors(slots) * signs.unsqueeze(-1)  # (b, 26, k): v_s x
            total = v.sum(dim=1)
            pairs = 0.5 * (total.pow(2) - v.pow(2).sum(dim=1)).sum(dim=1)
            linear = self.linear(slots, per_sample_weights=signs).squeeze(1)
            return self.bias + self.numeric(dense).squeeze(1) + linear + pairs

    model = FM()
    optimizer = torch.optim.Adagrad(model.parameters(), lr=float(lr), foreach=False)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(int(seed))
    rows = 0
    for _ in range(int(epochs)):
        for group in rng.permutation(source.num_row_groups):  # row groups shuffled, rows shuffled within
            table = source.read_row_group(int(group))
            order = rng.permutation(table.num_rows)
            slots, signs = hashed_slots(table, int(bits))
            dense = numeric_block(table)
            y = table.column("label").to_numpy().astype(np.float32)
            slots, signs, dense, y = (torch.from_numpy(np.ascontiguousarray(a[order])) for a in (slots, signs, dense, y))
            for start in range(0, table.num_rows, batch):
                end = start + batch
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(dense[start:end], slots[start:end], signs[start:end]), y[start:end])
                loss.backward()
                optimizer.step()
            rows += table.num_rows
    np.savez(out, bias=model.bias.detach().numpy(), numeric=model.numeric.weight.detach().numpy()[0],
             linear=model.linear.weight.detach().numpy()[:, 0], factors=model.factors.weight.detach().numpy())
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows}))


def child_torch_predict(holdout: str, bits: str, model_path: str, out: str) -> None:
    """The holdout's margins from the saved parameters, in NumPy (no torch import)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = np.load(model_path)
    source, margins = pq.ParquetFile(holdout), []
    for group in range(source.num_row_groups):
        table = source.read_row_group(group)
        slots, signs = hashed_slots(table, int(bits))
        v = p["factors"][slots] * signs[..., None]
        pairs = 0.5 * (v.sum(axis=1) ** 2 - (v ** 2).sum(axis=1)).sum(axis=1)
        margins.append(p["bias"][0] + numeric_block(table) @ p["numeric"] + (p["linear"][slots] * signs).sum(axis=1)
                       + pairs)
    pq.write_table(pa.table({"margin": np.concatenate(margins).astype(np.float64)}), out)


CHILDREN = {"vw": bench_ctr.child_vw, "torch-train": child_torch_train, "torch-predict": child_torch_predict}


# ---- arguments and tables ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--data-dir", default="/tmp/streamgd-fm", help="Where the tables and every output go.")
    parser.add_argument("--rows", type=int, default=2_000_000, help="Training rows.")
    parser.add_argument("--holdout-rows", type=int, default=200_000)
    parser.add_argument("--row-group-size", type=int, default=65_536)
    parser.add_argument("--seed", type=int, default=0, help="Rows of the training table (the holdout: seed + 1).")
    parser.add_argument("--model-seed", type=int, default=0, help="The planted truth, shared by both tables.")
    parser.add_argument("--truth", choices=("fm", "ffm"), default="fm",
                        help="The shape of the planted pair effects (make-data --factor-shape).")
    parser.add_argument("--factor-rank", type=int, default=4, help="The rank of the planted latent vectors.")
    parser.add_argument("--hash-bits", type=int, default=20, help="2^B hashed slots for every contender.")
    parser.add_argument("--epochs", type=int, default=3, help="Passes over the training table, every contender.")
    parser.add_argument("--linear-args", default="", help="Appended to every streamgd fit command.")
    parser.add_argument("--fm-args", default=FM_ARGS, help="fm's options over the linear command.")
    parser.add_argument("--ffm-args", default=FFM_ARGS, help="ffm's options over the linear command.")
    parser.add_argument("--torch-factors", type=int, default=8)
    parser.add_argument("--torch-batch", type=int, default=512)
    parser.add_argument("--torch-lr", type=float, default=0.05, help="torch.optim.Adagrad's learning rate.")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch.set_num_threads (default 1: on a 2-core machine shared with other work, "
                             "two OpenMP threads made each batch many times slower than one).")
    parser.add_argument("--vw-rank", type=int, default=8, help="VW's --lrq ccK.")
    parser.add_argument("--vw-args", default="", help="Appended to VW's training arguments.")
    parser.add_argument("--only", default=",".join(CONTENDERS),
                        help="Comma-separated subset of " + ",".join(CONTENDERS) + ".")
    parser.add_argument("--json", default=None, help="Write every number measured here.")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(CONTENDERS))
    if unknown or not args.only:
        parser.error(f"--only {','.join(unknown) or '(empty)'}: expected a subset of {','.join(CONTENDERS)}")
    if min(args.rows, args.holdout_rows, args.epochs, args.factor_rank, args.torch_batch) < 1 \
            or not 1 <= args.hash_bits <= 30:
        parser.error("--rows, --holdout-rows, --epochs, --factor-rank and --torch-batch must be >= 1, "
                     "--hash-bits in [1, 30]")
    return args


def factor_columns() -> list[str]:
    from streamgd.bench.synthetic_ctr import default_factor_columns

    return [f"C{k + 1}" for k in default_factor_columns(N_CATEGORICAL)]


def make_tables(args: argparse.Namespace) -> dict:
    """The training table and the holdout (written once, to a temporary name then renamed) and their log1p
    copies, which every contender reads."""
    os.makedirs(args.data_dir, exist_ok=True)
    tables = {}
    for role, rows, seed in (("train", args.rows, args.seed), ("holdout", args.holdout_rows, args.seed + 1)):
        name = (f"fm-{rows}-seed{seed}-model{args.model_seed}-rank{args.factor_rank}-{args.truth}"
                f"-rg{args.row_group_size}")
        path = os.path.join(args.data_dir, name + ".parquet")
        if not os.path.exists(path):
            child = bench_ctr.Child(streamgd_command(
                "make-data", path + ".part", "--task", "ctr", "--rows", str(rows), "--seed", str(seed),
                "--model-seed", str(args.model_seed), "--row-group-size", str(args.row_group_size),
                "--interactions", "", "--factor-rank", str(args.factor_rank), "--factor-shape", args.truth),
                os.path.join(args.data_dir, f"make-{role}")).check()
            os.replace(path + ".part", path)
            print(child.stdout.strip())
        logged = os.path.join(args.data_dir, name + "-log1p.parquet")
        if not os.path.exists(logged):
            bench_ctr.write_log1p_copy(path, logged)
        tables[role] = {"generated": path, "path": logged, "rows": rows, "seed": seed}
    return tables


def references(args: argparse.Namespace, tables: dict) -> dict:
    """The planted truth's and the training click rate's log loss on the holdout."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from streamgd.bench.synthetic_ctr import ctr_model

    model = ctr_model(seed=args.model_seed, interactions=(), factor_rank=args.factor_rank,
                      factor_field_aware=args.truth == "ffm")  # make-data's, as the tables were written
    rate = float(pc.mean(pq.read_table(tables["train"]["generated"], columns=["label"]).column("label")).as_py())
    truth = constant = 0.0
    source = pq.ParquetFile(tables["holdout"]["generated"])
    for group in range(source.num_row_groups):
        table = source.read_row_group(group)
        y = table.column("label").to_numpy()
        truth += float(np.sum(np.logaddexp(0.0, np.where(y == 1, -1.0, 1.0) * model.margins(table))))
        constant += float(-np.sum(np.where(y == 1, np.log(rate), np.log1p(-rate))))
    n = tables["holdout"]["rows"]
    return {"truth_log_loss": truth / n, "constant_log_loss": constant / n, "train_click_rate": rate}


def streamgd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "streamgd.cli.main", *args]


def bench_child(*args: str) -> list[str]:
    return [sys.executable, SCRIPT, "child", *args]


class NotAvailable(Exception):
    """A contender that cannot run here: its row says why, in one line."""


def run(command: list[str], log: str) -> bench_ctr.Child:
    child = bench_ctr.Child(command, log)
    if child.status != 0:
        lines = child.stderr.strip().splitlines() or [f"exit status {child.status}"]
        raise NotAvailable(lines[-1].strip())
    return child


def result(args: argparse.Namespace, train: bench_ctr.Child, predict: bench_ctr.Child, log_loss: float) -> dict:
    return {"status": "ok", "commands": [shlex.join(train.command), shlex.join(predict.command)],
            "train_seconds": train.seconds, "rows_per_s": args.rows * args.epochs / train.seconds,
            "peak_rss_mb": train.peak_rss_mb, "predict_peak_rss_mb": predict.peak_rss_mb,
            "holdout_log_loss": log_loss}


# ---- the contenders ---------------------------------------------------------------------------------------------
def fit_and_score(args: argparse.Namespace, tables: dict, out_dir: str, extra: list[str]) -> dict:
    import pyarrow.parquet as pq

    model, preds = os.path.join(out_dir, "model.safetensors"), os.path.join(out_dir, "preds.parquet")
    for stale in (model, preds):  # never score a previous run's model after a failure
        if os.path.exists(stale):
            os.remove(stale)
    categorical = ",".join(f"C{k + 1}" for k in range(N_CATEGORICAL))
    fit = ["fit", tables["train"]["path"], "--target", "label", "--model", "logistic", "--categorical", categorical,
           "--hash-bits", str(args.hash_bits), "--missing", "impute", "--epochs", str(args.epochs),
           *shlex.split(args.linear_args), *extra, "--out", model, "--json", "--quiet"]
    train = run(streamgd_command(*fit), os.path.join(out_dir, "train"))
    predict = run(streamgd_command("predict", model, tables["holdout"]["path"], "--out", preds),
                  os.path.join(out_dir, "predict"))
    proba = pq.read_table(preds).column("proba")
    if proba.null_count:
        raise NotAvailable(f"streamgd predict left {proba.null_count:,} holdout rows unscored")
    out = result(args, train, predict, bench_ctr.holdout_log_loss(tables, probability=proba.to_numpy()))
    out["self_reported"] = json.loads(train.stdout).get("epochs")
    return out


def run_linear(args, tables, out_dir):
    return fit_and_score(args, tables, out_dir, [])


def run_linear_pairs(args, tables, out_dir):
    columns = factor_columns()
    pairs = [f"{a}:{c}" for i, a in enumerate(columns) for c in columns[i + 1:]]
    return fit_and_score(args, tables, out_dir, ["--interactions", ",".join(pairs)])


def run_fm(args, tables, out_dir):
    return fit_and_score(args, tables, out_dir, shlex.split(args.fm_args))


def run_ffm(args, tables, out_dir):
    return fit_and_score(args, tables, out_dir, shlex.split(args.ffm_args))


def run_oracle(args, tables, out_dir):
    """The linear model given the planted pair term as a numeric column ``PAIR``: the pairs exact, the rest
    estimated as the linear model estimates it, so the most any pair model can close on these rows."""
    oracle = {role: dict(table, path=write_pair_copy(args, table)) for role, table in tables.items()}
    return fit_and_score(args, oracle, out_dir, [])


def write_pair_copy(args: argparse.Namespace, table: dict) -> str:
    """The log1p copy with the planted pair term as column ``PAIR`` (the truth's margin less the margin of the
    same model without the low-rank pairs), written once beside it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from streamgd.bench.synthetic_ctr import ctr_model

    out = table["path"].replace("-log1p.parquet", "-log1p-pair.parquet")
    if os.path.exists(out):
        return out
    shape = {"seed": args.model_seed, "interactions": ()}
    full = ctr_model(**shape, factor_rank=args.factor_rank, factor_field_aware=args.truth == "ffm")
    without = ctr_model(**shape, factor_rank=0)
    generated, logged = pq.ParquetFile(table["generated"]), pq.ParquetFile(table["path"])
    schema = logged.schema_arrow.append(pa.field("PAIR", pa.float64()))
    with pq.ParquetWriter(out + ".part", schema) as writer:
        for group in range(generated.num_row_groups):
            raw = generated.read_row_group(group)
            pair = full.margins(raw) - without.margins(raw)  # a constant offset goes to the intercept
            writer.write_table(logged.read_row_group(group).append_column("PAIR", pa.array(pair)))
    os.replace(out + ".part", out)
    return out


def run_torch_fm(args, tables, out_dir):
    import numpy as np
    import pyarrow.parquet as pq

    check_slots_match_streamgd(tables["holdout"]["path"], args.hash_bits)
    model, preds = os.path.join(out_dir, "model.npz"), os.path.join(out_dir, "preds.parquet")
    train = run(bench_child("torch-train", tables["train"]["path"], str(args.hash_bits), str(args.torch_factors),
                            str(args.epochs), str(args.torch_batch), str(args.torch_lr), model, str(args.seed),
                            str(args.torch_threads)),
                os.path.join(out_dir, "train"))
    predict = run(bench_child("torch-predict", tables["holdout"]["path"], str(args.hash_bits), model, preds),
                  os.path.join(out_dir, "predict"))
    margins = pq.read_table(preds).column("margin").to_numpy()
    out = result(args, train, predict, bench_ctr.holdout_log_loss(tables, margin=np.asarray(margins)))
    out["inner_train_seconds"] = json.loads(train.stdout)["seconds"]
    out["batch_size"] = args.torch_batch
    return out


def check_slots_match_streamgd(path: str, bits: int) -> None:
    """The torch child's slots and signs equal streamgd's hashing of the same tokens (first row group)."""
    import numpy as np
    import pyarrow.parquet as pq

    from streamgd.features.spec import value_hashes

    table = pq.ParquetFile(path).read_row_group(0)
    slots, signs = hashed_slots(table, bits)
    for j, name in enumerate(n for n in table.column_names if n.startswith("C")):
        h = value_hashes(table.column(name), name)
        if not (np.array_equal(slots[:, j], h & ((1 << bits) - 1)) and np.array_equal(signs[:, j] < 0, h >> 31 == 1)):
            raise NotAvailable(f"the torch child's hashing of {name} differs from streamgd's")


def run_vw_lrq(args, tables, out_dir):
    import numpy as np

    for role in ("train", "holdout"):
        path = os.path.join(out_dir, f"{role}.vw")
        if not os.path.exists(path):
            print(f"# write {tables[role]['path']} as VW text: {path}", flush=True)
            bench_ctr.write_vw_text(tables[role]["path"], path)
    model, preds = os.path.join(out_dir, "model.vw"), os.path.join(out_dir, "preds.txt")
    passes = f" --passes {args.epochs} -c -k --holdout_off" if args.epochs > 1 else ""
    train_args = (f"-d {out_dir}/train.vw -b {args.hash_bits} --loss_function logistic --lrq cc{args.vw_rank} "
                  f"-f {model} --quiet{passes} {args.vw_args}").strip()
    train = run(bench_child("vw", train_args), os.path.join(out_dir, "train"))
    predict = run(bench_child("vw", f"-t -i {model} -d {out_dir}/holdout.vw -p {preds} --quiet"),
                  os.path.join(out_dir, "predict"))
    margins = np.loadtxt(preds, usecols=0, ndmin=1)  # raw scores: VW applies no link unless asked
    return result(args, train, predict, bench_ctr.holdout_log_loss(tables, margin=margins))


RUNNERS = {"linear": run_linear, "linear-pairs": run_linear_pairs, "fm": run_fm, "ffm": run_ffm,
           "oracle": run_oracle, "torch-fm": run_torch_fm, "vw-lrq": run_vw_lrq}


# ---- the report -------------------------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    results, ref = report["results"], report["references"]
    linear = results.get("linear", {})
    linear_ok = linear.get("status") == "ok"
    lines = ["| contender | rows/s | x linear | peak RSS MB | holdout log loss | gap closed |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        if r["status"] != "ok":
            lines.append(f"| {name} | not available: {r['error'][:100]} | | | | |")
            continue
        speed = f"{r['rows_per_s'] / linear['rows_per_s']:.2f}" if linear_ok else "-"
        gap = linear.get("holdout_log_loss", math.nan) - ref["truth_log_loss"]
        closed = f"{(linear['holdout_log_loss'] - r['holdout_log_loss']) / gap:.2f}" if linear_ok and gap > 0 else "-"
        lines.append(f"| {name} | {r['rows_per_s']:,.0f} | {speed} | {r['peak_rss_mb']:,.0f} | "
                     f"{r['holdout_log_loss']:.4f} | {closed} |")
    lines.append(f"| planted truth | | | | {ref['truth_log_loss']:.4f} | 1 |")
    lines.append(f"| constant (train click rate {ref['train_click_rate']:.3f}) | | | | "
                 f"{ref['constant_log_loss']:.4f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        CHILDREN[argv[1]](*argv[2:])
        return 0
    args = parse_args(argv)
    tables = make_tables(args)
    report = {"config": vars(args), "tables": tables, "references": references(args, tables), "results": {},
              "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()}}
    for name in args.only:
        out_dir = os.path.join(args.data_dir, f"run-{name}")
        os.makedirs(out_dir, exist_ok=True)
        print(f"## {name}", flush=True)
        try:
            report["results"][name] = RUNNERS[name](args, tables, out_dir)
        except NotAvailable as exc:
            report["results"][name] = {"status": "not available", "error": str(exc)}
            print(f"{name}: not available: {exc}", file=sys.stderr, flush=True)
    print(f"\n{args.rows:,} training rows, {args.holdout_rows:,} holdout rows (log1p counts), rank-"
          f"{args.factor_rank} {args.truth.upper()}-shaped pair effects among {','.join(factor_columns())}, "
          f"2^{args.hash_bits} hashed slots, {args.epochs} epoch(s) each, torch batch {args.torch_batch}\n\n"
          f"{markdown(report)}\n")
    for name, r in report["results"].items():
        for command in r.get("commands", []):
            print(f"{name}: {command}")
    if args.json:
        with open(args.json + ".part", "w") as stream:
            json.dump(report, stream, indent=1)
        os.replace(args.json + ".part", args.json)
    ok = [r for r in report["results"].values() if r["status"] == "ok"]
    return 0 if ok and all(math.isfinite(r["holdout_log_loss"]) for r in ok) else 1


if __name__ == "__main__":
    sys.exit(main())
