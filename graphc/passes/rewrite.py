"""The rewrite driver shared by graph passes: rebuild a graph node by node
(inputs first), letting a function replace each node. Nodes are immutable,
so a rewrite builds new nodes with ``registry.make`` (hash-consing makes equal
rebuilt nodes one node)."""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops import registry


def rebuild(graph: Graph, replace, ctx=None, rule_name: str = "") -> tuple[Graph, int]:
    """Return (new graph, number of replacements). ``replace(node)`` gets a
    node whose inputs are already rewritten and returns a replacement of the
    same shape and dtype, a ``(replacement, rule name)`` pair, or None."""
    m = {}
    count = 0
    for n in graph.nodes:
        if n.is_leaf:
            cur = n
        else:
            ins = tuple(m[i.id] for i in n.inputs)
            cur = n if all(a is b for a, b in zip(ins, n.inputs)) else \
                registry.make(n.op, ins, n.attrs)
        for _ in range(8):            # a few rules may chain on one node
            r = replace(cur)
            if r is None:
                break
            rule = rule_name
            if isinstance(r, tuple):
                r, rule = r
            if r is cur:
                break
            if r.shape != cur.shape or r.dtype != cur.dtype:
                raise RuntimeError(f"rewrite {rule!r} changed {cur.op}'s type: "
                                   f"{cur.dtype}{list(cur.shape)} -> {r.dtype}{list(r.shape)}")
            if ctx is not None:
                ctx.rewrites.append((n, r, rule))
            count += 1
            cur = r
        m[n.id] = cur
    if ctx is not None and hasattr(ctx, "remap"):
        ctx.remap(m)
        ctx.last_map.update({k: v for k, v in m.items()})
    outs = [m[o.id] for o in graph.outputs]
    ups = [(p, m[v.id]) for p, v in graph.updates]
    return Graph(outs, inputs=graph.placeholders, updates=ups), count
