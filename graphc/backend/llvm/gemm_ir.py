"""The IR of graphc's GEMM (the algorithm and signature are described in
``gemm.py``): the microkernel, packing of A and B, and the blocked loops
around them, emitted by :class:`GemmEmitter` for one :class:`GemmConfig`."""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from .gemm_config import _ELEM, _SUFFIX, GEMM_ARGS, WS_ALIGN, GemmConfig, _c
from .loops import for_step, if_then
from .scalar import I1, I8, I32, I64, PTR


def _min(b, x, y):
    x, y = _c(x), _c(y)
    return b.select(b.icmp_signed("<", x, y), x, y)


class GemmEmitter:
    """Builds the gemm function and its helpers for one configuration."""

    def __init__(self, module: ir.Module, cfg: GemmConfig):
        self.m = module
        self.cfg = cfg
        self.T = _ELEM[np.dtype(cfg.dtype)]
        self.V = ir.VectorType(self.T, cfg.lanes)
        self.sfx = _SUFFIX[np.dtype(cfg.dtype)]
        self.item = cfg.itemsize

    # -- small helpers
    def intrinsic(self, name, ret, args):
        f = self.m.globals.get(name)
        if f is None:
            f = ir.Function(self.m, ir.FunctionType(ret, args), name=name)
        return f

    def function(self, name, args, names):
        fn = ir.Function(self.m, ir.FunctionType(ir.VoidType(), args), name=name)
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        for a, nm in zip(fn.args, names):
            a.name = nm
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        return fn, b

    def gep(self, b, p, off, t=None):
        return b.gep(p, [_c(off)], source_etype=t or self.T, inbounds=True)

    def zero(self):
        return ir.Constant(self.T, 0.0)

    # -- microkernel
    def micro(self):
        """C[m x n tile] (+)= Ap (kc x MR) @ B (kc x NR), B rows ``ldb`` apart
        (NR when packed; the row stride of B itself when read in place)."""
        cfg, T, V = self.cfg, self.T, self.V
        MR, NV, W, U, NR = cfg.mr, cfg.nvec, cfg.lanes, cfg.ku, cfg.nr
        fn, b = self.function(f"gemm_{self.sfx}_micro",
                              [I64, PTR, PTR, I64, PTR, I64, I64, I64, I1],
                              ["kc", "pa", "pb", "ldb", "c", "ldc", "m", "n", "beta"])
        kc, pa, pb, ldb, c, ldc, m, n, beta = fn.args
        tile = b.alloca(V, size=ir.Constant(I32, MR * NV), name="tile")
        for a in (pa, pb, c):
            a.add_attribute("noalias")
        vfn = "llvm.fma" if cfg.fma else "llvm.fmuladd"
        vname = f"v{cfg.lanes}{self.T.intrinsic_name}"
        fma = self.intrinsic(f"{vfn}.{vname}", V, [V, V, V])
        prefetch = self.intrinsic("llvm.prefetch.p0", ir.VoidType(), [PTR, I32, I32, I32])
        full = b.and_(b.icmp_signed("==", m, _c(MR)), b.icmp_signed("==", n, _c(NR)))
        # prefetch the C tile (it is read and written after the k loop)
        with if_then(b, full, "pf"):
            for r in range(MR):
                row = self.gep(b, c, b.mul(_c(r), ldc))
                for off in range(0, NR * self.item, 64):
                    b.call(prefetch, [self.gep(b, row, off, I8), ir.Constant(I32, 1),
                                      ir.Constant(I32, 3), ir.Constant(I32, 1)])
        undef = ir.Constant(V, ir.Undefined)
        splat_mask = ir.Constant(ir.VectorType(I32, W), None)

        def k_loop(k0, stop, step, acc0, tag):
            """while k < stop: ``step`` rank-1 updates; returns (k, accumulators) at exit."""
            pre = b.block
            cond = fn.append_basic_block(f"{tag}.cond")
            body = fn.append_basic_block(f"{tag}.body")
            end = fn.append_basic_block(f"{tag}.end")
            b.branch(cond)
            b.position_at_end(cond)
            k = b.phi(I64, name=tag)
            k.add_incoming(k0, pre)
            phis = []
            for i, x in enumerate(acc0):
                ph = b.phi(V, name=f"c{i // NV}_{i % NV}")
                ph.add_incoming(x, pre)
                phis.append(ph)
            b.cbranch(b.icmp_signed("<", k, stop), body, end)
            b.position_at_end(body)
            cur = list(phis)
            pak = self.gep(b, pa, b.mul(k, _c(MR)))
            pbk = self.gep(b, pb, b.mul(k, ldb))
            for u in range(step):
                pbu = self.gep(b, pbk, b.mul(_c(u), ldb))
                bv = [b.load(self.gep(b, pbu, v * W), typ=V, align=self.item) for v in range(NV)]
                for r in range(MR):
                    a = b.load(self.gep(b, pak, u * MR + r), typ=T, align=self.item)
                    av = b.shuffle_vector(b.insert_element(undef, a, ir.Constant(I32, 0)), undef,
                                          splat_mask)
                    for v in range(NV):
                        cur[r * NV + v] = b.call(fma, [av, bv[v], cur[r * NV + v]])
            k.add_incoming(b.add(k, _c(step), flags=("nsw", "nuw")), b.block)
            for ph, val in zip(phis, cur):
                ph.add_incoming(val, b.block)
            b.branch(cond)
            b.position_at_end(end)
            return k, phis
        zv = ir.Constant(V, None)
        # the unrolled loop, then single steps (none when kc is padded to the unroll)
        k, accs = k_loop(_c(0), b.and_(kc, _c(-U)), U, [zv] * (MR * NV), "k")
        _, accs = k_loop(k, kc, 1, accs, "kr")
        cur = [accs[r * NV:(r + 1) * NV] for r in range(MR)]

        fast = fn.append_basic_block("store.full")
        edge = fn.append_basic_block("store.edge")
        out = fn.append_basic_block("out")
        b.cbranch(full, fast, edge)
        # full tile: vector stores to C (adding to it when beta)
        b.position_at_end(fast)
        add = fn.append_basic_block("store.add")
        put = fn.append_basic_block("store.put")
        b.cbranch(beta, add, put)
        for blk, adding in ((add, True), (put, False)):
            b.position_at_end(blk)
            for r in range(MR):
                row = self.gep(b, c, b.mul(_c(r), ldc))
                for v in range(NV):
                    p = self.gep(b, row, v * W)
                    val = cur[r][v]
                    if adding:
                        val = b.fadd(b.load(p, typ=V, align=self.item), val)
                    b.store(val, p, align=self.item)
            b.branch(out)
        # edge tile: spill to a stack tile, then copy the m x n valid part
        b.position_at_end(edge)
        for r in range(MR):
            for v in range(NV):
                b.store(cur[r][v], self.gep(b, tile, r * NV + v, V), align=self.item)
        with for_step(b, 0, m, 1, "er") as i:
            crow = self.gep(b, c, b.mul(i, ldc))
            trow = self.gep(b, tile, b.mul(i, _c(NR)))
            with for_step(b, 0, n, 1, "ej") as j:
                p = self.gep(b, crow, j)
                old = b.select(beta, b.load(p, typ=T, align=self.item), self.zero())
                b.store(b.fadd(old, b.load(self.gep(b, trow, j), typ=T, align=self.item)), p,
                        align=self.item)
        b.branch(out)
        b.position_at_end(out)
        b.ret_void()
        return fn

    # -- packing
    # Both packers walk the source in its storage order (the innermost loop
    # runs along the contiguous dimension, so reads are sequential streams) and
    # write whole micro-panel rows; the last, partial micro-panel is filled by
    # a generic loop that pads with zeros, and rows kc..kcp of every panel are
    # zeroed so the microkernel's k loop needs no remainder.
    def _edge_panel(self, b, panel, src, kc, count, width, s_k, s_x):
        """panel[k*width + x] = src[k*s_k + x*s_x] for x < count, else 0."""
        with for_step(b, 0, kc, 1, "ek") as k:
            s = self.gep(b, src, b.mul(k, s_k))
            d = self.gep(b, panel, b.mul(k, _c(width)))
            with for_step(b, 0, width, 1, "ex") as x:
                valid = b.icmp_signed("<", x, count)
                xx = _min(b, x, b.sub(count, _c(1)))
                v = b.load(self.gep(b, s, b.mul(xx, s_x)), typ=self.T, align=self.item)
                b.store(b.select(valid, v, self.zero()), self.gep(b, d, x), align=self.item)

    def _pad_k(self, b, dst, npanels, kc, kcp, width):
        """Zero rows kc..kcp of each of ``npanels`` panels of kcp x width."""
        with if_then(b, b.icmp_signed("<", kc, kcp), "padk"):
            with for_step(b, 0, npanels, 1, "zp") as p:
                panel = self.gep(b, dst, b.mul(b.mul(p, kcp), _c(width)))
                with for_step(b, b.mul(kc, _c(width)), b.mul(kcp, _c(width)), 1, "z") as z:
                    b.store(self.zero(), self.gep(b, panel, z), align=self.item)

    def _transpose_panel(self, b, base, stride, width, dst, kc, count=None):
        """dst[k*width + r] = base[r*stride + k] for r < width, k < kc: ``width``
        source rows, each contiguous along k, into one k-major panel. Blocks of
        4 rows x 4 k are loaded as 4 vectors, transposed with shuffles and
        stored as 4 vectors; leftover rows and k are copied one by one.

        With ``count`` (< width) rows, rows past it repeat row ``count - 1``:
        they only feed rows (columns) of the microtile that are never stored,
        so they need valid memory, not zeros."""
        T = self.T
        V4 = ir.VectorType(T, 4)
        it = self.item
        groups = width - width % 4

        def shuf(x, y, mask):
            return b.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, 4), mask))

        offs = [b.mul(_c(r) if count is None else _min(b, r, b.sub(count, _c(1))), stride)
                for r in range(width)]

        def row(r, k):
            return self.gep(b, base, b.add(offs[r], k))

        def out(k, r):
            return self.gep(b, dst, b.add(b.mul(k, _c(width)), _c(r)))
        k4 = b.and_(kc, _c(-4))
        with for_step(b, 0, k4, 4, "tk") as k:
            ks = [k] + [b.add(k, _c(i)) for i in range(1, 4)]
            for g in range(0, groups, 4):
                r0, r1, r2, r3 = (b.load(row(g + i, k), typ=V4, align=it) for i in range(4))
                t0, t1 = shuf(r0, r1, [0, 4, 1, 5]), shuf(r0, r1, [2, 6, 3, 7])
                t2, t3 = shuf(r2, r3, [0, 4, 1, 5]), shuf(r2, r3, [2, 6, 3, 7])
                cols = [shuf(t0, t2, [0, 1, 4, 5]), shuf(t0, t2, [2, 3, 6, 7]),
                        shuf(t1, t3, [0, 1, 4, 5]), shuf(t1, t3, [2, 3, 6, 7])]
                for i in range(4):
                    b.store(cols[i], out(ks[i], g), align=it)
            for r in range(groups, width):
                for i in range(4):
                    b.store(b.load(row(r, ks[i]), typ=T, align=it), out(ks[i], r), align=it)
        with for_step(b, k4, kc, 1, "tr") as k:
            for r in range(width):
                b.store(b.load(row(r, k), typ=T, align=it), out(k, r), align=it)

    def _three_way(self, b, fn, cs, rs, tag):
        """Branch on (cs == 1) / (rs == 1) / other; returns the three blocks and the join."""
        blocks = [fn.append_basic_block(f"{tag}.{n}") for n in ("inner1", "test", "outer1",
                                                                "strided", "join")]
        b.cbranch(b.icmp_signed("==", cs, _c(1)), blocks[0], blocks[1])
        b.position_at_end(blocks[1])
        b.cbranch(b.icmp_signed("==", rs, _c(1)), blocks[2], blocks[3])
        return blocks[0], blocks[2], blocks[3], blocks[4]

    @staticmethod
    def _panels(b, total, width, kcp):
        """Packed panels of ``width`` rows (A) or columns (B) out of ``total``:
        (whole panels, the remainder, all panels, elements per panel,
        ``count(p)``: the valid rows/columns of panel p)."""
        nfull = b.sdiv(total, _c(width))
        rem = b.sub(total, b.mul(nfull, _c(width)))
        npanels = b.sdiv(b.add(total, _c(width - 1)), _c(width))
        pstride = b.mul(kcp, _c(width))

        def count(p):
            return _min(b, width, b.sub(total, b.mul(p, _c(width))))
        return nfull, rem, npanels, pstride, count

    @staticmethod
    def _row_offset(b, fn, has_rows, rows, k, rs):
        """``rows[k]`` if there is a row table, else ``k * rs`` (the table is
        read only when there is one: the branch is loop-invariant, and LLVM
        unswitches it)."""
        tab = fn.append_basic_block("row.tab")
        mul = fn.append_basic_block("row.stride")
        join = fn.append_basic_block("row.join")
        b.cbranch(has_rows, tab, mul)
        b.position_at_end(tab)
        t = b.load(b.gep(rows, [k], source_etype=I64), typ=I64)
        b.branch(join)
        b.position_at_end(mul)
        m = b.mul(k, rs)
        b.branch(join)
        b.position_at_end(join)
        off = b.phi(I64)
        off.add_incoming(t, tab)
        off.add_incoming(m, mul)
        return off

    def pack_b(self):
        """Bp[q][k][j] = B[k, q*NR + j] for k < kc, q*NR + j < nc; src points at
        B[pc, jc]. Rows kc..kcp are zero; columns past nc in the last panel are
        zeros or repeats (they only reach unstored microtile columns)."""
        cfg, V = self.cfg, self.V
        NR, W = cfg.nr, cfg.lanes
        fn, b = self.function(f"gemm_{self.sfx}_packb", [I64, I64, I64, PTR, I64, I64, PTR, PTR],
                              ["kc", "kcp", "nc", "src", "rs", "cs", "dst", "rows"])
        fn.attributes.add("noinline")        # called once per block: keep the driver small
        kc, kcp, nc, src, rs, cs, dst, rows = fn.args
        has_rows = b.icmp_unsigned("!=", rows, ir.Constant(PTR, None))
        for a in (src, dst):
            a.add_attribute("noalias")
        nfull, rem, npanels, pstride, count = self._panels(b, nc, NR, kcp)
        rowmaj, colmaj, strided, join = self._three_way(b, fn, cs, rs, "pb")
        # rows of B contiguous: k outer, copy NR/W vectors into each panel (the
        # partial last panel with masked loads that fill the rest with zeros)
        b.position_at_end(rowmaj)
        VI = ir.VectorType(I64, W)
        VB = ir.VectorType(I1, W)
        lane = b.shuffle_vector(b.insert_element(ir.Constant(VI, ir.Undefined), rem, _c(0)),
                                ir.Constant(VI, ir.Undefined), ir.Constant(ir.VectorType(I32, W), None))
        masks = [b.icmp_signed("<", ir.Constant(VI, [v * W + i for i in range(W)]), lane)
                 for v in range(cfg.nvec)]
        mload = self.intrinsic(f"llvm.masked.load.v{W}{self.T.intrinsic_name}.p0", V,
                               [PTR, I32, VB, V])
        with for_step(b, 0, kc, 1, "k") as k:
            # row k of B: k * rs, or the row table's entry (an implicit im2col)
            s = self.gep(b, src, self._row_offset(b, fn, has_rows, rows, k, rs))
            d = self.gep(b, dst, b.mul(k, _c(NR)))
            with for_step(b, 0, nfull, 1, "q") as q:
                sq = self.gep(b, s, b.mul(q, _c(NR)))
                dq = self.gep(b, d, b.mul(q, pstride))
                for v in range(cfg.nvec):
                    x = b.load(self.gep(b, sq, v * W), typ=V, align=self.item)
                    b.store(x, self.gep(b, dq, v * W), align=W * self.item)
            with if_then(b, b.icmp_signed(">", rem, _c(0)), "edge"):
                sq = self.gep(b, s, b.mul(nfull, _c(NR)))
                dq = self.gep(b, d, b.mul(nfull, pstride))
                for v in range(cfg.nvec):
                    x = b.call(mload, [self.gep(b, sq, v * W), ir.Constant(I32, self.item), masks[v],
                                       ir.Constant(V, None)])
                    b.store(x, self.gep(b, dq, v * W), align=W * self.item)
        b.branch(join)
        # columns of B contiguous (a transposed buffer): NR column streams per
        # panel, transposed 4 x 4 at a time
        b.position_at_end(colmaj)
        with for_step(b, 0, npanels, 1, "q") as q:
            self._transpose_panel(b, self.gep(b, src, b.mul(b.mul(q, _c(NR)), cs)), cs, NR,
                                  self.gep(b, dst, b.mul(q, pstride)), kc, count(q))
        b.branch(join)
        # any strides
        b.position_at_end(strided)
        with for_step(b, 0, npanels, 1, "q") as q:
            self._edge_panel(b, self.gep(b, dst, b.mul(q, pstride)),
                             self.gep(b, src, b.mul(b.mul(q, _c(NR)), cs)), kc, count(q), NR, rs, cs)
        b.branch(join)
        b.position_at_end(join)
        self._pad_k(b, dst, npanels, kc, kcp, NR)
        b.ret_void()
        return fn

    def pack_a(self):
        """Ap[p][k][r] = A[p*MR + r, k] for p*MR + r < mc, k < kc; src points at
        A[ic, pc]. Rows kc..kcp are zero; rows past mc in the last panel are
        zeros or repeats (they only reach unstored microtile rows)."""
        cfg, T = self.cfg, self.T
        MR = cfg.mr
        fn, b = self.function(f"gemm_{self.sfx}_packa", [I64, I64, I64, PTR, I64, I64, PTR],
                              ["mc", "kc", "kcp", "src", "rs", "cs", "dst"])
        fn.attributes.add("noinline")
        mc, kc, kcp, src, rs, cs, dst = fn.args
        for a in (src, dst):
            a.add_attribute("noalias")
        nfull, rem, npanels, pstride, count = self._panels(b, mc, MR, kcp)
        rowmaj, colmaj, strided, join = self._three_way(b, fn, cs, rs, "pa")
        # rows of A contiguous: MR row streams per panel, transposed 4 x 4 at a time
        b.position_at_end(rowmaj)
        with for_step(b, 0, npanels, 1, "p") as p:
            self._transpose_panel(b, self.gep(b, src, b.mul(b.mul(p, _c(MR)), rs)), rs, MR,
                                  self.gep(b, dst, b.mul(p, pstride)), kc, count(p))
        b.branch(join)
        # columns of A contiguous (a transposed buffer): k outer, MR values per panel
        b.position_at_end(colmaj)
        with for_step(b, 0, kc, 1, "k") as k:
            s = self.gep(b, src, b.mul(k, cs))
            d = self.gep(b, dst, b.mul(k, _c(MR)))
            with for_step(b, 0, nfull, 1, "p") as p:
                sp = self.gep(b, s, b.mul(p, _c(MR)))
                dp = self.gep(b, d, b.mul(p, pstride))
                for r in range(MR):
                    x = b.load(self.gep(b, sp, r), typ=T, align=self.item)
                    b.store(x, self.gep(b, dp, r), align=self.item)
        with if_then(b, b.icmp_signed(">", rem, _c(0)), "edge"):
            self._edge_panel(b, self.gep(b, dst, b.mul(nfull, pstride)),
                             self.gep(b, src, b.mul(b.mul(nfull, _c(MR)), rs)), kc, rem, MR, cs, rs)
        b.branch(join)
        b.position_at_end(strided)
        with for_step(b, 0, npanels, 1, "p") as p:
            self._edge_panel(b, self.gep(b, dst, b.mul(p, pstride)),
                             self.gep(b, src, b.mul(b.mul(p, _c(MR)), rs)), kc, count(p), MR, cs, rs)
        b.branch(join)
        b.position_at_end(join)
        self._pad_k(b, dst, npanels, kc, kcp, MR)
        b.ret_void()
        return fn

    # -- driver
    def gemm(self, name):
        cfg = self.cfg
        MR, NR, U = cfg.mr, cfg.nr, cfg.ku
        micro, pack_a, pack_b = self.micro(), self.pack_a(), self.pack_b()
        fn, b = self.function(name, GEMM_ARGS,
                              ["M", "N", "K", "A", "rsA", "csA", "B", "rsB", "csB", "C", "ldc",
                               "accumulate", "ws", "brows"])
        M, N, K, A, rsA, csA, B, rsB, csB, C, ldc, accum, ws, brows = fn.args
        has_rows = b.icmp_unsigned("!=", brows, ir.Constant(PTR, None))
        fn.attributes.add("noinline")        # one copy per module, however many callers
        C.add_attribute("noalias")
        ws.add_attribute("noalias")
        acc = b.icmp_signed("!=", accum, ir.Constant(I32, 0))
        # few rows of A and a B that stays in L2: B micro-panels are used by
        # few microkernel calls and reading them in place beats packing (a
        # bigger B streams from L3/memory faster when packed sequentially)
        direct = b.and_(b.icmp_signed("==", csB, _c(1)), b.icmp_signed("<=", M, _c(cfg.direct_m)))
        bbytes_all = b.mul(b.mul(K, N), _c(self.item))
        direct = b.and_(direct, b.icmp_signed("<=", bbytes_all, _c(cfg.direct_bytes)))
        direct = b.and_(direct, b.not_(has_rows))     # (rows from a table are always packed)
        nothing = b.or_(b.icmp_signed("<=", M, _c(0)), b.icmp_signed("<=", N, _c(0)))
        ret = fn.append_basic_block("ret")
        go = fn.append_basic_block("go")
        b.cbranch(nothing, ret, go)
        b.position_at_end(go)
        # K == 0: C = 0 (or unchanged when accumulating)
        kzero = b.icmp_signed("<=", K, _c(0))
        work = fn.append_basic_block("work")
        zero = fn.append_basic_block("zero")
        b.cbranch(kzero, zero, work)
        b.position_at_end(zero)
        with if_then(b, b.not_(acc), "clear"):
            with for_step(b, 0, M, 1, "zi") as i:
                row = self.gep(b, C, b.mul(i, ldc))
                with for_step(b, 0, N, 1, "zj") as j:
                    b.store(self.zero(), self.gep(b, row, j), align=self.item)
        b.branch(ret)

        b.position_at_end(work)
        # balanced block sizes: ceil(K / ceil(K / KC)) rounded up to the unroll, etc.
        def balanced(total, block, mult):
            nblk = b.sdiv(b.add(total, _c(block - 1)), _c(block))
            per = b.sdiv(b.sub(b.add(total, nblk), _c(1)), nblk)
            return b.mul(b.sdiv(b.add(per, _c(mult - 1)), _c(mult)), _c(mult))

        def cap(total, block, mult):      # the workspace bound (see GemmConfig.blocks)
            return _min(b, block, b.mul(b.sdiv(b.add(total, _c(mult - 1)), _c(mult)), _c(mult)))
        KCb = balanced(K, cfg.kc, U)
        MCb = balanced(M, cfg.mc, MR)
        NCb = balanced(N, cfg.nc, NR)
        # workspace: [align pad][Bp: kcap*ncap][Ap: mcap*kcap]
        addr = b.ptrtoint(ws, I64)
        pad = b.and_(b.sub(_c(0), addr), _c(WS_ALIGN - 1))
        bp = b.gep(ws, [pad], source_etype=I8, inbounds=True, name="Bp")
        kcap, ncap = cap(K, cfg.kc, U), cap(N, cfg.nc, NR)
        bbytes = b.mul(b.mul(kcap, ncap), _c(self.item))
        bbytes = b.and_(b.add(bbytes, _c(WS_ALIGN - 1)), _c(-WS_ALIGN))
        ap = b.gep(bp, [bbytes], source_etype=I8, inbounds=True, name="Ap")
        with for_step(b, 0, N, NCb, "jc") as jc:
            nc = _min(b, NCb, b.sub(N, jc))
            with for_step(b, 0, K, KCb, "pc") as pc:
                kc = _min(b, KCb, b.sub(K, pc))
                kcp = b.mul(b.sdiv(b.add(kc, _c(U - 1)), _c(U)), _c(U))
                beta = b.or_(acc, b.icmp_signed(">", pc, _c(0)))
                # B[pc, jc]: with a row table, rows pc.. are brows[pc..] from B
                bsrc = self.gep(b, B, b.add(b.select(has_rows, _c(0), b.mul(pc, rsB)),
                                            b.mul(jc, csB)))
                rows_pc = b.select(has_rows, b.gep(brows, [pc], source_etype=I64), brows)
                # with few rows, B is used by few microkernel calls: whole
                # micro-panels of row-major B are read in place, only the
                # partial last one is packed (to panel 0)
                nfc = b.mul(b.sdiv(nc, _c(NR)), _c(NR))
                pack_all = fn.append_basic_block("packb.all")
                pack_edge = fn.append_basic_block("packb.edge")
                packed = fn.append_basic_block("packb.done")
                b.cbranch(direct, pack_edge, pack_all)
                b.position_at_end(pack_all)
                b.call(pack_b, [kc, kcp, nc, bsrc, rsB, csB, bp, rows_pc])
                b.branch(packed)
                b.position_at_end(pack_edge)
                with if_then(b, b.icmp_signed("<", nfc, nc), "edgeb"):
                    b.call(pack_b, [kc, kcp, b.sub(nc, nfc), self.gep(b, bsrc, nfc), rsB, csB, bp,
                                    rows_pc])
                b.branch(packed)
                b.position_at_end(packed)
                with for_step(b, 0, M, MCb, "ic") as ic:
                    mc = _min(b, MCb, b.sub(M, ic))
                    asrc = self.gep(b, A, b.add(b.mul(ic, rsA), b.mul(pc, csA)))
                    b.call(pack_a, [mc, kc, kcp, asrc, rsA, csA, ap])
                    cblk = self.gep(b, C, b.add(b.mul(ic, ldc), jc))
                    with for_step(b, 0, nc, NR, "jr") as jr:
                        nn = _min(b, NR, b.sub(nc, jr))
                        inplace = b.and_(direct, b.icmp_signed("==", nn, _c(NR)))
                        pbj = b.select(inplace, self.gep(b, bsrc, jr),
                                       b.select(direct, bp, self.gep(b, bp, b.mul(jr, kcp))))
                        ldb = b.select(inplace, rsB, _c(NR))
                        kk = b.select(inplace, kc, kcp)
                        ccol = self.gep(b, cblk, jr)
                        with for_step(b, 0, mc, MR, "ir") as ir_:
                            mm = _min(b, MR, b.sub(mc, ir_))
                            b.call(micro, [kk, self.gep(b, ap, b.mul(ir_, kcp)), pbj, ldb,
                                           self.gep(b, ccol, b.mul(ir_, ldc)), ldc, mm, nn, beta])
        b.branch(ret)
        b.position_at_end(ret)
        b.ret_void()
        return fn


