"""Where Numba keeps the compiled kernels: a per-user cache directory, never inside the installed package.

A cache inside the package (Numba's default, ``__pycache__`` beside each module) outlives the package: ``pip
install -e .`` after ``pip install .`` removes ``site-packages/streamgd`` but not the cache folder left in it,
which then shadows the editable install as an empty namespace package. ``NUMBA_CACHE_DIR``, when set, is honoured.
"""

from __future__ import annotations

import os
import sys


def user_cache_dir() -> str:
    """``$XDG_CACHE_HOME/streamgd/numba`` (``~/.cache/streamgd/numba`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "streamgd", "numba")


def use_user_cache_dir() -> str:
    """Point Numba's cache at the user's cache directory unless ``NUMBA_CACHE_DIR`` names one; return it.

    Call before any ``@njit(cache=True)`` function is defined: Numba reads the setting when a function's cache
    is created.
    """
    directory = os.environ.get("NUMBA_CACHE_DIR") or user_cache_dir()
    os.environ["NUMBA_CACHE_DIR"] = directory
    numba = sys.modules.get("numba")
    if numba is not None:  # imported before streamgd: its configuration was read already
        numba.config.CACHE_DIR = directory
    return directory
