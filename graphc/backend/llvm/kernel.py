"""One kernel of the plan as an internal LLVM function (:class:`KernelEmitter`).

``eval(n, idx)`` produces the value of any node at an index: members are
computed by their op's lowering rule, other nodes loaded from their buffers.
The loop nests, reductions and GEMM calls around it are in ``stages.py``.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import dtypes as D
from ...ir.node import Node, attrs_key
from ...ops import registry
from ...ops.index import broadcast_index
from ..plan import is_immediate
from ..schedule import Step, member_nodes
from .host import vector_width
from .loops import IndexBuilder, if_then
from .scalar import I8, I32, I64, PTR, SV, ScalarBuilder, mem_type
from .stages import LoopStages


class KernelEmitter(LoopStages):
    """Emits one kernel as an internal function."""

    def __init__(self, me, step: Step):
        self.me = me
        self.step = step
        self.par = {"gemm": step.gemm, "loop": step.loop}
        self.all_threads = step.parallel
        self.k = step.kernel
        self.index = step.index
        self.dest = step.dest     # where the outputs are written, if not their own buffer
        self.src = step.src       # where a copied non-member output is read, if not its own
        self.members = step.kernel.members
        self.scopes: list[dict] = []
        self.current: Node | None = None
        self._built = None        # (function, buffers), once built

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
        """The buffers to pass (the plan's, in its order), the workspace last."""
        self.ws_loc = self.me.plan.workspace_loc() if self.step.workspace else None
        return self.step.args

    def _member_nodes(self):
        return member_nodes(self.k)

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
        if self._built is not None:
            return self._built
        self._built = self._build_shared()
        return self._built

    def _build_shared(self):
        locs = self._collect()
        key = self.structure_key(locs)
        shared = self.me.kernel_fns.get(key) if key is not None else None
        if shared is not None:
            self.me.reused_kernels += 1
            fn, self.widths = shared
            return fn, locs
        n_errors = len(self.me.errors)
        fn = self._build(locs)
        if key is not None and len(self.me.errors) == n_errors:
            # (its checks would name another kernel's node)
            self.me.kernel_fns[key] = (fn, self.widths)
        return fn, locs

    def _build(self, locs):
        mod = self.me.module
        # (buffers..., status, chunk, chunks, slot, phase): see _phase
        fn = ir.Function(mod, ir.FunctionType(ir.VoidType(),
                                              [PTR] * (len(locs) + 1) + [I32, I32, I32, I32]),
                         f"kernel{self.index}_{self.k.name or 'k'}")
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        # never inlined into the entry: optimized once, called from each use,
        # and a kernel's loops gain nothing from the entry's code, while one
        # function holding every kernel costs O3 superlinear time (the 40-layer
        # Adam step: 1.5 s of LLVM CPU time inlined, 0.9 s not). IPSCCP still
        # propagates the constant thread arguments of a serial call.
        fn.attributes.add("noinline")
        vector_width(fn)
        for a in fn.args[:len(locs)]:
            a.add_attribute("noalias")
        self.ptr = dict(zip(locs, fn.args[:len(locs)]))
        self.status = fn.args[len(locs)]
        self.tid, self.nthr, self.slot, self.phase_arg = fn.args[len(locs) + 1:]
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
        self.widths = []
        if self.k.kind == "custom":
            n = self.k.root
            prev, self.current = self.current, n
            self.scopes.append({})
            registry.get(n.op).kernel(self, n)
            self.scopes.pop()
            self.current = prev
        else:
            has_loop = self.k.has_loop() or self.dest is not None
            C = self.me.plan.chunks if self.all_threads else 1
            if self.k.matmul is not None:
                # a GEMM's chunk packs its own panels of the operands: one
                # chunk per thread, not more (more chunks, more packing)
                self._phase(self.me.plan.threads if self.par["gemm"] else 1)
                self._emit_matmul()
            if has_loop:
                if self.par["loop"] == "chunks":
                    self._phase(C)
                    self._emit_chunk_partials()
                    self._phase(1)
                    self._emit_chunk_combine()
                else:
                    self._phase(C if self.par["loop"] == "rows" else 1)
                    self._emit_loop()
        self._end_phases()
        # report the first error (atomically: other threads may report too)
        e = b.load(self.err, typ=I32)
        with if_then(b, b.icmp_unsigned("!=", e, ir.Constant(I32, 0)), name="report"):
            b.cmpxchg(self.status, ir.Constant(I32, 0), e, "monotonic", "monotonic")
        b.ret_void()
        return fn

    def _phase(self, chunks: int) -> None:
        """Start the kernel's next phase, run as ``chunks`` chunks.

        A kernel run by every thread is a sequence of phases, and each phase
        a set of chunks that may run at once, in any order, on any thread: a
        GEMM's blocks of rows, a loop's rows, a reduction's partials; then
        what needs all of them (the epilogue loop, the combination of the
        partials) is the next phase. The runtime runs a phase's chunks on
        whichever threads claim them and starts the next phase when all are
        done (pool.py, ``graphc_rt_parallel``); the kernel is called once per
        chunk with ``phase`` and ``chunk`` (of ``chunks``), and ``slot``, the
        calling thread's index, for its workspace slice. A kernel run by one
        thread has one phase of one chunk. The phases' chunk counts are
        recorded in ``self.widths`` (the emitter's schedule needs them)."""
        if self.widths:
            self.b.branch(self._phase_end)
            self.b.position_at_end(self._phase_end)
        k = len(self.widths)
        self.widths.append(chunks)
        body = self.fn.append_basic_block(f"phase{k}")
        self._phase_end = self.fn.append_basic_block(f"phase{k}.end")
        if not self.all_threads:        # one phase, always 0
            self.b.branch(body)
        else:
            self.b.cbranch(self.b.icmp_signed("==", self.phase_arg, ir.Constant(I32, k)),
                           body, self._phase_end)
        self.b.position_at_end(body)
        self.scopes = []                  # (no value of one phase is used in another)

    def _end_phases(self) -> None:
        if self.widths:
            self.b.branch(self._phase_end)
            self.b.position_at_end(self._phase_end)
        else:
            self.widths.append(1)         # (a kernel with nothing to compute)

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
            v = d.lower_at(self, n, idx) if d.lower_at is not None else \
                lower_index_map(self, n, idx)
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


def lower_index_map(ctx, n, idx):
    """The LLVM interpreter of ``n``'s index rule: the value of ``n`` at
    ``idx`` is the first of its reads whose condition holds, zero if none
    does. Every read is evaluated (its index is in bounds), the conditional
    ones folded in with selects, the last one first."""
    s, ix = ctx.s, ctx.ix
    result = None
    for r in reversed(registry.get(n.op).index_map(ix, n, idx)):
        v = ctx.eval(n.inputs[r.input], r.at)
        if r.when is None:
            result = v
        else:
            other = s.const(0, n.dtype) if result is None else result
            result = s.select(ix.as_bool(r.when), v, other)
    return s.const(0, n.dtype) if result is None else result
