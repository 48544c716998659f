"""The op table: one entry per public op, from which the op tests are
generated (shape/dtype inference, interpreter vs numpy, compiled vs
interpreter, VJP vs finite differences, second order).

An entry gives the graphc function, the numpy oracle, sample inputs, and how
to draw input values (``domain``). ``grad`` says which inputs are
differentiable (float64 finite differences are run on them); ``grad2`` asks
for the second-order check as well.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from convref import (
    np_adaptive_avg_pool2d,
    np_avg_pool2d,
    np_conv1d,
    np_conv2d,
    np_flatten,
    np_max_pool2d,
    np_pad,
    np_windows,
)

import graphc as gc

F32, F64, I32, I64, B = "float32", "float64", "int32", "int64", "bool"


@dataclass
class Sample:
    shapes: tuple          # one shape per array input
    dtypes: tuple          # one dtype per array input
    kwargs: dict = field(default_factory=dict)

    def __repr__(self):
        ins = ",".join(f"{d}{list(s)}" for s, d in zip(self.shapes, self.dtypes))
        kw = "".join(f",{k}={v}" for k, v in self.kwargs.items())
        return f"{ins}{kw}"


@dataclass
class OpInfo:
    name: str
    fn: Callable               # graphc: fn(*nodes, **kwargs) -> node
    ref: Callable              # numpy: ref(*arrays, **kwargs) -> array
    samples: list
    domain: str = "normal"     # normal | positive | above_one | small_int | unit | labels
    grad: tuple = ()           # indices of differentiable inputs
    grad2: bool = False
    rtol: float = 1e-6
    atol: float = 1e-6
    grad_samples: list | None = None   # samples for the gradient checks (float64)
    grad_eps: float = 1e-6
    grad_tol: float = 1e-6

    def grad_cases(self):
        if self.grad_samples is not None:
            return self.grad_samples
        return [s for s in self.samples if all(d == F64 for d in s.dtypes)]


@gc.custom_gradient
def _cg_xxy(x, y):
    """x * x * y with its gradient by hand (the op table's custom_vjp entry)."""
    return x * x * y, lambda dy: (dy * 2.0 * x * y, dy * x * x)


def draw(info: OpInfo, sample: Sample, rng: np.random.Generator, *, for_grad=False):
    out = []
    for k, (shape, dt) in enumerate(zip(sample.shapes, sample.dtypes)):
        dt = np.dtype(dt)
        dom = info.domain if isinstance(info.domain, str) else info.domain[k]
        if dt == np.bool_:
            a = rng.random(shape) < 0.5
        elif dt.kind in "iu":
            if dom == "labels":
                a = rng.integers(0, sample.kwargs.get("_classes", 5), shape)
            elif dom == "small_int":
                a = rng.integers(0, 4, shape)
            else:
                a = rng.integers(-5, 6, shape)
        else:
            if dom == "positive":
                a = rng.uniform(0.5, 2.0, shape)
            elif dom == "above_one":
                a = rng.uniform(1.1, 4.0, shape)
            elif dom == "unit":
                a = rng.uniform(-0.9, 0.9, shape)
            elif dom == "distinct" or for_grad:
                # values well apart so max/relu/abs are differentiable at them
                n = int(np.prod(shape))
                a = (rng.permutation(n).reshape(shape) - n / 2 + 0.5) * 0.37 + \
                    rng.uniform(-0.05, 0.05, shape)
                if dom == "positive":
                    a = np.abs(a) + 0.5
            else:
                a = rng.standard_normal(shape)
        out.append(np.asarray(a).astype(dt))
    return out


def S(*pairs, **kw):
    return Sample(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), kw)


BCAST = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (3,)), ((5,), ())]


def _binary_samples(dts=(F32, F64, I32, I64)):
    out = [S((a, d), (b, d)) for a, b in BCAST for d in dts]
    out += [S(((3, 4), F32), ((4,), F64)), S(((3,), I32), ((3,), F32)),
            S(((3,), I64), ((3,), I32)), S(((2, 0, 3), F64), ((3,), F64))]
    return out


def _unary_samples(dts):
    return [S(((3, 4), d)) for d in dts] + [S(((), F64)), S(((2, 3, 4), F64)), S(((0, 3), F64))]


FLOATS = (F32, F64)
NUMS = (F32, F64, I32, I64)


def _np_sigmoid(x):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    return (1 / (1 + np.exp(-x))).astype(x.dtype)


def _np_relu(x):
    return np.maximum(x, np.zeros((), x.dtype))


def _np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    r = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return r if keepdims else np.squeeze(r, axis=axis) if axis is not None else r.reshape(())


def _np_log_softmax(x, axis=-1):
    return x - _np_logsumexp(x, axis=axis, keepdims=True)


def _np_softmax(x, axis=-1):
    return np.exp(_np_log_softmax(x, axis))


def _np_ce(logits, labels):
    ls = _np_log_softmax(logits, -1)
    return -np.take_along_axis(ls, labels[..., None].astype(np.int64), -1)[..., 0]


def _np_where(c, a, b):
    return np.where(c, a, b)


