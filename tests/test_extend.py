"""Extending graphc, ways 1 and 2: composite ops (the seed document's
activation) and @gc.custom_gradient. Oracles: numpy, the interpreter and
central finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

from helpers import check_grads, numeric_grad


def custom_activation(x):
    """The seed document's activation: max(0, x) - 0.1 x."""
    return gc.maximum(0.0, x) - 0.1 * x


def np_activation(x):
    return np.maximum(0.0, x) - 0.1 * x


# -- 1. composite op ------------------------------------------------------------------

def _dense(rng, n, d_in, d_out, dtype):
    x = gc.placeholder((n, d_in), dtype, name="x")
    w = gc.parameter((rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)).astype(dtype), name="w")
    b = gc.parameter((0.1 * rng.standard_normal(d_out)).astype(dtype), name="b")
    z = x @ w + b
    return x, w, b, z, custom_activation(z)


def test_seed_activation_forward_matches_numpy():
    rng = np.random.default_rng(0)
    x, w, b, z, h = _dense(rng, 32, 784, 128, "float32")
    xv = rng.standard_normal((32, 784)).astype(np.float32)
    want = np_activation(xv.astype(np.float64) @ w.value.astype(np.float64) + b.value)
    for level in (0, 3):
        got = gc.compile(h, opt_level=level)(x=xv)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_seed_activation_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    xv = rng.standard_normal((5, 4))
    wv = rng.standard_normal((4, 3))
    bv = rng.standard_normal(3)
    cv = rng.standard_normal((5, 3))
    phs = [gc.placeholder(a.shape, "float64", name=n) for a, n in ((xv, "x"), (wv, "w"), (bv, "b"))]
    loss = gc.sum(custom_activation(phs[0] @ phs[1] + phs[2]) * gc.constant(cv))
    check_grads(loss, phs, [xv, wv, bv], (0, 1, 2))
    # and against the derivative written by hand: 0.9 where z > 0, -0.1 elsewhere
    z = xv @ wv + bv
    dz = cv * np.where(z > 0, 0.9, -0.1)
    (gw,) = gc.grad(loss, [phs[1]])
    got = gc.compile(gw, inputs=phs)(xv, wv, bv)
    np.testing.assert_allclose(got, xv.T @ dz, rtol=1e-12)


def test_seed_activation_fuses_into_the_gemm_epilogue():
    rng = np.random.default_rng(2)
    x, w, b, z, h = _dense(rng, 64, 784, 128, "float32")
    f = gc.compile(h)
    assert f.num_kernels == 1
    k = f.kernels[0]
    assert k.matmul is not None
    ops = {f.graph_node(m).op for m in k.members}
    assert {"matmul", "add", "maximum", "mul", "sub"} <= ops
    assert f.kernel_of(z) == f.kernel_of(h) == 0
    assert "fused" in f.why_not_fused(z, h)
    assert "gemm+loop" in f.report()

    # forward and backward: the activation, its derivative mask and the bias
    # gradient all run in the forward GEMM's epilogue
    y = gc.placeholder((64,), "int64", name="y")
    loss = gc.mean(gc.softmax_cross_entropy(h, y))
    gw, gb = gc.grad(loss, [w, b])
    f2 = gc.compile([loss, gw, gb])
    kz = f2.kernel_of(z)
    assert f2.kernels[kz].matmul is not None
    assert f2.kernel_of(h) == kz
    xv = rng.standard_normal((64, 784)).astype(np.float32)
    yv = rng.integers(0, 128, 64)
    got = f2(x=xv, y=yv)
    want = gc.compile([loss, gw, gb], backend="interp")(x=xv, y=yv)
    for g_, w_ in zip(got, want):
        np.testing.assert_allclose(g_, w_, rtol=2e-4, atol=2e-5)


# -- 2. custom gradient -----------------------------------------------------------------

@gc.custom_gradient
def clip_gradient(x):
    def grad_fn(dy):
        return gc.minimum(gc.maximum(dy, -1.0), 1.0)
    return x, grad_fn


@gc.custom_gradient
def log1pexp(x):
    """TensorFlow's example: a numerically stable gradient for log(1 + e^x)."""
    e = gc.exp(x)

    def grad_fn(dy):
        return dy * (1.0 - 1.0 / (1.0 + e))
    return gc.log(1.0 + e), grad_fn


@gc.custom_gradient
def cube(x):
    return x * x * x, lambda dy: dy * 3.0 * x * x


