"""In-place updates (issue 10 item 1): every update is computed from the
parameter values before the call, and every output sees those values, at
every opt_level. The oracle is the interpreter (backend="interp") run on
copies of the parameters' values."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

from helpers import against_interp_with_updates

LEVELS = [0, 1, 2, 3]


def run_both(build, opt_level, calls=2):
    """Build the graph with ``build() -> (outputs, updates, params, feeds)``,
    run it compiled and in the interpreter from the same parameter values,
    and compare the outputs and the parameters after each call."""
    outputs, updates, params, feeds = build()
    return against_interp_with_updates(outputs, updates, params, feeds, calls=calls,
                                       opt_level=opt_level)


@pytest.mark.parametrize("opt_level", LEVELS)
def test_update_reading_a_parameter_updated_in_place(opt_level):
    prev = gc.parameter(np.zeros(4), name="prev")
    cur = gc.parameter(np.arange(4.0), name="cur")
    f = gc.compile(gc.sum(cur), updates={prev: cur, cur: cur + 1.0}, opt_level=opt_level,
                   cache=False)
    assert f() == 6.0
    np.testing.assert_array_equal(prev.value, [0, 1, 2, 3])
    np.testing.assert_array_equal(cur.value, [1, 2, 3, 4])
    f()
    np.testing.assert_array_equal(prev.value, [1, 2, 3, 4])
    np.testing.assert_array_equal(cur.value, [2, 3, 4, 5])


@pytest.mark.parametrize("opt_level", LEVELS)
def test_parameter_output_is_the_value_before_the_call(opt_level):
    p = gc.parameter(np.array([1.0, 2.0]), name="p")
    f = gc.compile(p, updates={p: p + 1.0}, opt_level=opt_level, cache=False)
    np.testing.assert_array_equal(f(), [1, 2])
    np.testing.assert_array_equal(p.value, [2, 3])
    np.testing.assert_array_equal(f(), [2, 3])


@pytest.mark.parametrize("opt_level", LEVELS)
def test_update_through_a_fused_transpose(opt_level):
    W = gc.parameter(np.arange(9.0).reshape(3, 3), name="W")
    h = W * 0.5
    gc.compile(gc.sum(W), updates={W: h + gc.transpose(h)}, opt_level=opt_level, cache=False)()
    w0 = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(W.value, 0.5 * (w0 + w0.T))


@pytest.mark.parametrize("opt_level", LEVELS)
def test_update_through_reversed_slice_and_row_reduction(opt_level):
    def build():
        p = gc.parameter(np.arange(12.0).reshape(3, 4), name="p")
        q = gc.parameter(np.arange(4.0) * 2, name="q")
        new_p = p[:, ::-1] * 2.0 + gc.sum(p, axis=1, keepdims=True)
        return [gc.sum(q), p], {p: new_p, q: q[::-1] + 1.0}, [p, q], {}
    run_both(build, opt_level)


@pytest.mark.parametrize("opt_level", LEVELS)
def test_adam_step_returns_the_weights_before_the_step(opt_level):
    def build():
        rng = np.random.default_rng(1)
        w = gc.parameter(rng.standard_normal((3, 2)), name="w")
        x = gc.placeholder((4, 3), "float64", name="x")
        loss = gc.mean((x @ w) ** 2)
        opt = gc.optim.Adam(lr=0.1)
        ups = opt.updates(loss, [w])
        params = [w] + [p for p in ups if p is not w]
        return [loss, w], ups, params, {"x": rng.standard_normal((4, 3))}
    run_both(build, opt_level)
    # and the returned w is the one the loss was computed with
    outputs, ups, params, feeds = build()
    w = params[0]
    w0 = w.value.copy()
    loss, w_out = gc.compile(outputs, updates=ups, opt_level=opt_level, cache=False)(**feeds)
    np.testing.assert_array_equal(w_out, w0)
    assert not np.array_equal(w.value, w0)


@pytest.mark.parametrize("opt_level", [2, 3])
def test_in_place_arena_buffer_not_read_through_a_transpose(opt_level):
    """The same analysis decides in-place arena buffers: an elementwise
    output must not take the buffer of a value the kernel also reads through
    a transpose."""
    rng = np.random.default_rng(2)
    a0, b0 = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    a = gc.parameter(a0, name="a")
    b = gc.parameter(b0, name="b")
    m = a @ b
    h = m * 0.5
    out = (h + gc.transpose(h)) @ b
    f = gc.compile(out, opt_level=opt_level, cache=False)
    m0 = a0 @ b0
    np.testing.assert_allclose(f(), (0.5 * (m0 + m0.T)) @ b0, rtol=1e-12)


def test_direct_update_kept_where_safe():
    """The optimisation stays: an elementwise update (an SGD / Adam step) is
    still written straight into its parameter."""
    rng = np.random.default_rng(0)
    w = gc.parameter(rng.standard_normal((3, 2)), name="w")
    x = gc.placeholder((4, 3), "float64", name="x")
    loss = gc.mean((x @ w) ** 2)
    ups = gc.optim.Adam(lr=0.1).updates(loss, [w])
    f = gc.compile(loss, updates=ups, cache=False)
    direct = set(p.id for p in f.memory.direct.values())
    assert w.id in direct
    assert len(direct) >= 3          # w and both moment buffers


@pytest.mark.parametrize("backend", ["llvm", "interp"])
@pytest.mark.parametrize("dt", ["int32", "int64"])
def test_integer_min_of_the_smallest_integer(backend, dt):
    """Found by the update fuzz: gc.min was -max(-x), and -x wraps at the
    smallest integer, so min([INT_MIN, -6]) was -6."""
    info = np.iinfo(dt)
    X = np.array([[info.min, -6, 3], [info.max, 0, info.min + 1]], dt)
    x = gc.placeholder((2, 3), dt, name="x")
    for ax in (None, 0, 1):
        r = gc.compile(gc.min(x, ax, True), backend=backend, cache=False)(x=X)
        np.testing.assert_array_equal(r, X.min(axis=ax, keepdims=True))
        assert r.dtype == X.dtype
