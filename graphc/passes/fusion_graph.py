"""The kernel graph of the fusion pass, kept up to date as kernels merge.

Every question the merging steps ask — what does kernel g read, who reads
value v, which kernels compute node n inline, would merging a and b make the
kernel graph cyclic — is answered from indexes that each merge updates in time
proportional to the smaller side, never by rescanning all kernels:

- ``g.reads``: ids of the stored values of other kernels that g reads
  (``g.leaf_reads``: the leaves it reads);
- ``readers``: value id -> gids of the live kernels whose ``reads`` hold it;
- ``holders``: node id -> gids of the live kernels that compute it (members);
- ``g.label``: a topological labelling of the kernel graph (every producer's
  label is below its consumers'). A path from a to b can only pass through
  kernels labelled between them, so the cycle test of :meth:`can_merge` only
  searches that window, and a merge relabels only the kernels in it (the
  dynamic topological order of Pearce and Kelly: the merge is the insertion
  of an edge from the later kernel to the earlier one, then the contraction
  of the two, which that order has made adjacent).
"""
from __future__ import annotations


class _Group:
    __slots__ = ("gid", "roots", "members", "domain", "split", "matmul", "hoisted", "accum",
                 "custom", "alive", "reads", "leaf_reads", "label", "version")

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
        self.reads = set()        # ids of stored values (of other kernels) it reads
        self.leaf_reads = set()   # ids of the leaves it reads
        self.label = gid          # position in a topological order of the kernel graph
        self.version = 0          # bumped whenever roots, members, hoisted or domain change

    @property
    def is_loop(self):
        return self.custom is None


class KernelGraph:
    """The indexes over the groups of a :class:`~graphc.passes.fusion.Fuser`
    (a mixin: the Fuser has ``groups``, ``group_of``, ``by_id``, ``max_members``)."""

    # -- building and refreshing the indexes ---------------------------------------
    def index_groups(self):
        """Build every index from the groups as :meth:`build_groups` made them,
        with their members and reads (a group's gid is its position in a
        topological order)."""
        self.readers = {}
        self.holders = {}
        self.stored_epoch = 0     # bumped when a value becomes stored (group_of grows)
        for g in self.groups:
            for v in g.reads:
                self.readers.setdefault(v, set()).add(g.gid)
            for m in g.members:
                self.holders.setdefault(m, set()).add(g.gid)

    def _scan_reads(self, g):
        reads, leaves, members = set(), set(), g.members
        kind, inputs_of = self.kind, self.inputs_of
        for mid in members:
            for i in inputs_of[mid]:
                if i not in members:
                    (leaves if kind[i] == "leaf" else reads).add(i)
        g.reads, g.leaf_reads = reads, leaves

    def refresh(self, g, gained=(), lost=()):
        """After g's members changed by hand (``gained`` added, ``lost``
        removed): recompute what it reads and update the indexes."""
        for m in lost:
            self.holders[m].discard(g.gid)
        for m in gained:
            self.holders.setdefault(m, set()).add(g.gid)
        old = g.reads
        self._scan_reads(g)
        for v in old - g.reads:
            self.readers[v].discard(g.gid)
        for v in g.reads - old:
            self.readers.setdefault(v, set()).add(g.gid)
        g.version += 1

    def reads(self, g) -> set:
        """Ids of the stored nodes of other kernels that g reads (the live set:
        do not modify it)."""
        return g.reads

    def deps(self) -> dict:
        """group id -> set of group ids it reads from."""
        return {g.gid: {p.gid for p in self.producers(g)} for g in self.groups if g.alive}

    def producers(self, g) -> set:
        out = set()
        for v in g.reads:
            p = self.group_of.get(v)
            if p is not None and p is not g:
                out.add(p)
        return out

    def consumers(self, g) -> set:
        gids = set()
        for r in g.roots:
            gids |= self.readers.get(r.id, set())
        gids.discard(g.gid)
        return {self.groups[i] for i in gids}

    # -- merging ---------------------------------------------------------------------
    def can_merge(self, a, b) -> bool:
        """Merging a and b keeps the kernel graph acyclic: no path between them
        that goes through a third kernel."""
        if len(a.members) + len(b.members) > self.max_members:
            return False
        lo, hi = (a, b) if a.label < b.label else (b, a)
        return not self._path_through_third(lo, hi)

    def _path_through_third(self, lo, hi) -> bool:
        """Is there a path lo -> x -> ... -> hi? Searched backwards from hi,
        only through kernels labelled above lo (no other can lie on it)."""
        floor = lo.label
        stack = [p for p in self.producers(hi) if p is not lo and p.label > floor]
        seen = {p.gid for p in stack}
        while stack:
            x = stack.pop()
            for p in self.producers(x):
                if p is lo:
                    return True
                if p.label > floor and p.gid not in seen:
                    seen.add(p.gid)
                    stack.append(p)
        return False

    def _window(self, start, step, inside) -> list:
        """start and the groups reachable from it by ``step`` through groups
        whose label satisfies ``inside``."""
        seen, stack = {start.gid: start}, [start]
        while stack:
            for y in step(stack.pop()):
                if y.gid not in seen and inside(y.label):
                    seen[y.gid] = y
                    stack.append(y)
        return list(seen.values())

    @staticmethod
    def relabel(before, after) -> None:
        """Give the groups of ``before`` then those of ``after`` (each kept in
        label order) the same labels, in increasing order."""
        pool = sorted(g.label for g in before) + sorted(g.label for g in after)
        pool.sort()
        order = sorted(before, key=lambda g: g.label) + sorted(after, key=lambda g: g.label)
        for g, lab in zip(order, pool):
            g.label = lab

    def merge(self, into, g):
        """Merge g into ``into`` (after :meth:`can_merge` said yes)."""
        lo, hi = (into, g) if into.label < g.label else (g, into)
        after = self._window(lo, self.consumers, lambda lab: lab < hi.label)
        before = self._window(hi, self.producers, lambda lab: lab > lo.label)
        self.relabel(before, after)            # ... hi, lo ...: adjacent now
        into.label = hi.label
        # what into reads: its reads and g's, less what either computes
        hit = into.reads & g.members
        into.reads -= hit
        for v in hit:
            self.readers[v].discard(into.gid)
        for v in g.reads:
            self.readers[v].discard(g.gid)
            if v not in into.members:
                into.reads.add(v)
                self.readers[v].add(into.gid)
        for m in g.members:
            h = self.holders[m]
            h.discard(g.gid)
            h.add(into.gid)
        into.leaf_reads |= g.leaf_reads
        into.roots += g.roots
        into.members |= g.members
        into.hoisted += g.hoisted
        into.accum += g.accum
        if g.matmul is not None:
            into.matmul = g.matmul
        for r in g.roots:
            self.group_of[r.id] = into
        into.version += 1
        g.alive = False
        g.reads = set()

    def alive(self):
        return [g for g in self.groups if g.alive]

    def group_containing(self, n):
        """The first live group (in gid order) that computes n, or None."""
        h = self.holders.get(n.id)
        return self.groups[min(h)] if h else None
