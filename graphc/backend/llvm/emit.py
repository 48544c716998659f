"""Emit one LLVM module for a planned graph.

The module has one entry point, ``i32 graphc_main(ptr args)``: ``args`` is
an array of pointers (placeholders, parameters, constants, outputs, arena, in
the order of :class:`ArgLayout`). The entry calls one internal function per
kernel, passing each the buffers it touches as ``noalias`` pointers (O3
inlines them and keeps the no-alias facts). The return value is 0, or the
code of the first failed run-time check (see ``error_if``).

Inside a kernel every value is produced by :meth:`KernelEmitter.eval`, which
computes node ``n`` at index ``idx``: a node outside the kernel is loaded from
its buffer; a member node is computed from its inputs by its op's lowering
rule — elementwise ops through the scalar builder, movement ops through index
arithmetic, reductions as an inner loop. Fusion is therefore only a matter
of which nodes are members of which kernel.
"""
from __future__ import annotations

from llvmlite import ir

from ..plan import Kernel, MemoryPlan
from ..schedule import ArgLayout, Plan  # noqa: F401  (ArgLayout: emit.ArgLayout, as before)
from . import rtlib
from .host import clock_intrinsic, vector_width
from .kernel import KernelEmitter
from .planner import build_plan
from .scalar import I8, I32, I64, PTR
from .shard import PART_PREFIX

ENTRY = "graphc_main"
PART_STEPS = 64                  # kernel calls per part of a long entry (_schedule_parts)


