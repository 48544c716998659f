"""The convolutional-network ops (graphc/ops/conv.py) beyond the op table:
PyTorch's values and gradients where it is installed, the max-pool gradient
on ties (ReLU zeros), a small CNN's gradient compiled at opt levels 0 and 3
against the interpreter, and the errors bad arguments get."""
from __future__ import annotations

import numpy as np
import pytest
from convref import np_conv2d, np_max_pool2d, np_max_pool2d_grad, np_pad

import graphc as gc

# --------------------------------------------------------------- helpers


def _run(fn, arrays, weight, backend="llvm", **compile_kw):
    """fn(*placeholders) and the gradient of sum(out * weight) w.r.t. every
    floating input, compiled with ``backend``."""
    phs = [gc.placeholder(a.shape, a.dtype, name=f"in{k}") for k, a in enumerate(arrays)]
    out = fn(*phs)
    loss = gc.sum(gc.cast(out, "float64") * gc.constant(weight))
    grads = list(gc.grad(loss, phs)) if all(a.dtype.kind == "f" for a in arrays) else []
    f = gc.compile([out] + grads, inputs=phs, backend=backend, **compile_kw)
    res = f(*arrays)
    return res[0], list(res[1:])


def _torch_run(tfn, arrays, weight):
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = tfn(*ts)
    (out.double() * torch.tensor(weight)).sum().backward()
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


CONV_CASES = [
    # x shape, w shape, bias?, kwargs
    ((2, 3, 7, 6), (4, 3, 3, 3), True, dict(stride=2, padding=1)),
    ((1, 4, 5, 5), (6, 2, 3, 2), False, dict(groups=2, dilation=(2, 1), padding="same")),
    ((2, 4, 6, 6), (4, 1, 3, 3), True, dict(groups=4, padding=1)),                  # depthwise
    ((1, 3, 5, 4), (2, 3, 1, 1), True, dict()),                                     # 1x1
    ((2, 2, 4, 5), (3, 2, 4, 5), False, dict()),                                    # kernel == input
    ((1, 2, 9, 8), (2, 2, 2, 2), True, dict(stride=(4, 3))),                        # stride > kernel
    ((1, 2, 9, 7), (2, 2, 3, 2), False, dict(dilation=(3, 2), stride=(2, 1), padding="valid")),
    ((1, 3, 6, 6), (3, 3, 2, 2), True, dict(padding="same")),                       # even kernel
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("xs,ws,bias,kw", CONV_CASES, ids=[str(c[3]) for c in CONV_CASES])
def test_conv2d_matches_torch(xs, ws, bias, kw, dtype):
    F = pytest.importorskip("torch.nn.functional")
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)]
    if bias:
        arrays.append(rng.standard_normal(ws[0]).astype(dtype))
    w = rng.standard_normal(np_conv2d(*arrays, **kw).shape)
    want, want_g = _torch_run(lambda *t: F.conv2d(*t, **kw), arrays, w)
    got, got_g = _run(lambda *p: gc.conv2d(*p, **kw), arrays, w)
    tol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)
    for a, b in zip(got_g, want_g):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * 10)


POOL_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), ceil_mode=True),
    dict(kernel_size=2, stride=3, ceil_mode=True),                # stride > kernel
    dict(kernel_size=(3, 2), stride=1, dilation=(2, 1)),          # max only
    dict(kernel_size=(7, 5)),                                     # kernel == input
]


@pytest.mark.parametrize("kind", ["max", "avg", "avg_exclude_pad"])
@pytest.mark.parametrize("kw", POOL_CASES, ids=[str(k) for k in POOL_CASES])
def test_pooling_matches_torch(kw, kind):
    F = pytest.importorskip("torch.nn.functional")
    if kind != "max" and "dilation" in kw:
        pytest.skip("avg_pool2d has no dilation")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 5))
    if kind == "max":
        x = np.maximum(x, 0.0)                  # ReLU zeros: ties in many windows
        t_fn, g_fn = (lambda t: F.max_pool2d(t, **kw)), (lambda p: gc.max_pool2d(p, **kw))
    else:
        extra = dict(count_include_pad=kind == "avg")
        t_fn = lambda t: F.avg_pool2d(t, **kw, **extra)         # noqa: E731
        g_fn = lambda p: gc.avg_pool2d(p, **kw, **extra)        # noqa: E731
    shape = np_max_pool2d(x, **kw).shape
    w = rng.standard_normal(shape)
    want, (want_g,) = _torch_run(t_fn, [x], w)
    for backend in ("llvm", "interp"):
        got, (got_g,) = _run(g_fn, [x], w, backend=backend)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=backend)
        np.testing.assert_allclose(got_g, want_g, rtol=1e-12, atol=1e-14, err_msg=backend)


