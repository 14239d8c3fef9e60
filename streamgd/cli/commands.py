"""The ``streamgd`` command line: thin commands over the Python API (parse, validate, call, print).

Errors a user can fix print one line on stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..bench.synthetic import TASKS
from ..bench.synthetic_ctr import TASK as CTR_TASK
from ..data.shuffle import MODES, shuffle_syntax
from ..errors import ConfigError, DataError, StreamgdError, TrainingInterrupted
from ..features.spec import MISSING_POLICIES
from ..features.stats import MAX_CATEGORIES_LIMIT
from ..models.linear import MODEL_KINDS
from ..optim import OPTIMIZERS, SCHEDULES, hyperparameter_table
from ..optim.penalties import PENALTIES
from ..training.config import DTYPES, SCHEDULE_FALLBACKS, TrainConfig

if TYPE_CHECKING:
    from ..models.predict import PredictionCounts

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as stream:
        stream.write(text)


def _friendly_errors(command: Callable) -> Callable:
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TrainingInterrupted as exc:
            click.echo(f"{exc}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except StreamgdError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
    return run


def _parse_class_weight(text: str | None) -> str | dict | None:
    """``balanced`` or ``label=weight,...``; labels that look like integers become integers."""
    if text is None or text == "balanced":
        return text
    weights: dict = {}
    for pair in text.split(","):
        label, sep, weight = pair.partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = None
        if not sep or value is None:
            raise ConfigError(f"--class-weight {text!r}: expected 'balanced' or label=weight pairs such as 1=5,0=1")
        label = label.strip()
        weights[int(label) if label.lstrip("-").isdigit() else label] = value
    return weights


def _storage_option(command: Callable) -> Callable:
    """``--storage-option KEY=VALUE`` (repeatable): settings of the filesystems that URIs name."""
    return click.option(
        "--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
        help="A setting of the object store that s3://, gs://, abfs:// ... paths name (repeatable), e.g. "
             "endpoint_override=http://127.0.0.1:9000, region=eu-west-1, retries=10 (attempts per request); "
             "credentials and the endpoint are also read from the standard environment (AWS_ACCESS_KEY_ID, "
             "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...).")(command)


def _storage_options(pairs: tuple[str, ...]) -> dict | None:
    from ..io.storage import parse_storage_options

    return parse_storage_options(pairs) or None


def _split_columns(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streamgd")
def main() -> None:
    """Out-of-core gradient descent (full batch, SGD, mini-batch) on Parquet data."""
    from .allocators import prefer_jemalloc

    prefer_jemalloc()
    warnings.showwarning = _one_line_warning


def _one_line_warning(message: Warning | str, category: type, *ignored: Any, **also_ignored: Any) -> None:
    """A warning as one line on stderr (no file, line or source), like the errors."""
    click.echo(f"warning: {message}", err=True)


# ---- inspect ----------------------------------------------------------------------------------------------------
@main.command()
@click.argument("path", nargs=-1)
@click.option("--cache", "cache_dir", default=None, metavar="DIR",
              help="Show what an epoch cache directory holds (units, rows, bytes, sources, format).")
@click.option("--target", help="Target column (to show what would be used as features).")
@click.option("--features", help="Comma-separated feature columns (default: every numeric column but the target).")
@click.option("--shuffle", "shuffle", default=None, help=f"Show the shuffle quality of a mode: {shuffle_syntax()}.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--memory-budget", default=None, help="Show the units a memory budget such as 256MB gives.")
@click.option("--categorical", default=None, help="Comma-separated columns to treat as categories.")
@click.option("--stats", "statistics", is_flag=True,
              help="Also compute column statistics (count, missing, mean, std, min, max; distinct values).")
@click.option("--top", default=20, show_default=True, type=int,
              help="Model files: coefficients shown per output, largest first.")
@click.option("--json", "as_json", is_flag=True, help="Model files: print one JSON object.")
@_storage_option
@_friendly_errors
def inspect(path: tuple[str, ...], cache_dir: str | None, target: str | None, features: str | None,
            shuffle: str | None, seed: int, memory_budget: str | None, categorical: str | None, statistics: bool,
            top: int, as_json: bool, storage_option: tuple[str, ...]) -> None:
    """Show a dataset's files, rows, row groups, columns and what training would use; for a model file
    (.safetensors), its kind, features, transform, coefficients, settings and history; with --cache DIR, what an
    epoch cache holds."""
    from .inspect_data import describe_dataset
    from .inspect_model import describe_model_file, file_kind

    if cache_dir is not None:
        from .inspect_cache import describe_cache

        if path:
            raise ConfigError("inspect --cache DIR shows a cache; give no PATH with it")
        click.echo(describe_cache(cache_dir))
        return
    if not path:
        raise ConfigError("inspect needs a PATH (a dataset or a model file) or --cache DIR")
    from ..io.storage import is_remote

    storage_options = _storage_options(storage_option)
    kinds = {p: file_kind(p) for p in path if os.path.isfile(p)}
    remote_model = len(path) == 1 and is_remote(path[0]) and path[0].endswith(".safetensors")
    if len(path) == 1 and (kinds.get(path[0]) == "safetensors" or remote_model):
        click.echo(describe_model_file(path[0], top=top, as_json=as_json, storage_options=storage_options))
        return
    unknown = [p for p, kind in kinds.items() if kind != "parquet"]
    if unknown:
        raise DataError(f"{unknown[0]} is neither a Parquet file nor a streamgd model file"
                        + (" (inspect one model file at a time)" if kinds[unknown[0]] else ""))
    if as_json:
        raise ConfigError("--json applies to model files; a dataset's report is text")
    source = list(path) if len(path) > 1 else path[0]
    click.echo(describe_dataset(source, target=target, features=_split_columns(features), shuffle=shuffle,
                                seed=seed, memory_budget=memory_budget,
                                categorical=_split_columns(categorical) or (), statistics=statistics,
                                storage_options=storage_options))


# ---- fit --------------------------------------------------------------------------------------------------------
# Names, defaults and help of the choices come from the registries and TrainConfig: nothing restated here.
OPTIMIZER_OPTIONS = tuple(hyperparameter_table())
_SETTINGS = {item.name: item.default for item in dataclasses.fields(TrainConfig)}


def _default(name: str) -> Any:
    """TrainConfig's default of setting ``name``."""
    return _SETTINGS[name]


