"""Progress of the commands that stream rows (``make-data``, ``predict``): a rich bar on a terminal, as ``fit``'s,
and nothing when stderr is not a terminal (a pipe, a log file, a test)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO


class RowProgress:
    """Rows done out of ``total``, shown on ``stream`` (stderr) when it is a terminal; a context manager."""

    def __init__(self, description: str, total: int, stream: TextIO | None = None, enabled: bool = True):
        self.description = description
        self.total = total
        self.stream = stream or sys.stderr
        self.interactive = enabled and self.stream.isatty()
        self.done = 0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> RowProgress:
        if self.interactive:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("rows"), TimeRemainingColumn(), console=Console(file=self.stream),
                                 transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def advance(self, rows: int) -> None:
        """Count ``rows`` more rows done."""
        self.done += rows
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)

    def tables(self, tables: Iterable[Any]) -> Iterator[Any]:
        """The tables, each counted once it has been handed on."""
        for table in tables:
            yield table
            self.advance(table.num_rows)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
