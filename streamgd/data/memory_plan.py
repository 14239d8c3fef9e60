"""What a memory budget bounds, and the unit size that keeps a run within it.

``--memory-budget B`` bounds the data plane: the bytes a run holds for the data it streams, above what the
process holds with zero rows (the interpreter, the libraries, compiled kernels and the model). In flight at once:

* the chunks: ``prefetch_depth`` finished chunks in the queue, the one trained on, the one being built (its
  Arrow columns as decoded, at the schema's widths, plus the NumPy copy), each with its dense block, sparse block
  (one int32 slot and one float64 value per categorical column and interaction, and the row pointers) and target;
* the source pages of the row group being decoded (its compressed column chunks, mapped or read), or with an
  epoch cache, the mapped arrays of the unit being gathered (one chunk's worth);
* for remote data, the row groups fetched ahead and not yet decoded: a quarter of the budget
  (``fetch_ahead_bytes``);
* the page buffers of a row group read in slices: a row group larger than a unit is streamed column by column,
  and each column's reader holds its dictionary page and a data page compressed and decompressed, whatever the
  slice (a few MB a column: benchmarks/README.md, "Figures quoted by the code"). That is fixed by the file, not by the budget: a budget
  below it is refused.

When row groups are read in slices, a fifth of the budget is kept back (``ALLOCATOR_SHARE``) for what the
allocators hold of freed buffers and for what the estimates above miss on a given machine: with the whole
budget planned, a 2M-row file written as one row group and read in slices (``tests/test_memory.py``) went over
the budget on one machine and not on another, with the same code and packages (benchmarks/README.md, "Figures quoted by the code").

The budget does not bound the model and its optimizer state (``streamgd fit`` checks those against the memory
available) nor the statistics pass, which reads one row group at a time on one thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..io.storage import is_remote

# a data page as written by pyarrow, parquet-mr and most writers (their default page size)
ASSUMED_PAGE_BYTES = 1 << 20
# a sliced column's reader holds the dictionary page and about three data pages' worth (measured above)
PAGES_HELD_PER_COLUMN = 3
# the fewest rows a unit is cut to
MIN_UNIT_ROWS = 1024
# the share of a budget left to what allocators keep after freeing and to what varies between machines
ALLOCATOR_SHARE = 0.2
MB = 10**6


@dataclass(frozen=True)
class MemoryPlan:
    """A budget's shares: the fixed page buffers of sliced row groups, and the rows per unit the rest allows."""

    budget: int
    bytes_per_row: int  # what one row of a unit costs in flight (all copies)
    slice_buffers: int  # page buffers held while a row group larger than a unit is read in slices
    max_unit_rows: int
    fetch_ahead: int = 0  # remote data: bytes fetched ahead and not yet decoded at most
    reserve: int = 0  # kept back for what allocators hold after freeing, when row groups are read in slices

    def describe(self) -> str:
        """One line: how the budget is spent."""
        sliced = (f", {self.slice_buffers / MB:,.0f} MB of page buffers for row groups read in slices"
                  if self.slice_buffers else "")
        if self.fetch_ahead:
            sliced += f", {self.fetch_ahead / MB:,.0f} MB for remote row groups fetched ahead"
        if self.reserve:
            sliced += f", {self.reserve / MB:,.0f} MB kept back for the allocators"
        return (f"memory budget {self.budget / MB:,.0f} MB: units of at most {self.max_unit_rows:,} rows "
                f"({self.bytes_per_row:,} bytes a row in flight){sliced}")


def bytes_per_row(n_dense: int, itemsize: int, prefetch_depth: int, sparse_per_row: int = 0,
                  source_bytes_per_row: float = 0.0, decoded_bytes_per_row: float | None = None) -> int:
    """The bytes one row of a unit costs while chunks are in flight (see the module docstring);
    ``decoded_bytes_per_row``: a row of the Arrow columns as decoded (None: 8 bytes a column, 16 a text one).

    >>> bytes_per_row(32, 4, 2)
    808
    """
    chunk = n_dense * itemsize + 8 + (sparse_per_row * 12 + 8 if sparse_per_row else 0)
    decoded = (n_dense + 1 + 2 * sparse_per_row) * 8 if decoded_bytes_per_row is None else decoded_bytes_per_row
    return int((prefetch_depth + 2) * chunk + np.ceil(decoded) + np.ceil(source_bytes_per_row))


def decoded_bytes_per_row(schema, columns: Sequence[str]) -> float:
    """A row of ``columns`` as Arrow holds them decoded: the fixed width of each type, 16 bytes for text and
    anything else of variable width (offsets and a short value), plus a validity bit.

    >>> import pyarrow as pa
    >>> decoded_bytes_per_row(pa.schema([("x", pa.float32()), ("y", pa.int64()), ("c", pa.string())]), ["x", "y", "c"])
    28.375
    """
    total = 0.0
    for name in columns:
        kind = schema.field(name).type
        try:
            total += kind.bit_width / 8
        except ValueError:  # variable width
            total += 16
        total += 1 / 8
    return total


def slice_buffer_bytes(footer, columns: Sequence[str]) -> int:
    """The page buffers a reader holds while streaming slices of the largest row group of a file (its footer):
    per column read, the dictionary page (uncompressed) and ``PAGES_HELD_PER_COLUMN`` data pages. No footer
    (an in-memory table, a dask partition): slices are views of what is already in memory, 0."""
    if footer is None or footer.num_row_groups == 0:
        return 0
    wanted = set(columns)
    largest = max(range(footer.num_row_groups), key=lambda i: footer.row_group(i).num_rows)
    group = footer.row_group(largest)
    total = 0
    for j in range(group.num_columns):
        column = group.column(j)
        if column.path_in_schema not in wanted:
            continue
        ratio = column.total_uncompressed_size / max(column.total_compressed_size, 1)
        dictionary = 0
        if column.has_dictionary_page and column.dictionary_page_offset is not None:
            dictionary = int((column.data_page_offset - column.dictionary_page_offset) * ratio)
        pages = min(ASSUMED_PAGE_BYTES, column.total_uncompressed_size)
        # never more than the column chunk itself, compressed and decompressed
        total += min(dictionary + PAGES_HELD_PER_COLUMN * pages,
                     column.total_uncompressed_size + column.total_compressed_size)
    return total


