"""The LLVM backend's planner: completes fusion's kernels and memory's
offsets into a :class:`~graphc.backend.schedule.Plan` — the copy, staging and
update kernels, the arena's staging slots and workspace, and how each
kernel uses the threads — so that the emitter (emit.py) only translates.

Threads: a GEMM of at least PAR_MACS multiply-adds (and 64 rows or columns)
is split by rows of C (or by columns, when it has more columns than rows); a
loop nest of at least PAR_ELEMS element-ops with an outer loop of 2 or more
rows is split by rows; a kernel storing one scalar reduction of that size is
reduced in ``threads`` fixed chunks, combined in chunk order by thread 0 (the
same arithmetic whatever the thread count). Other kernels run on thread 0.
In a threaded module the threads wait for each other (a barrier) after a
kernel when it or the next one runs on every thread: the pool starts a
phase only when the previous one is done (emit.py, pool.py).

Workspace: per-thread scratch (the GEMM's packing buffers, a chunked
reduction's partials, a row kernel's row cache). Kernels run one after
another, so they share one region of ``threads`` slices, each as large as the
largest need, at the end of the arena.
"""
from __future__ import annotations

from ...ir.graph import Graph
from ...ops import registry
from ..plan import Kernel, MemoryPlan, align, is_immediate, nbytes
from ..schedule import ArgLayout, Plan, PlanError, Step, member_nodes
from . import matmul

# Below these sizes a kernel stays on one thread: where splitting it started
# to win on the 2-CPU development machine (benchmarks/thread_crossover.py,
# docs/performance.md): loop nests at 128K element-ops, scalar reductions
# at 24K, GEMMs at 256K multiply-adds (64x64x64; smaller ones have too few rows)
PAR_ELEMS = 1 << 17     # loop nests: elements x ops
PAR_REDUCE = 1 << 15    # scalar reductions: elements x ops
PAR_MACS = 1 << 18      # GEMMs: multiply-adds
# A split loop nest or scalar reduction is cut into threads x
# CHUNKS_PER_THREAD chunks, claimed by whichever thread runs (pool.py): a
# worker that starts late takes a small share, and the caller never waits
# long for it. (A split GEMM has one chunk per thread: each chunk packs its
# own operand panels.)
CHUNKS_PER_THREAD = 4


def build_plan(graph: Graph, kernels: list[Kernel], mem: MemoryPlan, threads: int = 1) -> Plan:
    """The complete plan of ``graph`` from fusion's ``kernels`` and the memory
    plan ``mem``, for ``threads`` threads."""
    threads = max(1, int(threads))
    if any(registry.get(n.op).extra.get("calls_host") for n in graph.nodes if not n.is_leaf):
        # a host callback must run on the thread that called (its frame, its
        # exceptions: runtime.HostedCall), and the pool runs tasks anywhere
        threads = 1
    layout = ArgLayout(graph, len(graph.outputs))
    where = {nid: ("slot", k) for nid, k in layout.slot.items()}
    copies = []                           # (node, output index) copied to the output
    for j, o in enumerate(graph.outputs):
        if o.id not in where and not o.is_leaf:
            where[o.id] = ("slot", layout.output0 + j)
        else:
            copies.append((o, j))
    values = {}
    for nid, off in mem.arena.items():
        if nid not in where:
            where[nid] = values[nid] = ("arena", off)
    for vid, p in mem.direct.items():     # new values written straight into their parameter
        where[vid] = where[p.id]
        values.pop(vid, None)
    plan = Plan(graph, kernels, mem, threads, layout, where,
                chunks_per_thread=CHUNKS_PER_THREAD if threads > 1 else 1,
                values={nid: loc[1] for nid, loc in values.items()},
                arena_size=mem.size)
    # A new value that is itself an updated parameter (a swap) is staged:
    # copied to the arena before any kernel runs.
    updated = {p.id for p, _ in graph.updates}
    for _, v in graph.updates:
        if v.op == "parameter" and v.id in updated:
            size = align(nbytes(v))
            plan.staging.append((v, plan.arena_size, size))
            plan.arena_size += size
    plan.steps = _steps(plan, copies)
    for s in plan.steps:
        _complete(plan, s)
    need = max((s.workspace for s in plan.steps), default=0)
    if need:
        plan.workspace = (plan.arena_size, align(need))
        plan.arena_size += align(need) * threads
        ws = plan.workspace_loc()
        for s in plan.steps:
            if s.workspace:
                s.args.append(ws)
    threaded = plan.threaded
    if threaded:
        # the job site's record of whether threads paid lately (pool._judge):
        # each thread's arena starts zeroed and lives as long as the function
        plan.pool_state = plan.arena_size
        plan.arena_size += align(8)
    for s, nxt in zip(plan.steps, plan.steps[1:]):
        s.barrier = threaded and (s.parallel or nxt.parallel)
    return plan


