"""Registries: one table per kind of choice (model kinds and their losses, optimizers, schedules, penalties, shuffle
modes), read by validation, the command line's ``click.Choice`` and help, and the tests' parametrisations.

A registry maps names to entries (classes, modules or small dataclasses) and a one-line summary of each, so a
name is written once, where its entry is defined.

>>> colours = Registry("colour", {"red": 1, "blue": 2}, {"red": "warm", "blue": "cold"})
>>> list(colours), colours["blue"], colours.check("red")
(['red', 'blue'], 2, 1)
>>> colours.check("green")
Traceback (most recent call last):
...
streamgd.errors.ConfigError: colour='green' is not accepted; expected one of red, blue
>>> colours.help(default="red")
'red (default): warm; blue: cold.'
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Names of one kind of choice (``param``: the setting that takes them) -> their entries and summaries."""

    def __init__(self, param: str, entries: dict[str, T], summaries: dict[str, str]):
        missing = [name for name in entries if name not in summaries]
        if missing:
            raise ValueError(f"{param} {missing[0]!r} has no summary")
        self.param = param
        self._entries = dict(entries)
        self.summaries = {name: summaries[name] for name in entries}

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.param!r}, {list(self._entries)})"

    def check(self, name: Any) -> T:
        """The entry of ``name``, or a one-line ConfigError naming the setting, the value and the accepted names."""
        if not isinstance(name, str) or name not in self._entries:
            raise ConfigError(f"{self.param}={name!r} is not accepted; expected one of {', '.join(self)}")
        return self._entries[name]

    def help(self, default: str | None = None) -> str:
        """``name: summary; ...`` for command-line help, the default marked."""
        return "; ".join(f"{name}{' (default)' if name == default else ''}: {summary}"
                         for name, summary in self.summaries.items()) + "."
