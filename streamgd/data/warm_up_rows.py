"""Two rows that load a FeatureSpec's compiled loops before the first chunk needs them (issue 29's fill).

A process's first call of each compiled loop loads it from Numba's cache. The prefetch thread would pay that
inside the pipeline's fill, after decoding the first row group; the consuming thread, idle while that row group is
decoded, featurises two rows of the same column types instead (``scripts/bench_ctr.py`` reports the fill,
benchmarks/README.md "The pipeline's fill"). The rows are built from Arrow buffers: ``pa.array`` of Python values
imports pandas (``tests/test_startup_imports.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from .arrow_numpy import from_numpy, strings
from .dataset import Dataset, Unit


def sample_rows(schema: pa.Schema, columns: list[str], nulls: dict[str, bool],
                dictionaries: set[str]) -> pa.Table:
    """Two rows of ``columns`` at their ``schema`` types (``dictionaries``: dictionary-encoded, as a reader with
    ``read_dictionary`` gives them): a zero (text "0", false) and then, where ``nulls`` says so (a column not in
    it: yes), a null."""
    arrays = []
    for name in columns:  # built from buffers: pa.array of Python values imports pandas (tests/test_startup_imports.py)
        kind = schema.field(name).type
        missing = np.array([False, nulls.get(name, True)])
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            array = strings(["0", "0"], kind, missing)
        elif pa.types.is_boolean(kind):
            array = from_numpy(np.zeros(2, dtype=np.bool_), missing)
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
            array = from_numpy(np.zeros(2, dtype=np.int8), missing).cast(kind)
        elif pa.types.is_decimal(kind):  # a float's cast checks the value against the precision, an int's its type
            array = from_numpy(np.zeros(2), missing).cast(kind)
        else:
            array = pa.nulls(2, kind)
        arrays.append(array.dictionary_encode() if name in dictionaries else array)
    return pa.table(arrays, names=columns)


def load_featurizing_code(dataset: Dataset, unit: Unit, features: Any, dictionaries: set[str], dtype: Any,
                          transform: Callable[[np.ndarray], Any] | None) -> None:
    """Featurise (and transform) two rows of ``unit``'s column types (``dictionaries``: the columns read as
    dictionaries), so that the loops ``features.to_blocks`` runs are loaded here. A row is null in a column where
    the unit's footer counts nulls: a null-free column's arrays have other types, and so other loops. Only a head
    start: if the rows cannot be made or featurised, the reader's own first call loads the loops and reports any
    error."""
    footer = dataset.footers.get(unit.source)
    if footer is None:
        return
    try:
        group = footer.row_group(unit.row_group)
        nulls = {}
        for i in range(group.num_columns):
            stats = group.column(i).statistics
            nulls[group.column(i).path_in_schema] = stats is None or not stats.has_null_count \
                or stats.null_count > 0
        X = features.to_blocks(sample_rows(dataset.schema, features.input_columns, nulls, dictionaries), None,
                               dtype)[0]
        if transform is not None:
            transform(X)
    except Exception:  # noqa: BLE001 - a head start only (see above): the reader's own call reports any error
        pass
