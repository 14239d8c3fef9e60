"""A bounded shuffle buffer: units in row-group order, read K at a time, rows permuted across the K units. Each
mini-batch mixes rows from K units; memory grows with K (K units in flight), never with the data."""

from __future__ import annotations

import numpy as np

from ..dataset import Unit
from .row_groups import order_units as _row_group_order


def order_units(units: list[Unit], rng: np.random.Generator) -> list[Unit]:
    """The same unit order as ``row-groups``; the plan groups consecutive units K at a time."""
    return _row_group_order(units, rng)


SYNTAX = "buffer:K"  # as written on the command line
SUMMARY = "rows permuted across K units read together"
SHUFFLES_ROWS = True
