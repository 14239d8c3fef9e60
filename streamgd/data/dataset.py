"""A Parquet dataset as an index of units: the pieces of data streamgd reads one at a time.

A *unit* is a whole row group, or a slice of one when the row group is larger than the row limit a memory
budget allows. Opening a dataset reads file footers only, never data.

>>> import tempfile, os, pyarrow as pa, pyarrow.parquet as pq
>>> path = os.path.join(tempfile.mkdtemp(), "t.parquet")
>>> pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [1, 0, 1], "y": [0.5, 1.5, 2.5]}), path, row_group_size=2)
>>> data = open_dataset(path, target="y")
>>> data.feature_names, data.n_rows, [u.n_rows for u in data.units]
(['a', 'b'], 3, [2, 1])
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import os
import re
import stat
import sys
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import ConfigError, DataError, SchemaError
from ..io.mapped import MappedParquetFile, can_map
from ..io.storage import (
    Location,
    file_or_prefix,
    first_line,
    is_remote,
    is_store_error,
    quick,
    resolve,
    storage_error,
    uri_of,
)
from .columns import resolve_columns
from .convert import no_parquet_files_message, other_format_hint
from .remote_reads import OpenFiles
from .schema import ColumnDrift, check_unique_names, reconcile, settle_drift
from .sparse_block import BlockNames, SparseBlock

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
REMOTE_FOOTER_BYTES = 1 << 20  # serialized footers of a remote dataset kept parsed (all, up to this): ~10x parsed
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Unit:
    """One piece of a dataset read at once: rows [offset, offset + n_rows) of a row group of a source file."""

    source: int  # index into Dataset.sources
    row_group: int  # row group of that file (partition index for a dask source)
    offset: int  # first row inside the row group
    n_rows: int
    first_row: int  # position of the unit's first row in the whole dataset, in file order

    @property
    def group_key(self) -> tuple[int, int]:
        """The row group this unit belongs to; slices of one row group share it."""
        return (self.source, self.row_group)


class FooterCache:
    """Parsed footers (``pq.FileMetaData``) of a dataset's files, shared by every reader of the dataset and its
    subsets, the last ``capacity`` files used.

    A footer costs memory in proportion to the file's row groups x columns, and what a parse allocates stays in the
    process once freed (each reading thread parses in its own allocator arena; benchmarks/README.md, "Figures quoted by the code").
    Parsed once, the footer costs that once, not once per reader (training reads with a reader per epoch, the
    statistics pass with one per thread). Pickles empty.
    """

    def __init__(self, capacity: int = 8):
        self.capacity = capacity
        self._footers: dict[int, pq.FileMetaData] = {}
        self._lock = threading.Lock()

    def put(self, source: int, footer: pq.FileMetaData) -> None:
        with self._lock:
            self._footers.pop(source, None)
            self._footers[source] = footer
            while len(self._footers) > self.capacity:
                self._footers.pop(next(iter(self._footers)))

    def get(self, source: int) -> pq.FileMetaData | None:
        with self._lock:
            footer = self._footers.pop(source, None)
            if footer is not None:
                self._footers[source] = footer  # most recently used last
            return footer

    def __getstate__(self) -> dict:
        return {"capacity": self.capacity}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["capacity"])


@dataclass
class Dataset:
    """Schema, feature and target columns, and the unit index of a Parquet dataset (or dask DataFrame)."""

    sources: list[str]
    schema: pa.Schema
    feature_names: list[str]
    target: str | None
    units: list[Unit]
    filesystem: Any = None
    partition_values: list[dict[str, Any]] = field(default_factory=list)
    ignored_columns: dict[str, str] = field(default_factory=dict)
    dask_frame: Any = None
    row_group_rows: list[list[int]] = field(default_factory=list)
    table: pa.Table | None = None  # an in-memory source: units are slices of it
    categorical: list[str] = field(default_factory=list)  # features to one-hot encode or hash
    footers: FooterCache = field(default_factory=FooterCache, repr=False, compare=False)
    open_files: OpenFiles = field(default_factory=OpenFiles, repr=False, compare=False)  # remote files, kept open
    # an in-memory sparse matrix (with ``table``): row r of the table has the slots of row r of the block, which
    # follow the ``feature_names`` (the dense block) as the model's features
    sparse: SparseBlock | None = field(default=None, repr=False, compare=False)
    # columns whose type differs between files (``streamgd.data.schema``): each file is read at ``schema``'s type
    schema_drift: list[ColumnDrift] = field(default_factory=list, repr=False, compare=False)

    @property
    def n_rows(self) -> int:
        return sum(u.n_rows for u in self.units)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_slots(self) -> int:
        """The sparse slots of an in-memory sparse matrix (0 without one)."""
        return 0 if self.sparse is None else self.sparse.n_slots

    @property
    def model_feature_names(self) -> Sequence[str]:
        """The features of a model of the inputs as they are: the numeric columns, then an in-memory sparse
        matrix's columns (named ``x<j>``, on demand)."""
        if self.sparse is None:
            return list(self.feature_names)
        return BlockNames(self.feature_names, self.sparse.n_slots)

    @property
    def columns(self) -> list[str]:
        """The columns training reads: the features, then the target if any."""
        return self.feature_names + ([self.target] if self.target else [])

    @property
    def n_row_groups(self) -> int:
        return sum(len(r) for r in self.row_group_rows)

    def subset(self, units: Sequence[Unit]) -> Dataset:
        """The same dataset restricted to some of its units (for example a validation split)."""
        clone = Dataset(**{**self.__dict__})
        clone.units = list(units)
        return clone

    def describe_row(self, unit: Unit, row_in_unit: int) -> str:
        """A human pointer to one row: file, row group and row index inside that row group."""
        return (f"file {self.sources[unit.source]}, row group {unit.row_group}, "
                f"row {unit.offset + row_in_unit}")


