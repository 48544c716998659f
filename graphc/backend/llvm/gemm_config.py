"""The GEMM's configuration: its signature's types, and the blocking
(:class:`GemmConfig`) derived from the host's vector width, register count and
caches (``host.py``). ``gemm.py`` describes the algorithm."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from .host import host_caches, host_vector
from .scalar import F32, F64, I32, I64, PTR

_ELEM = {np.dtype(np.float32): F32, np.dtype(np.float64): F64}
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
WS_ALIGN = 64
# M, N, K, A, rsA, csA, B, rsB, csB, C, ldc, accumulate, workspace, B's row table
GEMM_ARGS = [I64, I64, I64, PTR, I64, I64, PTR, I64, I64, PTR, I64, I32, PTR, PTR]


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
