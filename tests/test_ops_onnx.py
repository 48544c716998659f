"""The ops the ONNX importer needs (issue 14), beyond the op table: special
values against numpy, rounding ties, clip's gradient at its bounds (torch's
rule), prod's gradient with zeros and under/overflow, cumsum along a long
axis (linear memory), and fusion of the new elementwise primitives."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

from helpers import check_grads

SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -2.5, 1e300, -1e-300,
           2.0 ** 52 + 1, -(2.0 ** 53), 5e-324]


def _run(fn, *arrays):
    phs = [gc.placeholder(a.shape, a.dtype, name=f"a{k}") for k, a in enumerate(arrays)]
    out = fn(*phs)
    return gc.compile(out, inputs=phs)(*arrays), gc.compile(out, inputs=phs, backend="interp")(*arrays)


def _same(got, want):
    """Equal values, NaN where NaN, and the sign of zeros."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype)
    ok = (got == want) | (np.isnan(got) & np.isnan(want)) if got.dtype.kind == "f" else got == want
    if got.dtype.kind == "f":
        ok &= (np.signbit(got) == np.signbit(want)) | np.isnan(want)
    assert ok.all(), f"got {got[~ok]}, want {want[~ok]}"


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("name", ["floor", "ceil", "round", "sign", "sin", "cos", "reciprocal"])
def test_special_values_match_numpy(name, dt):
    with np.errstate(over="ignore"):
        x = np.array(SPECIAL).astype(dt)        # (1e300 is inf in float32)
    ref = {"reciprocal": lambda v: 1 / v}.get(name, getattr(np, name))
    with np.errstate(all="ignore"):
        want = ref(x)
    got, interp = _run(getattr(gc, name), x)
    if name in ("sin", "cos"):      # not bit for bit: within an ulp, NaN and zeros exact
        _same(np.where(np.isfinite(want) & (want != 0), want, got), want)
        np.testing.assert_allclose(got, want, rtol=2e-7 if dt == "float32" else 3e-16)
    else:
        _same(got, want)
    _same(interp, want)


def test_round_ties_to_even():
    x = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999999999999994,
                  2.0 ** 52 - 0.5, 4503599627370497.0])
    for dt in ("float32", "float64"):
        xv = x.astype(dt)
        got, _ = _run(gc.round, xv)
        _same(got, np.round(xv))
    np.testing.assert_array_equal(_run(gc.round, x[:8])[0], [-4, -2, -2, -0.0, 0, 2, 2, 4])


@pytest.mark.parametrize("dt", ["int32", "int64"])
def test_integer_rounding_and_sign(dt):
    info = np.iinfo(dt)
    x = np.array([info.min, info.min + 1, -7, -1, 0, 1, 7, info.max], dt)
    for name in ("floor", "ceil", "round", "sign"):
        got, interp = _run(getattr(gc, name), x)
        _same(got, getattr(np, name)(x))
        _same(interp, getattr(np, name)(x))


def test_clip_special_values_and_crossed_bounds():
    x = np.array(SPECIAL)
    for lo, hi in [(-1.0, 1.0), (None, 0.0), (0.0, None), (1.0, -1.0), (-np.inf, np.inf)]:
        got, interp = _run(lambda v, lo=lo, hi=hi: gc.clip(v, lo, hi), x)
        _same(got, np.clip(x, lo, hi))
        _same(interp, np.clip(x, lo, hi))


def _grads(out_fn, arrays):
    phs = [gc.placeholder(a.shape, a.dtype, name=f"g{k}") for k, a in enumerate(arrays)]
    loss = gc.sum(out_fn(*phs))
    return gc.compile(gc.grad(loss, phs), inputs=phs)(*arrays)


def test_clip_gradient_at_the_bounds_is_torch_clamps():
    """torch.clamp's backward: x gets the gradient where lo <= x <= hi (both bounds
    included), the lower bound where x < lo, the upper where x > hi."""
    x = np.array([-1.0, 1.0, 0.25, -3.0, 4.0, -1.0, 1.0])
    lo = np.array([-1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0])
    hi = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    gx, glo, ghi = _grads(gc.clip, [x, lo, hi])
    np.testing.assert_array_equal(gx, (x >= lo) & (x <= hi))
    np.testing.assert_array_equal(glo, x < lo)
    np.testing.assert_array_equal(ghi, x > hi)
    (gx,) = _grads(lambda v: gc.clip(v, -1.0, 1.0), [x])
    np.testing.assert_array_equal(gx, [1, 1, 1, 0, 0, 1, 1])


