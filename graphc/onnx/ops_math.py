"""Converters of ONNX's elementwise, activation and reduction ops."""
from __future__ import annotations

import math

import numpy as np

from .. import ops as O
from ..ir import dtypes as D
from .convert import np_dtype, op

# ------------------------------------------------------------------ unary

_UNARY = {"Abs": O.abs, "Neg": O.neg, "Exp": O.exp, "Log": O.log, "Sqrt": O.sqrt,
          "Tanh": O.tanh, "Sigmoid": O.sigmoid, "Relu": O.relu, "Erf": O.erf, "Floor": O.floor,
          "Ceil": O.ceil, "Round": O.round, "Sign": O.sign, "Sin": O.sin, "Cos": O.cos,
          "Reciprocal": O.reciprocal}


@op(*_UNARY)
def _unary(ctx, n):
    return _UNARY[n.op](ctx.x(n, 0))


def _float_input(ctx, n, i=0):
    x = ctx.x(n, i)
    if not D.is_float(x.dtype):
        raise n.error(f"input {i} has dtype {x.dtype}; graphc converts {n.op} for float32 and "
                      "float64 only")
    return x


_TRIG = {"Tan": O.tan, "Asin": O.asin, "Acos": O.acos, "Atan": O.atan, "Sinh": O.sinh,
         "Cosh": O.cosh, "Asinh": O.asinh, "Acosh": O.acosh, "Atanh": O.atanh}


@op(*_TRIG)
def _trig(ctx, n):
    return _TRIG[n.op](_float_input(ctx, n))


@op("Identity")
def _identity(ctx, n):
    return ctx.x(n, 0)


@op("IsNaN")
def _isnan(ctx, n):
    x = ctx.x(n, 0)
    return O.not_equal(x, x)


@op("IsInf")
def _isinf(ctx, n):
    x = _float_input(ctx, n)
    pos, neg = O.equal(x, np.inf), O.equal(x, -np.inf)
    dp, dn = n.attr("detect_positive", 1), n.attr("detect_negative", 1)
    if dp and dn:
        return O.bitwise_or(pos, neg)
    if dp:
        return pos
    if dn:
        return neg
    return O.not_equal(x, x) & O.equal(x, x)


# ------------------------------------------------------------- activations

def softplus(x):
    return O.maximum(x, 0.0) + O.log1p(O.exp(-O.abs(x)))


@op("LeakyRelu")
def _leaky(ctx, n):
    x = ctx.x(n, 0)
    return O.where(x < 0, x * float(n.attr("alpha", 0.01)), x)


@op("PRelu")
def _prelu(ctx, n):
    x, slope = ctx.x(n, 0), ctx.x(n, 1)
    return O.where(x < 0, x * slope, x)


@op("Elu")
def _elu(ctx, n):
    x = ctx.x(n, 0)
    a = float(n.attr("alpha", 1.0))
    return O.where(x < 0, (O.exp(x) - 1.0) * a, x)


@op("Selu")
def _selu(ctx, n):
    x = ctx.x(n, 0)
    a = float(n.attr("alpha", 1.67326319217681884765625))
    g = float(n.attr("gamma", 1.05070102214813232421875))
    return O.where(x <= 0, O.exp(x) * a - a, x) * g


@op("Celu")
def _celu(ctx, n):
    x = ctx.x(n, 0)
    a = float(n.attr("alpha", 1.0))
    return O.maximum(x, 0.0) + O.minimum(0.0, (O.exp(x / a) - 1.0) * a)


@op("ThresholdedRelu")
def _trelu(ctx, n):
    x = ctx.x(n, 0)
    return O.where(x > float(n.attr("alpha", 1.0)), x, O.constant(0, x.dtype))


def hard_sigmoid(x, alpha, beta):
    return O.maximum(O.minimum(x * alpha + beta, 1.0), 0.0)


@op("HardSigmoid")
def _hsig(ctx, n):
    return hard_sigmoid(ctx.x(n, 0), float(n.attr("alpha", 0.2)), float(n.attr("beta", 0.5)))


@op("HardSwish")
def _hswish(ctx, n):
    x = ctx.x(n, 0)
    return x * hard_sigmoid(x, 1.0 / 6.0, 0.5)


@op("Softplus")
def _softplus(ctx, n):
    return softplus(ctx.x(n, 0))


