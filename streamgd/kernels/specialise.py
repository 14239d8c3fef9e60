"""The memo of specialised loops: each combination of loss, optimizer, chunk order and tile kind a run needs is
built once per process, and compiled (or loaded from the disk cache) on its first call.

A loop is built by a factory that takes the combination as closure constants (``streamgd.kernels.dense``,
``streamgd.kernels.sparse``, ``streamgd.kernels.scoring``); Numba inlines the pieces and prunes every branch on
those constants, so a specialisation compiles only its own loss, rule and layout. Numba's disk cache keys a closure on the bytes of its
constants, so each specialisation is cached on its own. Only the train loops and the full-batch step are
specialised on the optimizer and loss; the sum, bad-row and predict loops take the loss at run time (one loop for
every loss: ``scripts/bench_kernel.py --sum`` compares the two), and are specialised on the block kind instead
(dense, or with a sparse block).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from .jit import announce_as

MEMO: dict[Hashable, Any] = {}  # key -> dispatcher


def specialised(key: Hashable, label: str | None, build: Callable[[], Any]) -> Any:
    """The memoised specialisation ``build()`` for ``key``; ``label`` names it in the compile notice (None: the
    small helpers, a second or so each, compile silently: the bad-row search runs just before an error message,
    which must stay the one line on stderr)."""
    dispatcher = MEMO.get(key)
    if dispatcher is None:
        dispatcher = MEMO[key] = build()
        if label is not None:
            announce_as(dispatcher, label)
    return dispatcher
