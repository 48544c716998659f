"""Reverse-mode differentiation as a graph-to-graph transform.

``grad(y, xs)`` walks the graph from ``y`` back to ``xs`` in reverse
topological order, calls each op's VJP rule (which builds ordinary graph
nodes) and accumulates cotangents. Un-broadcasting — summing a cotangent back
to its input's shape — happens here, in one place, so VJP rules may return
cotangents of the output's (broadcast) shape. The result is a graph like any
other: it is simplified, fused and compiled with the forward pass, and
``grad`` applies to it again.
"""
from __future__ import annotations

import numpy as np

from .errors import DTypeError, ShapeError
from .ir import dtypes as D
from .ir.graph import topo_order
from .ir.node import Node
from .ops import registry
from .ops.common import constant
from .ops.elementwise import add, cast
from .ops.movement import broadcast_to, unbroadcast


def zeros_like(x: Node) -> Node:
    return broadcast_to(constant(0, x.dtype), x.shape)


def grad(y: Node, xs) -> list[Node]:
    """Gradients of the scalar ``y`` with respect to each node in ``xs``.

    Returns one node per ``x`` (zeros where ``y`` does not depend on ``x``).
    """
    if not isinstance(y, Node):
        raise TypeError(f"grad: y must be a graph node, got {type(y).__name__}")
    if isinstance(xs, Node):
        raise TypeError("grad: xs must be a list of nodes (use grad(y, [x]))")
    if not isinstance(xs, (list, tuple)):
        raise TypeError(f"grad: xs must be a list of nodes, got {type(xs).__name__}")
    xs = list(xs)
    for x in xs:
        if not isinstance(x, Node):
            raise TypeError(f"grad: xs must hold graph nodes, got {type(x).__name__}")
        if not D.is_float(x.dtype):
            raise DTypeError(f"grad: cannot differentiate with respect to {x.name!r} of "
                             f"dtype {x.dtype}; only floating nodes have gradients")
    if y.shape != ():
        raise ShapeError(f"grad: y must be a scalar (shape ()), got shape {y.shape}; "
                         "reduce it first (e.g. gc.sum or gc.mean)")
    if not D.is_float(y.dtype):
        raise DTypeError(f"grad: y must be floating, got {y.dtype}")

    order = topo_order([y])
    # nodes that depend on some x (only their cotangents are needed)
    x_ids = {x.id for x in xs}
    live = set()
    for n in order:
        if n.id in x_ids or any(i.id in live for i in n.inputs):
            live.add(n.id)

    cts: dict[int, Node] = {y.id: constant(1, y.dtype)}
    for n in reversed(order):
        g = cts.get(n.id)
        if g is None or n.is_leaf or n.id not in live:
            continue
        if g.shape != n.shape:
            g = broadcast_to(g, n.shape)
        rule = registry.get(n.op).vjp
        in_cts = rule(n, g)
        if len(in_cts) != len(n.inputs):
            raise RuntimeError(f"VJP rule of {n.op!r} returned {len(in_cts)} cotangents "
                               f"for {len(n.inputs)} inputs")
        for inp, ct in zip(n.inputs, in_cts):
            if ct is None or inp.id not in live or not D.is_float(inp.dtype):
                continue
            if ct.shape != inp.shape:
                full = tuple(np.broadcast_shapes(ct.shape, inp.shape))
                ct = unbroadcast(broadcast_to(ct, full), inp.shape)
            if ct.dtype != inp.dtype:
                ct = cast(ct, inp.dtype)
            prev = cts.get(inp.id)
            cts[inp.id] = ct if prev is None else add(prev, ct)
    out = []
    for x in xs:
        g = cts.get(x.id)
        if g is None:
            g = zeros_like(x)
        elif g.shape != x.shape:
            g = broadcast_to(g, x.shape)
        out.append(g)
    return out