def open_dataset(source: Any, target: str | None = None, features: Sequence[str] | None = None,
                 max_unit_rows: int | None = None, allow_string_target: bool = True,
                 categorical: Sequence[str] = (), exclude: Sequence[str] = (),
                 footers_of: Dataset | None = None, storage_options: dict | None = None) -> Dataset:
    """Open a Parquet file, directory, glob, list of paths, ``pyarrow.dataset.Dataset`` or dask DataFrame; a path
    may be a URI (``s3://bucket/prefix/``, see ``streamgd.io.storage``) opened with ``storage_options``.

    ``features`` defaults to every numeric, boolean, date or timestamp column except the target and the
    ``exclude`` columns, plus the ``categorical`` columns (which are features whether named there or not); text
    columns named as features are categorical. Row groups with more rows than
    ``max_unit_rows`` are split into slices. ``footers_of``: a dataset opened on the same files, whose parsed
    footers are taken rather than read again (a request each on an object store).
    """
    if isinstance(source, Dataset):
        return source
    if max_unit_rows is not None and max_unit_rows < 1:
        raise DataError(f"max_unit_rows must be at least 1, got {max_unit_rows}")
    if _is_dask_frame(source):
        return _open_dask(source, target, features, allow_string_target, categorical, exclude)
    if isinstance(source, pa.Table):
        return open_table(source, target, features, unit_rows=max_unit_rows or DEFAULT_TABLE_UNIT_ROWS,
                          allow_string_target=allow_string_target, categorical=categorical, exclude=exclude)
    files, filesystem, partitions = _resolve_files(source, storage_options)
    same = footers_of is not None and footers_of.sources == files
    known = footers_of.footers if same else None
    open_files = footers_of.open_files if same else OpenFiles()
    metadata = _read_footers(files, filesystem, known, open_files)
    merged = reconcile(files, [m.schema.to_arrow_schema() for m in metadata], [set(p) for p in partitions])
    schema = _merged_schema(files, merged.schema, partitions)
    categorical_named = categorical
    feature_names, ignored, categorical = resolve_columns(schema, target, features, files[0], allow_string_target,
                                                           categorical, exclude)
    literal = [name for name in [*(features or ()), *(categorical_named or ())] if name in schema.names]
    feature_names, categorical, drifted = settle_drift(merged, feature_names, categorical,
                                                       ([target] if target else []) + literal)
    ignored.update(drifted)
    for drift in merged.drift:  # left out for its type in the first file: the other files' types say more
        if not drift.usable and ignored.get(drift.name) not in (None, "excluded", "not selected"):
            ignored[drift.name] = drift.problem()
    if not feature_names:
        raise SchemaError(f"no feature column is usable in every file: {'; '.join(drifted.values())}")
    units, row_group_rows = _build_units(metadata, max_unit_rows)
    if not units:
        raise DataError(f"the dataset {_describe_source(source)} has no rows")
    footers = FooterCache(_footer_capacity(metadata, filesystem))
    for source, footer in enumerate(metadata[:footers.capacity]):
        footers.put(source, footer)
    return Dataset(sources=files, schema=schema, feature_names=feature_names, target=target, units=units,
                   filesystem=filesystem, partition_values=partitions, ignored_columns=ignored,
                   row_group_rows=row_group_rows, categorical=categorical, footers=footers, open_files=open_files,
                   schema_drift=merged.drift)