UNARY_FLOAT = [
    ("exp", gc.exp, np.exp, "normal"),
    ("log", gc.log, np.log, "positive"),
    ("sqrt", gc.sqrt, np.sqrt, "positive"),
    ("tanh", gc.tanh, np.tanh, "normal"),
    ("sigmoid", gc.sigmoid, _np_sigmoid, "normal"),
]
UNARY_NUM = [
    ("neg", gc.neg, np.negative),
    ("abs", gc.abs, np.abs),
    ("relu", gc.relu, _np_relu),
]
BINARY = [
    ("add", gc.add, np.add), ("sub", gc.sub, np.subtract), ("mul", gc.mul, np.multiply),
    ("maximum", gc.maximum, np.maximum), ("minimum", gc.minimum, np.minimum),
]
COMPARE = [
    ("greater", gc.greater, np.greater), ("less", gc.less, np.less),
    ("equal", gc.equal, np.equal), ("greater_equal", gc.greater_equal, np.greater_equal),
    ("less_equal", gc.less_equal, np.less_equal), ("not_equal", gc.not_equal, np.not_equal),
]

OPS: list[OpInfo] = []
for name, f, r, dom in UNARY_FLOAT:
    OPS.append(OpInfo(name, f, r, _unary_samples(FLOATS) + [S(((3,), I32))], domain=dom,
                      grad=(0,), grad2=True, rtol=2e-6))
for name, f, r in UNARY_NUM:
    OPS.append(OpInfo(name, f, r, _unary_samples(NUMS), domain="distinct" if name != "neg"
                      else "normal", grad=(0,), grad2=True))
for name, f, r in BINARY:
    OPS.append(OpInfo(name, f, r, _binary_samples(), domain="distinct", grad=(0, 1), grad2=True))
OPS.append(OpInfo("div", gc.div, np.divide, _binary_samples((F32, F64)) + [S(((3,), I32), ((3,), I32))],
                  domain=("normal", "positive"), grad=(0, 1), grad2=True, rtol=2e-6))
OPS.append(OpInfo("pow", gc.pow, np.power,
                  [S(((3, 4), d), ((3, 4), d)) for d in FLOATS] +
                  [S(((3, 4), F64), ((4,), F64)), S(((3, 4), I64), ((3, 4), I64)),
                   S(((5,), I32), ((5,), I32))],
                  domain=("positive", "small_int"), grad=(0, 1), grad2=True, rtol=1e-5,
                  grad_samples=[S(((3, 4), F64), ((3, 4), F64)), S(((3, 4), F64), ((4,), F64))]))
for name, f, r in COMPARE:
    OPS.append(OpInfo(name, f, r, _binary_samples() + [S(((3,), B), ((3,), B))], domain="small_int"))
# floor division and remainder (numpy semantics; int zero divisors are drawn)
OPS.append(OpInfo("floor_divide", gc.floor_divide, np.floor_divide, _binary_samples()))
OPS.append(OpInfo("mod", gc.mod, np.remainder, _binary_samples(), domain=("normal", "positive"),
                  grad=(0, 1), grad2=True, rtol=1e-5, atol=1e-5,
                  grad_samples=[S(((3, 4), F64), ((3, 4), F64)), S(((3, 4), F64), ((4,), F64))]))
BITS = (I32, I64, B)
for name, f, r in (("bitwise_and", gc.bitwise_and, np.bitwise_and),
                   ("bitwise_or", gc.bitwise_or, np.bitwise_or),
                   ("bitwise_xor", gc.bitwise_xor, np.bitwise_xor)):
    OPS.append(OpInfo(name, f, r, [S((a, d), (b, d)) for a, b in BCAST for d in BITS] +
                      [S(((3,), I64), ((3,), I32)), S(((3,), B), ((3,), I32))]))
OPS.append(OpInfo("invert", gc.invert, np.invert,
                  [S(((3, 4), d)) for d in BITS] + [S(((), I64)), S(((0, 3), I32))]))
OPS.append(OpInfo("where", gc.where, _np_where,
                  [S(((3, 4), B), ((3, 4), F64), ((3, 4), F64)),
                   S(((3, 1), B), ((4,), F32), ((3, 4), F32)),
                   S(((), B), ((2, 3), I64), ((3,), I32)),
                   S(((2, 3), B), ((2, 3), B), ((2, 3), B))],
                  grad=(1, 2), grad2=True))
OPS.append(OpInfo("cast", lambda x, dtype: gc.cast(x, dtype),
                  lambda x, dtype: x.astype(dtype),
                  [S(((3, 4), s), dtype=d) for s in (F32, F64, I32, I64, B)
                   for d in (F32, F64, I32, I64, B) if s != d],
                  grad=(0,), grad_samples=[S(((3, 4), F64), dtype=F32)], grad_eps=1e-2,
                  grad_tol=1e-4))
OPS.append(OpInfo("matmul", gc.matmul, np.matmul,
                  [S(((3, 4), d), ((4, 5), d)) for d in NUMS] +
                  [S(((2, 3, 4), F64), ((4, 5), F64)), S(((2, 1, 3, 4), F64), ((3, 4, 2), F64)),
                   S(((4,), F64), ((4, 5), F64)), S(((3, 4), F64), ((4,), F64)),
                   S(((4,), F64), ((4,), F64)), S(((2, 3, 4), F32), ((2, 4, 6), F32)),
                   S(((3, 4), F32), ((4, 5), F64)), S(((0, 4), F64), ((4, 3), F64)),
                   S(((3, 0), F64), ((0, 2), F64)), S(((17, 33), F32), ((33, 9), F32))],
                  grad=(0, 1), grad2=True, rtol=1e-5, atol=1e-5))

