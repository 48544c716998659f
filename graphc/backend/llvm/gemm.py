"""A packed, cache-blocked, register-blocked GEMM emitted as LLVM IR.

:func:`shared_gemm` declares in a module the process-wide compiled GEMM of
a dtype (float32, float64), compiling it on first use; :func:`emit_gemm`
emits a private copy with any :class:`GemmConfig` (tests). Both have the
signature::

    void graphc_gemm_f32(i64 M, i64 N, i64 K,
                  ptr A, i64 rsA, i64 csA,   ; A[i,k] = A[i*rsA + k*csA]  (elements)
                  ptr B, i64 rsB, i64 csB,   ; B[k,j] = B[k*rsB + j*csB]
                  ptr C, i64 ldc,            ; C[i,j] = C[i*ldc + j]      (rows contiguous)
                  i32 accumulate,            ; 0: C = A@B, else C += A@B
                  ptr workspace)             ; gemm_workspace_bytes(dtype, M, N, K) bytes

(``emit_gemm`` names it ``gemm_f32``.)

Transposed operands are only strides: ``A.T`` stored row-major is
``rsA=1, csA=M``; nothing is materialized. ``C`` must not overlap ``A`` or
``B``. The function keeps no state: all scratch memory is ``workspace``
(aligned to 64 bytes inside, so any pointer will do), so threads may call it
at the same time on disjoint blocks of ``C`` (rows ``i0:i1`` = offset ``A``
and ``C`` by ``i0`` rows and pass ``M = i1 - i0``; columns likewise with
``B``, ``C`` and ``N``), each with its own workspace.

The algorithm is the Goto/BLIS one:

    for jc in 0..N step NC:                 B panel  (KC x NC)  -> L3
      for pc in 0..K step KC:
        pack B[pc:pc+kc, jc:jc+nc]          micro-panels of NR columns, k-major
        for ic in 0..M step MC:             A block  (MC x KC)  -> L2
          pack A[ic:ic+mc, pc:pc+kc]        micro-panels of MR rows, k-major
          for jr in 0..nc step NR:          B micro-panel (KC x NR) -> L1
            for ir in 0..mc step MR:
              C[ir:ir+MR, jr:jr+NR] (+)= Ap[ir] @ Bp[jr]      (microkernel)

The microkernel keeps an MR x NR tile of C in MR x NVEC vector registers
(NR = NVEC vector lengths) and does, for each k, NVEC vector loads of packed
B, MR scalar loads of packed A broadcast to a vector, and MR x NVEC
``llvm.fma``. Packed panels are padded to whole MR x NR tiles (with zeros,
or with repeats of the last row or column, which only reach unstored parts
of the microtile) and with zero rows of k to a multiple of the k unroll, so
the unrolled loop has no remainder; edge tiles of C (M % MR, N % NR) go
through a small stack tile. With few rows (M <= 4 MR) and a B that fits in
L2, row-major B is read in place instead of packed. Block sizes come from
the host's vector width, register count and cache sizes (:func:`host_config`).

:func:`plan_matmul` / :func:`emit_matmul_call` connect a graph's matmul
kernel to it (see ``KernelEmitter._emit_matmul``); :func:`gemm_numpy` runs
it on numpy arrays.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from ... import forksafe
from . import rtlib
from .loops import for_step, if_then
from .scalar import F32, F64, I1, I8, I32, I64, PTR

_ELEM = {np.dtype(np.float32): F32, np.dtype(np.float64): F64}
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
WS_ALIGN = 64
# M, N, K, A, rsA, csA, B, rsB, csB, C, ldc, accumulate, workspace
GEMM_ARGS = [I64, I64, I64, PTR, I64, I64, PTR, I64, I64, PTR, I64, I32, PTR]


# ------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class GemmConfig:
    """Blocking parameters of one GEMM (all sizes in elements).

    lanes -- elements per vector; nvec -- vectors per microtile row (NR = lanes * nvec);
    mr -- microtile rows; kc, mc, nc -- cache blocks (multiples of ku, mr, nr);
    ku -- k unroll of the microkernel; fma -- use ``llvm.fma`` (else ``llvm.fmuladd``).
    """
    dtype: np.dtype
    lanes: int
    nvec: int
    mr: int
    kc: int
    mc: int
    nc: int
    ku: int = 4
    fma: bool = True
    direct_m: int = 0          # M <= direct_m and B (K x N) of at most direct_bytes:
    direct_bytes: int = 0      # row-major B is read in place instead of packed
    vector_bits: int = 0       # the vector width this was derived from (documentation)

    @property
    def nr(self) -> int:
        return self.lanes * self.nvec

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    def blocks(self, m=None, n=None, k=None):
        """Largest (kc, mc, nc) used for these dims (or any dims)."""
        kc, mc, nc = self.kc, self.mc, self.nc
        if k is not None:
            kc = min(kc, _roundup(max(k, 1), self.ku))
        if m is not None:
            mc = min(mc, _roundup(max(m, 1), self.mr))
        if n is not None:
            nc = min(nc, _roundup(max(n, 1), self.nr))
        return kc, mc, nc

    def workspace_bytes(self, m=None, n=None, k=None) -> int:
        kc, mc, nc = self.blocks(m, n, k)
        return WS_ALIGN + _roundup(kc * nc * self.itemsize, WS_ALIGN) + \
            _roundup(mc * kc * self.itemsize, WS_ALIGN)


def _roundup(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def _rounddown(x: int, m: int) -> int:
    return max(m, x // m * m)


def host_vector() -> tuple[int, int, bool]:
    """(widest useful vector bits, number of vector registers, has FMA) of this CPU."""
    import llvmlite.binding as llvm
    try:
        triple = llvm.get_process_triple()
        feats = dict(llvm.get_host_cpu_features())
    except Exception:          # features unknown on this platform: be conservative
        return 128, 16, False
    arch = triple.split("-")[0]
    if arch in ("x86_64", "i386", "i686"):
        if feats.get("avx512f"):
            return 512, 32, bool(feats.get("fma", True))
        if feats.get("avx"):
            return 256, 16, bool(feats.get("fma"))
        return 128, 16, False
    if arch in ("aarch64", "arm64"):
        return 128, 32, True
    return 128, 16, False


def host_caches() -> dict:
    """Per-core data cache sizes in bytes by level, read from sysfs (Linux);
    defaults (32 KiB, 1 MiB, 8 MiB) where unknown."""
    out = {1: 32 << 10, 2: 1 << 20, 3: 8 << 20}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for d in sorted(os.listdir(base)):
            if not d.startswith("index"):
                continue

            def rd(f, d=d):
                with open(os.path.join(base, d, f)) as fh:
                    return fh.read().strip()
            if rd("type") not in ("Data", "Unified"):
                continue
            size = rd("size")
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1], 1)
            out[int(rd("level"))] = int(size.rstrip("KMG")) * mult
    except (OSError, ValueError):
        pass
    return out


def make_config(dtype, vector_bits: int, nregs: int, fma: bool, caches: dict) -> GemmConfig:
    """Blocking for a machine with ``nregs`` vector registers of ``vector_bits``.

    NR = 2 vectors; MR fills the registers left after the NR/lanes vectors of
    B and one broadcast of A (6 with 16 registers), but at most 8: with 32
    registers 14 rows fit, yet 128 rows (a usual batch) are then 9 tiles and
    an edge tile of 2, and MR = 8 measured as fast on large squares and 5-13%
    faster on the MLP's 128-row products (float32 and float64, AVX-512; see
    docs/performance.md). KC makes the
    B micro-panel (KC x NR) the size of L1, at most 384 (384 with 48 KiB); MC is six
    micro-panels of A (the A block, MC x KC, then takes 1/8-1/16 of L2 and
    stays there while B micro-panels stream past; larger MC measured slower
    here, see docs/performance.md); NC lets the B panel (KC x NC) take a
    quarter of the outer cache, capped at 8 MiB and 4096 columns (the
    workspace is sized for the actual dims, so the caps only bound it).
    Row-major B is read in place, not packed, when M <= 4 MR and B fits in
    L2 (measured: 1.1-1.6x faster there, slower for bigger B)."""
    dtype = np.dtype(dtype)
    item = dtype.itemsize
    lanes = max(1, vector_bits // (8 * item))
    nvec = 2
    mr = max(1, min(8, (nregs - nvec - 2) // nvec))
    ku = 4
    nr = lanes * nvec
    l1, l2, l3 = caches.get(1, 32 << 10), caches.get(2, 1 << 20), caches.get(3, 8 << 20)
    kc = min(384, max(128, _rounddown(l1 // (nr * item), ku)))
    mc = max(mr, min(6 * mr, _rounddown(l2 // 4 // (kc * item), mr)))
    nc = min(_rounddown(4096, nr), max(nr, _rounddown(min(l3 // 4, 8 << 20) // (kc * item), nr)))
    return GemmConfig(dtype, lanes, nvec, mr, kc, mc, nc, ku, fma, 4 * mr, l2, vector_bits)


_HOST: dict = {}


def host_config(dtype) -> GemmConfig:
    """The configuration used for this machine (cached per dtype)."""
    dtype = np.dtype(dtype)
    if dtype not in _ELEM:
        raise TypeError(f"gemm: unsupported dtype {dtype} (float32 or float64)")
    if dtype not in _HOST:
        bits, nregs, fma = host_vector()
        _HOST[dtype] = make_config(dtype, bits, nregs, fma, host_caches())
    return _HOST[dtype]


def gemm_workspace_bytes(dtype, m: int | None = None, n: int | None = None,
                         k: int | None = None) -> int:
    """Bytes of workspace ``gemm_<dtype>`` needs: for any problem if the dims
    are omitted, else for an ``m x k @ k x n`` product (or any smaller one)."""
    return host_config(dtype).workspace_bytes(m, n, k)


# ------------------------------------------------------------------ IR helpers
def _c(v):
    return ir.Constant(I64, v) if isinstance(v, int) else v


def _min(b, x, y):
    x, y = _c(x), _c(y)
    return b.select(b.icmp_signed("<", x, y), x, y)


class _Emitter:
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

    def pack_b(self):
        """Bp[q][k][j] = B[k, q*NR + j] for k < kc, q*NR + j < nc; src points at
        B[pc, jc]. Rows kc..kcp are zero; columns past nc in the last panel are
        zeros or repeats (they only reach unstored microtile columns)."""
        cfg, V = self.cfg, self.V
        NR, W = cfg.nr, cfg.lanes
        fn, b = self.function(f"gemm_{self.sfx}_packb", [I64, I64, I64, PTR, I64, I64, PTR],
                              ["kc", "kcp", "nc", "src", "rs", "cs", "dst"])
        fn.attributes.add("noinline")        # called once per block: keep the driver small
        kc, kcp, nc, src, rs, cs, dst = fn.args
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
            s = self.gep(b, src, b.mul(k, rs))
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
                               "accumulate", "ws"])
        M, N, K, A, rsA, csA, B, rsB, csB, C, ldc, accum, ws = fn.args
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
                bsrc = self.gep(b, B, b.add(b.mul(pc, rsB), b.mul(jc, csB)))
                # with few rows, B is used by few microkernel calls: whole
                # micro-panels of row-major B are read in place, only the
                # partial last one is packed (to panel 0)
                nfc = b.mul(b.sdiv(nc, _c(NR)), _c(NR))
                pack_all = fn.append_basic_block("packb.all")
                pack_edge = fn.append_basic_block("packb.edge")
                packed = fn.append_basic_block("packb.done")
                b.cbranch(direct, pack_edge, pack_all)
                b.position_at_end(pack_all)
                b.call(pack_b, [kc, kcp, nc, bsrc, rsB, csB, bp])
                b.branch(packed)
                b.position_at_end(pack_edge)
                with if_then(b, b.icmp_signed("<", nfc, nc), "edgeb"):
                    b.call(pack_b, [kc, kcp, b.sub(nc, nfc), self.gep(b, bsrc, nfc), rsB, csB, bp])
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


def emit_gemm(module: ir.Module, dtype, config: GemmConfig | None = None) -> ir.Function:
    """The function ``gemm_<f32|f64>`` in ``module``, emitting it on first use.

    ``config`` overrides the host configuration (tests use it to exercise
    narrower vectors); one configuration per dtype per module."""
    dtype = np.dtype(dtype)
    if dtype not in _ELEM:
        raise TypeError(f"gemm: unsupported dtype {dtype} (float32 or float64)")
    name = f"gemm_{_SUFFIX[dtype]}"
    f = module.globals.get(name)
    if f is not None:
        return f
    cfg = config or host_config(dtype)
    return _Emitter(module, cfg).gemm(name)


def _component(dtype):
    """The runtime-library component holding the host GEMM for ``dtype``: the
    loop vectorizer and unroller are off (the hot loops are vectorized and
    unrolled by construction, and what is left, edge loops, is not worth the
    compile time), and it is optimized at O1: the same GFLOP/s as O3 for
    every shape measured (512², 1000², the MLP's 128x784x256 and its
    transposes, 77x300x129), and 320 ms to build instead of 440 (once per
    machine and graphc version: the object code is cached on disk)."""
    name = f"graphc_gemm_{_SUFFIX[dtype]}"

    def emit(m: ir.Module):
        fn = _Emitter(m, host_config(dtype)).gemm(name)
        fn.linkage = "external"
    rtlib.component(f"gemm_{_SUFFIX[dtype]}", [name],
                    tuning={"loop_vectorization": False, "loop_unrolling": False}, opt=1)(emit)


for _dt in _ELEM:
    _component(_dt)


def shared_gemm(module: ir.Module, dtype) -> ir.Function:
    """A declaration in ``module`` of ``graphc_gemm_<f32|f64>``, compiled once
    per process (on first use; its object code is cached on disk) and
    registered as a JIT symbol, so each compiled graph links to it instead of
    optimizing the GEMM's IR again."""
    dtype = np.dtype(dtype)
    if dtype not in _ELEM:
        raise TypeError(f"gemm: unsupported dtype {dtype} (float32 or float64)")
    comp = f"gemm_{_SUFFIX[dtype]}"
    rtlib.require(comp)
    rtlib.uses(module, comp)
    name = f"graphc_gemm_{_SUFFIX[dtype]}"
    f = module.globals.get(name)
    if f is None:
        f = ir.Function(module, ir.FunctionType(ir.VoidType(), GEMM_ARGS), name)
    return f


