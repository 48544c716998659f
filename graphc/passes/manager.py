"""The pass manager: named passes in one pipeline, verified and recorded.

A pass is an object with a ``name``, a one-line ``purpose`` and
``run(graph, ctx) -> graph``. Graph passes return a new graph (graphs and
nodes are immutable); planning passes (fusion, memory) return the graph
unchanged and leave their plan in the :class:`PassContext`. The
:class:`Pipeline` runs the passes in order, verifies the graph after each one
(``passes/verify.py``), and keeps a :class:`PassRecord` per pass: time, node
counts, the graph before and after (text and DOT on request) and what the pass
rewrote. Those records are ``f.passes`` on a compiled function.

New passes are registered with :func:`register_pass` (``before=``/``after=``
an existing pass) or named in ``gc.compile(..., passes=[...])``.
"""
from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field

from ..errors import GraphcError
from ..ir.graph import Graph
from ..ir.node import attrs_key
from .verify import signature, verify


class PipelineError(GraphcError, ValueError):
    """A pass list that cannot run: an unknown pass, or passes in an order
    that breaks what they declare (``requires``, ``plans``)."""


class Pass:
    """Base class of a pass. Subclasses set ``name`` and ``purpose`` and
    implement :meth:`run`. ``min_level`` is the lowest ``opt_level`` at which
    the default pipeline runs the pass.

    What a pass needs of its place in a pipeline is declared as data, and
    checked before any pass runs (:func:`check_order`):

    - ``requires``: names of passes that must run before it;
    - ``plans``: it leaves a plan of the graph in the context (fusion's
      kernels, memory's buffers), so no pass that changes the graph may run
      after it, and it is listed once;
    - ``changes_graph``: it may return a graph other than its input (the
      default). Set it False for a pass that only inspects the graph; such a
      pass may run after the planning passes.
    """

    name: str = ""
    purpose: str = ""
    min_level: int = 1
    requires: tuple = ()
    plans: bool = False
    changes_graph: bool = True

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
    order = [n for n in DEFAULT_ORDER if n != p.name]
    if default:
        anchor = before or after
        if anchor is not None:
            if anchor not in order:
                raise ValueError(f"register_pass: no pass named {anchor!r} in the pipeline "
                                 f"({', '.join(order)})")
            order.insert(order.index(anchor) + (1 if after else 0), p.name)
        elif p.name not in PLANNING and any(n in PLANNING for n in order):
            first = min(order.index(n) for n in PLANNING if n in order)
            order.insert(first, p.name)          # graph passes run before planning
        else:
            order.append(p.name)
        known = dict(PASSES, **{p.name: p})
        try:
            check_order([known[n] for n in order])
        except PipelineError as e:
            raise PipelineError(f"register_pass: {e}") from None
    PASSES[p.name] = p
    DEFAULT_ORDER[:] = order
    return p


def resolve(spec) -> Pass:
    if isinstance(spec, Pass):
        if not isinstance(spec.name, str) or not spec.name:
            raise PipelineError(f"pass object {type(spec).__name__} has no name (set its "
                                "class attribute name = '...')")
        return spec
    if isinstance(spec, str):
        if spec not in PASSES:
            raise PipelineError(f"unknown pass {spec!r} (known: {', '.join(sorted(PASSES))})")
        return PASSES[spec]
    if isinstance(spec, type) and issubclass(spec, Pass):
        raise TypeError(f"a pass is a name or a Pass instance, got the class {spec.__name__} "
                        f"(write {spec.__name__}())")
    raise TypeError(f"a pass is a name or a Pass instance, got {type(spec).__name__}")


def pass_list(passes) -> list:
    """``passes`` as given to ``compile(passes=...)``: a list or tuple of pass
    names and Pass objects (a lone string would be read letter by letter)."""
    if isinstance(passes, (list, tuple)):
        return list(passes)
    if isinstance(passes, str):
        raise TypeError(f"compile: passes must be a list of pass names, got the string "
                        f"{passes!r} (write passes=[{passes!r}])")
    if isinstance(passes, Pass):
        raise TypeError(f"compile: passes must be a list of pass names or Pass objects, got "
                        f"one Pass object (write passes=[{type(passes).__name__}(...)])")
    raise TypeError(f"compile: passes must be a list of pass names or Pass objects, got "
                    f"{type(passes).__name__}")


def check_order(passes: list) -> None:
    """Raise PipelineError if ``passes`` (Pass objects, in order) break what
    they declare: a required pass missing or later, a graph-changing pass
    after a planning pass, a planning pass listed twice."""
    seen: list = []
    planned_by = None
    for p in passes:
        if p.plans and p.name in seen:
            raise PipelineError(f"pass {p.name!r} is listed twice: a planning pass runs once "
                                f"(pipeline: {', '.join(q.name for q in passes)})")
        for r in p.requires:
            if r not in seen:
                where = "later" if any(q.name == r for q in passes) else "not at all"
                raise PipelineError(f"pass {p.name!r} requires pass {r!r} to run before it, "
                                    f"but {r!r} runs {where} (pipeline: "
                                    f"{', '.join(q.name for q in passes)})")
        if p.changes_graph and planned_by is not None:
            raise PipelineError(f"pass {p.name!r} changes the graph, so it must come before "
                                f"the planning pass {planned_by!r} (a graph change after it "
                                f"invalidates its plan; pipeline: "
                                f"{', '.join(q.name for q in passes)})")
        if p.plans and planned_by is None:
            planned_by = p.name
        seen.append(p.name)


def default_pipeline(opt_level: int) -> Pipeline:
    names = [n for n in DEFAULT_ORDER if n in PLANNING or PASSES[n].min_level <= opt_level]
    return Pipeline(names)


class Pipeline:
    """An ordered list of passes. Planning passes (``fusion``, ``memory``) are
    added when missing, since the backend needs a plan (at the end, or before
    the first pass that requires them); the order is then checked
    (:func:`check_order`)."""

    def __init__(self, passes):
        ps = [resolve(p) for p in pass_list(passes)]
        for req in PLANNING:              # a missing one goes before the first that needs it
            if req not in [p.name for p in ps]:
                k = next((i for i, p in enumerate(ps) if req in p.requires), len(ps))
                ps.insert(k, PASSES[req])
        check_order(ps)
        self.passes = ps

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.passes]

    def run(self, graph: Graph, ctx: PassContext, verify_each: bool = True):
        records = []
        sig = signature(graph)
        if not ctx.node_map:
            ctx.node_map = {n.id: n for n in graph.nodes}
        planned_by = None
        for p in self.passes:
            ctx.rewrites, ctx.notes, ctx.last_map = [], [], {}
            t = time.perf_counter()
            out = p.run(graph, ctx)
            dt = time.perf_counter() - t
            if not isinstance(out, Graph):
                raise TypeError(f"pass {p.name!r} returned {type(out).__name__}, not a Graph")
            if planned_by is not None and out is not graph:
                raise PipelineError(f"pass {p.name!r} changed the graph after the planning "
                                    f"pass {planned_by!r}, invalidating its plan (it declares "
                                    "changes_graph = False): run it before the planning passes")
            if p.plans and planned_by is None:
                planned_by = p.name
            if verify_each and out is not graph:
                verify(out, sig, p.name)
            rec = PassRecord(p.name, p.purpose, dt, graph, out, ctx.rewrites, ctx.notes,
                             ctx.kernels)
            rec.image = dict(ctx.last_map)
            records.append(rec)
            graph = out
        return graph, records
