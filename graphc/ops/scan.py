"""Scans and products (issue 14): the primitive ``scan`` (a first-order
linear recurrence along one axis), ``cumsum`` built on it, and ``prod`` (the
reduction ``reduce_prod``).

``scan(a, b, axis, reverse)`` computes ``h[j] = a[j] * h[j-1] + b[j]`` along
``axis`` with ``h[-1] = 0``, that is ``h[0] = b[0]`` (so ``a[0]`` is unused and a
-0.0 stays -0.0, as in numpy's cumsum), from the last element backwards when
``reverse``; ``a`` and ``b`` broadcast to the output. It is a ``"kernel"`` op:
one pass over the axis, the other axes innermost (contiguous, vectorizable),
so it costs O(n) time and no memory beyond its output for any length. Its
adjoint is a scan too, in the other direction, so gradients of any order stay
linear:

* ``λ[j] = g[j] + a[j+1] * λ[j+1]``: ``scan(a shifted by one, g, not reverse)``;
* ``d/db = λ``, ``d/da[j] = λ[j] * h[j-1]``.

``cumsum(x)`` is ``scan(1, x)`` (the 0-d ``1`` is an immediate: nothing is
materialized) and its gradient is a reverse cumsum. ``prod``'s gradient is
the product of the *other* elements, ``L[j] * R[j]`` with ``L``/``R`` the
exclusive cumulative products from either end (two scans), never
``prod / x``: it is exact where ``x`` has zeros (one zero: only that element
gets a gradient; two: none does) and cannot overflow where the product does.
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from . import attrs as A
from .common import as_node, broadcast_shapes, constant, norm_axes, norm_axis
from .registry import OpDef, make, register

# ----------------------------------------------------------------- the primitive


def _scan_infer(inputs, attrs):
    a, b = inputs
    if a.dtype != b.dtype:
        raise DTypeError(f"scan: operand dtypes differ: {a.dtype}, {b.dtype}")
    if D.is_bool(a.dtype):
        raise DTypeError("scan: bool operands; cast them to a number first")
    shape = broadcast_shapes("scan", a.shape, b.shape)
    if not 0 <= attrs["axis"] < len(shape):
        raise ShapeError(f"scan: axis {attrs['axis']} is out of range for shape {shape}")
    return shape, b.dtype


def _scan_attrs(inputs, attrs):
    ndim = len(broadcast_shapes("scan", inputs[0].shape, inputs[1].shape))
    if ndim == 0:
        raise ShapeError("scan: needs at least one axis")
    return {"axis": A.axis("scan", "axis", attrs["axis"], ndim),
            "reverse": A.boolean("scan", "reverse", attrs["reverse"])}


def _scan_ref(a, b, axis, reverse):
    shape = np.broadcast_shapes(a.shape, b.shape)
    a, b = np.broadcast_to(a, shape), np.broadcast_to(b, shape)
    if reverse:
        a, b = np.flip(a, axis), np.flip(b, axis)
    if np.all(a == 1):                      # a cumsum (numpy's sums are sequential too)
        h = np.cumsum(b, axis=axis, dtype=b.dtype)
    else:
        a, b = np.moveaxis(a, axis, 0), np.moveaxis(b, axis, 0)
        h = np.empty(b.shape, b.dtype)
        for j in range(b.shape[0]):
            h[j] = a[j] * h[j - 1] + b[j] if j else b[0]
        h = np.moveaxis(h, 0, axis)
    return np.flip(h, axis) if reverse else h


def _scan_kernel(em, n):
    from ..backend.llvm.loops import for_nest, for_range
    from .index import broadcast_index
    a, b = n.inputs
    ax, rev, shape = n.attrs["axis"], n.attrs["reverse"], n.shape
    if n.size == 0:
        return
    s, ix, m = em.s, em.ix, shape[ax]
    with for_nest(em.b, shape[:ax], name="so") as outer:
        with for_range(em.b, m, name="sj") as j:
            p = ix.sub(m - 1, j) if rev else j
            q = ix.clamp(ix.add(p, 1), 0, m - 1) if rev else ix.clamp(ix.sub(p, 1), 0, m - 1)
            first = ix.as_bool(ix.eq(j, 0))
            with for_nest(em.b, shape[ax + 1:], name="si") as inner:
                idx, pidx = list(outer) + [p] + list(inner), list(outer) + [q] + list(inner)
                prev = em.load(n, pidx)          # (q is in bounds; unused at j = 0)
                av = em.eval(a, broadcast_index(idx, shape, a.shape, ix))
                bv = em.eval(b, broadcast_index(idx, shape, b.shape, ix))
                # h[0] = b[0] itself: numpy's cumsum([-0.0]) is -0.0, not 0 + -0.0
                em.store(n, idx, s.select(first, bv, av * prev + bv))


def _along(x: Node, ax_out: int, out_ndim: int):
    """The axis of ``x`` (broadcast to ``out_ndim`` dims) that is ``ax_out``, or
    None where ``x`` is constant along it (missing or of length 1)."""
    k = ax_out - (out_ndim - x.ndim)
    return k if k >= 0 and x.shape[k] != 1 else None


def shift(x: Node, ax: int, by: int, fill) -> Node:
    """``x`` moved ``by`` = +1 (towards higher indices) or -1 along axis ``ax``,
    the vacated element set to ``fill``."""
    from .movement import broadcast_to, concatenate
    m = x.shape[ax]
    if m == 0:
        return x
    pre = (slice(None),) * ax
    edge = broadcast_to(constant(fill, x.dtype), x.shape[:ax] + (1,) + x.shape[ax + 1:])
    if by > 0:
        return concatenate([edge, x[pre + (slice(0, m - 1),)]], ax)
    return concatenate([x[pre + (slice(1, m),)], edge], ax)


def _scan_vjp(n, g):
    a, b = n.inputs
    ax, rev = n.attrs["axis"], n.attrs["reverse"]
    if not D.is_float(n.dtype):
        return [None, None]
    # the adjoint runs the other way; its coefficients are a's neighbours
    k = _along(a, ax, n.ndim)
    a_next = a if k is None else shift(a, k, 1 if rev else -1, 0)
    lam = scan(a_next, g, ax, not rev)
    h_prev = shift(n, ax, -1 if rev else 1, 0)
    return [lam * h_prev, lam]


register(OpDef("scan", "kernel", _scan_infer, _scan_ref, _scan_vjp, kernel=_scan_kernel,
               doc="h[j] = a[j] * h[j-1] + b[j] along axis (h[0] = b[0]; from the end if "
                   "reverse): cumsum, cumulative products; one linear pass",
               nin=2, attrs=("axis", "reverse"), check_attrs=_scan_attrs))


def scan(a, b, axis: int, reverse: bool = False) -> Node:
    """The linear recurrence ``h[j] = a[j] * h[j-1] + b[j]`` along ``axis``
    (``h[0] = b[0]``; ``reverse``: ``h[j] = a[j] * h[j+1] + b[j]`` from the last
    element). ``a`` and ``b`` broadcast to the result."""
    from .elementwise import promote
    a, b = promote("scan", a, b)
    ndim = len(broadcast_shapes("scan", a.shape, b.shape))
    if ndim == 0:
        raise ShapeError("scan: needs at least one axis")
    ax = norm_axis("scan", axis, ndim)
    return make("scan", (a, b), {"axis": ax, "reverse": A.boolean("scan", "reverse", reverse)})


# --------------------------------------------------------------------- cumsum

def _flag(name, v) -> bool:
    """A bool, or ONNX's int 0 / 1."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v in (0, 1):
        return bool(v)
    return A.boolean("cumsum", name, v)


