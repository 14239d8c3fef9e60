"""The one way streamgd compiles: the decorator every ``@njit`` of the package uses, its flags, its disk cache and
the scope of its compiles.

A library must not change its host process, so nothing here sets an environment variable, Numba's
configuration or another package's module for longer than streamgd's own compile:

- **Cache.** Each function gets a disk cache of its own whose locator points at ``$XDG_CACHE_HOME/streamgd/numba``
  (``~/.cache/streamgd/numba``), never inside the installed package (a cache there outlives a reinstall and
  shadows an editable install as an empty namespace package). ``NUMBA_CACHE_DIR`` (Numba's
  ``config.CACHE_DIR``), when the user sets it, wins, as it does for any Numba function. Other packages'
  functions keep Numba's own locators.
- **Freshness.** Numba's cache deems a compiled function fresh while its own source file is unchanged, but a
  compiled loop links in the compiled functions it calls: the loops of ``sparse.py`` carry ``factors.py``'s and
  ``pieces.py``'s code, and would run it stale after an edit of those files. So the stamp a streamgd function's
  cache index records (``SourceTreeStamp``) is Numba's stamp of its file plus a digest of every module under
  ``streamgd/kernels`` and under the function's own subpackage (``streamgd/data``, ``streamgd/features``, ...):
  an edit of any of them makes the next process compile afresh. Compiled code calls compiled code only within
  the kernels or its own subpackage, so no other edit can leave it stale. The digests are read once per process
  (a few hundred kB). A stale index is overwritten in place, in the same directory, and its numbered data files
  are reused from the first, as Numba does for an edited file: no directory is added per source version, so
  none piles up.
- **Compile scope.** A dispatcher compiles lazily, on the first call with new argument types; ``compile_scope``
  wraps exactly that compile (the dispatcher's ``_compile_for_args`` hook), holding Numba's compiler lock, and
  within it applies the inliner patch (``streamgd.kernels.numba_inline``) and listens for the compile notice.
  Calls that find their signature compiled go straight to Numba's C dispatch, untouched.
- **No runtime.** The kernels run without the Numba runtime (NRT): an array view or argument then costs no atomic
  reference count, which SGD at batch size 1 spends much of its time on otherwise (``scripts/bench_kernel.py``),
  and nothing can be allocated. ``_nrt`` is a private Numba option: where a Numba refuses it, the kernels are
  built with the default flags (correct, only slower) after one ``NumbaFlagWarning``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numba
from numba.core import caching, compiler, compiler_lock, config, cpu, event

from . import numba_inline

# fastmath for every compiled kernel, never nnan/ninf: the divergence and bad-data guards rely on NaN and inf
# surviving the arithmetic
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


class NumbaFlagWarning(RuntimeWarning):
    """The installed Numba refuses a compiler option the kernels ask for; they compile without it."""


def cache_dir() -> str:
    """Where streamgd's compiled functions are cached: ``NUMBA_CACHE_DIR`` if the user set it, else
    ``$XDG_CACHE_HOME/streamgd/numba`` (``~/.cache/streamgd/numba`` when unset)."""
    if config.CACHE_DIR:
        return config.CACHE_DIR
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "streamgd", "numba")


KERNELS_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.dirname(KERNELS_DIR)


@functools.cache
def source_digest(folder: str) -> bytes:
    """sha256 of the relative path and bytes of every ``.py`` file under ``folder``, in a fixed order; read once
    per process and folder."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(name for name in dirs if name != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, folder).encode() + b"\0")
                with open(path, "rb") as source:
                    digest.update(source.read())
                digest.update(b"\0")
    return digest.digest()


def source_folders(py_file: str) -> tuple[str, ...]:
    """The folders whose sources a compiled function of ``py_file`` may link in: ``streamgd/kernels`` and the
    function's own subpackage; none for a file outside streamgd."""
    relative = os.path.relpath(os.path.abspath(py_file), PACKAGE_DIR)
    if relative.startswith(os.pardir):
        return ()
    top = relative.split(os.sep)[0]
    if top == relative or top == "kernels":  # a top-level module (no compiled code of its own), or the kernels
        return (KERNELS_DIR,)
    return (KERNELS_DIR, os.path.join(PACKAGE_DIR, top))


class SourceTreeStamp:
    """A locator mixin: the stamp of a function's cache index is Numba's stamp of its file plus the digests of
    ``source_folders`` (see the module docstring, "Freshness")."""

    def get_source_stamp(self) -> Any:
        own = super().get_source_stamp()  # type: ignore[misc]
        folders = source_folders(getattr(self, "_py_file", "") or "")
        return (own, *(source_digest(folder) for folder in folders)) if folders else own


