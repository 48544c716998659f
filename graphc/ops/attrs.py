"""Attribute checkers: each OpDef names its attributes (``OpDef.attrs``) and
may give ``check_attrs(inputs, attrs) -> attrs``, which validates and
normalizes their values (the same canonical form the public function builds:
non-negative sorted axes, tuples of Python ints, numpy dtypes). The one
construction path, :func:`graphc.ops.registry.make`, runs them for every node
however it is built (``gc.make``, a public function, a pass rebuilding it), so
no lowering ever sees an attribute it did not expect.

Errors name the op and the attribute: a ShapeError for axes, shapes and
indices, a DTypeError for dtypes, an AttrError for anything else.
"""
from __future__ import annotations

import numpy as np

from ..errors import AttrError, DTypeError, ShapeError
from ..ir import dtypes as D
from .common import is_int


def show(v, limit: int = 80) -> str:
    """``repr(v)``, shortened (a huge attribute must not make a huge message)."""
    try:
        r = repr(v)
    except Exception:          # a repr that fails is the caller's problem, not ours
        r = f"<{type(v).__name__}>"
    return r if len(r) <= limit else r[:limit - 3] + "..."


def boolean(op: str, name: str, v) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise AttrError(f"{op}: attribute {name}={show(v)} must be a bool")
    return bool(v)


def integer(op: str, name: str, v, lo: int | None = None, hi: int | None = None) -> int:
    """An int (not a bool) in ``[lo, hi]``."""
    if not is_int(v):
        raise AttrError(f"{op}: attribute {name}={show(v)} must be an int")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ShapeError(f"{op}: attribute {name}={show(v)} is out of range {rng}")
    return v


def ints(op: str, name: str, v, n: int | None = None) -> tuple:
    """A tuple (or list) of ints, of length ``n`` if given."""
    if not isinstance(v, (tuple, list)) or not all(is_int(i) for i in v):
        raise ShapeError(f"{op}: attribute {name}={show(v)} must be a tuple of ints")
    v = tuple(int(i) for i in v)
    if n is not None and len(v) != n:
        raise ShapeError(f"{op}: attribute {name}={show(v)} must have {n} entries "
                         f"(one per axis), not {len(v)}")
    return v


def shape(op: str, name: str, v, n: int | None = None) -> tuple:
    """A shape: a tuple of non-negative ints (how large a node may be is
    ``common.check_size``'s rule, applied to every node's shape)."""
    v = ints(op, name, v, n)
    for s in v:
        if s < 0:
            raise ShapeError(f"{op}: attribute {name}={show(v)} has a negative dimension {s}")
    return v


def axis(op: str, name: str, v, ndim: int) -> int:
    """One axis of a ``ndim``-d value; negative axes count from the end."""
    if not is_int(v):
        raise ShapeError(f"{op}: attribute {name}={show(v)} must be an int axis")
    if not -ndim <= v < ndim:
        raise ShapeError(f"{op}: attribute {name}={show(v)} is out of range for a {ndim}-d input")
    return int(v) % ndim


def axes(op: str, name: str, v, ndim: int) -> tuple:
    """Distinct axes of a ``ndim``-d value, sorted and non-negative."""
    if is_int(v):
        v = (v,)
    if not isinstance(v, (tuple, list)):
        raise ShapeError(f"{op}: attribute {name}={show(v)} must be a tuple of int axes")
    out = tuple(axis(op, name, a, ndim) for a in v)
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: attribute {name}={show(v)} repeats an axis")
    return tuple(sorted(out))


def dtype(op: str, name: str, v) -> np.dtype:
    """A supported dtype (``None`` is not one: numpy would read it as float64)."""
    if v is None:
        raise DTypeError(f"{op}: attribute {name}=None is not a dtype")
    try:
        return D.as_dtype(v)
    except DTypeError as e:
        raise DTypeError(f"{op}: attribute {name}: {e}") from None