@pytest.mark.parametrize("mode,tmode", [("constant", "constant"), ("reflect", "reflect"),
                                        ("edge", "replicate")])
def test_pad_matches_torch(mode, tmode):
    F = pytest.importorskip("torch.nn.functional")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 6))
    pw = ((0, 0), (0, 0), (2, 4), (3, 1))
    w = rng.standard_normal(np_pad(x, pw, mode).shape)
    want, (want_g,) = _torch_run(lambda t: F.pad(t, (3, 1, 2, 4), tmode), [x], w)
    got, (got_g,) = _run(lambda p: gc.pad(p, pw, mode), [x], w)
    np.testing.assert_allclose(got, want, rtol=0, atol=0)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-12, atol=1e-14)


def test_conv1d_matches_torch():
    F = pytest.importorskip("torch.nn.functional")
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((2, 4, 11)), rng.standard_normal((6, 2, 3)), rng.standard_normal(6)]
    kw = dict(stride=2, padding=2, dilation=2, groups=2)
    w = rng.standard_normal((2, 6, 6))
    want, want_g = _torch_run(lambda *t: F.conv1d(*t, **kw), arrays, w)
    got, got_g = _run(lambda *p: gc.conv1d(*p, **kw), arrays, w)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    for a, b in zip(got_g, want_g):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


# --------------------------------------------- max-pool ties, without torch


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1,
                                                              ceil_mode=True),
                                dict(kernel_size=3, stride=1, dilation=(1, 2))],
                         ids=["2", "3s2p1ceil", "dilated"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_max_pool_gradient_goes_to_the_first_maximum(kw, dtype):
    """ReLU outputs: many windows are all zeros; each window's gradient goes
    to one element (its first maximum), not split among or copied to ties."""
    rng = np.random.default_rng(6)
    x = np.maximum(rng.standard_normal((2, 2, 7, 8)) - 0.5, 0).astype(dtype)
    x[0, 0, :3, :3] = 0.0
    x[1, 1, 2:5, 2:6] = 0.75                                   # equal non-zero values
    want = np_max_pool2d(x, **kw)
    g = rng.standard_normal(want.shape)
    want_g = np_max_pool2d_grad(x.astype(np.float64), g, **kw)
    for backend in ("llvm", "interp"):
        got, (got_g,) = _run(lambda p: gc.max_pool2d(p, **kw), [x], g, backend=backend)
        np.testing.assert_array_equal(got, want, err_msg=backend)
        np.testing.assert_allclose(got_g, want_g.astype(dtype), rtol=1e-6, atol=1e-6,
                                   err_msg=backend)


def test_max_pool_nan_and_signed_zero_as_torch():
    """A NaN propagates and takes the gradient (PyTorch: the last NaN of
    the window); of -0.0 and 0.0 the first is kept, as PyTorch's."""
    F = pytest.importorskip("torch.nn.functional")
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, :2] = [1.0, np.nan]
    x[0, 0, 1, :2] = [np.nan, 0.5]
    x[0, 0, 0, 2:] = [-0.0, 0.0]
    x[0, 0, 1, 2:] = [0.0, -1.0]
    x[0, 0, 2:, :] = [[-0.0, 3.0, 2.0, 2.0], [0.0, 3.0, 2.0, np.nan]]
    w = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    want, (want_g,) = _torch_run(lambda t: F.max_pool2d(t, 2), [x], w)
    for backend in ("llvm", "interp"):
        got, (got_g,) = _run(lambda p: gc.max_pool2d(p, 2), [x], w, backend=backend)
        np.testing.assert_array_equal(got, want, err_msg=backend)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=backend)
        np.testing.assert_array_equal(got_g, want_g, err_msg=backend)


