"""Composites the ONNX importer needs (issue 14): ``reciprocal``, ``clip``,
the logical ops, ``expand``, and the trigonometric and hyperbolic functions
beyond the primitives sin, cos and atan (``tan asin acos sinh cosh asinh
acosh atanh``). None is a primitive: each is built from the elementwise and
movement ops, so gradients, fusion and compilation come from those."""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from .common import as_node, broadcast_shapes
from .elementwise import (
    atan,
    bitwise_and,
    bitwise_or,
    bitwise_xor,
    cos,
    div,
    exp,
    invert,
    log,
    maximum,
    minimum,
    promote,
    sin,
    sqrt,
    where,
)
from .movement import broadcast_to
from .special import _float_arg, log1p


def reciprocal(x) -> Node:
    """``1 / x``. Integers give float64 (true division, as ``gc.div``; numpy's
    integer ``reciprocal`` truncates instead)."""
    x = as_node(x, opname="reciprocal")
    if D.is_bool(x.dtype):
        raise DTypeError("reciprocal: bool operand; cast it to a float first")
    return div(1, x) if D.is_float(x.dtype) else div(1.0, x)


def clip(x, lo=None, hi=None) -> Node:
    """numpy's ``clip``: ``minimum(maximum(x, lo), hi)``; either bound may be
    None (both None: ``x``). ``lo > hi`` gives ``hi``, NaN stays NaN. The
    gradient is torch.clamp's: 1 for ``lo <= x <= hi`` (bounds included), 0
    outside; a bound that is a node gets the gradient where it clips."""
    x = as_node(x, opname="clip")
    if D.is_bool(x.dtype):
        raise DTypeError("clip: bool operand; cast it to a number first")
    for what, b in (("lower", lo), ("upper", hi)):
        if b is None:
            continue
        try:
            b = promote("clip", x, b)[1]
        except (TypeError, DTypeError) as e:
            raise DTypeError(f"clip: bad {what} bound: {e}") from None
        broadcast_shapes("clip", x.shape, b.shape)
    y = x
    if lo is not None:
        y = maximum(y, lo)       # a tie (x == lo) sends the gradient to x
    if hi is not None:
        y = minimum(y, hi)       # and so does x == hi
    return y


def _logical(name, *xs) -> list[Node]:
    nodes = [as_node(x, opname=name) for x in xs]
    for n in nodes:
        if not D.is_bool(n.dtype):
            raise DTypeError(f"{name}: needs bool operands, got {n.dtype} (compare, or cast "
                             f"with gc.cast(x, 'bool'), first)")
    broadcast_shapes(name, *[n.shape for n in nodes])
    return nodes


def logical_and(a, b) -> Node:
    """Elementwise ``a and b`` of bool arrays (numpy broadcasting)."""
    return bitwise_and(*_logical("logical_and", a, b))


def logical_or(a, b) -> Node:
    """Elementwise ``a or b`` of bool arrays."""
    return bitwise_or(*_logical("logical_or", a, b))


def logical_xor(a, b) -> Node:
    """Elementwise ``a != b`` of bool arrays."""
    return bitwise_xor(*_logical("logical_xor", a, b))


def logical_not(x) -> Node:
    """Elementwise ``not x`` of a bool array."""
    return invert(*_logical("logical_not", x))


def expand(x, shape) -> Node:
    """ONNX ``Expand``: ``x`` broadcast with ``shape`` in both directions, i.e.
    ``broadcast_to(x, broadcast_shapes(x.shape, shape))`` (a 1 in ``shape``
    keeps ``x``'s dimension)."""
    x = as_node(x, opname="expand")
    if isinstance(shape, (int, bool)) or not hasattr(shape, "__iter__") or isinstance(shape, str):
        raise ShapeError(f"expand: shape must be a sequence of ints, got {shape!r}")
    shape = tuple(shape)
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) and not hasattr(d, "__index__") or \
                int(d) < 0:
            raise ShapeError(f"expand: shape {shape!r} must hold non-negative ints")
    shape = tuple(int(d) for d in shape)
    return broadcast_to(x, broadcast_shapes("expand", x.shape, shape))