def _optimizer_hyperparameters(command: Callable) -> Callable:
    """One option per optimizer hyperparameter; its help names the optimizers that take it and their defaults."""
    for name, takers in reversed(hyperparameter_table().items()):
        defaults = {default for default, _ in takers.values()}
        if len(defaults) == 1:
            where = f"{', '.join(takers)}: {next(iter(takers.values()))[1]} ({defaults.pop():g})"
        else:
            where = (f"{', '.join(takers)}: {next(iter(takers.values()))[1]} ("
                     + ", ".join(f"{optimizer} {default:g}" for optimizer, (default, _) in takers.items()) + ")")
        kind = int if all(isinstance(default, int) for default, _ in takers.values()) else float
        command = click.option(f"--{name.replace('_', '-')}", name, default=None, type=kind, help=where + ".")(command)
    return command


def _schedule_help() -> str:
    """Which schedule each optimizer takes by default, then the schedules."""
    by_schedule: dict[str, list[str]] = {}
    for name, rule in OPTIMIZERS.items():
        settings = {**SCHEDULE_FALLBACKS, **rule.default_schedule}
        text = settings["schedule"] + "".join(f", {key} {value:g}" for key, value in settings.items()
                                              if key != "schedule")
        by_schedule.setdefault(text, []).append(name)
    defaults = "; ".join(f"{', '.join(names)}: {text}" for text, names in by_schedule.items())
    return f"Default: the optimizer's ({defaults}). {SCHEDULES.help()}"


