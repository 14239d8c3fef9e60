"""Numeric transforms and quantile bins of the feature spec: how ``--transform`` and ``--bins`` name columns, what
each transform computes, and which columns the statistics pass reports as heavy-tailed.

A transform rewrites a numeric column's values before anything else sees them: the statistics pass summarises the
transformed values (so imputation and standardization use their mean and deviation), training and prediction
apply the same steps to every chunk. Steps apply in the order given; a missing value stays missing.

* ``log1p``: ``sign(x) * log(1 + |x|)``, NumPy's ``log1p`` on counts (``x >= 0``) and its odd extension below
  zero, so that a -1 sentinel in a count column stays finite;
* ``clip:LOW:HIGH``: values below LOW become LOW, above HIGH become HIGH (either bound may be left empty).

Bins (``--bins N``) turn a numeric column into N categorical slots at the quantiles of its (transformed) values,
from the streaming sketch of ``streamgd.features.quantiles``: the classic treatment of counts in click logs,
robust to heavy tails because a row's slot depends on its rank, not its magnitude.

Columns are named by patterns: a column name or a glob (``I*``), several joined by ``,``:

>>> parse_transform("log1p:I*")
(['I*'], TransformStep(kind='log1p', low=None, high=None))
>>> parse_transform("clip:I3,I4:0:1000")
(['I3', 'I4'], TransformStep(kind='clip', low=0.0, high=1000.0))
>>> parse_bins("32:I1,I2"), parse_bins("16")
((['I1', 'I2'], 32), (['*'], 16))
>>> treatments(["I1", "I2", "x"], ["log1p:I*"], ["8:I2"])["I2"]
ColumnTreatment(steps=(TransformStep(kind='log1p', low=None, high=None),), bins=8)
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

TRANSFORM_KINDS = ("log1p", "clip")
MAX_BINS = 1 << 16
# A column is reported as heavy-tailed when the skewness of its values is at least this: an exponential has 2, a
# lognormal of log-deviation 1 has 6.2 (0.9: 4.8), the counts of click logs have tens to hundreds.
HEAVY_TAIL_SKEWNESS = 4.0


@dataclass(frozen=True)
class TransformStep:
    """One step of a column's transform: ``log1p``, or ``clip`` to [low, high] (None: no bound on that side)."""

    kind: str
    low: float | None = None
    high: float | None = None

    def apply(self, values: np.ndarray) -> np.ndarray:
        """The step applied to a float array in place (NaN stays NaN); returns the array."""
        if self.kind == "log1p":
            negative = values < 0
            if negative.any():  # counts rarely are: then one pass over the values
                np.abs(values, out=values)
                np.log1p(values, out=values)
                np.negative(values, out=values, where=negative)
            else:
                np.log1p(values, out=values)
        else:
            np.clip(values, -np.inf if self.low is None else self.low, np.inf if self.high is None else self.high,
                    out=values)
        return values

    def describe(self) -> str:
        if self.kind == "clip":
            low = "" if self.low is None else f"{self.low:g}"
            high = "" if self.high is None else f"{self.high:g}"
            return f"clip[{low},{high}]"
        return self.kind

    def to_dict(self) -> dict:
        return {"kind": self.kind, "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, data: Mapping) -> TransformStep:
        return check_step(cls(str(data["kind"]), data.get("low"), data.get("high")))


@dataclass(frozen=True)
class ColumnTreatment:
    """What the statistics pass and the feature spec do to one numeric column: its transform steps (in order),
    and its number of quantile bins (0: the column stays a dense numeric feature)."""

    steps: tuple[TransformStep, ...] = ()
    bins: int = 0

    def transform(self, values: np.ndarray) -> np.ndarray:
        """The steps applied to ``values`` in place (a float array; NaN for missing); returns it."""
        for step in self.steps:
            step.apply(values)
        return values

    def to_json(self) -> dict:
        return {"steps": [step.to_dict() for step in self.steps], "bins": self.bins}


def apply_steps(values: np.ndarray, steps: Sequence[TransformStep]) -> np.ndarray:
    """``values`` (float64, NaN for missing) through ``steps`` in place; returns it."""
    for step in steps:
        step.apply(values)
    return values


def check_step(step: TransformStep) -> TransformStep:
    if step.kind not in TRANSFORM_KINDS:
        raise ConfigError(f"transform {step.kind!r} is not known; expected one of {', '.join(TRANSFORM_KINDS)}")
    for bound in (step.low, step.high):
        if bound is not None and not (isinstance(bound, (int, float)) and math.isfinite(bound)):
            raise ConfigError(f"clip bound {bound!r} is not a finite number")
    if step.low is not None and step.high is not None and step.low > step.high:
        raise ConfigError(f"clip:{step.low:g}:{step.high:g} has its lower bound above its upper bound")
    return step


def _patterns(text: str, option: str, whole: str) -> list[str]:
    patterns = [p.strip() for p in text.split(",") if p.strip()]
    if not patterns:
        raise ConfigError(f"{option} {whole!r} names no columns")
    return patterns


def parse_transform(text: str) -> tuple[list[str], TransformStep]:
    """``KIND:COLUMNS`` (``log1p:I*``) or ``clip:COLUMNS:LOW:HIGH`` (``clip:I3:0:1000``; a bound may be empty) as
    (column patterns, step)."""
    parts = str(text).split(":")
    kind = parts[0].strip()
    usage = "expected log1p:COLUMNS or clip:COLUMNS:LOW:HIGH, such as log1p:'I*' or clip:I3:0:1000"
    if kind not in TRANSFORM_KINDS:
        raise ConfigError(f"--transform {text!r}: unknown transform {kind!r}; {usage}")
    if kind == "log1p":
        if len(parts) != 2:
            raise ConfigError(f"--transform {text!r}: {usage}")
        return _patterns(parts[1], "--transform", text), TransformStep("log1p")
    if len(parts) != 4:
        raise ConfigError(f"--transform {text!r}: {usage}")
    bounds = []
    for part in parts[2:]:
        try:
            bounds.append(float(part) if part.strip() else None)
        except ValueError:
            raise ConfigError(f"--transform {text!r}: clip bound {part!r} is not a number; {usage}") from None
    if bounds == [None, None]:
        raise ConfigError(f"--transform {text!r}: clip needs a lower or an upper bound; {usage}")
    return _patterns(parts[1], "--transform", text), check_step(TransformStep("clip", *bounds))


def parse_bins(text: str | int) -> tuple[list[str], int]:
    """``N`` (every numeric column) or ``N:COLUMNS`` (``32:I*``) as (column patterns, N)."""
    count, _, columns = str(text).partition(":")
    try:
        n = int(count)
    except ValueError:
        n = 0
    if not 2 <= n <= MAX_BINS:
        raise ConfigError(f"--bins {text!r}: expected N or N:COLUMNS with N an integer in [2, {MAX_BINS}], "
                          "such as 32 or 32:'I*'")
    return (_patterns(columns, "--bins", str(text)) if _ else ["*"]), n


def match_columns(patterns: Sequence[str], columns: Sequence[str], option: str) -> list[str]:
    """The columns (in their order) that the patterns name; a pattern that names none is an error."""
    chosen = set()
    for pattern in patterns:
        hits = [name for name in columns if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            raise ConfigError(f"{option} names {pattern!r}, which matches no numeric feature (numeric features: "
                              f"{', '.join(columns) or 'none'})")
        chosen.update(hits)
    return [name for name in columns if name in chosen]


def treatments(numeric: Sequence[str], transforms: Sequence[str] | None, bins: Sequence[str | int] | None
               ) -> dict[str, ColumnTreatment]:
    """Each numeric column's treatment from the ``--transform`` and ``--bins`` texts (columns without one are left
    out). A column named by two ``--bins`` takes the last; transforms accumulate in the order given."""
    steps: dict[str, list[TransformStep]] = {}
    for text in transforms or ():
        patterns, step = parse_transform(text)
        for name in match_columns(patterns, numeric, "--transform"):
            steps.setdefault(name, []).append(step)
    counts: dict[str, int] = {}
    for text in bins or ():
        patterns, n = parse_bins(text)
        for name in match_columns(patterns, numeric, "--bins"):
            counts[name] = n
    return {name: ColumnTreatment(tuple(steps.get(name, ())), counts.get(name, 0))
            for name in numeric if name in steps or name in counts}


def heavy_tailed(skewness: Mapping[str, float], threshold: float = HEAVY_TAIL_SKEWNESS) -> list[str]:
    """The columns whose skewness is at least ``threshold``, most skewed first."""
    chosen = [name for name, skew in skewness.items() if math.isfinite(skew) and skew >= threshold]
    return sorted(chosen, key=lambda name: -skewness[name])


def heavy_tail_note(skewness: Mapping[str, float], threshold: float = HEAVY_TAIL_SKEWNESS) -> str | None:
    """One line naming the heavy-tailed columns with the suggestion, or None when there are none.

    >>> heavy_tail_note({"I1": 38.0, "I2": 0.1, "I3": 5.2})
    'note: heavy-tailed numeric columns (skewness >= 4): I1 (38), I3 (5.2); try --transform log1p:I1,I3 or --bins 32:I1,I3'
    """
    names = heavy_tailed(skewness, threshold)
    if not names:
        return None
    shown = ", ".join(f"{name} ({skewness[name]:.2g})" for name in names[:12]) + (", ..." if len(names) > 12 else "")
    listed = ",".join(name for name in skewness if name in names)  # in the columns' order
    return (f"note: heavy-tailed numeric columns (skewness >= {threshold:g}): {shown}; try --transform log1p:{listed} "
            f"or --bins 32:{listed}")
