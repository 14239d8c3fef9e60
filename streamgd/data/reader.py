"""Units to NumPy chunks: read a plan's steps with pyarrow, convert to column-major float arrays with the plan's
row permutation fused into the one copy, and prefetch the next chunks on a background thread.

The prefetch thread decodes; the conversion runs on it too, or, with ``defer_conversion``, on the consuming
thread, which then holds the decoded Arrow table until the copy.

Column-major because Arrow stores columns: one contiguous copy per column, no transpose (a row-major layout
costs more than the decoding: benchmarks/README.md, "Figures quoted by the code"). The mini-batch kernels read consecutive rows of each column, which is the
contiguous direction of a column-major array.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError, DataError
from ..io.storage import is_remote
from ..kernels.jit import njit
from .arrow_numpy import numbers
from .chunk_buffers import CHUNK_BUFFERS
from .dataset import Dataset, Unit
from .dictionary_slots import dictionary_columns
from .remote_reads import ReadStats
from .shuffle import Plan, ShuffleQualityMeter, Step
from .sparse_block import SparseBlock
from .unit_arrays import StepGather, concat_extra, split_chunk
from .unit_reader import UnitTableReader
from .warm_up_rows import load_featurizing_code

DEFAULT_PREFETCH_DEPTH = 2
# categorical text columns read as dictionaries (``streamgd.data.dictionary_slots``); False: as strings, row by row
# (the path every other column takes, kept as the reference the dictionary path is tested against)
DICTIONARY_READS = True
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "K": 10**3, "M": 10**6, "G": 10**9}

TargetEncoder = Callable[[pa.ChunkedArray], np.ndarray]


@dataclass
class _Decoded:
    """A step's units as read on the prefetch thread, not yet converted into a chunk."""

    table: pa.Table
    step: Step


@dataclass
class _Gathering:
    """A step's chunk partly gathered from the epoch cache on the prefetch thread; the consuming thread gathers
    the dense columns left (``gather``) and then lets the units' maps go (``held``)."""

    gather: StepGather
    held: contextlib.ExitStack
    extra: pa.Table | None
    step: Step

    def finish(self) -> Chunk:
        try:
            X, sparse, y, order = self.gather.finish()
        finally:
            self.held.close()
        chunk = Chunk(X, y, self.step, order, sparse)
        if self.extra is not None:
            chunk.extra = self.extra  # type: ignore[attr-defined]
        return chunk


@dataclass
class StreamTimings:
    """Where a stream's two threads spent their time, a ``perf_counter`` pair per chunk (never per row): the
    benchmarks' reader-thread and training-thread rates (``scripts/bench_ctr.py``). Without a prefetch thread
    the reader's work is counted in ``reader_seconds`` too."""

    reader_seconds: float = 0.0  # the prefetch thread reading and converting steps
    put_wait_seconds: float = 0.0  # the prefetch thread waiting for room in the queue (the consumer is behind)
    wait_seconds: float = 0.0  # the consumer waiting for the prefetch thread (the reader is behind)
    fill_seconds: float = 0.0  # the part of it before the first chunk: the pipeline's fill
    deliver_seconds: float = 0.0  # the consumer finishing a chunk (a deferred conversion, a cache gather)
    consumer_seconds: float = 0.0  # the consumer holding a chunk: training on it, between two chunks
    chunks: int = 0
    rows: int = 0

    def as_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class Chunk:
    """Rows of one plan step: the dense features ``X`` (n_rows, n_dense), column-major, the sparse block of the
    categorical features (``streamgd.data.sparse_block.SparseBlock``, or None) and the target ``y`` (float64)."""

    X: np.ndarray
    y: np.ndarray | None
    step: Step
    row_order: np.ndarray | None  # delivered row i is row row_order[i] of the step's concatenated units
    sparse: SparseBlock | None = None
    # a step's rows can come in two chunks (``ChunkStream``'s ``head_rows``): only the second ends its step, and
    # it counts the rows delivered before it
    ends_step: bool = True
    rows_before: int = 0  # the step's rows delivered in the chunks before this one

    @property
    def rows_left_out(self) -> int:
        """Rows of the step's units the reader did not deliver (a missing target, or a missing feature under
        drop-rows), counted once, by the chunk that ends the step."""
        if not self.ends_step:
            return 0
        return sum(unit.n_rows for unit in self.step.units) - self.rows_before - self.n_rows

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]

    def locate(self, row: int) -> tuple[Unit, int]:
        """The unit and the row inside it that delivered row ``row`` came from."""
        original = int(self.row_order[row]) if self.row_order is not None else row
        for unit in self.step.units:
            if original < unit.n_rows:
                return unit, original
            original -= unit.n_rows
        raise IndexError(row)


