"""The converter of ONNX's Resize (opsets 10-19, antialias included): separable,
so each resized axis is one matmul by a constant interpolation matrix built
here with the operator's coordinate transforms and nearest / linear / cubic
coefficients (those of onnx.reference's op_resize), plus a constant for
tf_crop_and_resize's extrapolated points. Innermost axes first, as the
reference interpolates."""
from __future__ import annotations

import math

import numpy as np

from .. import ops as O
from .convert import op


def _x_orig(n, x, in_len, out_len, scale, out_int, roi):
    mode = n.attr("coordinate_transformation_mode", "half_pixel")
    out_w = scale * in_len
    if mode == "align_corners":
        return 0.0 if out_w == 1 else x * (in_len - 1) / (out_w - 1)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_crop_and_resize":
        if out_w == 1:
            v = (roi[1] - roi[0]) * (in_len - 1) / 2
        else:
            v = x * (roi[1] - roi[0]) * (in_len - 1) / (out_w - 1)
        return v + roi[0] * (in_len - 1)
    if mode == "pytorch_half_pixel":
        return -0.5 if out_w == 1 else (x + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_int / out_w)
        return offset + (x + 0.5) / scale - 0.5
    raise n.error(f"coordinate_transformation_mode {mode!r} is not supported")


def _antialias_coeffs(n, mode, ratio, scale):
    """Downsampling with antialias: the kernel stretched by 1 / scale and normalized
    (onnx.reference's _linear_coeffs_antialias / _cubic_coeffs_antialias)."""
    scale = min(scale, 1.0)
    if mode == "linear":
        start = int(np.floor(-1 / scale) + 1)
        args = (np.arange(start, start + 2 - 2 * start) - ratio) * scale
        w = np.clip(1 - np.abs(args), 0, 1)
    else:
        a = float(n.attr("cubic_coeff_a", -0.75))
        start = int(np.floor(-2 / scale) + 1)
        u = np.abs(scale * (np.arange(start, 2 - start) - ratio))
        w = np.where(u <= 1, (a + 2) * u ** 3 - (a + 3) * u ** 2 + 1,
                     np.where(u < 2, a * u ** 3 - 5 * a * u ** 2 + 8 * a * u - 4 * a, 0.0))
    return w / w.sum()


