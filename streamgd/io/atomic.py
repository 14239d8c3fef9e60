"""Atomic writes: a file is written to a temporary file beside the target, flushed, fsynced and renamed over it;
a directory of files (prediction parts, make-data's parts) is written to a temporary directory beside the target
and swapped in whole.

A reader never sees a half-written model or checkpoint, nor a directory mixing an earlier run's files with this
one's; a crash leaves the old file or directory (or none) in place.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)``, then fsync it and rename it to ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=directory)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, _file_mode(path))  # mkstemp makes 0600; the file gets what open() would give it
        with open(temporary, "rb+") as stream:
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _file_mode(path: str) -> int:
    """The mode a file written in place would have: the existing file's, else 0666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process's umask, read without changing it (Linux), else by setting and restoring it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:  # pragma: no cover - not Linux
        pass
    mask = os.umask(0o022)  # pragma: no cover
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


@contextlib.contextmanager
def replaced_directory(path: str | os.PathLike) -> Iterator[str]:
    """Yield a new empty directory beside ``path`` to write into; when the block ends without an error, it takes
    ``path``'s place whole (its files fsynced; an old directory there is deleted), else it is deleted and
    ``path`` is left as it was. The caller checks first that the old directory holds nothing but its own files
    (``streamgd.io.outputs.check_output_dir``)."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=parent)
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~current_umask())  # mkdtemp makes 0700
        for entry in os.scandir(temporary):
            with open(entry.path, "rb") as stream:
                os.fsync(stream.fileno())
        if os.path.isdir(path):
            _exchange(temporary, path)  # now ``temporary`` holds the old files
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            os.replace(temporary, path)
        _fsync_directory(parent)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _exchange(a: str, b: str) -> None:
    """Swap two directories: atomically where the kernel can (Linux ``renameat2(RENAME_EXCHANGE)``), else by
    two renames (a crash between them leaves both beside the target, under hidden names)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if hasattr(libc, "renameat2"):
        at_cwd, rename_exchange = -100, 2
        if libc.renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), rename_exchange) == 0:
            return
    old = tempfile.mkdtemp(prefix=".old-" + os.path.basename(b) + "-", dir=os.path.dirname(b))
    os.rmdir(old)
    os.rename(b, old)
    os.rename(a, b)
    os.rename(old, a)


def _fsync_directory(directory: str) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
