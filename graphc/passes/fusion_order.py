"""The end of the fusion pass: groups become kernels, in a topological order,
with the updates written straight into their parameters and a reason for
every producer/consumer pair left in different kernels.

The order is Kahn's algorithm with a heap (n log n); the orderings that the
direct updates add are checked and kept in the topological labels of the
kernel graph (:mod:`graphc.passes.fusion_graph`), so no step rescans every
kernel per kernel or per update.
"""
from __future__ import annotations

import heapq
from collections import Counter

from ..backend.plan import Kernel, reads_only_at_write_index
from ..ir.node import Node


class Ordering:
    """The kernel-building steps of a :class:`~graphc.passes.fusion.Fuser` (a mixin)."""

    def to_kernels(self) -> list[Kernel]:
        live = self.alive()
        kind = self.kind
        # a stored node whose readers all ended up in its own kernel needs no buffer
        for g in live:
            keep = []
            for r in g.roots:
                if r.id in self.required or kind[r.id] != "ew" or r.id in self.forced:
                    keep.append(r)
                    continue
                readers = {self.group_of.get(u.id) or self.group_containing(u) for u in
                           self.users[r.id]}
                if readers == {g} and not any(kind[u.id] == "matmul" for u in self.users[r.id]):
                    continue      # stays a member, computed inline
                keep.append(r)
            g.roots = keep
        order = self._order(live)
        kernels = []
        for g in order:
            outs = sorted(g.roots, key=lambda n: self.pos[n.id])
            kk = "custom" if g.custom is not None else ("matmul" if g.matmul is not None
                                                        else "loop")
            name = "+".join(dict.fromkeys(self.by_id[m].op for m in sorted(
                g.members, key=self.pos.get)))
            if len(name) > 60:
                name = name[:57] + "..."
            kernels.append(Kernel(kk, outs, set(g.members), g.domain, name=name,
                                  split=g.split, matmul=g.matmul,
                                  hoisted=list(g.hoisted), accumulates=list(g.accum)))
        self._record_reasons(kernels)
        _validate(kernels, self.by_id)
        self.ctx.direct_updates = dict(self.direct_updates)
        return kernels

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
            for lid in g.leaf_reads:
                reads_leaf.setdefault(lid, set()).add(g.gid)
        order = _Labels(deps, {g.gid: g.label for g in live})
        targets = Counter(v.id for _, v in self.g.updates)
        for p, v in self.g.updates:
            G = self.group_of.get(v.id)
            if G is None or not G.alive or v.id in out_ids or targets[v.id] > 1 or \
                    G.custom is not None or G.matmul is v or any(h is v for h in G.hoisted) or \
                    any(a is v for a in G.accum):
                continue
            if self.readers.get(v.id, set()) - {G.gid}:
                continue          # another kernel reads v
            if v.shape != G.domain or not reads_only_at_write_index(
                    p, G.domain, G.roots, G.members, G.hoisted, G.accum, G.matmul):
                continue
            readers = reads_leaf.get(p.id, set()) - {G.gid}
            if any(order.depends(r, G.gid) for r in readers):
                continue          # a reader of p needs G's results first: p must stay intact
            for r in readers:
                order.add(r, G.gid)
            out[v.id] = p
        return out

    def _order(self, live):
        """Topological order of the kernels (by their first dependency)."""
        deps = self.deps()
        self.direct_updates = self._direct_updates(live, deps)
        first = sorted(live, key=lambda g: min(self.pos[r.id] for r in g.roots)
                       if g.roots else 0)
        rank = {g.gid: j for j, g in enumerate(first)}
        waiting, users = {}, {}
        for g in live:
            ds = deps.get(g.gid, set())
            waiting[g.gid] = len(ds)
            for d in ds:
                users.setdefault(d, []).append(g.gid)
        ready = [rank[g.gid] for g in live if waiting[g.gid] == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            g = first[heapq.heappop(ready)]
            order.append(g)
            for u in users.get(g.gid, ()):
                waiting[u] -= 1
                if waiting[u] == 0:
                    heapq.heappush(ready, rank[u])
        if len(order) != len(live):
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
        kn, ku = self.kind[n.id], self.kind[u.id]
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


class _Labels:
    """A dependency map (gid -> gids it needs first) with a topological
    labelling, kept as orderings are added (Pearce-Kelly), so that "does a
    need b, transitively" searches only the kernels labelled between them."""

    def __init__(self, deps: dict, labels: dict):
        self.deps, self.label = deps, labels
        self.users = {}
        for a, ds in deps.items():
            for d in ds:
                self.users.setdefault(d, set()).add(a)

    def depends(self, a, b) -> bool:
        """Does a (transitively) need b?"""
        lab, floor = self.label, self.label[b]
        if lab[a] < floor:
            return False
        stack, seen = [a], {a}
        while stack:
            for y in self.deps.get(stack.pop(), ()):
                if y == b:
                    return True
                if y not in seen and lab[y] > floor:
                    seen.add(y)
                    stack.append(y)
        return False

    def add(self, r, g) -> None:
        """g needs r first (r does not need g)."""
        self.deps.setdefault(g, set()).add(r)
        self.users.setdefault(r, set()).add(g)
        lab = self.label
        lo, hi = lab[g], lab[r]
        if hi < lo:
            return
        after = self._reach(g, self.users, lambda x: x < hi)
        before = self._reach(r, self.deps, lambda x: x > lo)
        pool = sorted(lab[x] for x in before + after)
        for x, v in zip(sorted(before, key=lab.get) + sorted(after, key=lab.get), pool):
            lab[x] = v

    def _reach(self, start, step, inside) -> list:
        lab, seen, stack = self.label, {start}, [start]
        while stack:
            for y in step.get(stack.pop(), ()):
                if y not in seen and inside(lab[y]):
                    seen.add(y)
                    stack.append(y)
        return list(seen)


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
