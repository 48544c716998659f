"""Graph passes: constant folding, algebraic simplification (a table of
rewrite rules run to a fixed point), CSE and DCE.

Rewrites are data: :data:`RULES` lists ``Rule(name, op, fn, fast_math)``;
``fn(node, ctx)`` returns a replacement node or None. Adding a rule is adding
a line. Rules marked ``fast_math`` are not valid for every IEEE value (``x - x``
is NaN, not 0, when ``x`` is inf or NaN) and run only with
``compile(..., fast_math=True)``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import GraphcError
from ..ir import dtypes as D
from ..ir.graph import Graph
from ..ir.node import Node, cons_key
from ..ops import registry
from ..ops.common import constant
from ..ops.elementwise import cast, neg
from ..ops.movement import broadcast_to, reshape, transpose
from .manager import Pass, PassContext, register_pass
from .rewrite import rebuild

# -------------------------------------------------------------- helpers


def const_array(n: Node):
    """The value of the constant ``n`` is a view of (broadcast, reshaped,
    transposed, sliced: an op whose OpDef says ``view``), or None: the small
    underlying array, not expanded. Only for questions about all elements
    (``is_all``, ``positive``): a view's elements are some of its input's."""
    while not n.is_leaf and len(n.inputs) == 1 and registry.get(n.op).view:
        n = n.inputs[0]
    return n.value if n.op == "constant" else None


def is_all(n: Node, v) -> bool:
    a = const_array(n)
    return a is not None and a.size > 0 and bool(np.all(a == v))


def fit(r: Node, like: Node) -> Node:
    """``r`` made to ``like``'s shape and dtype (broadcast, cast)."""
    if r.dtype != like.dtype:
        r = cast(r, like.dtype)
    if r.shape != like.shape:
        r = broadcast_to(r, like.shape)
    return r


def zeros_of(n: Node) -> Node:
    return broadcast_to(constant(0, n.dtype), n.shape)


def positive(n: Node) -> bool:
    """Conservatively: is every value of ``n`` > 0 (or NaN)? (Only constants
    are known to be: ``exp`` and ``sigmoid`` can underflow to 0.)"""
    a = const_array(n)
    return a is not None and D.is_float(a.dtype) and bool(np.all(a > 0))


@dataclass
class Rule:
    name: str
    op: str
    fn: Callable
    fast_math: bool = False


def is_zero(n: Node, negative: bool, ctx) -> bool:
    """Is n all zeros of the sign an exact rewrite needs? ``x + (-0.0)`` and
    ``x - (+0.0)`` are x for every x, but ``-0.0 + 0.0`` is +0.0 and
    ``0.0 - 0.0`` is +0.0, not -(0.0): a float zero of the other sign is an
    identity only under ``fast_math``."""
    a = const_array(n)
    if a is None or a.size == 0 or not bool(np.all(a == 0)):
        return False
    if a.dtype.kind != "f" or ctx.fast_math:
        return True
    return bool(np.all(np.signbit(a) == negative))


def _binary_identity(op, value, keep, zero_sign=None):
    """``op(x, c)`` (keep=1) or ``op(c, x)`` (keep=0) with c all ``value`` -> x;
    for a zero, ``zero_sign`` (True: -0.0) is the sign that makes it exact."""
    def fn(n, ctx):
        other = n.inputs[1 - keep]
        x = n.inputs[keep]
        ok = is_zero(other, zero_sign, ctx) if zero_sign is not None else is_all(other, value)
        if ok and np.broadcast_shapes(x.shape, n.shape) == n.shape:
            return fit(x, n)
        return None
    return fn


def _sub_zero_left(n, ctx):
    a, b = n.inputs
    if is_zero(a, True, ctx) and b.shape == n.shape:      # -0.0 - x is -x exactly
        return neg(b)
    return None


def _self_sub(n, ctx):
    a, b = n.inputs
    if a is b and (not D.is_float(n.dtype) or ctx.fast_math):
        return zeros_of(n)
    return None


def _mul_zero(n, ctx):
    if not D.is_float(n.dtype) or ctx.fast_math:
        if is_all(n.inputs[0], 0) or is_all(n.inputs[1], 0):
            return zeros_of(n)
    return None


def _mul_neg_one(n, ctx):
    a, b = n.inputs
    for x, c in ((a, b), (b, a)):
        if is_all(c, -1) and x.shape == n.shape:
            return neg(x)
    return None


def _neg_neg(n, ctx):
    x = n.inputs[0]
    return x.inputs[0] if x.op == "neg" else None


def _add_neg(n, ctx):
    a, b = n.inputs
    if b.op == "neg":
        return registry.make("sub" if n.op == "add" else "add", (a, b.inputs[0]))
    if n.op == "add" and a.op == "neg":
        return registry.make("sub", (b, a.inputs[0]))
    return None


def _transpose_transpose(n, ctx):
    x = n.inputs[0]
    if x.op != "transpose":
        return None
    inner, outer = x.attrs["axes"], n.attrs["axes"]
    return transpose(x.inputs[0], tuple(inner[p] for p in outer))


