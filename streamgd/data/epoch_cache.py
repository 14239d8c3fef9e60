"""The epoch cache: each unit's transformed arrays kept on local disk by the first epoch, memory-mapped by later
epochs (and later runs) instead of decoding and transforming the Parquet data again.

Layout of a cache directory: ``units/<key>.bin`` holds a unit's arrays (``streamgd.data.unit_arrays.UnitArrays``: the
rows as the first epoch delivered them, and where each row of the file is among them) back to back, each at a
64-byte boundary, raw and uncompressed; ``units/<key>.json`` (the unit's index entry) says where each array lies,
its dtype, shape and a checksum, and what the entry was made from. Arrow IPC decodes as fast, but one file of raw
arrays maps with one system call and needs no reader. ``stats/<key>.json`` holds statistics passes.

**Validity.** ``key`` is a SHA-256 of everything the arrays depend on: the cache format and streamgd versions, the
source file's identity (path, size, modification time in ns, a SHA-256 of its Parquet footer, partition
values), the unit (row group, first row, rows), and the run's transform (``cache_context``: input columns and
their types, the FeatureSpec, the standardizer's mean and scale, dtype, target and its encoding, extra columns).
A changed file or setting is a new key, so a miss: stale arrays are never read.

**Atomic writes, concurrent runs.** A unit is written to a temporary name in ``units/`` and renamed; its index
entry follows the same way, last. A reader takes a unit only when its entry exists, the data file has the size
the entry says and (once per run, for a unit the run did not write itself) the arrays' checksums match. A process
that dies leaves units complete or ignored. The files are not fsynced: after a power loss a renamed file may hold
zeros or be cut short, which the size and checksum checks turn into a rebuild (fsyncing every unit made the first
epoch of a 4M x 32 file 1.0 s longer on this machine's disk, for a protection the checksums give anyway). Two runs
writing one unit write the same bytes (the key fixes them) and the later rename wins; no lock is needed.

**Damage.** A truncated, resized or corrupt data file, or an index entry that is not JSON or of another format,
is a miss: the unit is rebuilt from Parquet and rewritten, with one warning. A failed write (a full disk,
``cache_max_size`` reached) leaves the unit to Parquet for the rest of the run, with one warning; training is
never affected.

**The first epoch does not wait for the disk.** Units go to one writer thread; a unit that finds more than
``_WRITE_BACKLOG_BYTES`` waiting is not written this time (``deferred``) but at its next miss, a later epoch's,
which waits for room: the cache is complete after two epochs. On a shared 2-core machine the writer's system time
(the page cache's fresh pages) competes with decoding; deferring spreads it over the first two epochs.

**Memory.** A data file is mapped and gathered into the chunk in the step's row order (``StepGather``, shared by
the prefetch and the training thread); its pages are handed back (``madvise(MADV_DONTNEED)``, as
``streamgd.io.mapped`` does) as the gather reads them, and the map closed: resident memory holds a few steps' unread
columns at most.

**The statistics pass** (``cached_statistics``): its result is stored under ``stats/``, keyed on the files'
identity, the units, the columns and the settings, so a later run skips the pass.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..version import __version__
from ..errors import ConfigError, StreamgdError
from ..features.stats import DatasetStats
from ..io.storage import is_remote, resolve, uri_of
from ..kernels.jit import njit
from .dataset import Dataset, Unit
from .sparse_block import SparseBlock
from .unit_arrays import UnitArrays

FORMAT_VERSION = 1
_ALIGN = 64
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)
# bytes of units handed to the writer thread and not yet written (one unit always may be): what writing adds to
# resident memory. A unit that finds no room is not written this time but at its next miss (a later epoch's), when
# the caller waits for room: the first epoch never waits for the disk, and the cache is complete after the second
_WRITE_BACKLOG_BYTES = 16 << 20
_STALE_TEMPORARY_SECONDS = 3600  # a temporary file this old belongs to a run that died


class CacheWarning(UserWarning):
    """The epoch cache could not be used for a unit (damaged, full, not writable): training read it from Parquet."""


@dataclass(frozen=True)
class CacheSettings:
    """Where the cache lives and how large it may grow (bytes; None: no bound). Small and picklable."""

    directory: str
    max_bytes: int | None = None
    run: str = ""  # a token of the run: each run opens the cache afresh (checks, size, warnings), its epochs share it


@dataclass
class CacheStats:
    """What one stream did with the cache: units read from it, units that missed, units written (and bytes), units
    left for a later epoch (the writer was busy), units not written (the size bound or a failed write) and damaged
    entries rebuilt."""

    hits: int = 0
    misses: int = 0
    written: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    deferred: int = 0
    not_written: int = 0
    damaged: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def add(self, other: dict) -> None:
        """Add another stream's counters (``as_dict``) to these: a dask worker's shard."""
        for name, value in other.items():
            setattr(self, name, getattr(self, name) + value)


# ---- keys --------------------------------------------------------------------------------------------------------
def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _array_digest(array: np.ndarray | None) -> str | None:
    if array is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float64).tobytes()).hexdigest()


def describe_encoder(encoder: Any) -> Any:
    """What a target encoder does, as JSON-ready data (the classes of a label encoder, a function's name)."""
    if hasattr(encoder, "classes"):
        return {"type": type(encoder).__qualname__, "classes": [str(c) + ":" + type(c).__name__
                                                                for c in encoder.classes]}
    if hasattr(encoder, "encoder"):  # a wrapper that checks the values (NonNegativeTarget)
        return {"type": type(encoder).__qualname__, "inner": describe_encoder(encoder.encoder),
                "kind": getattr(encoder, "kind", None)}
    return f"{getattr(encoder, '__module__', '')}.{getattr(encoder, '__qualname__', type(encoder).__qualname__)}"


def cache_context(dataset: Dataset, dtype: Any, target: str | None, encoder: Any, spec: Any, standardizer: Any,
                  extra_columns: list[str], all_rows: bool = False) -> tuple[str, dict]:
    """(digest, summary) of everything besides the source and the unit that a unit's cached arrays depend on."""
    inputs = dataset.feature_names if spec is None else spec.input_columns
    columns = inputs + ([target] if target else []) + list(extra_columns)
    types = {name: str(dataset.schema.field(name).type) for name in columns if name in dataset.schema.names}
    context = {"format": FORMAT_VERSION, "streamgd": __version__, "dtype": str(np.dtype(dtype)), "inputs": inputs,
               "types": types, "target": target, "encoder": describe_encoder(encoder) if target else None,
               "spec": spec.to_dict() if spec is not None else None,
               "standardize": None if standardizer is None else [_array_digest(standardizer.mean),
                                                                 _array_digest(standardizer.scale)],
               "extra": list(extra_columns), "all_rows": bool(all_rows)}
    summary = {"dtype": context["dtype"], "target": target, "inputs": len(inputs),
               "spec": "none" if spec is None else f"{spec.encoding}, missing {spec.missing}",
               "standardized": standardizer is not None, "extra": list(extra_columns)}
    return _digest(context), summary


# ---- checksums ---------------------------------------------------------------------------------------------------
@njit(nogil=True)
def _fletcher64(words, tail):  # pragma: no cover - compiled
    # Fletcher's sums over 64-bit words (wrapping): position-sensitive and at memory speed (one add per word)
    a = np.uint64(0)
    b = np.uint64(0)
    for i in range(words.shape[0]):
        a += words[i]
        b += a
    a += tail
    b += a
    return a, b


def checksum(raw: np.ndarray) -> str:
    """A cheap checksum of a flat array's bytes (Fletcher-64 style: catches truncation, zeroed and swapped
    blocks, at memory speed)."""
    raw = raw.view(np.uint8)
    n_words = raw.shape[0] // 8
    words = raw[: n_words * 8].view(np.uint64)
    tail = np.zeros(8, dtype=np.uint8)
    tail[: raw.shape[0] - n_words * 8] = raw[n_words * 8:]
    a, b = _fletcher64(words, tail.view(np.uint64)[0])
    return f"{int(a):016x}{int(b):016x}"


def _raw(array: np.ndarray) -> np.ndarray:
    """The array's bytes in its storage order (column-major arrays as stored: no copy)."""
    if array.ndim == 2 and array.flags.f_contiguous:
        return array.T.reshape(-1).view(np.uint8) if array.size else np.empty(0, np.uint8)
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


# ---- source identity ---------------------------------------------------------------------------------------------
def source_identity(path: str, filesystem: Any = None) -> dict:
    """Path (a URI for an object in a store), size, modification time (ns) and a SHA-256 of the Parquet footer of a
    data file."""
    if filesystem is None and is_remote(path):
        location = resolve(path)  # a source recorded by URI, inspected later (credentials from the environment)
        path, filesystem = location.path, location.filesystem
    if filesystem is None:
        status = os.stat(path)
        size, mtime_ns = status.st_size, status.st_mtime_ns
        with open(path, "rb") as stream:
            footer = _footer_bytes(size, lambda offset, n: (stream.seek(offset), stream.read(n))[1])
    else:
        info = filesystem.get_file_info(path)
        size, mtime_ns = info.size, info.mtime_ns
        with filesystem.open_input_file(path) as stream:
            footer = _footer_bytes(size, lambda offset, n: stream.read_at(n, offset))
    return {"path": os.path.abspath(path) if filesystem is None else uri_of(filesystem, path), "size": size,
            "mtime_ns": mtime_ns,
            "footer_sha256": hashlib.sha256(footer).hexdigest()}


def _footer_bytes(size: int, read_at: Any) -> bytes:
    if size < 12:
        return b""
    tail = read_at(size - 8, 8)
    length = int.from_bytes(tail[:4], "little")
    if tail[4:] != b"PAR1" or length > size - 12:
        return tail
    return read_at(size - 8 - length, length + 8)


# ---- the cache ---------------------------------------------------------------------------------------------------
def check_cache_dir(directory: str, what: str = "the cache directory") -> str:
    """Create the cache directory if needed and check that files can be created in it; ConfigError otherwise."""
    from ..io.outputs import check_output_dir, local_path

    local = check_output_dir(local_path(directory, what), what)
    units = os.path.join(local, "units")
    try:
        os.makedirs(units, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what} {local}: cannot create {units} ({exc.strerror}); give another directory") \
            from None
    from ..io.outputs import _check_writable_directory

    _check_writable_directory(os.path.join(os.path.abspath(local), "units"), what, local)
    return local


class EpochCache:
    """The cache directory as one process uses it: lookups, writes, the size bound and the warnings said.

    One instance per (directory, process, run): ``EpochCache.shared`` hands it out, so the epochs of a run share
    what they learned (units the run wrote or checked need no checksum pass; a full disk is said once).
    """

    _instances: dict[tuple[str, int], EpochCache] = {}
    _instances_lock = threading.Lock()

    def __init__(self, settings: CacheSettings):
        self.settings = settings
        self.directory = os.path.abspath(settings.directory)
        self.units_dir = os.path.join(self.directory, "units")
        os.makedirs(self.units_dir, exist_ok=True)
        self._lock = threading.Lock()
        self._trusted: set[str] = set()  # keys written, or verified, by this process
        self._writing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamgd-cache")
        self._pending: list[Future] = []
        self._backlog = 0  # bytes handed to the writer and not yet written
        self._room = threading.Condition(self._lock)  # notified when the backlog shrinks
        self._deferred: set[str] = set()  # keys left for a later epoch once already
        self._write_failed = False
        self._full_said = False
        self._damage_said = False
        self.used_bytes = self._scan()

    @classmethod
    def shared(cls, settings: CacheSettings) -> EpochCache:
        key = (os.path.abspath(settings.directory), os.getpid())
        with cls._instances_lock:
            cache = cls._instances.get(key)
            if cache is None or cache.settings != settings:
                if cache is not None:
                    cache.flush()
                    cache._writing.shutdown(wait=True)
                cache = cls._instances[key] = cls(settings)
            return cache

    def _scan(self) -> int:
        """Bytes the cache holds; temporary files of runs that died long ago are removed."""
        total = 0
        now = time.time()
        for entry in os.scandir(self.units_dir):
            try:
                status = entry.stat()
            except OSError:
                continue
            if entry.name.startswith(".tmp-"):
                if now - status.st_mtime > _STALE_TEMPORARY_SECONDS:
                    _remove(entry.path)
                continue
            total += status.st_size
        return total

    def session(self, dataset: Dataset, context: str, summary: dict) -> CacheSession:
        """Lookups and writes of one stream over ``dataset`` with the transform ``context``."""
        return CacheSession(self, dataset, context, summary)

    # ---- reading ----
    def _paths(self, key: str) -> tuple[str, str]:
        return os.path.join(self.units_dir, key + ".bin"), os.path.join(self.units_dir, key + ".json")

    @contextmanager
    def mapped(self, key: str, stats: CacheStats, where: str) -> Iterator[UnitArrays | None]:
        """The unit's arrays mapped from the cache (None: a miss); its pages go back when the block ends."""
        data_path, index_path = self._paths(key)
        try:
            with open(index_path) as stream:
                text = stream.read()
        except OSError:
            yield None
            return
        mapping = None
        try:
            try:
                entry = json.loads(text)
            except ValueError:
                raise _Damaged("its index entry is not JSON") from None
            if not isinstance(entry, dict):
                raise _Damaged("its index entry is not an object")
            mapping, arrays = self._map(key, data_path, entry)
        except _Damaged as exc:
            stats.damaged += 1
            self._discard(key)
            self._warn_damaged(f"the epoch cache entry of {where} is damaged ({exc}); rebuilding it from Parquet")
            yield None
            return
        arrays.stored_bytes = entry["size"]
        if mapping is not None and _DONTNEED is not None and entry["arrays"]["X"]["offset"] == 0:
            arrays.hand_back = lambda start, stop: _release_range(mapping, start, stop)
        try:
            yield arrays
        finally:
            del arrays
            _release(mapping)

    def _map(self, key: str, data_path: str, entry: dict) -> tuple[mmap.mmap, UnitArrays]:
        if entry.get("format") != FORMAT_VERSION or entry.get("key") != key:
            raise _Damaged("its index entry is of another format")
        try:
            descriptor = os.open(data_path, os.O_RDONLY)
        except OSError as exc:
            raise _Damaged(f"the data file cannot be opened: {exc.strerror}") from None
        try:
            size = os.fstat(descriptor).st_size
            if size != entry["size"]:
                raise _Damaged(f"the data file holds {size} bytes, its index entry says {entry['size']}")
            # faulted in as the gather reads it (fault-around maps 64 KiB a time): MAP_POPULATE measured no faster
            mapping = mmap.mmap(descriptor, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) if size else None
        finally:
            os.close(descriptor)
        try:
            verify = key not in self._trusted
            views: dict[str, np.ndarray] = {}
            for name, spec in entry["arrays"].items():
                count = int(np.prod(spec["shape"]))
                flat = np.frombuffer(mapping, dtype=np.dtype(spec["dtype"]), count=count, offset=spec["offset"]) \
                    if count else np.empty(0, dtype=np.dtype(spec["dtype"]))
                if verify and checksum(flat) != spec["checksum"]:
                    raise _Damaged(f"the checksum of its {name} array does not match")
                views[name] = flat.reshape(spec["shape"], order=spec.get("order", "C"))
            if verify:
                with self._lock:
                    self._trusted.add(key)
            return mapping, _unpack(views, entry)
        except (KeyError, ValueError, TypeError) as exc:
            _release(mapping)
            raise _Damaged(f"its index entry does not describe the data file ({exc})") from None
        except _Damaged:
            _release(mapping)
            raise

    def _discard(self, key: str) -> None:
        for path in self._paths(key)[::-1]:  # the index entry first: then nobody takes the data file
            _remove(path)

    def _warn_damaged(self, message: str) -> None:
        with self._lock:
            said, self._damage_said = self._damage_said, True
        if not said:
            warnings.warn(message, CacheWarning, stacklevel=2)

    # ---- writing ----
    def store(self, key: str, arrays: UnitArrays, record: dict, stats: CacheStats) -> None:
        """Write the unit's arrays under ``key`` on the writer thread. When its backlog is full the unit is left
        for a later epoch the first time (the caller does not wait), and waits for room the second; a failed write
        or the size bound leaves the unit to Parquet."""
        if self._write_failed or os.path.exists(self._paths(key)[1]):
            return
        nbytes = arrays.nbytes
        with self._lock:
            while self._backlog and self._backlog + nbytes > _WRITE_BACKLOG_BYTES:
                if key not in self._deferred:
                    self._deferred.add(key)
                    stats.deferred += 1
                    return
                self._room.wait()
            self._backlog += nbytes
        try:
            future = self._writing.submit(self._write, key, arrays, record, stats, nbytes)
        except BaseException:
            with self._lock:
                self._backlog -= nbytes
                self._room.notify_all()
            raise
        with self._lock:
            self._pending = [f for f in self._pending if not f.done() or f.exception() is not None] + [future]

    def _write(self, key: str, arrays: UnitArrays, record: dict, stats: CacheStats, nbytes: int) -> None:
        """The writer thread: a temporary file written and renamed, then its index entry the same way."""
        try:
            if self._write_failed:
                stats.not_written += 1
                return
            parts = _pack(arrays)
            del arrays
            layout, offset = {}, 0
            for name, raw, spec in parts:
                offset = -(-offset // _ALIGN) * _ALIGN
                layout[name] = {**spec, "offset": offset, "checksum": checksum(raw)}
                offset += raw.nbytes
            size = -(-offset // _ALIGN) * _ALIGN
            entry = {"format": FORMAT_VERSION, "streamgd": __version__, "key": key, **record, "arrays": layout,
                     "size": size, "written": time.time()}
            index_text = json.dumps(entry)
            if not self._reserve(size + len(index_text)):
                stats.not_written += 1
                return
            data_path, index_path = self._paths(key)
            temporary, index_temporary = _temporary(data_path), None
            try:
                write_unit_file(temporary, [(raw, layout[name]["offset"]) for name, raw, _ in parts], size)
                del parts
                os.replace(temporary, data_path)
                index_temporary = _temporary(index_path)
                with open(index_temporary, "w") as stream:
                    stream.write(index_text)
                os.replace(index_temporary, index_path)
            except OSError as exc:
                _remove(temporary)
                if index_temporary is not None:
                    _remove(index_temporary)
                self._failed(exc, size + len(index_text))
                stats.not_written += 1
                return
            with self._lock:
                self._trusted.add(key)
                stats.written += 1
                stats.bytes_written += size
        finally:
            with self._lock:
                self._backlog -= nbytes
                self._room.notify_all()

    def _reserve(self, size: int) -> bool:
        """Count ``size`` more bytes against the size bound; False (said once) when they do not fit."""
        limit = self.settings.max_bytes
        with self._lock:
            fits = limit is None or self.used_bytes + size <= limit
            if fits:
                self.used_bytes += size
            said, self._full_said = self._full_said, self._full_said or not fits
        if not fits and not said:
            warnings.warn(f"the epoch cache in {self.directory} reached its size bound ({limit:,} bytes); units "
                          "beyond it are read from Parquet", CacheWarning, stacklevel=2)
        return fits

    def _failed(self, exc: OSError, size: int) -> None:
        """A write failed (a full disk, a quota, a removed directory): no more writes this run, said once."""
        with self._lock:
            said, self._write_failed = self._write_failed, True
            self.used_bytes -= size
        if not said:
            reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
            warnings.warn(f"cannot write the epoch cache in {self.directory} ({reason}); units not cached are read "
                          "from Parquet", CacheWarning, stacklevel=3)

    def flush(self) -> None:
        """Wait for the units written so far to be committed."""
        with self._lock:
            pending, self._pending = self._pending, []
        for future in pending:
            future.result()


class CacheSession:
    """One stream's view of the cache: unit keys for its dataset and transform, and its counters."""

    def __init__(self, cache: EpochCache, dataset: Dataset, context: str, summary: dict):
        self.cache = cache
        self.dataset = dataset
        self.context = context
        self.summary = summary
        self.stats = CacheStats()
        self._sources: dict[int, dict] = {}

    def _source(self, index: int) -> dict:
        identity = self._sources.get(index)
        if identity is None:
            identity = source_identity(self.dataset.sources[index], self.dataset.filesystem)
            if self.dataset.partition_values:
                identity["partition"] = {k: str(v) for k, v in self.dataset.partition_values[index].items()}
            identity = self._sources[index] = identity
        return identity

    def key(self, unit: Unit) -> str:
        return _digest([FORMAT_VERSION, __version__, self.context, self._source(unit.source), unit.row_group,
                        unit.offset, unit.n_rows])[:40]

    def where(self, unit: Unit) -> str:
        return f"row group {unit.row_group} (rows {unit.offset}+{unit.n_rows}) of {self.dataset.sources[unit.source]}"

    @contextmanager
    def lookup(self, unit: Unit) -> Iterator[UnitArrays | None]:
        """The unit's cached arrays, or None (then ``store`` them once converted); ``count_hits`` once used."""
        with self.cache.mapped(self.key(unit), self.stats, self.where(unit)) as arrays:
            yield arrays

    def holds(self, unit: Unit) -> bool:
        """Whether the cache has an entry for the unit (a quick look: ``lookup`` checks it)."""
        return os.path.exists(self.cache._paths(self.key(unit))[1])

    def count_hits(self, parts: list[UnitArrays]) -> None:
        self.stats.hits += len(parts)
        self.stats.bytes_read += sum(part.stored_bytes for part in parts)

    def store(self, unit: Unit, arrays: UnitArrays) -> None:
        """Count a miss and write the unit's arrays (on the writer thread)."""
        self.stats.misses += 1
        record = {"source": self._source(unit.source),
                  "unit": {"row_group": unit.row_group, "offset": unit.offset, "n_rows": unit.n_rows},
                  "context": self.context, "context_summary": self.summary}
        self.cache.store(self.key(unit), arrays, record, self.stats)

    def close(self) -> None:
        self.cache.flush()


class _Damaged(Exception):
    pass


# ---- packing -----------------------------------------------------------------------------------------------------
def _pack(arrays: UnitArrays) -> list[tuple[str, np.ndarray, dict]]:
    """(name, bytes as uint8, spec) of each array to store."""
    named: list[tuple[str, np.ndarray]] = [("X", arrays.X)]
    n_slots = arrays.sparse.n_slots if arrays.sparse is not None else None
    if arrays.y is not None:
        named.append(("y", arrays.y))
    if arrays.slot is not None:
        named.append(("slot", arrays.slot))
    if arrays.sparse is not None:
        named += [("indptr", arrays.sparse.indptr), ("indices", arrays.sparse.indices),
                  ("values", arrays.sparse.values)]
    parts = []
    for name, array in named:
        order = "F" if array.ndim == 2 and array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        spec = {"dtype": array.dtype.str, "shape": list(array.shape), "order": order}
        if name == "indptr":
            spec["n_slots"] = n_slots
        parts.append((name, _raw(array), spec))
    if arrays.extra is not None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, arrays.extra.schema) as writer:
            writer.write_table(arrays.extra)
        blob = np.frombuffer(sink.getvalue(), dtype=np.uint8)
        parts.append(("extra", blob, {"dtype": "|u1", "shape": [blob.shape[0]], "order": "C"}))
    return parts


def _unpack(views: dict[str, np.ndarray], entry: dict) -> UnitArrays:
    X = views["X"]
    sparse = None
    if "indptr" in views:
        sparse = SparseBlock(views["indptr"], views["indices"], views["values"],
                             int(entry["arrays"]["indptr"]["n_slots"]))
    extra = None
    if "extra" in views:
        extra = pa.ipc.open_stream(pa.py_buffer(views["extra"].tobytes())).read_all()  # a copy: owns its memory
    return UnitArrays(X, views.get("y"), sparse, extra, views.get("slot"))


# ---- files -------------------------------------------------------------------------------------------------------
def write_unit_file(path: str, parts: list[tuple[np.ndarray, int]], size: int) -> None:
    """Write arrays' bytes at their offsets into a new file of ``size`` bytes (zeros between them)."""
    with open(path, "wb") as stream:
        position = 0
        for raw, start in parts:
            if start > position:
                stream.write(b"\0" * (start - position))
            stream.write(raw)
            position = start + raw.nbytes
        if size > position:
            stream.write(b"\0" * (size - position))


def _temporary(path: str) -> str:
    return os.path.join(os.path.dirname(path), f".tmp-{os.path.basename(path)}-{os.getpid()}-"
                                               f"{threading.get_ident()}-{time.monotonic_ns()}")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _release_range(mapping: mmap.mmap, start: int, stop: int) -> None:
    """Hand back the pages wholly inside bytes [start, stop) of a map (they stay in the page cache)."""
    start = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    stop = min(stop, len(mapping)) // mmap.PAGESIZE * mmap.PAGESIZE
    if stop > start:
        try:
            mapping.madvise(_DONTNEED, start, stop - start)
        except (OSError, ValueError):  # advice only (or the map is closed)
            pass


def _release(mapping: mmap.mmap | None) -> None:
    """Hand a map's pages back (they stay in the page cache) and close it."""
    if mapping is None:
        return
    if _DONTNEED is not None:
        try:
            mapping.madvise(_DONTNEED)
        except (OSError, ValueError):  # advice only
            pass
    try:
        mapping.close()
    except BufferError:  # a view still alive: the map closes when it goes
        pass


# ---- the statistics pass -----------------------------------------------------------------------------------------
def cached_statistics(directory: str, dataset: Dataset, columns: list[str], counted: list[str], max_categories: int,
                      compute: Callable[[], DatasetStats]) -> DatasetStats:
    """The statistics pass's result for these units and columns, from ``stats/<key>.json`` of the cache directory
    when an earlier run stored it (then no Parquet is read), else ``compute()``, stored for the next run.

    The key digests what the result depends on: the cache format and streamgd versions, every source file's
    identity (as the units' keys), the units, the columns, the categorical columns counted and the vocabulary's
    bound. A file that cannot be read or parsed is a miss; a failed write only costs the next run the pass.
    """
    try:
        identities = [source_identity(path, dataset.filesystem) for path in dataset.sources]
    except OSError:
        return compute()
    key = _digest([FORMAT_VERSION, __version__, identities, [str(v) for v in dataset.partition_values],
                   [(u.source, u.row_group, u.offset, u.n_rows) for u in dataset.units], list(columns),
                   sorted(counted), int(max_categories)])[:40]
    path = os.path.join(directory, "stats", key + ".json")
    try:
        with open(path) as stream:
            stored = json.load(stream)
        if stored.get("format") == FORMAT_VERSION and stored.get("key") == key:
            return DatasetStats.from_json(stored["statistics"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    stats = compute()
    temporary = _temporary(path)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w") as stream:
            json.dump({"format": FORMAT_VERSION, "streamgd": __version__, "key": key,
                       "statistics": stats.to_json()}, stream)
        os.replace(temporary, path)
    except OSError:
        _remove(temporary)
    return stats


# ---- inspect -----------------------------------------------------------------------------------------------------
def read_entries(directory: str) -> list[dict]:
    """The index entries of a cache directory (unreadable ones left out)."""
    units_dir = os.path.join(directory, "units")
    entries = []
    for name in sorted(os.listdir(units_dir)) if os.path.isdir(units_dir) else []:
        if name.endswith(".json") and not name.startswith(".tmp-"):
            try:
                with open(os.path.join(units_dir, name)) as stream:
                    entry = json.load(stream)
            except (OSError, ValueError):
                continue
            entry["_data_size"] = _size(os.path.join(units_dir, name[:-5] + ".bin"))
            entries.append(entry)
    return entries


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def describe_cache(directory: str) -> str:
    """What a cache directory holds: units, rows, bytes, per source file, per transform, and whether each source
    still matches (a changed file's units are misses)."""
    if not os.path.isdir(directory):
        raise ConfigError(f"--cache {directory}: no such directory")
    entries = read_entries(directory)
    units_dir = os.path.join(directory, "units")
    on_disk = sum(e.stat().st_size for e in os.scandir(units_dir)) if os.path.isdir(units_dir) else 0
    lines = [f"epoch cache {os.path.abspath(directory)} (format {FORMAT_VERSION} of streamgd {__version__})",
             f"  units: {len(entries):,}, rows: {sum(e['unit']['n_rows'] for e in entries):,}, "
             f"bytes: {on_disk:,}"]
    stats_dir = os.path.join(directory, "stats")
    passes = [n for n in os.listdir(stats_dir) if n.endswith(".json") and not n.startswith(".tmp-")] \
        if os.path.isdir(stats_dir) else []
    if passes:
        lines.append(f"  statistics passes stored: {len(passes)} (a later run on the same files skips its pass)")
    if not entries:
        return "\n".join(lines)
    formats = sorted({(e.get("format"), e.get("streamgd")) for e in entries}, key=str)
    if formats != [(FORMAT_VERSION, __version__)]:
        lines.append("  formats: " + ", ".join(f"{f} (streamgd {v})" for f, v in formats)
                     + "; entries of other versions are never read")
    bad = [e for e in entries if e["_data_size"] != e.get("size")]
    if bad:
        lines.append(f"  incomplete: {len(bad)} units (their data file is missing or of another size: rebuilt)")
    contexts: dict[str, list[dict]] = {}
    for e in entries:
        contexts.setdefault(e.get("context", "?"), []).append(e)
    lines.append(f"  transforms: {len(contexts)}")
    for context, group in contexts.items():
        s = group[0].get("context_summary", {})
        lines.append(f"    {context[:12]}: {len(group)} units, {s.get('inputs')} inputs, target {s.get('target')}, "
                     f"{s.get('dtype')}, features: {s.get('spec')}, standardized: {s.get('standardized')}")
    sources: dict[str, list[dict]] = {}
    for e in entries:
        sources.setdefault(e["source"]["path"], []).append(e)
    lines.append(f"  sources: {len(sources)}")
    for path, group in sorted(sources.items()):
        state = _source_state(path, group[0]["source"])
        lines.append(f"    {path}: {len(group)} units, {sum(e['unit']['n_rows'] for e in group):,} rows, "
                     f"{sum(e.get('size', 0) for e in group):,} bytes ({state})")
    return "\n".join(lines)


def _source_state(path: str, recorded: dict) -> str:
    try:
        now = source_identity(path)
    except (OSError, StreamgdError):
        return "the file is gone"
    same = all(now[k] == recorded.get(k) for k in ("size", "mtime_ns", "footer_sha256"))
    return "current" if same else "the file changed since: these units are misses"
