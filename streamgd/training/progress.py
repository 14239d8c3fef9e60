"""Progress of a training run: a rich progress bar on a terminal, one line per epoch otherwise (on stderr)."""

from __future__ import annotations

import sys

from .trainer import ChunkProgress


class TrainingProgress:
    """Shows ChunkProgress updates; use as a context manager around ``Trainer.fit``."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interactive = enabled and self.stream.isatty()
        self._bar = None
        self._task = None
        self._epoch = -1
        self._last: ChunkProgress | None = None

    def __enter__(self) -> TrainingProgress:
        if self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]} rows/s  loss {task.fields[loss]}"
                                            "{task.fields[validation]}  RSS {task.fields[rss]} MB"),
                                 TimeRemainingColumn(), console=Console(file=self.stream), transient=False)
            self._bar.__enter__()
        return self

    def update(self, info: ChunkProgress) -> None:
        if not self.enabled:
            return
        if info.epoch != self._epoch:
            self._finish_epoch()
            self._epoch = info.epoch
            if self._bar is not None:
                self._task = self._bar.add_task("", total=info.rows_total, epoch=f"{info.epoch + 1}/{info.epochs}",
                                                rate="-", loss="-", rss="-", validation="")
        self._last = info
        if self._bar is not None:
            self._bar.update(self._task, completed=info.rows_done, rate=f"{info.rows_per_s:,.0f}",
                             loss=f"{info.loss:.5g}", rss=f"{info.rss_mb:.0f}",
                             validation=(f"  validation {info.validation_loss:.5g}"
                                         if info.validation_loss is not None else ""))

    def _finish_epoch(self) -> None:
        info = self._last
        if info is None or self._bar is not None:
            return
        print(f"epoch {info.epoch + 1}/{info.epochs}: {info.rows_done:,} rows, loss {info.loss:.6g}, "
              f"{info.rows_per_s:,.0f} rows/s, RSS {info.rss_mb:.0f} MB", file=self.stream, flush=True)

    def __exit__(self, *exc: object) -> None:
        self._finish_epoch()
        if self._bar is not None:
            self._bar.__exit__(*exc)
