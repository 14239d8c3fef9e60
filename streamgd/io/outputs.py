"""Output paths, checked before any work is done: an output is never an input, never a device or a directory,
never another output of the same run, and its directory can be written to; a directory that a command replaces
whole holds nothing but what it writes. A bad ``--out`` then costs a second, not a training run.

An output may be an object in a store (``s3://bucket/key``): then the bucket must exist and take a probe object
with the credentials given (``streamgd.io.storage.check_writable``).
"""

from __future__ import annotations

import fnmatch
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError
from .storage import Location, check_writable, is_remote, resolve, scheme_of

PART_FILES = "part-*.parquet"  # what a directory output (predictions by workers, make-data --files) holds


def local_path(path: str | os.PathLike, what: str) -> str:
    """``path`` as a local path (``file://`` stripped), for what must be on the local disk (the epoch cache, which
    is memory-mapped); a remote URI (``s3://`` ...) is refused, not written to a local folder named after it."""
    text = os.fspath(path)
    if is_remote(text):
        raise ConfigError(f"{what} {text}: must be on the local disk (it is memory-mapped); the data it caches may "
                          f"be read from {scheme_of(text)}://")
    return resolve(text).path


def check_output_file(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                      what: str = "the output", storage_options: Mapping[str, Any] | None = None) -> str:
    """Check that ``path`` can be written as a new or replaced regular file, and is none of ``inputs`` (after
    resolving links); return it as a local path, or as given for an object in a store. Raises ConfigError (or
    StorageError) naming ``what`` otherwise."""
    location = resolve(path, storage_options)
    if not location.is_local:
        check_object_name(location.uri, what)
        for source in inputs:
            if _object_key(location.uri) == _object_key(source):
                raise ConfigError(f"{what} {location.uri} is one of the inputs; writing it would destroy the input")
        check_writable(location, what)
        return location.uri
    local = location.path
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
    check_writable_directory(os.path.dirname(os.path.abspath(local)), what, local)
    return local


def check_output_dir(path: str | os.PathLike, what: str = "the output directory",
                     storage_options: Mapping[str, Any] | None = None, replaced: str | None = None) -> str:
    """Check that ``path`` is (or can be made) a writable directory, or a prefix in a bucket that takes objects;
    return it as a local path, or as given for a store. ``replaced``: the pattern of the files a run writes
    there (``PART_FILES``) when it replaces the directory whole (``streamgd.io.atomic.replaced_directory``):
    a local directory holding anything else is refused, since replacing it would delete that."""
    location = resolve(path, storage_options)
    if not location.is_local:
        check_object_name(location.uri, what)
        check_writable(location, what, directory=True)
        return location.uri
    local = location.path
    if os.path.exists(local) and not os.path.isdir(local):
        raise ConfigError(f"{what} {local} exists and is not a directory")
    if replaced is not None and os.path.isdir(local):
        others = sorted(e.name for e in os.scandir(local) if not (e.is_file() and fnmatch.fnmatch(e.name, replaced)))
        if others:
            raise ConfigError(f"{what} {local} holds {plural_files(others)} that this command did not write "
                              f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); the directory is "
                              "replaced whole, so give an empty or new one")
    check_writable_directory(os.path.abspath(local), what, local)
    return local


def plural_files(names: list[str]) -> str:
    return "1 file" if len(names) == 1 else f"{len(names)} files"


def check_object_name(uri: str, what: str) -> None:
    """A key in a store with an empty part (``s3://bucket//key``, ``s3://bucket/a//b``) names no object a
    listing finds again: refused before any work."""
    inner = uri.split("://", 1)[1].rstrip("/")
    if "" in inner.split("/"):
        fixed = f"{uri.split('://', 1)[0]}://{'/'.join(part for part in inner.split('/') if part)}"
        raise ConfigError(f"{what} {uri} has an empty part between slashes; write {fixed}")


def check_run_outputs(files: dict[str, str | None], directories: dict[str, str | None],
                      inputs: Iterable[str | os.PathLike] = ()) -> None:
    """The outputs of one run (``{"--out": path, "--history": path}``, ``{"--checkpoint-dir": path, "--cache":
    path}``) before it starts: no two name the same path, no file output lies where a directory output is
    (or above one), and no directory output holds an input. One ConfigError naming both options otherwise."""
    named = [(what, _object_key(path), path) for what, path in [*files.items(), *directories.items()]
             if path is not None]
    for i, (what, key, path) in enumerate(named):
        for other, other_key, _ in named[:i]:
            if key == other_key:
                raise ConfigError(f"{other} and {what} name the same file or directory {path}; give them "
                                  "different paths")
    for what, path in directories.items():
        if path is None:
            continue
        for other, file in files.items():
            if file is not None and holds_any(file, [path]):
                raise ConfigError(f"{other} {file} is where {what} {path} creates a directory; give them "
                                  "different paths")
        inside = [source for source in inputs if holds_any(path, [source])]
        if inside:
            raise ConfigError(f"{what} {path} holds the input {inside[0]}; give a directory of its own")


def holds_any(directory: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> bool:
    """True when one of ``paths`` lies inside ``directory`` (a local directory or a prefix in a store)."""
    inside = _object_key(directory).rstrip("/") + ("/" if is_remote(os.fspath(directory)) else os.sep)
    return any(_object_key(path).startswith(inside) for path in paths)


def _same_file(a: str, b: str | os.PathLike) -> bool:
    if is_remote(os.fspath(b)):
        return False
    b = resolve(b).path
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _object_key(path: str | os.PathLike | Location) -> str:
    """What two names of one file share: the real path of a local file, ``scheme://bucket/key`` of an object."""
    text = path.uri if isinstance(path, Location) else os.fspath(path)
    if is_remote(text):
        scheme = {"s3a": "s3", "gcs": "gs"}.get(scheme_of(text), scheme_of(text))
        return f"{scheme}://{text.split('://', 1)[1].strip('/')}"
    return os.path.realpath(resolve(text).path)


def check_writable_directory(directory: str, what: str, shown: str) -> None:
    """The directory, or the nearest ancestor that exists (the writer creates the rest), takes a new file: a probe
    file is created and removed, since permission bits do not tell (ACLs, read-only mounts). ConfigError
    naming ``what`` and ``shown`` otherwise."""
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
