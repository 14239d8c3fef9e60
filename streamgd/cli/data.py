"""``streamgd make-data`` (synthetic datasets with a known true model) and ``streamgd bench`` (the nightly
benchmark, ``streamgd.bench.harness``)."""

from __future__ import annotations

import contextlib
import fnmatch
import io
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import click

from ..bench.synthetic import TASKS
from ..bench.synthetic_ctr import TASK as CTR_TASK
from ..errors import ConfigError
from ..io.atomic import current_umask
from ..training.config import DTYPES
from .options import friendly_errors, storage_option
from .row_progress import RowProgress


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.pass_context
def bench(ctx: click.Context) -> None:
    """The nightly memory and throughput benchmark (scripts/bench_memory.py); `streamgd bench --help` for its
    options, e.g. --quick, --sizes 1000000,4000000, --baseline previous/bench.json."""
    from ..bench import harness as benchmark

    ctx.exit(benchmark.main(list(ctx.args), prog="streamgd bench"))


# ---- make-data --------------------------------------------------------------------------------------------------
_CTR_ONLY = ("cardinalities", "zipf", "null_fraction", "interactions", "ctr", "factor_rank", "factor_columns",
             "factor_shape")


@click.command("make-data")
@click.argument("out")
@click.option("--rows", default=1_000_000, show_default=True, type=int)
@click.option("--features", default=None, type=int,
              help="Numeric columns: x0, x1, ... [default: 32]; ctr: counts I1, I2, ... [default: 13].")
@click.option("--task", default="binary", show_default=True, type=click.Choice([*TASKS, CTR_TASK]),
              help="ctr: a Criteo-shaped click log (label, I1..I13 counts, C1..C26 hex tokens) from a planted "
                   "logistic truth with pairwise interactions.")
@click.option("--classes", "n_classes", default=3, show_default=True, type=int)
@click.option("--row-group-size", default=65_536, show_default=True, type=int)
@click.option("--files", "n_files", default=1, show_default=True, type=int)
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(DTYPES))
@click.option("--nan-fraction", default=None, type=float,
              help="NaN in the x columns [default: 0]; ctr: nulls in the I columns [default: 0.1].")
@click.option("--id", "id_column", is_flag=True, help="Add an int64 column 'id': the row number, 0..rows-1.")
@click.option("--categorical", "n_categorical", default=None, type=click.IntRange(min=0),
              help="Add this many text columns c0, c1, ... (values a, b, c, d) that enter the true model "
                   "[default: 0]; ctr: the columns C1, C2, ... [default: 26].")
@click.option("--cardinalities", default=None,
              help="ctr: values per C column, comma-separated, one per column [default: 3 to 1,000,000, "
                   "geometrically].")
@click.option("--zipf", default=None, type=float, help="ctr: the Zipf exponent of every C column [default: 1.1].")
@click.option("--null-fraction", default=None,
              help="ctr: nulls per C column, one number or one per column [default: 0.3 in C5, C10, ..., "
                   "0.02 elsewhere].")
@click.option("--interactions", default=None,
              help="ctr: the planted pairwise interactions, e.g. C1:C2,C11:C16 (the default for 26 columns).")
@click.option("--ctr", default=None, type=float, help="ctr: the mean click rate the intercept aims at [default: 0.25].")
@click.option("--factor-rank", default=None, type=int,
              help="ctr: add low-rank pair effects: a latent vector of this rank per value of --factor-columns, "
                   "the margin gains <u_a, u_c> for each pair of those columns [default: 0, none].")
@click.option("--factor-columns", default=None,
              help="ctr: the columns with latent vectors, e.g. C6,C9,C11 [default for 26 columns: "
                   "C6,C9,C11,C14,C17].")
@click.option("--factor-shape", default=None, type=click.Choice(["fm", "ffm"]),
              help="ctr: fm: one vector per value; ffm: one per value and other factor column [default: fm].")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--model-seed", default=None, type=int,
              help="Seed of the true model alone (default: --seed); another --seed then draws new rows from the "
                   "same model, e.g. a test set.")
