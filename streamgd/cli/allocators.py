"""Allocator settings for streamgd's own processes (the command line): memory kept by allocators is most of
what a streamed run holds beyond its chunks. A library does not change its host's allocators, so the Python API
leaves them alone; the README says how to choose the same from Python.

pyarrow is imported inside the functions: ``arrow_jemalloc_by_default`` must run before pyarrow is loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
BUDGET_MMAP_THRESHOLD = 4 << 20


def arrow_jemalloc_by_default() -> bool:
    """Make jemalloc Arrow's C++ default allocator for this process and the processes it starts (dask workers),
    unless ``ARROW_DEFAULT_MEMORY_POOL`` names one; True if set. Must run before pyarrow is imported: Arrow reads
    the variable once, when it loads. ``prefer_jemalloc`` switches only pyarrow's Python-level pool, and Arrow's
    C++ code that allocates from the C++ default (its file readers' buffers, Parquet's decoding scratch) still
    used mimalloc, and peak RSS grew more with the rows (benchmarks/README.md, "Figures quoted by the code"). Only on Linux, where pyarrow's wheels are built with jemalloc (elsewhere
    Arrow would warn about an unknown backend)."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL") or "pyarrow" in sys.modules or not sys.platform.startswith("linux"):
        return False
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "jemalloc"
    return True


def prefer_jemalloc() -> bool:
    """Make jemalloc pyarrow's allocator in this process unless ``ARROW_DEFAULT_MEMORY_POOL`` names one; True if
    switched: mimalloc, pyarrow's default, keeps the pages of freed row groups, jemalloc hands them back at the
    same throughput (benchmarks/README.md, "Figures quoted by the code")."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return False
    import pyarrow as pa

    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without jemalloc
        return False
    return True


def map_large_arrays_directly(threshold: int = BUDGET_MMAP_THRESHOLD) -> bool:
    """Have glibc's malloc give arrays of ``threshold`` bytes or more their own pages, returned to the system when
    freed, instead of recycling them in its heaps (its default raises the threshold to the largest block freed, and
    the heaps' trim threshold to twice that, so chunk-sized NumPy arrays then fragment the heaps of the reader and
    training threads and the heaps keep their free tops). A fixed threshold keeps both low. Used by every
    ``streamgd fit``: first under a memory budget only, when mapping each block cost throughput (page faults on
    every new chunk); that cost is won back for the dense blocks, which ``streamgd.data.chunk_buffers`` recycles,
    and on click logs and dense tables alike a fit now peaks lower at the same epoch rate (benchmarks/README.md,
    "The process floor"). False where the C library has no ``mallopt`` (not glibc)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False
