"""Chunk-sized arrays whose memory is recycled: a chunk's dense block, once nothing refers to it, backs a later one.

A stream allocates a dense block of several MB for every chunk and frees it a few chunks later, often on another
thread. glibc's malloc serves these from its heaps once the first one is freed (its dynamic mmap threshold rises
to their size), where the two threads' interleaving fragments the heaps a little more now and then. Under a
memory budget each block was instead mapped on its own (``streamgd.cli.allocators``), which keeps no freed memory
but faults every page of every chunk in again, at a cost in throughput that the pool wins back for a few MB of
peak RSS (benchmarks/README.md, "Figures quoted by the code").

The pool hands out arrays backed by anonymous memory maps and takes a map back when the last view of its array
dies (a weak reference's callback: the array's base is the one ``np.frombuffer`` array every view shares). While a
stream is open it keeps up to ``keep`` free maps (the chunks a stream holds at once); when the last stream ends,
none.
"""

from __future__ import annotations

import contextlib
import mmap
import threading
import weakref
from collections.abc import Iterator, Sequence

import numpy as np

# below this an array is left to malloc, which serves small blocks well
MIN_POOLED_BYTES = 1 << 20
# maps are made in multiples of this, so that chunks of nearly the same size share them
GRANULE = 1 << 16


class ChunkBufferPool:
    """Arrays recycled through a few free anonymous maps (thread-safe)."""

    def __init__(self, keep: int = 8):
        self.keep = keep
        self._free: list[mmap.mmap] = []
        self._lock = threading.RLock()
        self._owners: dict[int, tuple[weakref.ref, mmap.mmap]] = {}
        self.mapped = 0  # maps made
        self.reused = 0  # arrays served from a free map
        self._streams = 0

    def empty(self, shape: Sequence[int], dtype: np.dtype | str, order: str = "C") -> np.ndarray:
        """An uninitialized array, as ``np.empty``; its memory goes back to the pool when the array and every view
        of it are gone."""
        dtype = np.dtype(dtype)
        shape = tuple(int(n) for n in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < MIN_POOLED_BYTES:
            return np.empty(shape, dtype=dtype, order=order)
        raw = self._take(nbytes)
        base = np.frombuffer(raw, dtype=np.uint8, count=nbytes)
        # the callback runs while ``base`` is being freed: the map's buffer is released just after it
        key = id(base)
        self._owners[key] = (weakref.ref(base, lambda _, key=key: self._give_back(key)), raw)
        return base.view(dtype).reshape(shape, order=order)

    def zeros(self, shape: Sequence[int], dtype: np.dtype | str, order: str = "C") -> np.ndarray:
        """As ``np.zeros``."""
        out = self.empty(shape, dtype, order)
        out.fill(0)
        return out

    def _take(self, nbytes: int) -> mmap.mmap:
        with self._lock:
            for i, raw in enumerate(self._free):
                if nbytes <= len(raw) <= 2 * nbytes:
                    self.reused += 1
                    return self._free.pop(i)
            self.mapped += 1
        return mmap.mmap(-1, -(-nbytes // GRANULE) * GRANULE)

    def _give_back(self, key: int) -> None:
        with self._lock:
            _, raw = self._owners.pop(key)
            if self._streams == 0:  # no stream will ask for it: unmapped
                return
            self._free.append(raw)
            if len(self._free) > self.keep:
                self._free.pop(0)  # unmapped once its last array has let go of its buffer

    def open_stream(self) -> None:
        """A stream begins: memory given back is kept for it (up to ``keep`` maps)."""
        with self._lock:
            self._streams += 1

    def close_stream(self) -> None:
        """A stream ends; after the last one the free maps go (a process that trains now and then holds none
        between runs)."""
        with self._lock:
            self._streams -= 1
            if self._streams == 0:
                self._free.clear()

    @contextlib.contextmanager
    def streaming(self) -> Iterator[ChunkBufferPool]:
        """``open_stream`` and ``close_stream`` around a block."""
        self.open_stream()
        try:
            yield self
        finally:
            self.close_stream()

    @property
    def free_bytes(self) -> int:
        """Bytes held in free maps."""
        with self._lock:
            return sum(len(raw) for raw in self._free)


# the process's pool, shared by every stream: its streams take turns (a run's, its validation's)
CHUNK_BUFFERS = ChunkBufferPool()