class ModuleEmitter:
    """Translates a :class:`~graphc.backend.schedule.Plan` into one LLVM
    module. ``ModuleEmitter(plan)``, or ``ModuleEmitter(graph, kernels, mem,
    threads=...)``, which plans first (``planner.build_plan``)."""

    def __init__(self, plan, kernels: list[Kernel] | None = None, mem: MemoryPlan | None = None,
                 name="graphc", threads: int = 1, profile: bool = False):
        if not isinstance(plan, Plan):
            plan = build_plan(plan, kernels, mem, threads)
        if profile and plan.threaded:
            raise ValueError("ModuleEmitter: profiling needs a one-thread plan")
        self.plan = plan
        # profile: every step's cycles are added to an int64 counter in the
        # arena, past the plan's values (profile_offset + 8 * step index)
        self.profile = profile
        self.profile_offset = -(-plan.arena_size // 64) * 64
        self.graph = plan.graph
        self.threads = plan.threads
        self.kernels = plan.kernels
        self.mem = plan.memory
        self.layout = plan.layout
        self.where = plan.where
        self.module = ir.Module(name=name)
        self.errors: list[str] = []           # code k+1 -> message (added while emitting)
        self.kernel_fns: dict = {}            # structure key -> function (identical kernels)
        self.reused_kernels = 0               # kernels that called a function emitted before

    @property
    def arena_size(self) -> int:
        """The arena the runtime allocates: the plan's, and the profile counters."""
        if self.profile:
            return self.profile_offset + 8 * len(self.plan.steps)
        return self.plan.arena_size

    def ws_stride(self) -> int:
        return self.plan.ws_stride

    def error_code(self, message: str) -> int:
        if message in self.errors:
            return self.errors.index(message) + 1
        self.errors.append(message)
        return len(self.errors)

    def emit(self) -> ir.Module:
        steps = self.plan.steps
        threaded = self.plan.threaded
        fnty = ir.FunctionType(I32, [PTR])
        entry = ir.Function(self.module, fnty, ENTRY)
        vector_width(entry)
        entry.args[0].add_attribute("noalias")
        b = ir.IRBuilder(entry.append_basic_block("entry"))
        status = b.alloca(I32, name="status")
        b.store(ir.Constant(I32, 0), status)
        if not threaded:
            self._schedule_parts(b, entry.args[0], status, steps)
        else:
            # the job: phases of tasks, run by graphc_rt_parallel on the pool,
            # each task a call graphc_task(ctx, phase, chunk, slot); ctx = {args, status}
            ctx = b.alloca(PTR, 2, name="ctx")
            b.store(entry.args[0], ctx)
            b.store(status, b.gep(ctx, [ir.Constant(I64, 1)], source_etype=PTR))
            task, widths = self._task_fn(steps)
            table = ir.GlobalVariable(self.module, ir.ArrayType(I32, len(widths)), "graphc_widths")
            table.linkage = "internal"
            table.global_constant = True
            table.initializer = ir.Constant(ir.ArrayType(I32, len(widths)), widths)
            rtlib.uses(self.module, "threads")
            slot = b.gep(entry.args[0], [ir.Constant(I64, self.layout.arena)], source_etype=PTR,
                         inbounds=True)
            state = b.gep(b.load(slot, typ=PTR), [ir.Constant(I64, self.plan.pool_state)],
                          source_etype=I8, inbounds=True, name="pool_state")
            run = ir.Function(self.module, ir.FunctionType(ir.VoidType(),
                                                           [PTR, PTR, PTR, I32, I32, PTR]),
                              "graphc_rt_parallel")
            b.call(run, [task, ctx, b.bitcast(table, PTR), ir.Constant(I32, len(widths)),
                         ir.Constant(I32, self.threads), state])
        b.ret(b.load(status, typ=I32))
        return self.module

    def _schedule_parts(self, b, args, status, steps):
        """Call every kernel in order in ``b``'s function, or, when there are
        more than :data:`PART_STEPS`, call internal functions
        ``graphc_part<k>(args, status)`` that call :data:`PART_STEPS` each.
        LLVM's register allocator spent time growing with the square of a
        straight-line entry's length (every pointer and callee address live
        across every call: 1.8 s for 2000 calls, when the kernels it called
        were in another shard); bounded parts keep it linear, for one extra
        call per part at run time."""
        if len(steps) <= PART_STEPS:
            self._calls(b, args, status, [(KernelEmitter(self, st), 0) for st in steps])
            return
        fnty = ir.FunctionType(ir.VoidType(), [PTR, PTR])
        for k in range(0, len(steps), PART_STEPS):
            part = ir.Function(self.module, fnty, f"{PART_PREFIX}{k // PART_STEPS}")
            part.linkage = "internal"
            part.attributes.add("nounwind")
            part.attributes.add("noinline")
            vector_width(part)
            for a in part.args:
                a.add_attribute("noalias")
            pb = ir.IRBuilder(part.append_basic_block("entry"))
            self._calls(pb, *part.args, [(KernelEmitter(self, st), 0)
                                         for st in steps[k:k + PART_STEPS]])
            pb.ret_void()
            b.call(part, [args, status])

    def _calls(self, b, args, status, calls, chunk=None, chunks=1, slot=None):
        """Call each ``(kernel emitter, phase)`` of ``calls`` in order, as
        chunk ``chunk`` (default 0) of ``chunks``, on thread ``slot`` (default
        0). Every pointer into the arguments or the arena is computed once,
        before the first call."""
        ptr = {}

        def pointer(loc):
            if loc not in ptr:
                kind, k = loc
                if kind == "slot":
                    p = b.gep(args, [ir.Constant(I64, k)], source_etype=PTR, inbounds=True)
                    ptr[loc] = b.load(p, typ=PTR, name=f"arg{k}")
                else:
                    base = pointer(("slot", self.layout.arena))
                    ptr[loc] = b.gep(base, [ir.Constant(I64, k)], source_etype=I8,
                                     inbounds=True, name=f"arena{k}")
            return ptr[loc]
        for ke, _ in calls:
            for loc in ke.step.args:
                pointer(loc)
        zero = ir.Constant(I32, 0)
        chunk = zero if chunk is None else chunk
        slot = zero if slot is None else slot
        clock = self._clock() if self.profile else None
        for ke, phase in calls:
            fn, locs = ke.build()
            t0 = b.call(clock, []) if clock else None
            b.call(fn, [ptr[loc] for loc in locs] + [status, chunk, ir.Constant(I32, chunks),
                                                     slot, ir.Constant(I32, phase)])
            if clock:
                self._count(b, pointer(("slot", self.layout.arena)), ke.step.index,
                            b.sub(b.call(clock, []), t0))

    def _clock(self):
        """The host's counter intrinsic (host.clock_intrinsic), declared once."""
        name = clock_intrinsic()
        return self.module.globals.get(name) or ir.Function(self.module,
                                                             ir.FunctionType(I64, []), name)

    def _count(self, b, arena, index, cycles):
        """Add ``cycles`` to step ``index``'s profile counter in the arena."""
        off = ir.Constant(I64, self.profile_offset + 8 * index)
        p = b.gep(arena, [off], source_etype=I8, inbounds=True)
        b.store(b.add(b.load(p, typ=I64, align=8), cycles), p, align=8)

    def _task_fn(self, steps):
        """``graphc_task(ctx, phase, chunk, slot)``: one task of the job, and
        the job's phase widths. A kernel run by every thread contributes its
        phases (``KernelEmitter.widths``); a phase of one chunk and the
        one-thread kernels after it form one phase of one task, run in
        order."""
        phases = []                      # [(width, [(kernel emitter, its phase)])]
        for st in steps:
            ke = KernelEmitter(self, st)
            ke.build()                    # (its widths)
            for k, w in enumerate(ke.widths if st.parallel else [1]):
                if w == 1 and phases and phases[-1][0] == 1:
                    phases[-1][1].append((ke, k))
                else:
                    phases.append((w, [(ke, k)]))
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR, I32, I32, I32]),
                         "graphc_task")
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        vector_width(fn)
        ctx, phase, chunk, slot = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        args = b.load(ctx, typ=PTR)
        st = b.load(b.gep(ctx, [ir.Constant(I64, 1)], source_etype=PTR), typ=PTR)
        end = fn.append_basic_block("end")
        sw = b.switch(phase, end)
        for k, (w, calls) in enumerate(phases):
            case = fn.append_basic_block(f"phase{k}")
            sw.add_case(ir.Constant(I32, k), case)
            cb = ir.IRBuilder(case)
            self._calls(cb, args, st, calls, chunk=chunk if w > 1 else None, chunks=w,
                        slot=slot)
            cb.branch(end)
        b.position_at_end(end)
        b.ret_void()
        return fn, [w for w, _ in phases]
