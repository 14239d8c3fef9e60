"""Units of a dataset read as Arrow tables: whole row groups, slices of big ones, rows of an in-memory table or a
dask partition, from local files or an object store, each column at the dataset's type whatever width a file
stores it at (``streamgd.data.schema``). Every pass over the data (statistics, targets, training, prediction)
reads through it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..io.storage import first_line, is_remote
from .dataset import Dataset, Unit, open_parquet_file
from .remote_reads import ReadStats, RemoteRowGroups
from .schema import cast_to

REMOTE_STREAM_BUFFER = 1 << 20  # per column, reading slices of a remote row group: each refill is a request


class UnitTableReader:
    """Reads units of one dataset as Arrow tables; keeps a few files open. Use from one thread at a time.

    Whole row groups are read with ``read_row_group``, from a memory map for local files (``streamgd.io.mapped``:
    no copy out of the page cache, and the pages go back after each row group). Slices of a big row group are read
    from a streaming ``iter_batches`` cursor over unbuffered column chunks, which is what bounds memory: a plan
    visits the slices of a row group in order, so the cursor only moves forward.

    Remote files (object stores) are read through ``streamgd.data.remote_reads``: a row group's column chunks in one
    or a few range requests, fetched ``read_ahead`` (the units in the order they will be read) ahead on threads,
    each request counted in ``read_stats``; ``fetch_bytes`` bounds what is fetched and not yet read.
    """

    def __init__(self, dataset: Dataset, columns: Sequence[str], max_open_files: int = 8,
                 read_ahead: Sequence[Unit] | None = None, read_stats: ReadStats | None = None,
                 fetch_bytes: int | None = None, dictionary_columns: Sequence[str] = ()):
        self.dataset = dataset
        self.columns = list(columns)
        # text columns read from local Parquet files as dictionaries (``streamgd.data.dictionary_slots``): a row
        # group's column is then indices and one dictionary, not a string per row
        self.dictionary_columns = [c for c in dictionary_columns if c in self.columns]
        self.max_open_files = max_open_files
        self._files: dict[int, pq.ParquetFile] = {}
        self._cursor: tuple[tuple[int, int], int, Any, list[pa.RecordBatch]] | None = None
        self.remote: RemoteRowGroups | None = None
        if is_remote(dataset.filesystem) and dataset.table is None and dataset.dask_frame is None:
            rows = dataset.row_group_rows
            order = None if read_ahead is None else [  # whole row groups only: slices stream
                u.group_key for u in read_ahead if u.offset == 0 and u.n_rows == rows[u.source][u.row_group]]
            self.remote = RemoteRowGroups(dataset.sources, dataset.filesystem, dataset.footers,
                                          lambda source: self._split_columns(source)[0], order, read_stats,
                                          fetch_bytes, open_files=dataset.open_files)

    def read(self, unit: Unit) -> pa.Table:
        """The unit's rows of the projected columns (partition columns filled in)."""
        data = self.dataset
        if data.dask_frame is not None:
            return self._read_dask(unit)
        if data.table is not None:
            return data.table.select(self.columns).slice(unit.first_row, unit.n_rows)
        file_columns, partition_columns = self._split_columns(unit.source)
        size = data.row_group_rows[unit.source][unit.row_group]
        try:
            if unit.offset == 0 and unit.n_rows == size:
                if self.remote is not None:
                    table = self.remote.read_row_group(unit.source, unit.row_group, file_columns)
                else:
                    table = self._file(unit.source).read_row_group(unit.row_group, columns=file_columns,
                                                                   use_threads=True)
            else:
                table = self._read_slice(unit, file_columns)
        except DataError:
            raise
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(f"cannot read row group {unit.row_group} of {data.sources[unit.source]} "
                            f"({first_line(exc)})") from None
        if table.num_rows != unit.n_rows:
            raise DataError(f"row group {unit.row_group} of {data.sources[unit.source]} has {table.num_rows} rows, "
                            f"its footer says {unit.n_rows}")
        if data.schema_drift:  # a column stored at another width in this file: read at the dataset's type
            table = cast_to(table, self._read_schema(table))
        for name in partition_columns:
            value = data.partition_values[unit.source][name]
            table = table.append_column(name, pa.array([value] * unit.n_rows, type=data.schema.field(name).type))
        return table.select(self.columns)

    def close(self) -> None:
        self._files.clear()
        self._cursor = None
        if self.remote is not None:
            self.remote.close()

    def _read_schema(self, table: pa.Table) -> pa.Schema:
        """The dataset's schema, but a column read as a dictionary keeps its dictionary type (its values are the
        text the dataset's type holds: casting it back would decode every row)."""
        schema = self.dataset.schema
        for name in self.dictionary_columns:
            if name in table.column_names and pa.types.is_dictionary(table.schema.field(name).type):
                schema = schema.set(schema.get_field_index(name), table.schema.field(name))
        return schema

    def _split_columns(self, source: int) -> tuple[list[str], list[str]]:
        partitions = self.dataset.partition_values[source] if self.dataset.partition_values else {}
        file_columns = [c for c in self.columns if c not in partitions]
        return file_columns, [c for c in self.columns if c in partitions]

    def _file(self, source: int, streaming: bool = False) -> pq.ParquetFile:
        key = -source - 1 if streaming else source
        handle = self._files.get(key)
        if handle is None:
            if len(self._files) >= self.max_open_files:
                self._files.pop(next(iter(self._files)))
            # slices stream each column through its own buffer: 64 KiB each, not 1 MiB (1 MiB buffers were most of
            # the slice reader's memory, and slower: benchmarks/README.md, "Figures quoted by the code")
            if streaming and self.remote is not None:  # a request per refill: buffers of 1 MiB, not 64 KiB
                handle = self._files[key] = self.remote.streaming_file(source, REMOTE_STREAM_BUFFER)
                return handle
            options = {"pre_buffer": False, "buffer_size": 1 << 16} if streaming else {"mapped": True}
            cached = footer = self.dataset.footers.get(source)
            if footer is None and self.dictionary_columns:  # which of them the file has: its footer says
                footer = open_parquet_file(self.dataset.sources[source], self.dataset.filesystem).metadata
            if self.dictionary_columns:  # pyarrow refuses a name the file does not hold (a partition key)
                names = set(footer.schema.names)
                options["read_dictionary"] = [c for c in self.dictionary_columns if c in names] or None
            handle = open_parquet_file(self.dataset.sources[source], self.dataset.filesystem, metadata=footer,
                                       **options)
            if cached is None:
                self.dataset.footers.put(source, handle.metadata)
            self._files[key] = handle
        return handle

    def _read_slice(self, unit: Unit, columns: list[str]) -> pa.Table:
        if self._cursor is None or self._cursor[0] != unit.group_key or self._cursor[1] != unit.offset:
            handle = self._file(unit.source, streaming=True)
            if self.remote is not None:  # its column chunks fetched now if they fit the fetch budget
                self.remote.hold(unit.source, unit.row_group)
                self.remote.stats.add_row_group()
            batches = handle.iter_batches(batch_size=unit.n_rows, row_groups=[unit.row_group], columns=columns,
                                          use_threads=False)
            self._cursor = (unit.group_key, 0, batches, [])
            self._skip_to(unit.offset)
        key, position, batches, pending = self._cursor
        taken: list[pa.RecordBatch] = []
        needed = unit.n_rows
        while needed > 0:
            batch = pending.pop(0) if pending else next(batches, None)
            if batch is None:
                break
            if batch.num_rows > needed:
                pending.insert(0, batch.slice(needed))
                batch = batch.slice(0, needed)
            taken.append(batch)
            needed -= batch.num_rows
        self._cursor = (key, position + unit.n_rows, batches, pending)
        if needed > 0:
            raise DataError(f"row group {unit.row_group} of {self.dataset.sources[unit.source]} ended after "
                            f"{unit.offset + unit.n_rows - needed} rows, its footer says more")
        return pa.Table.from_batches(taken)

    def _skip_to(self, offset: int) -> None:
        key, position, batches, pending = self._cursor
        while position < offset:
            batch = next(batches, None)
            if batch is None:
                break
            if position + batch.num_rows > offset:
                pending.append(batch.slice(offset - position))
                position = offset
            else:
                position += batch.num_rows
        self._cursor = (key, position, batches, pending)

    def _read_dask(self, unit: Unit) -> pa.Table:
        frame = self.dataset.dask_frame.get_partition(unit.row_group)[self.columns].compute()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        return table.slice(unit.offset, unit.n_rows)
