"""Allocator settings for streamgd's own processes (the command line): memory kept by allocators is most of
what a streamed run holds beyond its chunks. A library does not change its host's allocators, so the Python API
leaves them alone; the README says how to choose the same from Python.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import pyarrow as pa

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
BUDGET_MMAP_THRESHOLD = 4 << 20


def prefer_jemalloc() -> bool:
    """Make jemalloc pyarrow's allocator in this process unless ``ARROW_DEFAULT_MEMORY_POOL`` names one; True if
    switched. Measured (``streamgd fit`` on 4M rows x 32 float32, row groups of 65,536, --memory-budget 64MB):
    peak RSS 73 MiB over the zero-rows run with jemalloc, 103-113 MiB with mimalloc (pyarrow's default, which
    keeps the pages of freed row groups), at the same throughput."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return False
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without jemalloc
        return False
    return True


def map_large_arrays_directly(threshold: int = BUDGET_MMAP_THRESHOLD) -> bool:
    """Have glibc's malloc give arrays of ``threshold`` bytes or more their own pages, returned to the system when
    freed, instead of recycling them in its heaps (its default raises the threshold to the largest block freed, so
    chunk-sized NumPy arrays then fragment the heaps of the reader and training threads). Used under a memory
    budget: measured with ``streamgd fit --memory-budget 64MB`` on 1M-16M rows x 32 float32, peak RSS 336-353 MB
    instead of 402-435 MB (and 267 MB instead of 330 MB with zero rows), for 20-35% less throughput (page faults
    on every new chunk). False where the C library has no ``mallopt`` (not glibc)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False
