"""``streamgd fit``: train a model on Parquet data streamed from disk or an object store, in this process or on a
dask cluster. Names, defaults and help of the choices come from the registries and ``TrainConfig``."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import click

from ..data.shuffle import MODES, shuffle_syntax
from ..errors import ConfigError, TrainingInterrupted
from ..features.column_report import describe_columns, plural
from ..features.encoding_choice import ENCODING_CHOICES, ONEHOT_SHARE, SAMPLE_ROWS
from ..features.spec import MISSING_POLICIES
from ..features.stats import MAX_CATEGORIES_LIMIT
from ..models.linear import MODEL_KINDS
from ..optim import OPTIMIZERS, SCHEDULES, hyperparameter_table
from ..optim.penalties import PENALTIES
from ..training.config import DTYPES, SCHEDULE_FALLBACKS, TrainConfig, describe_chosen_defaults
from .options import friendly_errors, split_columns, storage_option, storage_options_of

OPTIMIZER_OPTIONS = tuple(hyperparameter_table())
_SETTINGS = {item.name: item.default for item in dataclasses.fields(TrainConfig)}


def _write_text(path: str, text: str) -> None:
    """Write ``text`` to a local file (``write_object`` uploads it where ``--history`` names a store)."""
    with open(path, "w") as stream:
        stream.write(text)


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


@click.command()
@click.argument("data", nargs=-1, required=True)
@click.option("--target", required=True, help="Target column.")
@click.option("--features", metavar="COLUMNS",
              help="Feature columns: comma-separated names, globs ('I*') or the selectors text and numeric (default: "
                   "every column but the target and --exclude: numbers as numbers, text and dictionary columns as "
                   "categoricals; what each column became is printed before training).")
@click.option("--exclude", default=None, metavar="COLUMNS",
              help="Columns left out of the default features (an id, a partition key): names, globs or selectors.")
@click.option("--model", default=_default("model"), show_default=True, type=click.Choice(list(MODEL_KINDS)),
              help=MODEL_KINDS.help(default=_default("model")))
@click.option("--epsilon", default=_default("epsilon"), show_default=True, type=float,
              help="huber: where the loss turns linear.")
@click.option("--class-weight", default=None,
              help="balanced, or label=weight pairs such as 1=5,0=1 (classifiers).")
@click.option("--sample-weight", default=None, help="A column of per-row weights.")
@click.option("--batch-size", default=None,
              help="Rows per step: 1 = SGD, N = mini-batch, full = gradient descent (default: the optimizer's, "
                   "ftrl 1, the others 1024).")
@click.option("--epochs", default=None, type=click.IntRange(min=1),
              help="Passes over the data (default: 1 for a model with categorical columns at batch size 1, else 5).")
@click.option("--optimizer", default=None, type=click.Choice(list(OPTIMIZERS)),
              help="Default: ftrl for a model with categorical columns, sgd for numeric columns only (printed). "
                   + OPTIMIZERS.help())
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
@click.option("--categorical", default=None, metavar="COLUMNS",
              help="More columns to encode as categoricals, numeric ones too (an id, a zip code): names, globs or "
                   "selectors. Text and dictionary columns are categorical features without it.")
@click.option("--encoding", default=None, type=click.Choice(ENCODING_CHOICES),
              help="Categorical columns: auto (the default) one-hot encodes a column whose first "
                   f"{SAMPLE_ROWS:,} rows hold at most --max-categories/{ONEHOT_SHARE} distinct values (100 by "
                   "default) and hashes the others into the 2^--hash-bits buckets; onehot or hash: every column "
                   "(--hash-bits alone means hash).")
@click.option("--missing", default=_default("missing"), show_default=True, type=click.Choice(MISSING_POLICIES),
              help="Missing or NaN features: stop with the column and row group, skip the row, or impute the mean "
                   "plus a missing indicator.")
@click.option("--hash-bits", default=None, type=int,
              help=f"Hashed columns share 2^B buckets (signed, as Vowpal Wabbit's -b; default "
                   f"{_default('hash_bits')}); given without --encoding, every categorical column is hashed.")
@click.option("--max-categories", default=_default("max_categories"), show_default=True, type=int,
              help=f"One-hot: most frequent values kept per column (at most {MAX_CATEGORIES_LIMIT:,}); the rest "
                   f"share an __other__ column. --encoding auto one-hot encodes a column whose first rows show "
                   f"at most 1/{ONEHOT_SHARE} of it.")
@click.option("--interactions", default=None, metavar="A:B,...|auto|none",
              help="Pairs of categorical columns whose values are hashed together, as Vowpal Wabbit's -q "
                   "(for example C1:C2,C3:C14). Default (auto): a binary model of two or more categorical columns "
                   "crosses the pairs that a sample of the data shows worth it (said on stderr); none: no pairs.")
@click.option("--interaction-bits", default=None, type=int,
              help="Give the interactions 2^B buckets of their own (default: the --hash-bits buckets; under "
                   "one-hot, 2^18 of their own).")
@click.option("--factors", default=None, type=int, metavar="K",
              help="Train a factorization machine: the linear model plus a K-vector per sparse slot whose dot "
                   "products weigh every pair of a row's slots (binary and regression models).")
@click.option("--factor-l2", default=_default("factor_l2"), show_default=True, type=float,
              help="--factors: the factors' L2 penalty (on the rows a batch touches).")
@click.option("--factor-init", default=_default("factor_init"), show_default=True, type=float,
              help="--factors: the scale of the factors' normal initial values (drawn from --seed).")
@click.option("--factor-lr", default=None, type=float, metavar="SHARE",
              help="--factors: the factors' learning rate as a multiple of the run's (default: 0.3 under ftrl, "
                   "else 1).")
@click.option("--factor-fields", default=None, metavar="auto|all|A,B,...",
              help="--factors: the categorical columns that get factors. auto (default, a binary model): those in "
                   "pairs that a sample of the data shows pair effects in (said on stderr); all: every column.")
@click.option("--factor-numeric", is_flag=True,
              help="--factors: give the numeric columns factors too (needs --no-standardize).")
@click.option("--field-aware", is_flag=True,
              help="--factors: a field-aware FM (FFM): each categorical column, interaction and binned column is "
                   "a field (each numeric column too, under --factor-numeric) and every factor row keeps a K-vector "
                   "per field; O(K n^2) a row for n columns.")
@click.option("--transform", "transforms", multiple=True, metavar="KIND:COLUMNS",
              help="Transform numeric columns before anything else (repeatable; steps apply in order): "
                   "log1p:COLUMNS (sign(x) log(1 + |x|), for counts) or clip:COLUMNS:LOW:HIGH; COLUMNS are names "
                   "or globs joined by ',', e.g. --transform log1p:'I*' --transform clip:I3:0:1000.")
@click.option("--bins", multiple=True, metavar="N[:COLUMNS]",
              help="Turn numeric columns into N categorical slots at their quantiles (one streaming sketch in the "
                   "statistics pass; after --transform): N for every numeric column, or N:COLUMNS (repeatable), "
                   "e.g. --bins 32:'I*'.")
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
@click.option("--threads", default=1, show_default=True, type=int,
              help="Training threads on this machine's cores, updating one model without locks (Hogwild): "
                   "every row once an epoch, not bit-identical from run to run (docs/training.md).")
@click.option("--round-chunks", default=4, show_default=True, type=click.IntRange(min=1),
              help="Distributed mini-batch: chunks per worker between model averages.")
@click.option("--out", default=None, help="Model file to write (.safetensors).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout and nothing else.")
@click.option("--quiet", is_flag=True, help="No progress output on stderr.")
@storage_option
@friendly_errors
def fit(data: tuple[str, ...], target: str, features: str | None, exclude: str | None, model: str,
        out: str | None, as_json: bool, quiet: bool, history_path: str | None, workers: int,
        dask_address: str | None, round_chunks: int, storage_option: tuple[str, ...], **options: Any) -> None:
    """Train a model on DATA (Parquet files, directories or globs; or s3://, gs://, abfs:// URIs) streamed from
    disk or an object store; --out, --checkpoint-dir and --history may name an object store too."""
    from ..kernels.jit import warm_up

    if not (workers or dask_address):
        warm_up()  # Numba's once-per-process set-up, beside the imports below, the footers and the first reads
    from ..training.progress import TrainingProgress
    from ..training.trainer import Trainer

    source = list(data) if len(data) > 1 else data[0]
    options["class_weight"] = _parse_class_weight(options["class_weight"])
    options["categorical"] = split_columns(options["categorical"])
    options["transforms"] = list(options["transforms"]) or None
    options["bins"] = list(options["bins"]) or None
    hash_bits = options.pop("hash_bits")
    if hash_bits is not None:
        options["hash_bits"] = hash_bits
    options["encoding"] = options["encoding"] or ("hash" if hash_bits is not None else _default("encoding"))
    given = {name: options.pop(name) for name in OPTIMIZER_OPTIONS}
    options["optimizer_options"] = {name: value for name, value in given.items() if value is not None}
    options["storage_options"] = storage_options_of(storage_option)
    started = time.perf_counter()
    if options["threads"] != 1 and (workers or dask_address):
        raise ConfigError(f"--threads {options['threads']} trains on this machine's cores; under dask each worker "
                          "trains on one thread (leave out --threads)")
    if workers and not dask_address:
        from ..distributed import check_local_workers

        check_local_workers(workers, "--workers")
    _check_fit_outputs(source, out, history_path, options)
    note = _NoteOnce("note: no --out given; the trained model will not be saved" if out is None else None)
    from .allocators import map_large_arrays_directly

    map_large_arrays_directly()  # every fit: freed chunk-sized blocks go back to the system (see its docstring)
    try:
        with TrainingProgress(enabled=not quiet and not as_json) as progress:
            if workers or dask_address:
                fitted = _fit_on_dask(source, target, split_columns(features), model, workers, dask_address,
                                      round_chunks, dict(options, exclude=split_columns(exclude) or (),
                                                         on_chunk=note.then(progress.update)))
            else:
                trainer = Trainer(model=model, **options)
                setup_notes = _SetUpNotes(trainer, enabled=not quiet)
                trainer.on_chunk = note.then(setup_notes.then(progress.update))
                if not quiet:  # what each column became and what the data chose, said once with the first chunk
                    note.first = lambda: _echo_lines([*describe_columns(trainer.dataset, trainer.run.spec,
                                                                        trainer.config.standardize),
                                                      *filter(None, [trainer.config.defaults_note()])])
                fitted = trainer.fit(source, target=target, features=split_columns(features),
                                     exclude=split_columns(exclude) or ())
    except (TrainingInterrupted, KeyboardInterrupt) as exc:
        raise TrainingInterrupted(interrupted_message(exc, options.get("checkpoint_dir"))) from None
    if (workers or dask_address) and not quiet:  # the workers report no set-up to this process: said now
        _echo_columns(source, target, split_columns(features), split_columns(exclude), options, fitted.spec)
        _echo_lines([*filter(None, [describe_chosen_defaults(fitted.config.get("chosen_defaults"))]),
                     *fitted.summary.get("notes", [])])
    if out:
        fitted.save(out, options["storage_options"])
    if history_path:
        from ..io.storage import resolve, write_object

        write_object(resolve(history_path, options["storage_options"]),
                     lambda tmp: _write_text(tmp, json.dumps(fitted.history, indent=1)))
    seconds = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps(_json_report(fitted, out, seconds)))
        return
    click.echo(_summary_line(fitted, out, seconds, options))


_JSON_EPOCH_KEYS = ("epoch", "loss", "baseline_loss", "validation_loss", "rows", "seconds", "rows_per_s",
                    "peak_rss_mb", "workers_peak_rss_mb", "steps", "shuffle_quality")


def _run_figures(fitted: Any, seconds: float) -> dict:
    """The whole run's figures: rows trained over the epochs this run trained (a resumed or continued model's
    history holds earlier ones too), over the command's wall time; this process's peak RSS, and under dask each
    worker's."""
    run = fitted.history[len(fitted.history) - fitted.summary.get("epochs_run", len(fitted.history)):]
    rows = sum(record["rows"] for record in run)
    figures = {"seconds": round(seconds, 3), "epochs_run": len(run), "rows": rows,
               "rows_per_s": round(rows / max(seconds, 1e-9), 1),
               "peak_rss_mb": max([fitted.summary.get("peak_rss_mb") or 0.0] + [r["peak_rss_mb"] for r in run])}
    if fitted.summary.get("workers_peak_rss_mb") is not None:
        figures["workers_peak_rss_mb"] = fitted.summary["workers_peak_rss_mb"]
    return figures


