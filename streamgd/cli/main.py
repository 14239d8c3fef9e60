"""The ``streamgd`` command line: the group and its commands (one module per command group: ``fit``,
``predict`` (predict and evaluate), ``inspect``, ``data`` (make-data and bench), ``convert``), each thin over the Python API
(parse, validate, call, print).

Errors a user can fix print one line on stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from typing import Any

import click

from .lazy_group import LazyCommand, LazyGroup
from .options import EXIT_INTERRUPTED, EXIT_USAGE

COMMANDS = {  # each command's module is imported when it runs; a summary is the start of the command's own help
    "inspect": LazyCommand("streamgd.cli.inspect", "inspect",
                           "Show a dataset's files, rows, row groups, columns and what training would use"),
    "fit": LazyCommand("streamgd.cli.fit", "fit", "Train a model on DATA (Parquet files, directories or globs; or "
                       "s3://, gs://, abfs:// URIs) streamed from disk or an object store"),
    "predict": LazyCommand("streamgd.cli.predict", "predict",
                           "Stream predictions of MODEL over DATA into a Parquet file, one per input row in input "
                           "order"),
    "evaluate": LazyCommand("streamgd.cli.predict", "evaluate",
                            "Stream DATA through MODEL and print the metrics that fit it"),
    "bench": LazyCommand("streamgd.cli.data", "bench", "The nightly memory and throughput benchmark"),
    "make-data": LazyCommand("streamgd.cli.data", "make_data",
                             "Write a synthetic Parquet dataset with a known true model, in bounded memory"),
    "convert": LazyCommand("streamgd.cli.convert", "convert",
                           "Convert SOURCE (CSV or JSON lines) to the Parquet file OUT, streamed in bounded memory"),
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streamgd")
def main() -> None:
    """Out-of-core gradient descent (full batch, SGD, mini-batch) on Parquet data."""
    from .allocators import prefer_jemalloc

    prefer_jemalloc()
    warnings.showwarning = _one_line_warning


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (``kill``, a scheduler's stop) handled as Ctrl-C: by the SIGINT handler in place when it comes
    (the Trainer's stops after the chunk, with a checkpoint; a dask round is cancelled), else KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def _one_line_warning(message: Warning | str, category: type, *ignored: Any, **also_ignored: Any) -> None:
    """A warning as one line on stderr (no file, line or source), like the errors."""
    click.echo(f"warning: {message}", err=True)


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
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)  # the command's process only, not a host of the API
    status = invoke()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    run()