@op("Softsign")
def _softsign(ctx, n):
    x = ctx.x(n, 0)
    return x / (O.abs(x) + 1.0)


@op("Mish")
def _mish(ctx, n):
    x = ctx.x(n, 0)
    return x * O.tanh(softplus(x))


@op("Gelu")
def _gelu(ctx, n):
    x = _float_input(ctx, n)
    if n.attr("approximate", "none") == "tanh":
        return x * 0.5 * (O.tanh((x + x * x * x * 0.044715) * math.sqrt(2 / math.pi)) + 1.0)
    return x * 0.5 * (O.erf(x * (1 / math.sqrt(2))) + 1.0)


@op("Shrink")
def _shrink(ctx, n):
    x = ctx.x(n, 0)
    b, lam = float(n.attr("bias", 0.0)), float(n.attr("lambd", 0.5))
    zero = O.constant(0, x.dtype)
    return O.where(x < -lam, x + b, O.where(x > lam, x - b, zero))


@op("Clip")
def _clip(ctx, n):
    x = ctx.x(n, 0)
    if n.opset < 11:
        lo, hi = n.attr("min"), n.attr("max")
    else:
        lo, hi = ctx.opt(n, 1), ctx.opt(n, 2)
    if lo is not None:
        x = O.maximum(x, O.cast(lo, x.dtype) if isinstance(lo, O.Node) else O.constant(lo, x.dtype))
    if hi is not None:
        x = O.minimum(x, O.cast(hi, x.dtype) if isinstance(hi, O.Node) else O.constant(hi, x.dtype))
    return x


# ----------------------------------------------------------------- binary

_BINARY = {"Add": O.add, "Sub": O.sub, "Mul": O.mul, "Equal": O.equal, "Less": O.less,
           "Greater": O.greater, "LessOrEqual": O.less_equal, "GreaterOrEqual": O.greater_equal,
           "And": O.bitwise_and, "Or": O.bitwise_or, "Xor": O.bitwise_xor,
           "BitwiseAnd": O.bitwise_and, "BitwiseOr": O.bitwise_or, "BitwiseXor": O.bitwise_xor}


def _legacy_broadcast(ctx, n, a, b):
    """Opset < 7: ``broadcast=1`` aligns b's axes with a's from ``axis``."""
    if n.opset < 7 and n.attr("broadcast", 0) and "axis" in n.attrs and b.ndim < a.ndim:
        ax = n.attrs["axis"] % a.ndim
        b = O.reshape(b, b.shape + (1,) * (a.ndim - ax - b.ndim))
    return b


@op(*_BINARY)
def _binary(ctx, n):
    a, b = ctx.x(n, 0), ctx.x(n, 1)
    return _BINARY[n.op](a, _legacy_broadcast(ctx, n, a, b))


@op("Div")
def _div(ctx, n):
    a, b = ctx.x(n, 0), ctx.x(n, 1)
    b = _legacy_broadcast(ctx, n, a, b)
    if D.is_float(a.dtype):
        return O.div(a, b)
    # integers: truncate toward zero (C's division), not numpy's floor
    q, r = O.floor_divide(a, b), O.mod(a, b)
    fix = O.bitwise_and(O.not_equal(r, 0), O.not_equal(a < 0, b < 0))
    return O.where(fix, q + O.constant(1, q.dtype), q)


@op("Mod")
def _mod(ctx, n):
    a, b = ctx.x(n, 0), ctx.x(n, 1)
    if not n.attr("fmod", 0):
        return O.mod(a, b)
    r = O.mod(O.abs(a), O.abs(b))           # C's fmod: the sign of the dividend
    return O.where(a < 0, -r, r)


@op("Pow")
def _pow(ctx, n):
    a, b = ctx.x(n, 0), ctx.x(n, 1)
    if a.dtype == b.dtype:
        return O.pow(a, b)
    if D.is_float(a.dtype):
        return O.pow(a, O.cast(b, a.dtype))
    return O.cast(O.pow(O.cast(a, D.float64), O.cast(b, D.float64)), a.dtype)


