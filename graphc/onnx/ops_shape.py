"""Converters of ONNX's shape, movement and constant ops. Shapes are static in
graphc, so Shape and Size give values known at load time, and the ops on them
fold (convert.Context)."""
from __future__ import annotations

import numpy as np

from .. import ops as O
from ..ir import dtypes as D
from .convert import axis_of, np_dtype, op


def _ints(ctx, n, i, what) -> list:
    return [int(v) for v in np.asarray(ctx.const(n, i, what)).reshape(-1)]


@op("Constant")
def _constant(ctx, n):
    from onnx import numpy_helper
    a = n.attrs
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    if "value_float" in a:
        return np.array(a["value_float"], np.float32)
    if "value_floats" in a:
        return np.array(a["value_floats"], np.float32)
    if "value_int" in a:
        return np.array(a["value_int"], np.int64)
    if "value_ints" in a:
        return np.array(a["value_ints"], np.int64)
    raise n.error(f"attribute {next(iter(a), 'value')!r} is not supported (graphc takes value, "
                  "value_float(s) and value_int(s))")


@op("ConstantOfShape")
def _constant_of_shape(ctx, n):
    from onnx import numpy_helper
    shape = _ints(ctx, n, 0, "shape")
    v = numpy_helper.to_array(n.attrs["value"]).reshape(-1) if "value" in n.attrs else \
        np.zeros(1, np.float32)
    return np.full(shape, v[0], v.dtype)


@op("Shape")
def _shape(ctx, n):
    s = ctx.shape(n, 0)
    r = len(s)
    start, end = n.attr("start", 0), n.attr("end", r)
    start = min(max(start + r if start < 0 else start, 0), r)
    end = min(max(end + r if end < 0 else end, 0), r)
    return np.array(s[start:end], np.int64)


@op("Size")
def _size(ctx, n):
    return np.array(int(np.prod(ctx.shape(n, 0), dtype=np.int64)), np.int64)


@op("Range")
def _range(ctx, n):
    vals = []
    for i, w in ((0, "start"), (1, "limit"), (2, "delta")):
        v = np.asarray(ctx.const(n, i, w))
        if v.size != 1:
            raise n.error(f"{w} must be a scalar, got shape {v.shape}")
        vals.append(v.reshape(()))
    a, b, d = vals
    return np.arange(a, b, d, dtype=a.dtype)


@op("Reshape")
def _reshape(ctx, n):
    x = ctx.x(n, 0)
    shape = list(n.attr("shape")) if n.opset < 5 else _ints(ctx, n, 1, "shape")
    if not n.attr("allowzero", 0):
        shape = [x.shape[k] if s == 0 else s for k, s in enumerate(shape)]
    return O.reshape(x, tuple(shape))


@op("Flatten")
def _flatten(ctx, n):
    x = ctx.x(n, 0)
    ax = n.attr("axis", 1)
    ax = ax + x.ndim if ax < 0 else ax
    if not 0 <= ax <= x.ndim:
        raise n.error(f"axis {n.attr('axis')} is out of range for shape {x.shape}")
    lead = int(np.prod(x.shape[:ax], dtype=np.int64))
    return O.reshape(x, (lead, int(np.prod(x.shape[ax:], dtype=np.int64))))


@op("Transpose")
def _transpose(ctx, n):
    x = ctx.x(n, 0)
    perm = n.attr("perm")
    return O.transpose(x, tuple(perm) if perm is not None else None)


@op("Squeeze")
def _squeeze(ctx, n):
    x = ctx.x(n, 0)
    if n.opset >= 13:
        axes = _ints(ctx, n, 1, "axes") if n.has(1) else None
    else:
        axes = n.attr("axes")
    return O.squeeze(x, None if axes is None else tuple(axes))