def plan_memory(budget: int, row_group_rows: Sequence[Sequence[int]], footers: Sequence, columns: Sequence[str],
                n_dense: int, itemsize: int, prefetch_depth: int, units_per_step: int = 1,
                sparse_per_row: int = 0, source: str = "the data", decoded_per_row: float | None = None,
                reserve: int | None = None) -> MemoryPlan:
    """The unit size that keeps the chunks in flight, and the page buffers of row groups read in slices, within
    ``budget`` bytes; a ConfigError (one line) when the file's page buffers alone leave no room.

    ``row_group_rows`` and ``footers``: per source file (a footer may be None where unknown); ``columns``: the
    columns read; ``sparse_per_row``: the sparse entries of a row (categorical columns and interactions);
    ``reserve``: bytes of the budget kept back when row groups are sliced (None: ``ALLOCATOR_SHARE`` of it).
    """
    reserve = int(budget * ALLOCATOR_SHARE) if reserve is None else reserve
    source_per_row = _source_bytes_per_row(footers, columns)
    per_row = bytes_per_row(n_dense, itemsize, prefetch_depth, sparse_per_row, source_per_row,
                            decoded_per_row) * units_per_step
    # a row group is a unit when its rows fit the whole budget: slicing it to keep the reserve back would cost
    # more than it saves, in memory and in time, for the page buffers a sliced row group holds
    # (benchmarks/README.md, "Figures quoted by the code")
    rows = max(MIN_UNIT_ROWS, int(budget // per_row))
    sliced = [i for i, groups in enumerate(row_group_rows) if groups and max(groups) > rows]
    if not sliced:
        return MemoryPlan(budget, per_row, 0, rows)
    buffers = max(slice_buffer_bytes(footers[i] if i < len(footers) else None, columns) for i in sliced)
    left = budget - reserve - buffers
    if left < MIN_UNIT_ROWS * per_row:
        need = (buffers + 16 * MIN_UNIT_ROWS * per_row) / (1 - reserve / budget)  # the reserve grows with it
        largest = max(max(row_group_rows[i]) for i in sliced)
        raise ConfigError(f"the memory budget {budget / MB:,.0f} MB is below what reading {source} needs: its "
                          f"row groups of up to {largest:,} rows are read in slices, and the page buffers of "
                          f"{len(columns)} columns hold about {buffers / MB:,.0f} MB whatever the slice; give "
                          f"--memory-budget {np.ceil(need / MB):.0f}MB or more, or rewrite it with smaller row "
                          "groups (65,536 rows, say)")
    return MemoryPlan(budget, per_row, buffers, max(MIN_UNIT_ROWS, int(left // per_row)), reserve=reserve)


def _source_bytes_per_row(footers: Sequence, columns: Sequence[str]) -> float:
    """The compressed bytes a row of the columns read takes in the file (the largest over the files): the source
    pages of the row group being decoded."""
    wanted = set(columns)
    worst = 0.0
    for footer in footers:
        if footer is None:
            continue
        for i in range(footer.num_row_groups):
            group = footer.row_group(i)
            if group.num_rows == 0:
                continue
            size = sum(group.column(j).total_compressed_size for j in range(group.num_columns)
                       if group.column(j).path_in_schema in wanted)
            worst = max(worst, size / group.num_rows)
    return worst


def fetch_ahead_bytes(budget: int | None) -> int | None:
    """What remote row groups fetched ahead may hold under a budget: a quarter of it (None: no budget, the
    reader's default).

    >>> fetch_ahead_bytes(64_000_000), fetch_ahead_bytes(None)
    (16000000, None)
    """
    return None if budget is None else budget // 4


def plan_for_dataset(budget: int, dataset, itemsize: int, prefetch_depth: int, units_per_step: int = 1,
                     sparse_columns: Sequence[str] = (), n_interactions: int = 0, cached: bool = False
                     ) -> MemoryPlan:
    """``plan_memory`` for an opened dataset (``streamgd.data.dataset.Dataset``): the features it reads, its target,
    and ``sparse_columns`` (categorical features) plus ``n_interactions`` in the sparse block; ``cached``: an
    epoch cache's mapped unit is in flight too (one prefetched chunk more)."""
    sparse = [name for name in sparse_columns if name in dataset.feature_names]
    columns = list(dataset.feature_names) + ([dataset.target] if dataset.target else [])
    footers = [dataset.footers.get(i) for i in range(len(dataset.sources))]
    fetch = fetch_ahead_bytes(budget) if is_remote(dataset.filesystem) else 0
    reserve = int(budget * ALLOCATOR_SHARE)
    plan = plan_memory(budget - fetch, dataset.row_group_rows, footers, columns, dataset.n_features - len(sparse),
                       itemsize, prefetch_depth + int(cached), units_per_step, len(sparse) + n_interactions,
                       source=dataset.sources[0] if len(dataset.sources) == 1 else "the data",
                       decoded_per_row=decoded_bytes_per_row(dataset.schema, columns), reserve=reserve)
    return dataclasses.replace(plan, budget=budget, fetch_ahead=fetch)
