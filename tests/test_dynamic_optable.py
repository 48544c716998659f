"""The op table with a symbolic leading axis: every sample whose array inputs
share a leading extent L >= 2 is built once with those inputs symbolic
(gc.Dim of bound L), compiled once (native and interpreter), and called with
every size n from 1 to L; the oracle is the entry's numpy reference on the
first n rows. An op that cannot carry the dim must refuse when the node is
built, with a ShapeError that says so — never a wrong answer."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import graphc as gc
from graphc.errors import ShapeError

from helpers import assert_close, user_kwargs
from optable import OPS, draw


def _symbolic_case(sample):
    shapes = sample.shapes
    if not shapes or not shapes[0] or shapes[0][0] < 2 or shapes[0][0] > 8:
        return None
    return shapes[0][0]


CASES = [(o, s) for o in OPS for s in o.samples if _symbolic_case(s)]
IDS = [f"{o.name}-{s!r}" for o, s in CASES]


def _ints(v) -> set:
    if isinstance(v, dict):
        return set().union(*map(_ints, v.values())) if v else set()
    if isinstance(v, (tuple, list)):
        return set().union(*map(_ints, v)) if v else set()
    return {v} if isinstance(v, int) and not isinstance(v, bool) else set()


@pytest.mark.parametrize("info,sample", CASES, ids=IDS)
def test_op_with_a_symbolic_leading_axis(info, sample):
    bound = _symbolic_case(sample)
    rng = np.random.default_rng(zlib.crc32(f"{info.name}{sample!r}".encode()))
    arrays = draw(info, sample, rng)
    dim = gc.Dim("batch", max=bound)
    # the first input, and the others of its shape or of lower rank (labels) that
    # share its leading extent (not a weight whose leading extent is equal by chance)
    first = arrays[0]
    sym = [k == 0 or (a.ndim and a.shape[0] == bound and (a.shape == first.shape or
                                                          a.ndim < first.ndim))
           for k, a in enumerate(arrays)]
    phs = [gc.placeholder(((dim,) + a.shape[1:]) if s else a.shape, a.dtype, name=f"in{k}")
           for k, (a, s) in enumerate(zip(arrays, sym))]
    kwargs = user_kwargs(sample)
    try:
        out = info.fn(*phs, **kwargs)
    except ShapeError as e:
        assert "symbolic" in str(e), e          # a refusal names the symbolic dim
        return
    fc = gc.compile(out, inputs=phs)
    fi = gc.compile(out, inputs=phs, backend="interp")
    checked = 0
    # numpy broadcasts a 1-row input against anything: at n = 1 the reference
    # means something else wherever a fixed input or attribute has the bound's extent
    partner = any(not s and bound in a.shape for a, s in zip(arrays, sym)) or \
        bound in _ints(kwargs)
    for n in range(1 + partner, bound + 1):
        args = [a[:n] if s else a for a, s in zip(arrays, sym)]
        try:
            with np.errstate(all="ignore"):
                want = np.asarray(info.ref(*args, **kwargs))
        except (ValueError, IndexError):
            continue            # the entry's attributes fit only the bound's shape
        rtol, atol = info.rtol, info.atol
        if want.dtype == np.float32:
            atol = max(atol, 1e-6 * max(1.0, sum(float(np.abs(a).sum()) for a in args
                                                 if a.dtype.kind == "f")))
        if n == bound or (out.batch is not None) or want.shape == out.shape:
            assert_close(fi(*args), want, rtol, atol, f"interp, n={n}")
            assert_close(fc(*args), want, rtol, atol, f"llvm, n={n}")
            checked += 1
        else:
            # the numpy result's shape depends on n, the node's does not: only
            # right if the op refused; it did not, so this is a wrong answer
            raise AssertionError(f"n={n}: numpy gives {want.shape}, the graph {out.shape} "
                                 f"without a symbolic axis")
    assert checked