def _others(x, axis):
    """The product of the other elements along ``axis``, by deleting each."""
    x = np.moveaxis(x, axis, -1)
    out = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        out[idx] = np.prod(np.delete(x[idx[:-1]], idx[-1]))
    return np.moveaxis(out, -1, axis)


def test_prod_gradient_with_zeros():
    x = np.array([[2.0, 0.0, 3.0, -1.5],      # one zero: only it gets a gradient
                  [0.0, 4.0, 0.0, 2.0],       # two zeros: none does
                  [0.0, 0.0, 0.0, 0.0],
                  [1.5, -2.0, 0.5, 3.0]])
    for axis in (1, 0):
        (g,) = _grads(lambda v, axis=axis: gc.prod(v, axis), [x])
        np.testing.assert_array_equal(g, _others(x, axis))
    p = gc.placeholder(x.shape, "float64", name="p")
    check_grads(gc.sum(gc.prod(p, 1) * gc.constant([1.0, -2.0, 0.5, 3.0])), [p], [x], (0,))
    # second order at the zeros: the Hessian-vector product against finite differences
    w = gc.constant(np.random.default_rng(0).standard_normal(x.shape))
    (g,) = gc.grad(gc.sum(gc.prod(p, 1)), [p])
    check_grads(gc.sum(g * w), [p], [x], (0,), 1e-5, 1e-5)


def test_prod_gradient_is_not_prod_over_x():
    """prod / x is 0/0 where x is 0 and 0 where the product underflows; the
    product of the others is neither."""
    x = np.array([[1e300, 1e-300, 0.0, 2.0], [1e-200, 1e-200, 1e200, 1.0]])
    (g,) = _grads(lambda v: gc.prod(v, 1), [x])
    np.testing.assert_array_equal(g[0], [0.0, 0.0, 2.0, 0.0])
    assert g[1, 0] == 1e-200 * 1e200 and g[1, 2] == 0.0      # 1e-400 underflows
    assert np.isfinite(g).all()


def test_prod_over_several_axes_and_keepdims():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1.5, 1.5, (3, 4, 2))
    x[1, 2, 0] = 0.0
    for axis in [(0, 2), (1,), None]:
        got, _ = _run(lambda v, axis=axis: gc.prod(v, axis, keepdims=True), x)
        np.testing.assert_allclose(got, np.prod(x, axis=axis, keepdims=True), rtol=1e-13)
    (g,) = _grads(lambda v: gc.prod(v, (0, 2)), [x])
    flat = np.moveaxis(x, 1, -1).reshape(6, 4)          # the (0, 2) slices as columns
    want = np.moveaxis(_others(flat, 0).reshape(3, 2, 4), -1, 1)
    np.testing.assert_allclose(g, want, rtol=1e-13)


def _onnx_cumsum(x, axis, exclusive, reverse):
    """ONNX CumSum, from its specification's loops."""
    x = np.moveaxis(x, axis, 0)
    out = np.zeros_like(x)
    n = x.shape[0]
    for j in range(n):
        ks = [k for k in range(n) if (k > j if reverse else k < j) or (k == j and not exclusive)]
        for k in ks:
            out[j] = out[j] + x[k]
    return np.moveaxis(out, 0, axis)


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_cumsum_is_onnx_cumsum(exclusive, reverse):
    x = np.arange(24, dtype=np.int64).reshape(2, 3, 4) ** 2
    for axis in (0, 1, 2, -1):
        flags = (int(exclusive), int(reverse)) if axis == 2 else (exclusive, reverse)   # ONNX's ints
        got, interp = _run(lambda v, axis=axis: gc.cumsum(v, axis, *flags), x)
        want = _onnx_cumsum(x, axis % 3, exclusive, reverse)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(interp, want)


