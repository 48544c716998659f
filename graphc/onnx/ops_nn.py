"""Converters of ONNX's neural-network ops: matmuls, softmax, convolution,
pooling and normalization, as graphc's composites."""
from __future__ import annotations

import numpy as np

from .. import ops as O
from ..ir import dtypes as D
from .convert import axis_of, op


@op("MatMul")
def _matmul(ctx, n):
    return O.matmul(ctx.x(n, 0), ctx.x(n, 1))


@op("Gemm")
def _gemm(ctx, n):
    a, b = ctx.x(n, 0), ctx.x(n, 1)
    if n.attr("transA", 0):
        a = O.transpose(a)
    if n.attr("transB", 0):
        b = O.transpose(b)
    y = O.matmul(a, b)
    alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
    if alpha != 1.0:
        y = y * alpha
    c = ctx.opt(n, 2)
    if c is not None and beta != 0.0:
        y = y + (c * beta if beta != 1.0 else c)
    return y


def _coerced(n, x, f):
    """Opset < 13: the softmax family works on x coerced to 2-D at ``axis``."""
    if n.opset >= 13:
        return f(x, axis_of(n, n.attr("axis", -1), x.ndim))
    ax = axis_of(n, n.attr("axis", 1), x.ndim)
    lead = int(np.prod(x.shape[:ax], dtype=np.int64))
    y = f(O.reshape(x, (lead, int(np.prod(x.shape[ax:], dtype=np.int64)))), 1)
    return O.reshape(y, x.shape)


def hardmax(x, ax):
    idx = O.argmax(x, ax, keepdims=True)
    iota = np.arange(x.shape[ax]).reshape([-1 if d == ax else 1 for d in range(x.ndim)])
    return O.cast(O.equal(O.constant(iota), idx), x.dtype)


_SOFTMAX = {"Softmax": O.softmax, "LogSoftmax": O.log_softmax, "Hardmax": hardmax}


@op(*_SOFTMAX)
def _softmax(ctx, n):
    return _coerced(n, ctx.x(n, 0), _SOFTMAX[n.op])


# ------------------------------------------------------ convolution, pools

def _spatial(n, x, what="input"):
    if x.ndim < 3:
        raise n.error(f"{what} must be (N, C, spatial...), got shape {x.shape}")
    return x.ndim - 2


def _window_pads(n, x_shape, kernel, strides, dilations, ceil=False):
    """ONNX pads as (begin, end) per spatial axis, auto_pad resolved."""
    k = len(kernel)
    auto = n.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pairs = []
        for size, kk, s, d in zip(x_shape, kernel, strides, dilations):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (kk - 1) * d + 1 - size)
            small = total // 2
            pairs.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        return pairs
    if auto == "VALID":
        return [(0, 0)] * k
    if auto not in ("NOTSET", ""):
        raise n.error(f"auto_pad {auto!r} is not supported")
    pads = list(n.attr("pads", [0] * (2 * k)))
    return [(pads[i], pads[i + k]) for i in range(k)]


def _geometry(n, x, kernel):
    k = len(kernel)
    strides = list(n.attr("strides", [1] * k))
    dilations = list(n.attr("dilations", [1] * k))
    pads = _window_pads(n, x.shape[2:], kernel, strides, dilations)
    return strides, dilations, pads


@op("Conv")
def _conv(ctx, n):
    x, w, b = ctx.x(n, 0), ctx.x(n, 1), ctx.opt(n, 2)
    nsp = _spatial(n, x)
    kernel = list(n.attr("kernel_shape", w.shape[2:]))
    strides, dil, pads = _geometry(n, x, kernel)
    g = int(n.attr("group", 1))
    if nsp == 1:
        return O.conv1d(x, w, b, strides[0], (tuple(pads[0]),), dil[0], g)
    if nsp == 2:
        return O.conv2d(x, w, b, tuple(strides), tuple(tuple(p) for p in pads), tuple(dil), g)
    raise n.error(f"{nsp}-d convolution is not supported (graphc has conv1d and conv2d)")


