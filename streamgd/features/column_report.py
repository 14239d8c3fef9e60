"""What each column became, in a few lines (``streamgd fit`` prints them on stderr before training): one line
per group of columns treated alike, and one line naming the columns not used, with the reason.

>>> import pyarrow as pa
>>> from streamgd.data.dataset import open_table
>>> from streamgd.features.spec import CategoricalInput, FeatureSpec, NumericInput
>>> table = pa.table({"I1": [1.0], "I2": [2.0], "C1": ["a"], "C2": ["b"], "C3": ["c"], "label": [1]})
>>> data = open_table(table, target="label")
>>> spec = FeatureSpec([NumericInput("I1"), NumericInput("I2")],
...                    [CategoricalInput(f"C{k}", encoding="hash") for k in (1, 2, 3)], "hash", 20)
>>> print("\\n".join(describe_columns(data, spec, standardize=True)))
2 numeric columns standardized: I1, I2
3 text columns hashed into 2^20 buckets: C1..C3
not used: label (the target)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..data.columns import is_temporal_type, is_text_type
from ..data.dataset import Dataset
from .spec import FeatureSpec

_NUMBERED = re.compile(r"^(.*?)(\d+)$")
MAX_GROUPS = 12  # name runs shown in one line before "..."


def describe_columns(dataset: Dataset, spec: FeatureSpec | None, standardize: bool) -> list[str]:
    """The lines: numeric columns (standardized or raw, with missing indicators), temporal columns, categorical
    columns by kind (text / numeric) and encoding, interactions, and the columns not used."""
    schema = dataset.schema
    scaled = "standardized" if standardize else "as they are (not standardized)"
    lines = []
    if spec is None:
        numeric, categorical, indicators = list(dataset.feature_names), [], 0
    else:
        numeric = [c.name for c in spec.numeric]
        categorical = spec.categorical
        indicators = sum(c.indicator for c in spec.numeric)
    plain = [n for n in numeric if not is_temporal_type(schema.field(n).type)]
    temporal = [n for n in numeric if is_temporal_type(schema.field(n).type)]
    missing = f", with {plural(indicators, 'missing-value indicator')}" if indicators else ""
    if plain:
        lines.append(f"{plural(len(plain), 'numeric column')} {scaled}{missing}: {name_ranges(plain)}")
        missing = ""
    if temporal:
        lines.append(f"{plural(len(temporal), 'date or time column')} as numbers (days or seconds), {scaled}"
                     f"{missing}: {name_ranges(temporal)}")
    if spec is not None:
        lines += treatment_lines(spec)
    groups: dict[tuple[str, str], list[str]] = {}
    for column in categorical:
        kind = "text" if is_text_type(schema.field(column.name).type) else "numeric"
        groups.setdefault((kind, spec.column_encoding(column)), []).append(column.name)
    for (kind, encoding), names in groups.items():
        if encoding == "hash":
            how = f"hashed into 2^{spec.hash_bits} buckets"
        else:
            sizes = sorted(len(c.vocabulary) for c in spec.onehot_columns if c.name in names)
            kept = f"{sizes[0]}" if sizes[0] == sizes[-1] else f"{sizes[0]} to {sizes[-1]}"
            how = f"one-hot ({kept} values each, other values and nulls in <name>=__other__)"
        noun = f"{kind} column" if kind == "text" else "numeric column"
        lines.append(f"{plural(len(names), noun)}{' as categoricals' if kind == 'numeric' else ''} {how}: "
                     f"{name_ranges(names)}")
    if spec is not None and spec.interactions:
        where = (f"{spec.own_interaction_bits} bits of their own" if spec.own_interaction_bits is not None
                 else "the hash buckets")
        pairs = ", ".join(f"{a}:{b}" for a, b in spec.interactions)
        lines.append(f"{plural(len(spec.interactions), 'interaction')} hashed into {where}: {pairs}")
    if dataset.ignored_columns:
        by_reason: dict[str, list[str]] = {}
        for name, reason in dataset.ignored_columns.items():
            by_reason.setdefault(reason, []).append(name)
        lines.append("not used: " + "; ".join(f"{name_ranges(names)} ({reason})"
                                              for reason, names in by_reason.items()))
    return lines


def treatment_lines(spec: FeatureSpec) -> list[str]:
    """A line per transform shared by numeric columns (``--transform``), and one for the binned columns
    (``--bins``)."""
    lines = []
    by_steps: dict[str, list[str]] = {}
    for name, steps in spec.transforms.items():
        by_steps.setdefault(" then ".join(describe_step(step) for step in steps), []).append(name)
    for steps, names in by_steps.items():
        lines.append(f"{plural(len(names), 'numeric column')} transformed first ({steps}): {name_ranges(names)}")
    if spec.binned:
        sizes = sorted(len(c.edges) + 1 for c in spec.binned)
        kept = f"{sizes[0]}" if sizes[0] == sizes[-1] else f"{sizes[0]} to {sizes[-1]}"
        lines.append(f"{plural(len(spec.binned), 'numeric column')} as categoricals in {kept} quantile bins each "
                     f"(and one for missing values): {name_ranges([c.name for c in spec.binned])}")
    return lines


def describe_step(step) -> str:
    """``log1p`` or ``clip to [0, 1000]``."""
    if step.kind != "clip":
        return step.kind
    low = "-inf" if step.low is None else f"{step.low:g}"
    high = "inf" if step.high is None else f"{step.high:g}"
    return f"clip to [{low}, {high}]"


def plural(n: int, noun: str) -> str:
    """``"1 epoch"``, ``"2 epochs"``.

    >>> plural(1, "epoch"), plural(3, "numeric column")
    ('1 epoch', '3 numeric columns')
    """
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def name_ranges(names: Sequence[str], max_groups: int = MAX_GROUPS) -> str:
    """Names with runs of three or more numbered alike written as ``C1..C26``; past ``max_groups`` runs, the
    count.

    >>> name_ranges(["I1", "I2", "I3", "C1", "C3", "id"])
    'I1..I3, C1, C3, id'
    """
    groups: list[list[str]] = []
    previous = None
    for name in names:
        match = _NUMBERED.match(name)
        key = (match.group(1), int(match.group(2))) if match else None
        if groups and key and previous and key[0] == previous[0] and key[1] == previous[1] + 1:
            groups[-1].append(name)
        else:
            groups.append([name])
        previous = key
    parts = []
    for group in groups:
        parts += [f"{group[0]}..{group[-1]}"] if len(group) >= 3 else group
    if len(parts) > max_groups:
        return ", ".join(parts[:max_groups]) + f", ... ({len(names)} in all)"
    return ", ".join(parts)
