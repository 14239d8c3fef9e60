"""Output paths, checked before any work is done: an output is never an input, never a device or a directory,
and its directory can be written to. A bad ``--out`` then costs a second, not a training run.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterable

from .errors import ConfigError

_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


def local_path(path: str | os.PathLike, what: str) -> str:
    """``path`` as a local path (``file://`` stripped); a remote URI (``s3://`` ...) is refused, not written to a
    local folder named after its scheme."""
    text = os.fspath(path)
    match = _URI.match(text)
    if match is None:
        return text
    if match.group("scheme").lower() == "file":
        return text[len("file://"):]
    raise ConfigError(f"{what} {text}: writing to {match.group('scheme')}:// is not supported yet; write to a "
                      "local path and copy it to the object store")


def check_output_file(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                      what: str = "the output") -> str:
    """Check that ``path`` can be written as a new or replaced regular file, and is none of ``inputs`` (after
    resolving links); return it as a local path. Raises ConfigError naming ``what`` otherwise."""
    local = local_path(path, what)
    if local == "" or local.endswith(os.sep):
        raise ConfigError(f"{what} {local!r} is not a file name")
    if os.path.lexists(local):
        status = os.stat(local) if os.path.exists(local) else None
        if status is not None and stat.S_ISDIR(status.st_mode):
            raise ConfigError(f"{what} {local} is a directory; give a file name")
        if status is not None and not stat.S_ISREG(status.st_mode):
            raise ConfigError(f"{what} {local} is not a regular file (a device, a pipe or a socket); refusing to "
                              "replace it")
        for source in inputs:
            if _same_file(local, source):
                raise ConfigError(f"{what} {local} is one of the inputs; writing it would destroy the input")
    _check_writable_directory(os.path.dirname(os.path.abspath(local)), what, local)
    return local


def check_output_dir(path: str | os.PathLike, what: str = "the output directory") -> str:
    """Check that ``path`` is (or can be made) a writable directory; return it as a local path."""
    local = local_path(path, what)
    if os.path.exists(local) and not os.path.isdir(local):
        raise ConfigError(f"{what} {local} exists and is not a directory")
    _check_writable_directory(os.path.abspath(local), what, local)
    return local


def check_distinct(paths: dict[str, str | None]) -> None:
    """Refuse two outputs that name the same file (``{"--out": path, "--history": path, ...}``)."""
    seen: dict[str, str] = {}
    for what, path in paths.items():
        if path is None:
            continue
        key = os.path.realpath(local_path(path, what))
        if key in seen:
            raise ConfigError(f"{seen[key]} and {what} name the same file {path}; give them different paths")
        seen[key] = what


def _same_file(a: str, b: str | os.PathLike) -> bool:
    b = os.fspath(b)
    if _URI.match(b) and not b.startswith("file://"):
        return False
    try:
        return os.path.samefile(a, b.removeprefix("file://"))
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _check_writable_directory(directory: str, what: str, shown: str) -> None:
    """The directory, or the nearest ancestor that exists (the writer creates the rest), takes a new file."""
    existing = directory
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise ConfigError(f"{what} {shown}: {existing} is a file, so nothing can be created under it")
    try:
        handle, probe = tempfile.mkstemp(prefix=".streamgd-probe-", dir=existing)
    except OSError as exc:
        raise ConfigError(f"{what} {shown}: cannot create files in {existing} ({exc.strerror})") from None
    os.close(handle)
    os.unlink(probe)
