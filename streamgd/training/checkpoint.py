"""Checkpoints: everything a run needs to continue exactly where it stopped, in one safetensors file.

Tensors: the parameters, the optimizer state, the partial gradient sum of a full-batch epoch, the standardizer,
the best parameters so far (early stopping). JSON in the header: the cursor (epoch, next chunk of the epoch's
plan, global optimizer step, the epoch's partial loss and rows), the history, the training settings and a
fingerprint of the data (``fingerprint``: each file by its content, ``streamgd.io.fingerprint``), the run's
identity and a BLAKE2b checksum of the header and every tensor, verified on load.

Files are ``ckpt-<serial>-<run>.safetensors``, where the serial counts chunks trained since the start and ``run``
is the run's identity (kept by a run that resumes), written atomically; the newest ``keep`` of the run's own are
kept and no other run's is ever deleted, so runs can share a directory. A file that cannot be read or whose
checksum does not match (a crash while it was being written by something other than ``atomic_write``, a truncated
copy, flipped bits) is skipped with a warning, and the run's previous one is used. Resuming takes the newest
checkpoint written for the same data (older names, ``ckpt-<serial>.safetensors``, are read as a run of their own).

The directory may be a prefix in an object store (``s3://bucket/run/ckpt``): each checkpoint is then one object,
uploaded whole (the store shows it only once the upload completes), and only complete names count: nothing
else under the prefix (a probe, a temporary) is ever taken for the latest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import uuid
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, ModelFileError
from ..io.fingerprint import content_identity
from ..io.storage import Location, delete, list_names, resolve, uri_of
from ..io.tensorfile import c_order_pieces, read_tensor_file, write_tensor_file

if TYPE_CHECKING:  # read, never imported here: config.py imports this module
    from ..data.dataset import Dataset
    from .config import TrainConfig
    from .state import Run, TrainState

CHECKPOINT_FORMAT = "streamgd.training.checkpoint"
CHECKPOINT_VERSION = 2  # 2: a run identity, a checksum, data fingerprinted by content
_NAME = re.compile(r"ckpt-(\d+)(?:-([0-9a-f]{12}))?\.safetensors")


@dataclass
class Checkpoint:
    """The state of a run after ``serial`` chunks."""

    serial: int
    params: np.ndarray
    opt_state: np.ndarray
    cursor: dict  # epoch, next_chunk, step, epoch_loss_sum, epoch_rows(_skipped), epoch_y_sum, epoch_y_sq_sum
    history: list[dict]
    settings: dict
    fingerprint: dict
    grad_sum: np.ndarray | None = None
    standardizer: tuple[np.ndarray, np.ndarray] | None = None  # (mean, scale)
    best: dict = field(default_factory=dict)  # early stopping: {"params", "loss", "epoch", "waited"}
    run: str = ""  # the run's identity (``new_run_id``): the name's suffix; "" for an older, unnamed checkpoint
    written: float = 0.0  # when it was written (seconds since the epoch): the newest of several runs is resumed


def new_run_id() -> str:
    """A fresh run identity: 12 hex digits."""
    return uuid.uuid4().hex[:12]


def checkpoint_name(serial: int, run: str = "") -> str:
    return f"ckpt-{serial:010d}-{run}.safetensors" if run else f"ckpt-{serial:010d}.safetensors"


def checksum(meta: dict, tensors: dict[str, np.ndarray]) -> str:
    """A BLAKE2b of the header (``meta`` without its checksum, keys sorted) and of each tensor's name, shape and
    bytes (float64, little-endian, as stored)."""
    h = hashlib.blake2b(digest_size=32)
    h.update(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True, default=str).encode())
    for name in sorted(tensors):
        array = np.asarray(tensors[name], dtype="<f8")
        h.update(f"\0{name}\0{list(array.shape)}\0".encode())
        for piece in c_order_pieces(array):  # a per-coordinate block's strided views: a few MB at a time
            h.update(memoryview(piece.reshape(-1)).cast("B"))
            del piece  # freed before the next slice is copied
    return "blake2b:" + h.hexdigest()


def write_checkpoint(directory: str | os.PathLike, checkpoint: Checkpoint, keep: int = 3,
                     storage_options: dict | None = None) -> str:
    """Write ``checkpoint`` atomically into ``directory`` (a local directory or a prefix in a store); delete all
    but the newest ``keep`` of its run's own; return its path."""
    where = resolve(directory, storage_options)
    tensors = {"params": checkpoint.params, "opt_state": checkpoint.opt_state}
    if checkpoint.grad_sum is not None:
        tensors["grad_sum"] = checkpoint.grad_sum
    if checkpoint.standardizer is not None:
        tensors["standardize_mean"], tensors["standardize_scale"] = checkpoint.standardizer
    best = dict(checkpoint.best)
    if best.get("params") is not None:
        tensors["best_params"] = best.pop("params")
    tensors = {name: np.asarray(value, dtype=np.float64) for name, value in tensors.items()}
    meta = {"serial": checkpoint.serial, "cursor": checkpoint.cursor, "history": checkpoint.history,
            "settings": checkpoint.settings, "fingerprint": checkpoint.fingerprint, "best": best,
            "run": checkpoint.run, "written": time.time()}
    meta = json.loads(json.dumps(meta, default=_plain))  # as it reads back: the checksum covers that text
    meta["checksum"] = checksum(meta, tensors)
    target = where.join(checkpoint_name(checkpoint.serial, checkpoint.run))
    write_tensor_file(target, tensors, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, meta, "a checkpoint")
    own = [name for name, run in _checkpoint_names(where) if run == checkpoint.run]
    for old in own[:-keep] if keep > 0 else []:
        delete(where.join(old))
    return target.uri


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")


