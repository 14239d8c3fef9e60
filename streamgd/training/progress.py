"""Progress of a training run: a rich progress bar on a terminal, one line per epoch otherwise (on stderr).

The per-epoch line prints the epoch's history record (the numbers ``--json`` and ``--history`` hold), epochs
counted from 1 as there; a dask run reports the same way, its rounds as chunks."""

from __future__ import annotations

import sys

from .trainer import ChunkProgress


def memory_text(record: dict) -> str:
    """The record's peak RSS: this process's, and under dask the workers' beside it (each worker's own peak,
    summed)."""
    workers = record.get("workers_peak_rss_mb")
    if not workers:
        return f"peak RSS {record['peak_rss_mb']:,.0f} MB"
    return (f"peak RSS client {record['peak_rss_mb']:,.0f} MB + {len(workers)} workers {sum(workers):,.0f} MB")


def epoch_line(record: dict, epochs: int) -> str:
    """One epoch's line: rows, loss, the validation loss when there is one, rows/s, memory."""
    validation = (f", validation loss {record['validation_loss']:.6g}"
                  if record.get("validation_loss") is not None else "")
    return (f"epoch {record['epoch']}/{epochs}: {record['rows']:,} rows, loss {record['loss']:.6g}{validation}, "
            f"{record['rows_per_s']:,.0f} rows/s, {memory_text(record)}")


class TrainingProgress:
    """Shows ChunkProgress updates; use as a context manager around ``Trainer.fit``."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interactive = enabled and self.stream.isatty()
        self._bar = None
        self._task = None
        self._epoch = -1
        self._last: ChunkProgress | None = None  # the current epoch's last report, until its record is shown

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
            self._unfinished_line()
            self._epoch = info.epoch
            if self._bar is not None:
                self._task = self._bar.add_task("", total=info.rows_total, epoch=f"{info.epoch + 1}/{info.epochs}",
                                                rate="-", loss="-", rss="-", validation="")
        if info.record is not None:
            self._epoch_done(info)
            return
        self._last = info
        if self._bar is not None:
            self._bar.update(self._task, completed=info.rows_done, rate=f"{info.rows_per_s:,.0f}",
                             loss=f"{info.loss:.5g}", rss=f"{info.rss_mb:.0f}",
                             validation=(f"  validation {info.validation_loss:.5g}"
                                         if info.validation_loss is not None else ""))

    def _epoch_done(self, info: ChunkProgress) -> None:
        """The epoch is booked: its record's figures, on the bar or as the epoch's line."""
        record, self._last = info.record, None
        if self._bar is None:
            print(epoch_line(record, info.epochs), file=self.stream, flush=True)
            return
        validation = record.get("validation_loss")
        self._bar.update(self._task, total=record["rows"], completed=record["rows"],
                         rate=f"{record['rows_per_s']:,.0f}", loss=f"{record['loss']:.5g}",
                         rss=f"{record['peak_rss_mb']:.0f}",
                         validation=f"  validation {validation:.5g}" if validation is not None else "")

    def _unfinished_line(self) -> None:
        """An epoch that ended without its record (interrupted): the figures of its last chunk."""
        info = self._last
        self._last = None
        if info is None or self._bar is not None:
            return
        print(f"epoch {info.epoch + 1}/{info.epochs} (not finished): {info.rows_done:,} rows, loss {info.loss:.6g}, "
              f"{info.rows_per_s:,.0f} rows/s, RSS {info.rss_mb:.0f} MB", file=self.stream, flush=True)

    def __exit__(self, *exc: object) -> None:
        self._unfinished_line()
        if self._bar is not None:
            self._bar.__exit__(*exc)