def _scaled_defaults(attribute: str, neutral: float) -> str:
    """The model kinds whose default ``attribute`` differs from ``neutral``, e.g. 'poisson 0.25'."""
    return ", ".join(f"{kind} {getattr(cls, attribute):g}" for kind, cls in MODEL_KINDS.items()
                     if getattr(cls, attribute) != neutral)


@main.command()
@click.argument("data", nargs=-1, required=True)
@click.option("--target", required=True, help="Target column.")
@click.option("--features", help="Comma-separated feature columns (default: every numeric column but the target).")
@click.option("--exclude", default=None,
              help="Comma-separated columns left out of the default features (an id, a partition key).")
@click.option("--model", default=_default("model"), show_default=True, type=click.Choice(list(MODEL_KINDS)),
              help=MODEL_KINDS.help(default=_default("model")))
@click.option("--epsilon", default=_default("epsilon"), show_default=True, type=float,
              help="huber: where the loss turns linear.")
@click.option("--class-weight", default=None,
              help="balanced, or label=weight pairs such as 1=5,0=1 (classifiers).")
@click.option("--sample-weight", default=None, help="A column of per-row weights.")
@click.option("--batch-size", default=str(_default("batch_size")), show_default=True,
              help="Rows per step: 1 = SGD, N = mini-batch, full = gradient descent.")
@click.option("--epochs", default=_default("epochs"), show_default=True, type=click.IntRange(min=1))
@click.option("--optimizer", default=_default("optimizer"), show_default=True, type=click.Choice(list(OPTIMIZERS)),
              help=OPTIMIZERS.help(default=_default("optimizer")))
@click.option("--lr", default=None, type=float,
              help="Base learning rate (default: the optimizer's own, scaled for some models: "
                   f"{_scaled_defaults('default_lr_scale', 1.0)}).")
@click.option("--schedule", default=None, type=click.Choice(list(SCHEDULES)), help=_schedule_help())
@click.option("--warmup", default=_default("warmup"), show_default=True, type=int, help="Steps of linear warm-up.")
@click.option("--lr-decay", default=None, type=float,
              help="invscaling: lr / (1 + decay t)^power (default: the optimizer's, see --schedule).")
@click.option("--lr-power", default=None, type=float, help="invscaling: the power (default: the optimizer's).")
@click.option("--lr-gamma", default=None, type=float,
              help="step: factor per drop (0.5); exponential: factor per step (default: 1% at the end).")
@click.option("--lr-step-size", default=None, type=int, help="step: steps between drops (default: one epoch).")
@click.option("--lr-min", default=_default("lr_min"), show_default=True, type=float, help="cosine: the final rate.")
@_optimizer_hyperparameters
@click.option("--penalty", default=_default("penalty"), show_default=True, type=click.Choice(list(PENALTIES)),
              help=PENALTIES.help(default=_default("penalty")))
@click.option("--alpha", default=_default("alpha"), show_default=True, type=float, help="Penalty strength.")
@click.option("--l1-ratio", default=_default("l1_ratio"), show_default=True, type=float,
              help="Elastic-net mixing (1 = L1).")
@click.option("--clip-norm", default=None, type=float,
              help="Clip each step's gradient to this norm (0 = off; default 0, "
                   f"{_scaled_defaults('default_clip_norm', 0.0)}).")
@click.option("--shuffle", default=_default("shuffle"), show_default=True,
              help=f"One of {shuffle_syntax()}. {MODES.help(default=_default('shuffle'))}")
@click.option("--seed", default=_default("seed"), show_default=True, type=int)
@click.option("--dtype", default=_default("dtype"), show_default=True, type=click.Choice(DTYPES))
@click.option("--prefetch", "prefetch_depth", default=_default("prefetch_depth"), show_default=True,
              type=click.IntRange(min=0), help="Chunks read ahead.")
