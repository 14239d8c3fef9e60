"""Held-out data: which units to hold out, the mean loss of parameters on them, and the best constant's loss.

>>> from streamgd.data.dataset import Unit
>>> units = [Unit(0, g, 0, 100, 100 * g) for g in range(10)]
>>> train, held = holdout_units(units, 0.2, seed=0)
>>> len(train), len(held), sorted(set(train) & set(held))
(8, 2, [])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..data.dataset import Dataset, Unit
from ..data.reader import ChunkStream
from ..data.shuffle import make_plan
from ..errors import ConfigError
from ..kernels import api as kernels

_HOLDOUT_STREAM = 0x5EED_0F_7A11  # a seed stream of its own: the held-out set does not move with the plans


def holdout_units(units: Sequence[Unit], fraction: float, seed: int) -> tuple[list[Unit], list[Unit]]:
    """Split units into (training, validation): ``fraction`` of the units (at least one) chosen from ``seed``,
    both lists in file order. Whole units are held out, so the two sets never share a row."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation={fraction!r} is not accepted; expected a fraction in (0, 1)")
    if len(units) < 2:
        raise ConfigError("a validation fraction needs at least two row groups (units) to hold one out; "
                          "pass validation_data, or cut the file into smaller row groups or use a memory budget")
    n_held = min(max(1, round(fraction * len(units))), len(units) - 1)
    rng = np.random.default_rng([seed, _HOLDOUT_STREAM])
    held = set(rng.choice(len(units), size=n_held, replace=False).tolist())
    return ([u for i, u in enumerate(units) if i not in held], [u for i, u in enumerate(units) if i in held])


def mean_loss(dataset: Dataset, params: np.ndarray, n_out: int, loss_kind: int, hyper: np.ndarray, dtype: str,
              target_encoder: Callable, transform: Callable | None = None, features: Any = None,
              cache: Any = None) -> float:
    """Mean data loss (no penalty) of ``params`` over the dataset, streamed in file order (``cache``: an epoch
    cache session, see ``streamgd.data.cache``)."""
    total, rows = 0.0, 0
    plan = make_plan(dataset.units, "none")
    with ChunkStream(dataset, plan, dtype=dtype, target_encoder=target_encoder, transform=transform,
                     features=features, cache=cache) as stream:
        for chunk in stream:
            total += kernels.chunk_loss(chunk.X, chunk.y, np.empty(0), params, n_out, loss_kind, hyper,
                                        sparse=chunk.sparse)
            rows += chunk.n_rows
    return total / max(rows, 1)


def constant_loss(loss_kind: int, rows: int, y_sum: float, y_sq_sum: float) -> float | None:
    """The loss of the best constant prediction from the target's sums (None where not worked out): a baseline
    that tells at once whether a model learned anything."""
    if rows == 0:
        return None
    mean = y_sum / rows
    if loss_kind == kernels.LOSS_SQUARED:
        return 0.5 * max(y_sq_sum / rows - mean * mean, 0.0)
    if loss_kind == kernels.LOSS_LOG:
        if mean <= 0.0 or mean >= 1.0:
            return 0.0
        return -(mean * math.log(mean) + (1.0 - mean) * math.log(1.0 - mean))
    if loss_kind == kernels.LOSS_POISSON and mean > 0.0:
        return mean - mean * math.log(mean)  # exp(m) - y m at exp(m) = mean(y)
    return None