REDUCE_AXES = [dict(axis=None), dict(axis=0), dict(axis=-1), dict(axis=(0, 2)),
               dict(axis=1, keepdims=True), dict(axis=None, keepdims=True), dict(axis=())]
for name, f, r in (("sum", gc.sum, np.sum), ("mean", gc.mean, np.mean),
                   ("max", gc.max, np.max), ("min", gc.min, np.min)):
    samples = [Sample(((2, 3, 4),), (d,), kw) for d in NUMS for kw in REDUCE_AXES]
    samples += [Sample(((5,),), (F64,), {}), Sample(((),), (F64,), {})]
    if name in ("sum", "mean"):
        samples += [Sample(((2, 3),), (B,), dict(axis=1)), Sample(((0, 3),), (F64,), dict(axis=1))]
    if name != "min":
        samples += [Sample(((3, 4),), (B,), dict(axis=0))] if name == "max" else []
    OPS.append(OpInfo(name, f, r, samples, domain="distinct", grad=(0,), rtol=1e-5))

OPS += [
    OpInfo("reshape", lambda x, shape: gc.reshape(x, shape), lambda x, shape: np.reshape(x, shape),
           [Sample(((2, 3, 4),), (d,), dict(shape=s)) for d in (F32, F64, I32, B)
            for s in ((6, 4), (24,), (4, 3, 2), (2, 12), (1, 24, 1), (-1, 2))] +
           [Sample(((),), (F64,), dict(shape=(1, 1))), Sample(((0, 3),), (F64,), dict(shape=(3, 0)))],
           grad=(0,)),
    OpInfo("transpose", lambda x, axes=None: gc.transpose(x, axes),
           lambda x, axes=None: np.transpose(x, axes),
           [Sample(((2, 3, 4),), (d,), dict(axes=a)) for d in (F64, I64, B)
            for a in (None, (0, 2, 1), (2, 0, 1), (1, 0, 2))] +
           [Sample(((3, 5),), (F32,), {})], grad=(0,)),
    OpInfo("broadcast_to", lambda x, shape: gc.broadcast_to(x, shape),
           lambda x, shape: np.broadcast_to(x, shape),
           [Sample(((3, 1),), (d,), dict(shape=(2, 3, 4))) for d in (F64, I32, B)] +
           [Sample(((),), (F64,), dict(shape=(2, 2))), Sample(((4,),), (F32,), dict(shape=(3, 4)))],
           grad=(0,)),
    OpInfo("getitem", lambda x, key: x[key], lambda x, key: x[key],
           [Sample(((5, 6, 4),), (d,), dict(key=k)) for d in (F64, I32)
            for k in ((slice(1, 4), slice(None, None, 2)), 2, (-1, slice(None), 0),
                      (slice(None, None, -1),), (Ellipsis, slice(1, 3)), (None, 1, Ellipsis, None),
                      (slice(4, 1, -2), slice(-3, None), slice(None, 2)),
                      (slice(3, 3),))], grad=(0,)),
    OpInfo("concatenate", lambda *xs, axis=0: gc.concatenate(xs, axis),
           lambda *xs, axis=0: np.concatenate(xs, axis),
           [S(((2, 3), F64), ((4, 3), F64), axis=0), S(((2, 3), F32), ((2, 1), F32), axis=1),
            S(((2, 3), I32), ((2, 0), I32), ((2, 2), I32), axis=-1),
            S(((2, 3), F64), ((2, 3), F32), axis=0), S(((1, 2), B), ((1, 2), B), axis=0)],
           grad=(0, 1)),
    OpInfo("squeeze", lambda x, axis=None: gc.squeeze(x, axis), lambda x, axis=None: np.squeeze(x, axis),
           [Sample(((1, 3, 1),), (F64,), {}), Sample(((1, 3, 1),), (F64,), dict(axis=2))], grad=(0,)),
    OpInfo("expand_dims", lambda x, axis: gc.expand_dims(x, axis),
           lambda x, axis: np.expand_dims(x, axis),
           [Sample(((2, 3),), (F64,), dict(axis=a)) for a in (0, 1, 2, -1)], grad=(0,)),
    OpInfo("softmax", lambda x, axis=-1: gc.softmax(x, axis), _np_softmax,
           [Sample(((4, 5),), (d,), dict(axis=a)) for d in FLOATS for a in (-1, 0)] +
           [Sample(((2, 3, 4),), (F64,), dict(axis=1))], grad=(0,), rtol=1e-5),
    OpInfo("log_softmax", lambda x, axis=-1: gc.log_softmax(x, axis), _np_log_softmax,
           [Sample(((4, 5),), (d,), dict(axis=a)) for d in FLOATS for a in (-1, 0)],
           grad=(0,), grad2=True, rtol=1e-5),
    OpInfo("logsumexp", lambda x, axis=None, keepdims=False: gc.logsumexp(x, axis, keepdims),
           _np_logsumexp,
           [Sample(((4, 5),), (d,), dict(axis=a)) for d in FLOATS for a in (None, -1, 0)] +
           [Sample(((2, 3, 4),), (F64,), dict(axis=(0, 2), keepdims=True))], grad=(0,), rtol=1e-5),
    OpInfo("softmax_cross_entropy", gc.softmax_cross_entropy, _np_ce,
           [S(((6, 5), d), ((6,), li)) for d in FLOATS for li in (I32, I64)] +
           [S(((2, 3, 4), F64), ((2, 3), I64), _classes=4)],
           domain=("normal", "labels"), grad=(0,), rtol=1e-5),
    OpInfo("one_hot", lambda x, depth: gc.one_hot(x, depth),
           lambda x, depth: x[..., None] == np.arange(depth),
           [Sample(((6,),), (d,), dict(depth=5)) for d in (I32, I64)] +
           [Sample(((2, 3),), (I64,), dict(depth=5))], domain="labels"),
    OpInfo("stop_gradient", gc.stop_gradient, lambda x: x, [S(((3, 4), F64))]),
    OpInfo("custom_vjp", lambda x, y: _cg_xxy(x, y), lambda x, y: x * x * y,
           [S(((3, 4), d), ((4,), d)) for d in FLOATS] + [S(((2, 3), F64), ((2, 3), F64))],
           grad=(0, 1), grad2=True),
]

