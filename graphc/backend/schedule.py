"""The complete plan of a compiled graph (:class:`Plan`): every kernel in run
order — fusion's kernels and the copies, staging and update kernels around
them — with where each reads and writes, how each uses the threads and how
much per-thread workspace it needs; the layout of the entry's pointer
arguments; and the whole arena (values, staging slots, workspace).

The fusion pass decides the kernels, the memory pass the values' offsets;
the backend's planner (``backend/llvm/planner.py``) completes the plan, and
the emitter (``backend/llvm/emit.py``) only translates it. :meth:`Plan.text`
prints it (stable across runs: nodes are numbered as ``Graph.text`` numbers
them); :func:`verify_plan` checks what the emitter relies on.

A location is ``("slot", k)`` — the array passed as argument ``k`` (an
input, a parameter, a constant, an output) — or ``("arena", offset)``, a
byte offset into the arena (the last argument).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from ..errors import GraphcError
from ..ir.graph import Graph, type_str
from .plan import Kernel, MemoryPlan, is_immediate, nbytes

ROLES = ("kernel", "copy", "stage", "update")
GEMM_SPLITS = (None, "rows", "cols")       # a GEMM's rows (or columns) of C per thread
LOOP_SPLITS = (None, "rows", "chunks")     # the outer loop's rows per thread; a scalar
                                           # reduction in fixed chunks, combined by thread 0


class PlanError(GraphcError, RuntimeError):
    """A plan that breaks an invariant the emitter relies on."""


class ArgLayout:
    """The order of pointers in the entry's ``args`` array: placeholders,
    parameters, constants (not the one-element ones: immediates), outputs,
    the arena."""

    def __init__(self, graph: Graph, n_outputs: int):
        self.inputs = list(graph.placeholders)
        self.params = list(graph.parameters)
        self.consts = [c for c in graph.constants if not is_immediate(c)]
        self.n_outputs = n_outputs
        self.slot = {}
        k = 0
        for n in self.inputs + self.params + self.consts:
            self.slot[n.id] = k
            k += 1
        self.output0 = k
        self.arena = k + n_outputs
        self.count = self.arena + 1

    def describe(self, k: int, num: dict) -> str:
        """Argument ``k`` as the plan prints it."""
        ni, np_ = len(self.inputs), len(self.params)
        if k < ni:
            n = self.inputs[k]
            return f"input %{num.get(n.id, '?')} {n.name!r}"
        if k < ni + np_:
            n = self.params[k - ni]
            return f"param %{num[n.id]} {n.name!r}" if n.id in num else f"param {n.name!r}"
        if k < self.output0:
            return f"const %{num[self.consts[k - ni - np_].id]}"
        if k < self.arena:
            return f"out{k - self.output0}"
        return "arena"


def member_nodes(k: Kernel) -> list:
    """The kernel's member nodes reachable from its outputs (depth-first from
    the outputs, an explicit stack): the order the emitter collects the
    buffers a kernel reads."""
    stack, seen, out = list(k.outputs), set(), []
    while stack:
        n = stack.pop()
        if n.id in seen or n.id not in k.members:
            continue
        seen.add(n.id)
        out.append(n)
        stack.extend(n.inputs)
    return out


@dataclass
class Step:
    """One kernel of the plan, in run order.

    role      -- "kernel" (one of fusion's), "copy" (an output that is a leaf,
                 or a second output of the same node), "stage" (a parameter
                 that is another parameter's new value, copied before any
                 kernel runs), "update" (a new value copied into its parameter)
    dest      -- where the outputs are written when not their own buffer
    src       -- where a copy reads its value when not its own buffer
    reads     -- (node, location) of every buffer read, in argument order
    writes    -- (node, location) of every value stored
    args      -- the locations passed to the kernel's function, in order
    gemm      -- how the GEMM is split across threads (GEMM_SPLITS)
    loop      -- how the loop part is split across threads (LOOP_SPLITS)
    workspace -- bytes of per-thread workspace it uses (0: none)
    matmul_plan -- the backend's plan of the GEMM call (None: a loop nest)
    row_cache -- values kept in the per-thread row buffer (row kernels)
    barrier   -- in a threaded module, the threads wait for each other after it
    """
    index: int
    kernel: Kernel
    role: str = "kernel"
    dest: tuple | None = None
    src: tuple | None = None
    reads: list = field(default_factory=list)
    writes: list = field(default_factory=list)
    args: list = field(default_factory=list)
    gemm: str | None = None
    loop: str | None = None
    workspace: int = 0
    matmul_plan: object = None
    row_cache: list = field(default_factory=list)
    barrier: bool = False

    @property
    def name(self) -> str:
        return self.kernel.name

    @property
    def parallel(self) -> bool:
        """Run by every thread (each its share), not by thread 0 alone."""
        return bool(self.gemm or self.loop)

    def label(self) -> str:
        return f"#{self.index} {self.name or self.kernel.kind}"


@dataclass
class Plan:
    """Everything the emitter needs, decided before it runs (except the table
    of run-time error messages, which the op lowerings add while they are
    emitted: it stays in the emitter, ``ModuleEmitter.errors``)."""
    graph: Graph
    kernels: list                     # fusion's kernels (Kernel), as planned
    memory: MemoryPlan
    threads: int
    layout: ArgLayout
    where: dict                       # node id -> location of its buffer
    steps: list = field(default_factory=list)
    values: dict = field(default_factory=dict)    # node id -> arena offset
    staging: list = field(default_factory=list)   # (node, arena offset, bytes)
    workspace: tuple | None = None    # (arena offset, bytes per thread) or None
    arena_size: int = 0               # the bytes the runtime allocates
    chunks_per_thread: int = 1        # a split kernel's chunks: threads x this
    pool_state: int | None = None     # threaded: arena offset of the pool's 8-byte record

    @property
    def chunks(self) -> int:
        """How many chunks a kernel run by every thread is cut into (fixed at
        compile time, so results do not depend on the threads that run it)."""
        return self.threads * self.chunks_per_thread

    @property
    def threaded(self) -> bool:
        return any(s.parallel for s in self.steps)

    @property
    def ws_stride(self) -> int:
        return self.workspace[1] if self.workspace else 0

    def workspace_loc(self):
        return ("arena", self.workspace[0]) if self.workspace else None

    # -- text -----------------------------------------------------------------------
    def text(self) -> str:
        """A stable, readable listing: the arguments, every kernel in run order
        (kind, name, domain, split, what it reads and writes where, threads,
        workspace), then the arena map."""
        num = self.graph.numbering()
        lay = self.layout
        where = _describe_loc(lay, num)
        inplace = {o.id: x for o, x in self.memory.inplace}
        lines = [f"plan: {len(self.steps)} kernel{'' if len(self.steps) == 1 else 's'}, "
                 f"{self.threads} thread{'' if self.threads == 1 else 's'}"
                 + (f", threaded ({self.chunks} chunks per split kernel)" if self.threaded else "")
                 + f", arena {self.arena_size} B"]
        lines.append("args: " + " | ".join(f"{k} {lay.describe(k, num)}" for k in range(lay.count)))
        for s in self.steps:
            k = s.kernel
            dom = "x".join(str(d) for d in k.shape) or "scalar"
            if k.split < len(k.shape):
                dom += f" (rows of {'x'.join(str(d) for d in k.shape[:k.split]) or '1'})"
            kind = k.kind if s.role == "kernel" else s.role
            if kind == "matmul":
                kind = "gemm" if s.matmul_plan is not None else "matmul"
            if s.parallel:
                how = ", ".join(f"{what} {h}" for what, h in (("gemm", s.gemm), ("loop", s.loop))
                                if h)
                thr = f"all threads: {how}"
            else:
                thr = "one thread"
            extra = f" | workspace {s.workspace} B" if s.workspace else ""
            if s.barrier:
                extra += " | barrier"
            lines.append(f"  #{s.index:<3} {kind:<6} {s.name!r} domain {dom} | {thr}{extra}")
            if s.role == "kernel":
                ops = list(dict.fromkeys(m.op for m in _sorted_members(k, num)))
                lines.append(f"        {len(k.members)} member(s): {' '.join(ops)}")
                if k.hoisted or k.accumulates or s.row_cache:
                    parts = []
                    for what, ns in (("row reductions", k.hoisted),
                                     ("accumulates", k.accumulates), ("row cache", s.row_cache)):
                        if ns:
                            parts.append(f"{what} " + " ".join(f"%{num[n.id]}" for n in ns))
                    lines.append("        " + "; ".join(parts))
            rd = [f"%{num[n.id]}@{where(loc)}" for n, loc in s.reads]
            if rd:
                lines.append(f"        reads  {' '.join(rd)}")
            for n, loc in s.writes:
                note = ""
                if n.id in inplace:
                    note = f" (in place of %{num[inplace[n.id].id]})"
                elif n.id in self.memory.direct:
                    note = f" (new value of {self.memory.direct[n.id].name!r}, in place)"
                lines.append(f"        writes %{num[n.id]}:{type_str(n)} -> {where(loc)}{note}")
        lines.extend(self._arena_lines(num))
        return "\n".join(lines)

    def _arena_lines(self, num: dict) -> list:
        first, last = _live_steps(self)
        ws = self.workspace
        lines = [f"arena {self.arena_size} B: values "
                 f"{self.memory.size}, staging {sum(b for _, _, b in self.staging)}, workspace "
                 + (f"{self.threads} x {ws[1]}" if ws else "0")]
        rows = []
        by_id = {n.id: n for n in self.graph.nodes}
        for nid, off in self.values.items():
            n = by_id[nid]
            key = ("arena", off)
            span = f"#{first.get((nid, key), '?')}-#{last.get((nid, key), '?')}"
            rows.append((off, first.get((nid, key), -1), off + nbytes(n),
                         f"%{num[nid]}:{type_str(n)} live {span}"))
        for n, off, size in self.staging:
            key = ("arena", off)
            span = f"#{first.get((n.id, key), '?')}-#{last.get((n.id, key), '?')}"
            rows.append((off, first.get((n.id, key), -1), off + size,
                         f"staging %{num[n.id]} {n.name!r} live {span}"))
        if ws:
            rows.append((ws[0], -1, ws[0] + ws[1] * self.threads,
                         f"workspace {self.threads} x {ws[1]} B"))
        if self.pool_state is not None:
            rows.append((self.pool_state, -1, self.pool_state + 8,
                         "pool state (did threads pay lately)"))
        w = len(str(self.arena_size))
        for lo, _, hi, what in sorted(rows, key=lambda r: r[:3]):
            lines.append(f"  [{lo:>{w}}, {hi:>{w}})  {what}")
        return lines


def _sorted_members(k: Kernel, num: dict) -> list:
    by_id = {}
    stack = list(k.outputs)
    while stack:                       # members reachable from the outputs
        n = stack.pop()
        if n.id in by_id or n.id not in k.members:
            continue
        by_id[n.id] = n
        stack.extend(n.inputs)
    return sorted(by_id.values(), key=lambda n: num.get(n.id, 1 << 30))


def _describe_loc(lay: ArgLayout, num: dict):
    def where(loc) -> str:
        kind, k = loc
        if kind == "arena":
            return f"arena+{k}"
        if k >= lay.output0 and k < lay.arena:
            return f"out{k - lay.output0}"
        if k < len(lay.inputs):
            return f"in{k}"
        if k < len(lay.inputs) + len(lay.params):
            return f"param{k - len(lay.inputs)}"
        return f"const{k - len(lay.inputs) - len(lay.params)}"
    return where


def _live_steps(plan: Plan):
    """(node id, location) -> first step writing it, last step reading it."""
    first, last = {}, {}
    for s in plan.steps:
        for n, loc in s.reads:
            last[(n.id, loc)] = s.index
        for n, loc in s.writes:
            first.setdefault((n.id, loc), s.index)
            last.setdefault((n.id, loc), s.index)
    return first, last


# -- verification ---------------------------------------------------------------------
def verify_plan(plan: Plan, deep: bool = False) -> None:
    """Check every invariant the emitter relies on; raise :class:`PlanError`
    naming the kernel and the problem. Linear in the plan's size (plus a
    log factor for the arena's interval checks): a value written over
    another one that is still live must be recorded by the memory plan as
    in place (an update written into its parameter: as direct). ``deep``
    also re-derives that each such kernel reads the value it overwrites
    only at the index it writes (``reads_only_at_write_index``, a walk of
    the kernel per value: the tests use it, the compiler does not)."""
    from .plan import reads_only_at_write_index
    g, lay = plan.graph, plan.layout
    num = g.numbering()
    inplace_pairs = {(o.id, x.id) for o, x in plan.memory.inplace}

    def reads_only(s, x):
        k = s.kernel
        return reads_only_at_write_index(x, k.shape, k.outputs, k.members, k.hoisted,
                                         k.accumulates, k.matmul)

    def overwrite_problem(s, n, x):
        """Why kernel s may not write n over x (None: it may)."""
        k = s.kernel
        if s.role != "kernel" or n.shape != k.shape or n.id in k.staged() or \
                x.dtype.itemsize != n.dtype.itemsize:
            return "not a value this kernel may overwrite in place"
        if (n.id, x.id) not in inplace_pairs:
            return "not recorded as in place by the memory plan"
        if deep and not reads_only(s, x):
            return "the kernel reads it at other indices than it writes"
        return None

    def name(n):
        return f"%{num.get(n.id, '?')}" + (f" {n.name!r}" if n.is_leaf else f" ({n.op})")

    def fail(step, msg):
        raise PlanError(f"plan: kernel {step.label()}: {msg}")
    if plan.arena_size < 0:
        raise PlanError(f"plan: arena of {plan.arena_size} B")
    for i, s in enumerate(plan.steps):
        if s.index != i:
            raise PlanError(f"plan: kernel {s.label()} is at position {i}")
    readonly = {lay.slot[n.id] for n in lay.inputs + lay.consts}
    param_slot = {lay.slot[p.id]: p for p in lay.params}
    content = {("slot", k): nid for nid, k in lay.slot.items()}   # what each location holds
    writer = {}
    first, last = _live_steps(plan)
    intervals = _ArenaIntervals()
    for s in plan.steps:
        if s.role not in ROLES:
            fail(s, f"unknown role {s.role!r}")
        _check_split(plan, s, fail)
        for n, loc in s.reads:
            held = content.get(loc)
            if held == n.id or n.size == 0:     # (empty arrays: nothing is read)
                continue
            if held is None:
                fail(s, f"reads {name(n)} at {loc} before any kernel writes it")
            by = writer.get(loc)
            if n.is_leaf and loc == ("slot", lay.slot.get(n.id)):
                fail(s, f"reads the old value of {name(n)} after kernel {by} overwrote it "
                        "(an update must run after every reader of the old value)")
            fail(s, f"reads {name(n)} at {loc}, which holds another value by then "
                    f"(written by kernel {by})")
        staged = s.kernel.staged()
        # in the order the kernel makes them: its staged values (the GEMM's
        # result, before the loop that may reuse its memory) first
        for n, loc in sorted(s.writes, key=lambda w: w[0].id not in staged):
            kind, off = loc
            if kind == "slot":
                if off in readonly or off >= lay.count:
                    fail(s, f"writes {name(n)} into argument {off} ({lay.describe(off, num)}), "
                            "which graphc may not write")
                if off == lay.arena:
                    fail(s, f"writes {name(n)} to the arena pointer slot")
                p = param_slot.get(off)
                if p is not None and s.role == "kernel":
                    # a new value written straight into its parameter (direct update)
                    if n.shape != p.shape or plan.memory.direct.get(n.id) is not p:
                        fail(s, f"writes {name(n)} straight into {name(p)}, which the memory "
                                "plan does not record as its new value written in place")
                    if deep and any(r is p for r, _ in s.reads) and not reads_only(s, p):
                        fail(s, f"writes {name(n)} straight into {name(p)}, which it reads "
                                "at other indices than it writes")
            else:
                end = off + nbytes(n)
                if off < 0 or end > plan.arena_size:
                    fail(s, f"{name(n)} at arena [{off}, {end}) is outside the arena's values "
                            f"[0, {plan.arena_size})")
                intervals.define(plan, s, n, off, end, last.get((n.id, loc), s.index), fail,
                                 overwrite_problem)
            content[loc] = n.id
            writer[loc] = s.label()
        intervals.release(s.index)
    for j, o in enumerate(g.outputs):
        loc = ("slot", lay.output0 + j)
        if content.get(loc) != o.id and o.size:
            raise PlanError(f"plan: output {j} ({name(o)}) is never written to out{j}")
    for p, v in g.updates:
        loc = ("slot", lay.slot[p.id])
        if content.get(loc) != v.id and v.size:
            raise PlanError(f"plan: parameter {p.name!r} does not hold its new value "
                            f"{name(v)} after the last kernel")
    _check_workspace(plan, first)


def _check_split(plan: Plan, s: Step, fail) -> None:
    k = s.kernel
    if s.gemm not in GEMM_SPLITS:
        fail(s, f"unknown GEMM split {s.gemm!r} (one of {GEMM_SPLITS})")
    if s.loop not in LOOP_SPLITS:
        fail(s, f"unknown loop split {s.loop!r} (one of {LOOP_SPLITS})")
    if s.parallel and plan.threads == 1:
        fail(s, "is split across threads in a one-thread plan")
    if s.parallel and k.kind == "custom":
        fail(s, "is a custom kernel split across threads")
    if s.gemm and s.matmul_plan is None:
        fail(s, f"splits a GEMM ({s.gemm}) but calls none")
    if s.loop and k.accumulates:
        fail(s, "splits a loop that accumulates reductions across its rows")
    if s.loop == "rows" and (k.split < 1 or not k.shape or k.shape[0] < 2):
        fail(s, f"splits the rows of a domain {k.shape} without an outer axis of 2 or more")
    if s.loop == "chunks":
        outs = k.outputs if s.dest is not None else k.loop_outputs()
        if s.dest is not None or k.matmul is not None or k.hoisted or len(outs) != 1 or \
                outs[0].size != 1 or "axes" not in outs[0].attrs:
            fail(s, "splits into chunks, which only a kernel storing one scalar reduction can")
        if s.workspace < 8:
            fail(s, "splits into chunks without workspace for the partial results")
    if s.workspace and (plan.workspace is None or s.workspace > plan.workspace[1]):
        fail(s, f"needs {s.workspace} B of workspace per thread, the plan has "
                f"{plan.ws_stride}")
    if s.workspace and plan.workspace_loc() not in s.args:
        fail(s, "needs workspace but is not passed it")


def _check_workspace(plan: Plan, first: dict) -> None:
    if plan.workspace is None:
        return
    off, stride = plan.workspace
    end = off + stride * plan.threads
    if off < 0 or end > plan.arena_size or stride < 0:
        raise PlanError(f"plan: the workspace [{off}, {end}) is outside the arena "
                        f"[0, {plan.arena_size})")
    by_id = {n.id: n for n in plan.graph.nodes}
    num = plan.graph.numbering()
    regions = [(o, o + nbytes(by_id[nid]), f"%{num[nid]}") for nid, o in plan.values.items()]
    regions += [(o, o + size, f"staging of {n.name!r}") for n, o, size in plan.staging]
    for lo, hi, what in regions:
        if lo < end and off < hi:
            raise PlanError(f"plan: the workspace [{off}, {end}) overlaps {what} at "
                            f"[{lo}, {hi})")


class _ArenaIntervals:
    """The arena values live at the current kernel, sorted by offset (they
    never overlap, so sorted by end too)."""

    def __init__(self):
        self.starts: list = []
        self.items: list = []          # (start, end, node, last step)
        self.dying: dict = {}          # step -> [start]

    def define(self, plan, s, n, start, end, last, fail, overwrite_problem):
        j = bisect.bisect_right(self.starts, start)
        lo = j - 1 if j and self.items[j - 1][1] > start else j
        hi = j
        while hi < len(self.items) and self.items[hi][0] < end:
            hi += 1
        for a, b, x, xlast in self.items[lo:hi]:
            if x.id == n.id and (a, b) == (start, end):
                return                 # rewritten by the same kernel (a staged value)
            why = None
            if xlast == s.index and (a, b) == (start, end):
                why = overwrite_problem(s, n, x)
                if why is None:
                    continue           # in place: x dies in this kernel
            num = plan.graph.numbering()
            fail(s, f"writes %{num.get(n.id, '?')} at arena [{start}, {end}), which overlaps "
                    f"%{num.get(x.id, '?')} at [{a}, {b}), live until kernel #{xlast}"
                    + (f" ({why})" if why else ""))
        del self.starts[lo:hi]
        del self.items[lo:hi]
        self.starts.insert(lo, start)
        self.items.insert(lo, (start, end, n, last))
        self.dying.setdefault(last, []).append((start, n.id))

    def release(self, step: int):
        for start, nid in self.dying.pop(step, ()):
            j = bisect.bisect_left(self.starts, start)
            if j < len(self.items) and self.items[j][0] == start and self.items[j][2].id == nid:
                del self.starts[j]
                del self.items[j]
