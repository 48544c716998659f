"""``windows``: every kernel window of the trailing spatial axes, as one view.

``windows(x, kernel, stride, dilation)`` of ``x`` (..., S1, .., Sk) with k =
``len(kernel)`` spatial axes is (..., K1, .., Kk, O1, .., Ok), where
``O = (S - d (K - 1) - 1) // s + 1`` and::

    out[..., k1, .., kk, o1, .., ok] = x[..., o1 s1 + k1 d1, .., ok sk + kk dk]

One affine read per element (an ``index`` op whose output elements are all
input elements: a view), so a convolution's im2col is a single gather loop
without conditions, and fusion and the GEMM's strided operands follow it
like any slice. Its gradient scatters each tap back (a sum of ``unslice``
adds: col2im), built from the primitives, so grad-of-grad works.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir.node import Node
from . import attrs as A
from .common import MAX_DIM, as_node
from .index import Read
from .registry import OpDef, make, register


def _geometry(shape, kernel, stride, dilation):
    """The window counts per spatial axis, or a ShapeError."""
    k = len(kernel)
    if len(shape) < k:
        raise ShapeError(f"windows: input of shape {shape} has fewer than {k} axes")
    out = []
    for size, kk, s, d in zip(shape[len(shape) - k:], kernel, stride, dilation):
        span = d * (kk - 1) + 1
        if span > size:
            raise ShapeError(f"windows: kernel {kernel} with dilation {dilation} spans {span} "
                             f"elements, more than the input's {size} (shape {shape})")
        out.append((size - span) // s + 1)
    return tuple(out)


def _attrs(inputs, attrs):
    (x,) = inputs
    kernel = A.ints("windows", "kernel", attrs["kernel"])
    k = len(kernel)
    if k < 1:
        raise ShapeError("windows: kernel needs at least one spatial axis")
    stride = A.ints("windows", "stride", attrs["stride"], k)
    dilation = A.ints("windows", "dilation", attrs["dilation"], k)
    for what, vs in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        if any(v < 1 or v > MAX_DIM for v in vs):
            raise ShapeError(f"windows: {what}={A.show(vs)} must be positive ints")
    _geometry(x.shape, kernel, stride, dilation)
    return {"kernel": kernel, "stride": stride, "dilation": dilation}


def _infer(inputs, attrs):
    (x,) = inputs
    kernel = attrs["kernel"]
    out = _geometry(x.shape, kernel, attrs["stride"], attrs["dilation"])
    return x.shape[:x.ndim - len(kernel)] + tuple(kernel) + out, x.dtype


def _map(ix, n, idx):
    k = len(n.attrs["kernel"])
    lead = n.ndim - 2 * k
    taps, pos = idx[lead:lead + k], idx[lead + k:]
    at = list(idx[:lead]) + [ix.add(ix.mul(o, s), ix.mul(t, d)) for t, o, s, d in
                             zip(taps, pos, n.attrs["stride"], n.attrs["dilation"])]
    return [Read(0, at)]


def _ref(x, kernel, stride, dilation):
    k = len(kernel)
    out = _geometry(x.shape, kernel, stride, dilation)
    lead = x.shape[:x.ndim - k]
    y = np.empty(lead + tuple(kernel) + out, x.dtype)
    for tap in np.ndindex(*kernel):
        src = tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                    for t, o, s, d in zip(tap, out, stride, dilation))
        y[(Ellipsis,) + tap + (slice(None),) * k] = x[(Ellipsis,) + src]
    return y


def _vjp(n, g):
    """col2im: each tap's slice of ``g`` unsliced to where it was read, summed."""
    x = n.inputs[0]
    kernel, stride, dilation = n.attrs["kernel"], n.attrs["stride"], n.attrs["dilation"]
    k = len(kernel)
    lead = x.ndim - k
    out = n.shape[lead + k:]
    total = None
    for tap in np.ndindex(*kernel):
        part = make("slice", (g,), {
            "starts": (0,) * lead + tap + (0,) * k,
            "stops": g.shape[:lead] + tuple(t + 1 for t in tap) + out,
            "steps": (1,) * (lead + 2 * k)})
        part = make("reshape", (part,), {"shape": x.shape[:lead] + out})
        starts = tuple(t * d for t, d in zip(tap, dilation))
        stops = tuple(a + (o - 1) * s + 1 for a, o, s in zip(starts, out, stride))
        placed = make("unslice", (part,), {
            "shape": x.shape, "starts": (0,) * lead + starts,
            "stops": x.shape[:lead] + stops, "steps": (1,) * lead + tuple(stride)})
        total = placed if total is None else make("add", (total, placed))
    return [total]


register(OpDef("windows", "index", _infer, _ref, _vjp, index_map=_map, nin=1,
               attrs=("kernel", "stride", "dilation"), view=True, check_attrs=_attrs,
               doc="every kernel window of the trailing spatial axes: (..., K.., O..)"))


def windows(x, kernel, stride=1, dilation=1) -> Node:
    """Every window of ``x``'s trailing ``len(kernel)`` axes (see the module
    docstring); ``stride`` and ``dilation`` an int or one per spatial axis."""
    x = as_node(x, opname="windows")
    kernel = (kernel,) if isinstance(kernel, (int, np.integer)) else tuple(kernel)
    k = len(kernel)
    stride = (stride,) * k if isinstance(stride, (int, np.integer)) else tuple(stride)
    dilation = (dilation,) * k if isinstance(dilation, (int, np.integer)) else tuple(dilation)
    return make("windows", (x,), {"kernel": kernel, "stride": stride, "dilation": dilation})