# ---- training ops (issue 5): gather/scatter, counter-based random, erf, log1p


def _np_take(x, indices, axis=0):
    return np.take(x, indices, axis=axis)


def _np_scatter_add(u, i, size, axis=0):
    out = np.zeros(u.shape[:axis] + (size,) + u.shape[axis + i.ndim:], u.dtype)
    for pos in np.ndindex(*i.shape):
        out[(slice(None),) * axis + (int(i[pos]),)] += u[(slice(None),) * axis + pos]
    return out


def _py_philox4x32_10(ctr, key):
    """Philox-4x32-10 on Python ints, written from the paper (checked against
    Random123's known-answer vectors in tests/test_random.py)."""
    m = 0xFFFFFFFF
    c, (k0, k1) = list(ctr), key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & m, (k1 + 0xBB67AE85) & m
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & m, (p0 >> 32) ^ c[3] ^ k1, p0 & m]
    return c


def _np_random_uniform(counter, shape, seed, dtype):
    m = 0xFFFFFFFF
    ctr = int(counter) % 2 ** 64
    seed %= 2 ** 64
    vals = []
    for i in range(int(np.prod(shape))):
        w = _py_philox4x32_10([i & m, i >> 32, ctr & m, ctr >> 32], [seed & m, seed >> 32])
        vals.append((w[0] >> 8) / 2 ** 24 if np.dtype(dtype) == np.float32
                    else ((w[0] << 21) | (w[1] >> 11)) / 2 ** 53)
    return np.array(vals, dtype).reshape(shape)


_erf_vec = np.vectorize(__import__("math").erf, otypes=[np.float64])


def _np_erf(x):
    x = np.asarray(x)
    return _erf_vec(x).astype(x.dtype if x.dtype.kind == "f" else np.float64)


OPS += [
    OpInfo("take", lambda x, i, axis=0: gc.take(x, i, axis), _np_take,
           [S(((5, 3), d), ((4,), li)) for d in (F32, F64, I32) for li in (I32, I64)] +
           [S(((2, 5, 3), F64), ((2, 3), I64), axis=1), S(((3, 5), F64), ((6,), I64), axis=-1),
            S(((5,), B), ((2, 2), I64)), S(((5, 3), F64), ((0,), I64)), S(((5,), F64), ((), I64))],
           domain=("normal", "labels"), grad=(0,), grad2=True),
    OpInfo("scatter_add", lambda u, i, size, axis=0: gc.scatter_add(u, i, size, axis),
           _np_scatter_add,
           [S(((6, 3), d), ((6,), li), size=5) for d in (F32, F64, I64) for li in (I32, I64)] +
           [S(((2, 4, 3), F64), ((2, 4), I64), size=5), S(((2, 3, 4), F64), ((3,), I32), size=5, axis=1),
            S(((0, 3), F64), ((0,), I64), size=5), S(((3,), F32), ((), I64), size=5, axis=0)],
           domain=("normal", "labels"), grad=(0,), grad2=True, rtol=1e-5, atol=1e-5),
    OpInfo("random_uniform", lambda c, shape, seed, dtype: gc.random_uniform(shape, seed, c, dtype),
           _np_random_uniform,
           [S(((), I64), shape=(3, 4), seed=0, dtype=F32), S(((), I64), shape=(5,), seed=2 ** 40 + 7, dtype=F64),
            S(((), I32), shape=(2, 3, 2), seed=12345, dtype=F32), S(((), I64), shape=(), seed=1, dtype=F64),
            S(((), I64), shape=(0, 2), seed=3, dtype=F32)],
           domain="small_int", rtol=0, atol=0),
    OpInfo("erf", gc.erf, _np_erf, _unary_samples(FLOATS) + [S(((3,), I32))],
           grad=(0,), grad2=True, rtol=2e-6),
    OpInfo("log1p", gc.log1p, np.log1p, _unary_samples(FLOATS) + [S(((3,), I64))], domain="unit",
           grad=(0,), grad2=True, rtol=2e-6),
]

# ---- convolutional-network composites (issue 13, graphc/ops/conv.py)


def _np_argmax(x, axis=None, keepdims=False):
    return np.argmax(x, axis=axis, keepdims=keepdims).astype(np.int64)


def _np_argmin(x, axis=None, keepdims=False):
    return np.argmin(x, axis=axis, keepdims=keepdims).astype(np.int64)


def _conv(x, w, b=None, **kw):
    return gc.conv2d(x, w, b, **kw)


def _conv1(x, w, b=None, **kw):
    return gc.conv1d(x, w, b, **kw)


