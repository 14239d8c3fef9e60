"""The inliner's block copy with one memo per function (streamgd.kernels.numba_inline)."""

from __future__ import annotations

import copy
import inspect
import math
import os
import subprocess
import sys

import numba
import pytest
from numba.core import compiler, inline_closurecall

import streamgd.kernels.dense  # noqa: F401 - installs the copy
from streamgd.kernels import numba_inline


def _branchy(x, k):
    total = 0.0
    for i in range(k):
        if i % 3 == 0:
            total += x * i
        elif i % 3 == 1:
            total -= math.sqrt(abs(x) + i)
        else:
            total *= 0.5
    return total


def test_it_applies_exactly_where_numba_copies_block_by_block():
    copies_per_block = numba_inline._PATTERN in inspect.getsource(inline_closurecall.InlineWorker.inline_ir)
    assert numba_inline.install() is copies_per_block
    assert (inline_closurecall.copy is not copy) is copies_per_block  # replaced only where it applies


@pytest.mark.skipif(not numba_inline.install(), reason="this Numba does not copy an IR block by block")
def test_the_copied_blocks_share_one_new_scope_and_every_copy_is_new():
    function_ir = compiler.run_frontend(_branchy)
    blocks = list(function_ir.blocks.values())
    assert len(blocks) > 3 and len({id(b.scope) for b in blocks}) == 1
    deepcopy = inline_closurecall.copy.deepcopy
    first = [deepcopy(b) for b in blocks]
    second = [deepcopy(b) for b in blocks]  # the same function copied again: new objects, not the first copy's
    for copied in (first, second):
        scopes = {id(b.scope) for b in copied}
        assert len(scopes) == 1 and blocks[0].scope is not copied[0].scope
        variables = [v for b in copied for v in b.find_insts(numba.core.ir.Assign)]
        assert variables and all(a.target.scope is copied[0].scope for a in variables)
    assert all(a is not b for a, b in zip(first, second)) and first[0].scope is not second[0].scope
    assert [[str(s) for s in b.body] for b in first] == [[str(s) for s in b.body] for b in blocks]


def test_an_inlined_function_computes_what_python_does():
    inlined = numba.njit(inline="always")(_branchy)

    @numba.njit
    def caller(x, k):
        return inlined(x, k) + inlined(-x, k + 1)

    for x, k in ((0.5, 7), (-2.0, 11), (3.0, 0)):
        assert caller(x, k) == pytest.approx(_branchy(x, k) + _branchy(-x, k + 1), rel=1e-15)


def test_the_off_switch_leaves_numbas_own_copy():
    probe = "import copy, streamgd.kernels.dense; from numba.core import inline_closurecall as ic; print(ic.copy is copy)"
    env = dict(os.environ, **{numba_inline.OFF_SWITCH: "1"})
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