def test_max_pool_window_wholly_in_padding():
    """A dilated window whose taps all fall in the padding is -inf (PyTorch's
    value) and passes no gradient. (PyTorch 2.13's CPU backward writes such
    a window's gradient out of bounds, into the next plane or past the
    buffer, so it is not compared here.)"""
    x = np.arange(10, dtype=np.float64).reshape(1, 2, 1, 5)
    kw = dict(kernel_size=2, stride=(3, 1), padding=1, dilation=2)
    for backend in ("llvm", "interp"):
        got, (g,) = _run(lambda p: gc.max_pool2d(p, **kw), [x], np.ones((1, 2, 1, 5)),
                         backend=backend)
        assert np.all(got == -np.inf), backend
        np.testing.assert_array_equal(g, np.zeros_like(x), err_msg=backend)


def test_argmax_first_occurrence_and_nan():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [np.nan, 2.0, np.nan, 5.0], [0.0, 0.0, 0.0, 0.0]])
    p = gc.placeholder(x.shape, "float64", name="x")
    outs = [gc.argmax(p, 1), gc.argmin(p, 1), gc.argmax(p), gc.argmin(p, 0, keepdims=True)]
    for backend in ("llvm", "interp"):
        got = gc.compile(outs, backend=backend)(x=x)
        for a, b in zip(got, [np.argmax(x, 1), np.argmin(x, 1), np.argmax(x),
                              np.argmin(x, 0, keepdims=True)]):
            assert a.dtype == np.int64
            np.testing.assert_array_equal(a, b, err_msg=backend)


def test_argmax_has_no_gradient_and_is_usable_for_accuracy():
    x = gc.placeholder((4, 3), "float64", name="x")
    y = gc.placeholder((4,), "int64", name="y")
    acc = gc.mean(gc.cast(gc.argmax(x * 2.0, axis=1) == y, "float64"))
    loss = gc.sum(x * x) + acc
    (g,) = gc.grad(loss, [x])
    xv = np.random.default_rng(0).standard_normal((4, 3))
    yv = np.argmax(xv, 1).astype(np.int64)
    yv[0] = (yv[0] + 1) % 3
    a, gv = gc.compile([acc, g])(x=xv, y=yv)
    assert a == 0.75
    np.testing.assert_allclose(gv, 2 * xv)


# ------------------------------------------------- a small CNN, end to end


def _cnn(x, w1, b1, w2, lin):
    h = gc.relu(gc.conv2d(x, w1, b1, padding=1))
    h = gc.max_pool2d(h, 2)
    h = gc.relu(gc.conv2d(h, w2, stride=1, padding="same", groups=2))
    h = gc.avg_pool2d(h, 2, ceil_mode=True, count_include_pad=False)
    h = gc.flatten(h)
    return h @ lin


