"""File order: units as the files store them, rows unshuffled. Fastest and fully sequential, but mini-batches
see the data exactly as it was written (sorted data stays sorted)."""

from __future__ import annotations

import numpy as np

from ..dataset import Unit


def order_units(units: list[Unit], rng: np.random.Generator) -> list[Unit]:
    """Keep the file order."""
    return list(units)


SYNTAX = "none"  # as written on the command line
SUMMARY = "file order, fastest, no mixing"
SHUFFLES_ROWS = False