@op("BitShift")
def _bitshift(ctx, n):
    """x << y as x * 2**y (wrapping), x >> y (arithmetic) as floor(x / 2**y); a
    shift that is negative or at least the width gives what the sign fill
    alone gives (0, or -1 for a right shift of a negative x), as ONNX says."""
    x, y = ctx.x(n, 0), ctx.x(n, 1)
    if not (D.is_int(x.dtype) and x.dtype == y.dtype):
        raise n.error(f"needs two inputs of one integer type, got {x.dtype} and {y.dtype}")
    direction = n.attr("direction")
    if direction not in ("LEFT", "RIGHT"):
        raise n.error(f"direction must be 'LEFT' or 'RIGHT', got {direction!r}")
    bits = np.dtype(x.dtype).itemsize * 8
    one, zero = O.constant(1, x.dtype), O.constant(0, x.dtype)
    if direction == "LEFT":
        ok = (y >= 0) & (y < bits)
        return O.where(ok, x * O.pow(O.constant(2, x.dtype), O.where(ok, y, zero)), zero)
    ok = (y >= 0) & (y < bits - 1)             # 2**(bits-1) is not representable
    fill = O.where(x < 0, -one, zero)
    return O.where(ok, O.floor_divide(x, O.pow(O.constant(2, x.dtype), O.where(ok, y, zero))),
                   fill)


@op("BitCast")
def _bitcast(ctx, n):
    x = ctx.x(n, 0)
    to = np_dtype(int(n.attr("to", 0)), "attribute to")
    if np.dtype(x.dtype).itemsize != to.itemsize or D.is_bool(x.dtype) or D.is_bool(to):
        raise n.error(f"{x.dtype} -> {to}: graphc reinterprets between dtypes of one width "
                      "(float32 <-> int32, float64 <-> int64)")
    return O.bitcast(x, to)


@op("Not", "BitwiseNot")
def _not(ctx, n):
    return O.invert(ctx.x(n, 0))


@op("Where")
def _where(ctx, n):
    return O.where(ctx.x(n, 0), ctx.x(n, 1), ctx.x(n, 2))


def _fold(f, xs):
    y = xs[0]
    for x in xs[1:]:
        y = f(y, x)
    return y


@op("Max")
def _max(ctx, n):
    return _fold(O.maximum, ctx.xs(n))


@op("Min")
def _min(ctx, n):
    return _fold(O.minimum, ctx.xs(n))


@op("Sum")
def _sum(ctx, n):
    return _fold(O.add, ctx.xs(n))


@op("Mean")
def _mean(ctx, n):
    xs = ctx.xs(n)
    return _fold(O.add, xs) / float(len(xs))


@op("Cast")
def _cast(ctx, n):
    return O.cast(ctx.x(n, 0), np_dtype(n.attr("to"), f"{n.where()}: attribute to"))


@op("CastLike")
def _cast_like(ctx, n):
    return O.cast(ctx.x(n, 0), ctx.x(n, 1).dtype)


# ------------------------------------------------------------- reductions

def reduce_axes(ctx, n, ndim, input_since):
    """The reduced axes (a tuple), or None for "all", or () for a no-op."""
    if n.opset >= input_since:
        axes = ctx.const(n, 1, "axes").tolist() if n.has(1) else []
    else:
        axes = list(n.attr("axes", []))
    if not axes:
        return () if n.attr("noop_with_empty_axes", 0) else None
    return tuple(sorted({a % ndim if ndim else 0 for a in axes}))


_REDUCE = {"ReduceSum": (13, O.sum), "ReduceMean": (18, O.mean), "ReduceMax": (18, O.max),
           "ReduceMin": (18, O.min), "ReduceProd": (18, O.prod),
           "ReduceSumSquare": (18, lambda x, a, k: O.sum(x * x, a, k)),
           "ReduceL1": (18, lambda x, a, k: O.sum(O.abs(x), a, k)),
           "ReduceL2": (18, lambda x, a, k: O.sqrt(O.sum(x * x, a, k))),
           "ReduceLogSum": (18, lambda x, a, k: O.log(O.sum(x, a, k))),
           "ReduceLogSumExp": (18, lambda x, a, k: O.logsumexp(x, a, k))}


