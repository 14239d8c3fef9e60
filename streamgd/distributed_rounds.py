"""Local-SGD rounds of a sparse model that ship only what changed (issue 29, item 5).

A round of a hashed or one-hot model touches a few of its 2^bits slots; shipping the whole parameter and optimizer
state vectors both ways costs the same whatever was touched. Here:

- **Worker to client:** ``Touched``, the coordinates whose bits changed in the round (a parameter's index, an
  optimizer-state column's index) and their new values. A coordinate a worker did not change holds the broadcast
  value, which the client has.
- **Averaging:** ``average_touched`` computes today's row-weighted average ``sum_k w_k * v_k`` on every coordinate
  some worker changed, with the same expression in the same order (an untouched worker counts with its
  unchanged, broadcast value), so those coordinates are equal bit for bit. A coordinate no worker changed keeps its
  value. The whole-vector average computed ``sum_k w_k * b`` there, which rounds to ``b`` or a neighbour (exactly
  ``b`` when the weights are powers of two, as with equal rows per worker); that is the only difference.
- **Client to worker:** each worker keeps its round's end state (``keep_end``) in its process; the next round
  sends a ``Broadcast`` of the coordinates the average changed (the union of all workers' touched coordinates, and
  any the client changed between rounds), from which the worker rebuilds the new base (``start_state``). A worker
  that holds no such state (a new process, a rerun elsewhere after a death, an older round) answers ``STALE`` and
  is sent the whole vectors, as is every worker when the delta would be the larger.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["STALE", "Broadcast", "ClientBases", "Kept", "Touched", "apply_average", "average_touched",
           "changed_columns", "changed_entries", "forget_bases", "keep_end", "start_state", "touched"]

STALE = "stale"  # a worker's answer when it holds no end state of the version a delta starts from


def _bits(a: np.ndarray) -> np.ndarray:
    """The array's bits as unsigned integers: -0.0 differs from 0.0 and a NaN from itself not at all."""
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def _index(positions: np.ndarray, size: int) -> np.ndarray:
    return positions.astype(np.int32 if size < 2**31 else np.int64)


def changed_entries(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Positions of a 1-D vector whose bits differ."""
    return _index(np.flatnonzero(_bits(before) != _bits(after)), before.size)


def changed_columns(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Columns of a (rows, columns) optimizer state in which any row's bits differ."""
    if before.size == 0:
        return np.empty(0, dtype=np.int32)
    return _index(np.flatnonzero((_bits(before) != _bits(after)).any(axis=0)), before.shape[1])


@dataclass
class Touched:
    """A worker's round at the coordinates it changed: parameter positions and values, optimizer-state columns
    and their values (rows x len(state_index))."""

    param_index: np.ndarray
    params: np.ndarray
    state_index: np.ndarray
    opt_state: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.param_index, self.params, self.state_index, self.opt_state))


def touched(base_params: np.ndarray, base_state: np.ndarray, params: np.ndarray, opt_state: np.ndarray) -> Touched:
    """What changed from the base to the round's end."""
    p = changed_entries(base_params, params)
    s = changed_columns(base_state, opt_state)
    return Touched(p, params[p], s, opt_state[:, s])


