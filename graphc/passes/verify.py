"""The graph verifier, run between passes: every op node's shape and dtype
agree with its op's rules, every input is in the graph, and the graph still
has the interface (placeholders, output shapes and dtypes, updates) it was
given."""
from __future__ import annotations

from ..errors import GraphcError
from ..ir.graph import Graph
from ..ops import registry


class VerifyError(GraphcError, RuntimeError):
    """A pass produced an ill-formed graph (a bug in that pass)."""


def signature(graph: Graph) -> tuple:
    return (tuple(p.id for p in graph.placeholders),
            tuple((o.shape, o.dtype) for o in graph.outputs),
            tuple((p.id, v.shape, v.dtype) for p, v in graph.updates))


def verify(graph: Graph, expected_signature: tuple | None = None, where: str = "") -> None:
    at = f" after pass {where!r}" if where else ""
    seen = set()
    for n in graph.nodes:
        for i in n.inputs:
            if i.id not in seen:
                raise VerifyError(f"node {n.name} ({n.op}) uses {i.name}, which is not before it"
                                  f" in the graph{at}")
        if not n.is_leaf:
            d = registry.get(n.op)
            shape, dtype = d.infer(n.inputs, n.attrs)
            if tuple(shape) != n.shape or dtype != n.dtype:
                raise VerifyError(f"node {n.name} ({n.op}) has {n.dtype}{list(n.shape)} but its "
                                  f"rule gives {dtype}{list(shape)}{at}")
        seen.add(n.id)
    if expected_signature is not None and signature(graph) != expected_signature:
        raise VerifyError(f"the graph's interface (placeholders, output shapes/dtypes or "
                          f"updates) changed{at}")
