"""Row groups of remote Parquet files (object stores) fetched in a few coalesced range requests, ahead of the
reader, with every request counted.

An object store answers each request after tens of milliseconds whatever its size, so the number of requests and
how many are in flight bound reading, not bandwidth. pyarrow's streaming reader (``pre_buffer=False``) asks for
each column chunk in 64 KiB pieces, a request each; fetching each row group's column chunks as one range takes
a request per row group, dozens of times faster (issue 19; benchmarks/README.md, "Figures quoted by the code"). Here:

* **one open file per Parquet file**, opened when its footer is read and reused by every pass of the run
  (``OpenFiles``: opening costs a HEAD request);
* **a row group's column chunks** (of the columns read) merge into ranges across gaps up to ``HOLE_BYTES``, each
  at most ``RANGE_BYTES``: one GET per row group for the usual file (``coalesce``);
* **footers** come from the dataset's footer cache, read when the dataset was opened;
* **fetching ahead**: threads fetch the next row groups of the reader's order while it decodes; how many are in
  flight (the depth) follows Little's law, ``ceil(fetch time / consume time) + 1`` per row group, both measured
  as the pass goes, capped by ``MAX_FETCH_DEPTH`` and by a byte budget for the fetched bytes not yet decoded.
  The fetch time is the least of the last ``_LATENCY_WINDOW`` fetches (the store's latency when not queued, as
  TCP BBR takes the least round-trip time): a server that is saturated answers slower the more is asked of it,
  and the mean would then raise the depth without end, and reading with it (benchmarks/README.md, "Figures quoted by the code").
  Fetched bytes wait for the reader in memory: ``DEFAULT_FETCH_BYTES`` at most, or a quarter of a memory budget.

Every request goes through ``RangeFile``, which counts it (pyarrow's S3 filesystem has no request counter):
``ReadStats`` says how many requests each row group took, their mean latency and the depth reached.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

HOLE_BYTES = 1 << 20  # read through gaps (columns not read) up to this: cheaper than another request's latency
RANGE_BYTES = 64 << 20  # but no single request above this
MAX_FETCH_DEPTH = 16  # row groups in flight at most
DEFAULT_FETCH_BYTES = 128 << 20  # fetched bytes not yet decoded, without a memory budget
_EMA = 0.3  # weight of the newest measurement in the running means
_LATENCY_WINDOW = 32  # fetches whose least time is the latency
_PARQUET_READERS = 8  # Parquet readers kept open per pass (each file's open handle is kept for the run)


class ReadStats:
    """Requests made for one pass over remote files (thread-safe): how many, for how many row groups, how long
    they took, and how deep fetching ahead went."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0  # range requests for column chunks
        self.footer_requests = 0  # range requests for footers not in the footer cache
        self.files_opened = 0
        self.row_groups = 0
        self.bytes_read = 0
        self.request_seconds = 0.0
        self.prefetch_depth = 0  # the depth the pass ended with
        self.max_prefetch_depth = 0

    def add_request(self, nbytes: int, seconds: float, footer: bool = False) -> None:
        with self._lock:
            if footer:
                self.footer_requests += 1
            else:
                self.requests += 1
            self.bytes_read += nbytes
            self.request_seconds += seconds

    def add_row_group(self) -> None:
        with self._lock:
            self.row_groups += 1

    def add_file(self) -> None:
        with self._lock:
            self.files_opened += 1

    def set_depth(self, depth: int) -> None:
        self.prefetch_depth = depth
        self.max_prefetch_depth = max(self.max_prefetch_depth, depth)

    @property
    def requests_per_row_group(self) -> float | None:
        return self.requests / self.row_groups if self.row_groups else None

    def as_dict(self) -> dict:
        """The figures a run's history keeps (``read_latency_ms``: mean time per request)."""
        total = self.requests + self.footer_requests
        per_group = self.requests_per_row_group
        return {"requests": self.requests, "row_groups": self.row_groups,
                "requests_per_row_group": None if per_group is None else round(per_group, 3),
                "footer_requests": self.footer_requests, "files_opened": self.files_opened,
                "bytes_read": self.bytes_read,
                "read_latency_ms": round(1e3 * self.request_seconds / total, 2) if total else None,
                "prefetch_depth": self.prefetch_depth, "max_prefetch_depth": self.max_prefetch_depth}


