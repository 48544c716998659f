"""Reductions over axes: the primitives ``reduce_sum``, ``reduce_max`` and
``reduce_min``, and the functions ``sum``, ``max``, ``min`` and ``mean``
users call. ``min`` is a reduction of its own (identity: the dtype's
largest value), not ``-max(-x)``: negating the type's minimum integer
wraps, so that composite gave ``min([0, -2**31]) == 0``."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from . import attrs as A
from .common import as_node, norm_axes
from .registry import OpDef, make, register


def _infer(name):
    def infer(inputs, attrs):
        (x,) = inputs
        axes, keep = attrs["axes"], attrs["keepdims"]
        if name in ("reduce_max", "reduce_min") and any(x.shape[a] == 0 for a in axes):
            what = "maximum" if name == "reduce_max" else "minimum"
            raise ShapeError(f"{name[7:]}: zero-size axis {axes} of shape {x.shape} has no {what} "
                             f"(op {name})")
        if name == "reduce_sum" and D.is_bool(x.dtype):
            raise ShapeError("reduce_sum: bool input; cast it first")
        shape = tuple(1 if i in axes else s for i, s in enumerate(x.shape)) if keep else \
            tuple(s for i, s in enumerate(x.shape) if i not in axes)
        return shape, x.dtype
    return infer


def _reduce_attrs(name):
    def check(inputs, attrs):
        return {"axes": A.axes(name, "axes", attrs["axes"], inputs[0].ndim),
                "keepdims": A.boolean(name, "keepdims", attrs["keepdims"])}
    return check


_REDUCE = dict(nin=1, attrs=("axes", "keepdims"))


def _keep_shape(n: Node) -> tuple:
    axes = n.attrs["axes"]
    return tuple(1 if i in axes else s for i, s in enumerate(n.inputs[0].shape))


def _sum_vjp(n, g):
    from .movement import broadcast_to, reshape
    return [broadcast_to(reshape(g, _keep_shape(n)), n.inputs[0].shape)]


def _extremum_vjp(n, g):
    """max's and min's rule: the gradient goes to the positions equal to the
    result, split evenly among ties."""
    from .elementwise import cast, equal
    from .movement import broadcast_to, reshape
    x = n.inputs[0]
    y = broadcast_to(reshape(n, _keep_shape(n)), x.shape)
    mask = cast(equal(x, y), x.dtype)
    count = sum(mask, n.attrs["axes"], keepdims=True)
    return [broadcast_to(reshape(g, _keep_shape(n)), x.shape) * mask / count]


def _max_init(dt):
    if D.is_float(dt):
        return -np.inf
    if D.is_bool(dt):
        return False
    return np.iinfo(dt).min


def _min_init(dt):
    if D.is_float(dt):
        return np.inf
    if D.is_bool(dt):
        return True
    return np.iinfo(dt).max


register(OpDef("reduce_sum", "reduce", _infer("reduce_sum"),
               lambda x, axes, keepdims: np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype),
               _sum_vjp, reduce_init=lambda dt: 0,
               reduce_combine=lambda s, acc, x: acc + x,
               # float32 sums accumulate in float64: 1e7 terms stay within 1e-6 of exact
               reduce_acc_dtype=lambda dt: D.float64 if dt == D.float32 else dt,
               check_attrs=_reduce_attrs("reduce_sum"), **_REDUCE))
register(OpDef("reduce_max", "reduce", _infer("reduce_max"),
               lambda x, axes, keepdims: np.max(x, axis=axes, keepdims=keepdims),
               _extremum_vjp, reduce_init=_max_init,
               reduce_combine=lambda s, acc, x: s.fmaximum(acc, x),
               check_attrs=_reduce_attrs("reduce_max"), **_REDUCE))
register(OpDef("reduce_min", "reduce", _infer("reduce_min"),
               lambda x, axes, keepdims: np.min(x, axis=axes, keepdims=keepdims),
               _extremum_vjp, reduce_init=_min_init,
               reduce_combine=lambda s, acc, x: s.fminimum(acc, x),
               check_attrs=_reduce_attrs("reduce_min"), **_REDUCE))


def sum(x, axis=None, keepdims: bool = False) -> Node:  # noqa: A001 - numpy's name
    """Sum over ``axis`` (None = all). bool and int32 sum to int64, as numpy."""
    from .elementwise import cast
    x = as_node(x, opname="sum")
    axes = norm_axes("sum", axis, x.ndim)
    if D.is_bool(x.dtype) or x.dtype == D.int32:
        x = cast(x, D.int64)
    if not axes:
        # numpy's sum starts from +0.0, so a sum over no axes turns -0.0 into 0.0
        return x + 0.0 if D.is_float(x.dtype) else x
    return make("reduce_sum", (x,), {"axes": axes, "keepdims": bool(keepdims)})


def max(x, axis=None, keepdims: bool = False) -> Node:  # noqa: A001
    """Maximum over ``axis`` (None = all); NaN propagates, as numpy."""
    x = as_node(x, opname="max")
    axes = norm_axes("max", axis, x.ndim)
    if not axes:
        return x
    return make("reduce_max", (x,), {"axes": axes, "keepdims": bool(keepdims)})


def min(x, axis=None, keepdims: bool = False) -> Node:  # noqa: A001
    """Minimum over ``axis`` (None = all); NaN propagates, as numpy."""
    x = as_node(x, opname="min")
    axes = norm_axes("min", axis, x.ndim)
    if not axes:
        return x
    return make("reduce_min", (x,), {"axes": axes, "keepdims": bool(keepdims)})


def mean(x, axis=None, keepdims: bool = False) -> Node:
    """Arithmetic mean over ``axis``; integers average to float64, as numpy."""
    from .elementwise import cast
    x = as_node(x, opname="mean")
    axes = norm_axes("mean", axis, x.ndim)
    if not D.is_float(x.dtype):
        x = cast(x, D.float64)
    count = 1
    b = x.batch
    if b is not None and b.axis in axes:      # a symbolic axis: divide by the call's size
        from .symbolic import valid_extent
        for a in axes:
            count *= 1 if a == b.axis else x.shape[a]
        return sum(x, axes, keepdims) / (cast(valid_extent(b), x.dtype) * float(count))
    for a in axes:
        count *= x.shape[a]
    return sum(x, axes, keepdims) / float(count) if count else sum(x, axes, keepdims) * np.nan
