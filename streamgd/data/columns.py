"""Naming columns: exact names, globs (``'C*'``) and the selectors ``text`` and ``numeric``; and the one-line
answer to a name that is not in the data, with the closest names first ("did you mean").

A column is what the data's schema says it is:

* **numeric**: integers, floats, booleans, decimals, and dates, timestamps, times and durations (read as days or
  seconds): features as numbers, standardized by default;
* **text**: strings, large strings and dictionary columns: features as categoricals by default;
* anything else (nested lists and structs, binary, all-null columns) cannot be a feature; it is named with the
  reason (``why_not_a_feature``).

>>> import pyarrow as pa
>>> schema = pa.schema([("I1", pa.int64()), ("I2", pa.float32()), ("C1", pa.string()), ("C2", pa.string()),
...                     ("label", pa.int8())])
>>> expand_columns(["C*", "I1"], schema, "categorical")
['C1', 'C2', 'I1']
>>> expand_columns(["numeric"], schema, "feature")
['I1', 'I2', 'label']
>>> expand_columns(["I3"], schema, "feature")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamgd.errors.DataError: the feature column 'I3' is not in the data; did you mean 'I1', 'I2'? (columns: I1, ...)
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Sequence

import pyarrow as pa

from ..errors import ConfigError, DataError

GLOB_CHARS = re.compile(r"[*?\[]")
LISTED_COLUMNS = 12  # names an error lists before "..." (the closest matches are always listed)


def is_numeric_type(dtype: pa.DataType) -> bool:
    """Whether a column of this Arrow type can be a feature as it is (ints, floats, booleans, decimals)."""
    return (pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype)
            or pa.types.is_decimal(dtype))


def is_temporal_type(dtype: pa.DataType) -> bool:
    """Dates, timestamps, times and durations: features as numbers (days or seconds)."""
    return (pa.types.is_date(dtype) or pa.types.is_timestamp(dtype) or pa.types.is_time(dtype)
            or pa.types.is_duration(dtype))


def is_text_type(dtype: pa.DataType) -> bool:
    """Strings and dictionaries: categorical features by default."""
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_dictionary(dtype)


def is_number_like(dtype: pa.DataType) -> bool:
    """What the ``numeric`` selector picks: columns read as numbers (numeric or temporal)."""
    return is_numeric_type(dtype) or is_temporal_type(dtype)


SELECTORS: dict[str, Callable[[pa.DataType], bool]] = {"text": is_text_type, "numeric": is_number_like}


def why_not_a_feature(dtype: pa.DataType) -> str:
    """The short reason a column of this type is not a feature (None of the feature types)."""
    if pa.types.is_nested(dtype):
        return "nested"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype):
        return "binary"
    if pa.types.is_null(dtype):
        return "all null"
    return f"type {dtype}, neither numeric nor text"


def expand_columns(patterns: Sequence[str], schema: pa.Schema, what: str, where: str = "the data") -> list[str]:
    """The columns ``patterns`` name, in the patterns' order and then the schema's, each once: an exact name
    (which wins over a selector or glob of the same spelling), a glob matched against every name, or a selector
    (``text``, ``numeric``). A pattern that names nothing is a DataError (``unknown_column``)."""
    names = schema.names
    chosen: list[str] = []
    for pattern in patterns:
        if pattern in names:
            found = [pattern]
        elif pattern in SELECTORS:
            found = [f.name for f in schema if SELECTORS[pattern](f.type)]
            if not found:
                raise DataError(f"the {what} selector {pattern!r} matches no column of {where} "
                                f"(columns: {column_list(names)})")
        elif GLOB_CHARS.search(pattern):
            found = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
            if not found:
                raise DataError(f"the {what} pattern {pattern!r} matches no column of {where} "
                                f"(columns: {column_list(names)})")
        else:
            raise unknown_column(pattern, names, what, where)
        chosen += [name for name in found if name not in chosen]
    return chosen


def closest(name: str, names: Sequence[str], n: int = 3, cutoff: float = 0.5) -> list[str]:
    """The names most like ``name`` (difflib's ratio, ignoring case), best first, ties in the schema's order.

    >>> closest("lable", ["x", "label", "labels"])
    ['label', 'labels']
    """
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(name.lower())
    scored = []
    for index, candidate in enumerate(names):
        matcher.set_seq1(candidate.lower())
        if matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff and matcher.ratio() >= cutoff:
            scored.append((-matcher.ratio(), index, candidate))
    return [candidate for _, _, candidate in sorted(scored)[:n]]


def unknown_column(name: str, names: Sequence[str], what: str, where: str = "the data") -> DataError:
    """The error for a column name not in the data: the closest names, then the columns (never cut before
    those)."""
    near = closest(name, names)
    return DataError(f"the {what} column {name!r} is not in {where}{did_you_mean(name, names)} "
                     f"(columns: {column_list(names, near)})")


def did_you_mean(name: str, names: Sequence[str]) -> str:
    """``"; did you mean 'a', 'b'?"`` with the closest names, or ``""`` when none is close.

    >>> did_you_mean("lable", ["x", "label"]), did_you_mean("zzz", ["x"])
    ("; did you mean 'label'?", '')
    """
    near = closest(name, names)
    return f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""


def column_list(names: Sequence[str], near: Sequence[str] = (), limit: int = LISTED_COLUMNS) -> str:
    """The first ``limit`` names, and any of ``near`` beyond them, in the schema's order, with the count.

    >>> column_list([f"c{i}" for i in range(30)], near=["c25"], limit=3)
    'c0, c1, c2, ..., c25, ... (30 in all)'
    """
    if len(names) <= limit:
        return ", ".join(names)
    shown, last = [], -1
    for index, name in enumerate(names):
        if index < limit or name in near:
            if index != last + 1:
                shown.append("...")
            shown.append(name)
            last = index
    return ", ".join(shown) + f", ... ({len(names)} in all)"


def resolve_columns(schema: pa.Schema, target: str | None, features: Sequence[str] | None, first_file: str,
                     allow_string_target: bool, categorical: Sequence[str] = (), exclude: Sequence[str] = (),
                     allow_no_features: bool = False) -> tuple[list[str], dict[str, str], list[str]]:
    """(feature columns, columns not used with the reason, the categorical features).

    By default every column is a feature but the target and the ``exclude`` columns: numeric ones as numbers,
    text and dictionary ones as categoricals, and the ``categorical`` columns as categoricals whatever their type;
    a column that cannot be a feature (nested, binary, all null) is named with the reason. ``features``,
    ``categorical`` and ``exclude`` take names, globs and the selectors ``text`` / ``numeric``
    (``streamgd.data.columns``). ``allow_no_features``: ``features=[]`` is accepted (the features are elsewhere:
    an in-memory sparse matrix).
    """
    names = schema.names
    where = first_file
    named_out = list(exclude)
    exclude = expand_columns(named_out, schema, "excluded", where)
    if target is not None:
        if target not in names:
            raise unknown_column(target, names, "target", where)
        if target in named_out:
            raise ConfigError(f"the column {target!r} is named both as the target and as excluded")
        target_type = schema.field(target).type
        if not (is_numeric_type(target_type) or (allow_string_target and is_text_type(target_type))):
            raise DataError(f"the target column {target!r} in {first_file} is {why_not_a_feature(target_type)}; "
                            "a target must be numbers or labels")
    named_categorical = list(categorical)
    categorical = []
    for name in expand_columns(named_categorical, schema, "categorical", where):
        if name == target:
            if name in named_categorical:
                raise DataError(f"the column {name!r} cannot be both categorical and the target")
            continue  # a glob or selector passes over the target
        if name in exclude:
            if name in named_categorical and name in named_out:
                raise ConfigError(f"the column {name!r} is named both as categorical and as excluded")
            continue  # excluding wins over a glob or selector
        dtype = schema.field(name).type
        if not (is_text_type(dtype) or is_number_like(dtype)):
            if name in named_categorical:
                raise DataError(f"the categorical column {name!r} in {first_file} is {why_not_a_feature(dtype)}")
            continue
        categorical.append(name)
    if features is None:
        chosen, ignored = [], {}
        for f in schema:
            if f.name == target:
                ignored[f.name] = "the target"
            elif f.name in exclude:
                ignored[f.name] = "excluded"
            elif f.name in categorical or is_number_like(f.type) or is_text_type(f.type):
                chosen.append(f.name)
            else:
                ignored[f.name] = why_not_a_feature(f.type)
        if not chosen:
            raise DataError(f"{first_file} has no numeric or text column to use as a feature")
        return chosen, ignored, [n for n in chosen if n in categorical or is_text_type(schema.field(n).type)]
    given = list(features)
    if not given and not allow_no_features:
        raise DataError("the list of feature columns is empty")
    if len(set(given)) != len(given):
        raise DataError("a feature column is named twice")
    features = expand_columns(given, schema, "feature", where)
    features = [n for n in features if n != target or target in given]  # a selector or glob skips the target
    for name in features:
        if name == target:
            raise DataError(f"the column {name!r} cannot be both a feature and the target")
        if name in exclude:
            if name in given:
                raise ConfigError(f"the column {name!r} is named both as a feature and as excluded")
            continue
        dtype = schema.field(name).type
        if not (name in categorical or is_number_like(dtype) or is_text_type(dtype)) and name in given:
            raise DataError(f"the feature column {name!r} in {first_file} is {why_not_a_feature(dtype)}")
    usable = {f.name for f in schema if f.name in categorical or is_number_like(f.type) or is_text_type(f.type)}
    unusable = {n: why_not_a_feature(schema.field(n).type) for n in features if n not in usable}  # from a glob
    features = [n for n in features if n not in exclude and n in usable]
    features += [n for n in categorical if n not in features]  # a categorical column is a feature
    ignored = {f.name: "the target" if f.name == target else "excluded" if f.name in exclude else
               unusable.get(f.name, "not selected") for f in schema if f.name not in features}
    chosen_categorical = [n for n in features if n in categorical or is_text_type(schema.field(n).type)]
    return features, ignored, chosen_categorical