_SHARED_LOCK = forksafe.lock(globals(), "_SHARED_LOCK", rank=3)   # (see graphc/forksafe.py)


# ------------------------------------------------------------------ matmul kernels
# Below this many multiply-adds per matrix product (M*N*K), with fewer rows
# than GEMM_MIN_M or fewer columns than GEMM_MIN_N, the simple i-k-j loop nest
# is as fast as packing or faster (measured with benchmarks/gemm_bench.py
# --crossover; see docs/performance.md).
GEMM_MIN_MACS = 1 << 17
GEMM_MIN_M = 4
GEMM_MIN_N = 16


def strided_view(x, members: set, is_leaf_buffer) -> tuple | None:
    """``(buffer node, strides)`` when ``x`` is a buffer or a chain of member
    transposes / broadcasts of one: element ``idx`` of ``x`` is at
    ``sum(idx * strides)`` (elements) in that buffer. ``None`` otherwise.
    ``is_leaf_buffer(node)`` says whether a non-member node has a buffer."""
    chain = []
    node = x
    while node.id in members:
        if node.op not in ("transpose", "broadcast_to"):
            return None
        chain.append(node)
        node = node.inputs[0]
    if not is_leaf_buffer(node):
        return None
    strides, acc = [], 1
    for d in reversed(node.shape):
        strides.append(acc)
        acc *= d
    strides = strides[::-1]
    for t in reversed(chain):
        src = t.inputs[0]
        if t.op == "transpose":
            strides = [strides[a] for a in t.attrs["axes"]]
        else:
            lead = t.ndim - src.ndim
            strides = [0] * lead + [0 if src.shape[k] == 1 else strides[k] for k in range(src.ndim)]
    return node, tuple(strides)