def column_chunk_ranges(row_group: pq.RowGroupMetaData, columns: Sequence[int]) -> list[tuple[int, int]]:
    """The byte ranges ``(offset, length)`` of the column chunks ``columns`` (leaf indices) of a row group."""
    ranges = []
    for index in columns:
        column = row_group.column(index)
        start = column.data_page_offset
        if column.has_dictionary_page and column.dictionary_page_offset:
            start = min(start, column.dictionary_page_offset)
        ranges.append((start, column.total_compressed_size))
    return ranges


def coalesce(ranges: Sequence[tuple[int, int]], hole: int = HOLE_BYTES,
             limit: int = RANGE_BYTES) -> list[tuple[int, int]]:
    """Ranges merged across gaps up to ``hole`` bytes into ranges of at most ``limit`` bytes (a range longer
    than ``limit`` on its own stays whole).

    >>> coalesce([(0, 10), (12, 10), (100, 5)], hole=8)
    [(0, 22), (100, 5)]
    >>> coalesce([(0, 10), (10, 10), (20, 10)], hole=0, limit=20)
    [(0, 20), (20, 10)]
    """
    merged: list[tuple[int, int]] = []
    for start, length in sorted(r for r in ranges if r[1] > 0):
        if merged:
            first, size = merged[-1]
            end = max(first + size, start + length)
            if start - (first + size) <= hole and end - first <= limit:
                merged[-1] = (first, end - first)
                continue
        merged.append((start, length))
    return merged


class OpenFiles:
    """Remote files a dataset's readers opened, kept for the run: opening one costs a request (a HEAD, for its
    size), reading through it is thread-safe. The last ``capacity`` used; pickles empty."""

    def __init__(self, capacity: int = 1024):
        self.capacity = capacity
        self._files: OrderedDict[str, pa.NativeFile] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, path: str, filesystem: Any, stats: ReadStats | None = None) -> pa.NativeFile:
        """The open file (opened now if it was not: ``stats`` counts it)."""
        with self._lock:
            native = self._files.get(path)
            if native is not None:
                self._files.move_to_end(path)
                return native
        native = filesystem.open_input_file(path)  # not under the lock: files open concurrently
        if stats is not None:
            stats.add_file()
        with self._lock:
            native = self._files.setdefault(path, native)
            while len(self._files) > self.capacity:
                self._files.popitem(last=False)
        return native

    def __getstate__(self) -> dict:
        return {"capacity": self.capacity}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["capacity"])


class RangeFile:
    """A remote file as pyarrow's Parquet reader reads it (a Python file object): reads inside the ranges
    fetched for the row group being decoded come from memory, any other read is a range request, counted."""

    def __init__(self, native: pa.NativeFile, path: str, stats: ReadStats):
        self.native = native
        self.path = path
        self.stats = stats
        self._size = native.size()
        self._position = 0
        self.ranges: list[tuple[int, pa.Buffer]] = []  # (offset, bytes) fetched for the row group being decoded
        self.reading_footer = False
        self.closed = False

    def read_range(self, offset: int, length: int) -> pa.Buffer:
        """One range request (thread-safe: ``read_at`` on pyarrow's files is)."""
        start = time.perf_counter()
        data = self.native.read_at(length, offset)
        self.stats.add_request(len(data), time.perf_counter() - start, footer=self.reading_footer)
        if len(data) != length:
            raise OSError(f"{self.path} ended at byte {offset + len(data)}, before byte {offset + length}")
        return pa.py_buffer(data)

    def read_buffer(self, nbytes: int | None = None) -> pa.Buffer:
        position = self._position
        nbytes = self._size - position if nbytes is None or nbytes < 0 else min(nbytes, self._size - position)
        self._position = position + nbytes
        for offset, data in self.ranges:
            if offset <= position and position + nbytes <= offset + data.size:
                return data.slice(position - offset, nbytes)
        return self.read_range(position, nbytes) if nbytes else pa.py_buffer(b"")

    def read(self, nbytes: int | None = None) -> bytes:
        return self.read_buffer(nbytes).to_pybytes()

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._size}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


