"""Numba's IR inlining without its repeated copies of a function's scope (numba issue #8989), applied only while
streamgd compiles its own kernels.

Numba inlines an ``inline="always"`` function by deep-copying its IR block by block, each block with a fresh
memo, so every block copies the whole scope (every variable of the function) again: the cost grows with blocks x
variables, and the kernels' loops, which inline the loss, the update rule and its checks, spent most of their
compile time there (``python3 scripts/bench_compile.py`` compares the two copies; its figures are in
benchmarks/README.md, "Kernels"). ``patched()`` gives the copy one memo for all blocks of one function, so the
copy shares one scope, as the original does. It changes only how the callee's IR is copied, not what is
inlined.

It is a patch of another package's module, so it is scoped: ``streamgd.kernels.jit`` enters ``patched()`` only
around the compile of a streamgd function, holding Numba's compiler lock (no other thread compiles meanwhile),
and the module's own ``copy`` is put back on exit. It applies only where the installed Numba copies blocks that
way (checked in its source); elsewhere it warns once (``NumbaPatchWarning``) and leaves Numba as it is, as it
does with ``STREAMGD_NUMBA_PER_BLOCK_COPY=1`` in the environment (the benchmark's baseline, no warning).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from numba.core import inline_closurecall, ir

PATTERN = "copy.deepcopy(the_ir.blocks[block_label])"  # Numba's per-block copy in InlineWorker.inline_ir
OFF_SWITCH = "STREAMGD_NUMBA_PER_BLOCK_COPY"


class NumbaPatchWarning(RuntimeWarning):
    """The inliner patch does not apply to the installed Numba: first compiles take longer."""


class BlockCopier(threading.local):
    """The memo shared by the blocks of the function being copied (per thread), and counts of what it did."""

    def __init__(self) -> None:
        self.scope = None
        self.memo: dict = {}
        self.copied: set[int] = set()
        self.functions = 0  # memos started: one per copy of a function
        self.blocks = 0  # blocks copied with a shared memo

    def deepcopy(self, block: Any, memo: dict | None = None) -> Any:
        if memo is not None or not isinstance(block, ir.Block):
            return copy.deepcopy(block, memo)
        # a block of another scope, or one copied already (a second copy of the same function), starts a new copy
        if block.scope is not self.scope or id(block) in self.copied:
            self.scope, self.memo, self.copied = block.scope, {}, set()
            self.functions += 1
        self.copied.add(id(block))
        self.blocks += 1
        return copy.deepcopy(block, self.memo)


class CopyModule:
    """What ``inline_closurecall`` sees as ``copy`` while patched: ``deepcopy`` shares a memo per function; every
    other attribute is the ``copy`` module's own."""

    def __init__(self, copier: BlockCopier) -> None:
        self.deepcopy = copier.deepcopy

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


COPIER = BlockCopier()
_warned = False


def applies() -> bool:
    """Whether the patch applies to the installed Numba (and is not switched off); warns once when it does not."""
    global _warned
    if os.environ.get(OFF_SWITCH) == "1":
        return False
    try:
        source = inspect.getsource(inline_closurecall.InlineWorker.inline_ir)
    except (AttributeError, OSError, TypeError):
        source = ""
    current = getattr(inline_closurecall, "copy", None)
    if PATTERN in source and (current is copy or isinstance(current, CopyModule)):
        return True
    if not _warned:
        _warned = True
        warnings.warn("streamgd: this Numba's inliner is not the one streamgd patches (numba issue #8989); kernels "
                      "compile with Numba's own copy, about twice as slowly the first time", NumbaPatchWarning,
                      stacklevel=2)
    return False


_applies: bool | None = None


@contextlib.contextmanager
def patched() -> Iterator[bool]:
    """Within the block, Numba's inliner copies a function's blocks with one memo; yields whether it applies.

    The caller holds Numba's compiler lock (``streamgd.kernels.jit.compile_scope``), so no other package's compile
    sees the patch; nested uses leave the patch to the outermost."""
    global _applies
    if _applies is None:
        _applies = applies()
    if not _applies or inline_closurecall.copy is not copy:  # off, or an enclosing block has it
        yield _applies
        return
    inline_closurecall.copy = CopyModule(COPIER)
    try:
        yield True
    finally:
        inline_closurecall.copy = copy