def _pool_out(n, size, k, s, d, pb, pe, ceil):
    span = d * (k - 1) + 1
    room = size + pb + pe - span
    if room < 0:
        raise n.error(f"kernel {k} (dilation {d}) is larger than the padded input "
                      f"({size} + {pb} + {pe})")
    m = (-(-room // s) if ceil else room // s) + 1
    if ceil and (m - 1) * s >= size + pb:       # the last window must start inside
        m -= 1
    return m


def _taps(xp, kernel, strides, dil, out):
    """Every kernel tap's strided slice of the padded input (N, C, spatial)."""
    import itertools
    taps = []
    for offs in itertools.product(*(range(k) for k in kernel)):
        key = [slice(None), slice(None)]
        for o, s, d, m in zip(offs, strides, dil, out):
            a = o * d
            key.append(slice(a, a + (m - 1) * s + 1, s))
        taps.append(O.getitem(xp, tuple(key)))
    return taps


def _pool(ctx, n, reduce_max):
    x = ctx.x(n, 0)
    nsp = _spatial(n, x)
    kernel = list(n.attr("kernel_shape"))
    if len(kernel) != nsp:
        raise n.error(f"kernel_shape {kernel} does not match the {nsp} spatial axes of {x.shape}")
    want_idx = reduce_max and n.wants(1)
    strides = list(n.attr("strides", [1] * nsp))
    dil = list(n.attr("dilations", [1] * nsp))
    ceil = bool(n.attr("ceil_mode", 0))
    pads = _window_pads(n, x.shape[2:], kernel, strides, dil)
    out = [_pool_out(n, size, k, s, d, pb, pe, ceil)
           for size, k, s, d, (pb, pe) in zip(x.shape[2:], kernel, strides, dil, pads)]
    extra = [max(0, (m - 1) * s + d * (k - 1) + 1 - (size + pb + pe))
             for m, s, d, k, size, (pb, pe) in zip(out, strides, dil, kernel, x.shape[2:], pads)]
    widths = ((0, 0), (0, 0)) + tuple((pb, pe + e) for (pb, pe), e in zip(pads, extra))
    if reduce_max:
        low = -np.inf if D.is_float(x.dtype) else int(np.iinfo(x.dtype).min)
        xp = O.pad(x, widths, value=low) if any(map(any, widths)) else x
        taps = _taps(xp, kernel, strides, dil, out)
        y = taps[0]
        if not want_idx:
            for t in taps[1:]:
                y = O.maximum(y, t)
            return y
        # Indices: the flat index (over the whole input; spatial axes row-major, or
        # column-major for storage_order=1) of each window's first maximum, carried along
        # the taps from a constant holding every position's index
        sp = x.shape[2:]
        order = "F" if n.attr("storage_order", 0) else "C"
        within = np.arange(int(np.prod(sp)), dtype=np.int64).reshape(sp, order=order)
        flat = (np.arange(x.shape[0] * x.shape[1], dtype=np.int64).reshape(
            x.shape[:2] + (1,) * len(sp)) * within.size + within)
        flat = np.pad(flat, widths, constant_values=-1)
        itaps = _taps(O.constant(flat), kernel, strides, dil, out)
        idx = itaps[0]
        for t, it in zip(taps[1:], itaps[1:]):
            better = t > y
            y, idx = O.where(better, t, y), O.where(better, it, idx)
        return [y, idx]
    xp = O.pad(x, widths) if any(map(any, widths)) else x
    taps = _taps(xp, kernel, strides, dil, out)
    total = taps[0]
    for t in taps[1:]:
        total = total + t
    # the divisor: how many of each window's elements are inside the input
    # (or inside the explicitly padded input, count_include_pad)
    inside = np.zeros(tuple(s + a + b for s, (a, b) in zip(x.shape[2:], widths[2:])))
    if n.attr("count_include_pad", 0):
        inside[tuple(slice(0, s + pb + pe) for s, (pb, pe) in zip(x.shape[2:], pads))] = 1
    else:
        inside[tuple(slice(pb, pb + s) for s, (pb, _) in zip(x.shape[2:], pads))] = 1
    count = np.zeros(out)
    import itertools
    for offs in itertools.product(*(range(k) for k in kernel)):
        count += inside[tuple(slice(o * d, o * d + (m - 1) * s + 1, s)
                              for o, s, d, m in zip(offs, strides, dil, out))]
    return total / O.constant(np.maximum(count, 1).astype(x.dtype))


@op("MaxPool")
def _maxpool(ctx, n):
    return _pool(ctx, n, True)


@op("AveragePool")
def _avgpool(ctx, n):
    return _pool(ctx, n, False)


@op("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx, n):
    x = ctx.x(n, 0)
    axes = tuple(range(2, x.ndim))
    return O.mean(x, axes, True) if n.op == "GlobalAveragePool" else O.max(x, axes, True)


# ---------------------------------------------------------- normalization

def _per_channel(v, ndim):
    return O.reshape(v, (-1,) + (1,) * (ndim - 2))


@op("BatchNormalization")
def _batchnorm(ctx, n):
    x = ctx.x(n, 0)
    eps = float(n.attr("epsilon", 1e-5))
    if n.attr("training_mode", 0) or any(n.wants(k) for k in range(1, 5)):
        if n.opset < 14:
            raise n.error("training mode before opset 14 (its saved statistics outputs) is "
                          "not supported")
        # the batch's statistics normalize; the running ones are updated by momentum
        axes = (0,) + tuple(range(2, x.ndim))
        mu = O.mean(x, axes)
        dev = x - _per_channel(mu, x.ndim)
        var = O.mean(dev * dev, axes)                  # the population variance
        sc, b, m, v = (ctx.x(n, k) for k in range(1, 5))
        y = (x - _per_channel(mu, x.ndim)) * _per_channel(sc / O.sqrt(var + eps), x.ndim) \
            + _per_channel(b, x.ndim)
        mom = float(n.attr("momentum", 0.9))
        return [y, m * mom + mu * (1 - mom), v * mom + var * (1 - mom)]
    names = n.inputs[1:5]
    if all(ctx.known(s) for s in names):         # fold into one scale and shift
        sc, b, m, v = (np.asarray(ctx.const(n, k, w), np.float64) for k, w in
                       ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
        a = sc / np.sqrt(v + eps)
        scale = O.constant(a.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 2)))
        shift = O.constant((b - m * a).astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 2)))
        return x * scale + shift
    sc, b, m, v = (_per_channel(ctx.x(n, k), x.ndim) for k in range(1, 5))
    return (x - m) * (sc / O.sqrt(v + eps)) + b