@dataclass
class MatmulPlan:
    """How a matmul node runs as calls of ``gemm_<dt>``: a loop over ``batch``
    (batch axes left after folding) calling gemm on M x K @ K x N with the
    operands' row/column strides and per-batch-axis element offsets."""
    dtype: np.dtype
    a: object               # buffer node of A
    b: object               # buffer node of B
    m: int
    n: int
    k: int
    rs_a: int
    cs_a: int
    rs_b: int
    cs_b: int
    batch: tuple            # batch loop shape
    bstride_a: tuple        # element stride of each batch axis in A, B, C
    bstride_b: tuple
    bstride_c: tuple

    @property
    def workspace_bytes(self) -> int:
        return host_config(self.dtype).workspace_bytes(self.m, self.n, self.k)


def plan_matmul(node, members: set, is_leaf_buffer, force: bool = False) -> MatmulPlan | None:
    """A :class:`MatmulPlan` for matmul ``node`` when its operands are strided
    views of buffers, its dtype is float32/float64, and (unless ``force``) it
    is big enough for packing to pay; ``None`` means: use the loop nest."""
    dt = np.dtype(node.dtype)
    if dt not in _ELEM:
        return None
    a, b = node.inputs
    va = strided_view(a, members, is_leaf_buffer)
    vb = strided_view(b, members, is_leaf_buffer)
    if va is None or vb is None:
        return None
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    (abuf, sa), (bbuf, sb) = va, vb
    bshape = node.shape[:-2]
    nb = len(bshape)

    def bstrides(x, s):
        lead = nb - (x.ndim - 2)
        return [0 if d < lead or x.shape[d - lead] == 1 else s[d - lead] for d in range(nb)]
    ba, bb = bstrides(a, sa), bstrides(b, sb)
    bc, acc = [], m * n
    for d in reversed(bshape):
        bc.append(acc)
        acc *= d
    bc = bc[::-1]
    rs_a, cs_a, rs_b, cs_b = sa[-2], sa[-1], sb[-2], sb[-1]
    batch = list(bshape)
    # fold trailing batch axes into M where B is shared and A's rows (and C's)
    # continue evenly across the axis: (b, M, K) @ (K, N) is one (b*M, K) @ (K, N)
    while batch and (batch[-1] == 1 or (bb[-1] == 0 and ba[-1] == m * rs_a and bc[-1] == m * n)):
        m *= batch.pop()
        ba.pop(), bb.pop(), bc.pop()
    if not force and (m * n * k < GEMM_MIN_MACS or m < GEMM_MIN_M or n < GEMM_MIN_N):
        return None
    return MatmulPlan(dt, abuf, bbuf, m, n, k, rs_a, cs_a, rs_b, cs_b, tuple(batch),
                      tuple(ba), tuple(bb), tuple(bc))