@pytest.mark.parametrize("level", [0, 3])      # (the op table runs each op at every level)
def test_small_cnn_gradient_compiled_matches_interpreter(level):
    rng = np.random.default_rng(8)
    arrays = [rng.standard_normal((2, 1, 6, 6)).astype(np.float32),
              rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
              rng.standard_normal(4).astype(np.float32),
              rng.standard_normal((4, 2, 3, 3)).astype(np.float32),
              rng.standard_normal((16, 3)).astype(np.float32)]
    w = rng.standard_normal((2, 3))
    want, want_g = _run(_cnn, arrays, w, backend="interp")
    got, got_g = _run(_cnn, arrays, w, opt_level=level)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(got_g, want_g):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_medium_conv_float32_against_numpy():
    """A 2x8x14x14 input, 3x3 same convolution with bias and ReLU, compiled."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 8, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    p = gc.placeholder(x.shape, "float32", name="x")
    y = gc.relu(gc.conv2d(p, gc.constant(w), gc.constant(b), padding="same"))
    got = gc.compile(y)(x=x)
    want = np.maximum(np_conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                padding=1), 0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ errors

X4 = ((2, 3, 6, 6), "float32")
BAD = [
    (lambda x: gc.conv2d(x, gc.zeros((4, 3, 3), "float32")), "weight must be 4-d"),
    (lambda x: gc.conv2d(gc.zeros((6, 6), "float32"), gc.zeros((4, 3, 3, 3), "float32")),
     "input must be 4-d"),
    (lambda x: gc.conv2d(x, gc.zeros((4, 2, 3, 3), "float32")), "expects 2 input channels"),
    (lambda x: gc.conv2d(x, gc.zeros((4, 1, 3, 3), "float32"), groups=2), "groups=2 must divide"),
    (lambda x: gc.conv2d(x, gc.zeros((3, 1, 3, 3), "float32"), groups=3, bias=gc.zeros((4,))),
     "bias must have shape (3,)"),
    (lambda x: gc.conv2d(x, gc.zeros((4, 3, 7, 3), "float32")), "larger than the padded input"),
    (lambda x: gc.conv2d(x, gc.zeros((4, 3, 3, 3), "float32"), dilation=3),
     "larger than the padded input"),
    (lambda x: gc.conv2d(x, gc.zeros((4, 3, 3, 3), "float32"), stride=0), "stride must be positive"),
    (lambda x: gc.conv2d(x, gc.zeros((4, 3, 3, 3), "float32"), dilation=(1, -1)),
     "dilation must be positive"),
    (lambda x: gc.conv2d(x, gc.zeros((4, 3, 3, 3), "float32"), padding="full"),
     "padding string must be 'same' or 'valid'"),
    (lambda x: gc.conv2d(x, gc.zeros((4, 3, 3, 3), "float32"), padding="same", stride=2),
     "padding='same' needs stride 1"),
    (lambda x: gc.conv2d(x, gc.zeros((4, 3, 3, 3), "float32"), padding=-1),
     "padding must be non-negative"),
    (lambda x: gc.conv2d(x, gc.zeros((4, 3, 3, 3), "float32"), padding=(1, 2, 3)),
     "padding must be an int"),
    (lambda x: gc.conv2d(x, gc.zeros((4, 3, 3, 3), "float32"), groups=0), "groups must be a positive"),
    (lambda x: gc.conv2d(x, gc.zeros((4, 3, 3, 3), "float32"), stride=1.5), "stride must be an int"),
    (lambda x: gc.conv1d(x, gc.zeros((4, 3, 3), "float32")), "input must be 3-d"),
    (lambda x: gc.pad(x, 1, mode="wrap"), "mode must be one of constant, reflect, edge"),
    (lambda x: gc.pad(x, ((0, 0), (0, 0), (6, 0), (0, 0)), mode="reflect"),
     "reflect padding (6, 0) of axis 2 must be smaller than its size 6"),
    (lambda x: gc.pad(x, -1), "pad_width must be non-negative"),
    (lambda x: gc.pad(x, ((1, 1), (1, 1))), "pad_width must be an int"),
    (lambda x: gc.pad(gc.zeros((0, 3)), 1, mode="edge"), "cannot edge-pad axis 0 of size 0"),
    (lambda x: gc.pad(gc.zeros((3,), "int32"), 1, value=0.5), "does not fit the int32 input"),
    (lambda x: gc.max_pool2d(x, 3, padding=2), "padding (2, 2) must be at most half"),
    (lambda x: gc.max_pool2d(x, 7), "larger than the padded input"),
    (lambda x: gc.max_pool2d(x, 2, stride=0), "stride must be positive"),
    (lambda x: gc.max_pool2d(x, 0), "kernel_size must be positive"),
    (lambda x: gc.max_pool2d(x, 2, ceil_mode="yes"), "ceil_mode must be a bool"),
    (lambda x: gc.max_pool2d(gc.zeros((2, 2, 4, 4), "bool"), 2), "input must be numeric"),
    (lambda x: gc.avg_pool2d(x, 2, divisor_override=0), "divisor_override must be a positive"),
    (lambda x: gc.avg_pool2d(gc.zeros((6, 6)), 2), "input must be 4-d"),
    (lambda x: gc.adaptive_avg_pool2d(x, 0), "output_size must be positive"),
    (lambda x: gc.global_avg_pool2d(gc.zeros((2, 3, 4))), "input must be 4-d"),
    (lambda x: gc.flatten(x, 3, 1), "start_dim 3 comes after end_dim 1"),
    (lambda x: gc.flatten(x, 4), "axis 4 is out of range"),
    (lambda x: gc.argmax(gc.zeros((3, 0)), 1), "empty axis 1"),
    (lambda x: gc.argmin(x, 5), "axis 5 is out of range"),
]


@pytest.mark.parametrize("build,msg", BAD, ids=[m for _, m in BAD])
def test_bad_arguments_are_clear_errors(build, msg):
    x = gc.placeholder(*X4, name="x")
    with pytest.raises((gc.ShapeError, gc.DTypeError)) as e:
        build(x)
    assert msg in str(e.value)
