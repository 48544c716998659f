"""The pass manager: named passes in one pipeline, verified and recorded.

A pass is an object with a ``name``, a one-line ``purpose`` and
``run(graph, ctx) -> graph``. Graph passes return a new graph (graphs and
nodes are immutable); planning passes (fusion, memory) return the graph
unchanged and leave their plan in the :class:`PassContext`. The
:class:`Pipeline` runs the passes in order, verifies the graph after each one
(``ir/verify.py``), and keeps a :class:`PassRecord` per pass: time, node
counts, the graph before and after (text and DOT on request) and what the pass
rewrote. Those records are ``f.passes`` on a compiled function.

New passes are registered with :func:`register_pass` (``before=``/``after=``
an existing pass) or named in ``gc.compile(..., passes=[...])``.
"""
from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field

from ..ir.graph import Graph
from ..ir.node import attrs_key
from ..ir.verify import signature, verify


class Pass:
    """Base class of a pass. Subclasses set ``name`` and ``purpose`` and
    implement :meth:`run`. ``min_level`` is the lowest ``opt_level`` at which
    the default pipeline runs the pass."""

    name: str = ""
    purpose: str = ""
    min_level: int = 1

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        raise NotImplementedError

    def __repr__(self):
        return f"<pass {self.name}: {self.purpose}>"


@dataclass
class PassContext:
    """State shared by the passes of one compilation."""
    opt_level: int = 3
    fast_math: bool = False
    kernels: list | None = None          # set by the fusion pass
    memory: object | None = None         # set by the memory pass
    fusion_reasons: dict = field(default_factory=dict)   # (producer id, consumer id) -> why not fused
    rewrites: list = field(default_factory=list)         # (old node, new node, rule) of the current pass
    notes: list = field(default_factory=list)            # lines the current pass wants in its record
    node_map: dict = field(default_factory=dict)         # original node id -> its node now
    direct_updates: dict = field(default_factory=dict)   # new value id -> parameter it is written to
    last_map: dict = field(default_factory=dict)         # node id -> its image, in the current pass

    def remap(self, m: dict) -> None:
        """Record that a pass replaced node id k by node m[k]."""
        for k, n in list(self.node_map.items()):
            r = m.get(n.id)
            if r is not None and r is not n:
                self.node_map[k] = r


class PassRecord:
    """What one pass did. ``text_before``/``text_after`` and ``dot()`` are
    computed on request from the (immutable) graphs the record keeps."""

    def __init__(self, name, purpose, seconds, before: Graph, after: Graph, rewrites, notes,
                 kernels=None):
        self.name = name
        self.purpose = purpose
        self.seconds = seconds
        self.nodes_before = len(before)
        self.nodes_after = len(after)
        self.graph_before = before
        self.graph_after = after
        self.rewrites = list(rewrites)
        self.notes = list(notes)
        self.kernels = kernels
        self.image = {}          # node id before -> node after (for graph passes)
        self._text = {}

    @property
    def text_before(self) -> str:
        if "b" not in self._text:
            self._text["b"] = self.graph_before.text()
        return self._text["b"]

    @property
    def text_after(self) -> str:
        if "a" not in self._text:
            self._text["a"] = self.graph_after.text()
        return self._text["a"]

    def dot(self) -> str:
        """DOT text of the graph after this pass; kernels (if planned by now)
        are drawn as clusters."""
        clusters = None
        if self.kernels:
            clusters = {f"kernel {i}: {k.name}": set(k.members) | {o.id for o in k.outputs}
                        for i, k in enumerate(self.kernels)}
        return self.graph_after.to_dot(clusters)

    def diff(self) -> str:
        """What this pass added, removed and rewrote (node numbers are those
        of the graph before for removed nodes, after for added ones)."""
        before, after = self.graph_before, self.graph_after
        nb, na = before.numbering(), after.numbering()
        lines_b = dict(zip((n.id for n in before.nodes), self.text_before.splitlines()[1:]))
        lines_a = dict(zip((n.id for n in after.nodes), self.text_after.splitlines()[1:]))
        out = [f"pass {self.name}: {self.nodes_before} -> {self.nodes_after} nodes "
               f"({1e3 * self.seconds:.2f} ms)"]
        for old, new, rule in self.rewrites:
            o = f"%{nb[old.id]}" if old.id in nb else old.name
            n = f"%{na[new.id]}" if new.id in na else new.name
            out.append(f"  rewrote {o} ({old.op}) -> {n} ({new.op})   [{rule}]")
        # a node rebuilt only because its inputs changed is the same node, not a change
        rewritten = {old.id for old, _, _ in self.rewrites}
        same = {}
        for n in before.nodes:
            img = self.image.get(n.id)
            if img is not None and img.id in na and n.id not in rewritten and img.op == n.op \
                    and attrs_key(img.attrs) == attrs_key(n.attrs):
                same[n.id] = img.id
        images = set(same.values())
        removed = [lines_b[n.id].strip() for n in before.nodes
                   if n.id not in na and n.id not in same]
        added = [lines_a[n.id].strip() for n in after.nodes
                 if n.id not in nb and n.id not in images]
        out += [f"  - {t}" for t in removed]
        out += [f"  + {t}" for t in added]
        out += [f"  note: {t}" for t in self.notes]
        if len(out) == 1:
            out.append("  (no change)")
        return "\n".join(out)

    def unified_diff(self) -> str:
        """A unified diff of the graph text before and after."""
        return "".join(difflib.unified_diff(self.text_before.splitlines(True),
                                            self.text_after.splitlines(True),
                                            f"before {self.name}", f"after {self.name}"))

    def __repr__(self):
        return (f"<PassRecord {self.name}: {self.nodes_before}->{self.nodes_after} nodes, "
                f"{1e3 * self.seconds:.2f} ms>")


