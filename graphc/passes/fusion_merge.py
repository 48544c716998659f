"""Step 3 of the fusion pass: merging kernels (row fusion, GEMM epilogues,
vertical and horizontal loop fusion, accumulations, sinking cheap consumers
into their producers). See the docstring of :mod:`graphc.passes.fusion`.

Each step finds its candidates through the indexes of
:class:`~graphc.passes.fusion_graph.KernelGraph` (who reads a value, who
computes a node), in the order a scan of all kernels would visit them, so the
decisions are those of such a scan at a cost proportional to the candidates.
"""
from __future__ import annotations

import heapq

from ..backend.plan import input_indices
from ..ir.node import Node
from .fusion_graph import _Group


class _RowView:
    """What :meth:`Merging._walk_row_reads` reads of a kernel: its domain and
    members, the values it evaluates in its loop (``roots``), its row
    reductions and its accumulations: here only what a step would add to a
    kernel (a reduction hoisted or accumulated, values computed early)."""
    __slots__ = ("domain", "members", "roots", "hoisted", "accum")

    def __init__(self, domain, members, roots=(), hoisted=(), accum=()):
        self.domain, self.members = domain, members
        self.roots, self.hoisted, self.accum = list(roots), list(hoisted), list(accum)


class Merging:
    """The merging steps of a :class:`~graphc.passes.fusion.Fuser` (a mixin)."""

    def _trailing_reduce(self, r: Node):
        if self.kind[r.id] != "reduce":
            return None
        x = r.inputs[0]
        m = len(r.attrs["axes"])
        if m == 0 or m == x.ndim or r.attrs["axes"] != tuple(range(x.ndim - m, x.ndim)):
            return None
        return x.shape, x.ndim - m

    def _standalone_reduce(self, g: _Group) -> bool:
        return (len(g.roots) == 1 and self.kind[g.roots[0].id] == "reduce" and not g.hoisted
                and not g.accum and g.matmul is None)

    def _row_reads_ok(self, c: _Group, r: Node, split: int, joined: _Group | None = None) -> bool:
        """Would every read of the row reduction ``r`` inside kernel ``c`` (once
        r is hoisted there, and ``c`` merged with ``joined`` if given, whose
        members c's reads then evaluate inline) be of the current row? Index
        expressions are followed symbolically from c's outputs down to r.
        Remembered per version of c (a kernel is asked about the same
        reduction again and again while candidates are tried)."""
        key = (c.gid, c.version, r.id, split, self.stored_epoch,
               None if joined is None else (joined.gid, joined.version))
        got = self._row_memo.get(key)
        if got is None:
            got = self._row_memo[key] = self._walk_row_reads(c, r, split, joined)
        return got

    def _walk_row_reads(self, c: _Group, r: Node, split: int, joined: _Group | None = None) -> bool:
        D = c.domain
        members = c.members | self.tree(r, self.group_of)
        if joined is not None:
            members = members | joined.members
        want = tuple(("o", k) for k in range(split))
        want = want + (0,) * (r.ndim - split)
        full = tuple(("o", k) for k in range(split)) + tuple(
            ("i", k) for k in range(len(D) - split))
        staged = {x.id for x in c.hoisted} | {x.id for x in c.accum}
        # every value the loop evaluates at its index: elementwise roots and
        # reductions evaluated inline (each over indices of its own)
        starts = [(n, full) for n in c.roots if n.shape == D and n.id not in staged and
                  self.kind[n.id] in ("ew", "reduce")]
        starts += [(h.inputs[0], full) for h in c.hoisted]
        # an accumulation reads its input at the loop index (of the outer
        # loops, for a value over them), after the row's reductions
        starts += [(a.inputs[0], full if a.inputs[0].shape == D else full[:split])
                   for a in c.accum]
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

    def _rows_stay_current(self, c: _Group, members: set, roots=(), hoisted=(),
                           accum=()) -> bool:
        """Would each row reduction of kernel ``c`` still be read only at the
        row being computed once c also evaluates ``roots`` in its loop,
        hoists ``hoisted`` and accumulates ``accum`` (computing ``members``
        inline)? The check of every step that adds work to a row kernel
        other than by merging two kernels (:meth:`_hoist_ok` checks those):
        a row reduction joining it (``y[a] = sum_b r1[b] * x[a, b]`` reads
        every row of ``r1``: inside r1's row loop, rows after ``a`` are not
        reduced yet), an accumulation (``sum(x + r1[None, :], 0)``), a
        consumer sunk into it (``transpose(x - r1[:, None]) > 0``)."""
        if not c.hoisted:
            return True
        view = _RowView(c.domain, members | c.members, roots, hoisted, accum)
        return all(self._walk_row_reads(view, h, c.split) for h in c.hoisted)

    def _readers_of(self, vid) -> list:
        """The live groups that read value ``vid``, in gid order."""
        return [self.groups[i] for i in sorted(self.readers.get(vid, ()))]

    def _standalone_reductions(self, nodes):
        """(r, its group) for each reduction r in ``nodes`` (in that order)
        still alone in a live kernel, checked as the caller's merges go on."""
        for r in nodes:
            g = self.group_of.get(r.id)
            if g is not None and g.alive and self._standalone_reduce(g):
                yield r, g

    def _row_reductions(self, nodes):
        """(r, group, domain, split) for each standalone reduction over
        trailing axes (a row reduction) in ``nodes``."""
        for r, g in self._standalone_reductions(nodes):
            tr = self._trailing_reduce(r)
            if tr is not None:
                yield (r, g, *tr)

    def row_fusion(self):
        # consumers first, so a sum that uses a max joins before the max does
        for r, g, D, split in self._row_reductions(reversed(self.nodes)):
            cands = [c for c in self._readers_of(r.id) if c is not g and c.is_loop and
                     c.matmul is None and c.domain == D and c.split in (len(D), split)]
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
                        self._row_reads_ok(c, h, split, target) for h in target.hoisted):
                    self.merge(target, c)       # a second consumer joins the same row kernel
        # horizontal: a trailing reduction over the domain of an existing row kernel
        rows = {}             # (domain, split) -> gids of the groups over it
        for c in self.groups:
            if c.alive:
                rows.setdefault((c.domain, c.split), set()).add(c.gid)
        for r, g, D, split in self._row_reductions(self.nodes):
            for gid in sorted(rows.get((D, split), ())):
                c = self.groups[gid]
                if c is not g and c.alive and c.is_loop and c.matmul is None and \
                        self._row_reads_ok(c, r, split) and \
                        self._rows_stay_current(c, g.members, hoisted=[r]) and \
                        self.can_merge(c, g):
                    g.hoisted = [r]
                    self.merge(c, g)
                    c.hoisted.sort(key=lambda n: self.pos[n.id])
                    break
            else:
                # the first reduction over this domain: it becomes a row kernel that
                # later reductions over the same rows (and their consumers) can join
                rows[(g.domain, g.split)].discard(g.gid)
                g.domain, g.split, g.hoisted = D, split, [r]
                g.version += 1
                rows.setdefault((D, split), set()).add(g.gid)

    def epilogues(self):
        for g in self.groups:
            if not g.alive or g.matmul is None:
                continue
            M = g.matmul
            for c in self._readers_of(M.id):
                if c is g or not c.is_loop or c.matmul is not None or c.domain != M.shape:
                    continue
                has_loop = len(g.roots) > 1 or g.hoisted or g.accum
                if has_loop and c.split != g.split and c.hoisted and g.hoisted:
                    continue
                if M.id in c.reads and self._hoist_ok(g, c) and self.can_merge(g, c):
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
            pool = {}         # domain -> gids of the loop kernels without a GEMM over it
            for g in live:
                if g.is_loop and g.matmul is None:
                    pool.setdefault(g.domain, set()).add(g.gid)
            # gid -> (reads, root ids, leaves read, inline reductions, accum ids, shared inputs)
            facts = {}
            readers = {}      # value id -> gids of the kernels that read it

            def facts_of(g):
                # (g.reads itself: only a merge changes it, and a merge drops the facts)
                if g.gid not in facts:
                    big = self._big_leaves(g)
                    facts[g.gid] = (g.reads, {r.id for r in g.roots}, big,
                                    self._inline_reductions(g), {x.id for x in g.accum},
                                    self._shared(g.reads) | big)
                return facts[g.gid]

            def index(g):
                f = facts_of(g)
                for v in f[0]:
                    readers.setdefault(v, set()).add(g.gid)
                for v in f[2]:
                    readers.setdefault(v, set()).add(g.gid)
            for g in live:
                index(g)

            def related_after(a, j0):
                """Positions after j0 of the kernels related to a that
                :meth:`_merge_related` could merge into it: over a's domain,
                and neither reading an inline reduction of the other (the
                kernels it would refuse on those grounds are left out here,
                with set operations, rather than one by one)."""
                fa = facts_of(a)
                ra, a_out = fa[:2]
                gids, never = set(), set()
                for v in fa[5] | a_out:
                    gids |= readers.get(v, set())
                for v in fa[3]:
                    never |= self.readers.get(v, set())
                for v in ra:
                    p = self.group_of.get(v)
                    if p is not None:
                        gids.add(p.gid)
                        if v in facts_of(p)[3]:
                            never.add(p.gid)
                gids &= pool.get(a.domain, set())
                gids -= never
                gids.discard(a.gid)
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
                            index(a)
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
        (ra, a_out, _, a_red, a_acc, sa), (rb, b_out, _, b_red, b_acc, sb) = facts_of(a), facts_of(b)
        if (rb & a_out & self.forced) or (ra & b_out & self.forced):
            return False        # it was stored so that it is not recomputed inline
        if (rb & a_red) or (ra & b_red):
            return False        # a reduction would be recomputed at every use
        if (rb & a_acc) or (ra & b_acc):
            return False        # an accumulation is complete only after the loop
        if a.matmul is not None and ra & b_out:
            return False        # the GEMM would need b's result before it is computed
        related = (rb & a_out) or (ra & b_out) or (sa & sb)
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
        return all(self._row_reads_ok(b, h, split, a) for h in a.hoisted) and \
            all(self._row_reads_ok(a, h, split, b) for h in b.hoisted)

    def _inline_reductions(self, g: _Group) -> set:
        """Ids of reductions g evaluates inline (not staged)."""
        staged = {r.id for r in g.hoisted} | {a.id for a in g.accum}
        return {r.id for r in g.roots if self.kind[r.id] == "reduce" and r.id not in staged}

    def _big_leaves(self, g: _Group) -> set:
        """Ids of the leaves g reads from memory (one-element leaves are immediates)."""
        sizes = self.sizes
        return {v for v in g.leaf_reads if sizes[v] > 1}

    def _shared(self, ins: set) -> set:
        """The inputs (of those in ``ins``) through which two kernels reading
        them are related. One-element values do not count: reading the same
        scalar (a learning rate, a bias correction) is no reason to run two
        loops as one, and it would tie together kernels that are otherwise
        alike (the updates of different parameters)."""
        sizes = self.sizes
        return {v for v in ins if sizes[v] > 1}

    def accumulations(self):
        over, rows = {}, {}       # domain, outer loops' domain -> gids of the loop kernels
        for c in self.groups:
            if c.alive and c.is_loop:
                over.setdefault(c.domain, set()).add(c.gid)
                if c.split < len(c.domain):
                    rows.setdefault(c.domain[:c.split], set()).add(c.gid)
        for r, g in self._standalone_reductions(self.nodes):
            x = r.inputs[0]
            if x.size == 0:
                continue              # nothing to accumulate (and the shape tests below degenerate)
            rg = g.reads
            # the loop kernels over x's domain (or its outer loops) that compute x or
            # something g reads (nothing to share otherwise)
            near = set(self.holders.get(x.id, ()))
            for v in rg:
                near |= self.holders.get(v, set())
            near = (near & over.get(x.shape, set())) | (near & rows.get(x.shape, set()))
            for gid in sorted(near):
                c = self.groups[gid]
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
                if self.can_merge(c, g) and not self._read_inside(c, r) and \
                        self._rows_stay_current(c, g.members, accum=[r]):
                    g.accum = [r]
                    self.merge(c, g)
                    break

    def sink_into_producers(self):
        """Compute cheap consumers of a stored value in the kernel that produces
        it, when that lets the value die there: the backward pass's ReLU mask
        ``h > 0`` is computed (and stored as bool) by the forward kernel that
        computes ``h``, instead of keeping ``h`` alive until the backward pass."""
        # stored value id -> gids of the kernels that read it (as the pass began; kept
        # up to date only for the values it moves)
        readers = {v: set(s) for v, s in self.readers.items() if s}
        for k2 in self.alive():
            if not k2.is_loop:
                continue
            for xid in sorted(k2.reads):
                rs = readers.get(xid, ())
                if len(rs) > 2:
                    continue          # someone else needs X anyway
                k1 = self.group_of.get(xid)
                if k1 is None or k1 is k2 or not k1.alive or not k1.is_loop or \
                        xid in self.required:
                    continue
                if any(x != k1.gid and x != k2.gid for x in rs):
                    continue          # someone else needs X anyway
                X = self.by_id[xid]
                if any(a is X for a in k1.accum):
                    continue          # complete only after k1's loop: nothing can use it there
                comp = self._sinkable(k1, k2, xid)
                if not comp:
                    continue
                k2m = k2.members
                if any(u.id in k2m and u.id not in comp for u in self.users[xid]):
                    continue          # k2 still needs X itself
                boundary = [self.by_id[m] for m in comp if any(
                    u.id in k2m and u.id not in comp for u in self.users[m])]
                if not boundary or any(b.shape != k1.domain for b in boundary):
                    continue
                if sum(b.size * b.dtype.itemsize for b in boundary) >= X.size * X.dtype.itemsize:
                    continue
                if not self._rows_stay_current(k1, comp, roots=boundary):
                    continue          # a boundary value reads a row reduction at another row
                for b in boundary:
                    k1.roots.append(b)
                    self.group_of[b.id] = k1
                    for u in self.users[b.id]:
                        self.reasons[(b.id, u.id)] = (
                            f"{b.op} is computed early, by the kernel that produces its input "
                            f"{X.op} (which can then be freed), and stored for {u.op}")
                k1.members |= comp
                k2.members -= comp
                self.refresh(k1, gained=comp)
                self.refresh(k2, lost=comp)
                self.stored_epoch += 1
                readers[xid].discard(k2.gid)      # k2 reads the boundary values instead
                for b in boundary:
                    readers.setdefault(b.id, set()).add(k2.gid)

    def _sinkable(self, k1: _Group, k2: _Group, xid) -> set:
        """The members of k2 computed from X (``xid``, stored by k1) and what k1
        computes (leaves, its members but its accumulations, X): found from
        X's users forwards, in graph order (an input is decided before its
        users)."""
        accum = {a.id for a in k1.accum}
        k1m, k2m = k1.members, k2.members
        k2_roots = {r.id for r in k2.roots}
        kind, pos, users, required = self.kind, self.pos, self.users, self.required
        comp = set()
        heap = list({pos[u.id] for u in users[xid] if u.id in k2m})
        heapq.heapify(heap)
        queued = set(heap)
        while heap:
            n = self.nodes_at[heapq.heappop(heap)]
            mid = n.id
            if kind[mid] != "ew" or mid in k2_roots and mid in required:
                continue
            # every input is a leaf, in comp, X or computed by k1 (not an accumulation)
            if all(i.is_leaf or i.id in comp or i.id == xid or
                   (i.id in k1m and i.id not in accum) for i in n.inputs):
                comp.add(mid)
                for u in users[mid]:
                    p = pos[u.id]
                    if u.id in k2m and p not in queued:
                        queued.add(p)
                        heapq.heappush(heap, p)
        return comp

    def _read_inside(self, c: _Group, r: Node) -> bool:
        if r.id not in c.members:
            return r.id in c.reads
        return any(r.id in {i.id for i in self.by_id[m].inputs} for m in c.members)
