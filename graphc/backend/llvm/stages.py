"""The stages of a kernel around its elementwise body (a mixin of
:class:`~graphc.backend.llvm.kernel.KernelEmitter`): inline and blocked
reductions, a scalar reduction split into fixed chunks across threads, dot
products, the loop part (outer loop, hoisted row reductions, inner loop,
accumulations), the row cache of row kernels, and matmuls (a call of the
packed GEMM, or an i-k-j loop nest)."""
from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

from ...ir import dtypes as D
from ...ir.node import Node
from ...ops import registry
from ...ops.index import broadcast_index, strided_view
from ..plan import align, is_immediate
from ..schedule import member_nodes
from . import matmul
from .loops import for_nest, for_range, for_ranges
from .scalar import I8, I64, SV, mem_type, reg_type

REDUCE_BLOCK = 1024     # float32 sums: blocks summed in float32, block sums in float64
MIN_INNER = 64          # an elementwise kernel's inner loop runs at least this many elements


class LoopStages:
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

    def _chunked(self):
        """(the reduction, its OpDef, accumulator dtype, its LLVM type, chunks)."""
        r = (self.k.loop_outputs() if self.dest is None else self.k.outputs)[0]
        d = registry.get(r.op)
        acc_dt = d.reduce_acc_dtype(r.dtype) if d.reduce_acc_dtype else r.dtype
        return r, d, acc_dt, reg_type(acc_dt), self.me.plan.chunks

    def _emit_chunk_partials(self):
        """A scalar reduction split into ``plan.chunks`` fixed chunks of its first
        reduced axis (this phase): each chunk is reduced into its partial in
        the workspace; the next phase (:meth:`_emit_chunk_combine`) combines
        the partials in chunk order — the same arithmetic whatever the number
        of threads that ran the chunks."""
        b = self.b
        r, d, acc_dt, t, C = self._chunked()
        x = r.inputs[0]
        L = x.shape[r.attrs["axes"][0]]
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
        self.current = prev

    def _emit_chunk_combine(self):
        """The reduction's value from its partials, in chunk order (one chunk)."""
        b, s = self.b, self.s
        r, d, acc_dt, t, C = self._chunked()
        part = self.ptr[self.ws_loc]
        idx0 = [self.ix.const(0)] * r.ndim
        prev, self.current = self.current, r
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
        if not k.hoisted and not outer_acc and not self.step.row_cache:
            # the outer loop would hold nothing but the inner one: one nest
            # (whose trailing axes _inner_nest may run as one loop)
            split = 1 if self.par["loop"] == "rows" else 0
        ranges = [(0, d) for d in shape[:split]]
        if self.par["loop"] == "rows":
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
            with self._inner_nest(shape[split:], outs) as inner:
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

    @contextmanager
    def _inner_nest(self, dims, outs):
        """The inner loops of :meth:`_emit_loop` over ``dims``; yields their
        index. Trailing axes that every buffer of an elementwise kernel
        spans whole or not at all run as one loop (``IndexBuilder.merge``):
        a 64x32x4x4 addition is one loop of 512 x 16 elements, not a nest
        whose 4-element inner loops LLVM unrolls and then vectorizes across
        channels with gathers and scatters (measured 40 us for 32K
        elements, a tenth of the speed of one contiguous loop)."""
        r = self._coalesced(dims, outs)
        if r < 2:
            with for_nest(self.b, dims, name="i") as inner:
                yield inner
            return
        head, tail = list(dims[:len(dims) - r]), tuple(dims[len(dims) - r:])
        size = 1
        for d in tail:
            size *= d
        with for_nest(self.b, head + [size], name="i") as loops:
            yield list(loops[:-1]) + self.ix.merge(loops[-1], tail)

    def _coalesced(self, dims, outs) -> int:
        """How many trailing axes of ``dims`` run as one loop, for a kernel
        that is elementwise (no movement op reads its digits apart, no
        reduction, no row cache): as long as every buffer it reads or writes
        has, over those axes, either the kernel's extents or extent 1 (its
        address is the merged index, or constant), and beyond that while the
        merged loop is shorter than :data:`MIN_INNER` elements (a broadcast
        operand's digit then costs a division by a constant and a gather,
        which measured 6.5x faster than the nest on 64x32x4x4 * 1x32x1x1)."""
        k = self.k
        if (k.hoisted or k.accumulates or self.row_cache or self.dest is not None
                or len(dims) < 2):
            return 0
        nodes = member_nodes(k)
        if any(registry.get(n.op).kind != "elementwise" for n in nodes):
            return 0
        touched = {id(o): o for o in outs}
        for n in nodes:
            for i in n.inputs:
                if not is_immediate(i) and (i.id not in self.members or i.id in self.staged):
                    touched[id(i)] = i
        shape = k.shape
        nd = len(shape)

        def spans(x, lo):
            ext = [x.shape[a - (nd - x.ndim)] if a >= nd - x.ndim else 1 for a in range(lo, nd)]
            return ext == list(shape[lo:]) or all(e == 1 for e in ext)
        r, inner = 1, dims[-1]
        while r < len(dims) and (inner < MIN_INNER or
                                 all(spans(x, nd - r - 1) for x in touched.values())):
            inner *= dims[-r - 1]
            r += 1
        return r

    def _row_cache_plan(self):
        """The plan's row cache of this kernel: (values to cache, bytes)
        (planner.row_cache)."""
        cands = self.step.row_cache
        inner = 1
        for d in self.k.shape[self.k.split:]:
            inner *= d
        return cands, sum(align(inner * c.dtype.itemsize) for c in cands)

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
            off = self.b.mul(self.b.zext(self.slot, I64), ir.Constant(I64, self.me.ws_stride()))
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
        return self.step.matmul_plan

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
                off = b.mul(b.zext(self.slot, I64), ir.Constant(I64, self.me.ws_stride()))
                ws = b.gep(ws, [off], source_etype=I8)
                if self.par["gemm"] == "rows":
                    rows = self._share(plan.m, unit=16)
                else:
                    cols = self._share(plan.n, unit=64)
            matmul.emit_matmul_call(b, self.me.module, plan, self.ptr[self._loc(plan.a)],
                                  self.ptr[self._loc(plan.b)], self.ptr[self._loc(n, writing=True)],
                                  ws, rows=rows, cols=cols)
            return
        a, bb = n.inputs
        s, b = self.s, self.b
        m_, k_, n_ = n.shape[-2], a.shape[-1], n.shape[-1]
        vb = strided_view(bb, lambda x: x.id in self.members, lambda x: not is_immediate(x))
        if vb is not None and vb.strides[-2] == 1 and vb.strides[-1] != 1 and k_ > 1:
            # B's columns contiguous (a transposed weight, x @ w.T): a dot
            # product per element along k, not an inner loop that strides
            # through B (measured 5-12x slower at batch 1)
            with for_nest(b, n.shape, name="md") as idx:
                self.scopes.append({})
                if D.is_float(n.dtype):
                    s.fp_flags = ("reassoc",)     # vectorized with partial sums
                v = self._dot_at(n, idx)
                s.fp_flags = ()
                self.store(n, idx, v)
                self.scopes.pop()
            return
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