CONV_GRAD = [S(((1, 2, 5, 4), F64), ((3, 2, 3, 2), F64), ((3,), F64), stride=(2, 1), padding=1),
             S(((2, 4, 4, 5), F64), ((4, 2, 2, 2), F64), ((4,), F64), groups=2, dilation=(1, 2), padding=((1, 0), (0, 2))),
             # stride 1 on images large enough for the full-width product (conv._conv_full_width)
             S(((1, 1, 12, 12), F64), ((2, 1, 3, 3), F64), ((2,), F64), padding=1)]
# stride-1 convolutions whose product runs over the padded width (conv._full_width_layout)
CONV_FULL = [S(((2, 3, 20, 20), F32), ((4, 3, 3, 3), F32), ((4,), F32), padding=1),
             S(((2, 3, 30, 29), F64), ((2, 3, 3, 3), F64)),                           # no padding
             S(((1, 2, 24, 22), F32), ((3, 2, 3, 3), F32), dilation=2, padding=2),
             S(((2, 2, 17, 16), F64), ((3, 2, 2, 3), F64), padding=((1, 0), (2, 0))),
             S(((3, 20, 20), F32), ((2, 3, 3, 3), F32), padding="same")]              # unbatched
OPS += [
    OpInfo("pad", lambda x, pad_width, mode="constant", value=0: gc.pad(x, pad_width, mode, value),
           np_pad,
           [S(((3, 4), d), pad_width=((1, 2), (0, 3))) for d in (F32, F64, I32, B)] +
           [S(((2, 3, 4), F64), pad_width=1, value=-2.5), S(((3, 4), F32), pad_width=(2, 1), value=np.inf),
            S(((4, 5), F64), pad_width=((3, 1), (2, 4)), mode="reflect"),
            S(((2, 4, 3), F32), pad_width=((0, 0), (1, 3), (2, 2)), mode="reflect"),
            S(((3, 4), I64), pad_width=((2, 3), (1, 0)), mode="edge"),
            S(((1, 2), F64), pad_width=((2, 2), (3, 1)), mode="edge"),
            S(((0, 3), F64), pad_width=1)],
           grad=(0,), grad2=True),
    OpInfo("conv2d", _conv, np_conv2d,
           [S(((2, 3, 6, 5), d), ((4, 3, 3, 3), d), ((4,), d), padding=1) for d in FLOATS] +
           [S(((1, 2, 5, 5), F32), ((3, 2, 1, 1), F32)),                        # 1x1
            S(((2, 2, 4, 3), F64), ((2, 2, 4, 3), F64)),                        # kernel == input
            S(((1, 2, 7, 7), F32), ((2, 2, 2, 2), F32), stride=3),              # stride > kernel
            S(((1, 4, 6, 7), F32), ((4, 1, 3, 3), F32), groups=4, padding="same"),   # depthwise
            S(((2, 3, 7, 6), F64), ((2, 3, 2, 3), F64), dilation=2, padding="same"),
            S(((3, 5, 5), F32), ((2, 3, 3, 3), F32), stride=2, padding=((2, 0), (1, 1))),  # unbatched
            S(((1, 1, 3, 3), I32), ((1, 1, 2, 2), I32))] + CONV_GRAD + CONV_FULL,
           grad=(0, 1, 2), grad2=True, rtol=1e-5, atol=1e-5, grad_samples=CONV_GRAD),
    OpInfo("conv1d", _conv1, np_conv1d,
           [S(((2, 3, 9), F32), ((4, 3, 3), F32), ((4,), F32), stride=2, padding=1),
            S(((2, 4, 7), F64), ((2, 2, 2), F64), groups=2, dilation=3, padding="same")],
           grad=(0, 1), rtol=1e-5, atol=1e-5,
           grad_samples=[S(((1, 2, 6), F64), ((3, 2, 3), F64), stride=2, padding=((1, 2),))]),
    OpInfo("windows", lambda x, **kw: gc.windows(x, **kw), np_windows,
           [S(((2, 3, 6, 5), d), kernel=(3, 2)) for d in (F32, F64, I32, B)] +
           [S(((1, 2, 7, 8), F64), kernel=(2, 3), stride=(2, 1), dilation=(1, 2)),
            S(((5, 9), F32), kernel=(3,), stride=3),                           # one spatial axis
            S(((4, 4), F64), kernel=(4, 4)),                                   # one window
            S(((2, 1, 3, 3, 3), F32), kernel=(2, 1, 2), stride=(1, 2, 1))],    # three axes
           grad=(0,), grad2=True,
           grad_samples=[S(((1, 2, 5, 4), F64), kernel=(2, 2), stride=(2, 1), dilation=(1, 2)),
                         S(((3, 7), F64), kernel=(3,), stride=2)]),
    OpInfo("max_pool2d", lambda x, **kw: gc.max_pool2d(x, **kw), np_max_pool2d,
           [S(((2, 3, 6, 6), d), kernel_size=2) for d in (F32, F64, I32)] +
           [S(((1, 2, 7, 5), F64), kernel_size=3, stride=2, padding=1, ceil_mode=True),
            S(((1, 2, 7, 8), F32), kernel_size=(2, 3), stride=(3, 1), dilation=(2, 1)),
            S(((3, 5, 5), F64), kernel_size=5),
            S(((1, 1, 6, 5), F64), kernel_size=2, stride=3, ceil_mode=True),
            S(((1, 2, 1, 3), F64), kernel_size=2, ceil_mode=True),       # kernel > input
            S(((1, 2, 1, 5), F32), kernel_size=2, stride=(3, 1), padding=1, dilation=2)],
           grad=(0,), grad2=True,
           grad_samples=[S(((1, 2, 5, 5), F64), kernel_size=3, stride=2, padding=1, ceil_mode=True),
                         S(((1, 1, 4, 6), F64), kernel_size=2, dilation=(1, 2), stride=1)]),
    OpInfo("avg_pool2d", lambda x, **kw: gc.avg_pool2d(x, **kw), np_avg_pool2d,
           [S(((2, 3, 6, 6), d), kernel_size=2) for d in FLOATS] +
           [S(((1, 2, 7, 5), F64), kernel_size=3, stride=2, padding=1, ceil_mode=True),
            S(((1, 2, 7, 5), F32), kernel_size=3, stride=2, padding=1, ceil_mode=True,
              count_include_pad=False),
            S(((1, 2, 5, 6), F64), kernel_size=(3, 2), stride=(1, 3), padding=(1, 1),
              count_include_pad=False),
            S(((1, 2, 4, 4), I64), kernel_size=2, divisor_override=3),
            S(((1, 2, 1, 3), F64), kernel_size=2, ceil_mode=True, count_include_pad=False)],
           grad=(0,), grad2=True, rtol=1e-5,
           grad_samples=[S(((1, 2, 5, 5), F64), kernel_size=3, stride=2, padding=1, ceil_mode=True,
                           count_include_pad=False)]),
    OpInfo("adaptive_avg_pool2d", lambda x, output_size: gc.adaptive_avg_pool2d(x, output_size),
           np_adaptive_avg_pool2d,
           [S(((2, 3, 7, 5), F64), output_size=(3, 2)), S(((1, 2, 4, 6), F32), output_size=1),
            S(((1, 2, 5, 5), F64), output_size=(5, 4))],
           grad=(0,), rtol=1e-5),
    OpInfo("global_avg_pool2d", gc.global_avg_pool2d, lambda x: x.mean(axis=(2, 3), keepdims=True),
           [S(((2, 3, 4, 5), d)) for d in FLOATS], grad=(0,), rtol=1e-5),
    OpInfo("flatten", lambda x, **kw: gc.flatten(x, **kw), np_flatten,
           [S(((2, 3, 4, 5), F64)), S(((2, 3, 4, 5), I32), start_dim=0, end_dim=2),
            S(((2, 3, 4), B), start_dim=-2), S(((2, 0, 4), F32), start_dim=1)], grad=(0,)),
    OpInfo("argmax", lambda x, **kw: gc.argmax(x, **kw), _np_argmax,
           [S(((3, 4), d), axis=1) for d in (F32, F64, I32, B)] +
           [S(((2, 3, 4), I64)), S(((2, 3, 4), F64), axis=0, keepdims=True),
            S(((2, 3, 4), I32), keepdims=True)], domain="small_int"),
    OpInfo("argmin", lambda x, **kw: gc.argmin(x, **kw), _np_argmin,
           [S(((3, 4), d), axis=-1) for d in (F32, I64, B)] +
           [S(((2, 3, 4), I32)), S(((2, 3, 4), F64), axis=1)], domain="small_int"),
]