@op("InstanceNormalization")
def _instancenorm(ctx, n):
    x = ctx.x(n, 0)
    axes = tuple(range(2, x.ndim))
    eps = float(n.attr("epsilon", 1e-5))
    mu = O.mean(x, axes, True)
    var = O.mean((x - mu) * (x - mu), axes, True)
    sc, b = _per_channel(ctx.x(n, 1), x.ndim), _per_channel(ctx.x(n, 2), x.ndim)
    return (x - mu) / O.sqrt(var + eps) * sc + b


@op("LayerNormalization")
def _layernorm(ctx, n):
    x = ctx.x(n, 0)
    ax = axis_of(n, n.attr("axis", -1), x.ndim)
    axes = tuple(range(ax, x.ndim))
    eps = float(n.attr("epsilon", 1e-5))
    mu = O.mean(x, axes, True)
    d = x - mu
    inv = 1.0 / O.sqrt(O.mean(d * d, axes, True) + eps)
    y = d * inv * ctx.x(n, 1)
    b = ctx.opt(n, 2)
    if b is not None:
        y = y + b
    return [y, mu if n.wants(1) else None, inv if n.wants(2) else None]


@op("MeanVarianceNormalization")
def _mvn(ctx, n):
    x = ctx.x(n, 0)
    axes = tuple(a % x.ndim for a in n.attr("axes", [0, 2, 3]))
    mu = O.mean(x, axes, True)
    var = O.mean(x * x, axes, True) - mu * mu
    return (x - mu) / (O.sqrt(var) + 1e-9)


@op("LRN")
def _lrn(ctx, n):
    x = ctx.x(n, 0)
    size = int(n.attrs["size"])
    alpha, beta = float(n.attr("alpha", 1e-4)), float(n.attr("beta", 0.75))
    bias = float(n.attr("bias", 1.0))
    before = (size - 1) // 2
    sq = O.pad(x * x, ((0, 0), (before, size - 1 - before)) + ((0, 0),) * (x.ndim - 2))
    c = x.shape[1]
    total = None
    for k in range(size):
        t = O.getitem(sq, (slice(None), slice(k, k + c)))
        total = t if total is None else total + t
    return x / O.pow(total * (alpha / size) + bias, O.constant(beta, x.dtype))


# ------------------------------------------------------------------ losses

def nll(ctx, n, logp, target, weight):
    """ONNX NegativeLogLikelihoodLoss of log-probabilities (N, C, d...)."""
    c = logp.shape[1]
    perm = (0,) + tuple(range(2, logp.ndim)) + (1,)
    ignore = n.attr("ignore_index")
    mask = None
    if ignore is not None:
        mask = O.not_equal(target, O.constant(ignore, target.dtype))
        target = O.where(mask, target, O.constant(0, target.dtype))
    picked = O.sum(O.where(O.one_hot(target, c), O.transpose(logp, perm),
                           O.constant(0, logp.dtype)), -1)
    w = O.take(weight, target) if weight is not None else None
    if mask is not None:
        m = O.cast(mask, logp.dtype)
        w = m if w is None else w * m
    loss = -picked if w is None else -picked * w
    red = n.attr("reduction", "mean")
    if red == "none":
        return loss
    if red == "sum":
        return O.sum(loss)
    if red != "mean":
        raise n.error(f"reduction {red!r} is not one of none, sum, mean")
    if w is None:
        return O.mean(loss)
    return O.sum(loss) / O.sum(w)


