"""The statistics pass's result kept in the epoch cache's directory (``stats/<key>.json``): a later run on the
same files and columns skips the pass. It belongs with the statistics (features sit above the data layer) and
is built on the cache's keys and temporary files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from ..data.cache import FORMAT_VERSION, digest, remove_quietly, source_identity, temporary_path
from ..data.dataset import Dataset
from ..version import __version__
from .stats import DatasetStats

STATS_DIR = "stats"  # inside the cache directory, beside ``units/``


def cached_statistics(directory: str, dataset: Dataset, columns: list[str], counted: list[str], max_categories: int,
                      compute: Callable[[], DatasetStats], treatments: dict | None = None) -> DatasetStats:
    """The statistics pass's result for these units and columns, from ``stats/<key>.json`` of the cache directory
    when an earlier run stored it (then no Parquet is read), else ``compute()``, stored for the next run.

    The key digests what the result depends on: the cache format and streamgd versions, every source file's
    identity (as the units' keys), the units, the columns, the categorical columns counted and the vocabulary's
    bound, and the numeric columns' transforms and bins when there are any. A file that cannot be read or parsed is a miss; a failed write only costs the next run the pass.
    """
    try:
        identities = [source_identity(path, dataset.filesystem) for path in dataset.sources]
    except OSError:
        return compute()
    key = digest([FORMAT_VERSION, __version__, identities, [str(v) for v in dataset.partition_values],
                   [(u.source, u.row_group, u.offset, u.n_rows) for u in dataset.units], list(columns),
                   sorted(counted), int(max_categories)]
                  + ([{name: t.to_json() for name, t in sorted(treatments.items())}] if treatments else []))[:40]
    path = os.path.join(directory, STATS_DIR, key + ".json")
    try:
        with open(path) as stream:
            stored = json.load(stream)
        if stored.get("format") == FORMAT_VERSION and stored.get("key") == key:
            return DatasetStats.from_json(stored["statistics"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    stats = compute()
    temporary = temporary_path(path)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w") as stream:
            json.dump({"format": FORMAT_VERSION, "streamgd": __version__, "key": key,
                       "statistics": stats.to_json()}, stream)
        os.replace(temporary, path)
    except OSError:
        remove_quietly(temporary)
    return stats

