"""All ops. Importing this package registers every primitive and attaches
the Python operators (``+ - * / ** @``, comparisons, indexing) to nodes."""
from __future__ import annotations

from ..ir import dtypes as _D
from ..ir.node import Node
from .common import as_node, constant
from .elementwise import (
    abs,
    add,
    cast,
    div,
    equal,
    exp,
    greater,
    greater_equal,
    less,
    less_equal,
    log,
    maximum,
    minimum,
    mul,
    neg,
    not_equal,
    pow,
    relu,
    sigmoid,
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
from .special import erf, log1p

__all__ = [
    "abs", "add", "cast", "div", "equal", "exp", "greater", "greater_equal", "less",
    "less_equal", "log", "maximum", "minimum", "mul", "neg", "not_equal", "pow", "relu",
    "sigmoid", "sqrt", "stop_gradient", "sub", "tanh", "where", "matmul", "broadcast_to",
    "concatenate", "expand_dims", "getitem", "reshape", "squeeze", "swapaxes", "transpose",
    "unbroadcast", "log_softmax", "logsumexp", "one_hot", "softmax", "softmax_cross_entropy",
    "max", "mean", "min", "sum", "OPS", "OpDef", "get", "make", "register", "constant",
    "as_node", "zeros", "ones", "full",
    "take", "scatter_add", "random_uniform", "erf", "log1p",
]


def full(shape, value, dtype="float64") -> Node:
    """A node of ``shape`` filled with ``value`` (a broadcast 0-d constant)."""
    return broadcast_to(constant(value, dtype), tuple(shape))


def zeros(shape, dtype="float64") -> Node:
    return full(shape, 0, dtype)


def ones(shape, dtype="float64") -> Node:
    return full(shape, 1, dtype)


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
    N.__pow__ = lambda a, b: pow(a, b)
    N.__rpow__ = lambda a, b: pow(b, a)
    N.__matmul__ = lambda a, b: matmul(a, b)
    N.__rmatmul__ = lambda a, b: matmul(b, a)
    N.__neg__ = lambda a: neg(a)
    N.__pos__ = lambda a: a
    N.__abs__ = lambda a: abs(a)
    N.__gt__ = lambda a, b: greater(a, b)
    N.__lt__ = lambda a, b: less(a, b)
    N.__ge__ = lambda a, b: greater_equal(a, b)
    N.__le__ = lambda a, b: less_equal(a, b)
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