@op("NegativeLogLikelihoodLoss")
def _nll(ctx, n):
    return nll(ctx, n, ctx.x(n, 0), ctx.x(n, 1), ctx.opt(n, 2))


@op("SoftmaxCrossEntropyLoss")
def _sce(ctx, n):
    logp = O.log_softmax(ctx.x(n, 0), 1)
    return [nll(ctx, n, logp, ctx.x(n, 1), ctx.opt(n, 2)), logp if n.wants(1) else None]


@op("RMSNormalization")
def _rmsnorm(ctx, n):
    x = ctx.x(n, 0)
    ax = axis_of(n, n.attr("axis", -1), x.ndim)
    axes = tuple(range(ax, x.ndim))
    eps = float(n.attr("epsilon", 1e-5))
    return x / O.sqrt(O.mean(x * x, axes, True) + eps) * ctx.x(n, 1)


@op("GroupNormalization")
def _groupnorm(ctx, n):
    x = ctx.x(n, 0)
    g = int(n.attrs["num_groups"])
    eps = float(n.attr("epsilon", 1e-5))
    shape = x.shape
    xg = O.reshape(x, (shape[0], g, -1))
    mu = O.mean(xg, 2, True)
    d = xg - mu
    y = O.reshape(d / O.sqrt(O.mean(d * d, 2, True) + eps), shape)
    sc, b = ctx.x(n, 1), ctx.x(n, 2)
    if n.opset < 21:       # per group, repeated over its channels
        rep = shape[1] // g
        sc = O.reshape(O.broadcast_to(O.reshape(sc, (g, 1)), (g, rep)), (-1,))
        b = O.reshape(O.broadcast_to(O.reshape(b, (g, 1)), (g, rep)), (-1,))
    return y * _per_channel(sc, x.ndim) + _per_channel(b, x.ndim)


@op("LpNormalization")
def _lpnorm(ctx, n):
    x = ctx.x(n, 0)
    ax = axis_of(n, n.attr("axis", -1), x.ndim)
    p = int(n.attr("p", 2))
    norm = O.sum(O.abs(x), ax, True) if p == 1 else O.sqrt(O.sum(x * x, ax, True))
    return O.where(norm == 0, O.constant(0, x.dtype), x / norm)


@op("LpPool")
def _lppool(ctx, n):
    x = ctx.x(n, 0)
    p = float(n.attr("p", 2))
    nsp = _spatial(n, x)
    kernel = list(n.attr("kernel_shape"))
    strides = list(n.attr("strides", [1] * nsp))
    dil = list(n.attr("dilations", [1] * nsp))
    ceil = bool(n.attr("ceil_mode", 0))
    pads = _window_pads(n, x.shape[2:], kernel, strides, dil)
    out = [_pool_out(n, size, k, s, d, pb, pe, ceil)
           for size, k, s, d, (pb, pe) in zip(x.shape[2:], kernel, strides, dil, pads)]
    extra = [max(0, (m - 1) * s + d * (k - 1) + 1 - (size + pb + pe))
             for m, s, d, k, size, (pb, pe) in zip(out, strides, dil, kernel, x.shape[2:], pads)]
    widths = ((0, 0), (0, 0)) + tuple((pb, pe + e) for (pb, pe), e in zip(pads, extra))
    xp = O.pow(O.abs(O.pad(x, widths) if any(map(any, widths)) else x), O.constant(p, x.dtype))
    taps = _taps(xp, kernel, strides, dil, out)
    total = taps[0]
    for t in taps[1:]:
        total = total + t
    return O.pow(total, O.constant(1.0 / p, x.dtype))


def _dilate(x, ax, s):
    """Insert s - 1 zeros between the elements of axis ``ax``."""
    if s == 1 or x.shape[ax] == 0:
        return x
    shape = x.shape
    y = O.reshape(x, shape[:ax + 1] + (1,) + shape[ax + 1:])
    y = O.pad(y, tuple((0, s - 1) if d == ax + 1 else (0, 0) for d in range(y.ndim)))
    y = O.reshape(y, shape[:ax] + (shape[ax] * s,) + shape[ax + 1:])
    return O.getitem(y, tuple(slice(0, (shape[ax] - 1) * s + 1) if d == ax else slice(None)
                              for d in range(y.ndim)))


