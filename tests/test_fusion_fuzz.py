"""Fusion's structure, fuzzed with exact arithmetic.

Random graphs of reductions (over the last or the first axis), elementwise
ops and broadcasts through reshapes and transposes, on small square shapes
so that a value reduced along its rows is easily read along its columns:
the patterns fusion's row, horizontal, vertical and accumulation merges must
tell apart (the bug that found this test: a row reduction reading another
at every row was fused into its row loop). Inputs are small integers in
float64 and every op keeps values integral and far below 2**53 (``mul``
only by an input, whose values are in [-2, 2]), so every summation order
gives the same exact result: the compiled function must equal the
interpreter bit for bit, at opt_level 1, 2 and 3, and with two threads.

Default run: 120 graphs (derandomized by the ``graphc-ci`` profile);
``python -m pytest -m slow tests/test_fusion_fuzz.py`` runs 3000.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc

N = 4
LONG = settings.get_profile("graphc-dev" if os.environ.get("GRAPHC_HYPOTHESIS_PROFILE") == "graphc-dev"
                            else "graphc-long")


def _vec_as(v, orient):
    """A (N,) value as a row (1, N) or a column (N, 1)."""
    return gc.reshape(v, (1, N) if orient == "row" else (N, 1))


@st.composite
def graphs(draw, max_ops=8):
    """(outputs, inputs, input values): a random graph over (N, N) and (N,)
    values built from two (N, N) inputs."""
    x = gc.placeholder((N, N), "float64", name="x")
    w = gc.placeholder((N, N), "float64", name="w")
    mats, vecs = [x, w], []          # (N, N) and (N,) values so far
    ints = [x, w]                    # the inputs: the only multipliers
    for _ in range(draw(st.integers(2, max_ops))):
        kind = draw(st.sampled_from(["reduce", "reduce", "bcast", "bcast", "ew", "transpose",
                                     "mul", "reduce_keep"]))
        m = draw(st.sampled_from(mats[-2:]))        # recent values: chains, not dead ends
        if kind == "reduce":
            op = draw(st.sampled_from([gc.sum, gc.max, gc.min]))
            vecs.append(op(m, axis=draw(st.sampled_from([-1, 0]))))
        elif kind == "reduce_keep":
            op = draw(st.sampled_from([gc.sum, gc.max]))
            axis = draw(st.sampled_from([-1, 0]))
            mats.append(m - op(m, axis=axis, keepdims=True))
        elif kind == "bcast" and vecs:
            v = draw(st.sampled_from(vecs[-2:]))
            orient = draw(st.sampled_from(["row", "col"]))
            op = draw(st.sampled_from([gc.add, gc.sub, gc.maximum]))
            mats.append(op(m, _vec_as(v, orient)))
        elif kind == "ew":
            op = draw(st.sampled_from(["neg", "relu", "add", "sub"]))
            if op == "neg":
                mats.append(-m)
            elif op == "relu":
                mats.append(gc.relu(m))
            else:
                o = draw(st.sampled_from(mats))
                mats.append(m + o if op == "add" else m - o)
        elif kind == "transpose":
            mats.append(gc.transpose(m))
        elif kind == "mul":
            mats.append(m * draw(st.sampled_from(ints)))
    outs = [mats[-1]] + vecs[-2:]
    extra = draw(st.lists(st.sampled_from(mats + vecs), max_size=2))
    outs += [o for o in extra if all(o is not p for p in outs)]
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    values = [rng.integers(-2, 3, (N, N)).astype(np.float64) for _ in range(2)]
    return outs, [x, w], values


def _check(case):
    outs, inputs, values = case
    want = gc.compile(outs, inputs, backend="interp")(*values)
    for level, threads in ((1, 1), (2, 1), (3, 1), (3, 2)):
        got = gc.compile(outs, inputs, opt_level=level, threads=threads, cache=False)(*values)
        for g, r in zip(got, want):
            np.testing.assert_array_equal(g, r, err_msg=f"opt_level={level}, threads={threads}")


@settings(max_examples=120, deadline=None)
@given(graphs())
def test_fused_graphs_equal_the_interpreter_exactly(case):
    _check(case)


@pytest.mark.slow
@settings(LONG, max_examples=3000)
@given(graphs(max_ops=14))
def test_fused_graphs_equal_the_interpreter_exactly_long(case):
    _check(case)
