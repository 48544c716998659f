"""Fusion: group the graph's nodes into kernels (loop nests and GEMMs).

The plan is built in three steps.

1. **Stored or inlined.** Reductions, matmuls, opaque (custom-kernel) ops,
   graph outputs and update values are *stored*: they get a buffer. Every
   other (elementwise or movement) node is *inlined*: computed, element by
   element, inside each kernel that needs it — unless that would recompute
   something costly in several kernels, or across a broadcast, in which case
   it is stored too.
2. **One kernel per stored node**, holding the inlined nodes it needs. A
   reduction's inlined producers are its prologue.
3. **Merging**, each merge only if it keeps the kernel graph acyclic:
   - *row fusion*: a reduction over the trailing axes of a domain ``D`` joins a
     kernel over ``D`` that uses it; the kernel then loops over the leading
     axes and, per row, computes its reductions before storing the row
     (softmax is one kernel);
   - *epilogue*: a loop kernel over a matmul's shape that reads the product
     joins the GEMM's kernel (bias-add, activation, and the activation's
     derivative mask for the backward pass);
   - *vertical / horizontal*: loop kernels over the same domain that depend on
     each other or share an input become one kernel with several outputs;
   - *accumulation*: a reduction of a value a kernel computes joins that
     kernel and accumulates while it runs (a bias gradient summed over the
     batch, a loss summed over rows).

Every producer/consumer pair left in different kernels gets a reason, which
``f.why_not_fused(a, b)`` reports.
"""
from __future__ import annotations

import numpy as np

from ..backend.plan import Kernel, plan_unfused
from ..ir.graph import Graph
from ..ir.node import Node
from ..ops import registry
from ..ops.index import row_table_view, strided_view
from ..ops.registry import OpKind
from .fusion_graph import KernelGraph, _Group
from .fusion_merge import Merging
from .fusion_order import Ordering
from .manager import Pass, PassContext, register_pass

RECOMPUTE_BUDGET = 2
REREAD_FACTOR = 2      # a costly inlined value evaluated more than this x its size is stored
# A value computed inline on top of a chain of this many inlined nodes is
# stored instead, and no merge makes a kernel of more members than
# MAX_KERNEL_MEMBERS: the emitter's work per element, the size of one LLVM
# function (whose optimization time grows faster than its size) and the
# nesting of index rules in one kernel stay bounded however long the graph.
MAX_INLINE_DEPTH = 64
MAX_KERNEL_MEMBERS = 256


# How fusion treats each kind of op: inlined into its users' loops ("ew"), a
# reduction, a GEMM, or opaque ("custom": a kernel of its own).
_ROLE = {OpKind.ELEMENTWISE: "ew", OpKind.INDEX: "ew", OpKind.REDUCE: "reduce",
         OpKind.MATMUL: "matmul", OpKind.KERNEL: "custom"}


def _kind(n: Node) -> str:
    if n.is_leaf:
        return "leaf"
    return _ROLE[registry.get(n.op).kind]


def _cost(n: Node) -> int:
    """The cost of recomputing one element of n (its OpDef's ``cost``)."""
    return registry.get(n.op).cost


def _trailing_broadcast(small: tuple, domain: tuple) -> bool:
    """Is ``small``, broadcast into ``domain``, constant only along trailing
    axes? Then a loop nest computes it once per outer iteration (LLVM hoists
    it out of the inner loops), so inlining it costs nothing extra."""
    full = (1,) * (len(domain) - len(small)) + tuple(small)
    seen = False
    for s, d in zip(full, domain):
        if s == 1 and d != 1:
            seen = True
        elif seen and d != 1:
            return False
    return True