@storage_option
@friendly_errors
def make_data(out: str, rows: int, features: int | None, task: str, n_classes: int, row_group_size: int,
              n_files: int, dtype: str, nan_fraction: float | None, id_column: bool, n_categorical: int | None,
              seed: int, model_seed: int | None, storage_option: tuple[str, ...] = (), **ctr_options: Any) -> None:
    """Write a synthetic Parquet dataset with a known true model, in bounded memory (OUT may be a bucket URI:
    the files are written locally, then uploaded)."""
    from ..io import storage
    from ..io.outputs import PART_FILES, check_output_dir, check_output_file

    options = storage.parse_storage_options(storage_option)
    if n_files > 1:
        check_output_dir(out, "the output directory", options, replaced=PART_FILES)
    else:
        check_output_file(out, (), "the output", options)
    if storage.is_remote(out):
        target = storage.resolve(out, options)
        with tempfile.TemporaryDirectory(prefix="streamgd-make-data-") as scratch:
            local = os.path.join(scratch, "data")
            said = io.StringIO()
            with contextlib.redirect_stdout(said):
                make_data.callback(local, rows, features, task, n_classes, row_group_size, n_files, dtype,
                                   nan_fraction, id_column, n_categorical, seed, model_seed, (), **ctr_options)
            if os.path.isfile(local):
                storage.upload(local, target)
            else:
                written = sorted(os.listdir(local))
                for name in written:
                    storage.upload(os.path.join(local, name), target.join(name))
                for name in storage.list_names(target):  # an earlier run's parts beyond these
                    if fnmatch.fnmatch(name, PART_FILES) and name not in written:
                        storage.delete(target.join(name))
        click.echo(said.getvalue().replace(local, out), nl=False)
        return
    started = time.perf_counter()
    if task == CTR_TASK:
        with _written_whole(out, n_files) as scratch:
            _make_ctr_data(scratch, rows, features, row_group_size, n_files, dtype, nan_fraction, id_column,
                           n_categorical, seed, model_seed, started, shown=out, **ctr_options)
        return
    given = [name for name in _CTR_ONLY if ctr_options[name] is not None]
    if given:
        raise ConfigError(f"--{given[0].replace('_', '-')} applies to --task ctr only")
    from ..bench.synthetic import make_dataset

    n_categorical = n_categorical or 0
    with RowProgress("make-data", rows) as progress, _written_whole(out, n_files) as scratch:
        info = make_dataset(scratch, n_rows=rows, n_features=32 if features is None else features, task=task,
                            n_classes=n_classes, row_group_size=row_group_size, n_files=n_files, dtype=dtype,
                            nan_fraction=nan_fraction or 0.0, seed=seed, id_column=id_column,
                            n_categorical=n_categorical, model_seed=model_seed, on_rows=progress.advance)
    extra = ["id"] * id_column + [f"c{k}" for k in range(n_categorical)]
    plus = f" plus {', '.join(extra)}" if extra else ""
    click.echo(f"wrote {info.n_rows:,} rows x {info.n_features} features{plus} to {out} "
               f"({len(info.files)} file(s), {time.perf_counter() - started:.1f} s)")


@contextlib.contextmanager
def _written_whole(out: str, n_files: int) -> Iterator[str]:
    """Where make-data writes: a temporary file renamed to OUT, or a new directory swapped in for OUT whole
    (``--files`` above 1), so that an earlier run's parts never stay beside these and a stopped run leaves
    nothing half-written."""
    from ..io.atomic import replaced_directory

    if n_files > 1:
        with replaced_directory(out) as scratch:
            yield scratch
        return
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(out) + "-", dir=directory)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, out)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _numbers(option: str, text: str | None, kind: type) -> list | None:
    """A comma-separated list of numbers, or None."""
    if text is None:
        return None
    try:
        return [kind(float(item)) if kind is int else kind(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(f"--{option} {text!r}: expected comma-separated numbers") from None


def _make_ctr_data(out: str, rows: int, features: int | None, row_group_size: int, n_files: int, dtype: str,
                   nan_fraction: float | None, id_column: bool, n_categorical: int | None, seed: int,
                   model_seed: int | None, started: float, cardinalities: str | None, zipf: float | None,
                   null_fraction: str | None, interactions: str | None, ctr: float | None,
                   factor_rank: int | None, factor_columns: str | None, factor_shape: str | None, shown: str) -> None:
    from ..bench import synthetic_ctr as clicks

    n_categorical = clicks.N_CATEGORICAL if n_categorical is None else n_categorical
    null_fractions = _numbers("null-fraction", null_fraction, float)
    if null_fractions is not None and len(null_fractions) == 1:
        null_fractions = null_fractions[0]
    if not factor_rank and (factor_columns is not None or factor_shape is not None):
        raise ConfigError(f"--factor-{'columns' if factor_columns is not None else 'shape'} needs --factor-rank R")
    with RowProgress("make-data", rows) as progress:
        info = clicks.make_ctr_dataset(
            out, n_rows=rows, n_numeric=clicks.N_NUMERIC if features is None else features,
            n_categorical=n_categorical, cardinalities=_numbers("cardinalities", cardinalities, int),
            zipf=clicks.ZIPF if zipf is None else zipf, null_fractions=null_fractions,
            numeric_null_fraction=clicks.NUMERIC_NULL_FRACTION if nan_fraction is None else nan_fraction,
            interactions=interactions, ctr=clicks.CTR if ctr is None else ctr, row_group_size=row_group_size,
            n_files=n_files, dtype=dtype, seed=seed, model_seed=model_seed, id_column=id_column,
            on_rows=progress.advance, factor_rank=factor_rank or 0, factor_columns=factor_columns,
            factor_field_aware=factor_shape == "ffm")
    pairs = ", ".join(f"{a} x {c}" for a, c in info.interactions) or "none"
    click.echo(f"wrote {info.n_rows:,} click-log rows (label, I1..I{info.n_numeric}, C1..C{info.n_categorical}"
               f"{', id' if id_column else ''}) to {shown} ({len(info.files)} file(s), "
               f"{time.perf_counter() - started:.1f} s): click rate {info.label_mean:.4f}, "
               f"the truth's log loss {info.truth_log_loss:.4f}, interactions {pairs}"
               + (f", low-rank pairs among {','.join(info.factor_columns)} (rank {info.model.factor_rank}, "
                  f"{factor_shape or 'fm'})" if info.factor_columns else ""))
