"""``topk``: the k largest (or smallest) elements along an axis and their
indices (ONNX ``TopK``), a composite of comparisons and sums.

graphc has no sort, so the lowering is by rank: along the axis (length n)
each element's rank is the number of elements that come before it (larger,
or equal with a lower index: the order is total and stable, NaN counted as
larger than any number), one reduction over an ``(n, n)`` comparison per
row; then output ``r`` is the element whose rank is ``r``, a masked sum over
a ``(k, n)`` comparison. So it costs **O(n**2 + k n) per row** in
arithmetic (the comparisons are fused into the reductions' loops, not
stored): cheap for the short axes of class scores or beams, slow for a long
axis (n = 10**4 is 10**8 comparisons per row). The values differentiate
(the gradient goes to the selected elements); the indices have none."""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from .common import as_node, constant, is_int
from .elementwise import bitwise_and, bitwise_or, cast, not_equal, where
from .movement import reshape, transpose
from .reduce import sum as _sum


def _before(a, b, largest, floating):
    """a comes strictly before b in the order (before the index tie-break):
    larger (smaller) first, NaN before every number (after, for smallest)."""
    if not floating:
        return a > b if largest else a < b
    na, nb = not_equal(a, a), not_equal(b, b)
    if largest:
        return bitwise_or(a > b, bitwise_and(na, ~nb))
    return bitwise_or(a < b, bitwise_and(~na, nb))


def topk(x, k, axis: int = -1, largest: bool = True) -> tuple[Node, Node]:
    """``(values, indices)`` of the ``k`` largest elements of ``x`` along
    ``axis`` (``largest=False``: the smallest), sorted (largest first, or
    smallest first), ties in index order; ``indices`` is int64. NaN counts as
    larger than every number. Cost: O(n**2 + k n) per row of length n (see
    the module's docstring)."""
    x = as_node(x, opname="topk")
    if D.is_bool(x.dtype):
        raise DTypeError("topk: bool operand; cast it to a number first")
    if not is_int(axis) or isinstance(axis, bool) or not -max(x.ndim, 1) <= axis < max(x.ndim, 1):
        raise ShapeError(f"topk: axis {axis!r} is out of range for shape {x.shape}")
    if x.ndim == 0:
        raise ShapeError("topk: needs an input with at least one dimension, got a 0-d one")
    if not isinstance(largest, (bool, np.bool_)) and largest not in (0, 1):
        raise TypeError(f"topk: largest must be a bool, got {largest!r}")
    axis = int(axis) % x.ndim
    n = x.shape[axis]
    if not is_int(k) or isinstance(k, bool) or not 0 <= int(k) <= n:
        raise ShapeError(f"topk: k must be an int from 0 to {n} (the length of axis {axis} of "
                         f"{x.shape}), got {k!r}")
    k = int(k)
    perm = [d for d in range(x.ndim) if d != axis] + [axis]
    xt = transpose(x, perm)                                  # (..., n)
    lead = xt.shape[:-1]
    xi = reshape(xt, lead + (n, 1))
    xj = reshape(xt, lead + (1, n))
    i = constant(np.arange(n, dtype=np.int64).reshape(n, 1))
    j = constant(np.arange(n, dtype=np.int64).reshape(1, n))
    fl, big = D.is_float(x.dtype), bool(largest)
    j_first = _before(xj, xi, big, fl)
    tie = bitwise_and(bitwise_and(~j_first, ~_before(xi, xj, big, fl)), j < i)
    ahead = bitwise_or(j_first, tie)                         # element j is ahead of element i
    rank = _sum(ahead, axis=-1)                              # (..., n): a permutation of 0..n-1
    r = constant(np.arange(k, dtype=np.int64).reshape(k, 1))
    pick = reshape(rank, lead + (1, n)) == r                 # (..., k, n): one True per row
    values = cast(_sum(where(pick, xj, 0), axis=-1), x.dtype)
    indices = _sum(where(pick, j, 0), axis=-1)
    back = list(np.argsort(perm))
    return transpose(values, back), transpose(indices, back)


__all__ = ["topk"]
