"""Convolutional-network ops as composites of movement, elementwise, reduce
and matmul ops (issue 13), in PyTorch's conventions (NCHW inputs, OIHW
weights): ``pad``, ``conv2d``/``conv1d``, ``max_pool2d``, ``avg_pool2d``,
``adaptive_avg_pool2d``/``global_avg_pool2d``, ``flatten``, ``argmax``/``argmin``.

Nothing here is a primitive: a convolution is a zero-padding (``unslice``),
its KH*KW windows (``windows``, a view: ops/windows.py) laid out as an
im2col matrix with the batch among its columns, and one matmul, so its
gradient (two matmuls and col2im, a sum of unslices), grad-of-grad, fusion
and compilation come from the parts. Max pooling is a
chain of ``where(t > y or isnan(t), t, y)`` over the taps (PyTorch's rule):
a tie keeps the earlier tap, so the gradient reaches the first maximum of
each window, as PyTorch's does (``max``'s own rule splits it among ties).
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from .common import as_node, constant, is_int, norm_axis
from .elementwise import bitwise_or, cast, equal, greater, not_equal, where
from .linalg import matmul
from .movement import broadcast_to, concatenate, getitem, reshape, transpose
from .reduce import max as _max
from .reduce import mean as _mean
from .reduce import min as _min
from .registry import make
from .windows import windows

# ------------------------------------------------------------------ helpers


def _ints(op: str, what: str, v, n: int, lo: int) -> tuple:
    """``v`` (an int or a sequence of ``n`` ints) as ``n`` ints, each >= lo."""
    if is_int(v):
        v = (v,) * n
    if not isinstance(v, (tuple, list)) or len(v) != n or not all(is_int(e) for e in v):
        raise ShapeError(f"{op}: {what} must be an int or a tuple of {n} ints, got {v!r}")
    v = tuple(int(e) for e in v)
    if any(e < lo for e in v):
        need = "positive" if lo == 1 else "non-negative"
        raise ShapeError(f"{op}: {what} must be {need}, got {v!r}")
    return v


def _float_or_int(op: str, x: Node, allow_int=True) -> None:
    if not (D.is_float(x.dtype) or (allow_int and D.is_int(x.dtype))):
        raise DTypeError(f"{op}: input must be {'numeric' if allow_int else 'floating'}, "
                         f"got {x.dtype}")


def _spatial_input(op: str, x, nsp: int) -> tuple[Node, bool]:
    """``x`` as (N, C, *spatial); an unbatched (C, *spatial) input gets a
    batch axis of 1 (returned flag: remove it again)."""
    x = as_node(x, opname=op)
    if x.ndim == nsp + 1:
        return reshape(x, (1,) + x.shape), True
    if x.ndim != nsp + 2:
        raise ShapeError(f"{op}: input must be {nsp + 2}-d (N, C, {'H, W' if nsp == 2 else 'L'}) "
                         f"or {nsp + 1}-d unbatched, got shape {x.shape}")
    return x, False


def _padding_pairs(op: str, padding, n: int) -> tuple:
    """Per spatial axis (before, after): an int, ``n`` ints, or ``n`` pairs."""
    if is_int(padding):
        padding = (padding,) * n
    if not isinstance(padding, (tuple, list)) or len(padding) != n:
        raise ShapeError(f"{op}: padding must be an int, a tuple of {n} ints or of {n} "
                         f"(before, after) pairs, 'same' or 'valid', got {padding!r}")
    out = []
    for p in padding:
        pair = (p, p) if is_int(p) else p
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(is_int(e) for e in pair):
            raise ShapeError(f"{op}: padding must be an int, a tuple of {n} ints or of {n} "
                             f"(before, after) pairs, 'same' or 'valid', got {padding!r}")
        if pair[0] < 0 or pair[1] < 0:
            raise ShapeError(f"{op}: padding must be non-negative, got {padding!r}")
        out.append((int(pair[0]), int(pair[1])))
    return tuple(out)


def _window_slices(xp: Node, kernel, stride, dilation, out):
    """The input of each kernel tap (i, j) (row-major) as a strided slice of
    ``xp`` (N, C, H, W): shape (N, C, OH, OW)."""
    n, c = xp.shape[:2]
    slices = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            a0, a1 = i * dilation[0], j * dilation[1]
            key = (slice(None), slice(None),
                   slice(a0, a0 + (out[0] - 1) * stride[0] + 1, stride[0]),
                   slice(a1, a1 + (out[1] - 1) * stride[1] + 1, stride[1]))
            slices.append(getitem(xp, key))
    return slices


# ---------------------------------------------------------------------- pad

_PAD_MODES = ("constant", "reflect", "edge")


def _pad_width(x: Node, pad_width) -> tuple:
    """numpy's pad_width: an int, (before, after), ((before, after),) or one
    pair per axis."""
    n = x.ndim
    bad = ShapeError(f"pad: pad_width must be an int, a (before, after) pair or one pair per "
                     f"axis ({n} for shape {x.shape}), got {pad_width!r}")
    if is_int(pad_width):
        pairs = ((pad_width, pad_width),) * n
    elif isinstance(pad_width, (tuple, list)) and len(pad_width) == 2 and all(is_int(e) for e in pad_width):
        pairs = (tuple(pad_width),) * n
    elif isinstance(pad_width, (tuple, list)) and len(pad_width) in (1, n) and all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(is_int(e) for e in p)
            for p in pad_width):
        pairs = tuple(tuple(p) for p in pad_width) * (n if len(pad_width) == 1 else 1)
    elif isinstance(pad_width, (tuple, list)) and len(pad_width) == n and all(is_int(e) for e in pad_width):
        pairs = tuple((p, p) for p in pad_width)
    else:
        raise bad
    if any(e < 0 for p in pairs for e in p):
        raise ShapeError(f"pad: pad_width must be non-negative, got {pad_width!r}")
    return tuple((int(a), int(b)) for a, b in pairs)


def _axis_slice(x: Node, axis: int, start, stop, step=1) -> Node:
    key = [slice(None)] * x.ndim
    key[axis] = slice(start, stop, step)
    return getitem(x, tuple(key))


def pad(x, pad_width, mode: str = "constant", value=0) -> Node:
    """numpy's ``pad``: ``pad_width`` is an int, a (before, after) pair, or
    one pair per axis; ``mode`` is ``"constant"`` (``value``, default 0),
    ``"reflect"`` (mirrored without repeating the edge: PyTorch's reflect;
    a pad must be smaller than its axis) or ``"edge"`` (PyTorch's replicate)."""
    x = as_node(x, opname="pad")
    if mode not in _PAD_MODES:
        raise ShapeError(f"pad: mode must be one of {', '.join(_PAD_MODES)}, got {mode!r}")
    pairs = _pad_width(x, pad_width)
    if all(a == 0 and b == 0 for a, b in pairs):
        return x
    if mode == "constant":
        if not (isinstance(value, (int, float, bool, np.number, np.bool_))):
            raise ShapeError(f"pad: value must be a Python or numpy scalar, got {value!r}")
        shape = tuple(s + a + b for s, (a, b) in zip(x.shape, pairs))
        attrs = {"shape": shape, "starts": tuple(a for a, _ in pairs),
                 "stops": tuple(a + s for s, (a, _) in zip(x.shape, pairs)),
                 "steps": (1,) * x.ndim}
        inner = make("unslice", (x,), attrs)
        if value == 0 and not (isinstance(value, float) and np.signbit(value)):
            return inner
        if D.is_int(x.dtype) and not (is_int(value) or float(value).is_integer()):
            raise DTypeError(f"pad: value {value!r} does not fit the {x.dtype} input")
        inside = make("unslice", (broadcast_to(constant(True), x.shape),), attrs)
        return where(inside, inner, value)
    for ax, (a, b) in enumerate(pairs):
        if a == 0 and b == 0:
            continue
        n = x.shape[ax]
        if n == 0:
            raise ShapeError(f"pad: cannot {mode}-pad axis {ax} of size 0 (shape {x.shape})")
        parts = []
        if mode == "edge":
            if a:
                first = _axis_slice(x, ax, 0, 1)
                parts.append(broadcast_to(first, x.shape[:ax] + (a,) + x.shape[ax + 1:]))
            parts.append(x)
            if b:
                last = _axis_slice(x, ax, n - 1, n)
                parts.append(broadcast_to(last, x.shape[:ax] + (b,) + x.shape[ax + 1:]))
        else:
            if a >= n or b >= n:
                raise ShapeError(f"pad: reflect padding ({a}, {b}) of axis {ax} must be smaller "
                                 f"than its size {n} (shape {x.shape})")
            if a:
                parts.append(_axis_slice(x, ax, a, 0, -1))          # x[a], ..., x[1]
            parts.append(x)
            if b:
                stop = n - 2 - b
                parts.append(_axis_slice(x, ax, n - 2, stop if stop >= 0 else None, -1))
        x = concatenate(parts, ax)
    return x


# ------------------------------------------------------------------- conv2d


def _conv_padding(op: str, padding, kernel, stride, dilation) -> tuple:
    nsp = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nsp
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ShapeError(f"{op}: padding='same' needs stride 1, got stride {stride}")
            out = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))   # PyTorch: the extra one after
            return tuple(out)
        raise ShapeError(f"{op}: padding string must be 'same' or 'valid', got {padding!r}")
    return _padding_pairs(op, padding, nsp)


