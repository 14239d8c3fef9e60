"""Numba's IR inlining without its repeated copies of a function's scope (numba issue #8989).

Numba inlines an ``inline="always"`` function by deep-copying its IR block by block, each block with a fresh
memo, so every block copies the whole scope (every variable of the function) again: the cost grows with blocks x
variables, and the kernels' loops, which inline the loss, the update rule and its checks, spent most of their
compile time there (``python3 scripts/bench_compile.py``: a logistic/SGD train loop 14.1 s, 5.6 s with one memo
per copy; adam 17.9 s, 8.6 s). ``install`` gives the copy one memo for all blocks of one function, so the copy
shares one scope, as the original does. It changes only how the callee's IR is copied, not what is inlined, and
applies only where the installed Numba copies blocks that way (checked in its source); elsewhere, or with
``STREAMGD_NUMBA_PER_BLOCK_COPY=1`` in the environment, it does nothing.
"""

from __future__ import annotations

import copy
import inspect
import os
import threading
import types

from numba.core import inline_closurecall, ir

_PATTERN = "copy.deepcopy(the_ir.blocks[block_label])"  # Numba's per-block copy in InlineWorker.inline_ir
OFF_SWITCH = "STREAMGD_NUMBA_PER_BLOCK_COPY"
_installed = False


class _BlockCopier(threading.local):
    """The memo shared by the blocks of the function being copied (per thread)."""

    def __init__(self) -> None:
        self.scope = None
        self.memo: dict = {}
        self.copied: set[int] = set()

    def deepcopy(self, block, memo=None):
        if memo is not None or not isinstance(block, ir.Block):
            return copy.deepcopy(block, memo)
        # a block of another scope, or one copied already (a second copy of the same function), starts a new copy
        if block.scope is not self.scope or id(block) in self.copied:
            self.scope, self.memo, self.copied = block.scope, {}, set()
        self.copied.add(id(block))
        return copy.deepcopy(block, self.memo)


def install() -> bool:
    """Make Numba's inliner copy a function's blocks with one memo; True if it applies (to the installed Numba,
    and not switched off)."""
    global _installed
    if _installed:
        return True
    if os.environ.get(OFF_SWITCH) == "1":
        return False
    try:
        source = inspect.getsource(inline_closurecall.InlineWorker.inline_ir)
    except (AttributeError, OSError, TypeError):
        return False
    if _PATTERN not in source or inline_closurecall.copy is not copy:
        return False
    inline_closurecall.copy = types.SimpleNamespace(deepcopy=_BlockCopier().deepcopy, copy=copy.copy)
    _installed = True
    return True