def parse_memory_budget(budget: str | int | None) -> int | None:
    """Bytes in a budget such as ``"256MB"``, ``"1GiB"`` or ``1000000``.

    >>> parse_memory_budget("64MB"), parse_memory_budget("1GiB"), parse_memory_budget(None)
    (64000000, 1073741824, None)
    """
    return parse_size(budget, "memory budget")


def parse_size(size: str | int | None, what: str) -> int | None:
    """Bytes in a size such as ``"256MB"``, ``"1GiB"`` or ``1000000`` (None stays None); ``what`` names it in
    the error."""
    if size is None or isinstance(size, int):
        if isinstance(size, int) and size <= 0:
            raise ConfigError(f"{what} must be positive, got {size}")
        return size
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(size))
    if not match or match.group(2).upper() not in _UNITS:
        raise ConfigError(f"{what} {size!r} is not a size such as 256MB or 1GiB")
    value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value <= 0:
        raise ConfigError(f"{what} must be positive, got {size!r}")
    return value


@njit(nogil=True)
def _gather_into(source, order, out):  # pragma: no cover - compiled
    # one read of the source in order first, a value per cache line: the hardware prefetcher streams it into
    # cache, so the random reads that follow hit (benchmarks/README.md, "Figures quoted by the code")
    warm = source[0] if source.shape[0] else 0
    for i in range(0, source.shape[0], 8):
        warm += source[i]
    for i in range(order.shape[0]):
        out[i] = source[order[i]]
    return warm


@njit(nogil=True)
def _copy_into(source, out):  # pragma: no cover - compiled
    for i in range(source.shape[0]):
        out[i] = source[i]


def _column_to_numpy(column: pa.ChunkedArray, name: str) -> np.ndarray:
    dtype = column.type
    # float16 is cast up too: the compiled copy loops take no half floats
    if not (pa.types.is_floating(dtype) or pa.types.is_integer(dtype)) or pa.types.is_float16(dtype) \
            or column.null_count:
        try:
            column = pc.cast(column, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(f"the column {name!r} of type {dtype} cannot be read as numbers ({exc})") from None
    return numbers(column)  # nulls become NaN


def default_target_encoder(column: pa.ChunkedArray) -> np.ndarray:
    """Numeric and boolean targets as float64; nulls become NaN (which training reports as bad data)."""
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
            or pa.types.is_boolean(column.type) or pa.types.is_decimal(column.type)):
        raise DataError(f"the target column has type {column.type}; this model needs a numeric target")
    return np.asarray(_column_to_numpy(column, "target"), dtype=np.float64)


