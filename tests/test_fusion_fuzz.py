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

Default run: 120 graphs (derandomized by the ``graphc-ci`` profile), and 50 of
the wide grammar (``wide_graphs``: non-square shapes, matmuls, slices, pads,
reshapes, cumsum, several outputs, parameters with ``updates=``);
and 6 over inputs large enough for two threads to split kernels;
``python -m pytest -m slow tests/test_fusion_fuzz.py`` runs 3000, 2000 and 300.
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


def _other(values):
    """Other values in [-2, 2], different at every element: a call with them
    first leaves the arena and the memory numpy reuses for the outputs
    holding wrong values, so a kernel that reads a value before it is
    written (this call's) cannot pass by reading the last call's."""
    return [(v + 3) % 5 - 2 for v in values]


def _check(case):
    outs, inputs, values = case
    want = gc.compile(outs, inputs, backend="interp")(*values)
    for level, threads in ((1, 1), (2, 1), (3, 1), (3, 2)):
        f = gc.compile(outs, inputs, opt_level=level, threads=threads, cache=False)
        f(*_other(values))
        got = f(*values)
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
# ---------------------------------------------------------------- the wide grammar

LIMIT = 2.0 ** 40     # every value's bound: its sums stay exact far below 2**53


class _Pool:
    """The values built so far, each with a bound on its magnitude (values
    larger than ``cap`` elements are dropped)."""

    def __init__(self, cap):
        self.vals, self.cap = [], cap       # (node, bound)

    def add(self, n, bound):
        if bound <= LIMIT and 0 < n.size <= self.cap:
            self.vals.append((n, bound))

    def shaped(self, shape):
        return [(n, b) for n, b in self.vals if n.shape == tuple(shape)]


def _slice_key(draw, n):
    """A random non-empty slice of an axis of length n."""
    step = draw(st.sampled_from([1, 1, 2, -1, -2]))
    lo = draw(st.integers(0, n - 1))
    hi = draw(st.integers(lo + 1, n))
    return slice(lo, hi, step) if step > 0 else slice(hi - 1, None if lo == 0 else lo - 1, step)


