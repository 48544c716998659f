"""numpy references for the convolutional-network ops (graphc/ops/conv.py),
written from PyTorch's documented definitions with direct loops over output
positions and np.pad, independently of graphc's composites."""
from __future__ import annotations

import numpy as np


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def np_pad(x, pad_width, mode="constant", value=0):
    if mode == "constant":
        return np.pad(x, pad_width, mode="constant", constant_values=value)
    return np.pad(x, pad_width, mode=mode)


def _conv_pads(padding, kernel, dilation):
    if padding == "valid":
        return [(0, 0), (0, 0)]
    if padding == "same":
        out = []
        for k, d in zip(kernel, dilation):
            t = d * (k - 1)
            out.append((t // 2, t - t // 2))
        return out
    if isinstance(padding, int):
        return [(padding, padding)] * 2
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def np_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """out[n, o, i, j] = sum over c in o's group, p, q of
    xpad[n, c, i*sh + p*dh, j*sw + q*dw] * w[o, c, p, q] (+ b[o])."""
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    o_ch, cg, kh, kw = w.shape
    if x.ndim == 3:                     # unbatched
        return np_conv2d(x[None], w, b, stride, padding, dilation, groups)[0]
    (pt, pb), (pl, pr) = _conv_pads(padding, (kh, kw), (dh, dw))
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n, c, hp, wp = xp.shape
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    og = o_ch // groups
    out = np.zeros((n, o_ch, oh, ow), np.result_type(x, w))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
            for g in range(groups):
                xs = win[:, g * cg:(g + 1) * cg]
                ws = w[g * og:(g + 1) * og]
                out[:, g * og:(g + 1) * og, i, j] = np.einsum("nckl,ockl->no", xs, ws)
    if b is not None:
        out = out + b[None, :, None, None]
    return out.astype(np.result_type(x, w))


def np_conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    if not isinstance(padding, str):
        padding = ((0, 0), padding if isinstance(padding, int) else padding[0])
    return np_conv2d(x[:, :, None], w[:, :, None], b, (1, stride), padding, (1, dilation),
                     groups)[:, :, 0]


def pool_out(size, k, s, p, d, ceil_mode):
    """PyTorch's documented output size of max_pool2d / avg_pool2d."""
    num = size + 2 * p - d * (k - 1) - 1
    o = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (o - 1) * s >= size + p:
        o -= 1
    return o


def np_max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride if stride is not None else kernel_size)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    if x.ndim == 3:                     # unbatched
        return np_max_pool2d(x[None], kernel_size, stride, padding, dilation, ceil_mode)[0]
    n, c, h, wd = x.shape
    oh = pool_out(h, kh, sh, ph, dh, ceil_mode)
    ow = pool_out(wd, kw, sw, pw, dw, ceil_mode)
    out = np.empty((n, c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            best = None
            for p in range(kh):
                for q in range(kw):
                    r, s = i * sh - ph + p * dh, j * sw - pw + q * dw
                    if 0 <= r < h and 0 <= s < wd:
                        v = x[:, :, r, s]
                        best = v if best is None else np.maximum(best, v)
            # a dilated window wholly in the padding: -inf, as PyTorch
            out[:, :, i, j] = -np.inf if best is None else best
    return out


def np_max_pool2d_grad(x, g, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """The gradient PyTorch's max_pool2d gives: each window's ``g`` to its
    first (row-major) maximum."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride if stride is not None else kernel_size)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n, c, h, wd = x.shape
    oh, ow = g.shape[2:]
    gx = np.zeros_like(x)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    best, at = None, None
                    for p in range(kh):
                        for q in range(kw):
                            r, s = i * sh - ph + p * dh, j * sw - pw + q * dw
                            if 0 <= r < h and 0 <= s < wd and (best is None or x[a, b, r, s] > best):
                                best, at = x[a, b, r, s], (r, s)
                    gx[a, b, at[0], at[1]] += g[a, b, i, j]
    return gx


def np_avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                  count_include_pad=True, divisor_override=None):
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride if stride is not None else kernel_size)
    ph, pw = _pair(padding)
    x = x if x.dtype.kind == "f" else x.astype(np.float64)
    n, c, h, wd = x.shape
    oh = pool_out(h, kh, sh, ph, 1, ceil_mode)
    ow = pool_out(wd, kw, sw, pw, 1, ceil_mode)
    out = np.empty((n, c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - ph, j * sw - pw
            h1, w1 = min(h0 + kh, h + ph), min(w0 + kw, wd + pw)
            size = (h1 - h0) * (w1 - w0)
            a0, b0, a1, b1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, wd)
            total = x[:, :, a0:a1, b0:b1].sum(axis=(2, 3))
            div = divisor_override or (size if count_include_pad else (a1 - a0) * (b1 - b0))
            out[:, :, i, j] = total / div
    return out


def np_adaptive_avg_pool2d(x, output_size):
    oh, ow = _pair(output_size)
    x = x if x.dtype.kind == "f" else x.astype(np.float64)
    n, c, h, w = x.shape
    out = np.empty((n, c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
            c0, c1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out


def np_flatten(x, start_dim=1, end_dim=-1):
    s, e = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1:]) if x.size else \
        x.reshape(x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:])


def np_windows(x, kernel, stride=1, dilation=1):
    """gc.windows' oracle from numpy's sliding_window_view: (..., K.., O..)."""
    k = len(kernel)
    stride = (stride,) * k if np.isscalar(stride) else tuple(stride)
    dilation = (dilation,) * k if np.isscalar(dilation) else tuple(dilation)
    spans = tuple(d * (kk - 1) + 1 for kk, d in zip(kernel, dilation))
    axes = tuple(range(x.ndim - k, x.ndim))
    v = np.lib.stride_tricks.sliding_window_view(x, spans, axis=axes)   # (..., P.., span..)
    v = v[(Ellipsis,) + tuple(slice(None, None, s) for s in stride)
          + tuple(slice(None, None, d) for d in dilation)]
    lead = x.ndim - k
    order = tuple(range(lead)) + tuple(range(lead + k, lead + 2 * k)) + tuple(range(lead, lead + k))
    return np.ascontiguousarray(v.transpose(order))
