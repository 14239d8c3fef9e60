"""``streamgd predict`` and ``streamgd evaluate``: a saved model streamed over data, into a Parquet file of
predictions or into metrics."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError
from .options import friendly_errors, split_columns, storage_option, storage_options_of
from .row_progress import RowProgress

if TYPE_CHECKING:
    from ..models.predict import PredictionCounts


@click.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data", nargs=-1, required=True)
@click.option("--out", required=True, help="Parquet file to write the predictions to.")
@click.option("--keep", default=None, help="Comma-separated columns copied through (ids).")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="Predict on a local dask cluster; --out is then a directory of part files.")
@click.option("--dask", "dask_address", default=None, help="Predict on this dask scheduler (--out: a directory).")
@storage_option
@friendly_errors
def predict(model_path: str, data: tuple[str, ...], out: str, keep: str | None, workers: int,
            dask_address: str | None, storage_option: tuple[str, ...]) -> None:
    """Stream predictions of MODEL over DATA into a Parquet file, one per input row in input order (null for a
    row with a missing or non-finite feature the model does not impute). MODEL, DATA and --out may be URIs
    (s3://bucket/key)."""
    from ..models.linear import load

    source = list(data) if len(data) > 1 else data[0]
    storage_options = storage_options_of(storage_option)
    _check_predict_output(source, model_path, out, directory=bool(workers or dask_address),
                          storage_options=storage_options)
    if workers and not dask_address:
        from ..distributed import check_local_workers

        check_local_workers(workers, "--workers")
    model = load(model_path, storage_options)
    if workers or dask_address:
        from dask.distributed import Client

        from ..distributed import close_cluster, local_cluster, predict_distributed

        cluster = None if dask_address else local_cluster(workers, dashboard_address=None)
        stopped = True  # until the predictions are written: then the cluster closes unhurried
        try:
            with Client(dask_address or cluster) as client:
                counts = predict_distributed(model, source, out, client=client, keep=split_columns(keep) or (),
                                             storage_options=storage_options)
            stopped = False
        finally:
            if cluster is not None:
                close_cluster(cluster, quickly=stopped)
        click.echo(_predicted_line(counts, f"{out}/part-*.parquet"))
        return
    counts = _predict_with_progress(model, source, out, split_columns(keep) or (), storage_options)
    click.echo(_predicted_line(counts, out))


def _predict_with_progress(model: Any, source: Any, out: str, keep: list[str], storage_options: dict | None
                           ) -> PredictionCounts:
    """``predict_to_parquet``, its tables counted by a progress bar on a terminal (nothing otherwise)."""
    from ..io.outputs import check_output_file
    from ..io.storage import uri_of
    from ..models.predict import iter_prediction_tables, open_for_model, write_tables

    dataset = open_for_model(model, source, keep, storage_options=storage_options)
    out = check_output_file(out, [uri_of(dataset.filesystem, s) for s in dataset.sources], "the predictions' path",
                            storage_options)
    with RowProgress("predict", dataset.n_rows) as progress:
        return write_tables(progress.tables(iter_prediction_tables(model, dataset, keep)), out, storage_options)


def _predicted_line(counts: PredictionCounts, out: str) -> str:
    """``N predictions written to OUT``, and how many rows got a null prediction, if any."""
    unscored = (f" ({counts.unscored:,} rows not scored: a missing or non-finite feature)"
                if counts.unscored else "")
    return f"{counts.rows:,} predictions written to {out}{unscored}"


def _check_predict_output(source: Any, model_path: str, out: str, directory: bool,
                          storage_options: dict | None = None) -> None:
    """``--out`` checked before reading: a writable file (a directory of parts on dask), none of the inputs."""
    from ..data.dataset import list_files
    from ..io.outputs import PART_FILES, check_output_dir, check_output_file, holds_any

    inputs = list_files(source, storage_options)
    if directory:
        check_output_dir(out, "--out", storage_options, replaced=PART_FILES)
        if holds_any(out, inputs):
            raise ConfigError(f"--out {out} holds the input data; write the predictions elsewhere")
    else:
        check_output_file(out, inputs + [model_path], "--out", storage_options)


@click.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data", nargs=-1, required=True)
@click.option("--target", default=None, help="Target column (default: the one the model was trained on).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout and nothing else.")
@storage_option
@friendly_errors
def evaluate(model_path: str, data: tuple[str, ...], target: str | None, as_json: bool,
             storage_option: tuple[str, ...]) -> None:
    """Stream DATA through MODEL and print the metrics that fit it (loss, accuracy, ROC AUC, confusion matrix;
    RMSE, MAE, R²)."""
    from ..models.evaluate import evaluate as evaluate_model
    from ..models.evaluate import format_report
    from ..models.linear import load

    storage_options = storage_options_of(storage_option)
    model = load(model_path, storage_options)
    result = evaluate_model(model, list(data) if len(data) > 1 else data[0], target=target,
                            storage_options=storage_options)
    click.echo(json.dumps(result) if as_json else format_report(result))
