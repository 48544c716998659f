"""Extending graphc, way 3 with a scalar lowering: gc.register_op, and
gc.check_op catching broken registrations with precise messages."""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc

from helpers import check_grads


def _softplus_scalar(s, x):
    # max(x, 0) + log(1 + exp(-|x|)): no overflow for large |x|
    return s.maximum(x, s.const(0.0, x.dtype)) + s.log1p(s.exp(-s.abs(x)))


def _softplus_ref(x):
    return np.logaddexp(np.zeros((), x.dtype), x)


def register_softplus(registered, name="softplus", vjp=None, scalar=_softplus_scalar, **kw):
    f = gc.register_op(name, reference=_softplus_ref, scalar=scalar,
                       vjp=vjp or (lambda node, g: [g * gc.sigmoid(node.inputs[0])]),
                       dtype=gc.extend.floating, **kw)
    registered.append(name)
    return f


def test_softplus_primitive_check_op_passes(registered):
    register_softplus(registered)
    rep = gc.check_op("softplus")
    assert rep.ok and len(rep.lines) >= 20
    rules = {line[0] for line in rep.lines}
    assert {"shape rule", "dtype rule", "lowering (opt 0)", "lowering (opt 3)", "vjp",
            "vjp lowering"} <= rules
    assert "all passed" in str(rep)


def test_softplus_values_gradient_and_dtypes(registered):
    softplus = register_softplus(registered)
    rng = np.random.default_rng(0)
    x = gc.placeholder((50,), "float32", name="x")
    y = softplus(x * 3.0)
    assert y.dtype == np.float32 and y.op == "softplus"
    xv = np.concatenate([rng.standard_normal(48), [60.0, -60.0]]).astype(np.float32)
    want = np.logaddexp(0, 3.0 * xv.astype(np.float64))
    for kw in (dict(), dict(opt_level=0), dict(backend="interp")):
        np.testing.assert_allclose(gc.compile(y, **kw)(x=xv), want, rtol=2e-6, atol=1e-7)
    xd = gc.placeholder((3, 4), "float64", name="xd")
    c = gc.constant(rng.standard_normal((3, 4)))
    check_grads(gc.sum(softplus(xd) * c), [xd], [rng.standard_normal((3, 4))], (0,))
    with pytest.raises(gc.DTypeError, match="softplus: needs floating inputs, got int64"):
        softplus(gc.placeholder((3,), "int64"))


