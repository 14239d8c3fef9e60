"""The ``streamgd`` command's entry point: process-wide settings that must come before pyarrow loads, then the
command line (``streamgd.cli.main``). Importing ``streamgd`` loads no pyarrow (its public names load on first use),
so this module runs first."""

from __future__ import annotations

from .allocators import arrow_jemalloc_by_default


def run() -> None:
    """Run the ``streamgd`` command (``python -m streamgd`` runs the same)."""
    arrow_jemalloc_by_default()
    from .main import run as run_command_line

    run_command_line()