def emit_matmul_call(b: ir.IRBuilder, module: ir.Module, plan: MatmulPlan, pa, pb, pc, ws,
                     rows=None, cols=None) -> None:
    """Emit the batch loop calling ``gemm_<dt>`` for ``plan`` (pointers to the
    A and B buffers, the C output and the workspace). ``rows``/``cols``:
    ``(lo, hi)`` i64 values restricting the product to those rows (or
    columns) of C, for one thread's share."""
    from .loops import for_nest
    f = shared_gemm(module, plan.dtype)
    T = _ELEM[plan.dtype]

    def offset(ptr, idx, strides):
        off = None
        for i, s in zip(idx, strides):
            if s:
                t = b.mul(i, _c(s))
                off = t if off is None else b.add(off, t)
        return ptr if off is None else b.gep(ptr, [off], source_etype=T, inbounds=True)
    m, n = _c(plan.m), _c(plan.n)
    if rows is not None:
        lo, hi = rows
        m = b.sub(hi, lo)
        pa = b.gep(pa, [b.mul(lo, _c(plan.rs_a))], source_etype=T)
        pc = b.gep(pc, [b.mul(lo, _c(plan.n))], source_etype=T)
    if cols is not None:
        lo, hi = cols
        n = b.sub(hi, lo)
        pb = b.gep(pb, [b.mul(lo, _c(plan.cs_b))], source_etype=T)
        pc = b.gep(pc, [lo], source_etype=T)
    with for_nest(b, plan.batch, name="gb") as idx:
        b.call(f, [m, n, _c(plan.k),
                   offset(pa, idx, plan.bstride_a), _c(plan.rs_a), _c(plan.cs_a),
                   offset(pb, idx, plan.bstride_b), _c(plan.rs_b), _c(plan.cs_b),
                   offset(pc, idx, plan.bstride_c), _c(plan.n), ir.Constant(I32, 0), ws])