def test_softplus_fuses_into_gemm_epilogue_and_vectorizes(registered):
    softplus = register_softplus(registered)
    rng = np.random.default_rng(1)
    x = gc.placeholder((64, 32), "float32", name="x")
    w = gc.parameter(rng.standard_normal((32, 16)).astype(np.float32), name="w")
    b = gc.parameter(rng.standard_normal(16).astype(np.float32), name="b")
    z = x @ w + b
    h = softplus(z)
    loss = gc.sum(h * h)
    gw, gb = gc.grad(loss, [w, b])
    f = gc.compile([h, gw, gb])
    assert f.kernel_of(h) == f.kernel_of(z) and f.kernels[f.kernel_of(h)].matmul is not None
    assert "fused" in f.why_not_fused(z, h)
    xv = rng.standard_normal((64, 32)).astype(np.float32)
    for got, want in zip(f(x=xv), gc.compile([h, gw, gb], backend="interp")(x=xv)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    # an elementwise loop of it is vectorized exactly like the built-in exp:
    # vector loads and vector math (polynomials in vector registers), no libm call
    v = gc.placeholder((1024,), "float32", name="v")
    ir_user = gc.compile(softplus(v)).llvm_ir_optimized
    ir_builtin = gc.compile(gc.exp(v)).llvm_ir_optimized
    for ir in (ir_user, ir_builtin):
        assert re.search(r"load <\d+ x float>", ir)
        assert re.search(r"fmuladd\.v\d+f32\(<\d+ x float>", ir)
        assert not re.search(r"@(expf|logf|llvm\.exp\.f32|llvm\.log\.f32)\(", ir)


def test_op_with_attributes(registered):
    def leaky_scalar(s, x, alpha):
        return s.select(x > 0.0, x, x * alpha)
    leaky = gc.register_op("leaky", reference=lambda x, alpha: np.where(x > 0, x, alpha * x),
                           vjp=lambda n, g: [gc.where(n.inputs[0] > 0, g, g * n.attrs["alpha"])],
                           scalar=leaky_scalar, attrs={"alpha": 0.01})
    registered.append("leaky")
    x = gc.placeholder((5,), "float64", name="x")
    a, b = leaky(x), leaky(x, alpha=0.3)
    assert a is leaky(x) and a is not b               # attributes are part of the identity
    assert b.attrs == {"alpha": 0.3} and "{alpha=0.3}" in gc.Graph([b]).text()
    xv = np.array([-2.0, -1, 0.5, 1, 3])
    av, bv = gc.compile([a, b])(x=xv)
    np.testing.assert_allclose(av, np.where(xv > 0, xv, 0.01 * xv))
    np.testing.assert_allclose(bv, np.where(xv > 0, xv, 0.3 * xv))
    assert gc.check_op("leaky", attrs={"alpha": 0.3}, samples=[(xv,)]).ok
    with pytest.raises(TypeError, match=r"unknown attribute\(s\) \['beta'\]"):
        leaky(x, beta=1.0)
    with pytest.raises(TypeError, match="attribute alpha=.* must be a number"):
        leaky(x, alpha=[object()])


def test_binary_scalar_op_promotes_like_numpy(registered):
    hyp = gc.register_op("hypot2", reference=np.hypot,
                         vjp=lambda n, g: [g * n.inputs[0] / n, g * n.inputs[1] / n],
                         scalar=lambda s, a, b: s.sqrt(a * a + b * b))
    registered.append("hypot2")
    x = gc.placeholder((3, 4), "float32", name="x")
    assert hyp(x, 2.0).dtype == np.float32             # weak Python scalar
    assert hyp(x, np.ones(4)).dtype == np.float64      # float64 array promotes
    assert gc.check_op("hypot2").ok


def test_no_vjp_means_no_gradient(registered):
    sign = gc.register_op("sign_", reference=np.sign, scalar=lambda s, x: s.select(
        x > 0.0, s.const(1.0, x.dtype), s.select(x < 0.0, s.const(-1.0, x.dtype),
                                                  s.const(0.0, x.dtype))))
    registered.append("sign_")
    x = gc.placeholder((3,), "float64", name="x")
    np.testing.assert_array_equal(gc.compile(sign(x))(x=np.array([-2.0, 0, 5])), [-1, 0, 1])
    with pytest.raises(gc.GraphcError, match="registered without vjp=, so it has no gradient"):
        gc.grad(gc.sum(sign(x) * x), [x])
    rep = gc.check_op("sign_")
    assert any("none registered" in line[2] for line in rep.lines)
    # stop_gradient cuts it out of differentiation
    (g,) = gc.grad(gc.sum(gc.stop_gradient(sign(x)) * x), [x])
    np.testing.assert_array_equal(gc.compile(g)(x=np.array([-2.0, 0, 5])), [-1, 0, 1])


def test_registration_errors(registered):
    ref = _softplus_ref
    with pytest.raises(ValueError, match="'exp' is a built-in op"):
        gc.register_op("exp", reference=ref, scalar=_softplus_scalar)
    with pytest.raises(ValueError, match="identifier"):
        gc.register_op("bad name", reference=ref, scalar=_softplus_scalar)
    with pytest.raises(TypeError, match="exactly one lowering"):
        gc.register_op("nolow", reference=ref)
    with pytest.raises(TypeError, match="exactly one lowering"):
        gc.register_op("twolow", reference=ref, scalar=_softplus_scalar, callback=True)
    with pytest.raises(TypeError, match="shape rule is numpy broadcasting"):
        gc.register_op("shaped", reference=ref, scalar=_softplus_scalar, shape=lambda s: s)
    with pytest.raises(TypeError, match="give nin="):
        gc.register_op("varargs", reference=lambda *xs: xs[0], callback=True)
    with pytest.raises(TypeError, match="reference must be a function"):
        gc.register_op("notfn", reference=3, callback=True)
    sp = register_softplus(registered)
    with pytest.raises(ValueError, match="already registered"):
        register_softplus(registered)
    sp2 = register_softplus(registered, replace=True)
    with pytest.raises(gc.GraphcError, match="unregistered or redefined"):
        sp(gc.placeholder((2,), "float64"))
    assert sp2(gc.placeholder((2,), "float64")).op == "softplus"
    with pytest.raises(TypeError, match=r"takes 1 input\(s\), got 2"):
        sp2(1.0, 2.0)
    gc.unregister_op("softplus")
    assert "softplus" not in gc.OPS
    with pytest.raises(ValueError, match="built-in op"):
        gc.unregister_op("exp")
    with pytest.raises(ValueError, match="no user-registered op"):
        gc.unregister_op("softplus")


def test_lowering_failing_for_a_dtype_names_the_op(registered):
    op = gc.register_op("expish", reference=np.exp, scalar=lambda s, x: s.exp(x))
    registered.append("expish")
    node = op(gc.placeholder((3,), "int64", name="i"))
    with pytest.raises(TypeError, match=r"the scalar lowering of 'expish' \(node expish_\d+, built "
                                        r"at .*test_extend_ops.py:\d+\) failed for inputs of dtype "
                                        r"int64: scalar exp needs a float, got int64"):
        gc.compile(node)


def test_lowering_returning_wrong_dtype_is_a_clear_error(registered):
    gc.register_op("to_int", reference=lambda x: x, scalar=lambda s, x: s.cast(x, "int64"))
    registered.append("to_int")
    with pytest.raises(gc.OpCheckError, match=r"lowering \(opt 3\) \[sample f64\[\]\]: failed: TypeError: lowering "
                                              r"of 'to_int' produced int64, expected float64"):
        gc.check_op("to_int", float32=False)


# -- broken registrations caught by check_op ------------------------------------------------

def _numbers(msg, *labels):
    out = []
    for lab in labels:
        m = re.search(lab + r" (-?[0-9.eE+-]+)", msg)
        assert m, f"no {lab!r} in {msg}"
        out.append(float(m.group(1).rstrip(",;")))
    return out


def test_check_op_catches_a_wrong_gradient_and_says_by_how_much(registered):
    # the derivative is sigmoid(x); this rule doubles it
    register_softplus(registered, vjp=lambda node, g: [2.0 * g * gc.sigmoid(node.inputs[0])])
    with pytest.raises(gc.OpCheckError) as ei:
        gc.check_op("softplus", samples=[((4, 3),)])
    msg = str(ei.value)
    assert "vjp rule's gradient with respect to input 0 differs from finite differences" in msg
    assert "sample f64[4,3]" in msg
    err, vjp, fd = _numbers(msg, "by", "vjp", "finite differences")
    assert err == pytest.approx(abs(vjp - fd), rel=1e-5)
    assert vjp / fd == pytest.approx(2.0, rel=1e-5)     # exactly the factor that is wrong
    assert [r for r, _ in ei.value.failures] == ["vjp"]    # shape, dtype and lowering are fine


def test_check_op_catches_a_wrong_shape_rule(registered):
    def rownorm(x):
        return np.sqrt((x * x).sum(axis=-1))
    gc.register_op("rownorm_bad", reference=rownorm, callback=True,
                   shape=lambda s: s,                      # wrong: the last axis is reduced
                   vjp=lambda n, g: [g * n.inputs[0] / n])
    registered.append("rownorm_bad")
    with pytest.raises(gc.OpCheckError) as ei:
        gc.check_op("rownorm_bad", samples=[((3, 4),)])
    msg = str(ei.value)
    assert ("shape rule [sample f64[3,4]]: the shape rule gives (3, 4) for inputs f64[3,4], but the reference "
            "returns shape (3,)") in msg
    assert {r for r, _ in ei.value.failures} == {"shape rule"}


def test_check_op_catches_a_wrong_dtype_rule(registered):
    register_softplus(registered, name="softplus")
    gc.unregister_op("softplus")
    gc.register_op("softplus", reference=_softplus_ref, scalar=_softplus_scalar,
                   vjp=lambda n, g: [g * gc.sigmoid(n.inputs[0])],
                   dtype=lambda d: np.float32 if d == np.float64 else d)
    with pytest.raises(gc.OpCheckError) as ei:
        gc.check_op("softplus", samples=[((3,),)])
    assert "the dtype rule gives float32 for inputs f64[3], but the reference returns float64" \
        in str(ei.value)


def test_check_op_catches_a_wrong_lowering_and_says_by_how_much(registered):
    # the scalar rule forgets the max(x, 0) term
    register_softplus(registered, scalar=lambda s, x: s.log1p(s.exp(-s.abs(x))))
    xv = np.array([[-1.0, 0.5, 2.0], [3.0, -0.25, 0.0]])
    with pytest.raises(gc.OpCheckError) as ei:
        gc.check_op("softplus", samples=[(xv,)], float32=False)
    msg = str(ei.value)
    assert "lowering (opt 0)" in msg and "lowering (opt 3)" in msg
    assert "the compiled op (opt_level 3) differs from the reference by 3 " in msg
    assert "at index (1, 0)" in msg                        # where max(x, 0) is largest
    err, = _numbers(msg.split("opt_level 3")[1], "by")
    assert err == pytest.approx(np.max(np.maximum(xv, 0)), rel=1e-12)
    # the gradient rule is right; its compiled form is built from built-ins
    assert "vjp rule" not in msg


def test_redefined_op_is_never_served_stale_code(registered):
    x = gc.placeholder((4,), "float64", name="x")
    xv = np.array([-1.0, 0.0, 1.0, 2.0])
    register_softplus(registered)
    f1 = gc.compile(gc.extend.op_function("softplus")(x) * 2.0)
    np.testing.assert_allclose(f1(x=xv), 2 * np.logaddexp(0, xv), rtol=1e-12)
    # same name, same graph structure, another lowering: must compile anew
    sp = register_softplus(registered, replace=True, scalar=lambda s, x: x * 3.0)
    f2 = gc.compile(sp(x) * 2.0)
    assert not f2.cache_hit
    np.testing.assert_allclose(f2(x=xv), 6 * xv)
    gc.unregister_op("softplus")
    sp = register_softplus(registered, scalar=lambda s, x: x + 1.0)
    f3 = gc.compile(sp(x) * 2.0)
    assert not f3.cache_hit
    np.testing.assert_allclose(f3(x=xv), 2 * (xv + 1))
    assert gc.compile(sp(x) * 2.0).cache_hit == "memory"


def test_check_op_on_a_builtin_needs_samples():
    assert gc.check_op("tanh", samples=[((2, 3),)]).ok
    assert gc.check_op("reduce_sum", samples=[((3, 4),)], attrs={"axes": (1,),
                                                                  "keepdims": True}).ok
    with pytest.raises(ValueError, match="give samples="):
        gc.check_op("tanh")
    with pytest.raises(gc.GraphcError, match="no op named 'nope'"):
        gc.check_op("nope")
