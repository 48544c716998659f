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
from .host import vector_width
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
                 name="graphc", threads: int = 1):
        if not isinstance(plan, Plan):
            plan = build_plan(plan, kernels, mem, threads)
        self.plan = plan
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
            self._schedule_parts(b, entry.args[0], status, ir.Constant(I32, 0),
                                 ir.Constant(I32, 1), steps, threaded=False)
        else:
            # every thread runs graphc_body(ctx, tid, n); ctx = {args, status}
            body = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR, I32, I32]),
                               "graphc_body")
            body.linkage = "internal"
            vector_width(body)
            bb = ir.IRBuilder(body.append_basic_block("entry"))
            ctx_in, tid, n = body.args
            args = bb.load(ctx_in, typ=PTR)
            st = bb.load(bb.gep(ctx_in, [ir.Constant(I64, 1)], source_etype=PTR), typ=PTR)
            self._schedule_parts(bb, args, st, tid, n, steps, threaded=True)
            bb.ret_void()
            ctx = b.alloca(PTR, 2, name="ctx")
            b.store(entry.args[0], ctx)
            b.store(status, b.gep(ctx, [ir.Constant(I64, 1)], source_etype=PTR))
            rtlib.uses(self.module, "threads")
            run = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I32]),
                              "graphc_rt_parallel")
            b.call(run, [body, ctx, ir.Constant(I32, self.threads)])
        b.ret(b.load(status, typ=I32))
        return self.module

    def barrier_fn(self):
        f = self.module.globals.get("graphc_rt_barrier")
        if f is None:
            rtlib.uses(self.module, "threads")
            f = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR, I32]),
                            "graphc_rt_barrier")
        return f

    def _schedule_parts(self, b, args, status, tid, n, steps, threaded: bool):
        """Schedule ``steps`` in ``b``'s function, or, when there are more
        than :data:`PART_STEPS`, one call per :data:`PART_STEPS` of them to an
        internal function ``graphc_part<k>(args, status, tid, n)`` that
        schedules them. LLVM's register allocator spent time growing with the
        square of a straight-line entry's length (every pointer and callee
        address live across every call: 1.8 s for 2000 calls, when the
        kernels it called were in another shard); bounded parts keep it
        linear, for one extra call per part at run time."""
        if len(steps) <= PART_STEPS:
            self._schedule(b, args, status, tid, n, steps, threaded)
            return
        fnty = ir.FunctionType(ir.VoidType(), [PTR, PTR, I32, I32])
        for k in range(0, len(steps), PART_STEPS):
            part = ir.Function(self.module, fnty, f"{PART_PREFIX}{k // PART_STEPS}")
            part.linkage = "internal"
            part.attributes.add("nounwind")
            part.attributes.add("noinline")
            vector_width(part)
            for a in part.args[:2]:
                a.add_attribute("noalias")
            pb = ir.IRBuilder(part.append_basic_block("entry"))
            self._schedule(pb, *part.args, steps[k:k + PART_STEPS], threaded)
            pb.ret_void()
            b.call(part, [args, status, tid, n])

    def _schedule(self, b, args, status, tid, n, steps, threaded: bool):
        """Call every kernel in order (in a parallel call: parallel kernels on
        every thread; each run of consecutive one-thread kernels in one block
        on thread 0; a barrier where the plan has one). Every pointer into
        the arguments or the arena is computed once, before the first call."""
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
        sync = pointer(("arena", 0))
        for step in steps:
            for loc in step.args:
                pointer(loc)
        one, zero = ir.Constant(I32, 1), ir.Constant(I32, 0)
        solo_end = None                  # the block after the open thread-0 block

        def close():
            nonlocal solo_end
            if solo_end is not None:
                b.branch(solo_end)
                b.position_at_end(solo_end)
                solo_end = None
        for step in steps:
            fn, locs = KernelEmitter(self, step).build()
            ptrs = [ptr[loc] for loc in locs] + [status]
            if not threaded:
                b.call(fn, ptrs + [zero, one, sync])
                continue
            if step.parallel:
                close()
                b.call(fn, ptrs + [tid, n, sync])
            else:
                if solo_end is None:
                    then = b.append_basic_block(f"solo{step.index}")
                    solo_end = b.append_basic_block(f"solo{step.index}.end")
                    b.cbranch(b.icmp_signed("==", tid, zero), then, solo_end)
                    b.position_at_end(then)
                b.call(fn, ptrs + [zero, one, sync])
            if step.barrier:
                close()
                b.call(self.barrier_fn(), [sync, n])
        close()