def _factor_shapes(size):
    out = [(size,)]
    out += [(a, size // a) for a in range(2, size) if size % a == 0]
    return out


def _wide_op(draw, pool, m, bm, ints):
    """One op applied to ``m`` (bound ``bm``); adds its result(s) to pool."""
    S, nd = m.shape, m.ndim
    kinds = ["ew1", "ew2", "const", "where", "cumsum", "reshape"]
    if nd >= 1:
        kinds += ["reduce", "reduce", "slice", "concat", "pad"]
    if nd == 1:
        kinds += ["expand", "bcast_to"]
    if nd == 2:
        kinds += ["keep", "keep", "bcast", "bcast", "transpose", "matmul", "matmul", "mul",
                  "outer"]
    kind = draw(st.sampled_from(kinds))
    if kind == "reduce":
        op = draw(st.sampled_from([gc.sum, gc.sum, gc.max, gc.min]))
        axis = draw(st.sampled_from(list(range(-1, nd - 1)) + [None]))
        keep = draw(st.booleans())
        n = m.size if axis is None else S[axis]
        pool.add(op(m, axis=axis, keepdims=keep), bm * (n if op is gc.sum else 1))
    elif kind == "keep":                        # softmax-like without exp
        op = draw(st.sampled_from([gc.sum, gc.max]))
        axis = draw(st.sampled_from([-1, 0]))
        pool.add(m - op(m, axis=axis, keepdims=True), bm * (1 + (S[axis] if op is gc.sum else 1)))
    elif kind == "bcast":
        vecs = [(v, b) for v, b in pool.vals if v.ndim <= 1 and v.size in (1, S[0], S[1])]
        if vecs:
            v, bv = draw(st.sampled_from(vecs))
            if v.size == 1 or v.size == S[1] and (v.size != S[0] or draw(st.booleans())):
                vv = gc.reshape(v, (1, S[1])) if v.size == S[1] else v
            else:
                vv = gc.reshape(v, (S[0], 1))
            op = draw(st.sampled_from(["add", "sub", "maximum", "minimum", "mul"]))
            if op == "mul":
                pool.add(m * vv, bm * bv)
            else:
                pool.add(getattr(gc, op)(m, vv), bm + bv)
    elif kind == "ew1":
        op = draw(st.sampled_from([gc.neg, gc.relu, gc.abs]))
        pool.add(op(m), bm)
    elif kind == "ew2":
        o, bo = draw(st.sampled_from(pool.shaped(S)))
        op = draw(st.sampled_from(["add", "sub", "maximum", "minimum", "mul"]))
        if op == "mul":
            pool.add(m * o, bm * bo)
        else:
            pool.add(getattr(gc, op)(m, o), bm + bo)
    elif kind == "const":
        c = draw(st.sampled_from([2.0, -1.0, 3.0]))
        pool.add(m * c if draw(st.booleans()) else m + c, bm * abs(c) + abs(c))
    elif kind == "mul":
        i = draw(st.sampled_from([i for i in ints if i.shape == S] or [None]))
        if i is not None:
            pool.add(m * i, bm * 2)
    elif kind == "where":
        o, bo = draw(st.sampled_from(pool.shaped(S)))
        cmp = draw(st.sampled_from([gc.greater, gc.less_equal, gc.equal]))
        other = draw(st.sampled_from(pool.shaped(S)))
        pool.add(gc.where(cmp(m, o), other[0], m), max(bm, other[1]))
    elif kind == "transpose":
        pool.add(gc.transpose(m), bm)
    elif kind == "matmul":
        # m @ o (o: (S[1], k)) or m @ o.T (o: (k, S[1])), with an epilogue
        cands = [(o, b, False) for o, b in pool.vals if o.ndim == 2 and o.shape[0] == S[1]]
        cands += [(o, b, True) for o, b in pool.vals if o.ndim == 2 and o.shape[1] == S[1]]
        if cands:
            o, bo, tr = draw(st.sampled_from(cands))
            y = m @ (gc.transpose(o) if tr else o)
            by = bm * bo * S[1]
            k = y.shape[1]
            epi = draw(st.sampled_from(["none", "bias", "bias_relu", "relu", "reduce"]))
            if epi.startswith("bias"):
                vecs = [(v, b) for v, b in pool.vals if v.shape == (k,)]
                if vecs:
                    v, bv = draw(st.sampled_from(vecs))
                    y, by = y + gc.reshape(v, (1, k)), by + bv
            if epi.endswith("relu"):
                y = gc.relu(y)
            pool.add(y, by)
            if epi == "reduce":
                axis = draw(st.sampled_from([-1, 0, None]))
                pool.add(gc.sum(y, axis=axis), by * (y.size if axis is None else y.shape[axis]))
    elif kind == "outer":
        # a 3-d value m[a, b] op v[c], reduced at once over one of its axes:
        # a reduction of a (R, C) result over indices of its own
        vecs = [(v, b) for v, b in pool.vals if v.ndim == 1 and v.size * m.size <= 4 * pool.cap]
        if vecs:
            v, bv = draw(st.sampled_from(vecs))
            t = gc.add(gc.reshape(m, S + (1,)), gc.reshape(v, (1, 1, v.size))) \
                if draw(st.booleans()) else gc.reshape(m, S + (1,)) * gc.reshape(v, (1, 1, v.size))
            bt = max(bm + bv, bm * bv)
            axis = draw(st.sampled_from([-1, -1, 0, 1]))
            op = draw(st.sampled_from([gc.sum, gc.sum, gc.max]))
            pool.add(op(t, axis=axis), bt * (t.shape[axis] if op is gc.sum else 1))
    elif kind == "slice":
        key = tuple(_slice_key(draw, d) for d in S)
        pool.add(m[key], bm)
    elif kind == "concat":
        axis = draw(st.integers(0, nd - 1))
        cands = [(o, b) for o, b in pool.vals if o.ndim == nd and all(
            o.shape[a] == S[a] for a in range(nd) if a != axis)]
        o, bo = draw(st.sampled_from(cands))        # (m itself is one)
        pool.add(gc.concatenate([m, o] if draw(st.booleans()) else [o, m], axis=axis), max(bm, bo))
    elif kind == "pad" and m.size <= pool.cap // 4:
        widths = tuple((draw(st.integers(0, 1)), draw(st.integers(0, 1))) for _ in S)
        value = draw(st.sampled_from([0.0, 0.0, 1.0]))
        pool.add(gc.pad(m, widths, value=value), max(bm, abs(value)))
    elif kind == "reshape":
        shape = draw(st.sampled_from(_factor_shapes(m.size) if m.size > 1 else [(1,)]))
        pool.add(gc.reshape(m, shape), bm)
    elif kind == "expand":
        pool.add(gc.expand_dims(m, draw(st.sampled_from([0, 1]))), bm)
    elif kind == "bcast_to" and m.size <= pool.cap // 4:
        k = draw(st.integers(2, 4))
        if draw(st.booleans()):
            pool.add(gc.broadcast_to(m, (k, S[0])), bm)
        else:
            pool.add(gc.broadcast_to(gc.reshape(m, (S[0], 1)), (S[0], k)), bm)
    elif kind == "cumsum" and nd >= 1:
        axis = draw(st.integers(-1, nd - 1)) if nd > 1 else 0
        pool.add(gc.cumsum(m, axis=axis, exclusive=draw(st.booleans()),
                           reverse=draw(st.booleans())), bm * S[axis])


class WideCase:
    def __init__(self, outs, inputs, values, params, starts, updates):
        self.outs, self.inputs, self.values = outs, inputs, values
        self.params, self.starts, self.updates = params, starts, updates

    def __repr__(self):
        g = gc.Graph(self.outs + list(self.updates.values()), self.inputs)
        ups = ", ".join(f"{p.name} <- %{g.numbering()[v.id]}" for p, v in self.updates.items())
        return (f"WideCase(\n{g.text()}\nupdates: {ups or 'none'}\n"
                f"inputs: {[v.tolist() for v in self.values]}\n"
                f"parameters: {[v.tolist() for v in self.starts]})")


SMALL = [(4, 4), (3, 4), (4, 5)]
# large enough for two threads to split loops, GEMMs and scalar reductions
BIG = [(256, 512), (384, 256)]


@st.composite
def wide_graphs(draw, max_ops=10, shapes=SMALL, cap=64):
    """A random graph over (R, C) inputs (square or not), of every op family
    fusion treats differently, with parameters updated in some."""
    R, C = draw(st.sampled_from(shapes))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = gc.placeholder((R, C), "float64", name="x")
    w = gc.placeholder((R, C), "float64", name="w")
    b = gc.placeholder((C,), "float64", name="b")
    inputs = [x, w, b]
    values = [rng.integers(-2, 3, i.shape).astype(np.float64) for i in inputs]
    params, starts = [], []
    for k in range(draw(st.integers(0, 2))):
        shape = draw(st.sampled_from([(R, C), (C, C), (C,)]))
        starts.append(rng.integers(-2, 3, shape).astype(np.float64))
        params.append(gc.parameter(starts[-1].copy(), name=f"p{k}"))
    pool = _Pool(cap)
    for i in inputs + params:
        pool.add(i, 2.0)
    ints = inputs + params
    for _ in range(draw(st.integers(2, max_ops))):
        recent = pool.vals[-3:] + [pool.vals[draw(st.integers(0, len(pool.vals) - 1))]]
        m, bm = draw(st.sampled_from(recent))
        _wide_op(draw, pool, m, bm, ints)
    computed = [n for n, _ in pool.vals if not n.is_leaf]
    outs = [pool.vals[-1][0]]
    for o in draw(st.lists(st.sampled_from(pool.vals), max_size=3)):
        outs.append(o[0])             # duplicates and leaves too
    updates = {}
    for p in params:
        cands = [n for n in computed if n.shape == p.shape]
        if cands and draw(st.booleans()):
            updates[p] = draw(st.sampled_from(cands))
    return WideCase(outs, inputs, values, params, starts, updates)


def _run(case, **options):
    f = gc.compile(case.outs, case.inputs, updates=case.updates or None, **options)
    for p, v in zip(case.params, case.starts):
        p.value = _other([v])[0]
    f(*_other(case.values))
    for p, v in zip(case.params, case.starts):
        p.value = v.copy()
    got = f(*case.values)
    return list(got), [p.value.copy() for p in case.params]


def _check_wide(case):
    want, want_p = _run(case, backend="interp")
    for level, threads in ((1, 1), (2, 1), (3, 1), (3, 2)):
        got, got_p = _run(case, opt_level=level, threads=threads, cache=False)
        what = f"opt_level={level}, threads={threads}"
        for k, (g, r) in enumerate(zip(got, want)):
            np.testing.assert_array_equal(g, r, err_msg=f"{what}, output {k}")
        for p, g, r in zip(case.params, got_p, want_p):
            np.testing.assert_array_equal(g, r, err_msg=f"{what}, parameter {p.name}")


@settings(max_examples=50, deadline=None)
@given(wide_graphs())
def test_wide_fused_graphs_equal_the_interpreter_exactly(case):
    _check_wide(case)


@pytest.mark.slow
@settings(LONG, max_examples=2000)
@given(wide_graphs(max_ops=16))
def test_wide_fused_graphs_equal_the_interpreter_exactly_long(case):
    _check_wide(case)


@settings(max_examples=6, deadline=None)
@given(wide_graphs(max_ops=8, shapes=BIG, cap=1 << 18))
def test_wide_fused_graphs_split_across_threads_equal_the_interpreter_exactly(case):
    _check_wide(case)


@pytest.mark.slow
@settings(LONG, max_examples=300)
@given(wide_graphs(max_ops=12, shapes=BIG, cap=1 << 18))
def test_wide_fused_graphs_split_across_threads_equal_the_interpreter_exactly_long(case):
    _check_wide(case)