def _steps(plan: Plan, copies: list) -> list[Step]:
    """Every kernel in run order. Every read of a parameter's old value comes
    before any write of a parameter: copies of leaves (a parameter returned
    as an output) and staging copies run first, before any kernel (a kernel
    may write an update straight into its parameter, see fusion's
    _direct_updates, after the kernels that read it); the other updates run
    last."""
    g, lay = plan.graph, plan.layout
    first = []
    work = [(k, "kernel", None, None) for k in plan.kernels]
    for node, j in copies:
        (first if node.is_leaf else work).append(
            (Kernel("loop", [node], set(), node.shape, name=f"copy_out{j}"), "copy",
             ("slot", lay.output0 + j), None))
    stage_loc = {}
    for v, off, _ in plan.staging:
        first.append((Kernel("loop", [v], set(), v.shape, name=f"stage_{v.name}"), "stage",
                      ("arena", off), None))
        stage_loc[v.id] = ("arena", off)
    work = first + work
    for p, v in g.updates:
        if v.id in plan.memory.direct:
            continue                          # its kernel writes it into the parameter
        work.append((Kernel("loop", [v], set(), v.shape, name=f"update_{p.name}"), "update",
                     plan.where[p.id], stage_loc.get(v.id)))
    # a loop kernel that stores only empty arrays has an empty domain:
    # nothing to compute and nothing to check, yet its loop nest could still
    # be long (a (2**40, 0) domain). Custom kernels (scatter_add) may check
    # other inputs (indices), so they always run.
    work = [w for w in work if w[0].kind == "custom" or any(o.size for o in w[0].outputs)]
    return [Step(i, k, role, dest, src) for i, (k, role, dest, src) in enumerate(work)]


def _complete(plan: Plan, s: Step) -> None:
    """The step's buffers, GEMM call, thread split and workspace need."""
    k = s.kernel
    if k.matmul is not None:
        s.matmul_plan = matmul.plan_matmul(k.matmul, k.members, lambda x: not is_immediate(x))
    s.gemm, s.loop = parallel(k, s.dest, plan.threads, s.matmul_plan)
    s.row_cache, rc_bytes = row_cache(k, s.dest)
    s.workspace = max(s.matmul_plan.workspace_bytes if s.matmul_plan is not None else 0,
                      8 * plan.chunks_per_thread if s.loop == "chunks" else 0, rc_bytes)

    def loc(n, writing=False):
        if writing and s.dest is not None:
            return s.dest
        if not writing and s.src is not None and n is k.root:
            return s.src
        try:
            return plan.where[n.id]
        except KeyError:
            raise PlanError(f"no buffer planned for {n!r} (kernel {k.name})") from None
    args = []
    for m in member_nodes(k):
        for i in m.inputs:
            if i.id not in k.members and not is_immediate(i):
                s.reads.append((i, loc(i)))
                args.append(s.reads[-1][1])
    for o in k.outputs:
        if o.id not in k.members and not is_immediate(o):
            s.reads.append((o, loc(o)))           # a copy reads its source
            args.append(s.reads[-1][1])
        s.writes.append((o, loc(o, writing=True)))
        args.append(s.writes[-1][1])
    s.args = list(dict.fromkeys(args))
    seen = set()
    s.reads = [r for r in s.reads if (r[0].id, r[1]) not in seen and not seen.add((r[0].id, r[1]))]


def parallel(k: Kernel, dest, threads: int, gemm_plan) -> tuple:
    """How kernel k uses the threads: (GEMM split: None | "rows" | "cols",
    loop split: None | "rows" | "chunks")."""
    gemm = loop = None
    if threads == 1 or k.kind == "custom":
        return gemm, loop
    p = gemm_plan
    if p is not None and p.m * p.n * p.k >= PAR_MACS and max(p.m, p.n) >= 64:
        gemm = "rows" if p.m >= p.n else "cols"
    has_loop = k.has_loop() or dest is not None
    if not has_loop or k.accumulates:
        return gemm, loop
    n_el = 1
    for d in k.shape:
        n_el *= d
    ops = max(1, len(k.members))
    outs = k.loop_outputs() if dest is None else k.outputs
    if k.split >= 1 and k.shape[0] >= 2 and n_el * ops >= PAR_ELEMS:
        loop = "rows"
    elif (dest is None and k.matmul is None and not k.hoisted and len(outs) == 1 and
          outs[0].size == 1 and registry.get(outs[0].op).kind == "reduce" and
          outs[0].inputs[0].size * ops >= PAR_REDUCE and
          outs[0].inputs[0].shape[outs[0].attrs["axes"][0]] >= 2 * threads * CHUNKS_PER_THREAD):
        loop = "chunks"
    return gemm, loop


def row_cache(k: Kernel, dest) -> tuple:
    """Row kernels: a costly value that a hoisted reduction consumes and the
    stored outputs need again (softmax's ``exp(x - max)``) is kept in a
    per-thread row buffer while the reduction runs, and loaded, not
    recomputed, by the inner loop. Returns (values to cache, bytes)."""
    if k.kind == "custom" or k.split >= len(k.shape) or not k.hoisted or dest is not None:
        return [], 0
    staged = k.staged()
    needed, stack = set(), list(k.loop_outputs())
    while stack:
        n = stack.pop()
        if n.id in needed or n.id not in k.members or n.id in staged:
            continue
        needed.add(n.id)
        stack.extend(n.inputs)
    cands = list(dict.fromkeys(
        r.inputs[0] for r in k.hoisted
        if r.inputs[0].id in needed and r.inputs[0].shape == k.shape
        and registry.get(r.inputs[0].op).cost >= registry.COSTLY
        and r.inputs[0].id not in staged))
    inner = 1
    for d in k.shape[k.split:]:
        inner *= d
    if inner == 0:          # empty rows: nothing to cache (and no buffer to point at)
        return [], 0
    size = sum(align(inner * c.dtype.itemsize) for c in cands)
    return (cands, size) if size else ([], 0)
