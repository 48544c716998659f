"""Elementwise ops: one output element from the input elements at the same
(broadcast) index. Each is declared once, below, with its shape/dtype rule,
numpy reference, VJP and scalar lowering."""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError
from ..ir import dtypes as D
from ..ir.node import Node
from . import attrs as A
from .common import as_node, broadcast_shapes, constant
from .registry import CHEAP, COSTLY, OpDef, OpKind, make, register

# ---------------------------------------------------------------- dtype rules


def _numeric(name, inputs, attrs):
    dt = inputs[0].dtype
    if D.is_bool(dt):
        raise DTypeError(f"{name}: bool operands are not supported; cast to a number first")
    return dt


def _floating(name, inputs, attrs):
    dt = inputs[0].dtype
    if not D.is_float(dt):
        raise DTypeError(f"{name}: needs a floating operand, got {dt}")
    return dt


def _bits(name, inputs, attrs):
    dt = inputs[0].dtype
    if not (D.is_int(dt) or D.is_bool(dt)):
        raise DTypeError(f"{name}: needs integer or bool operands, got {dt}")
    return dt


def _compare(name, inputs, attrs):
    return D.bool_


def _any(name, inputs, attrs):
    return inputs[0].dtype


def _cast_rule(name, inputs, attrs):
    return attrs["dtype"]


def _where_rule(name, inputs, attrs):
    if not D.is_bool(inputs[0].dtype):
        raise DTypeError(f"where: condition must be bool, got {inputs[0].dtype}")
    return inputs[1].dtype


def _define(name, nin, dtype_rule, ref, vjp, scalar, doc="", attrs=(), check_attrs=None,
            cost=CHEAP):
    def infer(inputs, attrs):
        if len(inputs) != nin:
            raise TypeError(f"{name} takes {nin} inputs, got {len(inputs)}")
        if nin > 1 and name != "where":
            if len({i.dtype for i in inputs}) > 1:
                raise DTypeError(f"{name}: operand dtypes differ: "
                                 + ", ".join(str(i.dtype) for i in inputs))
        if name == "where" and inputs[1].dtype != inputs[2].dtype:
            raise DTypeError(f"where: branch dtypes differ: {inputs[1].dtype}, {inputs[2].dtype}")
        shape = broadcast_shapes(name, *[i.shape for i in inputs])
        return shape, dtype_rule(name, inputs, attrs)
    return register(OpDef(name, OpKind.ELEMENTWISE, infer, ref, vjp, scalar=scalar, doc=doc,
                          nin=nin, attrs=attrs, check_attrs=check_attrs, cost=cost))