def serial_of(path: str) -> int | None:
    """The serial in a checkpoint's file name (None for another name)."""
    match = _NAME.fullmatch(os.path.basename(str(path).rstrip("/")))
    return int(match.group(1)) if match else None


def list_checkpoints(directory: str | os.PathLike, storage_options: dict | None = None) -> list[str]:
    """Checkpoint files in ``directory`` (paths, or URIs in a store), by serial (each run's oldest first)."""
    where = resolve(directory, storage_options)
    return [where.join(name).uri for name, _ in _checkpoint_names(where)]


def _checkpoint_names(where: Location) -> list[tuple[str, str]]:
    """(name, run) of the complete checkpoints in a directory, by serial (a temporary's name is none of them)."""
    found = [(int(match.group(1)), name, match.group(2) or "") for name in list_names(where)
             if (match := _NAME.fullmatch(name))]
    return [(name, run) for _, name, run in sorted(found)]


def read_checkpoint(path: str, storage_options: dict | None = None) -> Checkpoint:
    """Read one checkpoint file; ModelFileError if it is not a complete streamgd checkpoint."""
    meta, tensors = read_tensor_file(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "streamgd checkpoint",
                                     storage_options=storage_options)
    if isinstance(meta, dict) and "checksum" not in meta:
        raise ModelFileError(f"{path} was written by an older streamgd, without a checksum: it cannot be resumed")
    if not isinstance(meta, dict) or meta.get("checksum") != checksum(meta, {k: v for k, v in tensors.items()
                                                                            if k != "__names__"}):
        raise ModelFileError(f"{path} is a damaged checkpoint (its checksum does not match its contents)")
    shapes = {"cursor": dict, "history": list, "settings": dict, "fingerprint": dict}
    wrong = [name for name, kind in shapes.items() if not isinstance(meta.get(name), kind)]
    if wrong:
        raise ModelFileError(f"{path} is a damaged checkpoint (its {wrong[0]} is not a {shapes[wrong[0]].__name__})")
    try:
        best = dict(meta.get("best") or {})
        if "best_params" in tensors:
            best["params"] = tensors["best_params"]
        standardizer = None
        if "standardize_mean" in tensors:
            standardizer = (tensors["standardize_mean"], tensors["standardize_scale"])
        return Checkpoint(serial=int(meta["serial"]), params=tensors["params"], opt_state=tensors["opt_state"],
                          cursor=meta["cursor"], history=meta["history"], settings=meta["settings"],
                          fingerprint=meta["fingerprint"], grad_sum=tensors.get("grad_sum"),
                          standardizer=standardizer, best=best, run=str(meta.get("run") or ""),
                          written=float(meta.get("written") or 0.0))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{path} is a damaged checkpoint ({type(exc).__name__}: {exc})") from None