# ------------------------------------------------------------------ numpy entry point
_RUNNERS: dict = {}
_WS = threading.local()


def _runner(dtype):
    """The process-wide GEMM behind an ``i32 entry(ptr args)`` wrapper that
    takes its 13 arguments from an int64 array (compiled once per dtype)."""
    from .jit import JitModule
    with _SHARED_LOCK:
        r = _RUNNERS.get(dtype)
    if r is None:
        mod = ir.Module("gemm_runner")
        f = shared_gemm(mod, dtype)
        fn = ir.Function(mod, ir.FunctionType(I32, [PTR]), "gemm_entry")
        b = ir.IRBuilder(fn.append_basic_block())
        vals = []
        for k, t in enumerate(GEMM_ARGS):
            x = b.load(b.gep(fn.args[0], [_c(k)], source_etype=I64), typ=I64)
            vals.append(b.inttoptr(x, PTR) if t == PTR else b.trunc(x, I32) if t == I32 else x)
        b.call(f, vals)
        b.ret(ir.Constant(I32, 0))
        r = JitModule.compile(str(mod), "gemm_entry")
        with _SHARED_LOCK:
            r = _RUNNERS.setdefault(dtype, r)
    return r


def gemm_numpy(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None,
               accumulate: bool = False) -> np.ndarray:
    """``out = a @ b`` (or ``out += a @ b``) with graphc's GEMM, for 2-D
    float32/float64 arrays of any strides (transposed views are read in
    place). ``out`` needs contiguous rows. The GIL is released during the
    call, so threads may work on disjoint blocks of one output at once; each
    thread uses its own workspace."""
    from ...errors import DTypeError, ShapeError
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"gemm: operands must be 2-D, got shapes {a.shape} and {b.shape}")
    if a.dtype != b.dtype or a.dtype not in _ELEM:
        raise DTypeError(f"gemm: operands must both be float32 or both float64, got "
                         f"{a.dtype} and {b.dtype}")
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2:
        raise ShapeError(f"gemm: {a.shape} @ {b.shape}: contracted dimensions differ ({k} vs {k2})")
    it = a.itemsize
    if out is None:
        out = np.zeros((m, n), a.dtype) if accumulate else np.empty((m, n), a.dtype)
    if not isinstance(out, np.ndarray) or out.shape != (m, n) or out.dtype != a.dtype:
        raise ShapeError(f"gemm: out must be a {a.dtype} array of shape {(m, n)}")
    if out.size and (out.strides[1] != it or out.strides[0] % it or not out.flags.writeable):
        raise ValueError("gemm: out must be writeable with contiguous rows")
    if out.size == 0:
        return out

    def usable(x):
        ok = all(s % it == 0 and s >= 0 for s in x.strides) and x.flags.aligned
        return x if ok and not np.may_share_memory(x, out) else np.ascontiguousarray(x).copy()
    a, b = usable(a), usable(b)
    need = gemm_workspace_bytes(a.dtype, m, n, k)
    ws = getattr(_WS, "buf", None)
    if ws is None or ws.nbytes < need:
        ws = _WS.buf = np.empty(need, np.uint8)
    args = np.array([m, n, k, a.ctypes.data, a.strides[0] // it, a.strides[1] // it,
                     b.ctypes.data, b.strides[0] // it, b.strides[1] // it,
                     out.ctypes.data, out.strides[0] // it, int(bool(accumulate)),
                     ws.ctypes.data], np.int64)
    _runner(a.dtype).cfunc(args.ctypes.data)
    return out