class StreamgdCacheLocator(SourceTreeStamp, caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Numba's cache locator for a streamgd source file: a folder per source folder under ``cache_dir()``."""

    def __init__(self, py_func: Callable, py_file: str) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(cache_dir(), self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self) -> str:
        return self._cache_path


def stamped(locator: type) -> type:
    """``locator`` (one of Numba's) with the stamp of ``SourceTreeStamp``."""
    return type(f"Stamped{locator.__name__}", (SourceTreeStamp, locator), {})


class StreamgdCacheImpl(caching.CompileResultCacheImpl):
    # the user's NUMBA_CACHE_DIR first (Numba's own locator for it), then streamgd's folder, then Numba's others;
    # every one records the stamp of SourceTreeStamp
    _locator_classes = [stamped(caching.UserProvidedCacheLocator), StreamgdCacheLocator,
                        *[stamped(cls) for cls in caching.CompileResultCacheImpl._locator_classes
                          if cls is not caching.UserProvidedCacheLocator]]


class StreamgdFunctionCache(caching.FunctionCache):
    """Numba's function cache, located by ``StreamgdCacheLocator``."""

    _impl_class = StreamgdCacheImpl


# ---- the compile notice ------------------------------------------------------------------------------------------
_labels: dict[int, str] = {}  # id(dispatcher) -> what its compile notice names
_announced: set[str] = set()  # labels announced in this process


def announce_as(dispatcher: Any, label: str) -> None:
    """Name ``dispatcher`` in the compile notice: its first compile (not a load from the cache) in a process
    prints ``compiling kernels for <label> (first run only)`` on stderr."""
    _labels[id(dispatcher)] = label


class CompileNotice(event.Listener):
    """One line on stderr when a labelled dispatcher compiles (a cache miss), never when it loads from the cache."""

    def on_start(self, event: event.Event) -> None:
        label = _labels.get(id(event.data["dispatcher"]))
        if label is not None and label not in _announced:
            _announced.add(label)
            sys.stderr.write(f"compiling kernels for {label} (first run only)\n")
            sys.stderr.flush()

    def on_end(self, event: event.Event) -> None:
        pass


_NOTICE = CompileNotice()
_depth = 0  # compile scopes open (in the thread that holds the compiler lock)


@contextlib.contextmanager
def compile_scope() -> Iterator[None]:
    """Streamgd's compiles run within this: the compiler lock held, the inliner patch applied, the compile notice
    listening; all undone on exit. Nested scopes (a compile that compiles a callee) share the outermost."""
    global _depth
    with compiler_lock.global_compiler_lock:
        if _depth:
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        _depth = 1
        try:
            with numba_inline.patched(), event.install_listener("numba:compile", _NOTICE):
                yield
        finally:
            _depth = 0


def _scoped(dispatcher: Any) -> Any:
    """Give ``dispatcher`` streamgd's cache and run its lazy compiles within ``compile_scope``."""
    if not hasattr(dispatcher, "py_func"):  # NUMBA_DISABLE_JIT=1: njit returned the plain Python function
        return dispatcher
    dispatcher._cache = StreamgdFunctionCache(dispatcher.py_func)
    compile_for_args = dispatcher._compile_for_args

    def compile_in_scope(*args: Any, **kwargs: Any) -> Any:
        with compile_scope():
            return compile_for_args(*args, **kwargs)

    dispatcher._compile_for_args = compile_in_scope  # Numba's C dispatch calls this attribute on a miss
    return dispatcher


def accepted_options(options: dict) -> dict:
    """``options`` without the private ones the installed Numba refuses (after one warning)."""
    try:
        cpu.CPUTargetOptions.parse_as_flags(compiler.Flags(), {k: v for k, v in options.items() if k != "cache"})
        return options
    except Exception as refused:  # noqa: BLE001 - any refusal: the options are only an optimisation
        private = {k: v for k, v in options.items() if not k.startswith("_")}
        warnings.warn(f"streamgd: this Numba refuses the kernels' compiler options ({refused}); they compile "
                      f"without {sorted(set(options) - set(private))}, correct but slower", NumbaFlagWarning,
                      stacklevel=3)
        return private


def njit(**options: Any) -> Callable[[Callable], Any]:
    """``numba.njit(**options)`` with streamgd's disk cache and compile scope: the decorator of every compiled
    function in the package."""
    options = accepted_options(options)

    def decorate(function: Callable) -> Any:
        return _scoped(numba.njit(**options)(function))

    return decorate


NO_RUNTIME = accepted_options({"_nrt": False})
# The chunk loops and the pieces that are compiled functions of their own.
compiled = njit(nogil=True, fastmath=FASTMATH, error_model="numpy", **NO_RUNTIME)
# Pieces inlined into the Numba IR of each specialised loop (see streamgd.kernels.pieces).
inlined = njit(nogil=True, fastmath=FASTMATH, inline="always")


# ---- the first call of a process ---------------------------------------------------------------------------------
@compiled
def _first_call(x):  # pragma: no cover - compiled
    return x + 1


def _call_once() -> None:
    try:
        _first_call(1)
    except Exception:  # noqa: BLE001 - only a head start: the kernel that needs Numba meets any error itself
        pass


def warm_up() -> threading.Thread:
    """Start Numba's once-per-process set-up on a daemon thread and return it: the first call of any compiled
    function in a process, even one loaded from the cache, loads Numba's lowering registries (and with them scipy's
    BLAS), and that lands in whichever kernel runs first. The command that calls this goes on with work that
    releases the GIL (opening and reading Parquet); its first kernel waits for the set-up on Numba's compiler lock.
    Nothing of Numba's is changed: a small cached function is called (``scripts/bench_startup.py --fit``)."""
    thread = threading.Thread(target=_call_once, name="streamgd-numba-warm-up", daemon=True)
    thread.start()
    return thread