def _json_report(fitted: Any, out: str | None, seconds: float) -> dict:
    """``--json``: the model, the run's figures and one entry per epoch (``epoch`` counted from 1)."""
    epochs = [{k: e[k] for k in _JSON_EPOCH_KEYS if k in e} for e in fitted.history]
    return {"model": out, "kind": fitted.kind, **_run_figures(fitted, seconds), "epochs": epochs}


def _summary_line(fitted: Any, out: str | None, seconds: float, options: dict) -> str:
    """The run in one line: epochs and their losses, then the whole run's rows, wall time and rows/s (the last
    epoch's rows/s labelled as such), and the peak RSS of every process that trained."""
    last = fitted.history[-1]
    figures = _run_figures(fitted, seconds)
    validation = f", validation loss {last['validation_loss']:.6g}" if "validation_loss" in last else ""
    best = (f", best epoch {fitted.summary['best_epoch']} kept" if "best_epoch" in fitted.summary else "")
    resumed = (f", resumed from checkpoint {fitted.summary['resumed_from']}"
               if fitted.summary.get("resumed_from") is not None else "")
    if fitted.summary.get("continued_from_epoch") is not None:
        resumed += f", continued {options['init']} at epoch {fitted.summary['continued_from_epoch'] + 1}"
    baseline = f" (constant {last['baseline_loss']:.6g})" if last.get("baseline_loss") is not None else ""
    left_out = last.get("rows_skipped", 0)
    why = "no target or a missing feature" if options["missing"] == "drop-rows" else "no target"
    skipped = f" ({left_out:,} rows skipped: {why})" if left_out else ""
    client, workers = figures["peak_rss_mb"], figures.get("workers_peak_rss_mb")
    memory = (f"peak RSS {client + sum(workers):,.0f} MB (client {client:,.0f} MB + {len(workers)} workers "
              f"{sum(workers):,.0f} MB, each process's own peak)" if workers else f"peak RSS {client:,.0f} MB")
    return (f"{fitted.kind}: {plural(len(fitted.history), 'epoch')}, {last['rows']:,} rows/epoch{skipped}, "
            f"loss {last['loss']:.6g}{baseline}{validation}{best}; {figures['rows']:,} rows in "
            f"{figures['seconds']:.2f} s, {figures['rows_per_s']:,.0f} rows/s over the run (last epoch "
            f"{last['rows_per_s']:,.0f} rows/s), {memory}{resumed}"
            + (f", model written to {out}" if out else ""))


