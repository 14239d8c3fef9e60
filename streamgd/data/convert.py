"""CSV and JSON lines files to Parquet, streamed: what streamgd reads is Parquet, and a text file is converted
once, in memory bounded by a few row groups whatever the file's size.

The text is read in blocks by pyarrow's streaming readers (``pyarrow.csv.open_csv``, ``pyarrow.json.open_json``),
which infer each column's type from the first block; the rows are written as row groups of ``row_group_size``
rows to a temporary file renamed over the output at the end, so a failed conversion leaves no half-written file.

>>> import os, tempfile, pyarrow.parquet as pq
>>> folder = tempfile.mkdtemp()
>>> with open(os.path.join(folder, "d.csv"), "w") as f:
...     _ = f.write("x,label\\n0.5,1\\n1.5,0\\n2.5,1\\n")
>>> result = convert(os.path.join(folder, "d.csv"), os.path.join(folder, "d.parquet"), row_group_size=2)
>>> result.rows, result.row_groups, pq.read_table(result.output).column("x").to_pylist()
(3, 2, [0.5, 1.5, 2.5])
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..errors import ConfigError, DataError
from ..io.atomic import atomic_write
from ..io.outputs import check_output_file
from ..io.storage import first_line, is_remote

DEFAULT_ROW_GROUP_SIZE = 65_536
DEFAULT_BLOCK_SIZE = 1 << 20  # bytes of text per block the readers parse (and infer types from, the first one)
FORMATS = ("csv", "tsv", "json")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "json", ".jsonl": "json", ".ndjson": "json"}
_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}
_NAMES = {"csv": "a CSV file", "tsv": "a tab-separated file", "json": "a JSON lines file"}


@dataclass
class ConvertResult:
    """What a conversion wrote: ``rows`` in ``row_groups`` row groups, with ``schema``, to ``output``."""

    output: str
    rows: int
    row_groups: int
    schema: pa.Schema
    bytes_read: int


def text_format(path: str | os.PathLike, sniff: bool = True) -> str | None:
    """``"csv"``, ``"tsv"`` or ``"json"`` for a text table (its suffix, a compression suffix aside; else, with
    ``sniff``, its first bytes when it is a local file and not Parquet), or None."""
    base, compression = _split_compression(os.fspath(path))
    found = _SUFFIXES.get(os.path.splitext(base)[1].lower())
    if found is not None or not sniff or compression is not None or not os.path.isfile(path):
        return found
    try:
        with open(path, "rb") as stream:
            head = stream.read(4096)
    except OSError:
        return None
    if head[:4] == b"PAR1" or b"\0" in head:
        return None
    first = head.split(b"\n", 1)[0].strip()
    if first.startswith(b"{"):
        return "json"
    if b"\t" in first:
        return "tsv"
    return "csv" if b"," in first else None


def other_format_hint(path: str | os.PathLike, filesystem: Any = None) -> str | None:
    """The one-line answer for a CSV or JSON lines file given where Parquet is read: what it is and the command
    that converts it (None when it is not one). Only the suffix is looked at for a file in an object store."""
    kind = text_format(path, sniff=filesystem is None or not is_remote(filesystem))
    if kind is None:
        return None
    return (f"{path} is {_NAMES[kind]}, and streamgd reads Parquet: convert it once with "
            f"`streamgd convert {path} {_stem(path)}.parquet` (streamed, in bounded memory)")


def no_parquet_files_message(directory: str) -> str:
    """The error for a local directory without Parquet files, naming its CSV or JSON lines files if any."""
    texts = sorted(os.path.join(root, n) for root, _, names in os.walk(directory) for n in names
                   if text_format(n, sniff=False))
    if not texts:
        return f"the directory {directory} holds no Parquet files"
    first = texts[0]
    return (f"the directory {directory} holds no Parquet files but {len(texts)} CSV or JSON lines file"
            f"{'s' if len(texts) > 1 else ''}: convert {'each' if len(texts) > 1 else 'it'} once with "
            f"`streamgd convert {first} {_stem(first)}.parquet`")


def convert(source: str | os.PathLike, out: str | os.PathLike, row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
            input_format: str | None = None, column_types: Mapping[str, Any] | None = None,
            block_size: int = DEFAULT_BLOCK_SIZE, delimiter: str | None = None,
            progress: Callable[[int, int, int], None] | None = None) -> ConvertResult:
    """Convert a CSV, tab-separated or JSON lines file (optionally gzip, bz2, zstd or lz4 compressed) to a
    Parquet file of row groups of ``row_group_size`` rows, streamed.

    ``input_format``: ``csv``, ``tsv`` or ``json`` (default: from the suffix or the first bytes);
    ``column_types``: name -> Arrow type (or its name, ``"float64"``) for the columns whose inferred type would be
    wrong; ``progress(rows, bytes_read, total_bytes)`` is called after each block. The output is written to a
    temporary file and renamed; an output that is the input is refused.
    """
    source, out = os.fspath(source), os.fspath(out)
    if is_remote(source) or is_remote(out):
        raise ConfigError("convert reads and writes local files; copy the file from the store first")
    if not os.path.isfile(source):
        raise DataError(f"no such file: {source}")
    if row_group_size < 1:
        raise ConfigError(f"the row group size must be at least 1, got {row_group_size}")
    if block_size < 1:
        raise ConfigError(f"the block size must be at least 1 byte, got {block_size}")
    kind = input_format or text_format(source)
    if kind not in FORMATS:
        raise DataError(f"{source} is neither CSV nor JSON lines (by its name and first bytes); give --format "
                        f"{'|'.join(FORMATS)}" if input_format is None else
                        f"unknown input format {input_format!r}; give one of {', '.join(FORMATS)}")
    types = {name: _arrow_type(name, kind) for name, kind in (column_types or {}).items()}
    out = check_output_file(out, [source], "the output")
    total = os.path.getsize(source)
    counted = _CountingReader(open(source, "rb"))  # noqa: SIM115 - closed below, after the reader that holds it
    result: dict[str, Any] = {}

    def report(rows: int) -> None:
        if progress is not None:
            progress(rows, counted.count, total)

    def write(temporary: str) -> None:
        reader = _open_reader(counted, source, kind, types, block_size, delimiter)
        result.update(_stream(reader, temporary, row_group_size, report, source))

    try:
        atomic_write(out, write)
    finally:
        counted.close()
    return ConvertResult(output=out, rows=result["rows"], row_groups=result["row_groups"], schema=result["schema"],
                         bytes_read=counted.count)


def _stem(path: str | os.PathLike) -> str:
    """The path without its text suffix and compression suffix (``d.csv.gz`` -> ``d``)."""
    base = _split_compression(os.fspath(path))[0]
    return os.path.splitext(base)[0] if os.path.splitext(base)[1].lower() in _SUFFIXES else base


def _split_compression(path: str) -> tuple[str, str | None]:
    base, suffix = os.path.splitext(path)
    codec = _COMPRESSION.get(suffix.lower())
    return (base, codec) if codec is not None else (path, None)


def _arrow_type(name: str, kind: Any) -> pa.DataType:
    if isinstance(kind, pa.DataType):
        return kind
    try:
        return pa.type_for_alias(str(kind))
    except (ValueError, KeyError):
        raise ConfigError(f"the type {kind!r} of the column {name!r} is not an Arrow type name such as float64, "
                          "int64, string, bool or timestamp[s]") from None


class _CountingReader(io.RawIOBase):
    """A binary file that counts the bytes read from it (the progress of a conversion, read by another thread
    than pyarrow's reading one: a plain int, updated under the GIL)."""

    def __init__(self, raw: io.BufferedReader):
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)
        self.count += n or 0
        return n

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data

    def close(self) -> None:
        self.raw.close()
        super().close()


