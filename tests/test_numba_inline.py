"""The inliner's block copy with one memo per function (streamgd.kernels.numba_inline), applied only within
streamgd's compile scope."""

from __future__ import annotations

import copy
import inspect
import math
import os
import subprocess
import sys
import warnings

import numba
import pytest
from numba.core import compiler, inline_closurecall

from streamgd.kernels import jit, numba_inline

PINNED = numba.__version__.startswith("0.68.")  # pyproject.toml's tested Numba


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


def test_it_applies_to_the_pinned_numba_and_only_where_numba_copies_block_by_block():
    copies_per_block = numba_inline.PATTERN in inspect.getsource(inline_closurecall.InlineWorker.inline_ir)
    assert numba_inline.applies() is copies_per_block
    if PINNED:
        assert copies_per_block  # numba 0.68 copies block by block: the patch must apply there


def test_an_inline_compile_within_the_scope_shares_one_memo_per_copied_function():
    """Fails when the patch stops applying: no block is then copied through the shared memo."""
    inlined = numba.njit(inline="always")(_branchy)

    @numba.njit
    def caller(x, k):
        return inlined(x, k) + inlined(-x, k + 1)  # two inline sites: two copies of _branchy

    n_blocks = len(compiler.run_frontend(_branchy).blocks)
    before = numba_inline.COPIER.functions, numba_inline.COPIER.blocks
    with jit.compile_scope():
        assert isinstance(inline_closurecall.copy, numba_inline.CopyModule) is numba_inline.applies()
        caller.compile("float64(float64, int64)")
    functions = numba_inline.COPIER.functions - before[0]
    blocks = numba_inline.COPIER.blocks - before[1]
    assert inline_closurecall.copy is copy  # restored on exit
    if PINNED or numba_inline.applies():
        # each copy of _branchy (two sites; Numba may inline a site more than once) takes one memo for its blocks
        assert n_blocks > 3 and functions >= 2 and blocks == functions * n_blocks
    for x, k in ((0.5, 7), (-2.0, 11), (3.0, 0)):
        assert caller(x, k) == pytest.approx(_branchy(x, k) + _branchy(-x, k + 1), rel=1e-15)


def test_outside_the_scope_numba_sees_its_own_copy_module():
    @numba.njit
    def other_package(x):
        return x * 2.0

    assert other_package(2.0) == 4.0
    assert inline_closurecall.copy is copy


def test_the_replacement_delegates_what_it_does_not_replace():
    replacement = numba_inline.CopyModule(numba_inline.BlockCopier())
    assert replacement.copy is copy.copy and replacement.Error is copy.Error
    assert replacement.deepcopy([1, [2]]) == [1, [2]]


@pytest.mark.skipif(not numba_inline.applies(), reason="this Numba does not copy an IR block by block")
def test_the_copied_blocks_share_one_new_scope_and_every_copy_is_new():
    function_ir = compiler.run_frontend(_branchy)
    blocks = list(function_ir.blocks.values())
    assert len(blocks) > 3 and len({id(b.scope) for b in blocks}) == 1
    deepcopy = numba_inline.BlockCopier().deepcopy
    first = [deepcopy(b) for b in blocks]
    second = [deepcopy(b) for b in blocks]  # the same function copied again: new objects, not the first copy's
    for copied in (first, second):
        scopes = {id(b.scope) for b in copied}
        assert len(scopes) == 1 and blocks[0].scope is not copied[0].scope
        variables = [v for b in copied for v in b.find_insts(numba.core.ir.Assign)]
        assert variables and all(a.target.scope is copied[0].scope for a in variables)
    assert all(a is not b for a, b in zip(first, second)) and first[0].scope is not second[0].scope
    assert [[str(s) for s in b.body] for b in first] == [[str(s) for s in b.body] for b in blocks]


def test_it_warns_once_with_a_category_when_it_declines(monkeypatch):
    monkeypatch.setattr(numba_inline, "PATTERN", "a line this Numba does not have")
    monkeypatch.setattr(numba_inline, "_warned", False)
    monkeypatch.delenv(numba_inline.OFF_SWITCH, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert numba_inline.applies() is False
        assert numba_inline.applies() is False
    assert [w.category for w in caught] == [numba_inline.NumbaPatchWarning]


def test_the_off_switch_leaves_numbas_own_copy_even_while_compiling():
    probe = ("import copy; from streamgd.kernels import jit; from numba.core import inline_closurecall as ic\n"
             "with jit.compile_scope(): print(ic.copy is copy)")
    env = dict(os.environ, **{numba_inline.OFF_SWITCH: "1"})
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True" and "Warning" not in out.stderr


def test_a_numba_that_refuses_the_no_runtime_flag_gets_default_flags_after_one_warning(monkeypatch):
    def refuse(flags, options):
        if "_nrt" in options:
            raise KeyError("Unrecognized options: {'_nrt'}")
        return flags

    monkeypatch.setattr(jit.cpu.CPUTargetOptions, "parse_as_flags", staticmethod(refuse))
    with pytest.warns(jit.NumbaFlagWarning):
        options = jit.accepted_options({"_nrt": False, "nogil": True})
    assert options == {"nogil": True}
    assert jit.accepted_options({"nogil": True}) == {"nogil": True}  # accepted options pass untouched