def test_cumsum_keeps_a_leading_negative_zero_and_scan_ignores_a0():
    """h[0] = b[0]: numpy's cumsum([-0.0]) is -0.0 (not 0 + -0.0), and a[0] (even
    inf or NaN) never meets the zero before the first element."""
    x = np.array([[-0.0, -0.0], [-0.0, 1.0]])
    for axis, rev in [(0, False), (1, False), (1, True)]:
        got, interp = _run(lambda v, axis=axis, rev=rev: gc.cumsum(v, axis, reverse=rev), x)
        want = np.flip(np.cumsum(np.flip(x, axis) if rev else x, axis), axis) if rev else \
            np.cumsum(x, axis)
        _same(got, want)
        _same(interp, want)
    a = np.array([np.inf, 2.0, 0.5])
    b = np.array([3.0, 1.0, -1.0])
    got, interp = _run(lambda p, q: gc.scan(p, q, 0), a, b)
    np.testing.assert_array_equal(got, [3.0, 7.0, 2.5])
    np.testing.assert_array_equal(interp, [3.0, 7.0, 2.5])


def test_cumsum_long_axis_is_linear():
    """n = 100000 along the axis: the values, the gradient (a reverse cumsum), and
    memory a few buffers of n elements (an n x n formulation would need 80 GB)."""
    n = 100_000
    rng = np.random.default_rng(4)
    xv = rng.standard_normal(n)
    w = rng.standard_normal(n)
    x = gc.placeholder((n,), "float64", name="x")
    y = gc.cumsum(x, 0)
    (g,) = gc.grad(gc.sum(y * gc.constant(w)), [x])
    f = gc.compile([y, g], inputs=[x])
    got, gg = f(xv)
    np.testing.assert_allclose(got, np.cumsum(xv), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gg, np.cumsum(w[::-1])[::-1], rtol=1e-9, atol=1e-9)
    assert f.memory.size <= 8 * n * 8, f.memory.size


def test_cumsum_of_a_fused_expression_and_after_it():
    rng = np.random.default_rng(5)
    xv = rng.standard_normal((5, 7)).astype(np.float32)
    got, interp = _run(lambda v: gc.sin(gc.cumsum(gc.exp(v) * 2.0, 1, reverse=True)) + v, xv)
    x64 = xv.astype(np.float64)
    want = np.sin(np.cumsum((np.exp(x64) * 2.0)[:, ::-1], 1)[:, ::-1]) + x64
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(interp, want, rtol=1e-5, atol=1e-5)


def test_new_elementwise_ops_fuse_into_one_kernel():
    x = gc.placeholder((64, 33), "float32", name="x")
    out = gc.sin(x) * gc.cos(x) + gc.floor(x) - gc.ceil(x) * gc.round(x) + gc.sign(x)
    out = gc.clip(out, -1.0, 1.0) + gc.reciprocal(gc.abs(x) + 1.0)
    f = gc.compile(out)
    assert len(f.kernels) == 1, f.plan_text()
    xv = np.random.default_rng(6).standard_normal((64, 33)).astype(np.float32)
    x64 = xv.astype(np.float64)
    want = np.sin(x64) * np.cos(x64) + np.floor(x64) - np.ceil(x64) * np.round(x64) + np.sign(x64)
    want = np.clip(want, -1, 1) + 1 / (np.abs(x64) + 1)
    np.testing.assert_allclose(f(x=xv), want, rtol=1e-5, atol=1e-5)


def test_logical_ops_and_expand():
    rng = np.random.default_rng(7)
    a, b = rng.random((3, 4)) < 0.5, rng.random(4) < 0.5
    for name in ("logical_and", "logical_or", "logical_xor"):
        got, _ = _run(getattr(gc, name), a, b)
        np.testing.assert_array_equal(got, getattr(np, name)(a, b))
    np.testing.assert_array_equal(_run(gc.logical_not, a)[0], ~a)
    x = rng.standard_normal((3, 1))
    got, _ = _run(lambda v: gc.expand(v, (2, 1, 6)), x)       # a 1 keeps x's 3
    np.testing.assert_array_equal(got, np.broadcast_to(x, (2, 3, 6)))
    (g,) = _grads(lambda v: gc.expand(v, (2, 1, 6)), [x])
    np.testing.assert_array_equal(g, np.full((3, 1), 12.0))


# ------------------------------------------------ atan and the trig/hyperbolic composites

