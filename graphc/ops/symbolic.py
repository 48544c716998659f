"""How a symbolic (bounded) dimension flows through ops: ``node.batch``.

A node carrying a symbolic dim (``ir/dim.py``) has the bound as its extent;
the first ``n * inner`` elements along ``batch.axis`` are a call's valid
rows, the rest padding. :func:`registry.make` calls :func:`prepare` before
building a node (ops that mix rows read the padding through a mask) and
:func:`rule` after (the output's :class:`Batch`, or a ShapeError when the op
cannot carry the dim: never a wrong answer). One rule per op family, in the
table :data:`_INDEX_RULES` for the view ops; an op without a rule refuses a
symbolic input.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir.dim import Batch, Dim
from ..ir.node import Node

SUPPORTED = ("elementwise ops, sum/max/min/mean over any axes, matmul, reshape keeping the "
             "symbolic axis a leading factor of one axis, transpose, broadcast_to, full slices, "
             "concatenate/pad along other axes, windows (convolution, pooling), one_hot")

def make(op, inputs, attrs=None):
    """registry.make (which imports this module; it binds itself here)."""
    return _MAKE[0](op, inputs, attrs)


_MAKE: list = [None]
_MASKS: dict = {}       # (dim id, inner, ndim, axis) -> the bool mask node (kept alive)
_MASK_IDS: set = set()


def size_node(dim: Dim) -> Node:
    """The int64 scalar parameter holding the size of the current call of ``dim``."""
    if dim._size is None:
        from .common import parameter
        p = parameter(np.int64(dim.max), name=f"{dim.name}_size", trainable=False)
        p.dim_of = dim
        dim._size = p
    return dim._size


def valid_extent(b: Batch) -> Node:
    """The valid extent of ``b``'s axis at this call, an int64 scalar node."""
    n = size_node(b.dim)
    if b.inner == 1:
        return n
    from .common import constant
    return make("mul", (n, constant(np.int64(b.inner))))


def mask(b: Batch, ndim: int) -> Node:
    """bool, 1 everywhere but ``b.axis`` (extent bound * inner): index < valid extent."""
    key = (b.dim.id, b.inner, ndim, b.axis)
    m = _MASKS.get(key)
    if m is None:
        from .common import constant
        shape = [1] * ndim
        shape[b.axis] = b.dim.max * b.inner
        iota = constant(np.arange(b.dim.max * b.inner, dtype=np.int64).reshape(shape))
        m = make("less", (iota, valid_extent(b)))
        _MASKS[key] = m
        _MASK_IDS.add(id(m))
    return m


def masked(x: Node, fill) -> Node:
    """``x`` with its padding replaced by ``fill`` (x.batch must be set)."""
    b = x.batch
    if b.fill is not None and _same(b.fill, fill):
        return x
    from .common import constant
    return make("where", (mask(b, x.ndim), x, constant(np.asarray(fill, x.dtype))))


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return bool(a.dtype == b.dtype and (a == b or (a != a and b != b)))


def carried(inputs) -> bool:
    for i in inputs:
        if i.batch is not None:
            return True
    return False


def prepare(d, inputs: tuple, attrs: dict) -> tuple:
    """The inputs ``d`` is built on: those whose padding it would mix into
    valid results are masked with the op's identity."""
    kind = d.kind.value
    if kind == "reduce":
        (x,) = inputs
        if x.batch is not None and x.batch.axis in attrs["axes"]:
            return (masked(x, np.asarray(d.reduce_init(x.dtype), x.dtype)),)
    elif kind == "matmul":
        a, b = inputs
        ka = a.batch is not None and a.batch.axis == a.ndim - 1      # contracted
        kb = b.batch is not None and b.batch.axis == b.ndim - 2
        # both contracted (a gradient x.T @ dy): zeros on one side suffice when
        # the other side's padding rows copy valid rows (finite where they are;
        # where they are not, the valid rows' products are not finite either)
        if ka and kb and a.batch.rep:
            ka = False
        elif ka and kb and b.batch.rep:
            kb = False
        if ka:
            a = masked(a, np.zeros((), a.dtype))
        if kb:
            b = masked(b, np.zeros((), b.dtype))
        return (a, b)
    return inputs