@op(*_REDUCE)
def _reduce(ctx, n):
    since, f = _REDUCE[n.op]
    x = ctx.x(n, 0)
    axes = reduce_axes(ctx, n, x.ndim, since)
    if axes == ():
        return x
    keep = bool(n.attr("keepdims", 1))
    if x.ndim == 0:
        return x
    if n.op in ("ReduceMax", "ReduceMin") and any(x.shape[a] == 0 for a in (axes or range(x.ndim))):
        big = n.op == "ReduceMax"                # the reduction's identity
        if D.is_float(x.dtype):
            init = -np.inf if big else np.inf
        elif D.is_bool(x.dtype):
            init = not big                       # max is "any", min is "all"
        else:
            init = np.iinfo(x.dtype).min if big else np.iinfo(x.dtype).max
        return np.full(np.zeros(x.shape).sum(axis=axes, keepdims=keep).shape, init, x.dtype)
    y = f(x, axes, keep)
    return y if y.dtype == x.dtype else O.cast(y, x.dtype)


@op("ArgMax", "ArgMin")
def _argmax(ctx, n):
    x = ctx.x(n, 0)
    ax = n.attr("axis", 0) % x.ndim
    keep = bool(n.attr("keepdims", 1))
    f = O.argmax if n.op == "ArgMax" else O.argmin
    if not n.attr("select_last_index", 0):
        return f(x, ax, keep)
    key = tuple(slice(None, None, -1) if d == ax else slice(None) for d in range(x.ndim))
    return O.constant(x.shape[ax] - 1, D.int64) - f(x[key], ax, keep)


@op("Einsum")
def _einsum(ctx, n):
    eq = n.attr("equation")
    if eq is None:
        raise n.error("attribute equation is missing")
    return O.einsum(eq, *ctx.xs(n))


@op("Swish")
def _swish(ctx, n):
    x = ctx.x(n, 0)
    return x * O.sigmoid(x * float(n.attr("alpha", 1.0)))


@op("SwiGLU")
def _swiglu(ctx, n):
    a, b = ctx.x(n, 0), ctx.x(n, 1)
    if a.shape != b.shape:
        raise n.error(f"A {a.shape} and B {b.shape} must have the same shape (no broadcasting)")
    return a * O.sigmoid(a * float(n.attr("alpha", 1.0))) * b


@op("CumSum")
def _cumsum(ctx, n):
    x = ctx.x(n, 0)
    ax = int(np.asarray(ctx.const(n, 1, "axis")).reshape(-1)[0])
    return O.cumsum(x, ax, exclusive=bool(n.attr("exclusive", 0)), reverse=bool(n.attr("reverse", 0)),
                    dtype=x.dtype)


@op("CumProd")
def _cumprod(ctx, n):
    """graphc's linear scan h[j] = a[j] h[j-1] + b[j] with b zero but at the
    first element (the exclusive form multiplies the shifted input from 1)."""
    from ..ops.scan import scan, shift
    x = ctx.x(n, 0)
    ax = int(np.asarray(ctx.const(n, 1, "axis")).reshape(-1)[0]) % x.ndim
    rev, excl = bool(n.attr("reverse", 0)), bool(n.attr("exclusive", 0))
    m = x.shape[ax]
    first = np.zeros([m if d == ax else 1 for d in range(x.ndim)], x.dtype)
    first[tuple(m - 1 if d == ax and rev else 0 for d in range(x.ndim))] = 1
    if excl:
        return scan(shift(x, ax, -1 if rev else 1, 1), O.constant(first), ax, rev)
    return scan(x, x * O.constant(first), ax, rev)


@op("Det")
def _det(ctx, n):
    """The Leibniz sum over the n! permutations of products of entries (static
    slices), for n <= 5: exact algebra, differentiable; larger matrices are refused."""
    import itertools
    x = ctx.x(n, 0)
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise n.error(f"needs (..., n, n) matrices, got shape {x.shape}")
    if not D.is_float(x.dtype):
        raise n.error(f"needs float matrices, got {x.dtype}")
    k = x.shape[-1]
    if k > 5:
        raise n.error(f"{k} x {k} matrices: graphc computes Det as the Leibniz sum, for n <= 5")
    if k == 0:
        return O.broadcast_to(O.constant(1.0, x.dtype), x.shape[:-2])
    total = None
    for perm in itertools.permutations(range(k)):
        sign = 1.0
        for i in range(k):
            for j in range(i + 1, k):
                if perm[i] > perm[j]:
                    sign = -sign
        term = None
        for i, p in enumerate(perm):
            e = x[(Ellipsis, i, p)]
            term = e if term is None else term * e
        term = term if sign > 0 else -term
        total = term if total is None else total + term
    return total
