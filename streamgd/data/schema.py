"""One schema for the files of a dataset: column types that differ between files (schema drift) are reconciled.

Files written at different times often store a column at different widths (float32 in one, float64 in another;
int32 and int64; an integer column that became a float one). Such a column is read, in every file, as the one
type that holds every file's values exactly (``unify_types``), so a chunk mixing units of several files has one
type per column and the values the training dtype sees are the values each file stores. A column that cannot be
reconciled (text in one file, numbers in another) or that some files lack is a ``ColumnDrift`` with no type: it
blocks a run only when the run uses it.

>>> import pyarrow as pa
>>> schemas = [pa.schema([("x", pa.float32()), ("n", pa.int32())]), pa.schema([("x", pa.float64()), ("n", pa.int64())])]
>>> merged = reconcile(["a.parquet", "b.parquet"], schemas)
>>> merged.schema.types, [(d.name, str(d.unified)) for d in merged.drift]
([DataType(double), DataType(int64)], [('x', 'double'), ('n', 'int64')])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from ..errors import SchemaError

FILES_SHOWN = 3  # files named per type in a message before "and N more"


@dataclass
class ColumnDrift:
    """A column whose type is not the same in every file: the files of each type, the files that lack it, and
    ``unified``, the type every file is read as (None: the types cannot be reconciled, or some files lack it)."""

    name: str
    files_by_type: dict[str, list[str]]  # type as text -> files storing the column so, in file order
    missing_from: list[str] = field(default_factory=list)
    unified: pa.DataType | None = None

    @property
    def usable(self) -> bool:
        return self.unified is not None

    def problem(self) -> str:
        """Why the column cannot be used, in a few words naming the files (empty when it can)."""
        if self.missing_from:
            return f"missing from {name_files(self.missing_from)}"
        if self.unified is None:
            return "of incompatible types: " + "; ".join(
                f"{kind} in {name_files(files)}" for kind, files in self.files_by_type.items())
        return ""


@dataclass
class MergedSchema:
    """The dataset's schema (every column of any file, in order of first appearance, at its unified type) and
    the columns that differ between files."""

    schema: pa.Schema
    drift: list[ColumnDrift]

    def drift_of(self, name: str) -> ColumnDrift | None:
        return next((d for d in self.drift if d.name == name), None)


def reconcile(files: Sequence[str], schemas: Sequence[pa.Schema],
              present: Sequence[set[str]] | None = None) -> MergedSchema:
    """Merge the files' schemas. ``present``: per file, columns it supplies though its schema lacks them (hive
    partition keys in its path)."""
    order: list[str] = []
    types: dict[str, dict[str, tuple[pa.DataType, list[str]]]] = {}
    for path, schema in zip(files, schemas):
        check_unique_names(path, schema)
        for column in schema:
            if column.name not in types:
                order.append(column.name)
                types[column.name] = {}
            kind = types[column.name].setdefault(type_name(column.type), (column.type, []))
            kind[1].append(path)
    fields, drift = [], []
    for name in order:
        kinds = types[name]
        holders = {p for _, paths in kinds.values() for p in paths}
        missing = [p for i, p in enumerate(files)
                   if p not in holders and not (present is not None and name in present[i])]
        unified = unify_types([t for t, _ in kinds.values()])
        fields.append(pa.field(name, unified if unified is not None else next(iter(kinds.values()))[0]))
        if len(kinds) > 1 or missing:
            drift.append(ColumnDrift(name, {k: paths for k, (_, paths) in kinds.items()}, missing,
                                     None if missing else unified))
    return MergedSchema(pa.schema(fields), drift)


def check_unique_names(path: str, schema: pa.Schema) -> None:
    """A file whose columns repeat a name (pandas and Spark can write one) is refused: a name could not say
    which of them a run reads."""
    names = schema.names
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SchemaError(f"{path} has more than one column named {', '.join(map(repr, repeated))}; rename them "
                          "so that each column has its own name")


def check_used(merged: MergedSchema, used: Sequence[str]) -> None:
    """Raise a one-line SchemaError for the first used column that some files lack or store in incompatible
    types."""
    for name in used:
        drift = merged.drift_of(name)
        if drift is not None and not drift.usable:
            fix = ("add it to those files" if drift.missing_from else
                   "rewrite the files so that every one holds it as numbers, or every one as text")
            raise SchemaError(f"the column {name!r} is {drift.problem()}; leave it out of the run, or {fix}")


def settle_drift(merged: MergedSchema, features: list[str], categorical: list[str],
                 named: Sequence[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """(features, categorical features, columns left out with the reason) once drift is settled: a column that
    some files lack or store in incompatible types is left out of a selection by default, glob or selector (and
    said so), and is a one-line SchemaError when the run names it (``named``: the target, and the feature or
    categorical columns given by their exact names)."""
    check_used(merged, list(named))
    dropped = {}
    for name in features:
        drift = merged.drift_of(name)
        if drift is not None and not drift.usable:
            dropped[name] = drift.problem()
    return ([n for n in features if n not in dropped], [n for n in categorical if n not in dropped], dropped)


def unify_types(kinds: Sequence[pa.DataType]) -> pa.DataType | None:
    """The type that holds the values of every type in ``kinds`` exactly, or None when there is none.

    Floats: the widest; integers: the widest signed (int64 when signed and unsigned meet, double with uint64);
    integers and floats: double; booleans with numbers: the numbers' type; decimals with anything else: double;
    text (string, large_string, dictionaries of strings): large_string when one file has it, else string;
    timestamps of one time zone: the finest unit; a column of nulls only (type null) takes the others' type.

    >>> unify_types([pa.int8(), pa.int32()]), unify_types([pa.int64(), pa.float32()]), unify_types([pa.string(), pa.int64()])
    (DataType(int32), DataType(double), None)
    """
    kinds = [k for k in kinds if not pa.types.is_null(k)]
    if not kinds:
        return pa.null()
    first = kinds[0]
    if all(k == first for k in kinds):
        return first
    if all(_is_number(k) for k in kinds):
        return _unify_numbers([k for k in kinds if not pa.types.is_boolean(k)])
    if all(_is_text(k) for k in kinds):
        return pa.large_string() if any(_text_of(k) == pa.large_string() for k in kinds) else pa.string()
    if all(pa.types.is_timestamp(k) for k in kinds) and len({k.tz for k in kinds}) == 1:
        finest = max(kinds, key=lambda k: _TIME_UNITS.index(k.unit))
        return pa.timestamp(finest.unit, tz=finest.tz)
    return None


_TIME_UNITS = ["s", "ms", "us", "ns"]


def _is_number(kind: pa.DataType) -> bool:
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind))


def _text_of(kind: pa.DataType) -> pa.DataType | None:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return kind if (pa.types.is_string(kind) or pa.types.is_large_string(kind)) else None


def _is_text(kind: pa.DataType) -> bool:
    return _text_of(kind) is not None


def _unify_numbers(kinds: list[pa.DataType]) -> pa.DataType:
    if not kinds:
        return pa.bool_()
    if any(pa.types.is_decimal(k) for k in kinds):
        return pa.float64()
    if any(pa.types.is_floating(k) for k in kinds):
        if all(pa.types.is_floating(k) for k in kinds):
            return max(kinds, key=lambda k: k.bit_width)
        return pa.float64()  # an integer column that became a float one
    if all(pa.types.is_signed_integer(k) for k in kinds) or all(pa.types.is_unsigned_integer(k) for k in kinds):
        return max(kinds, key=lambda k: k.bit_width)
    if any(k == pa.uint64() for k in kinds):
        return pa.float64()
    return pa.int64()


def cast_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with each column that has another type in ``schema`` cast to that type (values kept exactly:
    the schema's types are unified ones, wide enough for every file's)."""
    casts = [i for i, column in enumerate(table.schema)
             if column.name in schema.names and column.type != schema.field(column.name).type]
    for i in casts:
        name = table.schema.field(i).name
        table = table.set_column(i, name, table.column(i).cast(schema.field(name).type))
    return table


def type_name(kind: pa.DataType) -> str:
    """A type as text, short: ``dictionary<string>`` rather than its index type and ordering too."""
    if pa.types.is_dictionary(kind):
        return f"dictionary<{kind.value_type}>"
    return str(kind)


def name_files(paths: Sequence[str]) -> str:
    """The first few of ``paths``, and how many more."""
    shown = ", ".join(paths[:FILES_SHOWN])
    more = len(paths) - FILES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")
