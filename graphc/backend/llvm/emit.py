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

from ...ir import dtypes as D
from ...ir.graph import Graph
from ...ir.node import Node, attrs_key
from ...ops import registry
from ..plan import Kernel, MemoryPlan, align, is_immediate
from . import gemm, rtlib
from .loops import IndexBuilder, for_nest, for_range, for_ranges, if_then
from .scalar import I8, I32, I64, PTR, SV, ScalarBuilder, mem_type, reg_type

ENTRY = "graphc_main"
REDUCE_BLOCK = 1024     # float32 sums: blocks summed in float32, block sums in float64
ARENA_HEADER = 64       # the arena starts with the barrier words of a parallel call
PAR_ELEMS = 1 << 15     # loop nests with fewer elements (x ops) stay on one thread
PAR_MACS = 1 << 20      # GEMMs with fewer multiply-adds stay on one thread


def vector_width(fn: ir.Function) -> None:
    """Let the vectorizer use the host's widest vectors (LLVM prefers 256-bit
    vectors on AVX-512 hosts by default; the math here is throughput-bound, and
    512-bit vectors measured 1.3-1.45x faster on exp/log/tanh/sigmoid)."""
    from .jit import host_info
    if "+avx512f" in host_info()["features"]:
        set.add(fn.attributes, '"prefer-vector-width"="512"')   # llvmlite's add() rejects it


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


def broadcast_index(idx, out_shape, in_shape, ix):
    """Index into an input of shape ``in_shape`` broadcast to ``out_shape``."""
    lead = len(out_shape) - len(in_shape)
    return [ix.const(0) if in_shape[k] == 1 else idx[lead + k] for k in range(len(in_shape))]


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
            from . import gemm
            plan = gemm.plan_matmul(k.matmul, k.members, lambda x: not is_immediate(x))
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