def latest_checkpoint(directory: str | os.PathLike, storage_options: dict | None = None,
                      data: dict | None = None) -> Checkpoint | None:
    """The newest checkpoint in ``directory`` that reads completely and checks, or None; damaged ones are
    skipped with a warning. Of several runs', the newest whose data ``fingerprint`` is ``data`` (when given; else,
    or when none is, the newest, which ``check_resumable`` then refuses naming the file that differs)."""
    where = resolve(directory, storage_options)
    runs: dict[str, list[str]] = {}
    for name, run in _checkpoint_names(where):
        runs.setdefault(run, []).append(name)
    newest = []  # each run's newest checkpoint that reads
    for names in runs.values():
        for name in reversed(names):
            try:
                newest.append(read_checkpoint(where.join(name).uri, storage_options))
                break
            except ModelFileError as exc:
                warnings.warn(f"skipping checkpoint: {exc}", stacklevel=2)
    newest.sort(key=lambda checkpoint: (checkpoint.written, checkpoint.serial), reverse=True)
    matching = [checkpoint for checkpoint in newest if data is None or other_data(checkpoint.fingerprint, data) is None]
    return (matching or newest or [None])[0]


_TIME_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def checkpoint_interval_seconds(value: int | str) -> float | None:
    """The seconds of a time interval such as "30s" (None for a number of chunks or a malformed text)."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if len(text) < 2 or text[-1] not in _TIME_UNITS:
        return None
    try:
        seconds = float(text[:-1]) * _TIME_UNITS[text[-1]]
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


class CheckpointClock:
    """When the next checkpoint is due: after every ``every`` chunks (or dask rounds), or, for a time such as
    "30s", once that long has passed since the last checkpoint (``written()`` restarts the wait)."""

    def __init__(self, every: int | str, now: Callable[[], float] = time.monotonic):
        self.seconds = checkpoint_interval_seconds(every)
        self.chunks = 0 if self.seconds is not None else int(every)
        self.now = now
        self.last = now()

    def due(self, chunks_done: int) -> bool:
        if self.seconds is not None:
            return self.now() - self.last >= self.seconds
        return bool(self.chunks) and chunks_done % self.chunks == 0

    def written(self) -> None:
        self.last = self.now()


# ---- a run's checkpoints ----------------------------------------------------------------------------------------
_FINGERPRINTS: list[tuple[weakref.ref, dict]] = []  # a few recent datasets' (read once per run, not per checkpoint)
_FILE_FIELDS = ("size", "footer_sha256", "content")  # what names a file's data (the path and time do not)


def fingerprint(dataset: Dataset) -> dict:
    """What a checkpoint records of its data, to refuse resuming on other data: rows, units, features, target
    and each file by its content (``streamgd.io.fingerprint``; an in-memory table by a hash of its buffers; a
    dask DataFrame by its shape only). Computed once per dataset object."""
    for held, found in _FINGERPRINTS:
        if held() is dataset:
            return found
    found = {"rows": dataset.n_rows, "units": len(dataset.units), "features": list(dataset.feature_names),
             "target": dataset.target}
    if dataset.table is not None:
        found["table"] = _table_hash(dataset.table)
    elif dataset.dask_frame is None:
        files = []
        for index, path in enumerate(dataset.sources):
            identity = content_identity(path, dataset.filesystem)
            where = path if dataset.filesystem is None else uri_of(dataset.filesystem, path)
            entry = {"path": where, **{k: identity[k] for k in _FILE_FIELDS}}
            if "etag" in identity:
                entry["etag"] = identity["etag"]
            if dataset.partition_values:
                entry["partition"] = {k: str(v) for k, v in dataset.partition_values[index].items()}
            files.append(entry)
        found["files"] = files
    _FINGERPRINTS.insert(0, (weakref.ref(dataset), found))
    del _FINGERPRINTS[4:]
    return found


def _table_hash(table: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(str(table.schema).encode())
    for column in table.columns:
        for chunk in column.chunks:
            for buffer in chunk.buffers():
                if buffer is not None:
                    h.update(memoryview(buffer))
    return h.hexdigest()


def other_data(recorded: dict, data: dict) -> str | None:
    """How the data a checkpoint was written for (``recorded``) differ from this run's (``data``), or None."""
    for name in ("rows", "units", "features", "target", "table"):
        if recorded.get(name) != data.get(name):
            return f"its {name} {recorded.get(name)!r} are not this data's {data.get(name)!r}"
    before, now = recorded.get("files") or [], data.get("files") or []
    if len(before) != len(now):
        return f"it was written on {len(before)} files and this run reads {len(now)}"
    for old, new in zip(before, now):
        if not isinstance(old, dict):
            return "its record of the files is damaged"
        changed = [k for k in (*_FILE_FIELDS, "partition") if old.get(k) != new.get(k)]
        if old.get("etag") and new.get("etag") and old["etag"] != new["etag"]:
            changed.append("etag")
        if changed:
            moved = "" if old.get("path") == new["path"] else f" (written on {old.get('path')})"
            return f"{new['path']} differs from the file it was written on{moved}: its {', '.join(changed)}"
    return None