# ---- ops the ONNX importer needs (issue 14): graphc/ops/elementwise.py, compose.py, scan.py


def _np_cumsum(x, axis=None, exclusive=False, reverse=False, dtype=None):
    if axis is None:
        x, axis = x.reshape(-1), 0
    dt = dtype or (np.int64 if x.dtype in (np.bool_, np.int32) else x.dtype)
    if reverse:
        x = np.flip(x, axis)
    c = np.cumsum(x, axis=axis, dtype=dt)
    if exclusive:       # [0, c[0], ..., c[n-2]]
        z = np.zeros_like(np.take(c, [0], axis=axis)) if c.shape[axis] else c[:0]
        c = np.concatenate([z, np.take(c, np.arange(c.shape[axis] - 1), axis=axis)], axis)[
            (slice(None),) * axis + (slice(0, x.shape[axis]),)]
    return np.flip(c, axis) if reverse else c


def _np_scan(a, b, axis, reverse=False):
    """h[j] = a[j] h[j-1] + b[j], by a Python loop over the axis."""
    shape = np.broadcast_shapes(a.shape, b.shape)
    a, b = np.moveaxis(np.broadcast_to(a, shape), axis, 0), np.moveaxis(np.broadcast_to(b, shape), axis, 0)
    h, prev = np.zeros(b.shape, b.dtype), None
    for j in (reversed(range(b.shape[0])) if reverse else range(b.shape[0])):
        prev = h[j] = b[j] if prev is None else a[j] * prev + b[j]      # h[0] = b[0]
    return np.moveaxis(h, 0, axis)


def _np_prod(x, axis=None, keepdims=False):
    dt = np.int64 if x.dtype in (np.bool_, np.int32) else x.dtype
    return np.prod(x, axis=axis, keepdims=keepdims, dtype=dt)


def _np_reciprocal(x):
    return 1.0 / x if x.dtype.kind == "f" else 1.0 / x.astype(np.float64)


def _np_expand(x, shape):
    return np.broadcast_to(x, np.broadcast_shapes(x.shape, shape))


CUMSUM_KW = [dict(axis=0), dict(axis=1, exclusive=True), dict(axis=-1, reverse=True),
             dict(axis=2, exclusive=True, reverse=True), dict(axis=None)]
