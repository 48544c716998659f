"""Converters of ONNX's selection ops: TopK (graphc's ``topk``, by rank),
GatherND and ReverseSequence (one ``take`` of the flattened input at linear
indices computed in the graph, so the indices may be graph inputs)."""
from __future__ import annotations

import numpy as np

from .. import ops as O
from ..ir import dtypes as D
from .convert import axis_of, op


@op("TopK")
def _topk(ctx, n):
    x = ctx.x(n, 0)
    if n.opset < 10:
        k = n.attr("k")
        if k is None:
            raise n.error("attribute k is missing")
    else:
        kv = ctx.const(n, 1, "k")
        if kv.size != 1:
            raise n.error(f"K must hold one value, got shape {kv.shape}")
        k = int(kv.reshape(()))
    if x.ndim == 0:
        raise n.error("the input is 0-d; TopK needs an axis")
    axis = axis_of(n, int(n.attr("axis", -1)), x.ndim)
    if not 0 <= k <= x.shape[axis]:
        raise n.error(f"K = {k} is outside [0, {x.shape[axis]}] (axis {axis} of {x.shape})")
    # sorted=0 allows any order: the sorted one is returned
    return list(O.topk(x, k, axis, largest=bool(n.attr("largest", 1))))


def _coords(shape, d):
    """A constant holding the coordinate along axis ``d`` of an array of ``shape``."""
    return O.constant(np.arange(shape[d], dtype=np.int64).reshape(
        [-1 if k == d else 1 for k in range(len(shape))]))


@op("GatherND")
def _gathernd(ctx, n):
    x, ind = ctx.x(n, 0), ctx.x(n, 1)
    b = int(n.attr("batch_dims", 0))
    r, q = x.ndim, ind.ndim
    if not D.is_int(ind.dtype):
        raise n.error(f"indices have dtype {ind.dtype}, not an integer type")
    if q < 1 or r < 1 or not 0 <= b < min(q, r):
        raise n.error(f"batch_dims {b} needs data and indices of rank > {b} (got {r} and {q})")
    m = ind.shape[-1]
    if not 1 <= m <= r - b:
        raise n.error(f"indices' last dimension {m} must be from 1 to {r - b} (data rank {r} "
                      f"minus batch_dims {b})")
    if tuple(ind.shape[:b]) != tuple(x.shape[:b]):
        raise n.error(f"the batch dimensions of data {x.shape} and indices {ind.shape} differ")
    ind = O.cast(ind, D.int64)
    lead = ind.shape[:-1]                       # (batch..., index tuples...)
    lin = None                                  # flat index into x's first b + m axes
    for d in range(b + m):
        size = x.shape[d]
        if d < b:
            coord = _coords(lead, d)
        else:
            coord = ind[(Ellipsis, d - b)]
            coord = O.where(coord < 0, coord + size, coord)
        lin = coord if lin is None else lin * size + coord
    lin = O.broadcast_to(lin, lead)
    flat = O.reshape(x, (int(np.prod(x.shape[:b + m], dtype=np.int64)),) + x.shape[b + m:])
    return O.take(flat, lin, 0)


def reverse_sequence(x, lens, ba: int, ta: int):
    """Each slice along axis ``ba`` with its first ``lens[b]`` elements along axis
    ``ta`` reversed, the rest kept (``lens`` a node or array of shape (B,))."""
    B, T = x.shape[ba], x.shape[ta]
    rest = [d for d in range(x.ndim) if d not in (ba, ta)]
    perm = [ba, ta] + rest
    xt = O.reshape(O.transpose(x, perm), (B * T,) + tuple(x.shape[d] for d in rest))
    t = O.constant(np.arange(T, dtype=np.int64).reshape(1, T))
    ln = O.reshape(O.cast(O.as_node(lens), D.int64), (B, 1))
    src = O.where(t < ln, ln - 1 - t, t)        # reversed within the length, else kept
    lin = src + O.constant(np.arange(B, dtype=np.int64).reshape(B, 1) * T)
    y = O.take(xt, lin, 0)                      # (B, T, rest...)
    return O.transpose(y, list(np.argsort(perm)))