def _reshape_reshape(n, ctx):
    x = n.inputs[0]
    if x.op != "reshape":
        return None
    return reshape(x.inputs[0], n.shape)


def _identity_movement(n, ctx):
    x = n.inputs[0]
    if n.op in ("reshape", "broadcast_to") and x.shape == n.shape:
        return x
    if n.op == "transpose" and n.attrs["axes"] == tuple(range(n.ndim)):
        return x
    return None


def _exp_log(n, ctx):
    x = n.inputs[0]
    if x.op == "log" and positive(x.inputs[0]):
        return x.inputs[0]
    return None


def _log_exp(n, ctx):
    x = n.inputs[0]
    return x.inputs[0] if x.op == "exp" else None


def _sum_of_broadcast(n, ctx):
    """sum(broadcast_to(x, S), axes): the broadcast axes become a product."""
    b = n.inputs[0]
    if b.op != "broadcast_to":
        return None
    x, S = b.inputs[0], b.shape
    axes = n.attrs["axes"]
    lead = len(S) - x.ndim
    bc = [a for a in axes if a < lead or (x.shape[a - lead] == 1 and S[a] != 1)]
    if not bc:
        return None
    count = 1
    for a in bc:
        count *= S[a]
    if count == 0:
        return None     # an empty sum is +0.0; x * 0 would be -0.0 (x < 0) or NaN (x = inf)
    xb = reshape(x, (1,) * lead + x.shape)
    T = tuple(1 if a in bc else s for a, s in enumerate(S))
    z = broadcast_to(xb, T)
    real = tuple(a for a in axes if a not in bc)
    if real:
        z = registry.make("reduce_sum", (z,), {"axes": real, "keepdims": True})
    z = registry.make("mul", (z, constant(np.asarray(count, dtype=n.dtype))))
    return _plus_zero(reshape(z, n.shape), ctx)    # a sum of count copies of -0.0 is +0.0


def _plus_zero(z: Node, ctx) -> Node:
    """``z + 0.0`` for floats: what a sum of z's elements starting from +0.0
    gives (-0.0 becomes +0.0, nothing else changes); integers, and floats
    under ``fast_math`` (signs of zero not kept), unchanged."""
    if not np.issubdtype(z.dtype, np.floating) or ctx.fast_math:
        return z
    return registry.make("add", (z, constant(np.zeros((), dtype=z.dtype))))


def _sum_unit_axes(n, ctx):
    """A reduction over axes of extent 1 is its input reshaped (a sum adds
    +0.0 to it: sum([-0.0]) is +0.0)."""
    x = n.inputs[0]
    if all(x.shape[a] == 1 for a in n.attrs["axes"]):
        y = reshape(x, n.shape)
        return _plus_zero(y, ctx) if n.op == "reduce_sum" else y
    return None


def _reshape_keepdims(n, ctx):
    """reshape(reduce(x, keepdims=True)) that only drops the kept unit axes is
    reduce(x, keepdims=False)."""
    r = n.inputs[0]
    if r.is_leaf or registry.get(r.op).kind != "reduce" or not r.attrs["keepdims"]:
        return None
    axes = r.attrs["axes"]
    dropped = tuple(s for i, s in enumerate(r.shape) if i not in axes)
    if dropped != n.shape:
        return None
    return registry.make(r.op, r.inputs, {"axes": axes, "keepdims": False})


def _where_same(n, ctx):
    c, a, b = n.inputs
    if a is b:
        return fit(a, n)
    arr = const_array(c)
    if arr is not None and arr.size and np.all(arr):
        return fit(a, n)
    if arr is not None and arr.size and not np.any(arr):
        return fit(b, n)
    return None


def _stop_gradient(n, ctx):
    return n.inputs[0]


def _cast_cast(n, ctx):
    x = n.inputs[0]
    if x.op != "cast":
        return None
    src, mid, dst = x.inputs[0].dtype, x.dtype, n.dtype
    if src == dst and _exact(src, mid):
        return x.inputs[0]
    return None


def _exact(src, mid) -> bool:
    """Can every ``src`` value be held exactly by ``mid``?"""
    if src == mid:
        return True
    if D.is_bool(src):
        return True
    if D.is_float(src):
        return D.is_float(mid) and mid.itemsize >= src.itemsize
    if D.is_int(src):
        if D.is_int(mid):
            return mid.itemsize >= src.itemsize
        return D.is_float(mid) and src == D.int32 and mid == D.float64
    return False


def _drop_broadcast(n, ctx):
    """An elementwise op broadcasts by itself: ``f(broadcast_to(y), z)`` is
    ``f(y, z)`` when the result's shape does not change."""
    if registry.get(n.op).kind != "elementwise":
        return None
    ins = list(n.inputs)
    changed = False
    for k, i in enumerate(ins):
        if i.op == "broadcast_to":
            trial = ins[:k] + [i.inputs[0]] + ins[k + 1:]
            if tuple(np.broadcast_shapes(*[t.shape for t in trial])) == n.shape:
                ins = trial
                changed = True
    return registry.make(n.op, tuple(ins), n.attrs) if changed else None