OPS += [
    OpInfo("sin", gc.sin, np.sin, _unary_samples(FLOATS) + [S(((3,), I32))], grad=(0,), grad2=True,
           rtol=2e-6),
    OpInfo("cos", gc.cos, np.cos, _unary_samples(FLOATS) + [S(((3,), I32))], grad=(0,), grad2=True,
           rtol=2e-6),
    OpInfo("atan", gc.atan, np.arctan, _unary_samples(FLOATS) + [S(((3,), I32))], grad=(0,),
           grad2=True, rtol=2e-6),
    OpInfo("tan", gc.tan, np.tan, _unary_samples(FLOATS) + [S(((3,), I32))], domain="unit",
           grad=(0,), grad2=True, rtol=2e-6),
    OpInfo("sinh", gc.sinh, np.sinh, _unary_samples(FLOATS) + [S(((3,), I64))], grad=(0,),
           grad2=True, rtol=2e-6),
    OpInfo("cosh", gc.cosh, np.cosh, _unary_samples(FLOATS) + [S(((3,), I32))], grad=(0,),
           grad2=True, rtol=2e-6),
    OpInfo("asinh", gc.asinh, np.arcsinh, _unary_samples(FLOATS) + [S(((3,), I32))], grad=(0,),
           grad2=True, rtol=2e-6),
    OpInfo("acosh", gc.acosh, np.arccosh, _unary_samples(FLOATS) + [S(((3,), I64))],
           domain="above_one", grad=(0,), grad2=True, rtol=2e-6),
]
for name, f, r in (("asin", gc.asin, np.arcsin), ("acos", gc.acos, np.arccos),
                   ("atanh", gc.atanh, np.arctanh)):
    OPS.append(OpInfo(name, f, r, _unary_samples(FLOATS), domain="unit", grad=(0,), grad2=True,
                      rtol=2e-6))
OPS += [
    OpInfo("reciprocal", gc.reciprocal, _np_reciprocal, _unary_samples(FLOATS) + [S(((3,), I64))],
           domain="positive", grad=(0,), grad2=True, rtol=2e-6),
]
for name, f, r in (("floor", gc.floor, np.floor), ("ceil", gc.ceil, np.ceil),
                   ("round", gc.round, np.round), ("sign", gc.sign, np.sign)):
    OPS.append(OpInfo(name, f, r, _unary_samples(NUMS), grad=(0,)))
for name, f, r in (("logical_and", gc.logical_and, np.logical_and),
                   ("logical_or", gc.logical_or, np.logical_or),
                   ("logical_xor", gc.logical_xor, np.logical_xor)):
    OPS.append(OpInfo(name, f, r, [S((a, B), (b, B)) for a, b in BCAST]))
OPS += [
    OpInfo("logical_not", gc.logical_not, np.logical_not, [S(((3, 4), B)), S(((), B)), S(((0, 2), B))]),
    OpInfo("clip", lambda x, lo=None, hi=None: gc.clip(x, lo, hi),
           lambda x, lo=None, hi=None: np.clip(x, lo, hi),
           [S(((3, 4), d), lo=-0.5, hi=0.5) for d in FLOATS] +
           [S(((3, 4), d), lo=-2, hi=1) for d in (I32, I64)] +
           [S(((3, 4), I32), lo=-0.5, hi=0.5), S(((3, 4), F64), lo=-0.3),
            S(((3, 4), F32), hi=0.2), S(((3, 4), F64), lo=0.5, hi=-0.5), S(((3, 4), F64)),
            S(((0, 4), F64), lo=0, hi=1)],
           domain="distinct", grad=(0,), grad2=True),
    OpInfo("clip_bounds", lambda x, lo, hi: gc.clip(x, lo, hi), np.clip,
           [S(((3, 4), F64), ((4,), F64), ((3, 1), F64)), S(((3, 4), F32), ((), F32), ((4,), F32)),
            S(((2, 3), I64), ((3,), I64), ((2, 1), I64))],
           domain="distinct", grad=(0, 1, 2), grad2=True),
    OpInfo("expand", lambda x, shape: gc.expand(x, shape), _np_expand,
           [S(((3, 1), d), shape=(2, 1, 4)) for d in (F64, I32, B)] +
           [S(((), F64), shape=(2, 2)), S(((4,), F32), shape=(3, 1)), S(((2, 3), F64), shape=(1,)),
            S(((2, 1), F64), shape=(2, 0))],
           grad=(0,), grad2=True),
    OpInfo("cumsum", lambda x, **kw: gc.cumsum(x, **kw), _np_cumsum,
           [S(((2, 3, 4), d), **kw) for d in NUMS for kw in CUMSUM_KW] +
           [S(((3, 4), B), axis=1), S(((5,), F64), exclusive=True), S(((), F64)),
            S(((0, 3), F64), axis=0, exclusive=True), S(((2, 0), F32), axis=1, reverse=True),
            S(((2, 3), I32), axis=0, dtype=F64)],
           grad=(0,), grad2=True, rtol=1e-5),
    OpInfo("scan", lambda a, b, axis, reverse=False: gc.scan(a, b, axis, reverse), _np_scan,
           [S(((3, 4), d), ((3, 4), d), axis=1) for d in NUMS] +
           [S(((4,), F64), ((3, 4), F64), axis=0), S(((3, 1), F32), ((3, 5), F32), axis=1, reverse=True),
            S(((2, 3, 4), F64), ((2, 3, 4), F64), axis=1, reverse=True),
            S(((), F64), ((2, 5), F64), axis=-1), S(((2, 3), F64), ((3,), F64), axis=0)],
           domain=("unit", "normal"), grad=(0, 1), grad2=True, rtol=1e-5),
    OpInfo("prod", lambda x, axis=None, keepdims=False: gc.prod(x, axis, keepdims), _np_prod,
           [Sample(((2, 3, 4),), (d,), kw) for d in NUMS for kw in REDUCE_AXES] +
           [Sample(((5,),), (F64,), {}), Sample(((),), (F64,), {}), Sample(((2, 3),), (B,), dict(axis=1)),
            Sample(((0, 3),), (F64,), dict(axis=1)), Sample(((0, 3),), (F32,), dict(axis=0))],
           domain="unit", grad=(0,), grad2=True, rtol=1e-5),
    OpInfo("reduce_prod", lambda x, **kw: gc.make("reduce_prod", (x,), kw),
           lambda x, axes, keepdims: np.prod(x, axis=axes, keepdims=keepdims),
           [S(((2, 3, 4), d), axes=(0, 2), keepdims=k) for d in (F32, F64, I64) for k in (False, True)],
           domain="unit", grad=(0,), grad2=True, rtol=1e-5),
]