# ---------------------------------------------------------------------------------------------------------------
# Resolving what the user named into files
# ---------------------------------------------------------------------------------------------------------------

def list_files(source: Any, storage_options: dict | None = None) -> list[str]:
    """The files a path, glob, directory or list of paths names, objects in a store as URIs (empty for in-memory
    sources)."""
    if isinstance(source, (str, os.PathLike, list, tuple)):
        files, filesystem, _ = _resolve_files(source, storage_options)
        return [uri_of(filesystem, f) for f in files]
    return []


def _describe_source(source: Any) -> str:
    if isinstance(source, (list, tuple)):
        return f"[{len(source)} paths]"
    return str(source)


def _resolve_files(source: Any, storage_options: dict | None = None) -> tuple[list[str], Any, list[dict[str, Any]]]:
    """Return (files, filesystem, hive partition values per file); URIs are opened with ``storage_options``."""
    # A pyarrow dataset exists only if its module is loaded: importing it here would load pandas (50 MB, 0.4 s)
    pads = sys.modules.get("pyarrow.dataset")
    if pads is not None and isinstance(source, pads.FileSystemDataset):
        files, parts = [], []
        for fragment in source.get_fragments():
            files.append(fragment.path)
            parts.append(dict(pads.get_partition_keys(fragment.partition_expression)))
        if not files:
            raise DataError("the pyarrow dataset has no files")
        return files, source.filesystem, parts
    if isinstance(source, (str, os.PathLike)):
        paths = [os.fspath(source)]
    elif isinstance(source, (list, tuple)):
        if not source:
            raise DataError("the list of paths is empty")
        paths = [os.fspath(p) for p in source]
    else:
        raise DataError(f"cannot read data from a {type(source).__name__}; give a path, a glob, a list of paths, "
                        "a pyarrow dataset or a dask DataFrame")
    files: list[str] = []
    filesystem = None
    for path in paths:
        found, fs = _expand_path(path, storage_options)
        if filesystem is not None and fs is not None and type(fs) is not type(filesystem):
            raise DataError(f"{path} is on another filesystem than the other paths")
        filesystem = filesystem or fs
        files.extend(found)
    duplicates = {f for f in files if files.count(f) > 1}
    if duplicates:
        raise DataError(f"the file {sorted(duplicates)[0]} is named more than once")
    return files, filesystem, [_hive_values(f) for f in files]


