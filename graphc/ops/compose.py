"""Composites the ONNX importer needs (issue 14): ``reciprocal``, ``clip``,
the logical ops and ``expand``. None is a primitive: each is built from the
elementwise and movement ops, so gradients, fusion and compilation come from
those."""
from __future__ import annotations

from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from .common import as_node, broadcast_shapes
from .elementwise import (
    bitwise_and,
    bitwise_or,
    bitwise_xor,
    div,
    invert,
    maximum,
    minimum,
    promote,
)
from .movement import broadcast_to


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