def _overlaid(base: np.ndarray, union: np.ndarray, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``base`` at ``union`` (last axis) with a worker's ``values`` at its ``index`` (a subset of ``union``)."""
    row = base[..., union]
    row[..., np.searchsorted(union, index)] = values
    return row


def average_touched(base_params: np.ndarray, base_state: np.ndarray, parts: list[Touched], weights: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The row-weighted average of the workers' states where any of them changed something: the union of changed
    parameter positions and their averages, the union of changed state columns and theirs. On the union each
    worker's value is its own or, where it changed nothing, the base's, summed as ``np.sum([w * v for ...],
    axis=0)`` as the whole-vector average does; everywhere else the average is the base (``apply_average``)."""
    union_p = np.unique(np.concatenate([part.param_index for part in parts]))
    union_s = np.unique(np.concatenate([part.state_index for part in parts]))
    params = np.sum([w * _overlaid(base_params, union_p, part.param_index, part.params)
                     for w, part in zip(weights, parts)], axis=0)
    opt_state = np.sum([w * _overlaid(base_state, union_s, part.state_index, part.opt_state)
                        for w, part in zip(weights, parts)], axis=0)
    return union_p, params, union_s, opt_state


def apply_average(params: np.ndarray, opt_state: np.ndarray, union_p: np.ndarray, averaged_p: np.ndarray,
                  union_s: np.ndarray, averaged_s: np.ndarray) -> None:
    """Write ``average_touched``'s values into the state, in place (no new vector of the model's size)."""
    params[union_p] = averaged_p
    opt_state[:, union_s] = averaged_s


# ---- client to worker -------------------------------------------------------------------------------------------
@dataclass
class Broadcast:
    """A round's starting state for one worker: the whole vectors (``since`` None), or the values at
    ``param_index`` and the state columns at ``state_index`` that changed since the end state of version ``since``
    that the worker keeps. ``version`` names the state the worker keeps after this round."""

    version: int
    since: int | None
    param_index: np.ndarray | None
    params: np.ndarray
    state_index: np.ndarray | None
    opt_state: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.param_index, self.params, self.state_index, self.opt_state)
                   if a is not None)


class ClientBases:
    """The client's side of the broadcast: the last base it sent, the coordinates the average changed since,
    and which version of it each shard's worker keeps."""

    def __init__(self) -> None:
        self.version = 0
        self.params: np.ndarray | None = None  # the base of the last round (a copy of the client's state)
        self.opt_state: np.ndarray | None = None
        self.union_p = np.empty(0, dtype=np.int32)  # what the last round's average changed
        self.union_s = np.empty(0, dtype=np.int32)
        self.held: dict[int, int] = {}  # shard -> the version its worker keeps

    def messages(self, shards: list[int], params: np.ndarray, opt_state: np.ndarray) -> dict[int, Broadcast]:
        """This round's broadcast to each shard, and the new version; remembers ``params``/``opt_state`` as the
        base."""
        delta = None
        if (self.params is not None and self.params.shape == params.shape
                and self.opt_state.shape == opt_state.shape):
            p = _index(np.union1d(self.union_p, changed_entries(self.params, params)), params.size)
            s = _index(np.union1d(self.union_s, changed_columns(self.opt_state, opt_state)), params.size)
            delta = (p, s)
        full = params.nbytes + opt_state.nbytes
        since = self.version
        self.version += 1
        out = {}
        for k in shards:
            message = None
            if delta is not None and self.held.get(k) == since:
                p, s = delta
                message = Broadcast(self.version, since, p, params[p], s, opt_state[:, s])
                if message.nbytes >= full:
                    message = None
            out[k] = message or self.full(k, params, opt_state)
        if delta is not None:  # the kept base becomes this round's: its changed coordinates are the delta's
            self.params[delta[0]] = params[delta[0]]
            self.opt_state[:, delta[1]] = opt_state[:, delta[1]]
        else:
            self.params, self.opt_state = params.copy(), opt_state.copy()
        return out

    def full(self, shard: int, params: np.ndarray, opt_state: np.ndarray) -> Broadcast:
        """The whole vectors, for a worker that keeps no usable state."""
        return Broadcast(self.version, None, None, params, None, opt_state)

    def averaged(self, shards: list[int], union_p: np.ndarray, union_s: np.ndarray) -> None:
        """The round finished: ``shards``' workers keep its version; the average changed ``union_*``."""
        self.union_p, self.union_s = union_p, union_s
        for k in list(self.held):
            if k not in shards:
                del self.held[k]
        for k in shards:
            self.held[k] = self.version


# ---- on the worker ----------------------------------------------------------------------------------------------
@dataclass
class Kept:
    """A shard's state kept in a worker process between rounds: the end state of round ``version``, and a spare
    pair of vectors of the same shapes (the round's base, no longer needed) to train the next round in. Training
    in the spare rather than a fresh copy saves allocating, and page-faulting in, two model-sized vectors a round
    (``scripts/bench_distributed.py --ctr``)."""

    version: int
    params: np.ndarray
    opt_state: np.ndarray
    spare: tuple[np.ndarray, np.ndarray] | None


_KEPT: dict[tuple[str, int], Kept] = {}  # (run token, shard) -> what this process keeps
_KEPT_LOCK = threading.Lock()


def _fits(pair: tuple[np.ndarray, np.ndarray] | None, params: np.ndarray, opt_state: np.ndarray) -> bool:
    return pair is not None and pair[0].shape == params.shape and pair[1].shape == opt_state.shape


def start_state(token: str, shard: int, message: Broadcast
                ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    """The round's base on this worker and a copy of it to train in: the base is the whole vectors sent, or the
    kept end state with the delta applied; None when this process keeps no end state of the delta's version.
    What is kept is taken out, so a task that fails part-way leaves nothing half-updated behind."""
    with _KEPT_LOCK:
        kept = _KEPT.pop((token, shard), None)
    if message.since is None:
        base = (message.params, message.opt_state)  # never written: in a threaded cluster, the client's arrays
        spares = [pair for pair in ((kept.params, kept.opt_state), kept.spare) if _fits(pair, *base)] if kept else []
    elif kept is None or kept.version != message.since:
        return None
    else:
        base = (kept.params, kept.opt_state)
        base[0][message.param_index] = message.params
        if base[1].size:
            base[1][:, message.state_index] = message.opt_state
        spares = [kept.spare] if _fits(kept.spare, *base) else []
    work = spares[0] if spares else (np.empty_like(base[0]), np.empty_like(base[1]))
    np.copyto(work[0], base[0])
    np.copyto(work[1], base[1])
    return base, work


def keep_end(token: str, shard: int, message: Broadcast, base: tuple[np.ndarray, np.ndarray],
             end: tuple[np.ndarray, np.ndarray]) -> None:
    """Keep the round's end state in this process for the next round's delta, and its base as the spare to train
    in (not when the base is the message's whole vectors, which this process does not own); one per shard, other
    runs' are dropped."""
    spare = base if message.since is not None else None
    with _KEPT_LOCK:
        for key in [key for key in _KEPT if key[0] != token]:
            del _KEPT[key]
        _KEPT[(token, shard)] = Kept(message.version, end[0], end[1], spare)


def forget_bases(token: str | None = None) -> int:
    """Drop a run's kept end states (None: every run's) from this process; how many were dropped."""
    with _KEPT_LOCK:
        keys = [key for key in _KEPT if token is None or key[0] == token]
        for key in keys:
            del _KEPT[key]
    return len(keys)
