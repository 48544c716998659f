"""Movement ops: reshape, transpose, broadcast_to, slice (and its adjoint
``unslice``), concatenate. Each declares one index rule (``index_map``, see
``ops/index.py``): the output element at ``idx`` is an input element at
another index (or zero). The LLVM emitter folds it into the index arithmetic
of whatever loop reads it, fusion follows it symbolically and the GEMM reads
affine ones in place through strides."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from . import attrs as A
from .common import MAX_DIM, as_node, int_tuple, is_int, norm_axis, shape_of
from .elementwise import cast
from .index import Read, all_of, broadcast_index
from .registry import OpDef, make, register


def _prod(xs):
    n = 1
    for x in xs:
        n *= x
    return n


# ------------------------------------------------------------------- reshape

def _reshape_infer(inputs, attrs):
    (x,) = inputs
    shape = attrs["shape"]
    if _prod(shape) != x.size:
        raise ShapeError(f"reshape: cannot reshape {x.shape} ({x.size} elements) "
                         f"to {shape} ({_prod(shape)} elements)")
    return shape, x.dtype


def reshape_groups(src: tuple, dst: tuple) -> list:
    """Split two shapes of equal size into runs of axes with equal products:
    ``[(src_axes, dst_axes), ...]``. Within a run the index is linearized and
    re-split; a run of one axis on each side is passed through unchanged."""
    groups, i, j = [], 0, 0
    ns, nd = len(src), len(dst)
    while i < ns or j < nd:
        si, dj = [], []
        ps = pd = 1
        # take at least one axis from a side that has any left
        if i < ns:
            ps *= src[i]; si.append(i); i += 1
        if j < nd:
            pd *= dst[j]; dj.append(j); j += 1
        while ps != pd:
            if ps < pd and i < ns:
                ps *= src[i]; si.append(i); i += 1
            elif j < nd:
                pd *= dst[j]; dj.append(j); j += 1
            else:
                si.extend(range(i, ns)); i = ns
                break
        # absorb trailing size-1 axes (keeps the groups minimal but complete)
        groups.append((tuple(si), tuple(dj)))
    return groups


def _reshape_map(ix, n, idx):
    """Axes passed through keep their index; each run of merged or split
    axes is linearized and re-split."""
    x = n.inputs[0]
    src = [ix.const(0)] * x.ndim
    if x.size == 0:
        return [Read(0, src)]
    for s_axes, d_axes in reshape_groups(x.shape, n.shape):
        if len(s_axes) == 1 and len(d_axes) == 1:
            src[s_axes[0]] = idx[d_axes[0]]
            continue
        lin = ix.linearize([idx[d] for d in d_axes], [n.shape[d] for d in d_axes])
        parts = ix.delinearize(lin, [x.shape[s] for s in s_axes])
        for s, p in zip(s_axes, parts):
            src[s] = p
    return [Read(0, src)]


def resolve_shape(op: str, shape, size: int) -> tuple:
    """numpy's reshape target: ints, one of which may be -1 (inferred from
    ``size``); anything else a ShapeError naming ``op``."""
    shape = int_tuple(op, "shape", shape)
    if shape.count(-1) > 1:
        raise ShapeError(f"{op}: more than one -1 in {shape}")
    if -1 in shape:
        rest = _prod(s for s in shape if s != -1)
        if rest == 0 or size % rest:
            raise ShapeError(f"{op}: cannot reshape {size} elements to {shape}")
        shape = tuple(size // rest if s == -1 else s for s in shape)
    return A.shape(op, "shape", shape_of(op, shape))


register(OpDef("reshape", "index", _reshape_infer,
               lambda x, shape: x.reshape(shape),
               lambda n, g: [reshape(g, n.inputs[0].shape)],
               index_map=_reshape_map, nin=1, attrs=("shape",), view=True,
               check_attrs=lambda ins, a: {"shape": resolve_shape("reshape", a["shape"],
                                                                  ins[0].size)}))


def reshape(x, shape) -> Node:
    """numpy ``reshape``; one dimension may be -1."""
    x = as_node(x, opname="reshape")
    shape = resolve_shape("reshape", shape, x.size)
    if shape == x.shape:
        return x
    if x.op == "reshape":             # reshape of reshape is one reshape
        x = x.inputs[0]
        if shape == x.shape:
            return x
    return make("reshape", (x,), {"shape": shape})


# ----------------------------------------------------------------- transpose

def _transpose_infer(inputs, attrs):
    (x,) = inputs
    perm = attrs["axes"]
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"transpose: axes {perm} are not a permutation of {x.ndim} axes "
                         f"(input shape {x.shape})")
    return tuple(x.shape[p] for p in perm), x.dtype


def _transpose_map(ix, n, idx):
    perm = n.attrs["axes"]
    src = [None] * len(perm)
    for k, p in enumerate(perm):
        src[p] = idx[k]
    return [Read(0, src)]


def _perm(x: Node, axes) -> tuple:
    """``axes`` as a tuple of non-negative ints (None: reversed)."""
    if axes is None:
        return tuple(reversed(range(x.ndim)))
    return tuple(norm_axis("transpose", a, x.ndim) for a in int_tuple("transpose", "axes", axes))


register(OpDef("transpose", "index", _transpose_infer,
               lambda x, axes: np.transpose(x, axes),
               lambda n, g: [transpose(g, tuple(int(i) for i in np.argsort(n.attrs["axes"])))],
               index_map=_transpose_map, nin=1, attrs=("axes",), view=True,
               check_attrs=lambda ins, a: {"axes": _perm(ins[0], a["axes"])}))


def transpose(x, axes=None) -> Node:
    """numpy ``transpose``: reverse the axes, or permute them by ``axes``."""
    x = as_node(x, opname="transpose")
    axes = _perm(x, axes)
    if axes == tuple(range(x.ndim)):
        return x
    return make("transpose", (x,), {"axes": axes})


def swapaxes(x, a: int = -1, b: int = -2) -> Node:
    x = as_node(x, opname="swapaxes")
    a, b = norm_axis("swapaxes", a, x.ndim), norm_axis("swapaxes", b, x.ndim)
    perm = list(range(x.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


# -------------------------------------------------------------- broadcast_to

def _broadcast_infer(inputs, attrs):
    (x,) = inputs
    shape = attrs["shape"]
    ok = len(shape) >= x.ndim and all(
        s == d or s == 1 for s, d in zip(x.shape, shape[len(shape) - x.ndim:]))
    if not ok:
        raise ShapeError(f"broadcast_to: cannot broadcast {x.shape} to {shape}")
    return shape, x.dtype


def _broadcast_map(ix, n, idx):
    return [Read(0, broadcast_index(idx, n.shape, n.inputs[0].shape, ix))]


def unbroadcast(g: Node, shape: tuple) -> Node:
    """Sum ``g`` down to ``shape`` (the adjoint of broadcasting to g's shape).
    The result keeps g's dtype (integers wrap, bools are or-ed), whether or
    not anything is summed."""
    g = as_node(g, opname="unbroadcast")
    shape = shape_of("unbroadcast", shape)
    if len(shape) > g.ndim or any(s != d and s != 1 for s, d in zip(shape[::-1], g.shape[::-1])):
        raise ShapeError(f"unbroadcast: {g.shape} is not a broadcast of shape {shape}")
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    # built by name, as reduce.sum builds it (bool and int32 sum in int64):
    # reduce.py's VJPs use this module's ops, so it cannot import reduce.py
    x = cast(g, D.int64) if D.is_bool(g.dtype) or g.dtype == D.int32 else g
    s = make("reduce_sum", (x,), {"axes": axes, "keepdims": True})
    return cast(reshape(s, shape), g.dtype)


register(OpDef("broadcast_to", "index", _broadcast_infer,
               lambda x, shape: np.broadcast_to(x, shape).copy(),
               lambda n, g: [unbroadcast(g, n.inputs[0].shape)],
               index_map=_broadcast_map, nin=1, attrs=("shape",), view=True,
               foldable=False,      # folding would materialize the expansion
               check_attrs=lambda ins, a: {"shape": A.shape("broadcast_to", "shape", a["shape"])}))


def broadcast_to(x, shape) -> Node:
    x = as_node(x, opname="broadcast_to")
    shape = shape_of("broadcast_to", shape)
    if shape == x.shape:
        return x
    return make("broadcast_to", (x,), {"shape": shape})


# ---------------------------------------------------------- slice / unslice

def _slice_out_shape(starts, stops, steps):
    return tuple(len(range(a, b, c)) for a, b, c in zip(starts, stops, steps))


def _slice_infer(inputs, attrs):
    (x,) = inputs
    return _slice_out_shape(attrs["starts"], attrs["stops"], attrs["steps"]), x.dtype


def _slice_map(ix, n, idx):
    return [Read(0, [ix.add(ix.const(a), ix.mul(i, c))
                     for i, a, c in zip(idx, n.attrs["starts"], n.attrs["steps"])])]


def _np_slices(starts, stops, steps) -> tuple:
    """numpy slices selecting ``range(start, stop, step)`` on each axis, from
    the normalized ``slice.indices`` triples (where -1 means "before index
    0", not "the last element": an empty range stays empty)."""
    out = []
    for a, b, c in zip(starts, stops, steps):
        if len(range(a, b, c)) == 0:
            out.append(slice(0, 0))
        else:
            out.append(slice(a, b if b >= 0 else None, c))
    return tuple(out)


def _slice_ref(x, starts, stops, steps):
    return x[_np_slices(starts, stops, steps)].copy()


def _slice_vjp(n, g):
    a = n.attrs
    return [make("unslice", (g,), {"shape": n.inputs[0].shape, "starts": a["starts"],
                                   "stops": a["stops"], "steps": a["steps"]})]


def check_slice(op: str, shape: tuple, attrs: dict) -> dict:
    """``starts``/``stops``/``steps`` of a slice of ``shape``: one int each per
    axis, a non-zero step, and every selected index inside its axis (the
    normalized ``slice.indices`` form ``getitem`` builds). Without this check
    a slice built by ``gc.make`` read outside its input's buffer."""
    n = len(shape)
    starts = A.ints(op, "starts", attrs["starts"], n)
    stops = A.ints(op, "stops", attrs["stops"], n)
    steps = A.ints(op, "steps", attrs["steps"], n)
    for d, (a, b, c, size) in enumerate(zip(starts, stops, steps, shape)):
        where = f"axis {d} (size {size}) of shape {shape}"
        if c == 0 or abs(c) > MAX_DIM:
            raise ShapeError(f"{op}: attribute steps={A.show(steps)}: step {c} on {where} "
                             f"must be non-zero and at most {MAX_DIM} in size")
        for what, v, vs in (("starts", a, starts), ("stops", b, stops)):
            if not -1 <= v <= size:
                raise ShapeError(f"{op}: attribute {what}={A.show(vs)}: {v} is "
                                 f"outside [-1, {size}] on {where}")
        r = range(a, b, c)
        if len(r) and not (0 <= r[0] < size and 0 <= r[-1] < size):
            raise ShapeError(f"{op}: slice {a}:{b}:{c} selects indices outside {where}")
    return {"starts": starts, "stops": stops, "steps": steps}


register(OpDef("slice", "index", _slice_infer, _slice_ref, _slice_vjp, index_map=_slice_map,
               nin=1, attrs=("starts", "stops", "steps"), view=True,
               check_attrs=lambda ins, a: check_slice("slice", ins[0].shape, a)))


def _unslice_infer(inputs, attrs):
    (g,) = inputs
    a = attrs
    want = _slice_out_shape(a["starts"], a["stops"], a["steps"])
    if g.shape != want:
        raise ShapeError(f"unslice: input shape {g.shape} does not match the slice {want}")
    return a["shape"], g.dtype


def _unslice_ref(g, shape, starts, stops, steps):
    out = np.zeros(shape, g.dtype)
    out[_np_slices(starts, stops, steps)] = g
    return out


def _unslice_map(ix, n, idx):
    """Element ``i`` of an axis was selected iff ``t = (i - start) * sign(step)``
    is ``q * |step|`` with ``0 <= q < m``; then it is the input's ``q``. On an
    axis whose every element was selected (``m`` = its size) that is ``t``."""
    g = n.inputs[0]
    if g.size == 0:
        return []
    conds, src = [], []
    for i, a, c, m, size in zip(idx, n.attrs["starts"], n.attrs["steps"], g.shape, n.shape):
        t = ix.sub(i, a) if c > 0 else ix.sub(a, i)
        if m == size:
            src.append(t)
            continue
        q = ix.floordiv(t, abs(c))
        ok = ix.and_(ix.ge(t, 0), ix.lt(q, m))
        if abs(c) != 1:
            ok = ix.and_(ok, ix.eq(ix.mod(t, abs(c)), 0))
        conds.append(ok)
        src.append(ix.clamp(q, 0, m - 1))
    return [Read(0, src, all_of(ix, conds))]


def _unslice_attrs(inputs, attrs):
    shape = A.shape("unslice", "shape", attrs["shape"], inputs[0].ndim)
    return {"shape": shape, **check_slice("unslice", shape, attrs)}


register(OpDef("unslice", "index", _unslice_infer, _unslice_ref,
               lambda n, g: [make("slice", (g,), {k: n.attrs[k] for k in ("starts", "stops", "steps")})],
               index_map=_unslice_map, doc="zeros of the input's source shape with the slice filled in",
               nin=1, attrs=("shape", "starts", "stops", "steps"), check_attrs=_unslice_attrs))


def getitem(x, key) -> Node:
    """Basic numpy indexing: ints, slices (any step), ``None`` and ``...``."""
    x = as_node(x, opname="index")
    if not isinstance(key, tuple):
        key = (key,)
    for k in key:
        if not (k is None or k is Ellipsis or isinstance(k, slice) or is_int(k)):
            raise ShapeError(f"index: only ints, slices, None and ... are supported, got "
                             f"{type(k).__name__} (index {key!r} into shape {x.shape})")
        if isinstance(k, slice) and not all(v is None or is_int(v) for v in (k.start, k.stop, k.step)):
            raise ShapeError(f"index: slice bounds must be ints or None, got {k!r} "
                             f"(index {key!r} into shape {x.shape})")
    if sum(k is Ellipsis for k in key) > 1:
        raise ShapeError(f"index: more than one ... in {key!r}")
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if n_real > x.ndim:
        raise ShapeError(f"index: too many indices ({n_real}) for shape {x.shape}")
    if Ellipsis in key:
        e = key.index(Ellipsis)
        key = key[:e] + (slice(None),) * (x.ndim - n_real) + key[e + 1:]
    else:
        key = key + (slice(None),) * (x.ndim - n_real)
    starts, stops, steps, final = [], [], [], []
    d = 0
    for k in key:
        if k is None:
            final.append(1)
            continue
        size = x.shape[d]
        if isinstance(k, slice):
            if k.step == 0:
                raise ShapeError(f"index: slice step cannot be zero (shape {x.shape})")
            a, b, c = k.indices(size)
            starts.append(a); stops.append(b); steps.append(c)
            final.append(len(range(a, b, c)))
        else:
            i = int(k)
            if not -size <= i < size:
                raise ShapeError(f"index: index {i} is out of bounds for axis {d} "
                                 f"with size {size} (shape {x.shape})")
            i %= size
            starts.append(i); stops.append(i + 1); steps.append(1)
        d += 1
    full = all(a == 0 and c == 1 and b == s for a, b, c, s in zip(starts, stops, steps, x.shape))
    y = x if full else make("slice", (x,), {"starts": tuple(starts), "stops": tuple(stops),
                                            "steps": tuple(steps)})
    return reshape(y, tuple(final))


# --------------------------------------------------------------- concatenate

def _concat_infer(inputs, attrs):
    ax = attrs["axis"]
    first = inputs[0]
    for t in inputs:
        if t.dtype != first.dtype:
            raise ShapeError(f"concatenate: dtypes differ ({first.dtype}, {t.dtype})")
        if t.ndim != first.ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, first.shape))
                                        if k != ax):
            shown = ", ".join(str(i.shape) for i in inputs)
            raise ShapeError(f"concatenate: shapes {shown} differ outside axis {ax}")
    shape = list(first.shape)
    shape[ax] = sum(t.shape[ax] for t in inputs)
    return tuple(shape), first.dtype


