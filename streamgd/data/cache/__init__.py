"""The epoch cache: each unit's transformed arrays kept on local disk by the first epoch, memory-mapped by later
epochs (and later runs) instead of decoding and transforming the Parquet data again.

The package: ``keys`` (what names a unit: a digest of everything its arrays depend on), ``checksums`` (the bytes
checked when a unit is taken), ``unit_files`` (a unit's arrays as a file and its index entry), ``store`` (the
cache as a run uses it: lookups, the writer thread, the size bound, warnings). The statistics pass's cache is
``streamgd.features.stats_cache``; the report of ``streamgd inspect --cache`` is ``streamgd.cli.inspect_cache``.

Layout of a cache directory: ``units/<key>.bin`` holds a unit's arrays (``streamgd.data.unit_arrays.UnitArrays``: the
rows as the first epoch delivered them, and where each row of the file is among them) back to back, each at a
64-byte boundary, raw and uncompressed; ``units/<key>.json`` (the unit's index entry) says where each array lies,
its dtype, shape and a checksum, and what the entry was made from. Arrow IPC decodes as fast, but one file of raw
arrays maps with one system call and needs no reader. ``stats/<key>.json`` holds statistics passes.

**Validity.** A changed file or setting is a new key (``keys``), so a miss: stale arrays are never read. A file
is named by its content (``streamgd.io.fingerprint``: size, footer, a content hash), not by its size and time.

**Atomic writes, concurrent runs.** A unit is written to a temporary name in ``units/`` and renamed; its index
entry follows the same way, last. A reader takes a unit only when its entry exists, the data file has the size
the entry says and the arrays' checksums (XXH64, ``checksums``) match: summed once per run, and again whenever
the file's status (inode, size, modification and change times) differs from the one then. A process
that dies leaves units complete or ignored. The files are not fsynced: after a power loss a renamed file may hold
zeros or be cut short, which the size and checksum checks turn into a rebuild (fsyncing every unit lengthened the
first epoch, benchmarks/README.md "Figures quoted by the code", for a protection the checksums give anyway). Two
runs writing one unit write the same bytes (the key fixes them) and the later rename wins; no lock is needed.

**Damage.** A truncated, resized or corrupt data file, or an index entry that is not JSON or of another format,
is a miss: the unit is rebuilt from Parquet and rewritten, with one warning. A failed write (a full disk,
``cache_max_size`` reached) leaves the unit to Parquet for the rest of the run, with one warning; training is
never affected.

**The first epoch does not wait for the disk.** Units go to one writer thread; a unit that finds the writer's
backlog full is not written this time (``deferred``) but at its next miss, a later epoch's, which waits for room:
the cache is complete after two epochs. On a shared 2-core machine the writer's system time (the page cache's
fresh pages) competes with decoding; deferring spreads it over the first two epochs.

**Memory.** A data file is mapped and gathered into the chunk in the step's row order (``StepGather``, shared by
the prefetch and the training thread); its pages are handed back (``madvise(MADV_DONTNEED)``, as
``streamgd.io.mapped`` does) as the gather reads them, and the map closed: resident memory holds a few steps' unread
columns at most.
"""

from __future__ import annotations

from .checksums import checksum
from .keys import (
                   FORMAT_VERSION,
                   IDENTITY_FIELDS,
                   CheckingEncoder,
                   cache_context,
                   describe_encoder,
                   digest,
                   source_identity,
                   source_state,
                   unit_key,
)
from .store import (
                   CacheSession,
                   CacheSettings,
                   CacheStats,
                   CacheWarning,
                   EpochCache,
                   check_cache_dir,
)
from .unit_files import read_entries, remove_quietly, temporary_path, write_unit_file

__all__ = ["FORMAT_VERSION", "IDENTITY_FIELDS", "CacheSession", "CacheSettings", "CacheStats", "CacheWarning",
           "CheckingEncoder", "EpochCache", "cache_context", "check_cache_dir", "checksum", "describe_encoder", "digest", "read_entries",
           "remove_quietly", "source_identity", "source_state", "temporary_path", "unit_key", "write_unit_file"]
