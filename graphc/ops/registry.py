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
    - ``"index"``: ``index_map(ix, node, idx)`` says where the element at
      ``idx`` is read from: which input, at which index (movement ops; one
      rule, read by the LLVM emitter, fusion's symbolic reasoning and the
      GEMM's strided views, see ``ops/index.py``); or ``lower_at(ctx, node,
      idx)`` computes the element by evaluating inputs at other indices
      (one_hot, take: ``index_map`` may still declare where it reads);
    - ``"reduce"``: ``reduce_init(dtype)``, ``reduce_combine(s, acc, x)``;
    - ``"matmul"``: the matmul kernel template;
    - ``"kernel"``: ``kernel(em, node)`` emits the whole loop nest that stores
      ``node`` (for ops no index map or reduction can express, e.g. a
      scatter); such a node is its own kernel and never fused;
* the facts passes and backends ask about an op (never its name):
    - ``kind`` — one :class:`OpKind` (a str: ``"elementwise"`` etc. are
      accepted and compare equal), which decides the lowering above, how
      fusion treats the node (``passes/fusion.py`` ``_kind``: inlined,
      reduction, GEMM or opaque) and which kernel computes it
      (``backend/plan.py`` ``kernel_kind``);
    - ``cost`` — the relative cost of computing one element again, which
      fusion weighs before recomputing a value in several kernels: 0 for an
      index map, :data:`CHEAP` (1) for arithmetic, :data:`COSTLY` (4) for
      transcendental functions and division (``cost >= COSTLY`` is what the
      emitter caches per row rather than recomputes); by default 0 for kind
      ``"index"`` and 1 otherwise;
    - ``foldable`` — constant folding may replace a node on constant inputs by
      its value (False for ops whose result is only a cheap expansion of
      their input, like ``broadcast_to``: folding would materialize it);
    - ``view`` — the op is a pure index map of its input(s): every output
      element is an input element at an index that depends on the output
      index alone (reshape, transpose, broadcast, slice, concatenate), so a
      property of all input elements holds for all output elements;
* ``nin`` — the number of inputs (an int, or ``(least, most or None)``);
* ``attrs`` — the names of the node's attributes (all required, no others),
  and ``check_attrs(inputs, attrs) -> attrs``, which validates and normalizes
  their values (see ``attrs.py``). :func:`make` runs both before the shape
  rule, for every node however it is built, so a lowering never sees an
  attribute it did not expect (``attrs=None``: not declared, not checked).
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from ..errors import AttrError, GraphcError, OpArgError, user_source
from ..ir import node as _node
from ..ir.node import Node
from . import symbolic
from .attrs import show
from .common import check_size


class OpKind(str, Enum):
    """The one classification of an op. A str: ``OpKind.ELEMENTWISE ==
    "elementwise"``, and an OpDef given the string gets the member."""
    ELEMENTWISE = "elementwise"   # one element from the input elements at the same index
    INDEX = "index"               # an element from input elements at other indices (lower_at)
    REDUCE = "reduce"             # a reduction over axes (reduce_init, reduce_combine)
    MATMUL = "matmul"             # the GEMM template
    KERNEL = "kernel"             # its own loop nest (kernel): opaque to fusion

    __str__ = str.__str__
    __format__ = str.__format__


KINDS = tuple(k.value for k in OpKind)
CHEAP = 1         # OpDef.cost of arithmetic
COSTLY = 4        # OpDef.cost of transcendental functions and division


def _op_kind(name, kind) -> OpKind:
    try:
        return OpKind(kind)
    except ValueError:
        raise ValueError(f"op {name!r}: unknown kind {kind!r} (one of {KINDS})") from None


@dataclass
class OpDef:
    name: str
    kind: OpKind
    infer: Callable[..., tuple]
    ref: Callable[..., Any]
    vjp: Callable[..., list]
    scalar: Callable | None = None
    lower_at: Callable | None = None
    index_map: Callable | None = None   # (ix, node, idx) -> [Read, ...] (ops/index.py)
    reduce_init: Callable | None = None
    reduce_combine: Callable | None = None
    kernel: Callable | None = None
    reduce_acc_dtype: Callable | None = None    # dtype -> dtype the reduction accumulates in
    nin: int | tuple | None = None      # number of inputs: n, or (least, most or None)
    attrs: tuple | None = ()            # attribute names (None: undeclared, unchecked)
    check_attrs: Callable | None = None  # (inputs, attrs) -> validated, normalized attrs
    builtin: bool = False       # declared by graphc itself (graphc.ops.*): safe to cache on disk
    doc: str = ""
    extra: dict = field(default_factory=dict)
    cost: int | None = None     # recompute cost of one element (None: by kind, see above)
    foldable: bool = True       # constant folding may evaluate it
    view: bool = False          # a pure index map of its inputs

    def __post_init__(self):
        self.kind = _op_kind(self.name, self.kind)
        if self.cost is None:
            self.cost = 0 if self.kind is OpKind.INDEX else CHEAP
        if isinstance(self.cost, bool) or not isinstance(self.cost, int) or self.cost < 0:
            raise ValueError(f"op {self.name!r}: cost must be an int >= 0, got {self.cost!r}")
        for fact in ("foldable", "view"):
            if not isinstance(getattr(self, fact), bool):
                raise ValueError(f"op {self.name!r}: {fact} must be a bool, got "
                                 f"{getattr(self, fact)!r}")

    def lowering(self):
        """The lowering rule for this op's kind (None if missing)."""
        return {OpKind.ELEMENTWISE: self.scalar, OpKind.INDEX: self.lower_at or self.index_map,
                OpKind.REDUCE: self.reduce_combine, OpKind.MATMUL: True,
                OpKind.KERNEL: self.kernel}[self.kind]