@click.option("--memory-budget", default=None, help="Bound the bytes of chunks in flight, e.g. 256MB.")
@click.option("--categorical", default=None,
              help="Comma-separated columns to encode as categories (text features are categorical anyway).")
@click.option("--missing", default=_default("missing"), show_default=True, type=click.Choice(MISSING_POLICIES),
              help="Missing or NaN features: stop with the column and row group, skip the row, or impute the mean "
                   "plus a missing indicator.")
@click.option("--hash-bits", default=None, type=int,
              help="Hash categorical values into 2^B columns (signed, as Vowpal Wabbit's -b) instead of one-hot.")
@click.option("--max-categories", default=_default("max_categories"), show_default=True, type=int,
              help=f"One-hot: most frequent values kept per column (at most {MAX_CATEGORIES_LIMIT:,}); the rest "
                   "share an __other__ column.")
@click.option("--interactions", default=None, metavar="A:B,...",
              help="Pairs of categorical columns whose values are hashed together, as Vowpal Wabbit's -q "
                   "(for example C1:C2,C3:C14).")
@click.option("--interaction-bits", default=None, type=int,
              help="Give the interactions 2^B buckets of their own (default: the --hash-bits buckets; under "
                   "one-hot, 2^18 of their own).")
@click.option("--no-standardize", "standardize", flag_value=False, default=True,
              help="Train on raw features (default: standardize from one statistics pass).")
@click.option("--validation", default=0.0, show_default=True, type=float,
              help="Fraction of row groups held out (chosen from --seed) and evaluated after each epoch.")
@click.option("--validation-data", default=None, help="A separate dataset to evaluate after each epoch.")
@click.option("--early-stopping", default=0, show_default=True, type=int,
              help="Stop after this many epochs without improvement of the validation (else training) loss; "
                   "the best epoch's model is saved.")
@click.option("--tol", default=1e-4, show_default=True, type=float, help="Smallest improvement that counts.")
@click.option("--cache", default=None, metavar="DIR",
              help="Keep the transformed data here after the first epoch; later epochs and runs read it from this "
                   "local directory, memory-mapped, instead of decoding Parquet (results are identical).")
@click.option("--cache-max-size", default=None, metavar="SIZE",
              help="Bound the cache's disk use, e.g. 20GB; units beyond it are read from Parquet.")
@click.option("--checkpoint-dir", default=None, help="Write checkpoints here (atomically).")
@click.option("--checkpoint-every", default="0", show_default=True,
              help="Chunks between checkpoints, or a time such as 30s, 5m, 1h (0: at the end of each epoch).")
@click.option("--keep-checkpoints", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --checkpoint-dir.")
@click.option("--init", "init", default=None, metavar="MODEL",
              help="Continue training a saved model (its parameters, optimizer state, step and epoch) for --epochs "
                   "more epochs; same model kind, features, classes and optimizer.")
@click.option("--history", "history_path", default=None, help="Write the per-epoch history as JSON here.")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="Train on a local dask cluster of this many worker processes (0: in this process).")
@click.option("--dask", "dask_address", default=None, help="Train on the dask.distributed scheduler at this address.")
@click.option("--round-chunks", default=4, show_default=True, type=click.IntRange(min=1),
              help="Distributed mini-batch: chunks per worker between model averages.")
