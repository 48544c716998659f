"""Matmul kernels on the packed GEMM: when a graph's matmul node can call
``graphc_gemm_<dt>`` (its operands are strided views of buffers and it is big
enough for packing to pay), how (:class:`MatmulPlan`), and the call itself
(:func:`emit_matmul_call`, used by the kernel emitter)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from ...ops.index import row_table_view, strided_view
from .gemm import shared_gemm
from .gemm_config import _ELEM, _c, host_config
from .loops import for_nest
from .scalar import I32, I64, PTR

# ------------------------------------------------------------------ matmul kernels
# Below this many multiply-adds per matrix product (M*N*K), with fewer rows
# than GEMM_MIN_M, or with fewer columns than GEMM_MIN_N (when B's rows are
# contiguous and M*K < GEMM_NARROW_MK), the simple i-k-j loop nest is as fast
# as packing or faster (measured with benchmarks/gemm_bench.py --crossover;
# see docs/performance.md).
GEMM_MIN_MACS = 1 << 17
GEMM_MIN_M = 4
GEMM_MIN_N = 16
GEMM_NARROW_MK = 1 << 16     # ... fewer columns than GEMM_MIN_N pay with an A this large


@dataclass
class MatmulPlan:
    """How a matmul node runs as calls of ``gemm_<dt>``: a loop over ``batch``
    (batch axes left after folding) calling gemm on M x K @ K x N with the
    operands' row/column strides, their element offsets into their buffers
    (a sliced operand is read in place) and per-batch-axis element offsets."""
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
    off_a: int = 0          # element offset of A[0, 0] (of batch 0) in its buffer
    off_b: int = 0
    b_rows: tuple | None = None   # B's rows by element offsets (ops.index.row_table_view)

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
    inside = lambda x: x.id in members   # noqa: E731
    va = strided_view(a, inside, is_leaf_buffer)
    vb = strided_view(b, inside, is_leaf_buffer)
    if va is not None and vb is None and a.ndim == 2:
        rt = row_table_view(b, inside, is_leaf_buffer)
        if rt is not None:
            (abuf, oa, sa), (bbuf, ob, rows) = va, rt
            m, k = a.shape
            n = b.shape[1]
            return MatmulPlan(dt, abuf, bbuf, m, n, k, sa[0], sa[1], 0, 1, (), (), (), (),
                              oa, ob, rows)
    if va is None or vb is None:
        return None
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    (abuf, oa, sa), (bbuf, ob, sb) = va, vb
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
    # few columns: the loop nest's inner loop is short, but it still wins
    # unless B's rows are strided (a transposed B: the loop reads it with a
    # stride, 4-65x slower) or A is large
    narrow = n < GEMM_MIN_N and cs_b == 1 and m * k < GEMM_NARROW_MK
    if not force and (m * n * k < GEMM_MIN_MACS or m < GEMM_MIN_M or narrow):
        return None
    return MatmulPlan(dt, abuf, bbuf, m, n, k, rs_a, cs_a, rs_b, cs_b, tuple(batch),
                      tuple(ba), tuple(bb), tuple(bc), oa, ob)


def emit_matmul_call(b: ir.IRBuilder, module: ir.Module, plan: MatmulPlan, pa, pb, pc, ws,
                     rows=None, cols=None) -> None:
    """Emit the batch loop calling ``gemm_<dt>`` for ``plan`` (pointers to the
    A and B buffers, the C output and the workspace). ``rows``/``cols``:
    ``(lo, hi)`` i64 values restricting the product to those rows (or
    columns) of C, for one thread's share."""
    f = shared_gemm(module, plan.dtype)
    T = _ELEM[plan.dtype]
    if plan.off_a:
        pa = b.gep(pa, [_c(plan.off_a)], source_etype=T, inbounds=True)
    if plan.off_b:
        pb = b.gep(pb, [_c(plan.off_b)], source_etype=T, inbounds=True)

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
    rows = ir.Constant(PTR, None)
    if plan.b_rows is not None:
        table = ir.GlobalVariable(module, ir.ArrayType(I64, len(plan.b_rows)),
                                  module.get_unique_name("gemm_rows"))
        table.linkage = "internal"
        table.global_constant = True
        table.initializer = ir.Constant(ir.ArrayType(I64, len(plan.b_rows)), list(plan.b_rows))
        rows = b.bitcast(table, PTR)
    with for_nest(b, plan.batch, name="gb") as idx:
        b.call(f, [m, n, _c(plan.k),
                   offset(pa, idx, plan.bstride_a), _c(plan.rs_a), _c(plan.cs_a),
                   offset(pb, idx, plan.bstride_b), _c(plan.rs_b), _c(plan.cs_b),
                   offset(pc, idx, plan.bstride_c), _c(plan.n), ir.Constant(I32, 0), ws, rows])


