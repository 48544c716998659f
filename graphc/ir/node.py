"""Immutable graph nodes.

A :class:`Node` is one value in a computation graph: a placeholder (an input
given at call time), a parameter (holds a numpy ``value`` read at each call),
a constant, or the result of an op applied to other nodes. Shape and dtype are
computed when the node is built (see ``ops/registry.py``), so errors surface at
the user's line. Op nodes are hash-consed: building the same op on the same
inputs with the same attributes twice returns the same node, which makes common
subexpression elimination nearly free.
"""
from __future__ import annotations

import itertools
import struct
import weakref

import numpy as np

from ..errors import DTypeError, ShapeError
from . import dtypes
from .arrays import convert_exactly, to_array

LEAF_OPS = ("placeholder", "parameter", "constant")
_ids = itertools.count()


def attr_key(v):
    """The structural key of an attribute value: equal keys mean the op
    computes the same thing. Python's ``==`` is too loose for this (``0.0 ==
    -0.0``, ``1 == 1.0 == True``, and NaN is unequal to itself), so every value
    is tagged with its type and floats are keyed by their bits: ``-0.0`` and
    ``0.0`` differ, NaNs with different payloads differ, and one NaN equals
    itself. Tuples and lists are keyed element by element. The one key
    function for hash-consing, CSE and the compile cache (which turns it into
    JSON with :func:`portable_key`)."""
    if v is None or isinstance(v, str):
        return (type(v).__name__, v)
    if isinstance(v, np.generic):       # before float: np.float64 is a float
        return ("numpy", v.dtype.str, v.tobytes().hex())
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, float):
        return ("float", struct.pack("<d", v).hex())
    if isinstance(v, int):
        return ("int", int(v))
    if isinstance(v, np.dtype):
        return ("dtype", v.str)
    if isinstance(v, (tuple, list)):
        return (type(v).__name__,) + tuple(attr_key(x) for x in v)
    if isinstance(v, np.ndarray):
        return ("ndarray", v.dtype.str, v.shape, v.tobytes().hex())
    if isinstance(v, slice):
        return ("slice", attr_key(v.start), attr_key(v.stop), attr_key(v.step))
    return ("object", f"{type(v).__module__}.{type(v).__qualname__}", v)


def portable_key(k):
    """``attr_key``'s result as JSON-able lists (an opaque object as its repr)."""
    if isinstance(k, tuple):
        if k and k[0] == "object":
            return ["object", k[1], repr(k[2])]
        return [portable_key(x) for x in k]
    return k


class Node:
    """One value in a graph. Never mutated after construction (a parameter's
    ``value`` is data, not structure)."""

    __slots__ = ("op", "inputs", "attrs", "shape", "dtype", "name", "source",
                 "id", "_value", "trainable", "batch", "dim_of", "__weakref__")

    def __init__(self, op: str, inputs: tuple, attrs: dict, shape: tuple,
                 dtype: np.dtype, name: str | None, source: str):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = attrs
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.id = next(_ids)
        self.name = name if name is not None else f"{op}_{self.id}"
        self.source = source
        self._value = None
        self.trainable = False
        self.batch = None        # ir/dim.py Batch: the axis carrying a symbolic dim, or None
        self.dim_of = None       # the Dim whose call size this parameter holds, or None

    # -- basic properties ---------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def is_leaf(self) -> bool:
        return self.op in LEAF_OPS

    @property
    def value(self) -> np.ndarray:
        """The numpy value of a parameter or constant."""
        if self.op not in ("parameter", "constant"):
            raise AttributeError(f"{self.op} node {self.name!r} has no value")
        return self._value

    @value.setter
    def value(self, v) -> None:
        if self.op != "parameter":
            raise AttributeError(f"cannot set the value of {self.op} node {self.name!r}")
        a = to_array(v, f"parameter {self.name!r}: new value", DTypeError)
        if a.dtype == object or a.dtype.kind not in "biuf":
            raise DTypeError(f"parameter {self.name!r}: new value has dtype {a.dtype} "
                             f"({type(v).__name__}), expected {self.dtype}")
        if a.shape != self.shape:
            raise ShapeError(f"parameter {self.name!r}: new value has shape {a.shape}, "
                             f"expected {self.shape}")
        if a.dtype != self.dtype:
            if not np.can_cast(a.dtype, self.dtype, casting="same_kind"):
                raise DTypeError(f"parameter {self.name!r}: new value has dtype {a.dtype}, "
                                 f"expected {self.dtype}")
            try:
                a = convert_exactly(a, self.dtype, f"parameter {self.name!r}")
            except (ValueError, TypeError) as e:
                raise DTypeError(str(e)) from None
        self._value = np.array(a, dtype=self.dtype, order="C", copy=True)

    def __repr__(self) -> str:
        dt = dtypes.SHORT.get(self.dtype, str(self.dtype))
        return f"<{self.op} {self.name}: {dt}{list(self.shape)}>"

    def __bool__(self):
        raise TypeError(f"the truth value of graph node {self.name!r} is not known when the "
                        "graph is built (it is ambiguous, as numpy's for an array): use "
                        "gc.where(...) for data-dependent choices, and `is` to ask whether two "
                        "nodes are the same node (`==` is elementwise)")

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d node")
        return self.shape[0]

    def __iter__(self):
        raise TypeError(f"graph node {self.name!r} is not iterable; index it instead")

    def __array__(self, *a, **k):
        raise TypeError(f"graph node {self.name!r} has no value until the graph is run; "
                        "compile it and call the result")

    # Operators are attached in ops/__init__.py (they need the op functions).
    # ``==`` is elementwise there, so hashing stays by identity: nodes are dict
    # keys and set members as before, and code inside graphc compares nodes
    # with ``is`` (or their ids), never with ``==`` or ``in`` on a list.
    __hash__ = object.__hash__


# Hash-consing table: (op, input ids, frozen attrs) -> node. Weak values, so a
# node lives only as long as someone uses it; its inputs' ids stay valid while
# it lives because it holds them.
_CONS: weakref.WeakValueDictionary[tuple, Node] = weakref.WeakValueDictionary()


def attrs_key(attrs: dict) -> tuple:
    """The structural key of a node's attributes (see :func:`attr_key`)."""
    return tuple(sorted((k, attr_key(v)) for k, v in attrs.items()))


def cons_key(op: str, inputs: tuple, attrs: dict) -> tuple:
    return (op, tuple(i.id for i in inputs), attrs_key(attrs))


def lookup(key):
    return _CONS.get(key)


def remember(key, node: Node) -> None:
    _CONS[key] = node
