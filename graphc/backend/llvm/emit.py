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

from ...ir.graph import Graph
from ...ops import registry
from ..plan import Kernel, MemoryPlan, align, is_immediate
from . import matmul, rtlib
from .host import vector_width
from .kernel import KernelEmitter
from .loops import if_then
from .scalar import I8, I32, I64, PTR

ENTRY = "graphc_main"
ARENA_HEADER = 64       # the arena starts with the barrier words of a parallel call
PAR_ELEMS = 1 << 15     # loop nests with fewer elements (x ops) stay on one thread
PAR_MACS = 1 << 20      # GEMMs with fewer multiply-adds stay on one thread


class ArgLayout:
    """The order of pointers in the entry's ``args`` array."""

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



class ModuleEmitter:
    def __init__(self, graph: Graph, kernels: list[Kernel], mem: MemoryPlan, name="graphc",
                 threads: int = 1):
        self.graph = graph
        self.threads = max(1, int(threads))
        self.kernels = kernels
        self.mem = mem
        self.module = ir.Module(name=name)
        self.errors: list[str] = []           # code k+1 -> message
        self.layout = ArgLayout(graph, len(graph.outputs))
        # where each node's buffer is: ("slot", k) or ("arena", offset)
        self.where: dict[int, tuple] = {}
        for nid, k in self.layout.slot.items():
            self.where[nid] = ("slot", k)
        self.copies = []                      # (node, output slot) still to copy
        for j, o in enumerate(graph.outputs):
            if o.id not in self.where and not o.is_leaf:
                self.where[o.id] = ("slot", self.layout.output0 + j)
            else:
                self.copies.append((o, j))
        for nid, off in mem.arena.items():
            self.where.setdefault(nid, ("arena", off + ARENA_HEADER))
        for vid, p in mem.direct.items():          # new values written into their parameter
            self.where[vid] = self.where[p.id]
        self.arena_size = mem.size + ARENA_HEADER
        # Updates not written by their kernel run last, after every kernel has
        # read the old values. A new value that is itself an updated parameter
        # (a swap) is staged: copied, before any kernel runs, to the arena.
        updated = {p.id for p, _ in graph.updates}
        self.staged = []
        for _, v in graph.updates:
            if v.op == "parameter" and v.id in updated:
                off = self.arena_size
                self.arena_size += (v.size * v.dtype.itemsize + 63) // 64 * 64
                self.staged.append((v, ("arena", off)))
        self._workspace = None                # (offset, bytes): scratch shared by kernels
        self.kernel_fns: dict = {}            # structure key -> function (identical kernels)
        self.reused_kernels = 0               # kernels that called a function emitted before

    def workspace(self, nbytes: int) -> tuple:
        """The location of ``nbytes`` of arena scratch per thread (GEMM packing
        buffers, partial reductions): ``threads`` slices of :meth:`ws_stride`
        bytes. Kernels run one after another, so they all share one region,
        grown to the largest request."""
        off, size = self._workspace or (self.arena_size, 0)
        total = align(nbytes) * self.threads
        if total > size:
            if off + size != self.arena_size:     # something was reserved after it
                off = self.arena_size
            self.arena_size = off + total
            self._workspace = (off, total)
        return ("arena", off)

    def ws_stride(self) -> int:
        return self._workspace[1] // self.threads if self._workspace else 0

    # -- parallel plan ---------------------------------------------------------------
    def parallel(self, k: Kernel, dest=None) -> dict:
        """How kernel k uses the threads: {"gemm": split the GEMM,
        "loop": "split" (rows of the outer loop) | "chunks" (a scalar reduction
        in fixed chunks) | None}."""
        out = {"gemm": False, "loop": None}
        if self.threads == 1 or k.kind == "custom":
            return out
        if k.matmul is not None:
            plan = matmul.plan_matmul(k.matmul, k.members, lambda x: not is_immediate(x))
            if plan is not None and plan.m * plan.n * plan.k >= PAR_MACS and \
                    max(plan.m, plan.n) >= 64:
                out["gemm"] = True
        has_loop = k.has_loop() or dest is not None
        if not has_loop or k.accumulates:
            return out
        n_el = 1
        for d in k.shape:
            n_el *= d
        ops = max(1, len(k.members))
        outs = k.loop_outputs() if dest is None else k.outputs
        if k.split >= 1 and k.shape[0] >= 2 and n_el * ops >= PAR_ELEMS:
            out["loop"] = "split"
        elif (dest is None and k.matmul is None and not k.hoisted and len(outs) == 1 and
              outs[0].size == 1 and registry.get(outs[0].op).kind == "reduce" and
              outs[0].inputs[0].size * ops >= PAR_ELEMS and
              outs[0].inputs[0].shape[outs[0].attrs["axes"][0]] >= 2 * self.threads):
            out["loop"] = "chunks"
        return out

    def error_code(self, message: str) -> int:
        if message in self.errors:
            return self.errors.index(message) + 1
        self.errors.append(message)
        return len(self.errors)

    def emit(self) -> ir.Module:
        # Every read of a parameter's old value comes before any write of a
        # parameter: copies of leaves (a parameter returned as an output, an
        # updated parameter that is another update's new value) run first,
        # before any kernel (a kernel may write an update straight into its
        # parameter, see fusion's _direct_updates); kernels that read a
        # parameter run before the kernel writing it; the other updates last.
        first, work = [], [(k, None, None) for k in self.kernels]
        for node, j in self.copies:
            (first if node.is_leaf else work).append(
                (Kernel("loop", [node], set(), node.shape, name=f"copy_out{j}"),
                 ("slot", self.layout.output0 + j), None))
        stage_loc = {}
        for v, loc in self.staged:
            first.append((Kernel("loop", [v], set(), v.shape, name=f"stage_{v.name}"), loc, None))
            stage_loc[v.id] = loc
        work = first + work
        for p, v in self.graph.updates:
            if v.id in self.mem.direct:
                continue                         # its kernel wrote it into the parameter
            work.append((Kernel("loop", [v], set(), v.shape, name=f"update_{p.name}"),
                         self.where[p.id], stage_loc.get(v.id)))
        # a loop kernel that stores only empty arrays has an empty domain:
        # nothing to compute and nothing to check, yet its loop nest could
        # still be long (a (2**40, 0) domain). Custom kernels (scatter_add)
        # may check other inputs (indices), so they always run.
        work = [w for w in work if w[0].kind == "custom" or any(o.size for o in w[0].outputs)]
        par = [self.parallel(k, dest) for k, dest, _ in work]
        threaded = any(p["gemm"] or p["loop"] for p in par)
        fnty = ir.FunctionType(I32, [PTR])
        entry = ir.Function(self.module, fnty, ENTRY)
        vector_width(entry)
        entry.args[0].add_attribute("noalias")
        b = ir.IRBuilder(entry.append_basic_block("entry"))
        status = b.alloca(I32, name="status")
        b.store(ir.Constant(I32, 0), status)
        if not threaded:
            self._schedule(b, entry.args[0], status, ir.Constant(I32, 0), ir.Constant(I32, 1),
                           work, par, threaded=False)
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
            self._schedule(bb, args, st, tid, n, work, par, threaded=True)
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

    def _schedule(self, b, args, status, tid, n, work, par, threaded: bool):
        """Call every kernel in order (in a parallel call: parallel kernels on
        every thread, the others on thread 0, a barrier after each)."""
        slot_ptr = {}

        def pointer(loc):
            if loc not in slot_ptr:
                kind, k = loc
                if kind == "slot":
                    p = b.gep(args, [ir.Constant(I64, k)], source_etype=PTR, inbounds=True)
                    slot_ptr[loc] = b.load(p, typ=PTR, name=f"arg{k}")
                else:
                    base = pointer(("slot", self.layout.arena))
                    slot_ptr[loc] = b.gep(base, [ir.Constant(I64, k)], source_etype=I8,
                                          inbounds=True, name=f"arena{k}")
            return slot_ptr[loc]
        sync = pointer(("arena", 0))
        one, zero = ir.Constant(I32, 1), ir.Constant(I32, 0)
        for ki, ((k, dest, src), p) in enumerate(zip(work, par)):
            em = KernelEmitter(self, k, ki, dest, src, p)
            fn, locs = em.build()
            ptrs = [pointer(loc) for loc in locs] + [status]
            if not threaded:
                b.call(fn, ptrs + [zero, one, sync])
                continue
            if p["gemm"] or p["loop"]:
                b.call(fn, ptrs + [tid, n, sync])
            else:
                with if_then(b, b.icmp_signed("==", tid, zero), name=f"solo{ki}"):
                    b.call(fn, ptrs + [zero, one, sync])
            if ki < len(work) - 1:
                b.call(self.barrier_fn(), [sync, n])
