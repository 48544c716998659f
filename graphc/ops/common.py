"""Helpers shared by the op families: turning Python values into nodes,
numpy-style promotion and broadcasting, axis normalization."""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import DTypeError, ShapeError, user_source
from ..ir import dtypes as D
from ..ir import node as _node
from ..ir.arrays import to_array
from ..ir.dim import Batch, Dim, default_dim
from ..ir.node import Node


def constant(value, dtype=None, name: str | None = None) -> Node:
    """A constant node holding a copy of ``value``. Small constants are
    hash-consed by value, so equal constants are one node."""
    dt_arg = None if dtype is None else D.as_dtype(dtype, "constant")   # (a DTypeError of its own)
    a = to_array(value, "constant", DTypeError, dtype=dt_arg, copy=True, order="C")
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    if dtype is None and a.dtype not in D.SUPPORTED:
        raise DTypeError(f"constant: dtype {a.dtype} is not supported")
    dt = D.as_dtype(a.dtype)
    check_size("constant", a.shape, dt)
    a.setflags(write=False)
    key = None
    if a.size <= 64 and name is None:
        key = ("constant", (), (("bytes", a.tobytes()), ("dtype", dt.str), ("shape", a.shape)))
        found = _node.lookup(key)
        if found is not None:
            return found
    n = Node("constant", (), {}, a.shape, dt, name, user_source())
    n._value = a
    if key is not None:
        _node.remember(key, n)
    return n


def is_scalar(x) -> bool:
    return isinstance(x, (numbers.Number, np.generic)) and not isinstance(x, np.ndarray)


def as_node(x, dtype=None, opname: str | None = None) -> Node:
    """``x`` if it is a node, else a constant holding it. ``opname`` names
    the op in the error for anything else (None, strings, dicts...)."""
    if isinstance(x, Node):
        return x
    if is_scalar(x) or isinstance(x, (np.ndarray, list, tuple)):
        try:
            return constant(x, dtype)
        except DTypeError as e:
            if opname is None:
                raise
            raise DTypeError(f"{opname}: cannot use this {type(x).__name__} as an operand: {e}") from None
    where = f"{opname}: " if opname else ""
    raise TypeError(f"{where}cannot use a {type(x).__name__} as a graph value")


def broadcast_shapes(opname: str, *shapes) -> tuple:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        shown = ", ".join(str(tuple(s)) for s in shapes)
        raise ShapeError(f"{opname}: shapes {shown} do not broadcast") from None


def norm_axis(opname: str, axis: int, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ShapeError(f"{opname}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{opname}: axis {axis} is out of range for a {ndim}-d input")
    return int(axis) % ndim


def norm_axes(opname: str, axis, ndim: int) -> tuple:
    """``None`` -> all axes; int or tuple -> sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        axis = (axis,)
    if not isinstance(axis, (tuple, list)):
        raise ShapeError(f"{opname}: axis must be None, an int or a tuple of ints, got {axis!r}")
    out = tuple(norm_axis(opname, a, ndim) for a in axis)
    if len(set(out)) != len(out):
        raise ShapeError(f"{opname}: repeated axis in {tuple(axis)}")
    return tuple(sorted(out))


def is_int(v) -> bool:
    """A Python or numpy integer (not a bool)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def int_tuple(opname: str, what: str, values) -> tuple:
    """``values`` (an int or a sequence of ints) as a tuple of Python ints;
    anything else (floats, strings, None, bools) is a ShapeError naming the op."""
    if is_int(values):
        values = (values,)
    try:
        items = tuple(values)
    except TypeError:
        raise ShapeError(f"{opname}: {what} must be a tuple of ints, got {values!r}") from None
    if not all(is_int(v) for v in items):
        raise ShapeError(f"{opname}: {what} must be a tuple of ints, got {values!r}")
    return tuple(int(v) for v in items)


def shape_of(opname: str, shape) -> tuple:
    shape = int_tuple(opname, "shape", shape)
    if any(s < 0 for s in shape):
        raise ShapeError(f"{opname}: negative dimension in shape {shape}")
    return shape


MAX_BYTES = 1 << 46      # 64 TiB: any larger tensor is a mistake, not a workload
MAX_RANK = 32            # numpy's ufuncs and iterators take at most 32 dimensions
MAX_DIM = MAX_BYTES      # no dimension is longer (even of an empty tensor): indices stay i64


def check_size(opname: str, shape: tuple, dtype) -> None:
    """Refuse, when a node is built, a shape that no buffer or numpy reference
    can hold: more than MAX_RANK dimensions or more than MAX_BYTES bytes."""
    if len(shape) > MAX_RANK:
        raise ShapeError(f"{opname}: shape {tuple(shape)} has {len(shape)} dimensions, more "
                         f"than graphc allows ({MAX_RANK}, numpy's limit for its ufuncs)")
    n = 1
    for s in shape:
        n *= s
    if n * np.dtype(dtype).itemsize > MAX_BYTES:
        raise ShapeError(f"{opname}: shape {shape} of {np.dtype(dtype)} needs "
                         f"{n * np.dtype(dtype).itemsize} bytes, more than graphc allows "
                         f"({MAX_BYTES})")
    for s in shape:
        if s > MAX_DIM:
            raise ShapeError(f"{opname}: dimension {s} of shape {shape} is longer than graphc "
                             f"allows ({MAX_DIM}), even for an empty value")


def placeholder(shape, dtype="float32", name: str | None = None) -> Node:
    """An input of the graph, given when the compiled function is called.
    The leading extent may be symbolic: ``None`` or a :class:`graphc.Dim`
    (a call gives any size from 1 to its bound; docs/dynamic.md)."""
    dim = None
    if isinstance(shape, (tuple, list)):
        for k, s in enumerate(shape):
            if s is None or isinstance(s, Dim):
                if k != 0:
                    raise ShapeError(f"placeholder: only the leading axis may be symbolic, "
                                     f"got {s!r} on axis {k} of {tuple(shape)}")
                dim = default_dim() if s is None else s
        if dim is not None:
            shape = (dim.max,) + tuple(shape[1:])
    shape = shape_of("placeholder", shape)
    dt = D.as_dtype(dtype, "placeholder")
    check_size("placeholder", shape, dt)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"placeholder: name must be a str, got {type(name).__name__}")
    n = Node("placeholder", (), {}, shape, dt, name, user_source())
    if name is None:
        n.name = f"input_{n.id}"
    if dim is not None:
        n.batch = Batch(dim, 0, rep=True)      # the runtime pads with copies of the last row
    return n


def parameter(value, name: str | None = None, dtype=None, trainable: bool = True) -> Node:
    """A graph value that holds a numpy array (``.value``), read at each call.
    Assigning ``.value`` (same shape) changes what the next call sees."""
    dt_arg = None if dtype is None else D.as_dtype(dtype, "parameter")   # (a DTypeError of its own)
    a = to_array(value, "parameter", DTypeError, dtype=dt_arg, copy=True)
    dt = D.as_dtype(a.dtype, "parameter")
    check_size("parameter", a.shape, dt)
    n = Node("parameter", (), {}, a.shape, dt, name, user_source())
    if name is None:
        n.name = f"param_{n.id}"
    n._value = np.array(a, order="C")
    n.trainable = bool(trainable)
    return n