class KernelEmitter:
    """Emits one kernel as an internal function."""

    def __init__(self, me: ModuleEmitter, kernel: Kernel, index: int, dest=None, src=None,
                 par=None):
        self.me = me
        self.par = par or {"gemm": False, "loop": None}
        self.all_threads = bool(self.par["gemm"] or self.par["loop"])
        self.k = kernel
        self.index = index
        self.dest = dest          # where the outputs are written, if not their own buffer
        self.src = src            # where a copied non-member output is read, if not its own
        self.members = kernel.members
        self.scopes: list[dict] = []
        self.current: Node | None = None

    # -- buffers ------------------------------------------------------------------
    def _loc(self, n: Node, writing=False):
        if writing and self.dest is not None:
            return self.dest
        if not writing and self.src is not None and n is self.k.root:
            return self.src
        try:
            return self.me.where[n.id]
        except KeyError:
            raise RuntimeError(f"no buffer planned for {n!r} (kernel {self.k.name})") from None

    def _collect(self):
        locs = []
        for m in self._member_nodes():
            for i in m.inputs:
                if i.id not in self.members and not is_immediate(i):
                    locs.append(self._loc(i))
        for o in self.k.outputs:
            if o.id not in self.members and not is_immediate(o):
                locs.append(self._loc(o))        # copy kernel reads its source
            locs.append(self._loc(o, writing=True))
        # one workspace request per kernel, for the largest of its stages' needs
        # (the GEMM's packing buffers, partial sums, row buffers run one after
        # another); asking twice could move the region between the two answers
        need = max(self._gemm_plan().workspace_bytes if self._gemm_plan() is not None else 0,
                   8 if self.par["loop"] == "chunks" else 0,
                   self._row_cache_plan()[1])
        self.ws_loc = self.me.workspace(need) if need else None
        if self.ws_loc is not None:
            locs.append(self.ws_loc)
        seen, out = set(), []
        for loc in locs:
            if loc not in seen:
                seen.add(loc)
                out.append(loc)
        return out

    def _member_nodes(self):
        stack, seen, out = list(self.k.outputs), set(), []
        while stack:
            n = stack.pop()
            if n.id in seen or n.id not in self.members:
                continue
            seen.add(n.id)
            out.append(n)
            stack.extend(n.inputs)
        return out

    # -- building -----------------------------------------------------------------
    def structure_key(self, locs) -> tuple | None:
        """What the kernel's code depends on, with its nodes and buffers
        renamed canonically (members by position, buffers by argument index):
        two kernels with the same key compile to the same function, called
        with different pointers. None for kernels never shared (custom ones,
        whose lowering may hold anything)."""
        if self.k.kind == "custom":
            return None
        members = self._member_nodes()
        order = {m.id: j for j, m in enumerate(members)}
        arg = {loc: j for j, loc in enumerate(locs)}

        def ref(n):
            if n.id in order:
                return ("m", order[n.id])
            if is_immediate(n):
                return ("c", n.dtype.str, n.value.tobytes())
            return ("a", arg[self._loc(n)], n.shape, n.dtype.str)
        body = tuple((m.op, attrs_key(m.attrs), m.shape, m.dtype.str,
                      tuple(ref(i) for i in m.inputs)) for m in members)
        outs = tuple((ref(o), arg[self._loc(o, writing=True)]) for o in self.k.outputs)
        k = self.k
        return (k.kind, k.shape, k.split, body, outs, tuple(ref(h) for h in k.hoisted),
                tuple(ref(a) for a in k.accumulates),
                None if k.matmul is None else ref(k.matmul),
                tuple(sorted(self.par.items())), self.ws_loc is not None)

    def build(self):
        """The kernel's function and the buffers to pass it. A kernel identical
        to one emitted before (:meth:`structure_key`) reuses its function, so a
        stack of identical layers is emitted and optimized by LLVM once."""
        locs = self._collect()
        key = self.structure_key(locs)
        shared = self.me.kernel_fns.get(key) if key is not None else None
        if shared is not None:
            if "noinline" not in shared.attributes:
                shared.attributes.add("noinline")     # optimized once, called from each use
            self.me.reused_kernels += 1
            return shared, locs
        n_errors = len(self.me.errors)
        fn = self._build(locs)
        if key is not None and len(self.me.errors) == n_errors:
            self.me.kernel_fns[key] = fn      # its checks would name another kernel's node
        return fn, locs

    def _build(self, locs):
        mod = self.me.module
        fn = ir.Function(mod, ir.FunctionType(ir.VoidType(),
                                              [PTR] * (len(locs) + 1) + [I32, I32, PTR]),
                         f"kernel{self.index}_{self.k.name or 'k'}")
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        vector_width(fn)
        for a in fn.args[:len(locs)]:
            a.add_attribute("noalias")
        self.ptr = dict(zip(locs, fn.args[:len(locs)]))
        self.status = fn.args[len(locs)]
        self.tid, self.nthr, self.sync = fn.args[len(locs) + 1:]
        self.fn = fn
        entry = fn.append_basic_block("entry")
        body = fn.append_basic_block("body")
        self.b = b = ir.IRBuilder(entry)
        self.alloca_builder = ir.IRBuilder(entry)
        self.err = b.alloca(I32, name="err")
        b.store(ir.Constant(I32, 0), self.err)
        b.branch(body)
        b.position_at_end(body)
        self.s = ScalarBuilder(b, mod, kernel=self)
        self.ix = IndexBuilder(b, self.s)
        self.staged = self.k.staged()
        if self.k.kind == "custom":
            n = self.k.root
            prev, self.current = self.current, n
            self.scopes.append({})
            registry.get(n.op).kernel(self, n)
            self.scopes.pop()
            self.current = prev
        else:
            has_loop = self.k.has_loop() or self.dest is not None
            if self.k.matmul is not None:
                if self.par["gemm"] or not self.all_threads:
                    self._emit_matmul()
                else:
                    with self._solo():
                        self._emit_matmul()
                if has_loop and self.all_threads:
                    self.b.call(self.me.barrier_fn(), [self.sync, self.nthr])
            if has_loop:
                if self.par["loop"] == "chunks":
                    self._emit_chunked_reduce()
                elif self.par["loop"] == "split" or not self.all_threads:
                    self._emit_loop()
                else:
                    with self._solo():
                        self._emit_loop()
        # report the first error (atomically: other threads may report too)
        e = b.load(self.err, typ=I32)
        with if_then(b, b.icmp_unsigned("!=", e, ir.Constant(I32, 0)), name="report"):
            b.cmpxchg(self.status, ir.Constant(I32, 0), e, "monotonic", "monotonic")
        b.ret_void()
        return fn

    def _solo(self):
        """A block run by thread 0 only."""
        return if_then(self.b, self.b.icmp_signed("==", self.tid, ir.Constant(I32, 0)), "solo")

    def _share(self, count: int, unit: int = 1):
        """[lo, hi) of ``count`` items for this thread (static split in multiples
        of ``unit``, deterministic for a given thread count)."""
        b = self.b
        units = (count + unit - 1) // unit
        t = b.zext(self.tid, I64)
        nn = b.zext(self.nthr, I64)
        lo = b.mul(b.udiv(b.mul(ir.Constant(I64, units), t), nn), ir.Constant(I64, unit))
        hi = b.mul(b.udiv(b.mul(ir.Constant(I64, units), b.add(t, ir.Constant(I64, 1))), nn),
                   ir.Constant(I64, unit))
        cap = ir.Constant(I64, count)
        lo = b.select(b.icmp_signed("<", lo, cap), lo, cap)
        hi = b.select(b.icmp_signed("<", hi, cap), hi, cap)
        return lo, hi

    def alloca(self, t, name=""):
        ab = self.alloca_builder
        ab.position_at_start(self.fn.entry_basic_block)
        return ab.alloca(t, name=name)

    def error_if(self, cond: SV, message: str) -> None:
        n = self.current
        where = f" (node {n.name}, built at {n.source})" if n is not None else ""
        code = self.me.error_code(message + where)
        b = self.b
        old = b.load(self.err, typ=I32)
        b.store(b.select(cond.v, ir.Constant(I32, code), old), self.err)

    # -- memory ---------------------------------------------------------------------
    def pointer(self, n: Node, writing: bool = False):
        """The pointer to ``n``'s buffer in this kernel (its output buffer when
        ``writing``), for ``kernel`` lowerings that hand buffers to other code
        (a host callback). One-element constants have no buffer (immediates)."""
        return self.ptr[self._loc(n, writing)]

    def _addr(self, n: Node, idx, writing=False):
        ptr = self.ptr[self._loc(n, writing)]
        lin = self.ix.linearize(idx, n.shape)
        return self.b.gep(ptr, [lin], source_etype=mem_type(n.dtype), inbounds=True)

    def load(self, n: Node, idx) -> SV:
        t = mem_type(n.dtype)
        v = self.b.load(self._addr(n, idx), typ=t, align=n.dtype.itemsize)
        if D.is_bool(n.dtype):
            v = self.b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
        return SV(v, n.dtype, self.s)

    def store(self, n: Node, idx, v: SV) -> None:
        val = v.v
        if D.is_bool(n.dtype):
            val = self.b.zext(val, I8)
        self.b.store(val, self._addr(n, idx, writing=True), align=n.dtype.itemsize)

    # -- evaluation -------------------------------------------------------------------
    def eval(self, n: Node, idx) -> SV:
        """The value of node ``n`` at index ``idx`` (a list of i64 values).

        The elementwise members that ``n`` reads at (broadcasts of) the same
        index are computed first, in post-order with an explicit stack, so a
        fused chain of any length costs no Python recursion: only a movement
        op, reduction or dot product calls back into ``eval`` (at an index of
        its own), and fusion bounds how deep those nest in one kernel."""
        if self._pending(n, idx):
            stack = [(n, idx, False)]
            while stack:
                m, midx, expanded = stack.pop()
                if expanded:
                    self._eval_one(m, midx)
                    continue
                if not self._pending(m, midx):
                    continue
                stack.append((m, midx, True))
                if registry.get(m.op).kind == "elementwise":
                    for i in reversed(m.inputs):
                        stack.append((i, broadcast_index(midx, m.shape, i.shape, self.ix), False))
        return self._eval_one(n, idx)

    def _pending(self, n: Node, idx) -> bool:
        """Must ``n`` be computed here at ``idx``? Not an immediate, a load,
        or a value an enclosing scope has computed already."""
        if is_immediate(n) or n.id not in self.members or n.id in self.staged:
            return False
        key = (n.id, tuple(id(v) for v in idx))
        return not any(key in scope for scope in self.scopes)

    def _eval_one(self, n: Node, idx) -> SV:
        if is_immediate(n):
            return self.s.const(n.value.reshape(-1)[0], n.dtype)
        if n.id not in self.members or n.id in self.staged:
            return self.load(n, idx)
        key = (n.id, tuple(id(v) for v in idx))
        if getattr(self, "_cache_key", None) is not None and n.id in self.row_cache and \
                key[1] == self._cache_key:
            v = self.b.load(self._row_slot(n, idx), typ=mem_type(n.dtype))
            if D.is_bool(n.dtype):
                v = self.b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
            return SV(v, n.dtype, self.s)
        for scope in reversed(self.scopes):
            if key in scope:
                return scope[key]
        d = registry.get(n.op)
        prev, self.current = self.current, n
        if d.kind == "elementwise":
            args = [self.eval(i, broadcast_index(idx, n.shape, i.shape, self.ix)) for i in n.inputs]
            v = d.scalar(self.s, n, *args)
        elif d.kind == "index":
            v = d.lower_at(self, n, idx)
        elif d.kind == "reduce":
            v = self._reduce_at(n, d, idx)
        elif d.kind == "matmul":
            v = self._dot_at(n, idx)
        else:
            raise NotImplementedError(f"no lowering for kind {d.kind!r} (op {n.op})")
        self.current = prev
        if v.dtype != n.dtype:
            raise TypeError(f"lowering of {n.op!r} produced {v.dtype}, expected {n.dtype}")
        self.scopes[-1][key] = v
        return v

    def _reduce_at(self, n: Node, d, idx, first=None, raw: bool = False) -> SV:
        """An inner loop over the reduced axes at output index ``idx`` (the
        first reduced axis restricted to ``first = (lo, hi)`` if given). The
        combine step may be reassociated (``reassoc``), so LLVM vectorizes it
        with several partial accumulators — deterministically for a given
        build; float32 sums accumulate in float64. ``raw``: return the
        accumulator (in its accumulation dtype)."""
        x = n.inputs[0]
        axes, keep = n.attrs["axes"], n.attrs["keepdims"]
        acc_dt = d.reduce_acc_dtype(n.dtype) if d.reduce_acc_dtype else n.dtype
        t = reg_type(acc_dt)
        acc = self.alloca(t, name="acc")
        self.b.store(self.s.const(d.reduce_init(n.dtype), acc_dt).v, acc)
        outer = {}
        k = 0
        for a in range(x.ndim):
            if a in axes:
                if keep:
                    k += 1
            else:
                outer[a] = idx[k]
                k += 1
        ranges = [(0, x.shape[a]) for a in axes]
        if first is not None and ranges:
            ranges[0] = first
        last = x.shape[axes[-1]] if axes else 1
        if acc_dt != n.dtype and last > REDUCE_BLOCK:
            self._blocked_reduce(n, d, x, axes, outer, acc, acc_dt, ranges)
        else:
            with for_ranges(self.b, ranges, name="r") as ridx:
                self.scopes.append({})
                full = [outer[a] if a in outer else ridx[axes.index(a)] for a in range(x.ndim)]
                xv = self.eval(x, full)
                self._row_cache_put(x, full, xv)
                v = self.s.cast(xv, acc_dt)
                cur = SV(self.b.load(acc, typ=t), acc_dt, self.s)
                self.s.fp_flags = ("reassoc",)
                self.b.store(d.reduce_combine(self.s, cur, v).v, acc)
                self.s.fp_flags = ()
                self.scopes.pop()
        v = SV(self.b.load(acc, typ=t), acc_dt, self.s)
        return v if raw else self.s.cast(v, n.dtype)

    def _blocked_reduce(self, n, d, x, axes, outer, acc, acc_dt, ranges):
        """The innermost reduced axis in blocks of REDUCE_BLOCK: each block is
        summed in the value's own dtype (vectorized at full width), and the
        block sums in ``acc_dt`` — float32 sums at float32 speed, with errors
        like a float64 sum's."""
        b, s = self.b, self.s
        t, tv = reg_type(acc_dt), reg_type(n.dtype)
        part = self.alloca(tv, name="part")
        inner = axes[-1]
        ilo, ihi = (ir.Constant(I64, v) if isinstance(v, int) else v for v in ranges[-1])
        B = ir.Constant(I64, REDUCE_BLOCK)
        count = b.sub(ihi, ilo)
        nblocks = b.udiv(b.add(count, ir.Constant(I64, REDUCE_BLOCK - 1)), B)
        with for_ranges(b, ranges[:-1], name="r") as ridx:
            with for_range(b, nblocks, "blk") as blk:
                b.store(s.const(d.reduce_init(n.dtype), n.dtype).v, part)
                start = b.add(ilo, b.mul(blk, B))
                left = b.sub(ihi, start)
                cnt = b.select(b.icmp_signed("<", left, B), left, B)
                with for_range(b, cnt, "rj") as j:
                    self.scopes.append({})
                    pos = {a: ridx[k] for k, a in enumerate(axes[:-1])}
                    pos[inner] = b.add(start, j)
                    full = [outer[a] if a in outer else pos[a] for a in range(x.ndim)]
                    v = self.eval(x, full)
                    self._row_cache_put(x, full, v)
                    cur = SV(b.load(part, typ=tv), n.dtype, s)
                    s.fp_flags = ("reassoc",)
                    b.store(d.reduce_combine(s, cur, v).v, part)
                    s.fp_flags = ()
                    self.scopes.pop()
                blocksum = s.cast(SV(b.load(part, typ=tv), n.dtype, s), acc_dt)
                cur = SV(b.load(acc, typ=t), acc_dt, s)
                b.store(d.reduce_combine(s, cur, blocksum).v, acc)

    def _emit_chunked_reduce(self):
        """A scalar reduction split into ``threads`` fixed chunks of its first
        reduced axis: each thread reduces its chunks into a partial, and after a
        barrier thread 0 combines the partials in chunk order — the same
        arithmetic whatever the number of threads that ran it."""
        b, s = self.b, self.s
        r = (self.k.loop_outputs() if self.dest is None else self.k.outputs)[0]
        d = registry.get(r.op)
        x = r.inputs[0]
        L = x.shape[r.attrs["axes"][0]]
        C = self.me.threads
        acc_dt = d.reduce_acc_dtype(r.dtype) if d.reduce_acc_dtype else r.dtype
        t = reg_type(acc_dt)
        part = self.ptr[self.ws_loc]
        idx0 = [self.ix.const(0)] * r.ndim
        clo, chi = self._share(C)
        prev, self.current = self.current, r
        with for_ranges(b, [(clo, chi)], name="c") as (c,):
            lo = b.udiv(b.mul(c, ir.Constant(I64, L)), ir.Constant(I64, C))
            hi = b.udiv(b.mul(b.add(c, ir.Constant(I64, 1)), ir.Constant(I64, L)),
                        ir.Constant(I64, C))
            self.scopes.append({})
            v = self._reduce_at(r, d, idx0, first=(lo, hi), raw=True)
            self.scopes.pop()
            b.store(v.v, b.gep(part, [c], source_etype=t))
        b.call(self.me.barrier_fn(), [self.sync, self.nthr])
        with self._solo():
            acc = s.const(d.reduce_init(r.dtype), acc_dt)
            for ci in range(C):
                pv = SV(b.load(b.gep(part, [ir.Constant(I64, ci)], source_etype=t), typ=t),
                        acc_dt, s)
                acc = d.reduce_combine(s, acc, pv)
            self.scopes.append({})
            self.store(r, idx0, s.cast(acc, r.dtype))
            self.scopes.pop()
        self.current = prev

    def _operand_idx(self, n: Node, operand: Node, batch_idx, last2):
        bshape = n.shape[:-2]
        ob = operand.shape[:-2]
        return broadcast_index(list(batch_idx), bshape, ob, self.ix) + list(last2)

    def _dot_at(self, n: Node, idx) -> SV:
        a, bb = n.inputs
        t = reg_type(n.dtype)
        acc = self.alloca(t, name="dot")
        self.b.store(self.s.const(0, n.dtype).v, acc)
        i, j = idx[-2], idx[-1]
        with for_range(self.b, a.shape[-1], "k") as k:
            self.scopes.append({})
            av = self.eval(a, self._operand_idx(n, a, idx[:-2], (i, k)))
            bv = self.eval(bb, self._operand_idx(n, bb, idx[:-2], (k, j)))
            cur = SV(self.b.load(acc, typ=t), n.dtype, self.s)
            self.b.store((cur + av * bv).v, acc)
            self.scopes.pop()
        return SV(self.b.load(acc, typ=t), n.dtype, self.s)

    def _emit_loop(self):
        """The loop part: an outer loop over ``shape[:split]``; per outer index
        the hoisted (row) reductions, the accumulations of row values, then
        an inner loop over ``shape[split:]`` that evaluates every output and
        every accumulation of a full-domain value, then stores them. (All
        values are computed before any store, so an output may overwrite an
        input in place.)"""
        k, b, s = self.k, self.b, self.s
        shape, split = k.shape, k.split
        outs = k.loop_outputs() if self.dest is None else list(k.outputs)
        inner_acc = [a for a in k.accumulates if a.inputs[0].shape == shape]
        outer_acc = [a for a in k.accumulates if a.inputs[0].shape != shape]
        for a in k.accumulates:            # accumulators start at the reduction's identity
            init = s.const(registry.get(a.op).reduce_init(a.dtype), a.dtype)
            with for_nest(b, a.shape, name="z") as zi:
                self.store(a, zi, init)
        ranges = [(0, d) for d in shape[:split]]
        if self.par["loop"] == "split":
            ranges[0] = self._share(shape[0])
        self._setup_row_cache(outs)
        with for_ranges(b, ranges, name="o") as outer:
            self.scopes.append({})
            for r in k.hoisted:
                d = registry.get(r.op)
                ridx = list(outer) + [self.ix.const(0)] * (r.ndim - len(outer))
                prev, self.current = self.current, r
                self.store(r, ridx, self._reduce_at(r, d, ridx))
                self.current = prev
            self._accumulate(outer_acc, outer)
            with for_nest(b, shape[split:], name="i") as inner:
                self.scopes.append({})
                full = list(outer) + list(inner)
                self._cache_key = tuple(id(v) for v in full)
                values = [(o, self.eval(o, full)) for o in outs]
                self._cache_key = None
                self._accumulate(inner_acc, full)
                for o, v in values:
                    self.store(o, full, v)
                self.scopes.pop()
            self.scopes.pop()

    def _row_cache_plan(self):
        """Row kernels: a costly value that a hoisted reduction consumes and the
        stored outputs need again (softmax's ``exp(x - max)``) is kept in a
        per-thread row buffer while the reduction runs, and loaded, not
        recomputed, by the inner loop. Returns (values to cache, bytes)."""
        if hasattr(self, "_rc_plan"):
            return self._rc_plan
        self._rc_plan = ([], 0)
        k = self.k
        if k.kind == "custom" or k.split >= len(k.shape) or not k.hoisted or self.dest is not None:
            return self._rc_plan
        staged = k.staged()
        needed, stack = set(), list(k.loop_outputs())
        while stack:
            n = stack.pop()
            if n.id in needed or n.id not in self.members or n.id in staged:
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
            return self._rc_plan
        size = sum(align(inner * c.dtype.itemsize) for c in cands)
        self._rc_plan = (cands, size)
        return self._rc_plan

    def _setup_row_cache(self, outs):
        self.row_cache, self._cache_key = {}, None
        cands, size = self._row_cache_plan()
        if not cands or not size:         # (empty rows: nothing to keep)
            self.row_cache = {}
            return
        inner = 1
        for d in self.k.shape[self.k.split:]:
            inner *= d
        base = self.ptr[self.ws_loc]
        if self.me.threads > 1:
            off = self.b.mul(self.b.zext(self.tid, I64), ir.Constant(I64, self.me.ws_stride()))
            base = self.b.gep(base, [off], source_etype=I8)
        off = 0
        for c in cands:
            self.row_cache[c.id] = self.b.gep(base, [ir.Constant(I64, off)], source_etype=I8)
            off += align(inner * c.dtype.itemsize)

    def _row_slot(self, n: Node, full):
        lin = self.ix.linearize(full[self.k.split:], self.k.shape[self.k.split:])
        return self.b.gep(self.row_cache[n.id], [lin], source_etype=mem_type(n.dtype))

    def _row_cache_put(self, x: Node, full, v: SV) -> None:
        if getattr(self, "row_cache", None) and x.id in self.row_cache:
            val = self.b.zext(v.v, I8) if D.is_bool(x.dtype) else v.v
            self.b.store(val, self._row_slot(x, full))

    def _accumulate(self, accs, idx):
        """acc[kept index] = combine(acc[kept index], x[idx]) for each reduction."""
        pending = []
        for a in accs:
            x = a.inputs[0]
            axes, keep = a.attrs["axes"], a.attrs["keepdims"]
            kept = [self.ix.const(0) if d in axes else idx[d] for d in range(x.ndim)] if keep \
                else [idx[d] for d in range(x.ndim) if d not in axes]
            prev, self.current = self.current, a
            v = self.eval(x, idx)
            self.current = prev
            pending.append((a, kept, v))
        for a, kept, v in pending:
            cur = self.load(a, kept)
            self.store(a, kept, registry.get(a.op).reduce_combine(self.s, cur, v))

    def _gemm_plan(self):
        """How this matmul kernel calls the packed GEMM, or None (loop nest)."""
        if not hasattr(self, "_gemm"):
            self._gemm = None
            if self.k.matmul is not None:
                self._gemm = gemm.plan_matmul(self.k.matmul, self.members,
                                              lambda x: not is_immediate(x))
        return self._gemm

    def _emit_matmul(self):
        """C = A @ B. Float operands that are buffers (or transposes of
        buffers, as strides) go to the packed GEMM (gemm.py), once per batch
        element; otherwise an i-k-j loop nest: the inner loop runs along a row
        of B and C (contiguous, so it vectorizes)."""
        n = self.k.matmul
        plan = self._gemm_plan()
        if plan is not None:
            b = self.b
            ws = self.ptr[self.ws_loc]
            rows = cols = None
            if self.par["gemm"]:
                # each thread: its own rows (or columns) of C, its own workspace slice
                off = b.mul(b.zext(self.tid, I64), ir.Constant(I64, self.me.ws_stride()))
                ws = b.gep(ws, [off], source_etype=I8)
                if plan.m >= plan.n:
                    rows = self._share(plan.m, unit=16)
                else:
                    cols = self._share(plan.n, unit=64)
            gemm.emit_matmul_call(b, self.me.module, plan, self.ptr[self._loc(plan.a)],
                                  self.ptr[self._loc(plan.b)], self.ptr[self._loc(n, writing=True)],
                                  ws, rows=rows, cols=cols)
            return
        a, bb = n.inputs
        s, b = self.s, self.b
        m_, k_, n_ = n.shape[-2], a.shape[-1], n.shape[-1]
        with for_nest(b, n.shape[:-2] + (m_,), name="mb") as outer:
            bidx, i = outer[:-1], outer[-1]
            with for_range(b, n_, "j0") as j:
                self.store(n, bidx + [i, j], s.const(0, n.dtype))
            with for_range(b, k_, "k") as k:
                self.scopes.append({})
                av = self.eval(a, self._operand_idx(n, a, bidx, (i, k)))
                with for_range(b, n_, "j") as j:
                    self.scopes.append({})
                    bv = self.eval(bb, self._operand_idx(n, bb, bidx, (k, j)))
                    cur = self.load(n, bidx + [i, j])
                    self.store(n, bidx + [i, j], cur + av * bv)
                    self.scopes.pop()
                self.scopes.pop()