@click.option("--out", default=None, help="Model file to write (.safetensors).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout and nothing else.")
@click.option("--quiet", is_flag=True, help="No progress output on stderr.")
@_storage_option
@_friendly_errors
def fit(data: tuple[str, ...], target: str, features: str | None, exclude: str | None, model: str,
        out: str | None, as_json: bool, quiet: bool, history_path: str | None, workers: int,
        dask_address: str | None, round_chunks: int, storage_option: tuple[str, ...], **options: Any) -> None:
    """Train a model on DATA (Parquet files, directories or globs; or s3://, gs://, abfs:// URIs) streamed from
    disk or an object store; --out, --checkpoint-dir and --history may name an object store too."""
    from ..training.progress import TrainingProgress
    from ..training.trainer import Trainer

    source = list(data) if len(data) > 1 else data[0]
    options["class_weight"] = _parse_class_weight(options["class_weight"])
    options["categorical"] = _split_columns(options["categorical"])
    hash_bits = options.pop("hash_bits")
    if hash_bits is not None:
        options.update(encoding="hash", hash_bits=hash_bits)
    given = {name: options.pop(name) for name in OPTIMIZER_OPTIONS}
    options["optimizer_options"] = {name: value for name, value in given.items() if value is not None}
    options["storage_options"] = _storage_options(storage_option)
    started = time.perf_counter()
    _check_fit_outputs(source, out, history_path, options)
    note = _NoteOnce("note: no --out given; the trained model will not be saved" if out is None else None)
    if options.get("memory_budget") is not None:
        from .allocators import map_large_arrays_directly

        map_large_arrays_directly()
    if workers or dask_address:
        fitted = _fit_on_dask(source, target, _split_columns(features), model, workers, dask_address, round_chunks,
                              dict(options, exclude=_split_columns(exclude) or ()))
        note()  # the workers report no chunks to this process: said once the model is back
    else:
        with TrainingProgress(enabled=not quiet and not as_json) as progress:
            trainer = Trainer(model=model, on_chunk=note.then(progress.update), **options)
            fitted = trainer.fit(source, target=target, features=_split_columns(features),
                                 exclude=_split_columns(exclude) or ())
    if out:
        fitted.save(out, options["storage_options"])
    if history_path:
        from ..io.storage import resolve, write_object

        write_object(resolve(history_path, options["storage_options"]),
                     lambda tmp: _write_text(tmp, json.dumps(fitted.history, indent=1)))
    keys = ("epoch", "loss", "baseline_loss", "validation_loss", "rows", "seconds", "rows_per_s", "peak_rss_mb",
            "steps", "shuffle_quality")
    epochs = [{k: e[k] for k in keys if k in e} for e in fitted.history]
    if as_json:
        click.echo(json.dumps({"model": out, "kind": fitted.kind, "seconds": round(time.perf_counter() - started, 3),
                               "epochs": epochs}))
        return
    last = epochs[-1]
    validation = f", validation loss {last['validation_loss']:.6g}" if "validation_loss" in last else ""
    best = (f", best epoch {fitted.summary['best_epoch'] + 1} kept" if "best_epoch" in fitted.summary else "")
    resumed = (f", resumed from checkpoint {fitted.summary['resumed_from']}"
               if fitted.summary.get("resumed_from") is not None else "")
    if fitted.summary.get("continued_from_epoch") is not None:
        resumed += f", continued {options['init']} at epoch {fitted.summary['continued_from_epoch'] + 1}"
    baseline = f" (constant {last['baseline_loss']:.6g})" if last.get("baseline_loss") is not None else ""
    left_out = fitted.history[-1].get("rows_skipped", 0)
    why = "no target or a missing feature" if options["missing"] == "drop-rows" else "no target"
    skipped = f" ({left_out:,} rows skipped: {why})" if left_out else ""
    click.echo(f"{fitted.kind}: {len(epochs)} epochs, {last['rows']:,} rows/epoch{skipped}, loss {last['loss']:.6g}"
               f"{baseline}{validation}{best}, {last['rows_per_s']:,.0f} rows/s, "
               f"peak RSS {last['peak_rss_mb']:.0f} MB{resumed}" + (f", model written to {out}" if out else ""))


class _NoteOnce:
    """A line for stderr, said once when training really starts (so that a bad option stays a one-line error)."""

    def __init__(self, text: str | None):
        self.text = text

    def __call__(self, *ignored: Any) -> None:
        if self.text is not None:
            click.echo(self.text, err=True)
            self.text = None

    def then(self, callback: Callable) -> Callable:
        def both(*args: Any) -> None:
            self()
            callback(*args)
        return both