# -- the registry ------------------------------------------------------------------

PASSES: dict[str, Pass] = {}
DEFAULT_ORDER: list[str] = []
PLANNING = ("fusion", "memory")


def register_pass(p: Pass, *, before: str | None = None, after: str | None = None,
                  default: bool = True) -> Pass:
    """Make pass ``p`` known by its name; with ``default=True`` it also joins
    the default pipeline (at the end of the graph passes, or ``before``/
    ``after`` the named pass)."""
    if not isinstance(p, Pass):
        raise TypeError(f"register_pass: expected a Pass instance, got {type(p).__name__}")
    if not p.name:
        raise ValueError("register_pass: the pass has no name")
    if before is not None and after is not None:
        raise ValueError("register_pass: give before= or after=, not both")
    PASSES[p.name] = p
    if p.name in DEFAULT_ORDER:
        DEFAULT_ORDER.remove(p.name)
    if not default:
        return p
    anchor = before or after
    if anchor is not None:
        if anchor not in DEFAULT_ORDER:
            raise ValueError(f"register_pass: no pass named {anchor!r} in the pipeline "
                             f"({', '.join(DEFAULT_ORDER)})")
        k = DEFAULT_ORDER.index(anchor) + (1 if after else 0)
        DEFAULT_ORDER.insert(k, p.name)
    elif p.name not in PLANNING and any(n in PLANNING for n in DEFAULT_ORDER):
        first = min(DEFAULT_ORDER.index(n) for n in PLANNING if n in DEFAULT_ORDER)
        DEFAULT_ORDER.insert(first, p.name)      # graph passes run before planning
    else:
        DEFAULT_ORDER.append(p.name)
    return p


def resolve(spec) -> Pass:
    if isinstance(spec, Pass):
        return spec
    if isinstance(spec, str):
        if spec not in PASSES:
            raise ValueError(f"unknown pass {spec!r} (known: {', '.join(sorted(PASSES))})")
        return PASSES[spec]
    raise TypeError(f"a pass is a name or a Pass instance, got {type(spec).__name__}")


def default_pipeline(opt_level: int) -> Pipeline:
    names = [n for n in DEFAULT_ORDER if n in PLANNING or PASSES[n].min_level <= opt_level]
    return Pipeline(names)


class Pipeline:
    """An ordered list of passes. Planning passes (``fusion``, ``memory``) are
    appended when missing, since the backend needs a plan."""

    def __init__(self, passes):
        ps = [resolve(p) for p in passes]
        names = [p.name for p in ps]
        for req in PLANNING:
            if req not in names:
                ps.append(PASSES[req])
        self.passes = ps

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.passes]

    def run(self, graph: Graph, ctx: PassContext, verify_each: bool = True):
        records = []
        sig = signature(graph)
        if not ctx.node_map:
            ctx.node_map = {n.id: n for n in graph.nodes}
        for p in self.passes:
            ctx.rewrites, ctx.notes, ctx.last_map = [], [], {}
            t = time.perf_counter()
            out = p.run(graph, ctx)
            dt = time.perf_counter() - t
            if not isinstance(out, Graph):
                raise TypeError(f"pass {p.name!r} returned {type(out).__name__}, not a Graph")
            if verify_each and out is not graph:
                verify(out, sig, p.name)
            rec = PassRecord(p.name, p.purpose, dt, graph, out, ctx.rewrites, ctx.notes,
                             ctx.kernels)
            rec.image = dict(ctx.last_map)
            records.append(rec)
            graph = out
        return graph, records