def _expand_path(path: str, storage_options: dict | None = None) -> tuple[list[str], Any]:
    location = resolve(path, storage_options)
    if not location.is_local:
        return _expand_uri(location)
    path = location.path
    if _GLOB_CHARS.search(path):
        found = sorted(p for p in globlib.glob(path, recursive=True) if os.path.isfile(p))
        if not found:
            raise DataError(f"no file matches the pattern {path}")
        return found, None
    if os.path.isdir(path):
        found, skipped = [], []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            for name in sorted(names):
                if _is_data_file(name):
                    file = os.path.join(root, name)
                    (found if _is_regular_parquet(file, name) else skipped).append(file)
        if skipped:
            shown = ", ".join(os.path.relpath(f, path) for f in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
            warnings.warn(f"{path}: {len(skipped)} file(s) without a name ending .parquet and without Parquet's "
                          f"PAR1 mark left out: {shown}", stacklevel=2)
        if not found:
            raise DataError(no_parquet_files_message(path))
        return found, None
    if not os.path.exists(path):
        raise DataError(f"no such file or directory: {path}")
    _check_regular(path)
    return [path], None


def _check_regular(path: str) -> None:
    """A named data path must be a regular file: reading a pipe or a device would wait forever or never end."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise DataError(f"{path} is not a regular file (a pipe, a device or a socket); give a Parquet file")


def _is_regular_parquet(file: str, name: str) -> bool:
    """Whether a file found in a directory is data: regular (else a DataError), and, without a Parquet suffix
    (Hive and Hadoop write ``000000_0``, ``part-00000``), starting with Parquet's mark ``PAR1``."""
    _check_regular(file)
    if name.endswith(PARQUET_SUFFIXES):
        return True
    try:
        with open(file, "rb") as stream:
            return stream.read(4) == b"PAR1"
    except OSError:
        return True  # unreadable: opening it says why, naming the file


def _expand_uri(location: Location) -> tuple[list[str], Any]:
    """The files an object, a prefix or a glob in an object store names (paths inside its filesystem); listed
    with few retries, so that a wrong endpoint, bucket or credential is said at once. A prefix is found by a
    listing even when its own key's HeadObject is refused (``storage.file_or_prefix``)."""
    inner = location.path
    pattern = None
    if _GLOB_CHARS.search(inner):
        pattern, inner = inner, _GLOB_CHARS.split(inner, 1)[0].rsplit("/", 1)[0]
    kind, entries = file_or_prefix(Location(location.uri, inner, quick(location).filesystem))
    if kind == pafs.FileType.NotFound:
        raise DataError(f"no such file or directory: {location.uri}")
    if kind == pafs.FileType.Directory:
        found = sorted(i.path for i in entries if i.type == pafs.FileType.File and _is_data_file(i.path)
                       and (pattern is None or fnmatch.fnmatchcase(i.path, pattern)))
        if not found:
            raise DataError(f"no file matches the pattern {location.uri}" if pattern else
                            f"the directory {location.uri} holds no Parquet files")
        return found, location.filesystem
    return [inner], location.filesystem


def _is_data_file(path: str) -> bool:
    name = os.path.basename(path)
    if name.startswith((".", "_")):
        return False
    return name.endswith(PARQUET_SUFFIXES) or "." not in name


def _hive_values(path: str) -> dict[str, Any]:
    """Hive partition values encoded in the directories of a path (``year=2024/...``)."""
    values: dict[str, Any] = {}
    for part in path.replace("\\", "/").split("/")[:-1]:
        if "=" in part:
            key, _, raw = part.partition("=")
            if key:
                values[key] = _parse_partition_value(raw)
    return values


def _parse_partition_value(raw: str) -> Any:
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


# ---------------------------------------------------------------------------------------------------------------
# Footers, schema, columns
# ---------------------------------------------------------------------------------------------------------------

def open_parquet_file(path: str, filesystem: Any = None, mapped: bool = False, open_files: OpenFiles | None = None,
                      **options: Any) -> pq.ParquetFile | MappedParquetFile:
    """Open one Parquet file, turning pyarrow's errors into a DataError that names the file. ``mapped``: read a
    local file through a memory map (see ``streamgd.io.mapped``) where the platform allows it; ``open_files``: keep
    a remote file open there, for the passes that read it later."""
    try:
        if mapped and can_map(path, filesystem):
            return MappedParquetFile(path, metadata=options.get("metadata"),
                                     read_dictionary=options.get("read_dictionary"))
        if open_files is not None and is_remote(filesystem):
            return pq.ParquetFile(open_files.open(path, filesystem), **options)
        if filesystem is not None:
            handle = filesystem.open_input_file(path)
            return pq.ParquetFile(handle, **options)
        return pq.ParquetFile(path, **options)
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except OSError as exc:
        if filesystem is not None and is_store_error(exc):  # not the file's fault: the store failed or refused
            raise storage_error(exc, "read", uri_of(filesystem, path)) from None
        raise DataError(other_format_hint(path, filesystem)
                        or f"{path} is not a readable Parquet file ({first_line(exc)})") from None
    except (pa.ArrowInvalid, ValueError) as exc:
        raise DataError(other_format_hint(path, filesystem)
                        or f"{path} is not a readable Parquet file ({first_line(exc)})") from None


def _footer_capacity(metadata: list[pq.FileMetaData], filesystem: Any) -> int:
    """Footers a dataset keeps parsed: 8 files' for local files (parsing one again costs little), every file's
    for remote ones while they are small (reading one again costs a request), so a run reads each footer once."""
    if is_remote(filesystem) and sum(m.serialized_size for m in metadata) <= REMOTE_FOOTER_BYTES:
        return max(FooterCache().capacity, len(metadata))
    return FooterCache().capacity


def _read_footer(path: str, filesystem: Any, open_files: OpenFiles | None = None) -> pq.FileMetaData:
    return open_parquet_file(path, filesystem, open_files=open_files).metadata


def _read_footers(files: list[str], filesystem: Any, known: FooterCache | None = None,
                  open_files: OpenFiles | None = None) -> list[pq.FileMetaData]:
    def footer(index: int) -> pq.FileMetaData:
        cached = known.get(index) if known is not None else None
        return cached if cached is not None else _read_footer(files[index], filesystem, open_files)

    if len(files) <= 4:
        return [footer(i) for i in range(len(files))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(footer, range(len(files))))


def _partition_type(values: list[Any]) -> pa.DataType:
    if all(isinstance(v, int) for v in values):
        return pa.int64()
    if all(isinstance(v, (int, float)) for v in values):
        return pa.float64()
    return pa.string()


def _merged_schema(files: list[str], schema: pa.Schema, partitions: list[dict]) -> pa.Schema:
    """The files' reconciled schema, then the hive partition keys that no file stores."""
    keys = [k for k in partitions[0] if k not in schema.names] if partitions else []
    for key in keys:
        values = [p.get(key) for p in partitions]
        if any(v is None for v in values):
            missing = files[values.index(None)]
            raise SchemaError(f"the partition column {key!r} is missing from the path of {missing}")
        schema = schema.append(pa.field(key, _partition_type(values)))
    return schema


def _build_units(metadata: list[pq.FileMetaData], max_unit_rows: int | None) -> tuple[list[Unit], list[list[int]]]:
    units: list[Unit] = []
    row_group_rows: list[list[int]] = []
    position = 0
    for source, meta in enumerate(metadata):
        rows = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        row_group_rows.append(rows)
        for group, n in enumerate(rows):
            step = n if not max_unit_rows else max_unit_rows
            for offset in range(0, n, max(step, 1)):
                count = min(step, n - offset)
                units.append(Unit(source, group, offset, count, position))
                position += count
    return units, row_group_rows


# ---------------------------------------------------------------------------------------------------------------
# In-memory tables: slices of ``unit_rows`` rows are the units (as row groups of that size would be)
# ---------------------------------------------------------------------------------------------------------------

DEFAULT_TABLE_UNIT_ROWS = 65_536


def open_table(table: pa.Table, target: str | None = None, features: Sequence[str] | None = None,
               unit_rows: int = DEFAULT_TABLE_UNIT_ROWS, allow_string_target: bool = True,
               categorical: Sequence[str] = (), exclude: Sequence[str] = (),
               sparse: SparseBlock | None = None) -> Dataset:
    """A dataset over an in-memory Arrow table, cut into units of ``unit_rows`` rows: the same units, and so the
    same plans, as a Parquet file of the same rows written with row groups of ``unit_rows``.

    ``sparse``: more features, as a sparse matrix of the table's rows (a ``streamgd.data.sparse_block.SparseBlock``, from
    ``SparseBlock.from_csr``): each chunk's sparse block is the rows of its units, in the chunk's row order, and
    nothing is ever rows x columns. Its columns follow the table's ``features`` (which may then be ``[]``).

    >>> import numpy as np
    >>> X = SparseBlock.from_fixed(np.array([[1], [0], [2]]), np.array([[2.0], [1.0], [3.0]]), n_slots=3)
    >>> data = open_table(pa.table({"y": [1.0, 0.0, 1.0]}), target="y", features=[], unit_rows=2, sparse=X)
    >>> [u.n_rows for u in data.units], data.n_slots, list(data.model_feature_names)
    ([2, 1], 3, ['x0', 'x1', 'x2'])
    """
    if unit_rows < 1:
        raise DataError(f"unit_rows must be at least 1, got {unit_rows}")
    if sparse is not None:
        if sparse.n_rows != table.num_rows:
            raise DataError(f"the sparse matrix has {sparse.n_rows} rows and the table {table.num_rows}")
        if categorical:
            raise ConfigError("a sparse matrix's columns cannot be combined with categorical columns; encode them "
                              "into the sparse matrix (sklearn.feature_extraction.FeatureHasher, for example)")
    check_unique_names("the table", table.schema)
    feature_names, ignored, categorical = resolve_columns(table.schema, target, features, "the table",
                                                           allow_string_target, categorical, exclude,
                                                           allow_no_features=sparse is not None)
    sizes = [min(unit_rows, table.num_rows - start) for start in range(0, table.num_rows, unit_rows)]
    if not sizes:
        raise DataError("the table has no rows")
    units = [Unit(0, index, 0, n, index * unit_rows) for index, n in enumerate(sizes)]
    return Dataset(sources=["<in-memory table>"], schema=table.schema, feature_names=feature_names, target=target,
                   units=units, partition_values=[{}], ignored_columns=ignored, row_group_rows=[sizes],
                   table=table, categorical=categorical, sparse=sparse)


# ---------------------------------------------------------------------------------------------------------------
# dask DataFrames: each partition is a unit
# ---------------------------------------------------------------------------------------------------------------

def _is_dask_frame(source: Any) -> bool:
    module = type(source).__module__
    return module.startswith("dask") and hasattr(source, "npartitions") and hasattr(source, "get_partition")


def _open_dask(frame: Any, target: str | None, features: Sequence[str] | None,
               allow_string_target: bool, categorical: Sequence[str] = (), exclude: Sequence[str] = ()
               ) -> Dataset:
    empty = frame._meta
    schema = pa.Schema.from_pandas(empty, preserve_index=False)
    feature_names, ignored, categorical = resolve_columns(schema, target, features, "the dask DataFrame",
                                                           allow_string_target, categorical, exclude)
    lengths = frame.map_partitions(len).compute()
    units, position = [], 0
    for index, n in enumerate(lengths):
        if n:
            units.append(Unit(0, index, 0, int(n), position))
            position += int(n)
    if not units:
        raise DataError("the dask DataFrame has no rows")
    return Dataset(sources=["<dask DataFrame>"], schema=schema, feature_names=feature_names, target=target,
                   units=units, partition_values=[{}], ignored_columns=ignored, dask_frame=frame,
                   row_group_rows=[[int(n) for n in lengths]], categorical=categorical)
