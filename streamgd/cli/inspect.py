"""``streamgd inspect``: a dataset's files, rows and columns and what training would use, a model file, or an
epoch cache directory."""

from __future__ import annotations

import os

import click

from ..errors import ConfigError, DataError
from .file_kinds import file_kind
from .options import LazyHelpOption, friendly_errors, split_columns, storage_option, storage_options_of


def _shuffle_help() -> str:
    # the shuffle modes' module loads Numba: imported when help is shown, not for every inspect
    from ..data.shuffle import shuffle_syntax

    return f"Show the shuffle quality of a mode: {shuffle_syntax()}."


@click.command()
@click.argument("path", nargs=-1)
@click.option("--cache", "cache_dir", default=None, metavar="DIR",
              help="Show what an epoch cache directory holds (units, rows, bytes, sources, format).")
@click.option("--target", help="Target column (to show what would be used as features).")
@click.option("--features", help="Feature columns: names, globs or the selectors text / numeric (default: every "
                                 "column but the target).")
@click.option("--shuffle", "shuffle", default=None, cls=LazyHelpOption, lazy_help=_shuffle_help)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--memory-budget", default=None, help="Show the units a memory budget such as 256MB gives.")
@click.option("--categorical", default=None,
              help="More columns to treat as categories (names, globs, selectors; text columns are anyway).")
@click.option("--stats", "statistics", is_flag=True,
              help="Also compute column statistics (count, missing, mean, std, min, max; distinct values).")
@click.option("--top", default=20, show_default=True, type=int,
              help="Model files: coefficients shown per output, and source columns, largest first.")
@click.option("--json", "as_json", is_flag=True, help="Model files: print one JSON object.")
@storage_option
@friendly_errors
def inspect(path: tuple[str, ...], cache_dir: str | None, target: str | None, features: str | None,
            shuffle: str | None, seed: int, memory_budget: str | None, categorical: str | None, statistics: bool,
            top: int, as_json: bool, storage_option: tuple[str, ...]) -> None:
    """Show a dataset's files, rows, row groups, columns and what training would use; for a model file
    (.safetensors), its kind, features, transform, interactions, coefficients, the weight norm of each source
    column, settings and history (MODEL DATA: the data's first rows attribute a hashed model's buckets to its
    columns); with --cache DIR, what an epoch cache holds."""
    from ..data.convert import other_format_hint
    from .inspect_data import describe_dataset

    if cache_dir is not None:
        from .inspect_cache import describe_cache

        if path:
            raise ConfigError("inspect --cache DIR shows a cache; give no PATH with it")
        click.echo(describe_cache(cache_dir))
        return
    if not path:
        raise ConfigError("inspect needs a PATH (a dataset or a model file) or --cache DIR")
    from ..io.storage import is_remote

    storage_options = storage_options_of(storage_option)
    kinds = {p: file_kind(p) for p in path if os.path.isfile(p)}
    remote_model = is_remote(path[0]) and path[0].endswith(".safetensors")
    if kinds.get(path[0]) == "safetensors" or remote_model:
        # a model's inspection hashes its columns' values (compiled): imported for model files only
        from .inspect_model import describe_model_file

        data = path[1:]  # the model's data: which hash buckets each hashed column's values use
        click.echo(describe_model_file(path[0], top=top, as_json=as_json, storage_options=storage_options,
                                       data=(list(data) if len(data) > 1 else data[0]) if data else None))
        return
    unknown = [p for p, kind in kinds.items() if kind != "parquet"]
    if unknown:
        raise DataError(other_format_hint(unknown[0])
                        or f"{unknown[0]} is neither a Parquet file nor a streamgd model file"
                        + (" (inspect one model file at a time)" if kinds[unknown[0]] else ""))
    if as_json:
        raise ConfigError("--json applies to model files; a dataset's report is text")
    source = list(path) if len(path) > 1 else path[0]
    click.echo(describe_dataset(source, target=target, features=split_columns(features), shuffle=shuffle,
                                seed=seed, memory_budget=memory_budget,
                                categorical=split_columns(categorical) or (), statistics=statistics,
                                storage_options=storage_options))
