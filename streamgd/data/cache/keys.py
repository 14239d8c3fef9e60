"""What names a unit in the epoch cache: a key that digests everything its cached arrays depend on, so a changed
file or setting is a new key, a miss, and stale arrays are never read.

A unit's key covers the cache format and streamgd versions, the source file's identity (path, size, modification
time in ns, a SHA-256 of its Parquet footer, a hash of its content (``streamgd.io.fingerprint``), partition values), the unit (row group, first row, rows), and the
run's transform (``cache_context``: input columns and their types, the FeatureSpec, the standardizer's mean and
scale, dtype, target and its encoding, extra columns).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from ...io.fingerprint import content_identity
from ...io.storage import is_remote, resolve, uri_of
from ...version import __version__
from ..dataset import Dataset, Unit

FORMAT_VERSION = 2  # 2: keys name sources by content; units checked by XXH64


def digest(value: Any) -> str:
    """A SHA-256 (hex) of a JSON-ready value, keys sorted, other objects by ``str``."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _arraydigest(array: np.ndarray | None) -> str | None:
    if array is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float64).tobytes()).hexdigest()


class CheckingEncoder:
    """Base of a target encoder that wraps another (``encoder``) and checks its values (``kind``: for what
    model), such as ``streamgd.features.targets.NonNegativeTarget``: the cache keys it by its type, its kind
    and its inner encoder."""

    encoder: Any
    kind: str


def describe_encoder(encoder: Any) -> Any:
    """What a target encoder does, as JSON-ready data (the classes of a label encoder, a function's name)."""
    if hasattr(encoder, "classes"):
        return {"type": type(encoder).__qualname__, "classes": [str(c) + ":" + type(c).__name__
                                                                for c in encoder.classes]}
    if isinstance(encoder, CheckingEncoder):
        return {"type": type(encoder).__qualname__, "inner": describe_encoder(encoder.encoder),
                "kind": getattr(encoder, "kind", None)}
    return f"{getattr(encoder, '__module__', '')}.{getattr(encoder, '__qualname__', type(encoder).__qualname__)}"


def cache_context(dataset: Dataset, dtype: Any, target: str | None, encoder: Any, spec: Any, standardizer: Any,
                  extra_columns: list[str], all_rows: bool = False) -> tuple[str, dict]:
    """(digest, summary) of everything besides the source and the unit that a unit's cached arrays depend on."""
    inputs = dataset.feature_names if spec is None else spec.input_columns
    columns = inputs + ([target] if target else []) + list(extra_columns)
    types = {name: str(dataset.schema.field(name).type) for name in columns if name in dataset.schema.names}
    context = {"format": FORMAT_VERSION, "streamgd": __version__, "dtype": str(np.dtype(dtype)), "inputs": inputs,
               "types": types, "target": target, "encoder": describe_encoder(encoder) if target else None,
               "spec": spec.to_dict() if spec is not None else None,
               "standardize": None if standardizer is None else [_arraydigest(standardizer.mean),
                                                                 _arraydigest(standardizer.scale)],
               "extra": list(extra_columns), "all_rows": bool(all_rows)}
    summary = {"dtype": context["dtype"], "target": target, "inputs": len(inputs),
               "spec": "none" if spec is None else f"{spec.encoding}, missing {spec.missing}",
               "standardized": standardizer is not None, "extra": list(extra_columns)}
    return digest(context), summary



def unit_key(context: str, source: dict, unit: Unit) -> str:
    """The key of a unit's entry: the format and version, the transform ``context`` (``cache_context``), the source
    file's identity (``source_identity``) and the unit's place in it."""
    return digest([FORMAT_VERSION, __version__, context, source, unit.row_group, unit.offset, unit.n_rows])[:40]


def source_identity(path: str, filesystem: Any = None) -> dict:
    """Path (a URI for an object in a store), size, modification time (ns), a SHA-256 of the Parquet footer and a
    hash of the content (``streamgd.io.fingerprint``; an object's ETag too) of a data file."""
    if filesystem is None and is_remote(path):
        location = resolve(path)  # a source recorded by URI, inspected later (credentials from the environment)
        path, filesystem = location.path, location.filesystem
    identity = content_identity(path, filesystem)
    return {"path": os.path.abspath(path) if filesystem is None else uri_of(filesystem, path), **identity}


IDENTITY_FIELDS = ("size", "mtime_ns", "footer_sha256", "content", "etag")


def source_state(path: str, recorded: dict) -> str:
    """Whether a source file still is what a cache entry recorded: "current", "stale: ..." or "the file is gone"."""
    try:
        now = source_identity(path)
    except (OSError, ValueError):
        return "the file is gone"
    if all(now.get(k) == recorded.get(k) for k in IDENTITY_FIELDS):
        return "current"
    changed = [k for k in IDENTITY_FIELDS if now.get(k) != recorded.get(k)]
    return f"stale: the file changed since ({', '.join(changed)}): these units are misses"
