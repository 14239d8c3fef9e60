"""streamgd's files on disk (models and checkpoints): one safetensors file each, arrays as tensors and a JSON
header under the ``streamgd`` key, with a format name and version; written atomically, read without pickle.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .errors import ModelFileError
from .fileio import atomic_write


def write_tensor_file(path: str | os.PathLike, tensors: dict[str, np.ndarray], file_format: str, version: int,
                      meta: dict, what: str) -> None:
    """Write ``tensors`` and the JSON ``meta`` as one safetensors file, atomically (``what``: "a model file", for
    the error a value that JSON cannot hold raises)."""
    from safetensors.numpy import save_file

    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        raise TypeError(f"cannot store a {type(value).__name__} in {what}")

    header = {"format": file_format, "format_version": str(version), "streamgd": json.dumps(meta, default=plain)}
    contiguous = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    atomic_write(path, lambda temporary: save_file(contiguous, temporary, metadata=header))


def read_tensor_file(path: str | os.PathLike, file_format: str, version: int, what: str
                     ) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON header and the tensors of a file written by ``write_tensor_file`` in ``file_format`` (version
    ``version`` or older); anything else raises ModelFileError naming ``what`` ("streamgd model file", ...)."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    try:
        with safe_open(path, framework="numpy") as handle:
            header = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()
        raise ModelFileError(f"{path} is not a {what} (not a readable safetensors file: "
                             f"{reason[0] if reason else type(exc).__name__})") from None
    if header.get("format") != file_format:
        raise ModelFileError(f"{path} is a safetensors file but not a {what}")
    try:
        found = int(header.get("format_version", ""))
    except ValueError:
        raise ModelFileError(f"{path} has an unreadable format version") from None
    if found > version:
        raise ModelFileError(f"{path} was written by a newer streamgd (format {found}; this one reads {version} "
                             "and older): upgrade streamgd")
    try:
        return json.loads(header["streamgd"]), tensors
    except (KeyError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} is a damaged {what} ({type(exc).__name__}: {exc})") from None