def _refuse(d, x: Node, i: int, why: str):
    raise ShapeError(f"{d.name}: input {i} (shape {x.shape}) carries {x.batch.describe()}; {why}. "
                     f"A symbolic dimension flows through {SUPPORTED}")


def _one(d, found):
    """The one Batch among ``found`` [(input index, node, Batch)], or an error."""
    first = None
    for i, x, b in found:
        if first is None:
            first = (i, x, b)
        elif b.dim is not first[2].dim:
            raise ShapeError(f"{d.name}: inputs {first[0]} and {i} carry different symbolic dims "
                             f"({first[2].describe()}; {b.describe()}): their sizes may differ "
                             f"at a call; build both inputs on the same gc.Dim object")
        elif b.axis != first[2].axis or b.inner != first[2].inner:
            raise ShapeError(f"{d.name}: inputs {first[0]} and {i} carry symbolic dims on "
                             f"different axes ({first[2].describe()}; {b.describe()}): one output "
                             f"axis can carry only one")
    return None if first is None else first[2]


def rule(d, inputs: tuple, attrs: dict, shape: tuple) -> Batch | None:
    """The output's Batch (``inputs`` carry at least one)."""
    kind = d.kind.value
    if kind == "elementwise":
        return _elementwise(d, inputs, shape)
    if kind == "reduce":
        (x,) = inputs
        b, axes = x.batch, attrs["axes"]
        if b.axis in axes:
            return None
        ax = b.axis if attrs["keepdims"] else b.axis - sum(1 for a in axes if a < b.axis)
        return Batch(b.dim, ax, b.inner, None, b.rep)
    if kind == "matmul":
        return _matmul(d, inputs, shape)
    r = _INDEX_RULES.get(d.name)
    for i, x in enumerate(inputs):
        if x.batch is not None and r is None:
            _refuse(d, x, i, "this op has no rule for a symbolic dimension")
    return r(d, inputs, attrs, shape)


def _elementwise(d, inputs, shape):
    nd = len(shape)
    found = []
    rep = True
    for i, x in enumerate(inputs):
        b = x.batch
        if b is None:
            continue
        ax = b.axis + nd - x.ndim
        if x.shape[b.axis] != shape[ax]:
            _refuse(d, x, i, f"it would be broadcast along the symbolic axis to {shape[ax]}")
        found.append((i, x, Batch(b.dim, ax, b.inner)))
        rep = rep and b.rep
    out = _one(d, found)
    for x in inputs:            # a value that varies along the axis without carrying it
        k = out.axis - (nd - x.ndim)
        if x.batch is None and k >= 0 and x.shape[k] != 1:
            rep = False
    out = out._replace(rep=rep)
    fill = None
    if d.name == "where" and id(inputs[0]) in _MASK_IDS and inputs[2].op == "constant" \
            and inputs[2].ndim == 0 and inputs[1].batch is not None \
            and inputs[0].shape[inputs[0].ndim - nd + out.axis] == shape[out.axis]:
        fill = inputs[2].value[()]
        out = out._replace(rep=False)
    elif d.name == "cast" and inputs[0].batch.fill is not None and inputs[0].batch.fill == 0:
        fill = np.zeros((), inputs[0].dtype)
    return out._replace(fill=fill)


