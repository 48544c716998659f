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

from ..backend.plan import Kernel, input_indices, plan_unfused, reads_only_at_write_index
from ..ir.graph import Graph
from ..ir.node import Node
from ..ops import registry
from ..ops.index import strided_view
from ..ops.registry import OpKind
from .manager import Pass, PassContext, register_pass

RECOMPUTE_BUDGET = 2
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


class _Group:
    __slots__ = ("gid", "roots", "members", "domain", "split", "matmul", "hoisted", "accum",
                 "custom", "alive")

    def __init__(self, gid, domain):
        self.gid = gid
        self.roots = []
        self.members = set()
        self.domain = domain
        self.split = len(domain)
        self.matmul = None
        self.hoisted = []
        self.accum = []
        self.custom = None
        self.alive = True

    @property
    def is_loop(self):
        return self.custom is None


class Fuser:
    def __init__(self, graph: Graph, ctx: PassContext):
        self.g = graph
        self.ctx = ctx
        self.nodes = graph.op_nodes()
        self.pos = {n.id: i for i, n in enumerate(graph.nodes)}
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
        return strided_view(n, inside, lambda m: True) is not None

    def initial_stored(self) -> set:
        stored = set(self.required)
        for n in self.nodes:
            k = _kind(n)
            if k in ("reduce", "matmul", "custom"):
                stored.add(n.id)
        for n in self.nodes:      # inputs first: a view needs to know its input is stored
            if _kind(n) != "ew" or n.id in stored:
                continue
            for u in self.users[n.id]:
                uk = _kind(u)
                if uk == "custom":
                    stored.add(n.id)
                    self.reasons[(n.id, u.id)] = (f"{u.op} is an opaque op with its own kernel; "
                                                  "it reads its inputs from memory")
                elif uk == "matmul" and not self._gemm_view(n, stored):
                    stored.add(n.id)
                    self.reasons[(n.id, u.id)] = ("a matmul reads its operands from memory "
                                                  "(only a strided view of a stored value is "
                                                  "read in place)")
        depth = {}                # longest chain of inlined nodes ending at each node
        for n in self.nodes:
            if _kind(n) != "ew" or n.id in stored:
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

    def tree(self, root: Node, stored: set) -> set:
        """Ids of root and the inlined nodes it needs."""
        out, stack = set(), [root]
        while stack:
            n = stack.pop()
            if n.id in out:
                continue
            out.add(n.id)
            if _kind(n) == "matmul" or _kind(n) == "custom":
                for i in n.inputs:
                    if _kind(i) == "ew" and i.id not in stored:
                        stack.append(i)       # a GEMM view
                continue
            for i in n.inputs:
                if _kind(i) == "ew" and i.id not in stored:
                    stack.append(i)
        return out

    # -- step 2 -------------------------------------------------------------------
    def build_groups(self, stored: set):
        self.groups = []
        self.group_of = {}
        for n in self.nodes:
            if n.id not in stored:
                continue
            k = _kind(n)
            g = _Group(len(self.groups), n.shape)
            g.roots.append(n)
            g.members = self.tree(n, stored)
            if k == "matmul":
                g.matmul = n
            elif k == "custom":
                g.custom = n
            self.groups.append(g)
            self.group_of[n.id] = g

    def reads(self, g: _Group) -> set:
        """Ids of the stored nodes of other kernels that g reads."""
        out = set()
        for mid in g.members:
            for i in self.by_id[mid].inputs:
                if i.id not in g.members and not i.is_leaf:
                    out.add(i.id)
        return out

    def deps(self) -> dict:
        """group id -> set of group ids it reads from."""
        d = {}
        for g in self.groups:
            if not g.alive:
                continue
            s = set()
            for nid in self.reads(g):
                p = self.group_of.get(nid)
                if p is not None and p is not g:
                    s.add(p.gid)
            d[g.gid] = s
        return d

    def can_merge(self, a: _Group, b: _Group) -> bool:
        """Merging a and b keeps the kernel graph acyclic: no path between them
        that goes through a third kernel."""
        if len(a.members) + len(b.members) > MAX_KERNEL_MEMBERS:
            return False
        deps = self.deps()
        return not self._depends(deps, b.gid, a.gid, indirect=True) and \
            not self._depends(deps, a.gid, b.gid, indirect=True)

    def merge(self, into: _Group, g: _Group):
        into.roots += g.roots
        into.members |= g.members
        into.hoisted += g.hoisted
        into.accum += g.accum
        if g.matmul is not None:
            into.matmul = g.matmul
        for r in g.roots:
            self.group_of[r.id] = into
        g.alive = False

    def alive(self):
        return [g for g in self.groups if g.alive]

    # -- step 3 -------------------------------------------------------------------
    def _trailing_reduce(self, r: Node):
        if _kind(r) != "reduce":
            return None
        x = r.inputs[0]
        m = len(r.attrs["axes"])
        if m == 0 or m == x.ndim or r.attrs["axes"] != tuple(range(x.ndim - m, x.ndim)):
            return None
        return x.shape, x.ndim - m

    def _standalone_reduce(self, g: _Group) -> bool:
        return (len(g.roots) == 1 and _kind(g.roots[0]) == "reduce" and not g.hoisted
                and not g.accum and g.matmul is None)

    def _row_reads_ok(self, c: _Group, r: Node, split: int) -> bool:
        """Would every read of the row reduction ``r`` inside kernel ``c`` (once
        r is hoisted there) be of the current row? Index expressions are
        followed symbolically from c's outputs down to r."""
        D = c.domain
        members = c.members | self.tree(r, set(self.group_of))
        want = tuple(("o", k) for k in range(split))
        want = want + (0,) * (r.ndim - split)
        full = tuple(("o", k) for k in range(split)) + tuple(
            ("i", k) for k in range(len(D) - split))
        starts = [(n, full) for n in c.roots if n.shape == D and _kind(n) == "ew"]
        starts += [(h.inputs[0], full) for h in c.hoisted]
        starts.append((r.inputs[0], full))
        seen = set()
        fresh = [0]
        while starts:
            n, idx = starts.pop()
            if (n.id, idx) in seen or n.is_leaf:
                continue
            seen.add((n.id, idx))
            for i, iidx in input_indices(n, idx, fresh):
                if i is r:
                    if iidx != want:
                        return False
                elif i.id in members and not i.is_leaf:
                    starts.append((i, iidx))
        return True

    def row_fusion(self):
        # consumers first, so a sum that uses a max joins before the max does
        for r in reversed(self.nodes):
            g = self.group_of.get(r.id)
            if g is None or not g.alive or not self._standalone_reduce(g):
                continue
            tr = self._trailing_reduce(r)
            if tr is None:
                continue
            D, split = tr
            cands = [c for c in self.alive() if c is not g and c.is_loop and c.matmul is None
                     and c.domain == D and c.split in (len(D), split) and r.id in self.reads(c)]
            target = None
            for c in cands:
                if not self._row_reads_ok(c, r, split):
                    for u in self.users[r.id]:
                        if u.id in c.members:
                            self.reasons[(r.id, u.id)] = (
                                f"{u.op} reads the reduction at other rows than the one being "
                                "computed, so the reduction cannot run row by row inside its loop")
                    continue
                if target is None:
                    if self.can_merge(c, g):
                        c.split = split
                        g.hoisted = [r]
                        self.merge(c, g)
                        c.hoisted.sort(key=lambda n: self.pos[n.id])
                        target = c
                    else:
                        for u in self.users[r.id]:
                            if u.id in c.members:
                                self.reasons[(r.id, u.id)] = (
                                    "fusing this reduction into its consumer's row loop would "
                                    "make the kernel graph cyclic")
                elif c.alive and self.can_merge(target, c) and all(
                        self._row_reads_ok(c, h, split) for h in target.hoisted):
                    self.merge(target, c)       # a second consumer joins the same row kernel
        # horizontal: a trailing reduction over the domain of an existing row kernel
        for r in self.nodes:
            g = self.group_of.get(r.id)
            if g is None or not g.alive or not self._standalone_reduce(g):
                continue
            tr = self._trailing_reduce(r)
            if tr is None:
                continue
            D, split = tr
            for c in self.alive():
                if c is not g and c.is_loop and c.matmul is None and c.domain == D and \
                        c.split == split and self._row_reads_ok(c, r, split) and \
                        self.can_merge(c, g):
                    g.hoisted = [r]
                    self.merge(c, g)
                    c.hoisted.sort(key=lambda n: self.pos[n.id])
                    break
            else:
                # the first reduction over this domain: it becomes a row kernel that
                # later reductions over the same rows (and their consumers) can join
                g.domain, g.split, g.hoisted = D, split, [r]

    def epilogues(self):
        for g in list(self.alive()):
            if g.matmul is None or not g.alive:
                continue
            M = g.matmul
            for c in list(self.alive()):
                if c is g or not c.is_loop or c.matmul is not None or c.domain != M.shape:
                    continue
                has_loop = len(g.roots) > 1 or g.hoisted or g.accum
                if has_loop and c.split != g.split and c.hoisted and g.hoisted:
                    continue
                if M.id in self.reads(c) and self._hoist_ok(g, c) and self.can_merge(g, c):
                    g.split = min(g.split, c.split)
                    self.merge(g, c)
                    g.hoisted.sort(key=lambda n: self.pos[n.id])

    def vertical_horizontal(self):
        """Merge loop kernels over one domain that are related: one reads the
        other's results, or both read a common input. Each kernel is compared
        only with the kernels related to it (found through an index of who
        reads what), in kernel order, so a sweep is linear in graph size."""
        changed = True
        while changed:
            changed = False
            live = self.alive()
            at = {g.gid: j for j, g in enumerate(live)}
            facts = {}        # gid -> (reads, root ids, inputs, inline reductions, accum ids)
            readers = {}      # value id -> gids of the kernels that read it

            def facts_of(g):
                if g.gid not in facts:
                    facts[g.gid] = (self.reads(g), {r.id for r in g.roots}, self._leaves(g),
                                    self._inline_reductions(g), {x.id for x in g.accum})
                return facts[g.gid]
            for g in live:
                for v in facts_of(g)[2]:
                    readers.setdefault(v, set()).add(g.gid)

            def related_after(a, j0):
                ra, a_out, la = facts_of(a)[:3]
                gids = set()
                for v in la | a_out:
                    gids |= readers.get(v, set())
                for v in ra:
                    p = self.group_of.get(v)
                    if p is not None:
                        gids.add(p.gid)
                return sorted(at[x] for x in gids if x in at and at[x] > j0)
            for a in live:
                if not a.alive or not a.is_loop:
                    continue
                j0 = -1
                while True:
                    merged = False
                    for j in related_after(a, j0):
                        j0, b = j, live[j]
                        if self._merge_related(a, b, facts_of):
                            facts.pop(a.gid, None)
                            for v in facts_of(a)[2]:
                                readers.setdefault(v, set()).add(a.gid)
                            merged = changed = True
                            break
                    if not merged:
                        break

    def _merge_related(self, a: _Group, b: _Group, facts_of) -> bool:
        """Merge b into a if that is sound and pays; say whether it happened."""
        if b is a or not b.alive or not b.is_loop or b.domain != a.domain:
            return False
        if b.matmul is not None or (a.hoisted and b.hoisted and a.split != b.split):
            return False
        (ra, a_out, la, a_red, a_acc), (rb, b_out, lb, b_red, b_acc) = facts_of(a), facts_of(b)
        if (rb & a_out & self.forced) or (ra & b_out & self.forced):
            return False        # it was stored so that it is not recomputed inline
        if (rb & a_red) or (ra & b_red):
            return False        # a reduction would be recomputed at every use
        if (rb & a_acc) or (ra & b_acc):
            return False        # an accumulation is complete only after the loop
        if a.matmul is not None and ra & b_out:
            return False        # the GEMM would need b's result before it is computed
        related = (rb & a_out) or (ra & b_out) or (la & lb)
        if not (related and self._hoist_ok(a, b) and self.can_merge(a, b)):
            return False
        a.split = min(a.split, b.split)
        self.merge(a, b)
        a.hoisted.sort(key=lambda n: self.pos[n.id])
        return True

    def _hoist_ok(self, a: _Group, b: _Group) -> bool:
        """After merging a and b, would every hoisted reduction still be read
        only at the current row?"""
        split = min(a.split, b.split)
        return all(self._row_reads_ok(b, h, split) for h in a.hoisted) and \
            all(self._row_reads_ok(a, h, split) for h in b.hoisted)

    def _inline_reductions(self, g: _Group) -> set:
        """Ids of reductions g evaluates inline (not staged)."""
        staged = {r.id for r in g.hoisted} | {a.id for a in g.accum}
        return {r.id for r in g.roots if _kind(r) == "reduce" and r.id not in staged}

    def _leaves(self, g: _Group) -> set:
        """Ids of the values g reads from memory (one-element leaves are immediates)."""
        s = set()
        for mid in g.members:
            for i in self.by_id[mid].inputs:
                if i.id not in g.members and (i.is_leaf and i.size > 1 or not i.is_leaf):
                    s.add(i.id)
        return s

    def accumulations(self):
        for r in self.nodes:
            g = self.group_of.get(r.id)
            if g is None or not g.alive or not self._standalone_reduce(g):
                continue
            x = r.inputs[0]
            if x.size == 0:
                continue              # nothing to accumulate (and the shape tests below degenerate)
            rg = self.reads(g)
            for c in self.alive():
                if c is g or not c.is_loop:
                    continue
                inner = x.shape == c.domain
                outer = c.split < len(c.domain) and x.shape == c.domain[:c.split]
                if not (inner or outer):
                    continue
                if x.id not in c.members and not (rg & c.members):
                    continue          # nothing to share: no reason to merge
                if rg & ({a.id for a in c.accum} | self._inline_reductions(c)):
                    continue          # g would read an unfinished accumulation of c
                if self.can_merge(c, g) and not self._read_inside(c, r):
                    g.accum = [r]
                    self.merge(c, g)
                    break

    def sink_into_producers(self):
        """Compute cheap consumers of a stored value in the kernel that produces
        it, when that lets the value die there: the backward pass's ReLU mask
        ``h > 0`` is computed (and stored as bool) by the forward kernel that
        computes ``h``, instead of keeping ``h`` alive until the backward pass."""
        readers = {}          # stored value id -> gids of the kernels that read it
        for g in self.alive():
            for rid in self.reads(g):
                readers.setdefault(rid, set()).add(g.gid)
        for k2 in self.alive():
            if not k2.is_loop:
                continue
            for xid in sorted(self.reads(k2)):
                k1 = self.group_of.get(xid)
                if k1 is None or k1 is k2 or not k1.alive or not k1.is_loop or \
                        xid in self.required:
                    continue
                X = self.by_id[xid]
                accum = {a.id for a in k1.accum}
                avail = (k1.members - accum) | {xid}
                comp = set()
                for mid in sorted(k2.members, key=self.pos.get):
                    n = self.by_id[mid]
                    if _kind(n) != "ew" or any(r is n for r in k2.roots) and n.id in self.required:
                        continue
                    ins = n.inputs
                    if all(i.is_leaf or i.id in avail or i.id in comp for i in ins) and \
                            any(i.id == xid or i.id in comp for i in ins):
                        comp.add(mid)
                if not comp:
                    continue
                rest = k2.members - comp
                if any(xid in {i.id for i in self.by_id[m].inputs} for m in rest):
                    continue          # k2 still needs X itself
                if readers.get(xid, set()) - {k1.gid, k2.gid}:
                    continue          # someone else needs X anyway
                boundary = [self.by_id[m] for m in comp if any(
                    u.id in rest for u in self.users[m])]
                if not boundary or any(b.shape != k1.domain for b in boundary):
                    continue
                if sum(b.size * b.dtype.itemsize for b in boundary) >= X.size * X.dtype.itemsize:
                    continue
                for b in boundary:
                    k1.roots.append(b)
                    self.group_of[b.id] = k1
                    for u in self.users[b.id]:
                        self.reasons[(b.id, u.id)] = (
                            f"{b.op} is computed early, by the kernel that produces its input "
                            f"{X.op} (which can then be freed), and stored for {u.op}")
                k1.members |= comp
                k2.members -= comp
                readers[xid].discard(k2.gid)      # k2 reads the boundary values instead
                for b in boundary:
                    readers.setdefault(b.id, set()).add(k2.gid)

    def _read_inside(self, c: _Group, r: Node) -> bool:
        return any(r.id in {i.id for i in self.by_id[m].inputs} for m in c.members)

    # -- costs --------------------------------------------------------------------
    def duplicated(self, stored: set) -> set:
        """Inlined nodes that would be recomputed too often: costly ones needed
        by several kernels, or broadcast across an outer loop."""
        where = {}
        for g in self.alive():
            for mid in g.members:
                if mid not in stored:
                    where.setdefault(mid, []).append(g)
        more = set()
        domains = {}
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
                if cost > RECOMPUTE_BUDGET and n.size * 4 <= size and \
                        not _trailing_broadcast(n.shape, dom):
                    more.add(nid)
                    for u in self.users[nid]:
                        self.reasons[(nid, u.id)] = (
                            f"{n.op} has shape {n.shape}, which is broadcast across the loop "
                            f"domain {dom} of its consumer's kernel; recomputing it for every "
                            "element would cost more than storing it")
        return more

    def _iteration_domain(self, g: _Group) -> tuple:
        """The largest index space g's loops run over: its domain, or the input
        of a reduction it evaluates inline (an inner loop per output element)."""
        staged = {r.id for r in g.hoisted} | {a.id for a in g.accum}
        dom = g.domain
        for mid in g.members:
            n = self.by_id[mid]
            if _kind(n) == "reduce" and mid not in staged and n.inputs[0].size > int(np.prod(dom)):
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
                if _kind(i) == "ew" and i.id not in stored:
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

    def to_kernels(self) -> list[Kernel]:
        live = self.alive()
        # a stored node whose readers all ended up in its own kernel needs no buffer
        for g in live:
            keep = []
            for r in g.roots:
                if r.id in self.required or _kind(r) != "ew" or r.id in self.forced:
                    keep.append(r)
                    continue
                readers = {self.group_of.get(u.id) or self._group_containing(u) for u in
                           self.users[r.id]}
                if readers == {g} and not any(_kind(u) == "matmul" for u in self.users[r.id]):
                    continue      # stays a member, computed inline
                keep.append(r)
            g.roots = keep
        order = self._order(live)
        kernels = []
        for g in order:
            outs = sorted(g.roots, key=lambda n: self.pos[n.id])
            kind = "custom" if g.custom is not None else ("matmul" if g.matmul is not None
                                                          else "loop")
            name = "+".join(dict.fromkeys(self.by_id[m].op for m in sorted(
                g.members, key=self.pos.get)))
            if len(name) > 60:
                name = name[:57] + "..."
            kernels.append(Kernel(kind, outs, set(g.members), g.domain, name=name,
                                  split=g.split, matmul=g.matmul,
                                  hoisted=list(g.hoisted), accumulates=list(g.accum)))
        self._record_reasons(kernels)
        _validate(kernels, self.by_id)
        self.ctx.direct_updates = dict(self.direct_updates)
        return kernels

    def _group_containing(self, n: Node):
        for g in self.alive():
            if n.id in g.members:
                return g
        return None

    def _direct_updates(self, live, deps) -> dict:
        """Updates ``p <- v`` whose new value can be written straight into the
        parameter: v is stored by one kernel G that reads p only at the index
        it writes (``reads_only_at_write_index``: followed through every value
        G computes, movement ops included), no other kernel reads v, and every
        other kernel that reads p can run before G (those orderings are added
        to ``deps``). Copies that read a parameter (outputs, staged update
        values) run before every kernel (ModuleEmitter.emit). Saves the copy
        from a temporary into the parameter after the step."""
        out = {}
        out_ids = {o.id for o in self.g.outputs}
        reads_leaf = {}
        for g in live:
            for mid in g.members:
                for i in self.by_id[mid].inputs:
                    if i.is_leaf:
                        reads_leaf.setdefault(i.id, set()).add(g.gid)
        targets = [v.id for _, v in self.g.updates]
        for p, v in self.g.updates:
            G = self.group_of.get(v.id)
            if G is None or not G.alive or v.id in out_ids or targets.count(v.id) > 1 or \
                    G.custom is not None or G.matmul is v or any(h is v for h in G.hoisted) or \
                    any(a is v for a in G.accum):
                continue
            if any(v.id in self.reads(g) for g in live if g is not G):
                continue
            if v.shape != G.domain or not reads_only_at_write_index(
                    p, G.domain, G.roots, G.members, G.hoisted, G.accum, G.matmul):
                continue
            readers = reads_leaf.get(p.id, set()) - {G.gid}
            if any(self._depends(deps, r, G.gid) for r in readers):
                continue          # a reader of p needs G's results first: p must stay intact
            for r in readers:
                deps.setdefault(G.gid, set()).add(r)
            out[v.id] = p
        return out

    @staticmethod
    def _depends(deps, a, b, indirect: bool = False) -> bool:
        """Does group a (transitively) depend on group b? With ``indirect``,
        only through a third group (a path of two or more steps)."""
        stack = [y for y in deps.get(a, ()) if y != b] if indirect else [a]
        seen = set(stack)
        while stack:
            x = stack.pop()
            for y in deps.get(x, ()):
                if y == b:
                    return True
                if y not in seen:
                    seen.add(y)
                    stack.append(y)
        return False

    def _order(self, live):
        """Topological order of the kernels (by their first dependency)."""
        deps = self.deps()
        self.direct_updates = self._direct_updates(live, deps)
        done, order = set(), []
        pending = sorted(live, key=lambda g: min(self.pos[r.id] for r in g.roots)
                         if g.roots else 0)
        while pending:
            for g in pending:
                if deps.get(g.gid, set()) <= done:
                    order.append(g)
                    done.add(g.gid)
                    pending.remove(g)
                    break
            else:
                raise RuntimeError("fusion produced a cyclic kernel graph")
        return order

    def _record_reasons(self, kernels):
        kof = {}
        for i, k in enumerate(kernels):
            for m in k.members:
                kof.setdefault(m, i)
        for n in self.nodes:
            for u in self.users[n.id]:
                if kof.get(n.id) == kof.get(u.id):
                    continue
                key = (n.id, u.id)
                if key in self.reasons:
                    continue
                self.reasons[key] = self._generic_reason(n, u, kernels, kof)

    def _generic_reason(self, n: Node, u: Node, kernels, kof) -> str:
        kn, ku = _kind(n), _kind(u)
        if kn == "reduce":
            return (f"reduction boundary: {n.op} over axes {n.attrs['axes']} must finish before "
                    f"{u.op} can use it, and {u.op}'s kernel does not loop over the reduced "
                    f"domain {n.inputs[0].shape} row by row")
        if kn == "matmul":
            return (f"the matmul's epilogue covers consumers over its shape {n.shape}; {u.op} "
                    f"loops over {kernels[kof[u.id]].shape}")
        if kn == "custom" or ku == "custom":
            return "an opaque op (custom kernel) is never fused"
        if ku == "matmul":
            return "a matmul reads its operands from memory"
        if n.id in self.required:
            return (f"{n.op} is a graph output; its consumer {u.op} is in a kernel over a "
                    f"different domain ({kernels[kof[u.id]].shape} vs {n.shape})")
        ka, kb = kernels[kof[n.id]], kernels[kof[u.id]]
        if ka.shape != kb.shape:
            return (f"the kernels loop over different domains ({ka.shape} vs {kb.shape}) and "
                    f"{n.op} is stored for other consumers")
        return "merging the two kernels would make the kernel graph cyclic"


def _validate(kernels, by_id) -> None:
    """Invariants the emitter relies on (a violation is a bug in this pass)."""
    for i, k in enumerate(kernels):
        acc = {a.id for a in k.accumulates}
        for mid in k.members:
            n = by_id[mid]
            if mid not in acc and any(x.id in acc for x in n.inputs):
                raise RuntimeError(f"fusion bug: kernel #{i} reads its own accumulation in {n.op}")
        for h in k.hoisted:
            if h.inputs[0].shape != k.shape:
                raise RuntimeError(f"fusion bug: kernel #{i} hoists a reduction over "
                                   f"{h.inputs[0].shape}, not its domain {k.shape}")
        if k.kind == "matmul" and k.matmul is None:
            raise RuntimeError(f"fusion bug: kernel #{i} is a matmul kernel without a GEMM")


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