@op("Unsqueeze")
def _unsqueeze(ctx, n):
    x = ctx.x(n, 0)
    axes = _ints(ctx, n, 1, "axes") if n.opset >= 13 else list(n.attr("axes"))
    r = x.ndim + len(axes)
    axes = sorted(axis_of(n, a, r) for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return O.reshape(x, tuple(shape))


@op("Concat")
def _concat(ctx, n):
    xs = ctx.xs(n)
    ax = axis_of(n, n.attr("axis", 0), xs[0].ndim)
    xs = [x for x in xs if x.shape[ax] != 0 or x.ndim != xs[0].ndim] or xs[:1]
    return O.concatenate(xs, ax)


@op("Gather")
def _gather(ctx, n):
    x = ctx.x(n, 0)
    ax = axis_of(n, n.attr("axis", 0), x.ndim)
    size = x.shape[ax]
    if ctx.known(n.inputs[1]):
        ind = np.asarray(ctx.const(n, 1, "indices")).astype(np.int64)
        if ((ind < -size) | (ind >= size)).any():
            raise n.error(f"an index in {ind.tolist()} is outside [-{size}, {size}) on axis {ax}")
        return O.take(x, O.constant(np.where(ind < 0, ind + size, ind)), ax)
    ind = ctx.x(n, 1)
    ind = O.where(ind < 0, ind + O.constant(size, ind.dtype), ind)
    return O.take(x, ind, ax)


@op("GatherElements")
def _gather_elements(ctx, n):
    """out[i..] = x[..., ind[i..], ...] on ``axis``: one take of the flat
    input at linear indices built from the index tensor."""
    x, ind = ctx.x(n, 0), ctx.x(n, 1)
    ax = axis_of(n, n.attr("axis", 0), x.ndim)
    return O.take(O.reshape(x, (-1,)), _linear(x, ind, ax), 0)


def _linear(x, ind, ax):
    """The flat index into ``x`` of every element of the index tensor
    ``ind`` (same rank as x), its value standing for the coordinate on ``ax``."""
    ind = O.cast(ind, D.int64)
    ind = O.where(ind < 0, ind + x.shape[ax], ind)
    strides = [int(np.prod(x.shape[d + 1:], dtype=np.int64)) for d in range(x.ndim)]
    lin = None
    for d in range(x.ndim):
        coord = ind if d == ax else O.constant(
            np.arange(ind.shape[d]).reshape([-1 if k == d else 1 for k in range(ind.ndim)]))
        term = coord * strides[d]
        lin = term if lin is None else lin + term
    return O.broadcast_to(lin, ind.shape)


@op("ScatterElements")
def _scatter_elements(ctx, n):
    """data with updates written (or added) at the elements the indices name:
    graphc's scatter_add on the flat data."""
    x, ind, upd = ctx.x(n, 0), ctx.x(n, 1), ctx.x(n, 2)
    ax = axis_of(n, n.attr("axis", 0), x.ndim)
    red = n.attr("reduction", "none")
    if red not in ("none", "add", "mul", "max", "min"):
        raise n.error(f"reduction {red!r} is not one of none, add, mul, max, min")
    lin = O.reshape(_linear(x, ind, ax), (-1,))
    if red in ("mul", "max", "min"):
        from .ops_select import scatter_reduce
        y = scatter_reduce(O.reshape(x, (-1, 1)), lin, O.reshape(upd, (-1, 1)), red)
        return O.reshape(y, x.shape)
    added = O.reshape(O.scatter_add(O.reshape(upd, (-1,)), lin, x.size), x.shape)
    if red == "add":
        return x + added
    hit = O.scatter_add(O.broadcast_to(O.constant(1, D.int64), (lin.shape[0],)), lin, x.size)
    return O.where(O.reshape(hit, x.shape) > 0, added, x)


def _slice_key(n, shape, starts, ends, axes, steps):
    key = [range(size) for size in shape]
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = axis_of(n, a, len(shape))
        if st == 0:
            raise n.error("a step of 0 is not allowed")
        key[a] = range(*slice(s, e, st).indices(shape[a]))
    return key


@op("Slice")
def _slice(ctx, n):
    x = ctx.x(n, 0)
    if n.opset < 10:
        starts, ends = list(n.attr("starts")), list(n.attr("ends"))
        axes = list(n.attr("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(ctx, n, 1, "starts"), _ints(ctx, n, 2, "ends")
        axes = _ints(ctx, n, 3, "axes") if n.has(3) else list(range(len(starts)))
        steps = _ints(ctx, n, 4, "steps") if n.has(4) else [1] * len(starts)
    key = []
    for r in _slice_key(n, x.shape, starts, ends, axes, steps):
        if len(r) == 0:          # (a stop of -1 below means "before 0", not "the last")
            key.append(slice(0, 0))
        else:
            stop = r[-1] + r.step
            key.append(slice(r[0], stop if stop >= 0 else None, r.step))
    return O.getitem(x, tuple(key))


@op("Expand")
def _expand(ctx, n):
    x = ctx.x(n, 0)
    shape = _ints(ctx, n, 1, "shape")
    return O.broadcast_to(x, tuple(np.broadcast_shapes(x.shape, tuple(shape))))


@op("Tile")
def _tile(ctx, n):
    x = ctx.x(n, 0)
    reps = _ints(ctx, n, 1, "repeats")
    if len(reps) != x.ndim:
        raise n.error(f"repeats {reps} must have one entry per axis of shape {x.shape}")
    inter = tuple(v for s in x.shape for v in (1, s))
    big = tuple(v for r, s in zip(reps, x.shape) for v in (r, s))
    y = O.broadcast_to(O.reshape(x, inter), big)
    return O.reshape(y, tuple(r * s for r, s in zip(reps, x.shape)))


@op("Split")
def _split(ctx, n):
    x = ctx.x(n, 0)
    ax = axis_of(n, n.attr("axis", 0), x.ndim)
    size, k = x.shape[ax], len(n.outputs)
    if n.opset >= 13 and n.has(1):
        parts = _ints(ctx, n, 1, "split")
    elif n.opset < 13 and "split" in n.attrs:
        parts = list(n.attrs["split"])
    else:
        k = n.attr("num_outputs", k)
        chunk = -(-size // k)
        parts = [min(chunk, size - chunk * i) for i in range(k)]
    if sum(parts) != size:
        raise n.error(f"split {parts} does not add up to axis {ax} of shape {x.shape}")
    out, at = [], 0
    for p in parts:
        key = tuple(slice(at, at + p) if d == ax else slice(None) for d in range(x.ndim))
        out.append(O.getitem(x, key))
        at += p
    return out


def _pad_pairs(ctx, n, x):
    if n.opset < 11:
        pads = list(n.attr("pads", n.attr("paddings", [])))
        value = float(n.attr("value", 0.0))
        axes = list(range(x.ndim))
    else:
        pads = _ints(ctx, n, 1, "pads")
        value = 0
        if n.has(2):
            value = ctx.const(n, 2, "constant_value").reshape(-1)[0].item() if \
                ctx.known(n.inputs[2]) else ctx.x(n, 2)
        axes = [axis_of(n, a, x.ndim) for a in _ints(ctx, n, 3, "axes")] if n.has(3) else \
            list(range(x.ndim))
    if len(pads) != 2 * len(axes):
        raise n.error(f"pads {pads} must have 2 entries per padded axis ({len(axes)})")
    pairs = [[0, 0] for _ in range(x.ndim)]
    for k, a in enumerate(axes):
        pairs[a] = [pads[k], pads[k + len(axes)]]
    return pairs, value


@op("Pad")
def _pad(ctx, n):
    x = ctx.x(n, 0)
    pairs, value = _pad_pairs(ctx, n, x)
    mode = n.attr("mode", "constant")
    # negative pads crop
    key = tuple(slice(-b if b < 0 else 0, s + a if a < 0 else s)
                for (b, a), s in zip(pairs, x.shape))
    if any(b < 0 or a < 0 for b, a in pairs):
        x = O.getitem(x, key)
    pairs = tuple((max(b, 0), max(a, 0)) for b, a in pairs)
    if mode == "wrap":
        for d, (b, a) in enumerate(pairs):
            if b or a:
                s = x.shape[d]
                if b > s or a > s:
                    raise n.error(f"wrap pads {pairs[d]} are larger than axis {d} ({s})")
                sl = lambda lo, hi: tuple(slice(lo, hi) if k == d else slice(None)  # noqa: B023
                                          for k in range(x.ndim))
                parts = ([O.getitem(x, sl(s - b, s))] if b else []) + [x] + \
                        ([O.getitem(x, sl(0, a))] if a else [])
                x = O.concatenate(parts, d)
        return x
    if mode not in ("constant", "reflect", "edge"):
        raise n.error(f"mode {mode!r} is not supported (constant, reflect, edge, wrap)")
    if mode == "constant" and isinstance(value, O.Node):       # a value known at run time
        inside = np.pad(np.ones(x.shape, bool), pairs)
        return O.where(O.constant(inside), O.pad(x, pairs), O.reshape(O.cast(value, x.dtype), ()))
    if mode == "constant":
        return O.pad(x, pairs, "constant", O.constant(value, x.dtype).value.item())
    return O.pad(x, pairs, mode)


@op("Dropout")
def _dropout(ctx, n):
    x = ctx.x(n, 0)
    if n.opset >= 12 and n.has(2) and bool(ctx.const(n, 2, "training_mode")):
        ratio = float(np.asarray(ctx.const(n, 1, "ratio")).reshape(())) if n.has(1) else 0.5
        if ratio != 0:               # with ratio 0 training mode keeps every element
            raise n.error(f"training_mode=True with ratio {ratio} draws a random mask, which "
                          "graphc does not import (inference graphs, or ratio 0)")
    mask = O.broadcast_to(O.constant(True), x.shape) if n.wants(1) else None
    return [x, mask]


@op("DepthToSpace", "SpaceToDepth")
def _depth_space(ctx, n):
    x = ctx.x(n, 0)
    b = int(n.attr("blocksize"))
    N, C, H, W = x.shape
    if n.op == "SpaceToDepth":
        y = O.reshape(x, (N, C, H // b, b, W // b, b))
        crd = n.attr("mode", "DCR") == "CRD"
        y = O.transpose(y, (0, 1, 3, 5, 2, 4) if crd else (0, 3, 5, 1, 2, 4))
        return O.reshape(y, (N, C * b * b, H // b, W // b))
    if n.attr("mode", "DCR") == "DCR":
        y = O.transpose(O.reshape(x, (N, b, b, C // (b * b), H, W)), (0, 3, 4, 1, 5, 2))
    else:
        y = O.transpose(O.reshape(x, (N, C // (b * b), b, b, H, W)), (0, 1, 4, 2, 5, 3))
    return O.reshape(y, (N, C // (b * b), H * b, W * b))


@op("EyeLike")
def _eye_like(ctx, n):
    s = ctx.shape(n, 0)
    dt = np_dtype(n.attrs["dtype"], f"{n.where()}: attribute dtype") if "dtype" in n.attrs else \
        (ctx.nodes[n.inputs[0]].dtype if n.inputs[0] in ctx.nodes else ctx.consts[n.inputs[0]].dtype)
    return np.eye(s[0], s[1], n.attr("k", 0), dtype=dt)


@op("Scatter")
def _scatter(ctx, n):              # opset 9's name of ScatterElements
    return _scatter_elements(ctx, n)


@op("Trilu")
def _trilu(ctx, n):
    x = ctx.x(n, 0)
    k = int(ctx.const(n, 1, "k").reshape(-1)[0]) if n.has(1) else 0
    rows, cols = x.shape[-2:]
    keep = np.triu(np.ones((rows, cols), bool), k) if n.attr("upper", 1) else \
        np.tril(np.ones((rows, cols), bool), k)
    return O.where(O.constant(keep), x, O.constant(0, x.dtype))


@op("OneHot")
def _onehot(ctx, n):
    ind = ctx.x(n, 0)
    depth = int(np.asarray(ctx.const(n, 1, "depth")).reshape(-1)[0])
    values = ctx.x(n, 2)
    ax = n.attr("axis", -1)
    r = ind.ndim + 1
    ax = axis_of(n, ax, r)
    i = O.cast(ind, D.int64)
    i = O.where(i < 0, i + depth, i)
    iota = np.arange(depth).reshape([-1 if d == ax else 1 for d in range(r)])
    hit = O.equal(O.reshape(i, ind.shape[:ax] + (1,) + ind.shape[ax:]), O.constant(iota))
    off, on = O.getitem(values, 0), O.getitem(values, 1)
    return O.where(hit, on, off)


@op("Compress")
def _compress(ctx, n):
    x = ctx.x(n, 0)
    cond = np.asarray(ctx.const(n, 1, "condition")).astype(bool).reshape(-1)
    ax = n.attr("axis")
    if ax is None:
        x, ax = O.reshape(x, (-1,)), 0
    ax = axis_of(n, ax, x.ndim)
    idx = np.nonzero(cond[:x.shape[ax]])[0]
    return O.take(x, O.constant(idx.astype(np.int64)), ax)


@op("NonZero")
def _nonzero(ctx, n):
    v = np.asarray(ctx.const(n, 0, "the input (its result's shape is its number of non-zeros)"))
    return np.array(np.nonzero(v), np.int64).reshape(v.ndim, -1)


@op("CenterCropPad")
def _center_crop_pad(ctx, n):
    x = ctx.x(n, 0)
    shape = _ints(ctx, n, 1, "shape")
    axes = [axis_of(n, a, x.ndim) for a in n.attr("axes", range(x.ndim))]
    for a, want in zip(axes, shape):
        size = x.shape[a]
        if want < size:                     # crop: the extra one comes off the end
            lo = (size - want) // 2
            x = O.getitem(x, tuple(slice(lo, lo + want) if d == a else slice(None)
                                   for d in range(x.ndim)))
        elif want > size:                   # pad: the extra one goes at the end
            lo = (want - size) // 2
            x = O.pad(x, tuple((lo, want - size - lo) if d == a else (0, 0) for d in range(x.ndim)))
    return x


@op("ScatterND")
def _scatter_nd(ctx, n):
    """data with the slices ``indices`` names replaced (or added to): graphc's
    scatter_add on the data viewed as (rows of the indexed axes, slab)."""
    x, ind, upd = ctx.x(n, 0), ctx.x(n, 1), ctx.x(n, 2)
    red = n.attr("reduction", "none")
    if red not in ("none", "add", "mul", "max", "min"):
        raise n.error(f"reduction {red!r} is not one of none, add, mul, max, min")
    k = ind.shape[-1]
    rows = int(np.prod(x.shape[:k], dtype=np.int64))
    slab = int(np.prod(x.shape[k:], dtype=np.int64))
    count = int(np.prod(ind.shape[:-1], dtype=np.int64))
    strides = np.array([int(np.prod(x.shape[j + 1:k], dtype=np.int64)) for j in range(k)])
    i = O.cast(ind, D.int64)
    i = O.where(i < 0, i + O.constant(np.array(x.shape[:k], np.int64)), i)
    lin = O.reshape(O.sum(i * O.constant(strides), -1), (count,))
    u = O.reshape(upd, (count, slab))
    if red in ("mul", "max", "min"):
        from .ops_select import scatter_reduce
        return O.reshape(scatter_reduce(O.reshape(x, (rows, slab)), lin, u, red), x.shape)
    added = O.reshape(O.scatter_add(u, lin, rows, 0), x.shape)
    if red == "add":
        return x + added
    hit = O.scatter_add(O.broadcast_to(O.constant(1, D.int64), (count,)), lin, rows, 0)
    hit = O.reshape(hit, x.shape[:k] + (1,) * (x.ndim - k))
    return O.where(hit > 0, added, x)