OPS: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    opdef.kind = _op_kind(opdef.name, opdef.kind)      # (a kind set after construction)
    caller = sys._getframe(1).f_globals.get("__name__", "")
    opdef.builtin = caller.startswith("graphc.ops.")
    OPS[opdef.name] = opdef
    return opdef


def get(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise GraphcError(f"no op named {name!r} is registered") from None


def _check_inputs(d: OpDef, inputs) -> tuple:
    try:
        inputs = tuple(inputs)
    except TypeError:
        raise OpArgError(f"{d.name}: inputs must be a sequence of graph nodes, got "
                        f"{type(inputs).__name__}") from None
    for i in inputs:
        if not isinstance(i, Node):
            raise OpArgError(f"{d.name}: inputs must be graph nodes, got {type(i).__name__}")
    if d.nin is not None:
        lo, hi = (d.nin, d.nin) if isinstance(d.nin, int) else d.nin
        if len(inputs) < lo or (hi is not None and len(inputs) > hi):
            want = str(lo) if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
            raise OpArgError(f"{d.name} takes {want} input(s), got {len(inputs)}")
    return inputs


def check_attrs(d: OpDef, inputs: tuple, attrs) -> dict:
    """The attributes of a ``d`` node on ``inputs``, validated and normalized:
    exactly the names ``d.attrs``, values accepted by ``d.check_attrs``."""
    if attrs is None:
        attrs = {}
    if not isinstance(attrs, dict):
        raise AttrError(f"{d.name}: attributes must be a dict, got {type(attrs).__name__}")
    if d.attrs is None:
        return dict(attrs)
    if len(attrs) != len(d.attrs) or any(k not in attrs for k in d.attrs):
        missing = [k for k in d.attrs if k not in attrs]
        unknown = [k for k in attrs if k not in d.attrs]
        parts = ([f"missing attribute(s) {', '.join(map(str, missing))}"] if missing else []) + \
            ([f"unknown attribute(s) {', '.join(show(k) for k in unknown)}"] if unknown else [])
        known = ", ".join(d.attrs) or "none"
        raise AttrError(f"{d.name}: {'; '.join(parts)} (its attributes: {known})")
    attrs = dict(attrs)
    return d.check_attrs(inputs, attrs) if d.check_attrs is not None else attrs


def make(op: str, inputs, attrs: dict | None = None, name: str | None = None) -> Node:
    """Build (or find, by hash-consing) the node ``op(*inputs, **attrs)``.

    The one construction path of every op node: checks the inputs and the
    attributes (:func:`check_attrs`), then runs the op's shape and dtype
    rules now; their errors get the user's source line appended. A result
    larger than ``common.MAX_BYTES`` is a ShapeError here, before any code or
    buffer is sized by it.
    """
    if not isinstance(op, str):
        raise OpArgError(f"make: the op must be named by a str, got {type(op).__name__}")
    d = get(op)
    inputs = _check_inputs(d, inputs)
    attrs = check_attrs(d, inputs, attrs)
    sym = symbolic.carried(inputs)
    if sym:                 # a symbolic dim: mask the padding an op would mix in (ops/symbolic.py)
        inputs = symbolic.prepare(d, inputs, attrs)
    key = _node.cons_key(op, inputs, attrs)
    found = _node.lookup(key)
    if found is not None:
        return found
    shape, dtype = d.infer(inputs, attrs)
    check_size(op, tuple(shape), dtype)      # before any code or buffer is sized by it
    batch = symbolic.rule(d, inputs, attrs, tuple(shape)) if sym else None
    n = Node(op, inputs, attrs, shape, dtype, name, user_source())
    n.batch = batch
    _node.remember(key, n)
    return n


symbolic._MAKE[0] = make


def evaluate(n: Node, args: list):
    """Apply ``n``'s op reference to input arrays; the result has n's dtype and
    shape (the interpreter and constant folding)."""
    d = get(n.op)
    with np.errstate(all="ignore"):
        r = d.ref(*args, **n.attrs)
    r = np.asarray(r)
    if r.dtype != n.dtype:
        r = r.astype(n.dtype)
    if r.shape != n.shape:
        raise RuntimeError(f"reference of {n.op!r} returned shape {r.shape}, expected {n.shape}")
    return r
