"""``streamgd convert``: a CSV or JSON lines file to Parquet, streamed (``streamgd.data.convert``)."""

from __future__ import annotations

import sys
import time

import click

from ..errors import ConfigError
from .options import friendly_errors


@click.command()
@click.argument("source")
@click.argument("out")
@click.option("--row-group-size", default=65_536, show_default=True, type=click.IntRange(min=1),
              help="Rows per row group of the output (a unit of reading and shuffling for training).")
@click.option("--format", "input_format", default=None, type=click.Choice(["csv", "tsv", "json"]),
              help="The input's format [default: from its suffix (.csv, .tsv, .json, .jsonl, .ndjson, also "
                   "compressed: .gz, .bz2, .zst), else from its first bytes].")
@click.option("--column-type", "column_type", multiple=True, metavar="NAME=TYPE",
              help="The Arrow type of a column, e.g. price=float64 (repeatable); the others are inferred from the "
                   "first block of text.")
@click.option("--delimiter", default=None, help="CSV: the field separator [default: ',' (.tsv: tab)].")
@click.option("--block-size", default="1MB", show_default=True,
              help="Text parsed at a time (types are inferred from the first block); the reader holds a few "
                   "dozen blocks ahead.")
@click.option("--quiet", is_flag=True, help="No progress and no summary.")
@friendly_errors
def convert(source: str, out: str, row_group_size: int, input_format: str | None, column_type: tuple[str, ...],
            delimiter: str | None, block_size: str, quiet: bool) -> None:
    """Convert SOURCE (CSV or JSON lines) to the Parquet file OUT, streamed in bounded memory; OUT is written
    to a temporary file and renamed when complete.

    \b
    Example:
      streamgd convert clicks.csv.gz clicks.parquet --row-group-size 65536
    """
    from ..data.convert import convert as convert_file
    from ..data.reader import parse_size

    types = {}
    for pair in column_type:
        name, sep, kind = pair.partition("=")
        if not sep or not name or not kind:
            raise ConfigError(f"--column-type {pair!r}: give NAME=TYPE, e.g. price=float64")
        types[name.strip()] = kind.strip()
    progress = ConvertProgress(enabled=not quiet and sys.stderr.isatty())
    result = convert_file(source, out, row_group_size=row_group_size, input_format=input_format,
                          column_types=types, block_size=parse_size(block_size, "--block-size"), delimiter=delimiter,
                          progress=progress.update)
    progress.finish()
    if not quiet:
        kinds = ", ".join(f"{f.name} {f.type}" for f in result.schema)
        click.echo(f"wrote {result.output}: {result.rows:,} row{'' if result.rows == 1 else 's'} in "
                   f"{result.row_groups} row group"
                   f"{'' if result.row_groups == 1 else 's'}, {len(result.schema)} columns ({kinds})")


class ConvertProgress:
    """One line on a terminal, rewritten at most five times a second: rows written and the share of the input
    read."""

    def __init__(self, enabled: bool, interval: float = 0.2):
        self.enabled = enabled
        self.interval = interval
        self.shown = -float("inf")
        self.drawn = False

    def update(self, rows: int, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.shown < self.interval:
            return
        self.shown = now
        share = f", {100 * done / total:.0f}% of {total / 1e6:,.1f} MB read" if total else ""
        click.echo(f"\rconverting: {rows:,} rows{share}", err=True, nl=False)
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            click.echo("", err=True)