def _check_fit_outputs(source: Any, out: str | None, history_path: str | None, options: dict) -> None:
    """Every output of ``fit`` checked before the first chunk: writable, and none of the inputs."""
    from ..data.dataset import list_files
    from ..io.outputs import check_distinct, check_output_dir, check_output_file

    storage = options.get("storage_options")
    inputs = list_files(source, storage)
    if options.get("validation_data") is not None:
        inputs += list_files(options["validation_data"], storage)
    if out is not None:
        check_output_file(out, inputs, "--out", storage)
    if history_path is not None:
        check_output_file(history_path, inputs, "--history", storage)
    if options.get("checkpoint_dir") is not None:
        options["checkpoint_dir"] = check_output_dir(options["checkpoint_dir"], "--checkpoint-dir", storage)
    if options.get("cache") is not None:
        from ..data.cache import check_cache_dir

        options["cache"] = check_cache_dir(options["cache"], "--cache")
    check_distinct({"--out": out, "--history": history_path})


def _fit_on_dask(source: Any, target: str, features: list[str] | None, model: str, workers: int,
                 address: str | None, round_chunks: int, options: dict) -> Any:
    from ..distributed import fit_distributed

    if address:
        from dask.distributed import Client

        try:
            client = Client(address, timeout=30)
        except OSError as exc:
            raise ConfigError(f"cannot reach the dask scheduler at {address} ({exc})") from None
        with client:
            return fit_distributed(source, target, features, client=client, round_chunks=round_chunks,
                                   model=model, **options)
    return fit_distributed(source, target, features, n_workers=workers, round_chunks=round_chunks, model=model,
                           **options)


# ---- predict ----------------------------------------------------------------------------------------------------
@main.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data", nargs=-1, required=True)
@click.option("--out", required=True, help="Parquet file to write the predictions to.")
@click.option("--keep", default=None, help="Comma-separated columns copied through (ids).")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="Predict on a local dask cluster; --out is then a directory of part files.")
@click.option("--dask", "dask_address", default=None, help="Predict on this dask scheduler (--out: a directory).")
@_storage_option
@_friendly_errors
def predict(model_path: str, data: tuple[str, ...], out: str, keep: str | None, workers: int,
            dask_address: str | None, storage_option: tuple[str, ...]) -> None:
    """Stream predictions of MODEL over DATA into a Parquet file, one per input row in input order (null for a
    row with a missing or non-finite feature the model does not impute). MODEL, DATA and --out may be URIs
    (s3://bucket/key)."""
    from ..models.linear import load
    from ..models.predict import predict_to_parquet

    source = list(data) if len(data) > 1 else data[0]
    storage_options = _storage_options(storage_option)
    _check_predict_output(source, model_path, out, directory=bool(workers or dask_address),
                          storage_options=storage_options)
    model = load(model_path, storage_options)
    if workers or dask_address:
        from dask.distributed import Client, LocalCluster

        from ..distributed import predict_distributed

        cluster = None if dask_address else LocalCluster(n_workers=workers, threads_per_worker=1,
                                                         dashboard_address=None)
        with Client(dask_address or cluster) as client:
            counts = predict_distributed(model, source, out, client=client, keep=_split_columns(keep) or (),
                                         storage_options=storage_options)
        if cluster is not None:
            cluster.close()
        click.echo(_predicted_line(counts, f"{out}/part-*.parquet"))
        return
    counts = predict_to_parquet(model, source, out, keep=_split_columns(keep) or (), storage_options=storage_options)
    click.echo(_predicted_line(counts, out))