class Fuser(Merging, Ordering, KernelGraph):
    """One run of the pass over a graph. Steps 1, 2 and the costs are here;
    the kernel graph and its indexes are in ``fusion_graph.py``, the merges in
    ``fusion_merge.py``, the kernels, their order and the direct updates in
    ``fusion_order.py``."""

    def __init__(self, graph: Graph, ctx: PassContext):
        self.g = graph
        self.ctx = ctx
        self.kind = {n.id: _kind(n) for n in graph.nodes}
        self.max_members = MAX_KERNEL_MEMBERS
        self.nodes = graph.op_nodes()
        self.pos = {n.id: i for i, n in enumerate(graph.nodes)}
        self.nodes_at = graph.nodes        # position -> node
        self.inputs_of = {n.id: tuple(i.id for i in n.inputs) for n in graph.nodes}
        self.sizes = {n.id: n.size for n in graph.nodes}
        self.by_id = {n.id: n for n in graph.nodes}
        self.users = graph.users()
        self.required = {o.id for o in graph.outputs if not o.is_leaf}
        self.required |= {v.id for _, v in graph.updates if not v.is_leaf}
        self.reasons = ctx.fusion_reasons
        self.forced = set()     # stored because recomputing them would cost too much

    # -- step 1 -------------------------------------------------------------------
    def _gemm_view(self, n: Node, stored: set) -> bool:
        """A chain of view ops (transposes, broadcasts, slices, reshapes of
        contiguous axes) of a stored value or a leaf that is a strided view of
        its buffer (``ops.index.strided_view``, the test the GEMM plan makes):
        the GEMM reads it through an offset and strides, nothing is
        materialized."""
        inside = lambda m: not m.is_leaf and m.id not in stored     # noqa: E731
        return (strided_view(n, inside, lambda m: True) is not None or
                row_table_view(n, inside, lambda m: True) is not None)

    def _gemm_base(self, n: Node, stored: set):
        """The node under ``n``'s chain of view ops whose storing makes ``n``
        a view the GEMM reads in place, deepest first (the non-view node the
        chain starts from, or a view op whose output is a transpose the
        chain's reshape cannot follow), or None: then ``n`` itself is
        stored. A convolution's padded input, not its 9x larger im2col."""
        chain, m = [], n
        while not m.is_leaf and m.id not in stored and len(m.inputs) == 1:
            chain.append(m)
            if not registry.get(m.op).view:
                break
            m = m.inputs[0]
        for c in reversed(chain[1:]):
            if self._gemm_view(n, stored | {c.id}):
                return c
        return None

    def initial_stored(self) -> set:
        stored = set(self.required)
        for n in self.nodes:
            k = self.kind[n.id]
            if k in ("reduce", "matmul", "custom"):
                stored.add(n.id)
        for n in self.nodes:      # inputs first: a view needs to know its input is stored
            if self.kind[n.id] != "ew" or n.id in stored:
                continue
            for u in self.users[n.id]:
                uk = self.kind[u.id]
                if uk == "custom":
                    stored.add(n.id)
                    self.reasons[(n.id, u.id)] = (f"{u.op} is an opaque op with its own kernel; "
                                                  "it reads its inputs from memory")
                elif uk == "matmul" and not self._gemm_view(n, stored):
                    base = self._gemm_base(n, stored)
                    stored.add(n.id if base is None else base.id)
                    self.reasons[(n.id if base is None else base.id, u.id)] = (
                        "a matmul reads its operands from memory (only a strided view of a "
                        "stored value is read in place)")
        depth = {}                # longest chain of inlined nodes ending at each node
        for n in self.nodes:
            if self.kind[n.id] != "ew" or n.id in stored:
                continue
            d = 1 + max((depth.get(i.id, 0) for i in n.inputs), default=0)
            if d >= MAX_INLINE_DEPTH:
                stored.add(n.id)
                self.forced.add(n.id)
                for u in self.users[n.id]:
                    self.reasons[(n.id, u.id)] = (
                        f"{n.op} ends a chain of {MAX_INLINE_DEPTH} inlined nodes; it is stored "
                        "so that no kernel grows without bound")
            else:
                depth[n.id] = d
        return stored

    def tree(self, root: Node, stored) -> set:
        """Ids of root and the inlined nodes it needs (``stored``: a set or a
        dict of the stored ids)."""
        return self._walk_tree(root.id, stored)[0]

    def _walk_tree(self, root: int, stored):
        """(members, reads, leaf reads) of the kernel that stores ``root``:
        root and the inlined nodes it needs, the ids of the stored values they
        read and those of the leaves they read. (An input of a matmul or an
        opaque op is inlined too when it is a GEMM view.)"""
        kind, inputs_of = self.kind, self.inputs_of
        out, stack, reads, leaves = {root}, [root], set(), set()
        while stack:
            for i in inputs_of[stack.pop()]:
                if i in out:
                    continue
                k = kind[i]
                if k == "ew" and i not in stored:
                    out.add(i)
                    stack.append(i)
                elif k == "leaf":
                    leaves.add(i)
                else:
                    reads.add(i)
        return out, reads, leaves

    # -- step 2 -------------------------------------------------------------------
    def build_groups(self, stored: set):
        self.groups = []
        self.group_of = {}
        for n in self.nodes:
            if n.id not in stored:
                continue
            k = self.kind[n.id]
            g = _Group(len(self.groups), n.shape)
            g.roots.append(n)
            g.members, g.reads, g.leaf_reads = self._walk_tree(n.id, stored)
            if k == "matmul":
                g.matmul = n
            elif k == "custom":
                g.custom = n
            self.groups.append(g)
            self.group_of[n.id] = g
        self.index_groups()
        self._row_memo = {}

    # -- costs --------------------------------------------------------------------
    def duplicated(self, stored: set) -> set:
        """Inlined nodes that would be recomputed too often: costly ones needed
        by several kernels, or broadcast across an outer loop."""
        where = {}
        for g in self.alive():
            for mid in g.members:
                if mid not in stored:
                    where.setdefault(mid, []).append(g)
        more, bcast = set(), {}
        domains, evals = {}, {}
        for nid, gs in where.items():
            n = self.by_id[nid]
            cost = self._tree_cost(n, stored, limit=RECOMPUTE_BUDGET)
            if len(gs) > 1 and cost > RECOMPUTE_BUDGET:
                more.add(nid)
                for u in self.users[nid]:
                    self.reasons[(nid, u.id)] = (
                        f"{n.op} is needed by {len(gs)} kernels and costs too much to recompute "
                        f"in each (cost > {RECOMPUTE_BUDGET}), so it is stored")
                continue
            if cost <= RECOMPUTE_BUDGET:
                continue
            for g in gs:
                if g.gid not in domains:
                    domains[g.gid] = self._iteration_domain(g)
                dom = domains[g.gid]
                size = int(np.prod(dom)) if dom else 1
                if g.gid not in evals:
                    evals[g.gid] = self._evaluations(g, stored)
                reads = evals[g.gid].get(nid, 1)
                if (n.size * 4 <= size and not _trailing_broadcast(n.shape, dom)) or \
                        (reads > 1 and reads * size > REREAD_FACTOR * n.size):
                    bcast[nid] = dom
        # of a chain broadcast into one kernel, only its last node is stored
        # this round: the rest are then computed in that node's kernel, over
        # its own domain (a max pool's where-chain read by the next
        # convolution's im2col was 9 one-op kernels, one per node)
        for nid, dom in bcast.items():
            if any(u.id in bcast for u in self.users[nid]):
                continue
            n = self.by_id[nid]
            more.add(nid)
            for u in self.users[nid]:
                self.reasons[(nid, u.id)] = (
                    f"{n.op} has shape {n.shape}, which is broadcast across the loop "
                    f"domain {dom} of its consumer's kernel; recomputing it for every "
                    "element would cost more than storing it")
        return more

    def _evaluations(self, g: _Group, stored: set) -> dict:
        """How many times each inlined member of ``g`` is evaluated per element
        of the kernel's domain, estimated from the member graph, consumers
        first: elementwise consumers read a value at their own index (shared:
        the emitter computes it once per index), index ops each at another
        one (their counts add up). Reductions stop the count. A 3x3 max pool
        over an inlined local response normalization evaluates it 9 times
        per output element."""
        members = g.members
        ew_max, idx_sum = {}, {}
        for r in g.roots:
            ew_max[r.id] = 1
        out = {}
        for mid in sorted(members, key=lambda i: -self.pos[i]):
            e = ew_max.get(mid, 0) + idx_sum.get(mid, 0)
            if not e:
                continue
            out[mid] = e
            n = self.by_id[mid]
            kind = registry.get(n.op).kind
            if kind not in ("elementwise", "index"):
                continue
            for i in n.inputs:
                if i.id in members and i.id not in stored:
                    if kind == "index":
                        idx_sum[i.id] = idx_sum.get(i.id, 0) + e
                    else:
                        ew_max[i.id] = max(ew_max.get(i.id, 0), e)
        return out

    def _iteration_domain(self, g: _Group) -> tuple:
        """The largest index space g's loops run over: its domain, or the input
        of a reduction it evaluates inline (an inner loop per output element)."""
        staged = {r.id for r in g.hoisted} | {a.id for a in g.accum}
        dom = g.domain
        for mid in g.members:
            n = self.by_id[mid]
            if self.kind[mid] == "reduce" and mid not in staged and n.inputs[0].size > int(np.prod(dom)):
                dom = n.inputs[0].shape
        return dom

    def _tree_cost(self, n: Node, stored: set, limit: int | None = None) -> int:
        """The cost of computing n with the unstored nodes it inlines; with
        ``limit``, the walk stops once the cost exceeds it (callers compare
        with a budget, and a whole chain's walk per node would be quadratic)."""
        seen, stack, total = set(), [n], 0
        while stack and (limit is None or total <= limit):
            x = stack.pop()
            if x.id in seen:
                continue
            seen.add(x.id)
            total += _cost(x)
            for i in x.inputs:
                if self.kind[i.id] == "ew" and i.id not in stored:
                    stack.append(i)
        return total

    # -- driver -------------------------------------------------------------------
    def run(self) -> list[Kernel]:
        stored = self.initial_stored()
        for _ in range(5):
            self.build_groups(stored)
            self.row_fusion()
            self.epilogues()
            if self.ctx.opt_level >= 3:
                self.vertical_horizontal()
                self.accumulations()
                self.sink_into_producers()
            more = self.duplicated(stored)
            if not more:
                break
            stored |= more
            self.forced |= more
        return self.to_kernels()


class Fusion(Pass):
    name = "fusion"
    purpose = "group nodes into kernels: loop fusion, reduction prologues and rows, GEMM epilogues"
    min_level = 0
    plans = True
    changes_graph = False

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        if ctx.opt_level < 2:
            ctx.kernels = plan_unfused(graph)
            ctx.notes.append(f"fusion is off at opt_level {ctx.opt_level}: one kernel per op")
        else:
            ctx.kernels = Fuser(graph, ctx).run()
        ctx.notes.append(f"{len(ctx.kernels)} kernels for {len(graph.op_nodes())} op nodes")
        return graph


register_pass(Fusion())
