"""Converters of ONNX's Col2Im (graphc's ``scatter_add`` at indices computed
at load time) and AffineGrid (a constant base grid times theta: one matmul)."""
from __future__ import annotations

import itertools

import numpy as np

from .. import ops as O
from .convert import op


def _ints(ctx, n, i, what):
    return [int(v) for v in np.asarray(ctx.const(n, i, what)).reshape(-1)]


@op("Col2Im")
def _col2im(ctx, n):
    """out[n, c, p] = sum of x[n, c*K + k, l] over the kernel offsets k and blocks l
    with l's corner * strides - pads + k * dilations = p."""
    x = ctx.x(n, 0)
    image, block = _ints(ctx, n, 1, "image_shape"), _ints(ctx, n, 2, "block_shape")
    nd = len(image)
    if len(block) != nd or nd == 0:
        raise n.error(f"image_shape {image} and block_shape {block} must have one length")
    dil = list(n.attr("dilations", [1] * nd))
    strides = list(n.attr("strides", [1] * nd))
    pads = list(n.attr("pads", [0] * (2 * nd)))
    if x.ndim != 3:
        raise n.error(f"the input must be 3-d (N, C * prod(block_shape), L), got {x.shape}")
    K = int(np.prod(block))
    N, CK, L = x.shape
    if CK % K:
        raise n.error(f"input dimension 1 ({CK}) is not a multiple of prod(block_shape) = {K}")
    C = CK // K
    padded = [image[d] + pads[d] + pads[d + nd] for d in range(nd)]
    blocks = [(padded[d] - dil[d] * (block[d] - 1) - 1) // strides[d] + 1 for d in range(nd)]
    if int(np.prod(blocks)) != L or min(blocks) < 1:
        raise n.error(f"input dimension 2 ({L}) must be the number of blocks, "
                      f"{' * '.join(map(str, blocks))} for image {image}, block {block}, "
                      f"pads {pads}, strides {strides}, dilations {dil}")
    pstride = [int(np.prod(padded[d + 1:])) for d in range(nd)]
    idx = np.zeros((K, L), np.int64)
    for k, off in enumerate(itertools.product(*[range(b) for b in block])):
        for l_, corner in enumerate(itertools.product(*[range(b) for b in blocks])):
            idx[k, l_] = sum((corner[d] * strides[d] + off[d] * dil[d]) * pstride[d]
                             for d in range(nd))
    up = O.reshape(x, (N, C, K * L))
    y = O.scatter_add(up, O.constant(idx.reshape(-1)), int(np.prod(padded)), 2)
    y = O.reshape(y, (N, C, *padded))
    key = (slice(None), slice(None)) + tuple(slice(pads[d], pads[d] + image[d]) for d in range(nd))
    return y[key]


@op("AffineGrid")
def _affine_grid(ctx, n):
    theta = ctx.x(n, 0)
    size = _ints(ctx, n, 1, "size")
    nd = len(size) - 2
    if nd not in (2, 3) or theta.shape != (size[0], nd, nd + 1):
        raise n.error(f"theta {theta.shape} and size {size} must be (N, 2, 3) and (N, C, H, W), "
                      "or (N, 3, 4) and (N, C, D, H, W)")
    dims = size[2:]
    axes = []
    for s in dims:
        if n.attr("align_corners", 0):
            axes.append(np.linspace(-1.0, 1.0, s) if s > 1 else np.array([-1.0]))
        else:
            axes.append((2.0 * np.arange(s) + 1.0) / s - 1.0)
    mesh = np.meshgrid(*axes, indexing="ij")                 # each (D,) H, W
    base = np.stack([m.ravel() for m in reversed(mesh)] + [np.ones(mesh[0].size)], 1)  # x, y, (z), 1
    g = O.matmul(O.constant(base.astype(np.dtype(theta.dtype))), O.transpose(theta, (0, 2, 1)))
    return O.reshape(g, (size[0], *dims, nd))


@op("MaxUnpool")
def _max_unpool(ctx, n):
    """Zeros with x written at the flat positions ``indices`` name (MaxPool's
    Indices output, flat over the whole tensor): one scatter_add (a position
    named twice would get the sum; MaxPool never names one twice)."""
    x, ind = ctx.x(n, 0), ctx.x(n, 1)
    ks = list(n.attr("kernel_shape", []))
    nd = x.ndim - 2
    if len(ks) != nd:
        raise n.error(f"kernel_shape {ks} must have {nd} entries for a {x.ndim}-d input")
    st = list(n.attr("strides", [1] * nd))
    pads = list(n.attr("pads", [0] * 2 * nd))
    if ind.shape != x.shape:
        raise n.error(f"indices {ind.shape} must have the shape of X {x.shape}")
    inferred = [x.shape[0], x.shape[1]] + [
        (x.shape[d + 2] - 1) * st[d] - (pads[d] + pads[nd + d]) + ks[d] for d in range(nd)]
    shape = _ints(ctx, n, 2, "output_shape") if n.has(2) else inferred
    if len(shape) != x.ndim or any(s < i for s, i in zip(shape, inferred)):
        raise n.error(f"output_shape {shape} must have rank {x.ndim} and be at least {inferred}")
    y = O.scatter_add(O.reshape(x, (-1,)), O.reshape(O.cast(ind, "int64"), (-1,)),
                      int(np.prod(inferred)), 0)
    y = O.reshape(y, tuple(inferred))
    if shape != inferred:
        y = O.pad(y, [(0, s - i) for s, i in zip(shape, inferred)])
    return y


@op("CausalConvWithState")
def _causal_conv(ctx, n):
    """A depthwise causal conv1d: the input after ``past_state`` (or k - 1 zeros),
    summed over the k taps as shifted slices (k is small), optional SiLU; the new
    state is the last k - 1 positions."""
    x, w = ctx.x(n, 0), ctx.x(n, 1)
    b, past = ctx.opt(n, 2), ctx.opt(n, 3)
    act = n.attr("activation", "none")
    if act not in ("none", "silu", "swish"):
        raise n.error(f"activation {act!r} is not one of none, silu, swish")
    if x.ndim != 3 or w.ndim != 3 or w.shape[:2] != (x.shape[1], 1):
        raise n.error(f"input (B, C, L) and weight (C, 1, k) expected, got {x.shape} and "
                      f"{w.shape}")
    B, C, L = x.shape
    k = w.shape[2]
    if past is None:
        past = O.constant(np.zeros((B, C, k - 1), np.dtype(x.dtype)))
    elif past.shape != (B, C, k - 1):
        raise n.error(f"past_state has shape {past.shape}, expected {(B, C, k - 1)}")
    padded = O.concatenate([past, x], 2) if k > 1 else x
    y = None
    for j in range(k):
        term = padded[:, :, j:j + L] * O.reshape(w[:, 0, j], (1, C, 1))
        y = term if y is None else y + term
    if b is not None:
        y = y + O.reshape(b, (1, C, 1))
    if act != "none":
        y = y * O.sigmoid(y)
    state = padded[:, :, L:] if k > 1 else O.constant(np.zeros((B, C, 0), np.dtype(x.dtype)))
    return [y, state]


def _reflect(x, lo: float, hi: float):
    """Reflect x by the nearer border until it lies in [lo, hi] (onnx.reference's rule)."""
    rng = hi - lo
    if rng <= 0:
        return O.where(O.bitwise_or(x < lo, x > hi), O.constant(lo, x.dtype), x)
    out = []
    for below in (True, False):
        dx = (lo - x) if below else (x - hi)
        k = O.floor(dx / rng)
        r = dx - k * rng
        even = O.equal(O.mod(k, 2.0), 0.0)
        near, far = (lo + r, hi - r) if below else (hi - r, lo + r)
        out.append(O.where(even, near, far))
    return O.where(x < lo, out[0], O.where(x > hi, out[1], x))


_CUBIC_A = -0.75


def _cubic_weights(t):
    """Keys' cubic convolution weights of the taps -1, 0, 1, 2 at fraction t."""
    a = _CUBIC_A

    def far(u):
        return ((a * u - 5 * a) * u + 8 * a) * u - 4 * a

    def near(u):
        return ((a + 2) * u - (a + 3)) * u * u + 1
    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


@op("GridSample")
def _grid_sample(ctx, n):
    """Every output point reads X at the grid's coordinates: per spatial dimension
    the taps (1 nearest, 2 linear, 4 cubic) and their weights are computed in the
    graph, each combination of taps is one take of X (batch and position flattened,
    channels kept), weighted and summed. The grid may be a graph value."""
    x, grid = ctx.x(n, 0), ctx.x(n, 1)
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(n.attr("mode", "linear"),
                                                        n.attr("mode", "linear"))
    pad = n.attr("padding_mode", "zeros")
    align = bool(n.attr("align_corners", 0))
    if mode not in ("nearest", "linear", "cubic"):
        raise n.error(f"mode {mode!r} is not one of nearest, linear, cubic")
    if pad not in ("zeros", "border", "reflection"):
        raise n.error(f"padding_mode {pad!r} is not one of zeros, border, reflection")
    N, dims = x.shape[0], x.shape[2:]
    nd = len(dims)
    if grid.shape[0] != N or grid.ndim != nd + 2 or grid.shape[-1] != nd:
        raise n.error(f"grid {grid.shape} must be (N, *output, {nd}) for X {x.shape}")
    lo = [0.0 if align else -0.5 for _ in dims]
    hi = [d - 1.0 if align else d - 0.5 for d in dims]
    coords = []
    for i, d in enumerate(dims):
        g = grid[(Ellipsis, nd - 1 - i)]                      # the grid lists x (width) first
        c = (g + 1.0) * (0.5 * (d - 1)) if align else ((g + 1.0) * d - 1.0) * 0.5
        if mode == "nearest":
            c = O.round(c)
        if pad == "border":                    # only coordinates outside [lo, hi] are clamped
            c = O.where(O.bitwise_or(c < lo[i], c > hi[i]), O.clip(c, 0.0, d - 1.0), c)
        elif pad == "reflection":
            c = _reflect(c, lo[i], hi[i])
        coords.append(c)
    return _sample(x, coords, mode, pad, lo, hi)


def _sample(x, coords, mode, pad, lo, hi):
    """X (N, C, *dims) read at pixel coordinates ``coords`` (one (N, *out) node per
    spatial axis, already adjusted for the padding mode): (N, C, *out). Per axis the
    taps (1 nearest, 2 linear, 4 cubic) and weights are nodes; every combination of
    taps is one take of X (batch and position flattened, channels kept)."""
    N, C, dims = x.shape[0], x.shape[1], x.shape[2:]
    out = coords[0].shape[1:]
    taps = []                                    # per dim: [(index node, weight node or None)]
    for c in coords:
        if mode == "nearest":
            taps.append([(O.cast(c, "int64"), None)])     # (truncation, as the reference)
            continue
        c0 = O.floor(c)
        t = c - c0
        base = O.cast(c0, "int64")
        if mode == "linear":
            taps.append([(base, 1.0 - t), (base + 1, t)])
        else:
            taps.append([(base + (k - 1), w) for k, w in enumerate(_cubic_weights(t))])
    P = int(np.prod(dims))
    xt = O.reshape(O.transpose(x, (0,) + tuple(range(2, x.ndim)) + (1,)), (N * P, C))
    batch = O.constant(np.arange(N, dtype=np.int64).reshape((N,) + (1,) * len(out)) * P)
    y = None
    for combo in itertools.product(*taps):
        lin, w, valid = batch, None, None
        for i, (idx, wt) in enumerate(combo):
            d = dims[i]
            if pad == "zeros":
                ok = O.bitwise_and(idx >= 0, idx < d)
                valid = ok if valid is None else O.bitwise_and(valid, ok)
                idx = O.clip(idx, 0, d - 1)
            elif pad == "border":
                idx = O.clip(idx, 0, d - 1)
            else:
                idx = O.cast(_reflect(O.cast(idx, x.dtype), lo[i], hi[i]), "int64")
                idx = O.clip(idx, 0, d - 1)
            lin = lin + idx * int(np.prod(dims[i + 1:]))
            if wt is not None:
                w = wt if w is None else w * wt
        if valid is not None:
            vw = O.cast(valid, x.dtype)
            w = vw if w is None else w * vw
        v = O.take(xt, O.broadcast_to(lin, (N,) + out), 0)         # (N, *out, C)
        term = v if w is None else v * O.expand_dims(w, -1)
        y = term if y is None else y + term
    return O.transpose(y, (0, y.ndim - 1) + tuple(range(1, y.ndim - 1)))


def _roi_axis(start, size, bins: int, grid: int, limit: int):
    """Sample coordinates along one axis of every ROI, (R, bins, grid): their low and
    high pixel indices, weights, and whether they fall outside [-1, limit]."""
    R = start.shape[0]
    b = O.reshape(size / float(bins), (R, 1, 1))
    k = O.constant(np.arange(bins, dtype=np.float64).reshape(1, bins, 1))
    s = O.constant((np.arange(grid, dtype=np.float64) + 0.5).reshape(1, 1, grid) / grid)
    c = O.reshape(start, (R, 1, 1)) + O.cast(k, start.dtype) * b + O.cast(s, start.dtype) * b
    out = O.bitwise_or(c < -1.0, c > float(limit))
    c = O.maximum(c, 0.0)
    low = O.floor(c)
    end = low >= limit - 1.0
    low = O.where(end, limit - 1.0, low)
    c = O.where(end, low, c)
    high = O.where(end, low, low + 1.0)
    frac = c - low
    return O.cast(low, "int64"), O.cast(high, "int64"), 1.0 - frac, frac, out


@op("RoiAlign")
def _roi_align(ctx, n):
    """Each ROI bin is the average (or, in mode max, onnx.reference's max of the
    weighted corners) of a grid of bilinear samples; ROIs and batch indices may be
    graph values (a fixed sampling_ratio), the samples are takes of X."""
    x, rois, bidx = ctx.x(n, 0), ctx.x(n, 1), ctx.x(n, 2)
    N, C, H, W = x.shape
    oh, ow = int(n.attr("output_height", 1)), int(n.attr("output_width", 1))
    ratio = int(n.attr("sampling_ratio", 0))
    if ratio <= 0:
        raise n.error("sampling_ratio 0 (adaptive: a grid per ROI from its size, a graph "
                      "value) is not supported; give a positive sampling_ratio")
    mode = n.attr("mode", "avg")
    if mode not in ("avg", "max"):
        raise n.error(f"mode {mode!r} is not one of avg, max")
    half = n.attr("coordinate_transformation_mode", "half_pixel") == "half_pixel"
    scale = float(n.attr("spatial_scale", 1.0))
    if rois.ndim != 2 or rois.shape[1] != 4 or bidx.shape != (rois.shape[0],):
        raise n.error(f"rois must be (R, 4) and batch_indices (R,), got {rois.shape} and "
                      f"{bidx.shape}")
    R = rois.shape[0]
    off = 0.5 if half else 0.0
    x1, y1, x2, y2 = (rois[:, k] * scale - off for k in range(4))
    rw, rh = x2 - x1, y2 - y1
    if not half:
        rw, rh = O.maximum(rw, 1.0), O.maximum(rh, 1.0)
    ylo, yhi, yh, yl, yout = _roi_axis(y1, rh, oh, ratio, H)   # (R, oh, g)
    xlo, xhi, xh, xl, xout = _roi_axis(x1, rw, ow, ratio, W)   # (R, ow, g)

    def e(t, axes):                      # (R, a, g) -> broadcast over (R, oh, g, ow, g)
        return O.reshape(t, axes)
    yshape, xshape = (R, oh, ratio, 1, 1), (R, 1, 1, ow, ratio)
    valid = O.cast(~O.bitwise_or(e(yout, yshape), e(xout, xshape)), x.dtype)
    xt = O.reshape(O.transpose(x, (0, 2, 3, 1)), (N * H * W, C))
    base = O.reshape(O.cast(bidx, "int64") * (H * W), (R, 1, 1, 1, 1))
    terms = []
    for yi, wy in ((ylo, yh), (yhi, yl)):
        for xi, wx in ((xlo, xh), (xhi, xl)):
            lin = O.broadcast_to(base + e(yi, yshape) * W + e(xi, xshape), (R, oh, ratio, ow, ratio))
            w = O.cast(e(wy, yshape) * e(wx, xshape), x.dtype) * valid
            terms.append(O.take(xt, lin, 0) * O.expand_dims(w, -1))    # (R, oh, g, ow, g, C)
    if mode == "avg":
        y = (terms[0] + terms[1] + terms[2] + terms[3])
        y = O.sum(y, axis=(2, 4)) / float(ratio * ratio)
    else:
        y = O.max(O.maximum(O.maximum(terms[0], terms[1]), O.maximum(terms[2], terms[3])),
                  axis=(2, 4))
    return O.transpose(y, (0, 3, 1, 2))


@op("DeformConv")
def _deform_conv(ctx, n):
    """Deformable 2-d convolution: every kernel tap of every output position reads X
    bilinearly (zeros outside) at its grid position plus the offset (a graph value),
    times the mask; the samples are contracted with W per group by one einsum."""
    x, w, offset = ctx.x(n, 0), ctx.x(n, 1), ctx.x(n, 2)
    b, mask = ctx.opt(n, 3), ctx.opt(n, 4)
    if x.ndim != 4:
        raise n.error(f"only 2-d DeformConv is supported, got X of shape {x.shape}")
    N, C, H, W = x.shape
    oc, icg, kh, kw = w.shape
    group, og = int(n.attr("group", 1)), int(n.attr("offset_group", 1))
    if C != icg * group or oc % group or C % og:
        raise n.error(f"X {x.shape}, W {w.shape}, group {group} and offset_group {og} do not "
                      "fit together")
    st = list(n.attr("strides", [1, 1]))
    dil = list(n.attr("dilations", [1, 1]))
    pads = list(n.attr("pads", [0, 0, 0, 0]))
    oh, ow = offset.shape[2:]
    if offset.shape != (N, og * 2 * kh * kw, oh, ow):
        raise n.error(f"offset has shape {offset.shape}, expected "
                      f"{(N, og * 2 * kh * kw, oh, ow)}")
    off = O.reshape(offset, (N, og, kh, kw, 2, oh, ow))
    m = O.reshape(mask, (N, og, kh, kw, oh, ow)) if mask is not None else None
    cg = C // og
    ih = (np.arange(kh) * dil[0]).reshape(kh, 1, 1, 1) + \
        (np.arange(oh) * st[0] - pads[0]).reshape(1, 1, oh, 1)          # tap rows (kh, 1, oh, 1)
    iw = (np.arange(kw) * dil[1]).reshape(1, kw, 1, 1) + \
        (np.arange(ow) * st[1] - pads[1]).reshape(1, 1, 1, ow)
    cols = []
    for g in range(og):
        ch = O.constant(ih.astype(np.dtype(x.dtype))) + off[:, g, :, :, 0]     # (N, kh, kw, oh, ow)
        cw = O.constant(iw.astype(np.dtype(x.dtype))) + off[:, g, :, :, 1]
        v = _sample(x[:, g * cg:(g + 1) * cg], [ch, cw], "linear", "zeros", None, None)
        if m is not None:
            v = v * O.expand_dims(m[:, g], 1)
        cols.append(v)                                          # (N, cg, kh, kw, oh, ow)
    cols = O.concatenate(cols, 1) if og > 1 else cols[0]
    ocg = oc // group
    ys = [O.einsum("ncklij,ockl->noij", cols[:, k * icg:(k + 1) * icg], w[k * ocg:(k + 1) * ocg])
          for k in range(group)]
    y = O.concatenate(ys, 1) if group > 1 else ys[0]
    return y + O.reshape(b, (1, oc, 1, 1)) if b is not None else y