def _concat_map(ix, n, idx):
    """The last input whose offset along the axis is at most the index;
    empty inputs are never read."""
    ax = n.attrs["axis"]
    reads, off = [], 0
    for k, t in enumerate(n.inputs):
        m = t.shape[ax]
        if m == 0:
            continue
        local = ix.sub(idx[ax], off)
        src = list(idx)
        src[ax] = ix.clamp(local, 0, m - 1)
        reads.append(Read(k, src, ix.ge(local, 0) if reads else None))
        off += m
    return reads[::-1]


def _concat_vjp(n, g):
    ax = n.attrs["axis"]
    out, off = [], 0
    for t in n.inputs:
        key = [slice(None)] * n.ndim
        key[ax] = slice(off, off + t.shape[ax])
        out.append(getitem(g, tuple(key)))
        off += t.shape[ax]
    return out


def _concat_axis(inputs, attrs):
    if inputs[0].ndim == 0:
        raise ShapeError("concatenate: zero-dimensional inputs cannot be concatenated")
    return {"axis": A.axis("concatenate", "axis", attrs["axis"], inputs[0].ndim)}


register(OpDef("concatenate", "index", _concat_infer,
               lambda *xs, axis: np.concatenate(xs, axis=axis), _concat_vjp,
               index_map=_concat_map, nin=(1, None), attrs=("axis",), check_attrs=_concat_axis,
               view=True))