def test_custom_gradient_value_and_rule():
    x = gc.placeholder((6,), "float64", name="x")
    xv = np.linspace(-2, 2, 6)
    y = gc.sum(clip_gradient(x) * 5.0)
    (g,) = gc.grad(y, [x])
    for kw in (dict(opt_level=0), dict(opt_level=3), dict(backend="interp")):
        yv, gv = gc.compile([y, g], **kw)(x=xv)
        np.testing.assert_allclose(yv, 5.0 * xv.sum(), atol=1e-12)
        np.testing.assert_array_equal(gv, np.ones(6))      # 5 clipped to 1, not 5


def test_custom_gradient_tensorflow_log1pexp_is_stable():
    x = gc.placeholder((3,), "float32", name="x")
    (g,) = gc.grad(gc.sum(log1pexp(x)), [x])
    (naive,) = gc.grad(gc.sum(gc.log(1.0 + gc.exp(x))), [x])
    xv = np.array([0.0, 100.0, -3.0], np.float32)
    gv, nv = gc.compile([g, naive])(x=xv)
    np.testing.assert_allclose(gv, [0.5, 1.0, 1.0 / (1.0 + np.exp(3.0))], rtol=1e-5)
    assert np.isnan(nv[1])          # exp(100) overflows float32: the naive gradient is inf/inf


def test_custom_gradient_forward_is_fused_and_wrapper_removed():
    x = gc.placeholder((128,), "float64", name="x")
    out = gc.exp(cube(gc.tanh(x))) * 2.0
    (g,) = gc.grad(gc.sum(out), [x])
    f = gc.compile([out, g])
    assert all(n.op != "custom_vjp" for n in f.graph.nodes)
    rec = [r for r in f.passes if r.name == "simplify"][0]
    assert any(rule == "custom-gradient" for _, _, rule in rec.rewrites)
    assert f.kernel_of(out) == f.kernel_of(gc.tanh(x))     # one loop: tanh, cube, exp, *2
    f0 = gc.compile([out, g], opt_level=0)
    assert any(n.op == "custom_vjp" for n in f0.graph.nodes)
    xv = np.random.default_rng(3).standard_normal(128)
    want = np.exp(np.tanh(xv) ** 3) * 2.0
    dwant = want * 3 * np.tanh(xv) ** 2 * (1 - np.tanh(xv) ** 2)
    for fn in (f, f0, gc.compile([out, g], backend="interp")):
        o, gv = fn(x=xv)
        np.testing.assert_allclose(o, want, rtol=1e-12)
        np.testing.assert_allclose(gv, dwant, rtol=1e-10)


def test_custom_gradient_grad_of_grad():
    x = gc.placeholder((5,), "float64", name="x")
    v = gc.placeholder((5,), "float64", name="v")
    xv = np.array([-1.5, -0.3, 0.2, 0.9, 1.7])
    vv = np.array([0.3, -1.0, 2.0, 0.5, 1.0])
    (g,) = gc.grad(gc.sum(cube(x)), [x])
    (h,) = gc.grad(gc.sum(g * v), [x])          # Hessian-vector product: 6 x v
    for kw in (dict(), dict(opt_level=0), dict(backend="interp")):
        gv, hv = gc.compile([g, h], **kw)(x=xv, v=vv)
        np.testing.assert_allclose(gv, 3 * xv ** 2, rtol=1e-12)
        np.testing.assert_allclose(hv, 6 * xv * vv, rtol=1e-12)
    # and against finite differences of the compiled first gradient
    fg = gc.compile(gc.sum(g * v), inputs=[x, v])
    num = numeric_grad(lambda a: fg(a[0], a[1]), [xv.copy(), vv], 0, 1e-6)
    np.testing.assert_allclose(gc.compile(h, inputs=[x, v])(xv, vv), num, rtol=1e-6)


def test_custom_gradient_two_inputs_broadcast_and_finite_differences():
    @gc.custom_gradient
    def scaled_tanh(x, s):
        t = gc.tanh(x * s)

        def grad_fn(dy):
            d = dy * (1.0 - t * t)
            return d * s, d * x          # d * x has x's shape: summed back to s's shape
        return t, grad_fn

    rng = np.random.default_rng(4)
    xv, sv, cv = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal((4, 3))
    x = gc.placeholder((4, 3), "float64", name="x")
    s = gc.placeholder((3,), "float64", name="s")
    loss = gc.sum(scaled_tanh(x, s) * gc.constant(cv))
    check_grads(loss, [x, s], [xv, sv], (0, 1))


