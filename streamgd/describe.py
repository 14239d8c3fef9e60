"""``streamgd inspect``: what a dataset holds and what training would read from it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .dataset import open_dataset
from .reader import parse_memory_budget, rows_per_unit_for_budget
from .schedule import make_plan, parse_shuffle


def describe_dataset(source: Any, target: str | None = None, features: Sequence[str] | None = None,
                     shuffle: str | None = None, seed: int = 0, memory_budget: str | None = None) -> str:
    """A plain-text report: files, rows, row groups, columns with types, features, target, shuffle quality."""
    dataset = open_dataset(source, target=target, features=features)
    budget = parse_memory_budget(memory_budget)
    if budget is not None:
        units_per_step = parse_shuffle(shuffle).units_per_step if shuffle else 1
        limit = rows_per_unit_for_budget(budget, dataset.n_features, 4, 2, units_per_step)
        dataset = open_dataset(source, target=target, features=features, max_unit_rows=limit)
    lines = [f"files:      {len(dataset.sources)}"]
    for path in dataset.sources[:10]:
        lines.append(f"  {path}")
    if len(dataset.sources) > 10:
        lines.append(f"  ... and {len(dataset.sources) - 10} more")
    sizes = [n for rows in dataset.row_group_rows for n in rows]
    lines.append(f"rows:       {dataset.n_rows:,}")
    lines.append(f"row groups: {len(sizes)} (rows per group: min {min(sizes):,}, max {max(sizes):,})")
    if budget is not None:
        lines.append(f"units:      {len(dataset.units)} under a memory budget of {memory_budget}")
    lines.append("columns:")
    for field in dataset.schema:
        role = ("target" if field.name == dataset.target else
                "feature" if field.name in dataset.feature_names else
                f"ignored: {dataset.ignored_columns.get(field.name, '')}")
        lines.append(f"  {field.name:<24} {str(field.type):<14} {role}")
    lines.append(f"features:   {len(dataset.feature_names)}")
    lines.append(f"target:     {dataset.target if dataset.target else '(none given: use --target)'}")
    if shuffle:
        quality = make_plan(dataset.units, shuffle, seed=seed).shuffle_quality()
        lines.append(f"shuffle {parse_shuffle(shuffle)} (seed {seed}): rank correlation {quality.rank_correlation:+.4f} "
                     f"(1 = file order, 0 = mixed), local mixing {quality.local_mixing:.4f} "
                     f"(0 = neighbours stay together, 1 = uniform shuffle)")
    return "\n".join(lines)