def interrupted_message(exc: BaseException, checkpoint_dir: str | None) -> str:
    """What an interrupted fit says: where it stopped and, without ``--checkpoint-dir``, that nothing was saved."""
    text = str(exc) or "interrupted"
    if checkpoint_dir is None:
        text += "; nothing was saved (no --checkpoint-dir: give one to keep checkpoints that --resume continues)"
    return text


def _echo_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=True)


def _echo_columns(source: Any, target: str, features: list[str] | None, exclude: list[str] | None, options: dict,
                  spec: Any) -> None:
    """What each column became, for a run whose set-up happened elsewhere (dask): the data's footers read again."""
    from ..data.dataset import open_dataset

    dataset = open_dataset(source, target=target, features=features, categorical=options.get("categorical") or (),
                           exclude=exclude or (), storage_options=options.get("storage_options"))
    _echo_lines(describe_columns(dataset, spec, options.get("standardize", True)))


class _NoteOnce:
    """Lines for stderr, said once when training really starts (so that a bad option stays a one-line error):
    ``first`` (what each column became), then the note."""

    def __init__(self, text: str | None):
        self.text = text
        self.first: Callable[[], None] | None = None

    first: Callable[[], str | None] | None = None  # a line computed when training starts, said before the text

    def __call__(self, *ignored: Any) -> None:
        if self.first is not None:
            first, self.first = self.first, None
            first()
        if self.text is not None:
            click.echo(self.text, err=True)
            self.text = None

    def then(self, callback: Callable) -> Callable:
        def both(*args: Any) -> None:
            self()
            callback(*args)
        return both


