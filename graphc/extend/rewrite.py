"""``RewritePass``: a graph pass written as one node-rewriting function.

Subclass it and implement ``rewrite(node, ctx)`` (return a replacement node of
the same shape and dtype, or None), or build one from a function::

    square = RewritePass("square", "pow(x, 2) -> x * x", rewrite=fn)

The pass rebuilds the graph inputs-first (``passes/rewrite.py``), applying
the rewrite to every op node whose inputs are already rewritten, and repeats
until nothing changes (at most ``max_rounds`` times). Every replacement is
recorded, so ``f.passes[i].diff()`` shows it, and the manager verifies the
result like any other pass's.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..passes.manager import Pass, PassContext
from ..passes.rewrite import rebuild


class RewritePass(Pass):
    """A pass that applies :meth:`rewrite` to every op node, to a fixed point."""

    max_rounds: int = 10

    def __init__(self, name: str | None = None, purpose: str | None = None, rewrite=None,
                 min_level: int | None = None):
        if name is not None:
            self.name = name
        if purpose is not None:
            self.purpose = purpose
        if min_level is not None:
            self.min_level = min_level
        if rewrite is not None:
            if not callable(rewrite):
                raise TypeError(f"RewritePass {self.name!r}: rewrite must be a function "
                                "(node, ctx) -> node or None")
            self._fn = rewrite
        if not self.name:
            raise ValueError("RewritePass: give the pass a name")

    def rewrite(self, node, ctx: PassContext):
        """Return a replacement for ``node`` (same shape and dtype) or None."""
        fn = getattr(self, "_fn", None)
        if fn is None:
            raise NotImplementedError(f"pass {self.name!r}: implement rewrite(node, ctx)")
        return fn(node, ctx)

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        def replace(n):
            if n.is_leaf:
                return None
            return self.rewrite(n, ctx)
        total = 0
        for _ in range(self.max_rounds):
            graph, k = rebuild(graph, replace, ctx, rule_name=self.name)
            total += k
            if k == 0:
                break
        if total:
            ctx.notes.append(f"{total} rewrite(s)")
        return graph
