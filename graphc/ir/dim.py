"""Symbolic (bounded) dimensions: :class:`Dim` and the per-node :class:`Batch` fact.

A placeholder may have one symbolic leading axis, ``gc.Dim("batch", max=64)``
(or ``None``: a dim named ``"batch"`` with :data:`DEFAULT_MAX`). Every node
is still built with concrete shapes — the symbolic axis has the bound as its
extent — so every pass and backend works unchanged. What a symbolic axis
adds is one fact per node, ``node.batch`` (a :class:`Batch` or None): which
axis of the node's value carries the dim, and how many elements of that axis
each batch row owns (``inner``: 1 for the placeholder's axis, T after a
reshape ``(B, T, D) -> (B*T, D)``). At a call with ``n`` rows, only the first
``n * inner`` elements along that axis are valid; the rest hold padding
(copies of the last row, or anything computed from them). Ops that mix rows
(a sum, max or min over the axis, a matmul contracting it) read the padding
through a mask, and divisors (a mean over the axis) use the call's size,
held by the dim's size parameter (``ops/symbolic.py: size_node``). See docs/dynamic.md.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

DEFAULT_MAX = 1024      # the bound of ``None`` in a placeholder's shape
_ids = itertools.count()


class Dim:
    """A symbolic dimension: a name and a bound (the largest size a call may
    give). Memory and compute are planned for the bound."""

    def __init__(self, name: str = "batch", max: int | None = None):  # noqa: A002
        if not isinstance(name, str) or not name:
            raise TypeError(f"Dim: name must be a non-empty str, got {name!r}")
        if max is None:
            max = DEFAULT_MAX               # noqa: A001
        if isinstance(max, bool) or not isinstance(max, (int, np.integer)) or max < 1:
            raise ValueError(f"Dim {name!r}: max must be an int >= 1, got {max!r}")
        self.name = name
        self.max = int(max)
        self.id = next(_ids)
        self._size = None

    def __repr__(self) -> str:
        return f"Dim({self.name!r}, max={self.max})"


_DEFAULT: list = []


def default_dim() -> Dim:
    """The dim ``None`` stands for in a placeholder's shape: one ``Dim("batch",
    max=DEFAULT_MAX)`` shared by every such placeholder, so inputs and
    labels given as ``(None, 784)`` and ``(None,)`` take the same size."""
    if not _DEFAULT:
        _DEFAULT.append(Dim("batch", max=DEFAULT_MAX))
    return _DEFAULT[0]


class Batch(NamedTuple):
    """Where a node's value carries a symbolic dim: ``axis``, with ``inner``
    elements per row (valid extent ``n * inner`` of ``dim.max * inner``).
    ``fill``: the padding is known to hold this value (a masked value), or None.
    ``rep``: each padding row is a copy of a valid row (a placeholder's
    padding, and any deterministic row-local function of such values): its
    values are finite wherever the valid rows' are."""
    dim: Dim
    axis: int
    inner: int = 1
    fill: object = None
    rep: bool = False

    def describe(self) -> str:
        rows = self.dim.name if self.inner == 1 else f"{self.dim.name}*{self.inner}"
        return f"symbolic dim {rows!r} (<= {self.dim.max * self.inner}) on axis {self.axis}"
