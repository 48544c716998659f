"""The op registry: every primitive op is declared once, as an :class:`OpDef`.

An OpDef carries everything any part of graphc needs to know about an op:

* ``infer(inputs, attrs) -> (shape, dtype)`` — the shape and dtype rules,
  run when a node is built; raises ShapeError/DTypeError;
* ``ref(*arrays, **attrs) -> ndarray`` — the numpy reference (the interpreter
  and constant folding call it);
* ``vjp(node, g) -> [cotangent or None per input]`` — the reverse-mode rule,
  written with graphc ops so the gradient is a graph (``None`` = no gradient);
* a lowering, by ``kind``:
    - ``"elementwise"``: ``scalar(s, node, *args)`` builds one output element
      from input elements with the scalar builder ``s`` (backend/llvm/scalar.py);
      inputs broadcast numpy-style;
    - ``"index"``: ``lower_at(ctx, node, idx)`` computes the element at index
      ``idx`` by evaluating inputs at other indices (movement ops);
    - ``"reduce"``: ``reduce_init(dtype)``, ``reduce_combine(s, acc, x)``;
    - ``"matmul"``: the matmul kernel template;
    - ``"kernel"``: ``kernel(em, node)`` emits the whole loop nest that stores
      ``node`` (for ops no index map or reduction can express, e.g. a
      scatter); such a node is its own kernel and never fused.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import GraphcError, user_source
from ..ir import node as _node
from ..ir.node import Node
from .common import check_size

KINDS = ("elementwise", "index", "reduce", "matmul", "kernel")


@dataclass
class OpDef:
    name: str
    kind: str
    infer: Callable[..., tuple]
    ref: Callable[..., Any]
    vjp: Callable[..., list]
    scalar: Callable | None = None
    lower_at: Callable | None = None
    reduce_init: Callable | None = None
    reduce_combine: Callable | None = None
    kernel: Callable | None = None
    reduce_acc_dtype: Callable | None = None    # dtype -> dtype the reduction accumulates in
    builtin: bool = False       # declared by graphc itself (graphc.ops.*): safe to cache on disk
    doc: str = ""
    extra: dict = field(default_factory=dict)

    def lowering(self):
        """The lowering rule for this op's kind (None if missing)."""
        return {"elementwise": self.scalar, "index": self.lower_at,
                "reduce": self.reduce_combine, "matmul": True,
                "kernel": self.kernel}.get(self.kind)


OPS: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.kind not in KINDS:
        raise ValueError(f"op {opdef.name!r}: unknown kind {opdef.kind!r} (one of {KINDS})")
    caller = sys._getframe(1).f_globals.get("__name__", "")
    opdef.builtin = caller.startswith("graphc.ops.")
    OPS[opdef.name] = opdef
    return opdef


def get(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise GraphcError(f"no op named {name!r} is registered") from None


def make(op: str, inputs, attrs: dict | None = None, name: str | None = None) -> Node:
    """Build (or find, by hash-consing) the node ``op(*inputs, **attrs)``.

    Runs the op's shape and dtype rules now; their errors get the user's
    source line appended. A result larger than ``common.MAX_BYTES`` is a
    ShapeError here, before any code or buffer is sized by it.
    """
    attrs = dict(attrs or {})
    inputs = tuple(inputs)
    for i in inputs:
        if not isinstance(i, Node):
            raise TypeError(f"{op}: inputs must be graph nodes, got {type(i).__name__}")
    key = _node.cons_key(op, inputs, attrs)
    found = _node.lookup(key)
    if found is not None:
        return found
    d = get(op)
    shape, dtype = d.infer(inputs, attrs)
    check_size(op, tuple(shape), dtype)      # before any code or buffer is sized by it
    n = Node(op, inputs, attrs, shape, dtype, name, user_source())
    _node.remember(key, n)
    return n
