"""A click group that imports a command's module only when that command runs: ``streamgd --help`` and
``--version`` then load click alone, not Numba, pyarrow and dask (``tests/test_cli_startup.py`` measures it)."""

from __future__ import annotations

import importlib
from typing import NamedTuple

import click


class LazyCommand(NamedTuple):
    """Where a command lives and the line ``--help`` lists it with (checked against the command's own help)."""

    module: str
    attribute: str
    summary: str


class LazyGroup(click.Group):
    """``commands``: name -> LazyCommand; a command's module is imported by ``get_command``."""

    def __init__(self, *args, lazy_commands: dict[str, LazyCommand], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context | None, name: str) -> click.Command | None:
        if name in self.lazy_commands and name not in self.commands:
            where = self.lazy_commands[name]
            self.add_command(getattr(importlib.import_module(where.module), where.attribute), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their summaries, without importing them."""
        limit = formatter.width - 6 - max(len(name) for name in self.list_commands(ctx))
        rows = []
        for name in self.list_commands(ctx):
            summary = self.lazy_commands[name].summary if name in self.lazy_commands else \
                self.commands[name].get_short_help_str(limit)
            rows.append((name, click.utils.make_default_short_help(summary, limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)