def _np_topk(x, k, axis=-1, largest=True):
    """numpy's stable argsort: largest first with ties in index order."""
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    o = (n - 1 - np.argsort(x[..., ::-1], axis=-1, kind="stable")[..., ::-1] if largest
         else np.argsort(x, axis=-1, kind="stable"))[..., :k]
    return np.moveaxis(np.take_along_axis(x, o, -1), -1, axis), np.moveaxis(o, -1, axis)


EINSUM = [("ij,jk->ik", (2, 3), (3, 4)), ("bij,bjk->bik", (2, 2, 3), (2, 3, 4)),
          ("i,i", (5,), (5,)), ("i,j->ij", (3,), (4,)), ("...ij,...jk->...ik", (2, 1, 2, 3), (4, 3, 2)),
          ("ij,kj", (2, 3), (4, 3)), ("bhqd,bhkd->bhqk", (1, 2, 3, 4), (1, 2, 5, 4)),
          ("ij,ij->", (2, 3), (2, 3)), ("ab,cd->da", (2, 3), (4, 5))]
TOPK = [dict(k=2, axis=1), dict(k=3, axis=0, largest=False), dict(k=0, axis=-1),
        dict(k=4, axis=-1)]
OPS += [
    OpInfo("einsum", lambda *xs, equation: gc.einsum(equation, *xs),
           lambda *xs, equation: np.einsum(equation, *xs),
           [S((a, d), (b, d), equation=eq) for eq, a, b in EINSUM for d in (F64, F32)] +
           [S((a, I64), (b, I64), equation=eq) for eq, a, b in EINSUM[:3]] +
           [S(((0, 3), F64), ((3, 2), F64), equation="ij,jk->ik")],
           grad=(0, 1), grad2=True, rtol=1e-5),
    OpInfo("einsum_unary", lambda x, equation: gc.einsum(equation, x),
           lambda x, equation: np.einsum(equation, x),
           [S(((3, 4), F64), equation=eq) for eq in ("ij->ji", "ij->i", "ij", "ji", "ij->")] +
           [S(((2, 4, 4), F64), equation="...ii->...i"), S(((4, 4), F64), equation="ii"),
            S(((3, 2, 3), F64), equation="iji->j"), S(((), F64), equation="->"),
            S(((3, 4), I32), equation="ij->j")],
           grad=(0,), grad2=True, rtol=1e-5),
    OpInfo("einsum3", lambda a, b, c, equation: gc.einsum(equation, a, b, c),
           lambda a, b, c, equation: np.einsum(equation, a, b, c),
           [S(((2, 3), F64), ((3, 4), F64), ((4, 2), F64), equation="ij,jk,kl->il"),
            S(((4,), F64), ((4,), F64), ((4,), F64), equation="i,i,i->")],
           grad=(0, 1, 2), grad2=True, rtol=1e-5),
    OpInfo("topk_values", lambda x, **kw: gc.topk(x, **kw)[0], lambda x, **kw: _np_topk(x, **kw)[0],
           [S(((3, 4), d), **kw) for d in NUMS for kw in TOPK] + [S(((5,), F64), k=5),
                                                                S(((2, 0), F64), k=0, axis=1)],
           domain="distinct", grad=(0,), grad2=True),
    OpInfo("topk_indices", lambda x, **kw: gc.topk(x, **kw)[1], lambda x, **kw: _np_topk(x, **kw)[1],
           [S(((3, 4), d), **kw) for d in NUMS for kw in TOPK] +
           [S(((6,), I32), k=6)], domain="small_int"),
]

OPS.append(OpInfo("bitcast", lambda x, dtype: gc.bitcast(x, dtype),
                  lambda x, dtype: np.array(x, order="C").view(dtype),
                  [S(((3, 4), F32), dtype=I32), S(((3, 4), I32), dtype=F32),
                   S(((2, 3), F64), dtype=I64), S(((5,), I64), dtype=F64), S(((), F32), dtype=I32),
                   S(((0, 3), F64), dtype=I64)], domain="small_int", rtol=0, atol=0))

BY_NAME = {o.name: o for o in OPS}
