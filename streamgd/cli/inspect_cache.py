"""``streamgd inspect --cache DIR``: what an epoch cache directory holds, per transform and per source file, and
whether each source still matches its units (a changed file's units are misses)."""

from __future__ import annotations

import os

from ..data.cache import FORMAT_VERSION, read_entries, source_state
from ..errors import ConfigError, StreamgdError
from ..features.stats_cache import STATS_DIR
from ..version import __version__


def describe_cache(directory: str) -> str:
    """What a cache directory holds: units, rows, bytes, per source file, per transform, and whether each source
    still matches (a changed file's units are misses)."""
    if not os.path.isdir(directory):
        raise ConfigError(f"--cache {directory}: no such directory")
    try:
        entries = read_entries(directory)
    except (TypeError, AttributeError):  # an index file holding JSON that is not an object
        raise ConfigError(f"--cache {directory}: an index entry in units/ is not a JSON object; the cache is "
                          "damaged (delete it: the next run with --cache rebuilds it)") from None
    damaged = [e for e in entries if not _well_formed(e)]
    entries = [e for e in entries if _well_formed(e)]
    units_dir = os.path.join(directory, "units")
    on_disk = sum(e.stat().st_size for e in os.scandir(units_dir)) if os.path.isdir(units_dir) else 0
    lines = [f"epoch cache {os.path.abspath(directory)} (format {FORMAT_VERSION} of streamgd {__version__})",
             f"  units: {len(entries):,}, rows: {sum(e['unit']['n_rows'] for e in entries):,}, "
             f"bytes: {on_disk:,}"]
    stats_dir = os.path.join(directory, STATS_DIR)
    passes = [n for n in os.listdir(stats_dir) if n.endswith(".json") and not n.startswith(".tmp-")] \
        if os.path.isdir(stats_dir) else []
    if damaged:
        lines.append(f"  damaged: {len(damaged)} index entries lacking fields (left out of this report)")
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


def _well_formed(entry: dict) -> bool:
    """Whether an index entry has the fields this report reads, of their types (a hand-edited or damaged one
    may lack them)."""
    unit, source = entry.get("unit"), entry.get("source")
    return (isinstance(unit, dict) and isinstance(unit.get("n_rows"), int) and isinstance(source, dict)
            and isinstance(source.get("path"), str) and isinstance(entry.get("size", 0), int)
            and isinstance(entry.get("context", "?"), str) and isinstance(entry.get("context_summary", {}), dict))


def _source_state(path: str, recorded: dict) -> str:
    try:
        return source_state(path, recorded)
    except StreamgdError:
        return "the file is gone"