def save_checkpoint(cfg: TrainConfig, run: Run, state: TrainState, data: dict, settings: dict) -> None:
    """Write the state as checkpoint ``chunks_done + epoch`` of ``cfg.checkpoint_dir`` (nothing without one);
    ``data`` is the data's ``fingerprint``, ``settings`` the run's."""
    if not cfg.checkpoint_dir:
        return
    standardizer = (run.standardizer.mean, run.standardizer.scale) if run.standardizer else None
    write_checkpoint(cfg.checkpoint_dir, Checkpoint(
        serial=state.chunks_done + state.epoch, params=state.params, opt_state=state.opt_state,
        cursor=state.cursor(), history=state.history, settings=settings, fingerprint=data,
        grad_sum=state.grad_sum, standardizer=standardizer, best=state.best, run=state.run_id),
        keep=cfg.keep_checkpoints,
        storage_options=cfg.storage_options)


def check_resumable(checkpoint: Checkpoint, wanted: dict, data: dict, directory: str) -> None:
    """Refuse a checkpoint of another run: a continued model's, other settings (``wanted``), or other data."""
    if checkpoint.settings.get("init") is not None:
        raise ConfigError(f"the checkpoint in {directory} belongs to a run that continued "
                          f"{checkpoint.settings['init']} (init); resuming such a run is not supported: run it "
                          "again with init")
    found = checkpoint.settings
    for name in wanted:
        if wanted[name] != found.get(name):
            raise ConfigError(f"the checkpoint in {directory} was written with {name}={found.get(name)!r} and this "
                              f"run has {name}={wanted[name]!r}; resume with the same settings, or train afresh in "
                              "another checkpoint directory")
    differs = other_data(checkpoint.fingerprint if isinstance(checkpoint.fingerprint, dict) else {}, data)
    if differs is not None:
        raise ConfigError(f"the checkpoint in {directory} was written for other data: {differs}; resume on the "
                          "same data, or train afresh (without --resume)")