TRIG = {"atan": np.arctan, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "sinh": np.sinh,
        "cosh": np.cosh, "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh}
# ulps from the correctly rounded result allowed (measured: atan 0.5 / 0.93; the composites
# add the roundings of their steps: sinh 3.7 / 4.0 ulps at worst, the rest 1.3-2.4)
TRIG_ULP = {"atan": 1.0, "sinh": 6.0, "cosh": 5.0}
TRIG_RANGE = {"tan": (-1.5, 1.5), "asin": (-1, 1), "acos": (-1, 1), "atanh": (-1, 1),
              "acosh": (1, 1e4), "sinh": (-80, 80), "cosh": (-80, 80)}


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("name", list(TRIG))
def test_trig_matches_numpy(name, dt):
    """Special values as numpy (NaN, ±inf, the sign of zeros, the domain edges ±1),
    and random, tiny and huge inputs within a few ulps of the correctly rounded result
    (numpy in long double)."""
    rng = np.random.default_rng(len(name))
    lo, hi = TRIG_RANGE.get(name, (-1e3, 1e3))
    info = np.finfo(dt)
    with np.errstate(over="ignore"):
        x = np.concatenate([SPECIAL, [1 - info.epsneg, -1 + info.epsneg, 1 + info.eps, 710.0,
                                      89.0, 2.0 ** 28, 3e8, 1e154, -1e200],
                            rng.uniform(lo, hi, 4000),
                            10.0 ** rng.uniform(np.log10(info.tiny), 0, 500) * rng.choice([-1, 1], 500),
                            ]).astype(dt)
    got, interp = _run(getattr(gc, name), x)
    with np.errstate(all="ignore"):
        want = TRIG[name](x)
        ref = TRIG[name](x.astype(np.longdouble))
    for g in (got, interp):
        cls = lambda a: np.stack([np.isnan(a), np.isposinf(a), np.isneginf(a), a == 0,  # noqa: E731
                                  np.signbit(a) & (a == 0)])
        bad = np.any(cls(g) != cls(want), axis=0)
        assert not bad.any(), f"{name}({x[bad]}) = {g[bad]}, numpy {want[bad]}"
    fin = np.isfinite(want) & (want != 0)
    ulps = np.abs(got[fin] - ref[fin]) / np.spacing(np.abs(want[fin])).astype(np.longdouble)
    assert ulps.max() <= TRIG_ULP.get(name, 3.0), (name, float(ulps.max()), x[fin][np.argmax(ulps)])


def test_trig_gradients_are_the_closed_forms():
    x = gc.placeholder((50,), "float64", name="x")
    xv = np.random.default_rng(1).uniform(-0.95, 0.95, 50)
    pv = 1.0 + np.abs(xv) * 3.0
    p = gc.placeholder((50,), "float64", name="p")         # > 1, for acosh
    fns = [gc.atan(x), gc.tan(x), gc.asin(x), gc.acos(x), gc.sinh(x), gc.cosh(x),
           gc.asinh(x), gc.acosh(p), gc.atanh(x)]
    grads = [gc.grad(gc.sum(f), [x if k != 7 else p])[0] for k, f in enumerate(fns)]
    got = gc.compile(grads, inputs=[x, p])(xv, pv)
    want = [1 / (1 + xv ** 2), 1 / np.cos(xv) ** 2, 1 / np.sqrt(1 - xv ** 2),
            -1 / np.sqrt(1 - xv ** 2), np.cosh(xv), np.sinh(xv), 1 / np.sqrt(xv ** 2 + 1),
            1 / np.sqrt(pv ** 2 - 1), 1 / (1 - xv ** 2)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    # at 0 the odd functions' gradient is f'(0), not abs's 0
    z = gc.placeholder((1,), "float64", name="z")
    g0 = gc.compile([gc.grad(gc.sum(f(z)), [z])[0] for f in (gc.sinh, gc.asinh, gc.atan, gc.asin)],
                    inputs=[z])(np.zeros(1))
    np.testing.assert_array_equal(np.concatenate(g0), [1.0, 1.0, 1.0, 1.0])


def test_trig_exports_to_onnx():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import graphc.onnx  # noqa: F401
    x = gc.placeholder((64,), "float32", name="x")
    outs = [f(x) for f in (gc.atan, gc.tan, gc.asin, gc.acos, gc.sinh, gc.cosh, gc.asinh,
                           gc.atanh)] + [gc.acosh(x * x + 1.0)]
    xv = np.random.default_rng(2).uniform(-0.99, 0.99, 64).astype(np.float32)
    want = gc.compile(outs, inputs=[x])(xv)
    got = ort.InferenceSession(gc.onnx.to_model(outs).SerializeToString()).run(None, {"x": xv})
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=2e-6, atol=1e-7)