def _coeffs(n, ratio, scale):
    mode = n.attr("mode", "nearest")
    if n.attr("antialias", 0):
        if mode not in ("linear", "cubic"):
            raise n.error(f"antialias=1 applies to modes linear and cubic, not {mode!r}")
        return _antialias_coeffs(n, mode, ratio, scale)
    if mode == "nearest":
        if float(ratio).is_integer():
            return np.array([0.0, 1.0])
        nm = n.attr("nearest_mode", "round_prefer_floor")
        table = {"round_prefer_floor": [ratio <= 0.5, ratio > 0.5],
                 "round_prefer_ceil": [ratio < 0.5, ratio >= 0.5], "floor": [1, 0], "ceil": [0, 1]}
        if nm not in table:
            raise n.error(f"nearest_mode {nm!r} is not supported")
        return np.array(table[nm], np.float64)
    if mode == "linear":
        return np.array([1 - ratio, ratio])
    if mode == "cubic":
        a, r = float(n.attr("cubic_coeff_a", -0.75)), ratio
        return np.array([((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                         ((a + 2) * r - (a + 3)) * r * r + 1,
                         ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1,
                         ((a * ((1 - r) + 1) - 5 * a) * ((1 - r) + 1) + 8 * a) * ((1 - r) + 1) - 4 * a])
    raise n.error(f"mode {mode!r} is not supported (nearest, linear, cubic)")


def interpolation(n, in_len, out_len, scale, roi):
    """(M, c): output = M @ input + c along one axis."""
    M = np.zeros((out_len, in_len))
    c = np.zeros(out_len)
    tf_crop = n.attr("coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize"
    for x in range(out_len):
        xo = float(_x_orig(n, x, in_len, out_len, scale, out_len, roi))
        if tf_crop and (xo < 0 or xo > in_len - 1):
            c[x] = float(n.attr("extrapolation_value", 0.0))
            continue
        base = math.floor(xo)
        ratio = 1.0 if xo == base else xo - base
        if xo == base:
            base -= 1
        w = _coeffs(n, ratio, scale)
        k = len(w)
        idx = base - (k // 2 - 1) + np.arange(k)
        if n.attr("exclude_outside", 0):
            w = np.where((idx < 0) | (idx >= in_len), 0.0, w)
            w = w / w.sum()
        for i, wi in zip(np.clip(idx, 0, in_len - 1), w):
            M[x, i] += wi
    return M, c


@op("Resize")
def _resize(ctx, n):
    x = ctx.x(n, 0)
    r = x.ndim
    axes = [a % r for a in n.attr("axes", range(r))]
    if n.opset < 11:
        scales_in, sizes_in, roi_in = 1, None, None
    else:
        roi_in, scales_in, sizes_in = 1, 2, 3
    roi = np.asarray(ctx.const(n, roi_in, "roi"), np.float64).reshape(-1) \
        if roi_in is not None and n.has(roi_in) else None
    scales = np.asarray(ctx.const(n, scales_in, "scales"), np.float64).reshape(-1) \
        if n.has(scales_in) and ctx.shape(n, scales_in) != (0,) else None
    sizes = np.asarray(ctx.const(n, sizes_in, "sizes"), np.int64).reshape(-1) \
        if sizes_in is not None and n.has(sizes_in) else None
    full_scales = np.ones(r)
    out = list(x.shape)
    if sizes is not None:
        ins = np.array([x.shape[a] for a in axes], np.float64)
        policy = n.attr("keep_aspect_ratio_policy", "stretch")
        if policy == "stretch":
            sc = sizes / ins
        else:
            s = (np.min if policy == "not_larger" else np.max)(sizes / ins)
            sc = np.full(len(axes), s)
            sizes = (s * ins + 0.5).astype(np.int64)
        for a, v, s_ in zip(axes, sizes, sc):
            out[a], full_scales[a] = int(v), s_
    elif scales is not None:
        for a, s_ in zip(axes, scales):
            full_scales[a] = s_
            out[a] = int(s_ * x.shape[a])
    else:
        raise n.error("needs scales or sizes")
    full_roi = np.tile([0.0, 1.0], (r, 1))
    if roi is not None and roi.size:
        k = len(axes)
        for j, a in enumerate(axes):
            full_roi[a] = roi[j], roi[j + k]
    y = x
    for a in reversed(range(r)):
        M, c = interpolation(n, x.shape[a], out[a], full_scales[a], full_roi[a])
        if M.shape[0] == M.shape[1] and np.array_equal(M, np.eye(M.shape[0])) and not c.any():
            continue
        perm = tuple(d for d in range(r) if d != a) + (a,)
        inv = tuple(np.argsort(perm))
        t = O.matmul(O.transpose(y, perm), O.constant(M.T.astype(x.dtype)))
        if c.any():
            t = t + O.constant(c.astype(x.dtype))
        y = O.transpose(t, inv)
    return y


@op("Upsample")
def _upsample(ctx, n):
    """Upsample (opsets 7-9, deprecated): Resize with ``asymmetric``
    coordinates (``out[i] = in[floor(i / scale)]`` for nearest), scales from
    the attribute (opset 7) or input 1."""
    import copy
    mode = n.attr("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise n.error(f"mode {mode!r} is not supported (nearest, linear)")
    r = copy.copy(n)
    r.attrs = {"mode": mode, "coordinate_transformation_mode": "asymmetric",
               "nearest_mode": "floor"}
    r.opset = 10                               # Resize-10's inputs: X, scales
    if n.opset < 9:
        scales = n.attr("scales")
        if scales is None:
            raise n.error("attribute scales is missing")
        name = f"{n.outputs[0]}::upsample_scales"
        ctx.consts[name] = np.asarray(scales, np.float32)
        r.inputs = [n.inputs[0], name]
    return _resize(ctx, r)
