"""What the commands share: one-line errors with the exit status a user can act on, the object-store option,
comma-separated column lists, and help text read from a registry only when help is shown."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import StreamgdError, TrainingInterrupted

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def friendly_errors(command: Callable) -> Callable:
    """A command whose library errors are one line on stderr and exit status 2 (130 when interrupted), never a
    traceback."""
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


class LazyHelpOption(click.Option):
    """An option whose help text is made when help is shown (``lazy_help``): a text read from a registry whose
    module loads Numba (the shuffle modes) then costs a command nothing unless its ``--help`` runs."""

    def __init__(self, *args: Any, lazy_help: Callable[[], str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_help = lazy_help

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = self.lazy_help()
        return super().get_help_record(ctx)


def storage_option(command: Callable) -> Callable:
    """``--storage-option KEY=VALUE`` (repeatable): settings of the filesystems that URIs name."""
    return click.option(
        "--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
        help="A setting of the object store that s3://, gs://, abfs:// ... paths name (repeatable), e.g. "
             "endpoint_override=http://127.0.0.1:9000, region=eu-west-1, retries=10 (attempts per request); "
             "credentials and the endpoint are also read from the standard environment (AWS_ACCESS_KEY_ID, "
             "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...).")(command)


def storage_options_of(pairs: tuple[str, ...]) -> dict | None:
    """The ``--storage-option`` pairs as the storage options of the Python API (None when none are given)."""
    from ..io.storage import parse_storage_options

    return parse_storage_options(pairs) or None


def split_columns(text: str | None) -> list[str] | None:
    """``"a, b,c"`` as ``["a", "b", "c"]``; None for no text."""
    if not text:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]