def cumsum(x, axis=None, exclusive: bool = False, reverse: bool = False, dtype=None) -> Node:
    """Cumulative sum along ``axis`` (None: of the flattened array), ONNX
    ``CumSum``'s options: ``exclusive`` leaves each element out of its own sum
    (the first is 0), ``reverse`` sums from the end (each a bool, or ONNX's
    int 0 or 1). dtypes as numpy's
    ``cumsum``: bool and int32 sum to int64 unless ``dtype`` says otherwise."""
    from .elementwise import cast
    from .movement import reshape
    x = as_node(x, opname="cumsum")
    exclusive, reverse = _flag("exclusive", exclusive), _flag("reverse", reverse)
    if dtype is not None:
        x = cast(x, A.dtype("cumsum", "dtype", dtype))
        if D.is_bool(x.dtype):
            raise DTypeError("cumsum: dtype bool is not a sum's dtype")
    elif D.is_bool(x.dtype) or x.dtype == D.int32:
        x = cast(x, D.int64)
    if axis is None:
        x, ax = reshape(x, (-1,)), 0
    else:
        if x.ndim == 0:
            raise ShapeError(f"cumsum: axis {axis!r} of a 0-d value (use axis=None)")
        ax = norm_axis("cumsum", axis, x.ndim)
    if exclusive:
        x = shift(x, ax, -1 if reverse else 1, 0)
    return make("scan", (constant(1, x.dtype), x), {"axis": ax, "reverse": reverse})