def _predicted_line(counts: PredictionCounts, out: str) -> str:
    """``N predictions written to OUT``, and how many rows got a null prediction, if any."""
    unscored = (f" ({counts.unscored:,} rows not scored: a missing or non-finite feature)"
                if counts.unscored else "")
    return f"{counts.rows:,} predictions written to {out}{unscored}"


def _check_predict_output(source: Any, model_path: str, out: str, directory: bool,
                          storage_options: dict | None = None) -> None:
    """``--out`` checked before reading: a writable file (a directory of parts on dask), none of the inputs."""
    from ..data.dataset import list_files
    from ..io.outputs import check_output_dir, check_output_file, holds_any

    inputs = list_files(source, storage_options)
    if directory:
        check_output_dir(out, "--out", storage_options)
        if holds_any(out, inputs):
            raise ConfigError(f"--out {out} holds the input data; write the predictions elsewhere")
    else:
        check_output_file(out, inputs + [model_path], "--out", storage_options)


# ---- evaluate ---------------------------------------------------------------------------------------------------
@main.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data", nargs=-1, required=True)
@click.option("--target", default=None, help="Target column (default: the one the model was trained on).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout and nothing else.")
@_storage_option
@_friendly_errors
def evaluate(model_path: str, data: tuple[str, ...], target: str | None, as_json: bool,
             storage_option: tuple[str, ...]) -> None:
    """Stream DATA through MODEL and print the metrics that fit it (loss, accuracy, ROC AUC, confusion matrix;
    RMSE, MAE, R²)."""
    from ..models.evaluate import evaluate as evaluate_model
    from ..models.evaluate import format_report
    from ..models.linear import load

    storage_options = _storage_options(storage_option)
    model = load(model_path, storage_options)
    result = evaluate_model(model, list(data) if len(data) > 1 else data[0], target=target,
                            storage_options=storage_options)
    click.echo(json.dumps(result) if as_json else format_report(result))


# ---- bench ------------------------------------------------------------------------------------------------------
@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.pass_context
def bench(ctx: click.Context) -> None:
    """The nightly memory and throughput benchmark (scripts/bench_memory.py); `streamgd bench --help` for its
    options, e.g. --quick, --sizes 1000000,4000000, --baseline previous/bench.json."""
    from ..bench import harness as benchmark

    ctx.exit(benchmark.main(list(ctx.args), prog="streamgd bench"))


# ---- make-data --------------------------------------------------------------------------------------------------
_CTR_ONLY = ("cardinalities", "zipf", "null_fraction", "interactions", "ctr")


@main.command("make-data")
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
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--model-seed", default=None, type=int,
              help="Seed of the true model alone (default: --seed); another --seed then draws new rows from the "
                   "same model, e.g. a test set.")
