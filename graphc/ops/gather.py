"""Gather and its adjoint: ``take`` (rows of a table picked by an integer
array, e.g. an embedding lookup) and ``scatter_add`` (sum values into the
rows named by an integer array, e.g. the embedding's gradient).

``take`` is an index map, so it folds into whatever loop reads it. An index
outside ``[0, n)`` is a run-time error (``RuntimeCheckError``); the index used
for the load is clamped, so no out-of-bounds read happens before the error is
reported. ``scatter_add`` cannot be written as an index map (several source
elements land on one output element), so it is a ``"kernel"`` op: it zeroes
its output, then adds every update into its row, in order.
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, RuntimeCheckError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from . import attrs as A
from .common import MAX_DIM, as_node, norm_axis
from .registry import OpDef, make, register


def _check_indices(op: str, ind: np.ndarray, size: int) -> None:
    if ind.size and (ind.min() < 0 or ind.max() >= size):
        bad = ind[(ind < 0) | (ind >= size)].flat[0]
        raise RuntimeCheckError(f"{op}: index {bad} is out of range [0, {size})")


def _index_dtype(op: str, ind: Node) -> None:
    if not D.is_int(ind.dtype):
        raise DTypeError(f"{op}: indices must be integers, got {ind.dtype}")


def _range_check(ctx, i, size: int, op: str):
    """Report indices outside [0, size) and return a clamped i64 index."""
    s, ix = ctx.s, ctx.ix
    i = s.cast(i, D.int64)
    bad = s.or_(s.lt(i, s.const(0, D.int64)), s.ge(i, s.const(size, D.int64)))
    s.error_if(bad, f"{op}: an index is out of range [0, {size})")
    return bad, ix.clamp(i.v, 0, size - 1)


# ---------------------------------------------------------------------- take

def _take_infer(inputs, attrs):
    x, ind = inputs
    ax = attrs["axis"]
    _index_dtype("take", ind)
    if not 0 <= ax < x.ndim:
        raise ShapeError(f"take: axis {ax} is out of range for shape {x.shape}")
    shape = x.shape[:ax] + ind.shape + x.shape[ax + 1:]
    if x.shape[ax] == 0 and ind.size:
        raise ShapeError(f"take: cannot take indices {ind.shape} from an empty axis {ax} "
                         f"of shape {x.shape}")
    return shape, x.dtype


def _take_ref(x, ind, axis):
    _check_indices("take", ind, x.shape[axis])
    return np.take(x, ind.astype(np.int64), axis=axis)


def _take_lower(ctx, n, idx):
    x, ind = n.inputs
    ax, k = n.attrs["axis"], ind.ndim
    _, safe = _range_check(ctx, ctx.eval(ind, idx[ax:ax + k]), x.shape[ax], "take")
    return ctx.eval(x, list(idx[:ax]) + [safe] + list(idx[ax + k:]))


def _take_vjp(n, g):
    x, ind = n.inputs
    return [scatter_add(g, ind, x.shape[n.attrs["axis"]], n.attrs["axis"]), None]


def _take_attrs(inputs, attrs):
    if inputs[0].ndim == 0:
        raise ShapeError("take: cannot index a 0-d value")
    return {"axis": A.axis("take", "axis", attrs["axis"], inputs[0].ndim)}


register(OpDef("take", "index", _take_infer, _take_ref, _take_vjp, lower_at=_take_lower,
               doc="x[..., indices, ...] along one axis; an index outside [0, n) is an error",
               nin=2, attrs=("axis",), check_attrs=_take_attrs))


# --------------------------------------------------------------- scatter_add

def _scatter_infer(inputs, attrs):
    upd, ind = inputs
    ax, size = attrs["axis"], attrs["size"]
    _index_dtype("scatter_add", ind)
    if D.is_bool(upd.dtype):
        raise DTypeError("scatter_add: bool updates; cast them to a number first")
    k = ind.ndim
    if upd.shape[ax:ax + k] != ind.shape or ax + k > upd.ndim:
        raise ShapeError(f"scatter_add: updates {upd.shape} need the indices' shape {ind.shape} "
                         f"at axis {ax}")
    if size == 0 and ind.size and upd.size:
        raise ShapeError(f"scatter_add: cannot add {ind.shape} indices into an empty axis")
    return upd.shape[:ax] + (size,) + upd.shape[ax + k:], upd.dtype


def _scatter_ref(upd, ind, size, axis):
    _check_indices("scatter_add", ind, size)
    out = np.zeros(upd.shape[:axis] + (size,) + upd.shape[axis + ind.ndim:], upd.dtype)
    np.add.at(out, (slice(None),) * axis + (ind.astype(np.int64),), upd)
    return out


def _scatter_kernel(em, n):
    from ..backend.llvm.loops import for_nest
    upd, ind = n.inputs
    ax, k, size = n.attrs["axis"], ind.ndim, n.attrs["size"]
    s = em.s
    zero = s.const(0, n.dtype)
    with for_nest(em.b, n.shape, name="z") as idx:
        em.store(n, idx, zero)
    if upd.size == 0:
        # nothing to add, but the indices are checked as numpy checks them
        if ind.size:
            with for_nest(em.b, ind.shape, name="c") as idx:
                _range_check(em, em.eval(ind, idx), size, "scatter_add")
        return
    with for_nest(em.b, upd.shape, name="u") as idx:
        bad, safe = _range_check(em, em.eval(ind, idx[ax:ax + k]), size, "scatter_add")
        dst = list(idx[:ax]) + [safe] + list(idx[ax + k:])
        v = s.select(bad, zero, em.eval(upd, idx))
        em.store(n, dst, em.load(n, dst) + v)


def _scatter_vjp(n, g):
    return [take(g, n.inputs[1], n.attrs["axis"]), None]


def _scatter_attrs(inputs, attrs):
    upd, ind = inputs
    size = A.integer("scatter_add", "size", attrs["size"], 0, MAX_DIM)
    out_ndim = upd.ndim - ind.ndim + 1
    if out_ndim < 1:
        raise ShapeError(f"scatter_add: updates {upd.shape} have fewer axes than the "
                         f"indices {ind.shape}")
    return {"axis": A.axis("scatter_add", "axis", attrs["axis"], out_ndim), "size": size}


register(OpDef("scatter_add", "kernel", _scatter_infer, _scatter_ref, _scatter_vjp,
               kernel=_scatter_kernel,
               doc="zeros with updates summed into the rows named by indices (take's adjoint)",
               nin=2, attrs=("axis", "size"), check_attrs=_scatter_attrs))


# ------------------------------------------------------------------ public

def take(x, indices, axis: int = 0) -> Node:
    """numpy ``take``: ``x`` indexed along ``axis`` by the integer array
    ``indices``; result shape ``x.shape[:axis] + indices.shape +
    x.shape[axis+1:]``. Indices must lie in ``[0, x.shape[axis])`` (checked
    when the graph runs; negative indices are errors, not wrapped)."""
    x, indices = as_node(x, opname="take"), as_node(indices, opname="take")
    if x.ndim == 0:
        raise ShapeError("take: cannot index a 0-d value")
    ax = norm_axis("take", axis, x.ndim)
    return make("take", (x, indices), {"axis": ax})


def scatter_add(updates, indices, size: int, axis: int = 0) -> Node:
    """The adjoint of :func:`take`: a zero array whose axis ``axis`` has
    length ``size``, with ``updates`` added at the rows named by ``indices``
    (repeated indices accumulate). ``updates.shape`` must be
    ``out.shape[:axis] + indices.shape + out.shape[axis+1:]``."""
    updates, indices = as_node(updates, opname="scatter_add"), as_node(indices, opname="scatter_add")
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 0:
        raise ShapeError(f"scatter_add: size must be a non-negative int, got {size!r}")
    out_ndim = updates.ndim - indices.ndim + 1
    if out_ndim < 1:
        raise ShapeError(f"scatter_add: updates {updates.shape} have fewer axes than the "
                         f"indices {indices.shape}")
    ax = norm_axis("scatter_add", axis, out_ndim)
    return make("scatter_add", (updates, indices), {"axis": ax, "size": int(size)})
