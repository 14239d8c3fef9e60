"""Checkpoints: everything a run needs to continue exactly where it stopped, in one safetensors file.

Tensors: the parameters, the optimizer state, the partial gradient sum of a full-batch epoch, the standardizer,
the best parameters so far (early stopping). JSON in the header: the cursor (epoch, next chunk of the epoch's
plan, global optimizer step, the epoch's partial loss and rows), the history, the training settings and a
fingerprint of the data. Files are ``ckpt-<serial>.safetensors`` where the serial counts chunks trained since the
start, written atomically; the newest ``keep`` are kept. A file that cannot be read (a crash while it was being
written by something other than ``atomic_write``, a truncated copy) is skipped with a warning, and the previous
one is used.

The directory may be a prefix in an object store (``s3://bucket/run/ckpt``): each checkpoint is then one object,
uploaded whole (the store shows it only once the upload completes), and only complete names count: nothing
else under the prefix (a probe, a temporary) is ever taken for the latest.
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, ModelFileError
from ..io.storage import Location, delete, list_names, resolve
from ..io.tensorfile import read_tensor_file, write_tensor_file

if TYPE_CHECKING:  # read, never imported here: config.py imports this module
    from ..data.dataset import Dataset
    from .config import TrainConfig
    from .state import Run, TrainState

CHECKPOINT_FORMAT = "streamgd.training.checkpoint"
CHECKPOINT_VERSION = 1
_NAME = re.compile(r"ckpt-(\d+)\.safetensors")


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


def checkpoint_name(serial: int) -> str:
    return f"ckpt-{serial:010d}.safetensors"


def write_checkpoint(directory: str | os.PathLike, checkpoint: Checkpoint, keep: int = 3,
                     storage_options: dict | None = None) -> str:
    """Write ``checkpoint`` atomically into ``directory`` (a local directory or a prefix in a store); delete all
    but the newest ``keep``; return its path."""
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
            "settings": checkpoint.settings, "fingerprint": checkpoint.fingerprint, "best": best}
    target = where.join(checkpoint_name(checkpoint.serial))
    write_tensor_file(target, tensors, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, meta, "a checkpoint")
    for old in _checkpoint_names(where)[:-keep] if keep > 0 else []:
        delete(where.join(old))
    return target.uri


def list_checkpoints(directory: str | os.PathLike, storage_options: dict | None = None) -> list[str]:
    """Checkpoint files in ``directory`` (paths, or URIs in a store), oldest first."""
    where = resolve(directory, storage_options)
    return [where.join(name).uri for name in _checkpoint_names(where)]


def _checkpoint_names(where: Location) -> list[str]:
    """The complete checkpoint names in a directory, oldest first (a temporary's name is none of them)."""
    return sorted((name for name in list_names(where) if _NAME.fullmatch(name)),
                  key=lambda name: int(_NAME.fullmatch(name).group(1)))


def read_checkpoint(path: str, storage_options: dict | None = None) -> Checkpoint:
    """Read one checkpoint file; ModelFileError if it is not a complete streamgd checkpoint."""
    meta, tensors = read_tensor_file(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "streamgd checkpoint",
                                     storage_options=storage_options)
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
                          standardizer=standardizer, best=best)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} is a damaged checkpoint ({type(exc).__name__}: {exc})") from None


def latest_checkpoint(directory: str | os.PathLike, storage_options: dict | None = None) -> Checkpoint | None:
    """The newest checkpoint in ``directory`` that reads completely, or None; unreadable ones are skipped."""
    for path in reversed(list_checkpoints(directory, storage_options)):
        try:
            return read_checkpoint(path, storage_options)
        except ModelFileError as exc:
            warnings.warn(f"skipping checkpoint: {exc}", stacklevel=2)
    return None


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
def fingerprint(dataset: Dataset) -> dict:
    """What a checkpoint records of its data, to refuse resuming on other data."""
    return {"rows": dataset.n_rows, "units": len(dataset.units), "features": dataset.feature_names,
            "target": dataset.target}


def save_checkpoint(cfg: TrainConfig, run: Run, state: TrainState, data: dict, settings: dict) -> None:
    """Write the state as checkpoint ``chunks_done + epoch`` of ``cfg.checkpoint_dir`` (nothing without one);
    ``data`` is the data's ``fingerprint``, ``settings`` the run's."""
    if not cfg.checkpoint_dir:
        return
    standardizer = (run.standardizer.mean, run.standardizer.scale) if run.standardizer else None
    write_checkpoint(cfg.checkpoint_dir, Checkpoint(
        serial=state.chunks_done + state.epoch, params=state.params, opt_state=state.opt_state,
        cursor=state.cursor(), history=state.history, settings=settings, fingerprint=data,
        grad_sum=state.grad_sum, standardizer=standardizer, best=state.best), keep=cfg.keep_checkpoints,
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
    if checkpoint.fingerprint != data:
        raise ConfigError(f"the checkpoint in {directory} was written for other data ({checkpoint.fingerprint}); "
                          "resume on the same data")