def _open_reader(counted: _CountingReader, source: str, kind: str, types: dict[str, pa.DataType],
                 block_size: int, delimiter: str | None) -> Any:
    stream: Any = pa.PythonFile(counted, mode="r")
    codec = _split_compression(source)[1]
    if codec is not None:
        stream = pa.CompressedInputStream(stream, codec)
    try:
        if kind == "json":
            import pyarrow.json as pajson

            schema = pa.schema(list(types.items())) if types else None
            return pajson.open_json(stream, read_options=pajson.ReadOptions(block_size=block_size),
                                    parse_options=pajson.ParseOptions(explicit_schema=schema,
                                                                      unexpected_field_behavior="infer"))
        import pyarrow.csv as pacsv

        parse = pacsv.ParseOptions(delimiter=delimiter or ("\t" if kind == "tsv" else ","))
        return pacsv.open_csv(stream, read_options=pacsv.ReadOptions(block_size=block_size),
                              parse_options=parse, convert_options=pacsv.ConvertOptions(column_types=types))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read {source} as {_NAMES[kind]} ({first_line(exc)})") from None


def _stream(reader: Any, temporary: str, row_group_size: int, report: Callable[[int], Any],
            source: str) -> dict[str, Any]:
    """Write the reader's batches to ``temporary`` in row groups of ``row_group_size`` rows; only the rows of
    the row group being filled (and the block that fills it) are held."""
    import pyarrow.parquet as pq

    rows = groups = 0
    pending: list[pa.RecordBatch] = []
    held = 0
    with pq.ParquetWriter(temporary, reader.schema) as writer:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise DataError(f"{source}, in a block after row {rows + held:,}: {first_line(exc)}; the column types are "
                                "inferred from the first block: give --column-type NAME=TYPE (column_types=) "
                                "or a larger --block-size") from None
            pending.append(batch)
            held += batch.num_rows
            while held >= row_group_size:
                table = pa.Table.from_batches(pending, schema=reader.schema)
                writer.write_table(table.slice(0, row_group_size), row_group_size=row_group_size)
                rest = table.slice(row_group_size)
                pending, held = rest.to_batches(), rest.num_rows
                rows += row_group_size
                groups += 1
            report(rows + held)
        if held:
            writer.write_table(pa.Table.from_batches(pending, schema=reader.schema), row_group_size=row_group_size)
            rows += held
            groups += 1
    report(rows)
    return {"rows": rows, "row_groups": groups, "schema": reader.schema}
