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
                  ptr workspace,             ; gemm_workspace_bytes(dtype, M, N, K) bytes
                  ptr brows)                 ; null, or i64[K]: B[k,j] = B[brows[k] + j*csB]

(``emit_gemm`` names it ``gemm_f32``.)

Transposed operands are only strides: ``A.T`` stored row-major is
``rsA=1, csA=M``; nothing is materialized. ``brows`` gives B's rows by a
table of element offsets instead of ``rsB`` (with ``csB = 1``): a
convolution's im2col matrix, whose row (c, kh, kw) is the input's channel c
shifted by the tap's offset, is read from the input itself, never built. ``C`` must not overlap ``A`` or
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

The IR of the algorithm is in ``gemm_ir.py``; ``matmul.py`` connects a
graph's matmul kernel to it (:func:`~graphc.backend.llvm.matmul.plan_matmul`,
:func:`~graphc.backend.llvm.matmul.emit_matmul_call`); :func:`gemm_numpy`
runs it on numpy arrays.
"""
from __future__ import annotations

import threading

import numpy as np
from llvmlite import ir

from ... import forksafe
from . import rtlib
from .gemm_config import (  # noqa: F401
    _ELEM,
    _SUFFIX,
    GEMM_ARGS,
    GemmConfig,
    _c,
    gemm_workspace_bytes,
    host_caches,
    host_config,
    make_config,
)
from .scalar import I32, I64, PTR


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
    from .gemm_ir import GemmEmitter
    return GemmEmitter(module, cfg).gemm(name)


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
        from .gemm_ir import GemmEmitter
        fn = GemmEmitter(m, host_config(dtype)).gemm(name)
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


# ------------------------------------------------------------------ numpy entry point
_RUNNERS: dict = {}
_WS = threading.local()


def _runner(dtype):
    """The process-wide GEMM behind an ``i32 entry(ptr args)`` wrapper that
    takes its 14 arguments from an int64 array (compiled once per dtype)."""
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
                     ws.ctypes.data, 0], np.int64)
    _runner(a.dtype).cfunc(args.ctypes.data)
    return out
