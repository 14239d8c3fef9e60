"""``streamgd inspect``: what a dataset holds and what training would read from it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..data.dataset import open_dataset
from ..data.memory_plan import plan_for_dataset
from ..data.schema import ColumnDrift, name_files


def describe_dataset(source: Any, target: str | None = None, features: Sequence[str] | None = None,
                     shuffle: str | None = None, seed: int = 0, memory_budget: str | None = None,
                     categorical: Sequence[str] = (), statistics: bool = False,
                     storage_options: dict | None = None) -> str:
    """A plain-text report: files, rows, row groups, columns with types, features, target, shuffle quality and,
    with ``statistics``, one streaming pass of column statistics."""
    dataset = open_dataset(source, target=target, features=features, categorical=categorical,
                           storage_options=storage_options)
    budget = None
    if memory_budget is not None:  # the reader and the shuffle modes load Numba: only when asked for
        from ..data.reader import DEFAULT_PREFETCH_DEPTH, parse_memory_budget
        from ..data.shuffle import parse_shuffle

        budget = parse_memory_budget(memory_budget)
    if budget is not None:
        units_per_step = parse_shuffle(shuffle).units_per_step if shuffle else 1
        plan = plan_for_dataset(budget, dataset, 4, DEFAULT_PREFETCH_DEPTH, units_per_step, dataset.categorical)
        dataset = open_dataset(source, target=target, features=features, max_unit_rows=plan.max_unit_rows,
                               categorical=categorical, storage_options=storage_options)
    lines = [f"files:      {len(dataset.sources)}"]
    for path in dataset.sources[:10]:
        lines.append(f"  {path}")
    if len(dataset.sources) > 10:
        lines.append(f"  ... and {len(dataset.sources) - 10} more")
    sizes = [n for rows in dataset.row_group_rows for n in rows]
    lines.append(f"rows:       {dataset.n_rows:,}")
    lines.append(f"row groups: {len(sizes)} (rows per group: min {min(sizes):,}, max {max(sizes):,})")
    if budget is not None:
        lines.append(f"units:      {len(dataset.units)} under a {plan.describe()}")
    lines.append("columns:")
    for field in dataset.schema:
        role = ("target" if field.name == dataset.target else
                "feature (categorical)" if field.name in dataset.categorical else
                "feature" if field.name in dataset.feature_names else
                f"ignored: {dataset.ignored_columns.get(field.name, '')}")
        lines.append(f"  {field.name:<24} {str(field.type):<14} {role}")
    lines += schema_drift_lines(dataset.schema_drift)
    lines.append(f"features:   {len(dataset.feature_names)}")
    lines.append(f"target:     {dataset.target if dataset.target else '(none given: use --target)'}")
    if shuffle:
        from ..data.shuffle import make_plan, parse_shuffle

        quality = make_plan(dataset.units, shuffle, seed=seed).shuffle_quality()
        lines.append(f"shuffle {parse_shuffle(shuffle)} (seed {seed}): rank correlation {quality.rank_correlation:+.4f} "
                     f"(1 = file order, 0 = mixed), local mixing {quality.local_mixing:.4f} "
                     f"(0 = neighbours stay together, 1 = uniform shuffle)")
    if statistics:
        lines += _statistics_lines(dataset)
    return "\n".join(lines)


def schema_drift_lines(drift: Sequence[ColumnDrift]) -> list[str]:
    """The columns whose type differs between files: per column, each type with the files storing it, the files
    lacking it, and the type it is read as (or why it cannot be used)."""
    if not drift:
        return []
    lines = [f"schema differs across files ({len(drift)} column{'s' if len(drift) > 1 else ''}):",
             f"  {'column':<24} {'type':<14} files"]
    for column in drift:
        rows = list(column.files_by_type.items()) + ([("(missing)", column.missing_from)] if column.missing_from
                                                     else [])
        for index, (kind, files) in enumerate(rows):
            lines.append(f"  {column.name if index == 0 else '':<24} {kind:<14} {name_files(files)}")
        outcome = (f"read as {column.unified} from every file" if column.usable else
                   "not usable: left out of the default features; a run that names it stops")
        lines.append(f"  {'':<24} -> {outcome}")
    return lines


def _statistics_lines(dataset: Any) -> list[str]:
    from ..features.stats import compute_stats
    from ..features.transforms import heavy_tail_note

    columns = dataset.feature_names + ([dataset.target] if dataset.target else [])
    stats = compute_stats(dataset, columns, dataset.categorical)
    lines = ["statistics (one streaming pass):",
             f"  {'column':<24} {'count':>10} {'missing':>9} {'mean':>12} {'std':>12} {'min':>12} {'max':>12}"]
    for name in columns:
        column = stats.columns[name]
        if column.categories is not None:
            values, counts, errors = column.categories.top(3)
            shown = ", ".join(f"{value}: {'<=' if error else ''}{count:,}"  # <=: an upper bound, not exact
                              for value, count, error in zip(values.to_pylist(), counts.tolist(), errors.tolist()))
            more = "+" if column.overflow else ""  # more distinct values than the summary tracks
            lines.append(f"  {name:<24} {column.count:>10,} {column.missing:>9,}   {column.distinct}{more} "
                         f"distinct ({shown}{', ...' if column.distinct > 3 else ''})")
        elif column.count:
            lines.append(f"  {name:<24} {column.count:>10,} {column.missing:>9,} {column.mean:>12.5g} "
                         f"{column.std:>12.5g} {column.min:>12.5g} {column.max:>12.5g}")
        else:
            lines.append(f"  {name:<24} {0:>10} {column.missing:>9,}   (no finite values)")
    note = heavy_tail_note({name: stats.columns[name].skewness for name in dataset.feature_names
                            if name not in dataset.categorical})
    if note is not None:
        lines.append(note)
    return lines