class _SetUpNotes(_NoteOnce):
    """The trainer's notes from setting the run up (heavy-tailed columns), said once when training starts."""

    def __init__(self, trainer: Any, enabled: bool):
        super().__init__(None)
        self.trainer = trainer if enabled else None

    def __call__(self, *ignored: Any) -> None:
        if self.trainer is not None:
            for line in self.trainer.notes:
                click.echo(line, err=True)
            self.trainer = None


def _check_fit_outputs(source: Any, out: str | None, history_path: str | None, options: dict) -> None:
    """Every output of ``fit`` checked before the first chunk: writable, none of the inputs (the data, the
    validation data, the model ``--init`` continues), and no two of them in one place."""
    from ..data.dataset import list_files
    from ..io.outputs import check_output_dir, check_output_file, check_run_outputs

    storage = options.get("storage_options")
    inputs = list_files(source, storage)
    if options.get("validation_data") is not None:
        inputs += list_files(options["validation_data"], storage)
    if options.get("init") is not None:
        inputs.append(options["init"])
    if out is not None:
        check_output_file(out, inputs, "--out", storage)
    if history_path is not None:
        check_output_file(history_path, inputs, "--history", storage)
    check_run_outputs({"--out": out, "--history": history_path},
                      {"--checkpoint-dir": options.get("checkpoint_dir"), "--cache": options.get("cache")}, inputs)
    if options.get("checkpoint_dir") is not None:
        options["checkpoint_dir"] = check_output_dir(options["checkpoint_dir"], "--checkpoint-dir", storage)
    if options.get("cache") is not None:
        from ..data.cache import check_cache_dir

        options["cache"] = check_cache_dir(options["cache"], "--cache")


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
