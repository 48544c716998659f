"""Memory planning: every stored intermediate gets an offset in one arena.

Values are placed in kernel order. A value's buffer is freed after the last
kernel that reads it, and later values reuse freed space (best fit). At
opt_level 3 an elementwise output may also take the buffer of an input that
dies in the same kernel, when the kernel reads that input only at the index
it writes and its elements have the output's size (*in place*). Graph
outputs are written straight into the arrays returned to the caller and take
no arena space.
"""
from __future__ import annotations

from ..backend.plan import Kernel, MemoryPlan, align, nbytes, plan_memory_naive, reads_only_at_write_index
from ..ir.graph import Graph
from .manager import Pass, PassContext, register_pass


def plan_memory(graph: Graph, kernels: list[Kernel], inplace: bool = True,
                direct: dict | None = None) -> MemoryPlan:
    by_id = {n.id: n for n in graph.nodes}
    out_ids = {o.id for o in graph.outputs} | set(direct or ())   # not in the arena
    nk = len(kernels)
    # value -> defining kernel, last kernel that reads it
    define, last = {}, {}
    for i, k in enumerate(kernels):
        for o in k.outputs:
            define.setdefault(o.id, i)
            last.setdefault(o.id, i)
        for mid in k.members:
            for inp in by_id[mid].inputs:
                if inp.id in define and inp.id not in k.members:
                    last[inp.id] = max(last.get(inp.id, i), i)
        for st in k.staged():       # staged values are read by the rest of their kernel
            last[st] = max(last.get(st, i), i)
    for _, v in graph.updates:      # update copies run after every kernel
        if v.id in last:
            last[v.id] = nk
    for o in graph.outputs:
        if o.id in last:
            last[o.id] = nk

    free: list[tuple[int, int]] = []        # (offset, size) blocks
    top = 0
    offsets: dict[int, int] = {}
    live: dict[int, int] = {}                # value id -> bytes (arena values)
    plan = MemoryPlan({}, 0)
    peak = 0
    out_bytes_live = 0

    def alloc(size):
        nonlocal top
        best = None
        for j, (_, sz) in enumerate(free):
            if sz >= size and (best is None or sz < free[best][1]):
                best = j
        if best is not None:
            off, sz = free.pop(best)
            if sz > size:
                free.append((off + size, sz - size))
            plan.reused += 1
            return off
        off = top
        top += size
        return off

    def release(off, size):
        free.append((off, size))
        free.sort()
        merged = []
        for o, s in free:
            if merged and merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + s)
            else:
                merged.append((o, s))
        free[:] = merged

    for i, k in enumerate(kernels):
        staged = k.staged()
        taken = set()
        # staged values (the GEMM result, row reductions) first: the loop part reads them
        for o in sorted(k.outputs, key=lambda n: n.id not in staged):
            if o.id in out_ids:
                out_bytes_live += nbytes(o)
                continue
            if o.id in offsets:
                continue
            size = align(nbytes(o))
            if inplace and o.id not in staged and o.shape == k.shape:
                for vid in list(live):
                    x = by_id[vid]
                    if last.get(vid, -1) != i or vid in taken or align(nbytes(x)) != size:
                        continue
                    if x.dtype.itemsize != o.dtype.itemsize:
                        # element j of o would cover other bytes than element j
                        # of x: a float64 written over a bool clobbers the next
                        # seven bools before they are read
                        continue
                    if reads_only_at_write_index(x, k.shape, k.outputs, k.members,
                                                 k.hoisted, k.accumulates, k.matmul):
                        offsets[o.id] = offsets[vid]
                        taken.add(vid)
                        live[o.id] = live.pop(vid)
                        plan.inplace.append((o, x))
                        break
            if o.id not in offsets:
                offsets[o.id] = alloc(size)
                live[o.id] = size
        peak = max(peak, sum(live.values()) + out_bytes_live)
        for vid in [v for v in live if last.get(v, -1) <= i]:
            release(offsets[vid], live.pop(vid))
    plan.arena = offsets
    plan.direct = dict(direct or {})
    plan.size = top
    plan.peak = peak
    plan.naive_size = sum(nbytes(n) for n in graph.op_nodes())
    plan.stored_bytes = sum(nbytes(by_id[v]) for v in offsets) + sum(
        nbytes(o) for o in graph.outputs if not o.is_leaf)
    return plan


class Memory(Pass):
    name = "memory"
    purpose = "memory planning: one arena, buffers reused by liveness, in-place elementwise ops"
    min_level = 0
    plans = True
    changes_graph = False
    requires = ("fusion",)

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        if ctx.kernels is None:
            raise RuntimeError("the memory pass needs the fusion pass's kernels")
        if ctx.opt_level == 0:
            ctx.memory = plan_memory_naive(graph, ctx.kernels)
            ctx.notes.append("opt_level 0: one arena slot per stored value, no reuse")
        else:
            ctx.memory = plan_memory(graph, ctx.kernels, inplace=ctx.opt_level >= 3,
                                     direct=ctx.direct_updates)
        m = ctx.memory
        ctx.notes.append(f"arena {m.size} bytes, peak {m.peak} bytes, one buffer per node "
                         f"{m.naive_size} bytes, {len(m.inplace)} in place")
        return graph


register_pass(Memory())
