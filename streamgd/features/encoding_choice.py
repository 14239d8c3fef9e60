"""Which categorical columns are one-hot encoded and which are hashed, when the run does not say (``encoding``
``auto``, the default).

The rule: a categorical column is **one-hot** when the first rows of the data (the first units, up to
``SAMPLE_ROWS`` rows) hold at most ``onehot_limit(max_categories)`` distinct values (a tenth of
``max_categories``: 100 by default), and **hashed** into the shared ``2^hash_bits`` buckets otherwise. A few
values get slots of their own, named ``C6=abc`` in ``inspect``, and the statistics pass counts them cheaply; a
column with many values (ids, tokens) is hashed, so no value is lumped into ``__other__`` and the statistics pass
does not count it. The tenfold margin leaves room for values the first rows did not show: the one-hot vocabulary
itself comes from the whole pass (up to ``max_categories`` values, the rest ``__other__``).

``encoding="onehot"`` or ``"hash"`` (the CLI's ``--hash-bits``) chooses for every column, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..data.dataset import Dataset
from ..data.dictionary_slots import dictionary_columns
from ..data.unit_reader import UnitTableReader
from ..errors import ConfigError
from .spec import ENCODINGS
from .stats import category_strings

AUTO = "auto"
ENCODING_CHOICES = (AUTO, *ENCODINGS)
SAMPLE_ROWS = 65_536  # rows read (whole units) to count each categorical column's distinct values
ONEHOT_SHARE = 10  # one-hot when the sample's distinct values are at most max_categories / ONEHOT_SHARE


def onehot_limit(max_categories: int) -> int:
    """The most distinct values a sampled column may show and still be one-hot encoded under ``auto``.

    >>> onehot_limit(1000), onehot_limit(5)
    (100, 1)
    """
    return max(1, int(max_categories) // ONEHOT_SHARE)


def choose_encodings(dataset: Dataset, categorical: Sequence[str], encoding: str = AUTO,
                     max_categories: int = 1000) -> dict[str, str]:
    """Each categorical column's encoding, ``onehot`` or ``hash``: ``encoding`` for all, or under ``auto`` the
    rule of the module docstring (one read of the first units' categorical columns)."""
    if encoding not in ENCODING_CHOICES:
        raise ConfigError(f"encoding={encoding!r} is not accepted; expected one of {', '.join(ENCODING_CHOICES)}")
    if encoding != AUTO or not categorical:
        return {name: encoding if encoding != AUTO else "onehot" for name in categorical}
    distinct = sample_distinct(dataset, categorical)
    limit = onehot_limit(max_categories)
    return {name: "onehot" if distinct[name] <= limit else "hash" for name in categorical}


def sample_distinct(dataset: Dataset, columns: Sequence[str], rows: int = SAMPLE_ROWS) -> dict[str, int]:
    """Distinct non-null values of each column in the dataset's first units (at least one, about ``rows``). Text
    columns are read as Parquet dictionaries: each chunk's distinct values are found among its indices, and only
    those are decoded to strings."""
    text = dictionary_columns(dataset.schema, columns, [dataset.target] if dataset.target else [])
    reader = UnitTableReader(dataset, list(columns), dictionary_columns=text)
    uniques: dict[str, list[pa.Array]] = {name: [] for name in columns}
    seen = 0
    try:
        for unit in dataset.units:
            table = reader.read(unit)
            for name in columns:
                uniques[name].extend(pc.unique(category_strings(pa.chunked_array([pc.unique(chunk)])))
                                     .cast(pa.large_string()) for chunk in table.column(name).chunks)
            seen += table.num_rows
            if seen >= rows:
                break
    finally:
        reader.close()
    return {name: pc.count_distinct(pa.chunked_array(parts, type=pa.large_string()), mode="only_valid").as_py()
            for name, parts in uniques.items()}