def _ref_sigmoid(x):
    """1/(1+e^-x), computed as e^x/(1+e^x) for x < 0 so that tiny results keep
    their relative accuracy (down to denormals) instead of flushing to 0."""
    with np.errstate(over="ignore", under="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)


def _no_grad(node, g):
    return [None] * len(node.inputs)


# ------------------------------------------------------------------ unary ops

_define("neg", 1, _numeric, np.negative, lambda n, g: [-g], lambda s, n, x: -x)
_define("exp", 1, _floating, np.exp, lambda n, g: [g * n], lambda s, n, x: s.exp(x), cost=COSTLY)
_define("log", 1, _floating, np.log, lambda n, g: [g / n.inputs[0]], lambda s, n, x: s.log(x),
        cost=COSTLY)
_define("sqrt", 1, _floating, np.sqrt, lambda n, g: [g / (2.0 * n)], lambda s, n, x: s.sqrt(x),
        cost=COSTLY)
_define("tanh", 1, _floating, np.tanh, lambda n, g: [g * (1.0 - n * n)],
        lambda s, n, x: s.tanh(x), cost=COSTLY)
_define("sigmoid", 1, _floating, _ref_sigmoid, lambda n, g: [g * n * (1.0 - n)],
        lambda s, n, x: s.sigmoid(x), cost=COSTLY)
_define("relu", 1, _numeric, lambda x: np.maximum(x, np.zeros((), x.dtype)),
        lambda n, g: [where(n.inputs[0] > 0, g, 0)],
        lambda s, n, x: s.maximum(x, s.const(0, x.dtype)))     # as np.maximum: relu(-0.0) = 0.0
_define("abs", 1, _numeric, np.abs,
        lambda n, g: [where(n.inputs[0] > 0, g, where(n.inputs[0] < 0, -g, 0))],
        lambda s, n, x: s.abs(x))
_define("sin", 1, _floating, np.sin, lambda n, g: [g * cos(n.inputs[0])],
        lambda s, n, x: s.sin(x), cost=COSTLY)
_define("cos", 1, _floating, np.cos, lambda n, g: [-(g * sin(n.inputs[0]))],
        lambda s, n, x: s.cos(x), cost=COSTLY)
_define("atan", 1, _floating, np.arctan,
        lambda n, g: [g / (1.0 + n.inputs[0] * n.inputs[0])],
        lambda s, n, x: s.atan(x), cost=COSTLY,
        doc="the inverse tangent, in (-pi/2, pi/2); the gradient is 1 / (1 + x**2)")


def _float_or(fn):
    """A rounding lowering: ``fn`` on floats, the value itself on integers."""
    return lambda s, n, x: fn(s, x) if D.is_float(x.dtype) else x


# rounding (integers are their own value, as numpy 2 keeps their dtype); zero gradient
_define("floor", 1, _numeric, np.floor, _no_grad, _float_or(lambda s, x: s.floor(x)),
        doc="the largest integer <= x; zero gradient")
_define("ceil", 1, _numeric, np.ceil, _no_grad, _float_or(lambda s, x: s.ceil(x)),
        doc="the smallest integer >= x; zero gradient")
_define("round", 1, _numeric, np.round, _no_grad, _float_or(lambda s, x: s.roundeven(x)),
        doc="the nearest integer, ties to even (numpy, ONNX Round); zero gradient")


def _sign_scalar(s, n, x):
    """numpy's sign: 1, -1 or 0 (also for -0.0); NaN stays NaN."""
    one, zero = s.const(1, x.dtype), s.const(0, x.dtype)
    r = s.select(x < zero, -one, s.select(x > zero, one, zero))
    return s.select(s.isnan(x), x, r) if D.is_float(x.dtype) else r


_define("sign", 1, _numeric, np.sign, _no_grad, _sign_scalar,
        doc="-1, 0 or 1 by the sign of x (0 for -0.0, NaN for NaN); zero gradient")
_define("stop_gradient", 1, _any, lambda x: x.copy(), _no_grad, lambda s, n, x: x,
        doc="identity whose gradient is zero")


def _cast_vjp(n, g):
    src = n.inputs[0].dtype
    if D.is_float(src) and D.is_float(n.dtype):
        return [cast(g, src)]
    return [None]


def _ref_cast(x, dtype):
    with np.errstate(invalid="ignore", over="ignore"):
        if D.is_float(x.dtype) and D.is_int(dtype):
            # as the compiled code: truncate, saturate, NaN -> 0 (numpy leaves
            # this undefined). Decided in float64 against the exact bounds
            # -2**(bits-1) and 2**(bits-1): the dtype's max is not a float32
            # (nor, for int64, a float64), so clipping to it would round up
            # and overflow.
            info = np.iinfo(dtype)
            y = np.where(np.isnan(x), 0.0, x.astype(np.float64))
            edge = 2.0 ** (8 * np.dtype(dtype).itemsize - 1)
            hi, lo = y >= edge, y < -edge
            t = np.trunc(np.where(hi | lo, 0.0, y)).astype(dtype)
            return np.where(hi, info.max, np.where(lo, info.min, t)).astype(dtype)
        return x.astype(dtype)



def _cast_attrs(inputs, attrs):
    return {"dtype": A.dtype("cast", "dtype", attrs["dtype"])}


_define("cast", 1, _cast_rule, _ref_cast, _cast_vjp, lambda s, n, x: s.cast(x, n.dtype),
        attrs=("dtype",), check_attrs=_cast_attrs)



def _bitcast_rule(name, inputs, attrs):
    src, dst = inputs[0].dtype, attrs["dtype"]
    if D.is_bool(src) or D.is_bool(dst) or np.dtype(src).itemsize != np.dtype(dst).itemsize:
        raise DTypeError(f"bitcast: {src} -> {dst}: needs two dtypes of one width (float32 <-> "
                         "int32, float64 <-> int64)")
    return dst


_define("bitcast", 1, _bitcast_rule, lambda x, dtype: np.array(x, order="C").view(dtype),
        _no_grad, lambda s, n, x: s.bitcast(x, n.dtype), attrs=("dtype",),
        check_attrs=lambda inputs, attrs: {"dtype": A.dtype("bitcast", "dtype", attrs["dtype"])},
        doc="the bits of x read as another dtype of the same width; no gradient")

# ----------------------------------------------------------------- binary ops

_define("add", 2, _numeric, np.add, lambda n, g: [g, g], lambda s, n, a, b: a + b)
_define("sub", 2, _numeric, np.subtract, lambda n, g: [g, -g], lambda s, n, a, b: a - b)
_define("mul", 2, _numeric, np.multiply,
        lambda n, g: [g * n.inputs[1], g * n.inputs[0]], lambda s, n, a, b: a * b)
_define("div", 2, _floating, np.divide,
        lambda n, g: [g / n.inputs[1], -g * n / n.inputs[1]], lambda s, n, a, b: a / b,
        cost=COSTLY)


def _ref_pow(a, b):
    # (an empty result computes nothing, so nothing fails: numpy's rule too)
    if D.is_int(a.dtype) and np.any(b < 0) and np.broadcast(a, b).size:
        from ..errors import RuntimeCheckError
        raise RuntimeCheckError("pow: integers to negative integer powers are not allowed")
    if D.is_float(a.dtype):
        # numpy computes x ** 0.5 as sqrt(x) when the exponent has one element
        # (a scalar, or an array of size 1) and pow(x, 0.5) otherwise; they
        # differ at -inf (nan vs inf) and -0.0. Spelled out here so the
        # interpreter's answer does not depend on numpy's dispatch.
        shape = np.broadcast_shapes(a.shape, b.shape)
        if b.size == 1 and b.reshape(-1)[0] == 0.5:
            return np.broadcast_to(np.sqrt(a), shape).copy()
        return np.power(np.broadcast_to(a, shape), np.broadcast_to(b, shape).copy())
    return np.power(a, b)


def _pow_scalar(s, n, a, b):
    """pow, with numpy's ``x ** 0.5 == sqrt(x)`` for a one-element exponent
    (see _ref_pow)."""
    e = n.inputs[1]
    if not D.is_float(a.dtype) or e.size != 1:
        return s.pow(a, b)
    if e.op == "constant":
        return s.sqrt(a) if float(e.value.reshape(-1)[0]) == 0.5 else s.pow(a, b)
    return s.select(s.eq(b, s.const(0.5, b.dtype)), s.sqrt(a), s.pow(a, b))


def _pow_vjp(n, g):
    """PyTorch's rule where it is finite (torch/csrc/autograd/FunctionsManual.cpp,
    ``pow_backward_self`` / ``pow_backward_exponent``):

    * d/dx x**y = y * x**(y-1), but 0 where y == 0 (so d(x**0)/dx at x = 0 is
      0, not 0 * inf = NaN);
    * d/dy x**y = x**y * log(x) where x > 0, and 0 where x <= 0 (PyTorch: 0
      where x == 0 and y >= 0 too; it gives -inf at x == 0, y < 0 and NaN at
      x < 0, where graphc gives 0).

    Masked lanes are computed from safe operands (exponent 1, base 1), so
    neither the value nor a second derivative picks up an inf * 0."""
    a, b = n.inputs
    if not D.is_float(n.dtype):
        return [None, None]
    b0 = b == 0.0
    safe_b = where(b0, 1.0, b)
    ga = where(b0, 0.0, g * b * a ** (safe_b - 1.0))
    pos = a > 0.0
    safe_a = where(pos, a, 1.0)
    gb = where(pos, g * (n * log(safe_a)), 0.0)
    return [ga, gb]


_define("pow", 2, _numeric, _ref_pow, _pow_vjp, _pow_scalar, cost=COSTLY)


def _max_vjp(n, g):
    a, b = n.inputs
    pick_a = a >= b
    return [where(pick_a, g, 0), where(pick_a, 0, g)]


def _min_vjp(n, g):
    a, b = n.inputs
    pick_a = a <= b
    return [where(pick_a, g, 0), where(pick_a, 0, g)]


_define("maximum", 2, _numeric, np.maximum, _max_vjp, lambda s, n, a, b: s.maximum(a, b))
_define("minimum", 2, _numeric, np.minimum, _min_vjp, lambda s, n, a, b: s.minimum(a, b))

_define("greater", 2, _compare, np.greater, _no_grad, lambda s, n, a, b: s.gt(a, b))
_define("less", 2, _compare, np.less, _no_grad, lambda s, n, a, b: s.lt(a, b))
_define("greater_equal", 2, _compare, np.greater_equal, _no_grad, lambda s, n, a, b: s.ge(a, b))
_define("less_equal", 2, _compare, np.less_equal, _no_grad, lambda s, n, a, b: s.le(a, b))
_define("equal", 2, _compare, np.equal, _no_grad, lambda s, n, a, b: s.eq(a, b))
_define("not_equal", 2, _compare, np.not_equal, _no_grad, lambda s, n, a, b: s.ne(a, b))

# floor_divide and mod: numpy's floor division and remainder (the sign of the
# divisor), for integers and floats. An integer zero divisor gives 0 (numpy's
# result, without its warning) and MIN // -1 wraps to MIN, in the interpreter
# and in compiled code (scalar.py guards sdiv/srem, which would trap).


def _mod_vjp(n, g):
    a, b = n.inputs
    if not D.is_float(n.dtype):
        return [None, None]
    return [g, -g * floor_divide(a, b)]     # a % b = a - b * floor(a / b)


_define("floor_divide", 2, _numeric, np.floor_divide, _no_grad,
        lambda s, n, a, b: s.floor_divide(a, b),
        doc="numpy's a // b: floor of the quotient; zero gradient")
_define("mod", 2, _numeric, np.remainder, _mod_vjp, lambda s, n, a, b: s.mod(a, b),
        doc="numpy's a % b: the remainder has the sign of the divisor")

# bitwise ops: integers bitwise, bools logical (numpy's & | ^ ~); no gradient.
_define("bitwise_and", 2, _bits, np.bitwise_and, _no_grad,
        lambda s, n, a, b: s.bitwise("and", a, b), doc="a & b (logical and for bools)")
_define("bitwise_or", 2, _bits, np.bitwise_or, _no_grad,
        lambda s, n, a, b: s.bitwise("or", a, b), doc="a | b (logical or for bools)")
_define("bitwise_xor", 2, _bits, np.bitwise_xor, _no_grad,
        lambda s, n, a, b: s.bitwise("xor", a, b), doc="a ^ b (logical xor for bools)")
_define("invert", 1, _bits, np.invert, _no_grad, lambda s, n, x: s.invert(x),
        doc="~x: bitwise not of an integer, logical not of a bool")

_define("where", 3, _where_rule, np.where,
        lambda n, g: [None, where(n.inputs[0], g, 0), where(n.inputs[0], 0, g)],
        lambda s, n, c, a, b: s.select(c, a, b))

# ------------------------------------------------------------ public functions


def promote(opname: str, *xs) -> list[Node]:
    """Promote operands to one dtype as numpy does (Python scalars weak) and
    turn them into nodes, inserting casts where needed."""
    keys = []
    for x in xs:
        if isinstance(x, Node):
            keys.append(x.dtype)
        elif isinstance(x, (bool, int, float)):
            keys.append(x)
        elif isinstance(x, (np.ndarray, np.generic, list, tuple)):
            try:
                keys.append(D.as_dtype(np.asarray(x).dtype))
            except (ValueError, TypeError) as e:       # ragged lists, complex, strings
                raise DTypeError(f"{opname}: cannot use this {type(x).__name__} as an "
                                 f"operand: {e}") from None
        else:
            raise TypeError(f"{opname}: cannot use a {type(x).__name__} as an operand")
    try:
        dt = D.result_type(*keys)
    except (TypeError, DTypeError) as e:
        raise DTypeError(f"{opname}: cannot promote operand dtypes: {e}") from None
    out = []
    for x in xs:
        if isinstance(x, Node):
            out.append(x if x.dtype == dt else cast(x, dt))
        else:
            try:
                with np.errstate(over="raise", invalid="raise"):
                    arr = np.asarray(x, dtype=dt)
            except (OverflowError, FloatingPointError) as e:
                raise DTypeError(f"{opname}: scalar {x!r} does not fit in {dt}: {e}") from None
            out.append(constant(arr))
    return out


def cast(x, dtype) -> Node:
    """Convert ``x`` to ``dtype`` (numpy ``astype`` semantics; float -> int
    truncates toward zero and saturates, NaN -> 0)."""
    x = as_node(x, opname="cast")
    dt = D.as_dtype(dtype, "cast")
    if x.dtype == dt:
        return x
    return make("cast", (x,), {"dtype": dt})


def bitcast(x, dtype) -> Node:
    """The bits of ``x`` reinterpreted as ``dtype`` (numpy's ``x.view(dtype)``,
    ONNX BitCast): float32 <-> int32, float64 <-> int64. No gradient."""
    x = as_node(x, opname="bitcast")
    dt = D.as_dtype(dtype, "bitcast")
    if x.dtype == dt:
        return x
    return make("bitcast", (x,), {"dtype": dt})


def _unary_numeric(name):
    def f(x) -> Node:
        return make(name, (as_node(x, opname=name),))
    f.__name__ = name
    return f


def _unary_float(name):
    def f(x) -> Node:
        x = as_node(x, opname=name)
        if D.is_int(x.dtype):       # numpy: int -> float64
            x = cast(x, D.float64)
        elif D.is_bool(x.dtype):
            raise DTypeError(f"{name}: bool operand; cast it to a float first")
        return make(name, (x,))
    f.__name__ = name
    return f


def _binary(name, floating=False):
    def f(a, b) -> Node:
        a, b = promote(name, a, b)
        if floating and not D.is_float(a.dtype):
            if D.is_bool(a.dtype):
                raise DTypeError(f"{name}: bool operands; cast them to a float first")
            a, b = cast(a, D.float64), cast(b, D.float64)
        return make(name, (a, b))
    f.__name__ = name
    return f


neg = _unary_numeric("neg")
relu = _unary_numeric("relu")
abs = _unary_numeric("abs")  # noqa: A001 - numpy's name
exp = _unary_float("exp")
sin = _unary_float("sin")
cos = _unary_float("cos")
atan = _unary_float("atan")
floor = _unary_numeric("floor")
ceil = _unary_numeric("ceil")
round = _unary_numeric("round")  # noqa: A001 - numpy's name
sign = _unary_numeric("sign")
log = _unary_float("log")
sqrt = _unary_float("sqrt")
tanh = _unary_float("tanh")
sigmoid = _unary_float("sigmoid")
add = _binary("add")
sub = _binary("sub")
mul = _binary("mul")
div = _binary("div", floating=True)
pow = _binary("pow")  # noqa: A001
maximum = _binary("maximum")
minimum = _binary("minimum")
greater = _binary("greater")
less = _binary("less")
greater_equal = _binary("greater_equal")
less_equal = _binary("less_equal")
equal = _binary("equal")
not_equal = _binary("not_equal")
floor_divide = _binary("floor_divide")
mod = _binary("mod")
bitwise_and = _binary("bitwise_and")
bitwise_or = _binary("bitwise_or")
bitwise_xor = _binary("bitwise_xor")
invert = _unary_numeric("invert")


def stop_gradient(x) -> Node:
    """``x`` unchanged, but treated as a constant by :func:`graphc.grad`."""
    return make("stop_gradient", (as_node(x, opname="stop_gradient"),))


def where(cond, a, b) -> Node:
    """Elementwise ``a if cond else b`` with numpy broadcasting."""
    c = as_node(cond, opname="where")
    if not D.is_bool(c.dtype):
        c = cast(c, D.bool_)
    a, b = promote("where", a, b)
    return make("where", (c, a, b))