RULES: list[Rule] = [
    Rule("add-zero", "add", _binary_identity("add", 0, 0, zero_sign=True)),
    Rule("zero-add", "add", _binary_identity("add", 0, 1, zero_sign=True)),
    Rule("sub-zero", "sub", _binary_identity("sub", 0, 0, zero_sign=False)),
    Rule("zero-sub", "sub", _sub_zero_left),
    Rule("sub-self", "sub", _self_sub),
    Rule("mul-one", "mul", _binary_identity("mul", 1, 0)),
    Rule("one-mul", "mul", _binary_identity("mul", 1, 1)),
    Rule("mul-zero", "mul", _mul_zero),
    Rule("mul-neg-one", "mul", _mul_neg_one),
    Rule("div-one", "div", _binary_identity("div", 1, 0)),
    Rule("neg-neg", "neg", _neg_neg),
    Rule("add-neg", "add", _add_neg),
    Rule("sub-neg", "sub", _add_neg),
    Rule("transpose-transpose", "transpose", _transpose_transpose),
    Rule("reshape-reshape", "reshape", _reshape_reshape),
    Rule("reshape-keepdims", "reshape", _reshape_keepdims),
    Rule("identity-reshape", "reshape", _identity_movement),
    Rule("identity-broadcast", "broadcast_to", _identity_movement),
    Rule("identity-transpose", "transpose", _identity_movement),
    Rule("exp-log", "exp", _exp_log),
    Rule("log-exp", "log", _log_exp, fast_math=True),
    Rule("sum-of-broadcast", "reduce_sum", _sum_of_broadcast),
    Rule("sum-unit-axes", "reduce_sum", _sum_unit_axes),
    Rule("max-unit-axes", "reduce_max", _sum_unit_axes),
    Rule("min-unit-axes", "reduce_min", _sum_unit_axes),
    Rule("where-same", "where", _where_same),
    Rule("stop-gradient", "stop_gradient", _stop_gradient),
    Rule("custom-gradient", "custom_vjp", _stop_gradient),     # gc.custom_gradient's wrapper
    Rule("cast-cast", "cast", _cast_cast),
    Rule("drop-broadcast", "*elementwise", _drop_broadcast),
]


def _rules_for(op: str, ctx: PassContext):
    kind = registry.get(op).kind
    return [r for r in RULES if (r.op == op or r.op == f"*{kind}")
            and (ctx.fast_math or not r.fast_math)]


class Simplify(Pass):
    name = "simplify"
    purpose = "algebraic simplification: the rule table in passes/simplify.py, to a fixed point"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        cache = {}

        def replace(n):
            if n.is_leaf:
                return None
            rules = cache.get(n.op)
            if rules is None:
                rules = cache[n.op] = _rules_for(n.op, ctx)
            for r in rules:
                out = r.fn(n, ctx)
                if out is not None and out is not n:
                    return out, r.name
            return None
        total = 0
        for _ in range(10):
            graph, k = rebuild(graph, replace, ctx)
            total += k
            if k == 0:
                break
        if total:
            counts = {}
            for _, _, rule in ctx.rewrites:
                counts[rule] = counts.get(rule, 0) + 1
            ctx.notes.append("rules applied: " + ", ".join(f"{k} x{v}" for k, v in
                                                           sorted(counts.items())))
        return graph


FOLD_MAX = 4096       # folding never creates a constant larger than this (elements)


class ConstantFold(Pass):
    name = "fold"
    purpose = "constant folding: evaluate ops on constants with their numpy reference"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        def replace(n):
            if n.is_leaf or not registry.get(n.op).foldable:
                return None
            if not all(i.op == "constant" for i in n.inputs):
                return None
            if n.size > max(FOLD_MAX, max(i.size for i in n.inputs)):
                return None
            try:
                v = registry.evaluate(n, [i.value for i in n.inputs])
            except (GraphcError, ArithmeticError, ValueError):
                return None       # an error belongs to run time, not compile time
            return constant(v), "fold"
        graph, _ = rebuild(graph, replace, ctx)
        return graph


class CSE(Pass):
    name = "cse"
    purpose = "common subexpression elimination (equal constants and structurally equal nodes)"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        seen = {}

        def key(n):
            if n.op == "constant":
                v = n.value
                return ("constant", v.dtype.str, v.shape, v.tobytes())
            if n.is_leaf:
                return ("leaf", n.id)
            return cons_key(n.op, n.inputs, n.attrs)

        def replace(n):
            k = key(n)
            first = seen.setdefault(k, n)
            return None if first is n else (first, "cse")
        graph, _ = rebuild(graph, replace, ctx)
        return graph


class DCE(Pass):
    name = "dce"
    purpose = "dead code elimination: keep only nodes the outputs and updates need"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        out = Graph(graph.outputs, inputs=graph.placeholders, updates=graph.updates)
        dead = len(graph) - len(out)
        if dead:
            ctx.notes.append(f"removed {dead} unused nodes")
        return out


for _p in (ConstantFold(), Simplify(), CSE(), DCE()):
    register_pass(_p)
