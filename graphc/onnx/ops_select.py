"""Converters of ONNX's selection ops: TopK (graphc's ``topk``, by rank)."""
from __future__ import annotations

from .. import ops as O
from .convert import axis_of, op


@op("TopK")
def _topk(ctx, n):
    x = ctx.x(n, 0)
    if n.opset < 10:
        k = n.attr("k")
        if k is None:
            raise n.error("attribute k is missing")
    else:
        kv = ctx.const(n, 1, "k")
        if kv.size != 1:
            raise n.error(f"K must hold one value, got shape {kv.shape}")
        k = int(kv.reshape(()))
    if x.ndim == 0:
        raise n.error("the input is 0-d; TopK needs an axis")
    axis = axis_of(n, int(n.attr("axis", -1)), x.ndim)
    if not 0 <= k <= x.shape[axis]:
        raise n.error(f"K = {k} is outside [0, {x.shape[axis]}] (axis {axis} of {x.shape})")
    # sorted=0 allows any order: the sorted one is returned
    return list(O.topk(x, k, axis, largest=bool(n.attr("largest", 1))))