def _out_size(op: str, size, pads, k, s, d, what="kernel"):
    span = d * (k - 1) + 1
    padded = size + pads[0] + pads[1]
    if span > padded:
        raise ShapeError(f"{op}: {what} {k} (dilation {d}, spanning {span}) is larger than the "
                         f"padded input ({size} + padding {pads[0]} + {pads[1]} = {padded})")
    return (padded - span) // s + 1


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Node:
    """PyTorch's ``conv2d`` (cross-correlation): ``x`` (N, C, H, W) or
    (C, H, W), ``w`` (O, C // groups, KH, KW), ``bias`` (O,) or None.
    ``stride`` and ``dilation``: an int or (h, w); ``padding``: an int,
    (h, w), ((top, bottom), (left, right)), ``"valid"`` or ``"same"``
    (stride 1; an odd total pads one more after, as PyTorch). Zero padding."""
    op = "conv2d"
    x, unbatched = _spatial_input(op, x, 2)
    w = as_node(w, opname=op)
    _float_or_int(op, x)
    if w.ndim != 4:
        raise ShapeError(f"{op}: weight must be 4-d (O, C/groups, KH, KW), got shape {w.shape}")
    stride = _ints(op, "stride", stride, 2, 1)
    dilation = _ints(op, "dilation", dilation, 2, 1)
    if not is_int(groups) or groups < 1:
        raise ShapeError(f"{op}: groups must be a positive int, got {groups!r}")
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if c % groups or o % groups:
        raise ShapeError(f"{op}: groups={groups} must divide the input channels ({c}) and the "
                         f"output channels ({o})")
    if cg * groups != c:
        raise ShapeError(f"{op}: weight {w.shape} expects {cg * groups} input channels "
                         f"({cg} per group x {groups} groups), input {x.shape} has {c}")
    if kh < 1 or kw < 1:
        raise ShapeError(f"{op}: kernel {kh}x{kw} of weight {w.shape} is empty")
    pads = _conv_padding(op, padding, (kh, kw), stride, dilation)
    oh = _out_size(op, h, pads[0], kh, stride[0], dilation[0])
    ow = _out_size(op, wd, pads[1], kw, stride[1], dilation[1])
    if bias is not None:
        bias = as_node(bias, opname=op)
        if bias.shape != (o,):
            raise ShapeError(f"{op}: bias must have shape ({o},) for weight {w.shape}, got "
                             f"{bias.shape}")
    layout = _full_width_layout(n, (h, wd), pads, (kh, kw), dilation, (oh, ow)) \
        if groups == 1 and stride == (1, 1) else None
    if layout is not None:
        out = _conv_full_width(x, w, layout, dilation, (oh, ow))
        if bias is not None:
            out = out + reshape(bias, (o, 1, 1))
        return reshape(out, out.shape[1:]) if unbatched else out
    xp = pad(x, ((0, 0), (0, 0)) + pads)
    k, g = kh * kw, groups
    # im2col with the batch among the columns: (C, KH, KW) rows (OIHW order)
    # by (N, OH, OW) columns, so the forward product and both gradient
    # products are each one GEMM over the whole batch (per group)
    cols = transpose(windows(xp, (kh, kw), stride, dilation), (1, 2, 3, 0, 4, 5))
    cols = reshape(cols, (c * k, n * oh * ow) if g == 1 else (g, cg * k, n * oh * ow))
    wm = reshape(w, (o, c * k) if g == 1 else (g, o // g, cg * k))
    out = transpose(reshape(matmul(wm, cols), (o, n, oh, ow)), (1, 0, 2, 3))
    if bias is not None:
        out = out + reshape(bias, (o, 1, 1))
    return reshape(out, out.shape[1:]) if unbatched else out


FULL_WIDTH_WASTE = 0.15     # the most of a full-width product's columns that may be unused


def _full_width_layout(n, size, pads, kernel, dilation, out):
    """The row layout of :func:`_conv_full_width`, or None where it does not
    apply: ``(g, q, prefix, tail, ncols)``. Each image is followed by ``g``
    zero rows and each row by ``q`` zero columns (pitch ``P = W + q``), with
    ``prefix`` zeros in front: the zeros after one row (image) are the
    padding before the next, so a 3x3 convolution with padding 1 on 28x28
    wastes 1/29 of each axis, not 2/30. ``ncols`` product columns, of which
    ``n * oh * ow`` are outputs; ``tail`` zeros end the row."""
    (h, wd), ((pt, pb), (pl, pr)) = size, pads
    span_h, span_w = [d * (k - 1) for k, d in zip(kernel, dilation)]
    g, q = max(pt, pb), max(pl, pr)
    if min(pt, pb) > span_h or min(pl, pr) > span_w:
        return None                  # (outputs past a whole image of padding)
    pitch = wd + q
    prefix = pt * pitch + pl
    used_len = prefix + n * (h + g) * pitch
    last = ((n - 1) * (h + g) + out[0] - 1) * pitch + out[1]      # columns needed
    tail = max(0, last + span_h * pitch + span_w - used_len)
    ncols = used_len + tail - span_h * pitch - span_w
    if ncols < last or 1 - n * out[0] * out[1] / ncols > FULL_WIDTH_WASTE:
        return None
    return g, q, prefix, tail, ncols


def _conv_full_width(x, w, layout, dilation, out):
    """A stride-1 convolution as one GEMM that reads the padded input in
    place. The input is laid out (C, N, H + g, W + q) — each image and row
    followed by zeros, which are also the padding before the next — and
    flattened per channel behind ``prefix`` zeros (:func:`_full_width_layout`).
    Output column ``j = (n*(H+g) + oh)*P + ow`` of tap (kh, kw) is then
    element ``j + kh*dh*P + kw*dw`` of the channel's row, so the im2col
    matrix (rows (c, kh, kw), unit column stride) is two ``windows`` of that
    row: a row-table view the GEMM packs from directly (``brows``), never
    built. Columns past a row's ``ow`` or an image's ``oh`` are computed and
    dropped; the output is the product sliced to (N, O, OH, OW), a view its
    consumer reads.

    The row is stored as rows of the pitch, (C, R, P): the ``prefix`` is the
    first image's top padding rows and its rows' left padding (each image's
    ``pt`` zero rows and each row's ``pl`` zero columns come first), then
    whole zero rows for the last windows. So the kernel that lays the input
    out runs a loop per row with no division per element (a flat row's
    index, split into image, row and column, needs two per element: 3.5x
    slower on 8x64x56x56). The product covers every image's whole grid
    (a few columns more than the outputs need), so the output is a slice
    of it, not a slice of a pad."""
    g, q, prefix, _, ncols = layout
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    dh, dw = dilation
    pitch = wd + q
    pt, pl = prefix // pitch, prefix % pitch
    xt = pad(transpose(x, (1, 0, 2, 3)), ((0, 0), (0, 0), (pt, g - pt), (pl, q - pl)))
    rows = n * (h + g)
    size = rows * pitch
    # the product's columns: at least every image's whole grid, so that the
    # output is a slice of it (a few more columns than needed, never a pad)
    ncols = max(ncols, size)
    span = (kh - 1) * dh * pitch + (kw - 1) * dw
    extra = max(0, -(-(ncols + span - size) // pitch))   # zero rows after the last image
    z = pad(reshape(xt, (c, rows, pitch)), ((0, 0), (0, extra), (0, 0)))
    row = reshape(z, (c, (rows + extra) * pitch))
    v = windows(windows(row, (kh,), 1, (dh * pitch,)), (kw,), 1, (dw,))   # (C, KH, KW, L >= ncols)
    if v.shape[-1] > ncols:
        v = getitem(v, (slice(None),) * 3 + (slice(0, ncols),))
    full = matmul(reshape(w, (o, c * kh * kw)), reshape(v, (c * kh * kw, ncols)))
    if ncols > size:
        full = getitem(full, (slice(None), slice(0, size)))
    y = getitem(reshape(full, (o, n, h + g, pitch)), (slice(None), slice(None), slice(0, out[0]),
                                                      slice(0, out[1])))
    return transpose(y, (1, 0, 2, 3))


def conv1d(x, w, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Node:
    """PyTorch's ``conv1d``: ``x`` (N, C, L) or (C, L), ``w`` (O, C // groups,
    K); ``padding`` an int, a (left, right) pair inside a tuple
    (``((l, r),)``), ``"valid"`` or ``"same"``. conv2d with a height of 1."""
    op = "conv1d"
    x, unbatched = _spatial_input(op, x, 1)
    w = as_node(w, opname=op)
    if w.ndim != 3:
        raise ShapeError(f"{op}: weight must be 3-d (O, C/groups, K), got shape {w.shape}")
    (s,) = _ints(op, "stride", stride, 1, 1)
    (d,) = _ints(op, "dilation", dilation, 1, 1)
    p = padding if isinstance(padding, str) else ((0, 0),) + _padding_pairs(op, padding, 1)
    y = conv2d(reshape(x, x.shape[:2] + (1,) + x.shape[2:]),
               reshape(w, w.shape[:2] + (1,) + w.shape[2:]), bias, (1, s), p, (1, d), groups)
    y = reshape(y, y.shape[:2] + y.shape[3:])
    return reshape(y, y.shape[1:]) if unbatched else y


# ------------------------------------------------------------------ pooling


def _pool_geometry(op, x, kernel_size, stride, padding, dilation, ceil_mode):
    """(kernel, stride, padding, dilation, out size, extra right padding) per
    spatial axis, with PyTorch's rules: stride defaults to the kernel,
    padding at most half the kernel, ceil_mode's last window starting inside
    the input or its left padding."""
    kernel = _ints(op, "kernel_size", kernel_size, 2, 1)
    stride = kernel if stride is None or stride == () else _ints(op, "stride", stride, 2, 1)
    pads = _ints(op, "padding", padding, 2, 0)
    dil = _ints(op, "dilation", dilation, 2, 1)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise ShapeError(f"{op}: ceil_mode must be a bool, got {ceil_mode!r}")
    out, extra = [], []
    for ax, (size, k, s, p, d) in enumerate(zip(x.shape[2:], kernel, stride, pads, dil)):
        if p * 2 > k:
            raise ShapeError(f"{op}: padding {pads} must be at most half the kernel size {kernel}")
        span = d * (k - 1) + 1
        room = size + 2 * p - span
        m = (-(-room // s) if ceil_mode else room // s) + 1
        if ceil_mode and (m - 1) * s >= size + p:
            m -= 1
        if m < 1:
            raise ShapeError(f"{op}: kernel {k} (dilation {d}, spanning {span}) is larger than "
                             f"the padded input ({size} + 2 x padding {p}) on spatial axis {ax} "
                             f"of shape {x.shape}")
        out.append(m)
        extra.append(max(0, (m - 1) * s + span - (size + 2 * p)))
    return kernel, stride, pads, dil, tuple(out), tuple(extra)


def _pool_input(op, x):
    x, unbatched = _spatial_input(op, x, 2)
    _float_or_int(op, x)
    return x, unbatched


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> Node:
    """PyTorch's ``max_pool2d`` on (N, C, H, W) or (C, H, W); padding is -inf
    (the type's minimum for integers). The gradient goes to the first maximum
    of each window (row-major), or to its last NaN, as PyTorch's."""
    op = "max_pool2d"
    x, unbatched = _pool_input(op, x)
    kernel, stride, pads, dil, out, extra = _pool_geometry(op, x, kernel_size, stride, padding,
                                                           dilation, ceil_mode)
    low = -np.inf if D.is_float(x.dtype) else int(np.iinfo(x.dtype).min)
    xp = pad(x, ((0, 0), (0, 0), (pads[0], pads[0] + extra[0]), (pads[1], pads[1] + extra[1])),
             value=low)
    taps = _window_slices(xp, kernel, stride, dil, out)
    y = taps[0]
    for t in taps[1:]:
        # PyTorch's rule, `val > maxval || isnan(val)`: a tie keeps the earlier
        # tap, and so does its gradient (where's); a NaN propagates
        take = greater(t, y)
        if D.is_float(x.dtype):
            take = bitwise_or(take, not_equal(t, t))
        y = where(take, t, y)
    return reshape(y, y.shape[1:]) if unbatched else y


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None) -> Node:
    """PyTorch's ``avg_pool2d`` on (N, C, H, W) or (C, H, W): zero padding;
    each window's sum is divided by its size within the padded input
    (``count_include_pad``) or within the input alone, or by
    ``divisor_override``. Integer inputs average to float64."""
    op = "avg_pool2d"
    x, unbatched = _pool_input(op, x)
    if not D.is_float(x.dtype):
        x = cast(x, D.float64)
    kernel, stride, pads, _, out, extra = _pool_geometry(op, x, kernel_size, stride, padding,
                                                         1, ceil_mode)
    xp = pad(x, ((0, 0), (0, 0), (pads[0], pads[0] + extra[0]), (pads[1], pads[1] + extra[1])))
    taps = _window_slices(xp, kernel, stride, (1, 1), out)
    total = taps[0]
    for t in taps[1:]:
        total = total + t
    if divisor_override is not None:
        if not is_int(divisor_override) or divisor_override < 1:
            raise ShapeError(f"{op}: divisor_override must be a positive int, got "
                             f"{divisor_override!r}")
        y = total / float(divisor_override)
    else:
        counts = []
        for ax in range(2):
            size, k, s, p = x.shape[2 + ax], kernel[ax], stride[ax], pads[ax]
            start = np.arange(out[ax]) * s - p
            end = np.minimum(start + k, size + p)
            if count_include_pad:
                counts.append(end - start)
            else:
                counts.append(np.minimum(end, size) - np.maximum(start, 0))
        div = np.outer(counts[0], counts[1]).astype(np.dtype(x.dtype))
        y = total / constant(div)
    return reshape(y, y.shape[1:]) if unbatched else y


def adaptive_avg_pool2d(x, output_size) -> Node:
    """PyTorch's ``adaptive_avg_pool2d``: output bin ``i`` of an axis of size
    ``n`` averages ``[floor(i n / m), ceil((i + 1) n / m))``; ``output_size``
    an int or (h, w), None keeping that axis. Integer inputs give float64."""
    op = "adaptive_avg_pool2d"
    x, unbatched = _pool_input(op, x)
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(x.shape[2 + i] if v is None else v for i, v in enumerate(output_size))
    size = _ints(op, "output_size", output_size, 2, 1)
    if not D.is_float(x.dtype):
        x = cast(x, D.float64)
    for ax, m in zip((2, 3), size):
        n = x.shape[ax]
        if n == 0:
            raise ShapeError(f"{op}: spatial axis {ax} of shape {x.shape} is empty")
        if m == n:
            continue
        if m == 1:
            x = _mean(x, ax, keepdims=True)
            continue
        bins = [_mean(_axis_slice(x, ax, (i * n) // m, -(-((i + 1) * n) // m)), ax, keepdims=True)
                for i in range(m)]
        x = concatenate(bins, ax)
    return reshape(x, x.shape[1:]) if unbatched else x


def global_avg_pool2d(x, keepdims: bool = True) -> Node:
    """The mean over H and W of (N, C, H, W): (N, C, 1, 1), or (N, C)
    without ``keepdims``; ``adaptive_avg_pool2d(x, 1)``."""
    x = as_node(x, opname="global_avg_pool2d")
    if x.ndim != 4:
        raise ShapeError(f"global_avg_pool2d: input must be 4-d (N, C, H, W), got shape {x.shape}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ShapeError(f"global_avg_pool2d: input {x.shape} has an empty spatial axis")
    return _mean(x, (2, 3), keepdims=bool(keepdims))


# ------------------------------------------------------- flatten and argmax


def flatten(x, start_dim: int = 1, end_dim: int = -1) -> Node:
    """PyTorch's ``flatten``: axes start_dim..end_dim merged into one."""
    x = as_node(x, opname="flatten")
    if x.ndim == 0:
        return reshape(x, (1,))
    a = norm_axis("flatten", start_dim, x.ndim)
    b = norm_axis("flatten", end_dim, x.ndim)
    if a > b:
        raise ShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                         f"(shape {x.shape})")
    merged = 1
    for s in x.shape[a:b + 1]:
        merged *= s
    return reshape(x, x.shape[:a] + (merged,) + x.shape[b + 1:])


def _arg_extremum(op, x, axis, keepdims, find):
    x = as_node(x, opname=op)
    if axis is None:
        shape = x.shape
        y = _arg_extremum(op, reshape(x, (x.size,)), 0, False, find)
        return reshape(y, (1,) * len(shape)) if keepdims else y
    ax = norm_axis(op, axis, x.ndim)
    n = x.shape[ax]
    if n == 0:
        raise ShapeError(f"{op}: attempt to get {op} of an empty axis {ax} (shape {x.shape})")
    m = find(x, ax, keepdims=True)
    hit = equal(x, m)
    if D.is_float(x.dtype):
        hit = bitwise_or(hit, not_equal(x, x))     # the first NaN, as numpy
    pos = constant(np.arange(n, dtype=np.int64).reshape((n,) + (1,) * (x.ndim - 1 - ax)))
    return _min(where(hit, pos, n), ax, keepdims=bool(keepdims))


def argmax(x, axis=None, keepdims: bool = False) -> Node:
    """numpy's ``argmax``: int64 index of the first maximum (or first NaN)
    along ``axis`` (None: of the flattened input). No gradient."""
    return _arg_extremum("argmax", x, axis, keepdims, _max)


def argmin(x, axis=None, keepdims: bool = False) -> Node:
    """numpy's ``argmin``: int64 index of the first minimum (or first NaN)."""
    return _arg_extremum("argmin", x, axis, keepdims, _min)


__all__ = ["pad", "conv2d", "conv1d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
           "global_avg_pool2d", "flatten", "argmax", "argmin"]