def concatenate(xs, axis: int = 0) -> Node:
    from .elementwise import promote
    if isinstance(xs, Node) or not isinstance(xs, (list, tuple)):
        raise TypeError(f"concatenate: expects a list or tuple of values, got {type(xs).__name__}")
    xs = list(xs)
    if not xs:
        raise ShapeError("concatenate: needs at least one input")
    xs = promote("concatenate", *xs)
    if xs[0].ndim == 0:
        raise ShapeError("concatenate: zero-dimensional inputs cannot be concatenated")
    ax = norm_axis("concatenate", axis, xs[0].ndim)
    if len(xs) == 1:
        return xs[0]
    return make("concatenate", tuple(xs), {"axis": ax})


def expand_dims(x, axis: int) -> Node:
    x = as_node(x, opname="expand_dims")
    ax = norm_axis("expand_dims", axis, x.ndim + 1)
    return reshape(x, x.shape[:ax] + (1,) + x.shape[ax:])


def squeeze(x, axis=None) -> Node:
    x = as_node(x, opname="squeeze")
    if axis is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    from .common import norm_axes
    axes = norm_axes("squeeze", axis, x.ndim)
    for a in axes:
        if x.shape[a] != 1:
            raise ShapeError(f"squeeze: axis {a} of shape {x.shape} has size {x.shape[a]}, not 1")
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in axes))