# ------------------------------------------------------ trigonometric, hyperbolic
# Each takes floats (integers give float64, as numpy; bool is a DTypeError) and
# is written for relative accuracy over the whole range: odd functions work on
# |x| (as where(x < 0, -x, x), whose gradient at 0 is 1, not abs's 0) and put the
# sign back, so f(-0.0) = -0.0; branches chosen by ``where`` see inputs clamped
# into their own range, so the branch not taken is finite and its gradient 0.

_LN2 = 0.6931471805599453
_BIG = 2.0 ** 28        # above it sqrt(x*x +- 1) is x in float64: log(2x) directly


def _odd(x, f) -> Node:
    """f(|x|) with the sign of x; f(±0) = ±0 (x itself there: the gradient at 0 is 1,
    which is f'(0) for sinh and asinh)."""
    neg = x < 0
    y = f(where(neg, -x, x))
    return where(neg, -y, where(x == 0, x, y))


def tan(x) -> Node:
    """``sin(x) / cos(x)``."""
    x = _float_arg("tan", x)
    return sin(x) / cos(x)


def asin(x) -> Node:
    """The inverse sine, ``atan(x / sqrt((1 - x)(1 + x)))`` (no cancellation near ±1;
    ``x / 0 = ±inf`` gives ±pi/2 at ±1); NaN outside [-1, 1]."""
    x = _float_arg("asin", x)
    return atan(x / sqrt((1.0 - x) * (1.0 + x)))


def acos(x) -> Node:
    """The inverse cosine, ``2 atan(sqrt((1 - x) / (1 + x)))`` (``acos(-1) = pi``);
    NaN outside [-1, 1]."""
    x = _float_arg("acos", x)
    return atan(sqrt((1.0 - x) / (1.0 + x))) * 2.0


def _sinh_abs(a):
    small = minimum(a, 0.5)            # the odd Taylor series to x**15 below 0.5
    z = small * small
    p = 1.0 / 1307674368000.0
    for k in (13, 11, 9, 7, 5, 3):
        p = p * z + 1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64)))
    series = small + small * z * p
    h = exp(maximum(a, 0.5) * 0.5)     # e**a = h*h, formed so only the result overflows
    big = (h * 0.5) * h - 0.5 / (h * h)
    return where(a < 0.5, series, big)


def sinh(x) -> Node:
    """The hyperbolic sine: a series below |x| = 0.5 (relative accuracy for tiny x),
    ``(e**|x| - e**-|x|) / 2`` above, with ``e**|x|`` as ``h * h``, ``h = e**(|x|/2)``
    (finite up to where sinh itself overflows)."""
    return _odd(_float_arg("sinh", x), _sinh_abs)


def cosh(x) -> Node:
    """The hyperbolic cosine, ``(e**|x| + e**-|x|) / 2`` with ``e**|x| = h * h``."""
    x = _float_arg("cosh", x)
    h = exp(where(x < 0, -x, x) * 0.5)
    return (h * 0.5) * h + 0.5 / (h * h)


def asinh(x) -> Node:
    """The inverse hyperbolic sine, ``log1p(a + a**2 / (1 + sqrt(1 + a**2)))`` for
    ``a = |x|`` (relative accuracy for tiny x), ``log(2a)`` above 2**28."""
    def f(a):
        s = minimum(a, _BIG)
        small = log1p(s + s * s / (sqrt(s * s + 1.0) + 1.0))
        return where(a > _BIG, log(maximum(a, _BIG)) + _LN2, small)
    return _odd(_float_arg("asinh", x), f)


def acosh(x) -> Node:
    """The inverse hyperbolic cosine, ``log1p(t + sqrt(2t + t**2))`` with ``t = x - 1``
    (accurate near 1), ``log(2x)`` above 2**28; NaN below 1."""
    x = _float_arg("acosh", x)
    t = minimum(x, _BIG) - 1.0
    small = log1p(t + sqrt(t * 2.0 + t * t))
    y = where(x > _BIG, log(maximum(x, _BIG)) + _LN2, small)
    return where(x >= 1.0, y, np.nan)          # (t * t overflows for x < -1e154)


def atanh(x) -> Node:
    """The inverse hyperbolic tangent, ``(log1p(x) - log1p(-x)) / 2``; ±inf at ±1,
    NaN outside [-1, 1]."""
    x = _float_arg("atanh", x)
    return (log1p(x) - log1p(-x)) * 0.5
