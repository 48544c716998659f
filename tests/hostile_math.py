"""Hostile construction cases of the ops the ONNX importer needs (issue 14:
``graphc/ops/elementwise.py``'s sin..sign and atan, ``compose.py``, ``scan.py``), added
to test_hostile's table by ``math_cases``: every argument a caller can get
wrong gets a clear error naming the op."""
from __future__ import annotations

import graphc as gc


def math_cases(add, ph, junk, x, v, i, e0, B):
    """Add the cases with ``add(op, what, fn, expected exception)``."""
    S, D = gc.ShapeError, gc.DTypeError
    b = ph((2, 3), B, name="hb")
    b4 = ph((4,), B, name="hb4")
    s0 = ph((), name="hs0")
    v4 = ph((4,), name="hv4")
    trig = ("atan", "tan", "asin", "acos", "sinh", "cosh", "asinh", "acosh", "atanh")
    for op in ("sin", "cos", "floor", "ceil", "round", "sign", "reciprocal", "logical_not",
               "cumsum", "prod", "clip") + trig:
        for jn, j in junk[:4]:
            add(op, f"{jn} operand", lambda op=op, j=j: getattr(gc, op)(j), (TypeError, ValueError))
    for op in ("sin", "cos", "floor", "ceil", "round", "sign", "reciprocal", "clip") + trig:
        add(op, "bool operand", lambda op=op: getattr(gc, op)(b), D)
    for op in ("logical_and", "logical_or", "logical_xor"):
        add(op, "float operands", lambda op=op: getattr(gc, op)(x, x), D)
        add(op, "int and bool operands", lambda op=op: getattr(gc, op)(i, b), D)
        add(op, "an int scalar", lambda op=op: getattr(gc, op)(b, 1), D)
        add(op, "shapes that do not broadcast", lambda op=op: getattr(gc, op)(b, b4), S)
        for jn, j in junk[:4]:
            add(op, f"{jn} operand", lambda op=op, j=j: getattr(gc, op)(b, j), (TypeError, ValueError))
    add("logical_not", "float operand", lambda: gc.logical_not(x), D)
    add("logical_not", "int operand", lambda: gc.logical_not(i), D)
    add("clip", "str bound", lambda: gc.clip(x, "a", 1.0), D)
    add("clip", "complex bound", lambda: gc.clip(x, None, 1j), D)
    add("clip", "bound that does not broadcast", lambda: gc.clip(x, v4, None), S)
    add("clip", "upper bound that does not broadcast", lambda: gc.clip(x, 0.0, [1.0, 2.0]), S)
    for shape in [(3, 2), (2, 4), (-1, 3), (2.5, 3), "ab", None, 3, (2**40, 2**40, 2, 3)]:
        add("expand", f"shape {shape!r}", lambda shape=shape: gc.expand(x, shape), S)
    for jn, j in junk[:4]:
        add("expand", f"{jn} operand", lambda j=j: gc.expand(j, (2, 3)), (TypeError, ValueError))
    for ax in [2, -3, 1.5, "a", (0, 1), True]:
        add("cumsum", f"axis {ax!r}", lambda ax=ax: gc.cumsum(x, ax), S)
    add("cumsum", "axis of a 0-d value", lambda: gc.cumsum(s0, 0), S)
    add("cumsum", "exclusive 'yes'", lambda: gc.cumsum(x, 0, exclusive="yes"), (TypeError, ValueError))
    add("cumsum", "reverse None", lambda: gc.cumsum(x, 0, reverse=None), (TypeError, ValueError))
    add("cumsum", "exclusive 2", lambda: gc.cumsum(x, 0, exclusive=2), (TypeError, ValueError))
    add("cumsum", "dtype bool", lambda: gc.cumsum(x, 0, dtype="bool"), D)
    add("cumsum", "dtype complex64", lambda: gc.cumsum(x, 0, dtype="complex64"), D)
    for ax in [2, -3, 7, (0, 0), (0, 5), 1.0, "a", True, [0.5], (None,)]:
        add("prod", f"axis {ax!r}", lambda ax=ax: gc.prod(x, ax), S)
    add("prod", "keepdims 'no'", lambda: gc.prod(x, 0, keepdims="no"), (TypeError, ValueError))
    add("reduce_prod", "bool input to the primitive",
        lambda: gc.make("reduce_prod", (b,), {"axes": (0,), "keepdims": False}), D)
    add("scan", "operands that do not broadcast", lambda: gc.scan(v4, x, 0), S)
    add("scan", "axis 2", lambda: gc.scan(1.0, x, 2), S)
    add("scan", "0-d operands", lambda: gc.scan(1.0, s0, 0), S)
    add("scan", "bool operands", lambda: gc.scan(b, b, 0), D)
    add("scan", "reverse 2", lambda: gc.scan(1.0, x, 0, 2), (TypeError, ValueError))
    add("scan", "operand dtypes differ (primitive)",
        lambda: gc.make("scan", (gc.cast(x, "float32"), x), {"axis": 0, "reverse": False}), D)
    for jn, j in junk[:4]:
        add("scan", f"{jn} operand", lambda j=j: gc.scan(j, x, 0), (TypeError, ValueError))
    y = ph((3, 4), name="hy")
    x32 = ph((2, 3), "float32", name="hx32")
    for eq in ["ij,jk->ik,", "ij->ij->", "i1,jk", "ij,jk->iq", "ij,jk->ii", "ijk,jk", "ij,kk",
               "....ij,jk", "ij,jk->i.k", "ij", "ij,jk,kl", "i...j...,jk", "ij,jk->i...k...",
               "", "i j k,jk"]:
        add("einsum", f"equation {eq!r} for (2, 3), (3, 4)", lambda eq=eq: gc.einsum(eq, x, y), S)
    add("einsum", "no operands", lambda: gc.einsum("->"), S)
    add("einsum", "equation None", lambda: gc.einsum(None, x), S)
    add("einsum", "equation bytes", lambda: gc.einsum(b"ij", x), S)
    add("einsum", "bool operands", lambda: gc.einsum("ij->i", b), D)
    add("einsum", "'...' dimensions that do not broadcast",
        lambda: gc.einsum("...i,...i->...", ph((2, 3), name="h23"), ph((4, 3), name="h43")), S)
    for jn, j in junk[:4]:
        add("einsum", f"{jn} operand", lambda j=j: gc.einsum("ij", j), (TypeError, ValueError))
    for kw in [dict(k=-1), dict(k=4), dict(k=1.5), dict(k=True), dict(k="2"), dict(k=None),
               dict(k=1, axis=2), dict(k=1, axis=-3), dict(k=1, axis=0.5), dict(k=1, axis=None)]:
        add("topk", f"{kw} for (2, 3)", lambda kw=kw: gc.topk(x, **kw), S)
    add("topk", "0-d operand", lambda: gc.topk(s0, 0, 0), S)
    add("topk", "bool operand", lambda: gc.topk(b, 1), D)
    add("topk", "largest 'yes'", lambda: gc.topk(x, 1, largest="yes"), TypeError)
    for jn, j in junk[:4]:
        add("topk", f"{jn} operand", lambda j=j: gc.topk(j, 1), (TypeError, ValueError))
    for dt in ("float64", "int64", "bool", "complex64", "nope", None, 3):
        add("bitcast", f"float32 to {dt!r}", lambda dt=dt: gc.bitcast(x32, dt), (TypeError, ValueError))
    add("bitcast", "bool operand", lambda: gc.bitcast(b, "int32"), D)
    for jn, j in junk[:4]:
        add("bitcast", f"{jn} operand", lambda j=j: gc.bitcast(j, "int32"), (TypeError, ValueError))