def test_custom_gradient_multiple_outputs():
    @gc.custom_gradient
    def polar(x, y):
        r = gc.sqrt(x * x + y * y)

        def grad_fn(dr, dq):
            return dr * x / r + dq * y, dr * y / r + dq * x
        return (r, x * y), grad_fn

    rng = np.random.default_rng(5)
    xv, yv = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    x = gc.placeholder((4,), "float64", name="x")
    y = gc.placeholder((4,), "float64", name="y")
    r, q = polar(x, y)
    loss = gc.sum(r * 2.0) + gc.sum(q * q)
    check_grads(loss, [x, y], [xv, yv], (0, 1))
    rv, qv = gc.compile([r, q])(x=xv, y=yv)
    np.testing.assert_allclose(rv, np.hypot(xv, yv), rtol=1e-12)
    np.testing.assert_allclose(qv, xv * yv, rtol=1e-12)


def test_custom_gradient_none_cotangent_and_interface_errors():
    @gc.custom_gradient
    def first_only(x, y):
        return x * y, lambda dy: (dy * y, None)

    x = gc.placeholder((3,), "float64", name="x")
    y = gc.placeholder((3,), "float64", name="y")
    gx, gy = gc.grad(gc.sum(first_only(x, y)), [x, y])
    a, b = np.array([1.0, 2, 3]), np.array([4.0, 5, 6])
    gxv, gyv = gc.compile([gx, gy], inputs=[x, y])(a, b)
    np.testing.assert_array_equal(gxv, b)
    np.testing.assert_array_equal(gyv, 0.0)

    @gc.custom_gradient
    def no_pair(x):
        return x
    with pytest.raises(TypeError, match=r"must return \(y, grad_fn\)"):
        no_pair(x)

    @gc.custom_gradient
    def too_many(x):
        return x * 2.0, lambda dy: (dy, dy)
    with pytest.raises(TypeError, match=r"returned 2 cotangent\(s\) for 1 inputs"):
        gc.grad(gc.sum(too_many(x)), [x])

    @gc.custom_gradient
    def bad_shape(x):
        return x * 2.0, lambda dy: gc.zeros((2,))
    with pytest.raises(gc.ShapeError, match=r"cotangent of shape \(2,\) for input 0, which has "
                                            r"shape \(3,\)"):
        gc.grad(gc.sum(bad_shape(x)), [x])


def test_custom_gradient_captured_parameters_need_variables():
    rng = np.random.default_rng(6)
    w = gc.parameter(rng.standard_normal(3), name="w_captured")
    x = gc.placeholder((3,), "float64", name="x")

    @gc.custom_gradient
    def uses_w(x):
        return x * w, lambda dy: dy * w
    with pytest.raises(TypeError, match="w_captured.*variables"):
        uses_w(x)

    @gc.custom_gradient
    def uses_w_ok(x):
        def grad_fn(dy, variables=None):
            (v,) = variables
            return [dy * v], [dy * x]
        return x * w, grad_fn
    loss = gc.sum(uses_w_ok(x) * gc.exp(x))
    gx, gw = gc.grad(loss, [x, w])
    xv = rng.standard_normal(3)
    gxv, gwv = gc.compile([gx, gw])(x=xv)
    # the rule says d/dx = w (not w + x w): the product rule's other term is dropped on purpose
    np.testing.assert_allclose(gxv, w.value * np.exp(xv) + xv * w.value * np.exp(xv), rtol=1e-12)
    np.testing.assert_allclose(gwv, xv * np.exp(xv), rtol=1e-12)


def test_custom_gradient_calls_are_distinct_nodes_and_print():
    x = gc.placeholder((3,), "float64", name="x")

    @gc.custom_gradient
    def ident_double(x):
        return x, lambda dy: dy * 2.0

    @gc.custom_gradient
    def ident_triple(x):
        return x, lambda dy: dy * 3.0

    a, b = ident_double(x), ident_triple(x)
    assert a is not b and ident_double(x) is not a      # never merged by hash-consing
    loss = gc.sum(a) + gc.sum(b)
    (g,) = gc.grad(loss, [x])
    for passes in (None, ["cse"], ["fold", "cse", "dce"]):
        np.testing.assert_array_equal(gc.compile(g, [x], passes=passes)(np.ones(3)), 5.0)
    text = gc.Graph([loss]).text()
    assert "custom_vjp %0, %0 {grad=<grad_fn of" in text and "ident_double" in text
