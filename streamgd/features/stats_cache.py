"""The statistics pass's result kept in the epoch cache's directory (``stats/<key>.json``): a later run on the
same files and columns skips the pass. It belongs with the statistics (features sit above the data layer) and
is built on the cache's keys and temporary files."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable

from ..data.cache import (
    FORMAT_VERSION,
    CacheWarning,
    digest,
    remove_quietly,
    source_identity,
    temporary_path,
)
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
    bound, and the numeric columns' transforms and bins when there are any. A file that cannot be read is a
    miss; one whose checksum (BLAKE2b) or values are wrong is said with one warning and computed again; a failed
    write only costs the next run the pass.
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
    stored = _read_stored(path, key, columns)
    if stored is not None:
        return stored
    stats = compute()
    temporary = temporary_path(path)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        statistics = stats.to_json()
        with open(temporary, "w") as stream:
            json.dump({"format": FORMAT_VERSION, "streamgd": __version__, "key": key, "statistics": statistics,
                       "checksum": _checksum(statistics)}, stream)
        os.replace(temporary, path)
    except OSError:
        remove_quietly(temporary)
    return stats


def _checksum(statistics: dict) -> str:
    """A BLAKE2b of the statistics' JSON text (keys sorted: the same text for the same values)."""
    text = json.dumps(statistics, sort_keys=True, separators=(",", ":"))
    return "blake2b:" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _read_stored(path: str, key: str, columns: list[str]) -> DatasetStats | None:
    """The statistics stored at ``path``, or None: none there, or (said with one warning, then rebuilt) a file
    whose checksum or values are wrong."""
    try:
        with open(path) as stream:
            stored = json.load(stream)
    except OSError:
        return None
    except ValueError:
        return _damaged(path, "not JSON")
    if not isinstance(stored, dict) or stored.get("format") != FORMAT_VERSION or stored.get("key") != key:
        return _damaged(path, "of another format")
    statistics = stored.get("statistics")
    if not isinstance(statistics, dict) or stored.get("checksum") != _checksum(statistics):
        return _damaged(path, "its checksum does not match")
    try:
        stats = DatasetStats.from_json(statistics)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return _damaged(path, f"unreadable: {type(exc).__name__}")
    problem = implausible(stats, columns)
    return _damaged(path, problem) if problem else stats


def implausible(stats: DatasetStats, columns: list[str]) -> str | None:
    """What makes stored statistics impossible (a negative variance or count, counts beyond the rows, a mean
    outside [min, max], a missing column), or None."""
    if stats.rows < 0:
        return f"{stats.rows} rows"
    for name in columns:
        if name not in stats.columns:
            return f"no statistics of column {name!r}"
    for name, c in stats.columns.items():
        if min(c.count, c.missing, c.infinite) < 0 or c.count + c.missing + c.infinite > stats.rows:
            return f"column {name!r} has impossible counts"
        if not c.count:
            continue
        ranged = math.isfinite(c.min) and math.isfinite(c.max)  # a categorical column has no value range
        slack = 1e-9 * (abs(c.min) + abs(c.max)) if ranged else 0.0
        if not (math.isfinite(c.mean) and math.isfinite(c.var) and c.var >= 0 and math.isfinite(c.m3)
                and (not ranged or c.min - slack <= c.mean <= c.max + slack)):
            return f"column {name!r} has impossible moments (mean {c.mean}, var {c.var})"
    return None


def _damaged(path: str, reason: str) -> None:
    warnings.warn(f"the stored statistics {path} are damaged ({reason}); computing them again", CacheWarning,
                  stacklevel=4)
    remove_quietly(path)