def table_to_chunk_arrays(table: pa.Table, feature_names: list[str], target: str | None,
                          order: np.ndarray | None, dtype: np.dtype,
                          target_encoder: TargetEncoder = default_target_encoder) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert an Arrow table to a column-major feature matrix and a target vector, rows taken in ``order``."""
    n = table.num_rows
    X = CHUNK_BUFFERS.empty((n, len(feature_names)), dtype, order="F")
    for j, name in enumerate(feature_names):
        source = _column_to_numpy(table.column(name), name)
        if order is None:
            _copy_into(source, X[:, j])
        else:
            _gather_into(source, order, X[:, j])
    y = None
    if target is not None:
        values = target_encoder(table.column(target))
        y = values if order is None else values[order]
        y = np.ascontiguousarray(y, dtype=np.float64)
    return X, y


class ChunkStream:
    """Iterate the chunks of a plan, prefetched ``prefetch_depth`` ahead on a thread (0: read inline).

    Closing the stream (or leaving a ``with`` block) stops the thread.
    """

    def __init__(self, dataset: Dataset, plan: Plan, dtype: np.dtype | str = np.float32,
                 prefetch_depth: int = DEFAULT_PREFETCH_DEPTH, with_target: bool = True,
                 target_encoder: TargetEncoder = default_target_encoder, start_step: int = 0,
                 quality: ShuffleQualityMeter | None = None, extra_columns: list[str] | None = None,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None, features: Any = None,
                 defer_conversion: bool = False, all_rows: bool = False, cache: Any = None,
                 fetch_bytes: int | None = None, dictionary_reads: bool | None = None, head_rows: int = 0):
        if prefetch_depth < 0:
            raise ConfigError(f"prefetch depth must be 0 or more, got {prefetch_depth}")
        self.dataset = dataset
        self.steps = plan.steps[start_step:]
        self.start_step = start_step
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype}")
        self.prefetch_depth = prefetch_depth
        self.target = dataset.target if with_target else None
        self.target_encoder = target_encoder
        self.quality = quality
        self.extra_columns = extra_columns or []
        self.transform = transform  # applied to X where it is converted (for example standardization)
        self.features = features  # a FeatureSpec: input columns -> feature matrix (None: the numeric columns as they are)
        if features is not None and dataset.sparse is not None:
            raise ConfigError("a dataset with an in-memory sparse matrix takes its features as they are: it cannot "
                              "also be encoded by a FeatureSpec (categorical columns, missing-value policies)")
        # the copy of a decoded table into a chunk (with the row permutation) on the consuming thread: off the
        # prefetch thread, which decoding alone keeps busy while training. Featurizing stays on the prefetch thread.
        self.defer_conversion = defer_conversion and features is None
        # every row delivered, in the step's order, even those a FeatureSpec's drop-rows policy leaves out (their
        # missing features stay NaN): predictions and evaluation decide per row themselves
        self.all_rows = all_rows
        # an epoch cache session (``streamgd.data.cache.CacheSession``): a step whose units it holds is gathered
        # from them in the step's row order; any other is converted from Parquet and its units stored
        self.cache = cache
        # remote files: the requests this stream makes (``streamgd.data.remote_reads``), and the bytes fetched ahead
        # and not yet decoded at most (None: the default)
        self.read_stats = ReadStats() if is_remote(dataset.filesystem) and dataset.table is None else None
        self.fetch_bytes = fetch_bytes
        # the dense columns of a step from the cache that the prefetch thread gathers (the consumer gathers the
        # rest): moved a column at a time towards whichever thread waits less, so the two share the work
        self._cache_split = 1 << 30
        self.dictionary_reads = DICTIONARY_READS if dictionary_reads is None else dictionary_reads
        # the plan's first step converted and delivered in two parts, its first ``head_rows`` rows and the rest,
        # and its last step with its last ``head_rows`` rows or so apart (0: whole steps): the consumer starts after
        # a part of the first step is featurised, not all of it (the pipeline's fill), and ends training a part of
        # the last step after the reader is done, not all of it (the drain). The caller picks a multiple of its
        # mini-batch, so that no mini-batch spans two parts; a step with rows to leave out (a missing target,
        # drop-rows) goes whole. Not with an epoch cache to write (it stores whole steps) nor with a deferred
        # conversion.
        if head_rows < 0:
            raise ConfigError(f"head rows must be 0 or more, got {head_rows}")
        self.head_rows = head_rows
        self.timings = StreamTimings()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue | None = None

    def _build(self, tables: UnitTableReader, step: Step, index: int = -1
               ) -> Iterator[Chunk | _Decoded | _Gathering]:
        """The prefetch thread's side: read the step's units; convert them too unless conversion is deferred. One
        item, or the parts of the plan's first and last steps (``head_rows``), each yielded as soon as it is
        built."""
        if self.cache is not None:
            chunk = self._from_cache(step)
            if chunk is not None:
                yield chunk
                return
        parts = [tables.read(unit) for unit in step.units]
        table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        del parts
        if self.defer_conversion:
            yield _Decoded(table, step)
            return
        order = step.row_order()
        cut = self._cut(step, table, index)
        if not cut:
            yield self._convert(table, step, order)
            return
        rows = np.arange(table.num_rows, dtype=np.int64) if order is None else order
        # two parts, not more: each part hashes the step's dictionaries again (benchmarks/README.md, "The
        # pipeline's fill")
        yield self._convert(table, step, rows[:cut], ends_step=False)
        yield self._convert(table, step, rows[cut:], rows_before=cut)

    def _cut(self, step: Step, table: pa.Table, index: int) -> int:
        """Where the stream's step ``index`` is cut in two (0: not): after ``head_rows`` rows in the plan's first
        step, at the last multiple of ``head_rows`` that leaves at least ``head_rows`` rows in its last step."""
        first, last = index == 0 and self.start_step == 0, index == len(self.steps) - 1
        head = self._head_size(step, table) if first or last else 0
        if not head:
            return 0
        return head if first else (step.n_rows - head) // head * head

    def _head_size(self, step: Step, table: pa.Table) -> int:
        """The rows of ``step`` delivered first (0: the step whole): only where every row of the step is
        delivered, so that each part is the whole mini-batches it was cut as."""
        if self.head_rows == 0 or self.cache is not None or self.defer_conversion or self.head_rows >= step.n_rows:
            return 0
        if self.features is not None and not self.all_rows:
            if self.features.missing == "drop-rows":
                return 0
            if self.target is not None and self.features.missing != "error":  # unlabelled rows are left out
                labels = np.asarray(self.target_encoder(table.column(self.target)), dtype=np.float64)
                if np.isnan(labels).any():
                    return 0
        return self.head_rows

    def _convert(self, table: pa.Table, step: Step, order: np.ndarray | None, ends_step: bool = True,
                 rows_before: int = 0) -> Chunk:
        """The step's table as a chunk: features and target of the rows in ``order`` (None: the table's order),
        then the transform. A head (``ends_step`` False) or the rest of a step (``rows_before`` rows delivered
        before it) takes part of the step's order."""
        sparse = None
        if self.features is None:
            X, y = table_to_chunk_arrays(table, self.dataset.feature_names, self.target, order, self.dtype,
                                         self.target_encoder)
            if self.dataset.sparse is not None:  # an in-memory sparse matrix: its rows of the step, in order
                sparse = self.dataset.sparse.take(step.file_positions(order))
        else:
            X, sparse, y, order = self._featurize(table, order)
        if self.transform is not None:
            X = self.transform(X)
        chunk = Chunk(X, y, step, order, sparse, ends_step, rows_before)
        if self.extra_columns:
            chunk.extra = table.select(self.extra_columns)  # type: ignore[attr-defined]
        if self.cache is not None:
            self._store(chunk)
        return chunk

    def _from_cache(self, step: Step) -> Chunk | _Gathering | None:
        """The step's chunk gathered from its units' mapped arrays, when the cache holds them all (else None); with
        a prefetch thread, its dense columns past ``_cache_split`` are left to the consumer."""
        held = contextlib.ExitStack()
        try:
            parts = []
            for unit in step.units:
                arrays = held.enter_context(self.cache.lookup(unit))
                if arrays is None:
                    held.close()
                    return None
                parts.append(arrays)
            self.cache.count_hits(parts)
            gathering = _Gathering(StepGather(parts, step), held, concat_extra(parts), step)
            del parts, arrays
            if self.prefetch_depth == 0:
                return gathering.finish()
            self._cache_split = min(self._cache_split, gathering.gather.n_columns)
            gathering.gather.gather_columns(self._cache_split)
            return gathering
        except BaseException:
            held.close()
            raise

    def _store(self, chunk: Chunk) -> None:
        """Hand a chunk converted from Parquet to the cache's writer, cut into its units."""
        parts = split_chunk(chunk.X, chunk.sparse, chunk.y, chunk.row_order, getattr(chunk, "extra", None),
                            chunk.step)
        for unit, arrays in zip(chunk.step.units, parts):
            self.cache.store(unit, arrays)

    def _deliver(self, item: Chunk | _Decoded | _Gathering) -> Chunk:
        """The consumer's side: a deferred conversion or a gather from the cache finished, the shuffle-quality
        figures taken (in plan order)."""
        if isinstance(item, _Decoded):
            chunk = self._convert(item.table, item.step, item.step.row_order())
        elif isinstance(item, _Gathering):
            chunk = item.finish()
        else:
            chunk = item
        if self.quality is not None:
            self.quality.add(chunk.step.file_positions(chunk.row_order))
        return chunk

    def _featurize(self, table: pa.Table, order: np.ndarray | None
                   ) -> tuple[np.ndarray, SparseBlock | None, np.ndarray | None, np.ndarray | None]:
        """The FeatureSpec's blocks; rows with a missing target are left out under ``drop-rows`` and ``impute``,
        and rows with a missing feature under ``drop-rows`` (the returned order then lists the rows kept, as
        positions in the unit). With ``all_rows`` nothing is left out."""
        X, sparse, keep = self.features.to_blocks(table, order, self.dtype)
        y = None
        if self.target is not None:
            y = self.target_encoder(table.column(self.target))
            y = np.ascontiguousarray(y if order is None else y[order], dtype=np.float64)
            if self.features.missing != "error":
                labelled = ~np.isnan(y)
                keep = labelled if keep is None else keep & labelled
        if self.all_rows:
            keep = None
        if keep is not None and not keep.all():
            positions = np.arange(table.num_rows) if order is None else order
            order = positions[keep]
            X = np.asfortranarray(X[keep])
            sparse = None if sparse is None else sparse.take(keep)
            y = None if y is None else y[keep]
        return X, sparse, y, order

    def dictionary_read_columns(self) -> list[str]:
        """The categorical text columns to read as dictionaries (none without a FeatureSpec, or when disabled)."""
        if self.features is None or not self.dictionary_reads:
            return []
        kept = ([self.target] if self.target else []) + self.extra_columns
        return dictionary_columns(self.dataset.schema, [c.name for c in self.features.categorical], kept)

    def _columns(self) -> list[str]:
        inputs = self.dataset.feature_names if self.features is None else self.features.input_columns
        columns = inputs + ([self.target] if self.target else [])
        return columns + [c for c in self.extra_columns if c not in columns]

    def __iter__(self) -> Iterator[Chunk]:
        with CHUNK_BUFFERS.streaming():  # the recycled dense blocks are unmapped when the last stream ends
            yield from self._iterate()

    def _iterate(self) -> Iterator[Chunk]:
        if self.prefetch_depth == 0:
            tables = UnitTableReader(self.dataset, self._columns(), read_stats=self.read_stats,
                                     fetch_bytes=self.fetch_bytes, dictionary_columns=self.dictionary_read_columns())
            timings = self.timings
            try:
                for index, step in enumerate(self.steps):
                    started = time.perf_counter()
                    for item in self._build(tables, step, index):
                        chunk = self._deliver(item)
                        del item
                        handed = time.perf_counter()
                        timings.reader_seconds += handed - started
                        timings.chunks += 1
                        timings.rows += chunk.n_rows
                        yield chunk
                        del chunk
                        started = time.perf_counter()
                        timings.consumer_seconds += started - handed
            finally:
                tables.close()
            return
        self._queue = queue.Queue(maxsize=self.prefetch_depth)
        self._thread = threading.Thread(target=self._produce, name="streamgd-prefetch", daemon=True)
        self._thread.start()
        timings = self.timings
        try:
            asked = time.perf_counter()  # the fill counts from here: the consumer loads code while it waits
            self._load_featurizing_code()
            while True:
                if self._queue.empty():  # the prefetch thread is behind: gather more of the cache's columns here
                    self._cache_split = max(0, self._cache_split - 1)
                item = self._queue.get()
                got = time.perf_counter()
                timings.wait_seconds += got - asked
                if timings.chunks == 0:
                    timings.fill_seconds = got - asked
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                chunk = self._deliver(item)
                del item  # a deferred conversion's table goes now, not after the chunk is trained on
                handed = time.perf_counter()
                timings.deliver_seconds += handed - got
                timings.chunks += 1
                timings.rows += chunk.n_rows
                yield chunk
                del chunk
                asked = time.perf_counter()
                timings.consumer_seconds += asked - handed
        finally:
            self.close()

    def _produce(self) -> None:
        try:
            tables = UnitTableReader(self.dataset, self._columns(), read_ahead=self._units_to_read(),
                                     read_stats=self.read_stats, fetch_bytes=self.fetch_bytes,
                                     dictionary_columns=self.dictionary_read_columns())
        except BaseException as exc:
            self._put(exc)
            return
        timings = self.timings
        try:
            for index, step in enumerate(self.steps):
                if self._stop.is_set():
                    return
                started = time.perf_counter()
                for chunk in self._build(tables, step, index):
                    built = time.perf_counter()
                    timings.reader_seconds += built - started
                    if isinstance(chunk, _Gathering) and self._queue.full():  # the consumer is behind
                        self._cache_split += 1
                    if not self._put(chunk):
                        return
                    del chunk
                    started = time.perf_counter()
                    timings.put_wait_seconds += started - built
            self._put(None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
        finally:
            tables.close()

    def _load_featurizing_code(self) -> None:
        """On the consuming thread, while the prefetch thread decodes the first step: load the FeatureSpec's
        compiled loops (``warm_up_rows.load_featurizing_code``)."""
        if self.features is None or not self.steps or self.dataset.table is not None \
                or self.dataset.dask_frame is not None:
            return
        unit = self.steps[0].units[0]
        if self.cache is not None and self.cache.holds(unit):
            return
        load_featurizing_code(self.dataset, unit, self.features, set(self.dictionary_read_columns()), self.dtype,
                              self.transform)

    def _units_to_read(self) -> list[Unit] | None:
        """The units this stream will read from the files, in order (remote files are fetched ahead of the
        reader in this order); an epoch cache's units are left out."""
        if self.read_stats is None:
            return None
        units = [unit for step in self.steps for unit in step.units]
        if self.cache is not None:
            units = [unit for unit in units if not self.cache.holds(unit)]
        return units

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        """Stop the prefetch thread and drop chunks not yet consumed."""
        self._stop.set()
        if self._queue is not None:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.cache is not None:
            self.cache.close()  # the units written are committed before the stream is done

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_chunks(dataset: Dataset, plan: Plan, **options) -> Iterator[Chunk]:
    """Iterate the chunks of ``plan`` (see ``ChunkStream`` for the options)."""
    with ChunkStream(dataset, plan, **options) as stream:
        yield from stream