def _conv_transpose_scatter(x, w, b, g, kernel, strides, dil, pads, full):
    """N-d ConvTranspose without a convolution: the products of every input position
    with every kernel tap (one einsum per group), summed into the output positions
    i * stride + k * dilation (one scatter_add at indices known at load time), then
    cropped by the pads."""
    import itertools
    N, C = x.shape[:2]
    ins, nsp = x.shape[2:], len(kernel)
    cg, mg = C // g, w.shape[1]
    ks, ii = "".join("klm"[:nsp]), "".join("pqr"[:nsp])
    cols = [O.einsum(f"nc{ii},co{ks}->no{ks}{ii}", x[:, k * cg:(k + 1) * cg],
                     w[k * cg:(k + 1) * cg]) for k in range(g)]
    col = O.concatenate(cols, 1) if g > 1 else cols[0]        # (N, M, k..., i...)
    stride_out = [int(np.prod(full[a + 1:])) for a in range(nsp)]
    idx = np.zeros(tuple(kernel) + tuple(ins), np.int64)
    for kk in itertools.product(*(range(k) for k in kernel)):
        for pos in itertools.product(*(range(i) for i in ins)):
            idx[kk + pos] = sum((pos[a] * strides[a] + kk[a] * dil[a]) * stride_out[a]
                                for a in range(nsp))
    M = g * mg
    y = O.scatter_add(O.reshape(col, (N, M, idx.size)), O.constant(idx.reshape(-1)),
                      int(np.prod(full)), 2)
    y = O.reshape(y, (N, M) + tuple(full))
    y = y[(slice(None), slice(None)) + tuple(slice(p0, f - p1) for (p0, p1), f in zip(pads, full))]
    return y + O.reshape(b, (1, M) + (1,) * nsp) if b is not None else y


@op("ConvTranspose")
def _conv_transpose(ctx, n):
    """A convolution of the stride-dilated, padded input with the flipped,
    channel-transposed kernel."""
    x, w, b = ctx.x(n, 0), ctx.x(n, 1), ctx.opt(n, 2)
    nsp = _spatial(n, x)
    kernel = list(n.attr("kernel_shape", w.shape[2:]))
    strides = list(n.attr("strides", [1] * nsp))
    dil = list(n.attr("dilations", [1] * nsp))
    outpad = list(n.attr("output_padding", [0] * nsp))
    g = int(n.attr("group", 1))
    ins = x.shape[2:]
    auto = n.attr("auto_pad", "NOTSET")
    full = [s * (i - 1) + op_ + (k - 1) * d + 1
            for s, i, op_, k, d in zip(strides, ins, outpad, kernel, dil)]
    if "output_shape" in n.attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        want = list(n.attrs["output_shape"])[-nsp:] if "output_shape" in n.attrs else \
            [i * s for i, s in zip(ins, strides)]
        total = [f - o for f, o in zip(full, want)]
        pads = [(t // 2, t - t // 2) if auto == "SAME_UPPER" else (t - t // 2, t // 2) for t in total]
    elif auto == "VALID":
        pads = [(0, 0)] * nsp
    else:
        p = list(n.attr("pads", [0] * (2 * nsp)))
        pads = [(p[i], p[i + nsp]) for i in range(nsp)]
    c = x.shape[1]
    if nsp > 2:
        return _conv_transpose_scatter(x, w, b, g, kernel, strides, dil, pads, full)
    flip = (slice(None), slice(None)) + (slice(None, None, -1),) * nsp
    groups = []
    for k in range(g):
        wk = O.getitem(w, (slice(k * (c // g), (k + 1) * (c // g)),))
        groups.append(O.getitem(O.transpose(wk, (1, 0) + tuple(range(2, w.ndim))), flip))
    wt = groups[0] if g == 1 else O.concatenate(groups, 0)       # (M, C / g, k...)
    y = x
    for a in range(nsp):
        y = _dilate(y, 2 + a, strides[a])
    conv_pads = []
    for a in range(nsp):
        span = (kernel[a] - 1) * dil[a]
        lo, hi = span - pads[a][0], span - pads[a][1] + outpad[a]
        if lo < 0 or hi < 0:          # more padding than the kernel spans: crop
            size = y.shape[2 + a]
            key = tuple(slice(max(-lo, 0), size - max(-hi, 0)) if d == 2 + a else slice(None)
                        for d in range(y.ndim))
            y = O.getitem(y, key)
            lo, hi = max(lo, 0), max(hi, 0)
        conv_pads.append((lo, hi))
    if nsp == 1:
        return O.conv1d(y, wt, b, 1, (conv_pads[0],), dil[0], g)
    return O.conv2d(y, wt, b, 1, tuple(conv_pads), tuple(dil), g)