class RemoteRowGroups:
    """Whole row groups of a dataset's remote files, read through one ``RangeFile`` per file and fetched
    ``order`` ahead (None: each fetched when read). Use ``read_row_group`` from one thread.

    ``footers``: the dataset's footer cache (``get(source)``/``put(source, footer)``); ``open_files``: its
    open files; ``fetch_bytes``: the fetched bytes not yet decoded at most (at least one row group is always
    allowed).
    """

    def __init__(self, paths: Sequence[str], filesystem: Any, footers: Any, columns_of: Callable[[int], list[str]],
                 order: Sequence[tuple[int, int]] | None = None, stats: ReadStats | None = None,
                 fetch_bytes: int | None = None, max_depth: int = MAX_FETCH_DEPTH,
                 open_files: OpenFiles | None = None):
        self.paths = paths
        self.filesystem = filesystem
        self.footers = footers
        self.open_files = open_files if open_files is not None else OpenFiles()
        self.columns_of = columns_of
        self.stats = stats if stats is not None else ReadStats()
        self.fetch_bytes = DEFAULT_FETCH_BYTES if fetch_bytes is None else fetch_bytes
        self.max_depth = max_depth if order is not None else 0
        self._order = list(order or ())
        self._next = 0  # the next position of the order to submit
        self._window: OrderedDict[tuple[int, int], Future] = OrderedDict()  # row groups being fetched, in order
        self._files: dict[int, RangeFile] = {}
        self._parquet: OrderedDict[int, pq.ParquetFile] = OrderedDict()
        self._leaves: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_depth, thread_name_prefix="streamgd-fetch") \
            if self.max_depth else None
        self.depth = min(2, self.max_depth)
        self._fetch_seconds: deque[float] = deque(maxlen=_LATENCY_WINDOW)  # per row group, the last few
        self._consume_seconds: float | None = None  # running mean per row group
        self._row_group_bytes: float | None = None
        self._ready: float | None = None  # when the last row group's bytes were at hand
        self.stats.set_depth(self.depth)
        self._fill()

    # ---- reading ----
    def read_row_group(self, source: int, row_group: int, columns: list[str], use_threads: bool = True) -> pa.Table:
        """One row group's ``columns``, from its fetched ranges."""
        asked = time.perf_counter()
        if self._ready is not None:  # decoding the last row group and whatever the reader did since
            self._consume_seconds = _mean(self._consume_seconds, asked - self._ready)
        ranges = self._take((source, row_group))
        self._ready = time.perf_counter()
        handle = self.file(source)
        parquet = self._parquet.pop(source, None)
        if parquet is None:
            parquet = pq.ParquetFile(handle, metadata=self.footer(source), pre_buffer=False, buffer_size=0)
        self._parquet[source] = parquet  # the most recently read last; a few kept
        while len(self._parquet) > _PARQUET_READERS:
            self._parquet.popitem(last=False)
        handle.ranges = ranges
        try:
            table = parquet.read_row_group(row_group, columns=columns, use_threads=use_threads)
        finally:
            handle.ranges = []
        self.stats.add_row_group()
        self._adapt()
        self._fill()
        return table

    def file(self, source: int) -> RangeFile:
        """The file as this pass reads it, through the run's one open handle of it."""
        with self._lock:
            handle = self._files.get(source)
        if handle is None:
            native = self.open_files.open(self.paths[source], self.filesystem, self.stats)
            with self._lock:
                handle = self._files.setdefault(source, RangeFile(native, self.paths[source], self.stats))
        return handle

    def streaming_file(self, source: int, buffer_size: int) -> pq.ParquetFile:
        """The file for reading slices of its row groups with ``iter_batches``: each column streamed through a
        buffer of ``buffer_size`` bytes, from the row group ``hold`` fetched, else each refill a range request."""
        return pq.ParquetFile(self.file(source), metadata=self.footer(source), pre_buffer=False,
                              buffer_size=buffer_size)

    def hold(self, source: int, row_group: int) -> bool:
        """Fetch a row group whose slices are about to be read, in a few requests, when its column chunks fit
        in the fetch budget (else its slices stream, a request per column per buffer); whether it did."""
        handle = self.file(source)
        ranges = self._ranges(source, row_group)
        handle.ranges = []
        if sum(length for _, length in ranges) > self.fetch_bytes:
            return False
        handle.ranges = [(offset, handle.read_range(offset, length)) for offset, length in ranges]
        return True

    def footer(self, source: int) -> pq.FileMetaData:
        """The file's footer: from the cache, else read (and counted as footer requests)."""
        footer = self.footers.get(source)
        if footer is None:
            handle = self.file(source)
            with self._lock:
                handle.reading_footer = True
                try:
                    footer = pq.ParquetFile(handle, pre_buffer=False).metadata
                finally:
                    handle.reading_footer = False
            self.footers.put(source, footer)
        return footer

    def close(self) -> None:
        """Drop what was fetched and not read; let running requests finish."""
        for future in self._window.values():
            future.cancel()
        self._window.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._files.clear()
        self._parquet.clear()

    # ---- fetching ----
    def _ranges(self, source: int, row_group: int) -> list[tuple[int, int]]:
        footer = self.footer(source)
        names = tuple(self.columns_of(source))
        leaves = self._leaves.get((source, names))
        if leaves is None:
            wanted = set(names)
            leaves = [i for i in range(footer.num_columns) if footer.schema.column(i).path.split(".")[0] in wanted]
            self._leaves[(source, names)] = leaves
        return coalesce(column_chunk_ranges(footer.row_group(row_group), leaves))

    def _fetch(self, key: tuple[int, int]) -> list[tuple[int, pa.Buffer]]:
        source, row_group = key
        start = time.perf_counter()
        handle = self.file(source)
        fetched = [(offset, handle.read_range(offset, length)) for offset, length in self._ranges(source, row_group)]
        seconds = time.perf_counter() - start
        with self._lock:
            self._fetch_seconds.append(seconds)
            self._row_group_bytes = _mean(self._row_group_bytes, sum(b.size for _, b in fetched))
        return fetched

    def _take(self, key: tuple[int, int]) -> list[tuple[int, pa.Buffer]]:
        if key in self._window:
            while True:  # row groups of the order skipped by the reader (an epoch cache's hits) are dropped
                first, future = self._window.popitem(last=False)
                if first == key:
                    return future.result()
                future.cancel()
        if self._next < len(self._order) and self._order[self._next] == key:
            self._next += 1
        return self._fetch(key)

    def _adapt(self) -> None:
        """The depth from Little's law: row groups in flight = fetch time / consume time, plus one."""
        with self._lock:
            latency = min(self._fetch_seconds, default=None)
        if self._pool is None or latency is None or self._consume_seconds is None:
            return
        wanted = math.ceil(latency / max(self._consume_seconds, 1e-4)) + 1
        cap = self.max_depth
        if self._row_group_bytes:
            cap = min(cap, max(1, int(self.fetch_bytes // self._row_group_bytes)))
        self.depth = max(1, min(wanted, cap))
        self.stats.set_depth(self.depth)

    def _fill(self) -> None:
        while self._pool is not None and len(self._window) < self.depth and self._next < len(self._order):
            key = self._order[self._next]
            self._next += 1
            if key not in self._window:
                self._window[key] = self._pool.submit(self._fetch, key)


def _mean(previous: float | None, value: float) -> float:
    return value if previous is None else (1 - _EMA) * previous + _EMA * value