def _matmul(d, inputs, shape):
    a, b = inputs
    nd = len(shape)
    found = []
    if a.batch is not None and a.batch.axis != a.ndim - 1:        # not contracted
        found.append((0, a, Batch(a.batch.dim, a.batch.axis + nd - a.ndim, a.batch.inner)))
    if b.batch is not None and b.batch.axis != b.ndim - 2:
        found.append((1, b, Batch(b.batch.dim, b.batch.axis + nd - b.ndim, b.batch.inner)))
    out = _one(d, found)
    if out is None:
        return None
    # rows of a (or columns of b) times a value that does not carry the dim
    rep = len(found) == 1 and inputs[1 - found[0][0]].batch is None and (
        (found[0][0] == 0 and a.batch.axis == a.ndim - 2) or
        (found[0][0] == 1 and b.batch.axis == b.ndim - 1)) and found[0][1].batch.rep
    return out._replace(rep=rep)


def _same_axis(d, inputs, attrs, shape):
    x = inputs[0]
    return Batch(x.batch.dim, x.batch.axis, x.batch.inner, None, x.batch.rep)


def _transpose(d, inputs, attrs, shape):
    (x,) = inputs
    b = x.batch
    return Batch(b.dim, list(attrs["axes"]).index(b.axis), b.inner, b.fill, b.rep)


def _broadcast(d, inputs, attrs, shape):
    (x,) = inputs
    b = x.batch
    ax = b.axis + len(shape) - x.ndim
    if shape[ax] != x.shape[b.axis]:
        _refuse(d, x, 0, f"it would be broadcast along the symbolic axis to {shape[ax]}")
    return Batch(b.dim, ax, b.inner, b.fill, b.rep)


def _reshape(d, inputs, attrs, shape):
    """The symbolic axis survives a reshape when its rows stay one leading
    block of one output axis: the same product of axes before it, and the
    axes after it in the output dividing each row's elements."""
    (x,) = inputs
    b = x.batch
    before = int(np.prod(x.shape[:b.axis], dtype=np.int64))
    per_row = b.inner * int(np.prod(x.shape[b.axis + 1:], dtype=np.int64))   # elements per row
    for ax in range(len(shape)):
        if int(np.prod(shape[:ax], dtype=np.int64)) != before:
            continue
        after = int(np.prod(shape[ax + 1:], dtype=np.int64))
        if after and per_row % after == 0 and shape[ax] * after == b.dim.max * per_row \
                and (shape[ax] != 1 or b.dim.max == 1):
            return Batch(b.dim, ax, per_row // after, b.fill, b.rep)
    _refuse(d, x, 0, f"reshape to {tuple(shape)} does not keep the symbolic axis as the leading "
                     f"factor of one axis (a row of {per_row} element(s) after {before} "
                     f"leading element(s) must divide into whole output rows)")


def _full_slice(d, inputs, attrs, shape):
    (x,) = inputs
    b = x.batch
    a = b.axis
    extent = x.shape[a]
    ok = attrs["starts"][a] == 0 and attrs["steps"][a] == 1 and attrs["stops"][a] == extent
    if "shape" in attrs:                      # unslice: the embedding's extent
        ok = ok and attrs["shape"][a] == extent
    if not ok:
        _refuse(d, x, 0, "it slices or pads the symbolic axis, whose valid extent is known only "
                         "at the call")
    return Batch(b.dim, a, b.inner, None, b.rep)


def _concatenate(d, inputs, attrs, shape):
    found = []
    for i, x in enumerate(inputs):
        if x.batch is None:
            continue
        if x.batch.axis == attrs["axis"]:
            _refuse(d, x, i, "it concatenates along the symbolic axis")
        found.append((i, x, Batch(x.batch.dim, x.batch.axis, x.batch.inner)))
    return _one(d, found)


def _windows(d, inputs, attrs, shape):
    (x,) = inputs
    if x.batch.axis >= x.ndim - len(attrs["kernel"]):
        _refuse(d, x, 0, "its windows slide along the symbolic axis")
    return _same_axis(d, inputs, attrs, shape)


_INDEX_RULES = {
    "reshape": _reshape, "transpose": _transpose, "broadcast_to": _broadcast,
    "slice": _full_slice, "unslice": _full_slice, "concatenate": _concatenate,
    "windows": _windows, "one_hot": _same_axis,
}
