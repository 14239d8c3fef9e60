"""Epoch plans: which units are read in which order, and how rows are permuted, as a pure function of
(seed, epoch, shard index, shard count). A plan never touches I/O.

Modes live one per module behind the ``MODES`` registry: ``none``, ``row-groups`` and ``buffer:K``.

>>> from streamgd.data.dataset import Unit
>>> units = [Unit(0, g, 0, 4, 4 * g) for g in range(6)]
>>> plan = make_plan(units, "row-groups", seed=1, epoch=0)
>>> sorted(u.row_group for step in plan.steps for u in step.units)
[0, 1, 2, 3, 4, 5]
>>> plan == make_plan(units, "row-groups", seed=1, epoch=0)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ...errors import ConfigError
from ...registry import Registry
from ..dataset import Unit
from . import buffer, none, row_groups
from .permute import permutation
from .quality import ShuffleQuality, ShuffleQualityMeter

_MODULES = (none, row_groups, buffer)
MODES: Registry[ModuleType] = Registry("shuffle", {m.SYNTAX.partition(":")[0]: m for m in _MODULES},
                                       {m.SYNTAX.partition(":")[0]: m.SUMMARY for m in _MODULES})

__all__ = ["MODES", "Plan", "Step", "ShuffleMode", "ShuffleQuality", "ShuffleQualityMeter", "make_plan",
           "parse_shuffle", "shard_units", "shuffle_syntax"]


@dataclass(frozen=True)
class ShuffleMode:
    """A parsed shuffle mode: its name and the number of units read together."""

    name: str
    units_per_step: int = 1

    def __str__(self) -> str:
        return f"{self.name}:{self.units_per_step}" if takes_unit_count(self.name) else self.name


def shuffle_syntax() -> str:
    """The shuffle modes as written on the command line.

    >>> shuffle_syntax()
    'none | row-groups | buffer:K'
    """
    return " | ".join(module.SYNTAX for module in MODES.values())


def takes_unit_count(name: str) -> bool:
    """Whether mode ``name`` is written ``name:K`` (K units read together)."""
    return MODES[name].SYNTAX.endswith(":K")


def parse_shuffle(text: str | ShuffleMode) -> ShuffleMode:
    """Parse a shuffle mode: a name of ``MODES``, followed by ``:K`` for ``buffer``.

    >>> parse_shuffle("buffer:8")
    ShuffleMode(name='buffer', units_per_step=8)
    """
    if isinstance(text, ShuffleMode):
        return text
    name, _, arg = str(text).partition(":")
    if name in MODES and takes_unit_count(name):
        k = int(arg) if arg.isdigit() else 0
        if k < 1:
            raise ConfigError(f"shuffle={text!r} is not accepted; {name} needs a unit count, for example {name}:8")
        return ShuffleMode(name, k)
    if name in MODES and not arg:
        return ShuffleMode(name)
    raise ConfigError(f"shuffle={text!r} is not accepted; expected one of {shuffle_syntax().replace(' | ', ', ')}")


@dataclass(frozen=True)
class Step:
    """Units read together into one chunk, and the seed of the permutation of their rows."""

    index: int
    units: tuple[Unit, ...]
    row_seed: tuple[int, ...] | None  # None: rows stay in file order

    @property
    def n_rows(self) -> int:
        return sum(u.n_rows for u in self.units)

    def row_order(self) -> np.ndarray | None:
        """The order in which the step's concatenated rows are delivered (None: as stored)."""
        if self.row_seed is None:
            return None
        return permutation(self.row_seed, self.n_rows)

    def file_positions(self, order: np.ndarray | None = None) -> np.ndarray:
        """Positions in the whole dataset's file order of the rows, in delivery order (``order``: this step's
        ``row_order()`` if the caller has it already)."""
        order = self.row_order() if order is None and self.row_seed is not None else order
        if len(self.units) == 1 and order is not None:
            return order + self.units[0].first_row
        positions = np.concatenate([np.arange(u.first_row, u.first_row + u.n_rows, dtype=np.int64)
                                    for u in self.units])
        return positions if order is None else positions[order]


@dataclass(frozen=True)
class Plan:
    """The ordered steps of one epoch for one shard."""

    mode: ShuffleMode
    seed: int
    epoch: int
    shard: int
    n_shards: int
    steps: tuple[Step, ...]

    @property
    def n_rows(self) -> int:
        return sum(s.n_rows for s in self.steps)

    @property
    def units(self) -> list[Unit]:
        return [u for s in self.steps for u in s.units]

    def shuffle_quality(self) -> ShuffleQuality:
        """Mixing figures of this plan's row order (one pass over its permutations; memory of one step)."""
        meter = ShuffleQualityMeter()
        for step in self.steps:
            meter.add(step.file_positions())
        return meter.result()


def shard_units(ordered: list[Unit], shard: int, n_shards: int) -> list[Unit]:
    """Shard ``shard`` of ``n_shards``: a contiguous block of the epoch order, with balanced row counts.

    Contiguous blocks keep the slices of one row group together; together the shards cover every unit once.
    """
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise ConfigError(f"shard {shard} of {n_shards} does not exist")
    if n_shards == 1:
        return list(ordered)
    cumulative = np.cumsum([0] + [u.n_rows for u in ordered])
    total = cumulative[-1]
    # each unit goes to the shard in which its first row falls when rows are split evenly
    owner = np.minimum((cumulative[:-1] * n_shards) // max(total, 1), n_shards - 1)
    return [u for u, k in zip(ordered, owner) if k == shard]


def make_plan(units: list[Unit], mode: str | ShuffleMode = "row-groups", seed: int = 0, epoch: int = 0,
              shard: int = 0, n_shards: int = 1) -> Plan:
    """The plan of one epoch: a pure function of the units and (mode, seed, epoch, shard, n_shards)."""
    parsed = parse_shuffle(mode)
    module = MODES[parsed.name]
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    ordered = shard_units(module.order_units(list(units), rng), shard, n_shards)
    k = parsed.units_per_step
    steps = []
    for index, start in enumerate(range(0, len(ordered), k)):
        row_seed = (seed, epoch, shard, n_shards, index) if module.SHUFFLES_ROWS else None
        steps.append(Step(index, tuple(ordered[start:start + k]), row_seed))
    return Plan(parsed, seed, epoch, shard, n_shards, tuple(steps))