@_storage_option
@_friendly_errors
def make_data(out: str, rows: int, features: int | None, task: str, n_classes: int, row_group_size: int,
              n_files: int, dtype: str, nan_fraction: float | None, id_column: bool, n_categorical: int | None,
              seed: int, model_seed: int | None, storage_option: tuple[str, ...] = (), **ctr_options: Any) -> None:
    """Write a synthetic Parquet dataset with a known true model, in bounded memory (OUT may be a bucket URI:
    the files are written locally, then uploaded)."""
    from ..io import storage

    if storage.is_remote(out):
        target = storage.resolve(out, storage.parse_storage_options(storage_option))
        storage.check_writable(target, "the output", directory=n_files > 1)
        with tempfile.TemporaryDirectory(prefix="streamgd-make-data-") as scratch:
            local = os.path.join(scratch, "data")
            said = io.StringIO()
            with contextlib.redirect_stdout(said):
                make_data.callback(local, rows, features, task, n_classes, row_group_size, n_files, dtype,
                                   nan_fraction, id_column, n_categorical, seed, model_seed, (), **ctr_options)
            if os.path.isfile(local):
                storage.upload(local, target)
            else:
                for name in sorted(os.listdir(local)):
                    storage.upload(os.path.join(local, name), target.join(name))
        click.echo(said.getvalue().replace(local, out), nl=False)
        return
    started = time.perf_counter()
    if task == CTR_TASK:
        _make_ctr_data(out, rows, features, row_group_size, n_files, dtype, nan_fraction, id_column, n_categorical,
                       seed, model_seed, started, **ctr_options)
        return
    given = [name for name in _CTR_ONLY if ctr_options[name] is not None]
    if given:
        raise ConfigError(f"--{given[0].replace('_', '-')} applies to --task ctr only")
    from ..bench.synthetic import make_dataset

    n_categorical = n_categorical or 0
    info = make_dataset(out, n_rows=rows, n_features=32 if features is None else features, task=task,
                        n_classes=n_classes, row_group_size=row_group_size, n_files=n_files, dtype=dtype,
                        nan_fraction=nan_fraction or 0.0, seed=seed, id_column=id_column,
                        n_categorical=n_categorical, model_seed=model_seed)
    extra = ["id"] * id_column + [f"c{k}" for k in range(n_categorical)]
    plus = f" plus {', '.join(extra)}" if extra else ""
    click.echo(f"wrote {info.n_rows:,} rows x {info.n_features} features{plus} to {out} "
               f"({len(info.files)} file(s), {time.perf_counter() - started:.1f} s)")


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
                   null_fraction: str | None, interactions: str | None, ctr: float | None) -> None:
    from ..bench import synthetic_ctr as clicks

    n_categorical = clicks.N_CATEGORICAL if n_categorical is None else n_categorical
    null_fractions = _numbers("null-fraction", null_fraction, float)
    if null_fractions is not None and len(null_fractions) == 1:
        null_fractions = null_fractions[0]
    info = clicks.make_ctr_dataset(
        out, n_rows=rows, n_numeric=clicks.N_NUMERIC if features is None else features, n_categorical=n_categorical,
        cardinalities=_numbers("cardinalities", cardinalities, int), zipf=clicks.ZIPF if zipf is None else zipf,
        null_fractions=null_fractions,
        numeric_null_fraction=clicks.NUMERIC_NULL_FRACTION if nan_fraction is None else nan_fraction,
        interactions=interactions, ctr=clicks.CTR if ctr is None else ctr, row_group_size=row_group_size,
        n_files=n_files, dtype=dtype, seed=seed, model_seed=model_seed, id_column=id_column)
    pairs = ", ".join(f"{a} x {c}" for a, c in info.interactions) or "none"
    click.echo(f"wrote {info.n_rows:,} click-log rows (label, I1..I{info.n_numeric}, C1..C{info.n_categorical}"
               f"{', id' if id_column else ''}) to {out} ({len(info.files)} file(s), "
               f"{time.perf_counter() - started:.1f} s): click rate {info.label_mean:.4f}, "
               f"the truth's log loss {info.truth_log_loss:.4f}, interactions {pairs}")


def invoke(args: list[str] | None = None) -> int:
    """Run the command line on ``args`` (default: ``sys.argv``) and return its exit status; every error a user
    can fix, a bad option value included, is one line on stderr and status 2."""
    try:
        status = main(args=args, standalone_mode=False)
        return status if isinstance(status, int) else 0
    except click.exceptions.UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
        print(f"error: {where}{exc.format_message()}", file=sys.stderr)
        return EXIT_USAGE
    except click.exceptions.Abort:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
            return 1
        return 0 if exc.code is None else exc.code


def run() -> None:
    """The ``streamgd`` command: ``invoke``, then an exit that skips C++ static destructors.

    pyarrow can abort a process at exit, after all its work is done, with "terminate called without an active
    exception" (apache/arrow#34314: its thread pool torn down while a worker thread is still alive); seen here
    twice in some hundreds of runs, once under the nightly benchmark. The command's work is over by then: its
    files are written and closed, and its output is flushed here, so it exits at once with its status.
    """
    status = invoke()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    run()
