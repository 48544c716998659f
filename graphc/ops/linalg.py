"""Matrix multiplication: the primitive ``matmul`` on operands of rank >= 2
with numpy's broadcast batch dimensions; the public :func:`matmul` adds
numpy's vector cases by reshaping."""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from .common import broadcast_shapes
from .elementwise import promote
from .registry import OpDef, make, register


def _infer(inputs, attrs):
    a, b = inputs
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError(f"matmul: {a.shape} @ {b.shape}: primitive needs rank >= 2")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: {a.shape} @ {b.shape}: contracted dimensions differ "
                         f"({a.shape[-1]} vs {b.shape[-2]})")
    if a.dtype != b.dtype:
        raise DTypeError(f"matmul: operand dtypes differ ({a.dtype}, {b.dtype})")
    if D.is_bool(a.dtype):
        raise DTypeError("matmul: bool operands are not supported; cast them first")
    try:
        batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"matmul: {a.shape} @ {b.shape}: batch dimensions do not broadcast") from None
    return batch + (a.shape[-2], b.shape[-1]), a.dtype


def _vjp(n, g):
    from .movement import swapaxes
    a, b = n.inputs
    return [matmul(g, swapaxes(b)), matmul(swapaxes(a), g)]


register(OpDef("matmul", "matmul", _infer, np.matmul, _vjp, nin=2))


def matmul(a, b) -> Node:
    """numpy ``matmul`` (the ``@`` operator): batched, with 1-D vector cases."""
    from .movement import reshape
    a, b = promote("matmul", a, b)
    if D.is_bool(a.dtype):
        raise DTypeError("matmul: bool operands are not supported; cast them first")
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: {a.shape} @ {b.shape}: operands must not be scalars")
    va, vb = a.ndim == 1, b.ndim == 1
    if va:
        a = reshape(a, (1,) + a.shape)
    if vb:
        b = reshape(b, b.shape + (1,))
    if a.shape[-1] != b.shape[-2]:
        sa = a.shape[1:] if va else a.shape
        sb = b.shape[:-1] if vb else b.shape
        raise ShapeError(f"matmul: {sa} @ {sb}: contracted dimensions differ "
                         f"({a.shape[-1]} vs {b.shape[-2]})")
    y = make("matmul", (a, b))
    if va and vb:
        return reshape(y, y.shape[:-2])
    if va:
        return reshape(y, y.shape[:-2] + y.shape[-1:])
    if vb:
        return reshape(y, y.shape[:-1])
    return y