# ----------------------------------------------------------------------- prod

def _prod_infer(inputs, attrs):
    (x,) = inputs
    if D.is_bool(x.dtype):
        raise DTypeError("reduce_prod: bool input; cast it first")
    axes = attrs["axes"]
    shape = tuple(1 if i in axes else s for i, s in enumerate(x.shape)) if attrs["keepdims"] \
        else tuple(s for i, s in enumerate(x.shape) if i not in axes)
    return shape, x.dtype


def _prod_attrs(inputs, attrs):
    return {"axes": A.axes("reduce_prod", "axes", attrs["axes"], inputs[0].ndim),
            "keepdims": A.boolean("reduce_prod", "keepdims", attrs["keepdims"])}


def _others(x: Node, axes: tuple) -> Node:
    """For each element of ``x``, the product of the other elements of its
    slice over ``axes``: exclusive cumulative products from both ends of the
    reduced axes (flattened to one), multiplied; no division."""
    from .movement import reshape, transpose
    keep = [i for i in range(x.ndim) if i not in axes]
    perm = keep + list(axes)
    xt = transpose(x, perm) if perm != list(range(x.ndim)) else x
    m = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    flat = reshape(xt, tuple(x.shape[i] for i in keep) + (m,))
    last = flat.ndim - 1
    first_e = constant(np.eye(1, m, 0, dtype=x.dtype)[0])
    last_e = constant(np.eye(1, m, m - 1, dtype=x.dtype)[0]) if m else first_e
    left = scan(shift(flat, last, 1, 1), first_e, last)              # prod of x[:j]
    right = scan(shift(flat, last, -1, 1), last_e, last, True)      # prod of x[j+1:]
    o = reshape(left * right, xt.shape)
    inv = [perm.index(i) for i in range(x.ndim)]
    return transpose(o, inv) if perm != list(range(x.ndim)) else o


def _prod_vjp(n, g):
    from .movement import broadcast_to, reshape
    x = n.inputs[0]
    if not D.is_float(x.dtype):
        return [None]
    axes = n.attrs["axes"]
    keep = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
    return [broadcast_to(reshape(g, keep), x.shape) * _others(x, axes)]


register(OpDef("reduce_prod", "reduce", _prod_infer,
               lambda x, axes, keepdims: np.prod(x, axis=axes, keepdims=keepdims, dtype=x.dtype),
               _prod_vjp, reduce_init=lambda dt: 1, reduce_combine=lambda s, acc, x: acc * x,
               doc="product over axes; its gradient is the product of the other elements",
               nin=1, attrs=("axes", "keepdims"), check_attrs=_prod_attrs))


def prod(x, axis=None, keepdims: bool = False) -> Node:
    """Product over ``axis`` (None = all); bool and int32 multiply in int64, as
    numpy. The gradient is exact with zeros in ``x`` (see the module doc)."""
    from .elementwise import cast
    x = as_node(x, opname="prod")
    axes = norm_axes("prod", axis, x.ndim)
    keepdims = A.boolean("prod", "keepdims", keepdims)
    if D.is_bool(x.dtype) or x.dtype == D.int32:
        x = cast(x, D.int64)
    if not axes:
        return x
    return make("reduce_prod", (x,), {"axes": axes, "keepdims": keepdims})
