"""All ops. Importing this package registers every primitive and attaches
the Python operators (``+ - * / ** @``, comparisons, indexing) to nodes."""
from __future__ import annotations

import numpy as _np

from ..ir import dtypes as _D
from ..ir.node import Node
from .common import as_node, constant
from .compose import (
    acos,
    acosh,
    asin,
    asinh,
    atanh,
    clip,
    cosh,
    expand,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    reciprocal,
    sinh,
    tan,
)
from .conv import (
    adaptive_avg_pool2d,
    argmax,
    argmin,
    avg_pool2d,
    conv1d,
    conv2d,
    flatten,
    global_avg_pool2d,
    max_pool2d,
    pad,
)
from .einsum import einsum
from .elementwise import (
    abs,
    add,
    atan,
    bitcast,
    bitwise_and,
    bitwise_or,
    bitwise_xor,
    cast,
    ceil,
    cos,
    div,
    equal,
    exp,
    floor,
    floor_divide,
    greater,
    greater_equal,
    invert,
    less,
    less_equal,
    log,
    maximum,
    minimum,
    mod,
    mul,
    neg,
    not_equal,
    pow,
    relu,
    round,
    sigmoid,
    sign,
    sin,
    sqrt,
    stop_gradient,
    sub,
    tanh,
    where,
)
from .gather import scatter_add, take
from .linalg import matmul
from .movement import (
    broadcast_to,
    concatenate,
    expand_dims,
    getitem,
    reshape,
    squeeze,
    swapaxes,
    transpose,
    unbroadcast,
)
from .nn import log_softmax, logsumexp, one_hot, softmax, softmax_cross_entropy
from .random import random_uniform
from .reduce import max, mean, min, sum
from .registry import OPS, OpDef, get, make, register
from .scan import cumsum, prod, scan
from .special import erf, log1p
from .topk import topk
from .windows import windows

__all__ = [
    "abs", "add", "cast", "div", "equal", "exp", "greater", "greater_equal", "less",
    "less_equal", "log", "maximum", "minimum", "mul", "neg", "not_equal", "pow", "relu",
    "sigmoid", "sqrt", "stop_gradient", "sub", "tanh", "where", "matmul", "broadcast_to",
    "concatenate", "expand_dims", "getitem", "reshape", "squeeze", "swapaxes", "transpose",
    "unbroadcast", "log_softmax", "logsumexp", "one_hot", "softmax", "softmax_cross_entropy",
    "max", "mean", "min", "sum", "OPS", "OpDef", "get", "make", "register", "constant",
    "as_node", "zeros", "ones", "full",
    "take", "scatter_add", "random_uniform", "erf", "log1p",
    "floor_divide", "mod", "bitwise_and", "bitwise_or", "bitwise_xor", "invert",
    "pad", "conv2d", "conv1d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "global_avg_pool2d", "flatten", "argmax", "argmin", "windows",
    "sin", "cos", "floor", "ceil", "round", "sign", "reciprocal", "clip", "logical_and",
    "logical_or", "logical_xor", "logical_not", "expand", "cumsum", "prod", "scan",
    "atan", "tan", "asin", "acos", "sinh", "cosh", "asinh", "acosh", "atanh", "einsum",
    "topk", "bitcast",
]


def full(shape, value, dtype="float64") -> Node:
    """A node of ``shape`` filled with ``value`` (a broadcast 0-d constant)."""
    return broadcast_to(constant(value, dtype), tuple(shape))


def zeros(shape, dtype="float64") -> Node:
    return full(shape, 0, dtype)


def ones(shape, dtype="float64") -> Node:
    return full(shape, 1, dtype)


_OPERANDS = (Node, bool, int, float, _np.generic, _np.ndarray, list, tuple)


def _no_op(symbol):
    def f(a, *b):
        raise TypeError(f"graph nodes have no {symbol} operator (graphc has no op for it)")
    return f


def _pow(a, b, modulo=None):
    if modulo is not None:
        raise TypeError("pow(node, exponent, modulo): graphc has no modular power")
    return pow(a, b)


def _compare(f):
    """``==``/``!=`` are elementwise, as in numpy; for an operand that cannot
    be a graph value (None, a string...) they return NotImplemented, so Python
    compares identities (``x == None`` is False)."""
    def op(a, b):
        return f(a, b) if isinstance(b, _OPERANDS) else NotImplemented
    return op


def _attach_operators():
    N = Node
    N.__add__ = lambda a, b: add(a, b)
    N.__radd__ = lambda a, b: add(b, a)
    N.__sub__ = lambda a, b: sub(a, b)
    N.__rsub__ = lambda a, b: sub(b, a)
    N.__mul__ = lambda a, b: mul(a, b)
    N.__rmul__ = lambda a, b: mul(b, a)
    N.__truediv__ = lambda a, b: div(a, b)
    N.__rtruediv__ = lambda a, b: div(b, a)
    N.__floordiv__ = lambda a, b: floor_divide(a, b)
    N.__rfloordiv__ = lambda a, b: floor_divide(b, a)
    N.__mod__ = lambda a, b: mod(a, b)
    N.__rmod__ = lambda a, b: mod(b, a)
    N.__divmod__ = lambda a, b: (floor_divide(a, b), mod(a, b))
    N.__rdivmod__ = lambda a, b: (floor_divide(b, a), mod(b, a))
    N.__pow__ = _pow
    N.__rpow__ = lambda a, b: pow(b, a)
    N.__matmul__ = lambda a, b: matmul(a, b)
    N.__rmatmul__ = lambda a, b: matmul(b, a)
    N.__and__ = lambda a, b: bitwise_and(a, b)
    N.__rand__ = lambda a, b: bitwise_and(b, a)
    N.__or__ = lambda a, b: bitwise_or(a, b)
    N.__ror__ = lambda a, b: bitwise_or(b, a)
    N.__xor__ = lambda a, b: bitwise_xor(a, b)
    N.__rxor__ = lambda a, b: bitwise_xor(b, a)
    N.__invert__ = lambda a: invert(a)
    N.__neg__ = lambda a: neg(a)
    N.__pos__ = lambda a: a
    N.__abs__ = lambda a: abs(a)
    N.__gt__ = lambda a, b: greater(a, b)
    N.__lt__ = lambda a, b: less(a, b)
    N.__ge__ = lambda a, b: greater_equal(a, b)
    N.__le__ = lambda a, b: less_equal(a, b)
    N.__eq__ = _compare(equal)        # elementwise; nodes stay hashable by identity
    N.__ne__ = _compare(not_equal)
    for name, symbol in (("lshift", "<<"), ("rshift", ">>")):
        setattr(N, f"__{name}__", _no_op(symbol))
        setattr(N, f"__r{name}__", _no_op(symbol))
    N.__array_ufunc__ = None          # numpy operands defer to the node's operators
    N.__getitem__ = lambda a, k: getitem(a, k)
    N.T = property(lambda a: transpose(a))
    N.astype = lambda a, dt: cast(a, dt)
    N.reshape = lambda a, *shape: reshape(a, shape[0] if len(shape) == 1 else shape)
    N.transpose = lambda a, *axes: transpose(a, (axes[0] if len(axes) == 1 else axes) or None)
    N.sum = lambda a, axis=None, keepdims=False: sum(a, axis, keepdims)
    N.mean = lambda a, axis=None, keepdims=False: mean(a, axis, keepdims)
    N.max = lambda a, axis=None, keepdims=False: max(a, axis, keepdims)


_attach_operators()
del _D
