"""Row groups permuted, rows permuted within each unit. Costs nothing over file order, but a mini-batch draws all
its rows from one unit, so data clustered by row group stays clustered inside a batch.

Slices of one big row group stay together and in order, so the reader streams them with one forward cursor.
"""

from __future__ import annotations

import numpy as np

from ..dataset import Unit


def order_units(units: list[Unit], rng: np.random.Generator) -> list[Unit]:
    """Permute the row groups; the slices of a row group keep their order."""
    groups: dict[tuple[int, int], list[Unit]] = {}
    for unit in units:
        groups.setdefault(unit.group_key, []).append(unit)
    keys = list(groups)
    return [unit for index in rng.permutation(len(keys)) for unit in groups[keys[index]]]


SYNTAX = "row-groups"  # as written on the command line
SUMMARY = "row groups permuted, rows permuted within each unit"
SHUFFLES_ROWS = True
