"""A graph: the nodes reachable from a list of outputs, in topological order,
with a stable text form (jaxpr-like), a DOT form and a networkx view."""
from __future__ import annotations

from . import dtypes as D
from .node import Node


def topo_order(outputs) -> list[Node]:
    """Every node the outputs depend on, inputs before users (iterative DFS,
    so deep graphs do not hit Python's recursion limit)."""
    order, seen = [], set()
    for root in outputs:
        if root.id in seen:
            continue
        stack = [(root, 0)]
        while stack:
            n, i = stack.pop()
            if i == 0 and n.id in seen:
                continue
            if i < len(n.inputs):
                stack.append((n, i + 1))
                c = n.inputs[i]
                if c.id not in seen:
                    stack.append((c, 0))
            else:
                if n.id not in seen:
                    seen.add(n.id)
                    order.append(n)
    return order


def type_str(n: Node) -> str:
    return f"{D.SHORT.get(n.dtype, str(n.dtype))}[{','.join(str(s) for s in n.shape)}]"


def _attr_str(v) -> str:
    if hasattr(v, "kind") and hasattr(v, "itemsize"):       # a dtype
        return D.SHORT.get(v, str(v))
    return repr(v)


class Graph:
    """The nodes reachable from ``outputs``. Immutable: passes build new graphs."""

    def __init__(self, outputs, inputs=None, updates=()):
        self.outputs = tuple(outputs)
        self.updates = tuple(updates)        # (parameter, new value) pairs
        self.nodes = topo_order(self.outputs + tuple(v for _, v in self.updates))
        found = [n for n in self.nodes if n.op == "placeholder"]
        if inputs is not None:
            self.placeholders = tuple(inputs)
        else:
            self.placeholders = tuple(found)
        params = [n for n in self.nodes if n.op == "parameter"]
        ids = {n.id for n in params}
        params += [p for p, _ in self.updates if p.id not in ids]   # written, maybe not read
        self.parameters = tuple(params)
        self.constants = tuple(n for n in self.nodes if n.op == "constant")

    def __len__(self):
        return len(self.nodes)

    def users(self) -> dict:
        """node id -> list of nodes that use it (once per use)."""
        u = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                u[i.id].append(n)
        return u

    def op_nodes(self) -> list[Node]:
        return [n for n in self.nodes if not n.is_leaf]

    # -- text -----------------------------------------------------------------
    def numbering(self) -> dict:
        return {n.id: k for k, n in enumerate(self.nodes)}

    def text(self) -> str:
        """Stable text form: nodes numbered in topological order."""
        num = self.numbering()
        lines = []
        for n in self.nodes:
            lhs = f"%{num[n.id]}:{type_str(n)}"
            if n.op == "placeholder":
                lines.append(f"  {lhs} = placeholder {n.name!r}")
            elif n.op == "parameter":
                lines.append(f"  {lhs} = parameter {n.name!r}")
            elif n.op == "constant":
                v = n.value
                shown = repr(v.item()) if v.size == 1 else f"<{v.size} values>"
                lines.append(f"  {lhs} = constant {shown}")
            else:
                args = ", ".join(f"%{num[i.id]}" for i in n.inputs)
                attrs = ""
                if n.attrs:
                    attrs = " {" + ", ".join(f"{k}={_attr_str(v)}"
                                             for k, v in sorted(n.attrs.items())) + "}"
                lines.append(f"  {lhs} = {n.op} {args}{attrs}")
        outs = ", ".join(f"%{num[o.id]}" for o in self.outputs)
        for p, v in self.updates:
            lines.append(f"  update {p.name!r} <- %{num[v.id]}")
        return "{\n" + "\n".join(lines) + f"\n  return {outs}\n}}"

    __str__ = text

    def to_networkx(self):
        """A ``networkx.DiGraph``: one vertex per node (attributes op, shape,
        dtype, name), one edge per input use (attribute ``index``)."""
        import networkx as nx
        g = nx.MultiDiGraph()
        num = self.numbering()
        for n in self.nodes:
            g.add_node(num[n.id], op=n.op, shape=n.shape, dtype=str(n.dtype), name=n.name)
            for k, i in enumerate(n.inputs):
                g.add_edge(num[i.id], num[n.id], index=k)
        return g

    def to_dot(self, clusters: dict | None = None) -> str:
        """Graphviz DOT text. ``clusters`` maps a cluster label to node ids
        drawn together (the fusion report uses it for kernels)."""
        num = self.numbering()
        out = ["digraph graphc {", "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']

        def label(n):
            extra = f"\\n{n.name}" if n.is_leaf else ""
            return f'"%{num[n.id]} {n.op}{extra}\\n{type_str(n)}"'
        clustered = set()
        for ci, (name, ids) in enumerate((clusters or {}).items()):
            out.append(f"  subgraph cluster_{ci} {{")
            out.append(f'    label="{name}"; style=rounded; color=blue;')
            for n in self.nodes:
                if n.id in ids:
                    out.append(f"    n{num[n.id]} [label={label(n)}];")
                    clustered.add(n.id)
            out.append("  }")
        for n in self.nodes:
            if n.id not in clustered:
                shape = ", shape=ellipse" if n.is_leaf else ""
                out.append(f"  n{num[n.id]} [label={label(n)}{shape}];")
        for n in self.nodes:
            for i in n.inputs:
                out.append(f"  n{num[i.id]} -> n{num[n.id]};")
        out.append("}")
        return "\n".join(out)