@op("ReverseSequence")
def _reverse_sequence(ctx, n):
    x, lens = ctx.x(n, 0), ctx.x(n, 1)
    if x.ndim < 2:
        raise n.error(f"the input must have rank >= 2, got shape {x.shape}")
    ba = axis_of(n, int(n.attr("batch_axis", 1)), x.ndim, "batch_axis")
    ta = axis_of(n, int(n.attr("time_axis", 0)), x.ndim, "time_axis")
    if ba == ta:
        raise n.error(f"batch_axis and time_axis are both {ba}")
    if lens.shape != (x.shape[ba],):
        raise n.error(f"sequence_lens has shape {lens.shape}, expected ({x.shape[ba]},) (the "
                      "batch size)")
    return reverse_sequence(x, lens, ba, ta)


@op("TensorScatter")
def _tensor_scatter(ctx, n):
    """The cache with ``update`` written at each batch entry's write index along
    ``axis`` (``circular``: modulo the cache length): every cache position reads
    the update at ``position - write_index`` where that is in range (one take)."""
    past, upd = ctx.x(n, 0), ctx.x(n, 1)
    mode = n.attr("mode", "linear")
    if mode not in ("linear", "circular"):
        raise n.error(f"mode {mode!r} is not one of linear, circular")
    ax = axis_of(n, int(n.attr("axis", -2)), past.ndim)
    if ax == 0:
        raise n.error("axis 0 is the batch axis")
    M, S = past.shape[ax], upd.shape[ax]
    if upd.ndim != past.ndim or any(a != b for d, (a, b) in enumerate(zip(past.shape, upd.shape))
                                    if d != ax) or S > M:
        raise n.error(f"update {upd.shape} must match past_cache {past.shape} except on axis "
                      f"{ax}, where it may be shorter")
    Bt = past.shape[0]
    w = O.cast(ctx.x(n, 2), D.int64) if n.has(2) else O.constant(np.zeros(Bt, np.int64))
    perm = [0, ax] + [d for d in range(1, past.ndim) if d != ax]
    shape = [past.shape[d] for d in perm]               # (B, M, rest...)
    bshape = [Bt, M] + [1] * (past.ndim - 2)
    pos = O.constant(np.arange(M, dtype=np.int64).reshape([1, M] + [1] * (past.ndim - 2)))
    j = pos - O.reshape(w, [Bt] + [1] * (past.ndim - 1))
    if mode == "circular":
        j = O.mod(j, O.constant(np.int64(M)))
    ok = O.bitwise_and(j >= 0, j < S)
    jc = O.where(ok, j, O.constant(np.int64(0)))
    ut = O.transpose(upd, perm)                         # (B, S, rest...)
    flat = O.reshape(ut, (Bt * S,) + tuple(shape[2:]))
    lin = O.reshape(jc + O.constant(np.arange(Bt, dtype=np.int64).reshape(
        [Bt] + [1] * (past.ndim - 1)) * S), (Bt, M))
    got = O.reshape(O.take(flat, lin, 0), shape)
    okb = O.broadcast_to(ok, bshape)
    y = O.where(okb, got, O.transpose(past, perm))
    return O.transpose(y, list(np.argsort(perm)))


def scatter_reduce(x2, lin, u2, red: str):
    """Rows ``x2`` (R, slab) combined by ``red`` (mul, max or min) with the update
    rows ``u2`` (U, slab) sent to rows ``lin`` (U,): a reduction over an (U, R, slab)
    comparison, O(U R slab) work (graphc's only scatter sums)."""
    R, U = x2.shape[0], lin.shape[0]
    hit = O.reshape(O.reshape(lin, (U, 1)) == O.constant(np.arange(R).reshape(1, R)), (U, R, 1))
    u3 = O.reshape(u2, (U, 1) + x2.shape[1:])
    dt = np.dtype(x2.dtype)
    if red == "mul":
        return x2 * O.prod(O.where(hit, u3, O.constant(1, dt)), axis=0)
    big = np.inf if dt.kind == "f" else np.iinfo(dt).max
    if red == "max":
        return O.maximum(x2, O.max(O.where(hit, u3, O.constant(-big if dt.kind == "f"
                                                               else np.iinfo(dt).min, dt)), axis=0))
    return O.minimum(x2, O.min(O.where(hit, u3, O.constant(big, dt)), axis=0))
