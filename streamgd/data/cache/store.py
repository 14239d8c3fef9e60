"""The epoch cache as one process uses it: lookups that map a unit's file, writes on one writer thread that the
first epoch never waits for, the size bound, and each warning said once (``streamgd.data.cache`` describes the
whole design)."""

from __future__ import annotations

import errno
import json
import mmap
import os
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from ...errors import ConfigError
from ...io.outputs import check_output_dir, check_writable_directory, local_path
from ...version import __version__
from ..dataset import Dataset, Unit
from ..unit_arrays import UnitArrays
from .checksums import checksum, entry_checksum
from .keys import FORMAT_VERSION, source_identity, unit_key
from .unit_files import (
    DONTNEED,
    pack_arrays,
    release_mapping,
    release_range,
    remove_quietly,
    temporary_path,
    unpack_arrays,
    write_unit_file,
)

_ALIGN = 64
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



def check_cache_dir(directory: str, what: str = "the cache directory") -> str:
    """Create the cache directory if needed and check that files can be created in it; ConfigError otherwise."""
    local = check_output_dir(local_path(directory, what), what)
    units = os.path.join(local, "units")
    try:
        os.makedirs(units, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what} {local}: cannot create {units} ({exc.strerror}); give another directory") \
            from None
    check_writable_directory(os.path.join(os.path.abspath(local), "units"), what, local)
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
        self._identities: dict[str, dict] = {}  # each source file's identity, read once per run
        # each unit file's status (inode, size, mtime, ctime) when this run wrote or verified it: a read that finds
        # another status (any write since, even one that restored the mtime, changes the ctime) verifies it again
        self._verified: dict[str, tuple[int, int, int, int]] = {}
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
                    remove_quietly(entry.path)
                continue
            total += status.st_size
        return total

    def source_identity(self, path: str, filesystem: object = None) -> dict:
        """A source file's identity (``keys.source_identity``: by content), read once per run and path."""
        with self._lock:
            identity = self._identities.get(path)
        if identity is None:
            identity = source_identity(path, filesystem)
            with self._lock:
                self._identities[path] = identity
        return dict(identity)

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
            with open(index_path, "rb") as stream:
                text = stream.read()  # decoded as JSON below: bytes that are not UTF-8 are a damaged entry
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
            if entry.get("checksum") != entry_checksum(entry):
                raise _Damaged("the checksum of its index entry does not match")
            mapping, arrays = self._map(key, data_path, entry)
        except _Damaged as exc:
            stats.damaged += 1
            self._discard(key)
            self._warn_damaged(f"the epoch cache entry of {where} is damaged ({exc}); rebuilding it from Parquet")
            yield None
            return
        arrays.stored_bytes = entry["size"]
        if mapping is not None and DONTNEED is not None and entry["arrays"]["X"]["offset"] == 0:
            arrays.hand_back = lambda start, stop: release_range(mapping, start, stop)
        try:
            yield arrays
        finally:
            del arrays
            release_mapping(mapping)

    def _map(self, key: str, data_path: str, entry: dict) -> tuple[mmap.mmap, UnitArrays]:
        if entry.get("format") != FORMAT_VERSION or entry.get("key") != key:
            raise _Damaged("its index entry is of another format")
        try:
            descriptor = os.open(data_path, os.O_RDONLY)
        except OSError as exc:
            raise _Damaged(f"the data file cannot be opened: {exc.strerror}") from None
        try:
            status = os.fstat(descriptor)
            size = status.st_size
            if size != entry["size"]:
                raise _Damaged(f"the data file holds {size} bytes, its index entry says {entry['size']}")
            # faulted in as the gather reads it (fault-around maps 64 KiB a time): MAP_POPULATE measured no faster
            mapping = mmap.mmap(descriptor, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) if size else None
        finally:
            os.close(descriptor)
        try:
            now = _status(status)
            with self._lock:
                verify = self._verified.get(key) != now
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
                    self._verified[key] = now
            return mapping, unpack_arrays(views, entry)
        except (KeyError, ValueError, TypeError) as exc:
            release_mapping(mapping)
            raise _Damaged(f"its index entry does not describe the data file ({exc})") from None
        except _Damaged:
            release_mapping(mapping)
            raise

    def _discard(self, key: str) -> None:
        for path in self._paths(key)[::-1]:  # the index entry first: then nobody takes the data file
            remove_quietly(path)

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
            parts = pack_arrays(arrays)
            del arrays
            layout, offset = {}, 0
            for name, raw, spec in parts:
                offset = -(-offset // _ALIGN) * _ALIGN
                layout[name] = {**spec, "offset": offset, "checksum": checksum(raw)}
                offset += raw.nbytes
            size = -(-offset // _ALIGN) * _ALIGN
            entry = {"format": FORMAT_VERSION, "streamgd": __version__, "key": key, **record, "arrays": layout,
                     "size": size, "written": time.time()}
            entry["checksum"] = entry_checksum(entry)
            index_text = json.dumps(entry)
            if not self._reserve(size + len(index_text)):
                stats.not_written += 1
                return
            data_path, index_path = self._paths(key)
            temporary, index_temporary = temporary_path(data_path), None
            try:
                write_unit_file(temporary, [(raw, layout[name]["offset"]) for name, raw, _ in parts], size)
                del parts
                os.replace(temporary, data_path)
                written = _status(os.stat(data_path))
                index_temporary = temporary_path(index_path)
                with open(index_temporary, "w") as stream:
                    stream.write(index_text)
                os.replace(index_temporary, index_path)
            except OSError as exc:
                remove_quietly(temporary)
                if index_temporary is not None:
                    remove_quietly(index_temporary)
                self._failed(exc, size + len(index_text))
                stats.not_written += 1
                return
            with self._lock:
                self._verified[key] = written
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
            identity = self.cache.source_identity(self.dataset.sources[index], self.dataset.filesystem)
            if self.dataset.partition_values:
                identity["partition"] = {k: str(v) for k, v in self.dataset.partition_values[index].items()}
            self._sources[index] = identity
        return identity

    def key(self, unit: Unit) -> str:
        return unit_key(self.context, self._source(unit.source), unit)

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


def _status(status: os.stat_result) -> tuple[int, int, int, int]:
    return status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


class _Damaged(Exception):
    pass

