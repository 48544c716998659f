"""Hostile inputs: every public op given invalid shapes, dtypes, axes and
indices when the graph is built, and compiled functions given wrong, odd or
dangerous arguments when they are called.

Construction errors must be ``ValueError``/``TypeError`` subclasses whose
message names the op. At call time: wrong arguments get an
``InputError``/``InputTypeError``; odd but valid arrays (read-only,
Fortran-order, negative strides, unaligned, broadcast views) give numpy's
answer; labels out of range get a ``RuntimeCheckError`` and never make the
kernel read outside its buffers — inputs are placed against PROT_NONE guard
pages, so an out-of-bounds read is a segfault. Native calls run in a
subprocess (the ``isolated`` fixture), so a crash is a test failure, not a
dead runner.

``python tests/test_hostile.py`` prints how many hostile inputs the suite tries.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import re
import sys

import numpy as np
import pytest
from hostile_conv import conv_cases
from hostile_math import math_cases

import graphc as gc

F64, F32, I32, I64, B = "float64", "float32", "int32", "int64", "bool"


def ph(shape, dtype=F64, name=None):
    return gc.placeholder(shape, dtype, name=name)


# ----------------------------------------------------------------- building
# (op named in the message, what is wrong, builder, expected exception)

def _construction_cases():
    x = ph((2, 3), name="x")
    y = ph((3, 4), name="y")
    v = ph((3,), name="v")
    s = ph((), name="s")
    b = ph((2, 3), B, name="b")
    i = ph((2, 3), I64, name="i")
    lab = ph((2,), I64, name="lab")
    e0 = ph((0, 3), name="e0")
    S, D = gc.ShapeError, gc.DTypeError
    cases = []

    def add(op, what, fn, exc):
        cases.append((op, what, fn, exc))

    junk = [("None", None), ("str", "abc"), ("dict", {}), ("object()", object()),
            ("complex", 1j), ("ragged list", [[1, 2], [3]]), ("object array", np.array([1, None])),
            ("complex array", np.ones(2, complex)), ("bytes", b"ab"), ("set", {1})]
    unary = ["neg", "abs", "relu", "exp", "log", "sqrt", "tanh", "sigmoid", "stop_gradient",
             "invert"]
    binary = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "greater", "less",
              "greater_equal", "less_equal", "equal", "not_equal", "floor_divide", "mod",
              "bitwise_and", "bitwise_or", "bitwise_xor"]
    for op in unary:
        for jn, j in junk:
            exc = (TypeError, ValueError)
            add(op, f"{jn} operand", lambda op=op, j=j: getattr(gc, op)(j), exc)
    for op in ["neg", "abs", "relu", "exp", "log", "sqrt", "tanh", "sigmoid"]:
        add(op, "bool operand", lambda op=op: getattr(gc, op)(b), D)
    for op in binary:
        add(op, "shapes that do not broadcast", lambda op=op: getattr(gc, op)(x, y), S)
        add(op, "shapes that do not broadcast (reversed)", lambda op=op: getattr(gc, op)(y, x), S)
        for jn, j in junk:
            add(op, f"{jn} operand", lambda op=op, j=j: getattr(gc, op)(x, j), (TypeError, ValueError))
        add(op, "int scalar that does not fit int32",
            lambda op=op: getattr(gc, op)(ph((2,), I32, name="q"), 2**40), D)
        add(op, "float scalar that overflows float32",
            lambda op=op: getattr(gc, op)(ph((2,), F32, name="h"), 1e300), D)
    for op in ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "floor_divide", "mod"]:
        add(op, "bool operands", lambda op=op: getattr(gc, op)(b, b), D)
    for op in ["bitwise_and", "bitwise_or", "bitwise_xor"]:
        add(op, "float operands", lambda op=op: getattr(gc, op)(x, x), D)
    add("invert", "float operand", lambda: gc.invert(x), D)
    add("where", "shapes that do not broadcast", lambda: gc.where(b, x, y), S)
    add("where", "condition that does not broadcast", lambda: gc.where(ph((4,), B, name="c4"), x, 1.0), S)
    for jn, j in junk[:4]:
        add("where", f"{jn} condition", lambda j=j: gc.where(j, x, x), (TypeError, ValueError))
        add("where", f"{jn} branch", lambda j=j: gc.where(b, j, x), (TypeError, ValueError))
    for bad in ["complex64", "float16", "uint8", "foo", 3.5, object, "U3"]:
        add("cast", f"dtype {bad!r}", lambda bad=bad: gc.cast(x, bad), D)
    for jn, j in junk[:4]:
        add("cast", f"{jn} operand", lambda j=j: gc.cast(j, F64), (TypeError, ValueError))
    for op in ["sum", "mean", "max", "min", "logsumexp"]:
        for ax in [2, -3, 7, (0, 0), (0, 5), 1.0, "a", True, [0.5], (None,)]:
            add(op, f"axis {ax!r}", lambda op=op, ax=ax: getattr(gc, op)(x, ax), S)
        for jn, j in junk[:4]:
            add(op, f"{jn} operand", lambda op=op, j=j: getattr(gc, op)(j), (TypeError, ValueError))
    for op in ["max", "min"]:
        add(op, "zero-size reduced axis", lambda op=op: getattr(gc, op)(e0, 0), S)
        add(op, "zero-size input, all axes", lambda op=op: getattr(gc, op)(e0), S)
    add("reduce_sum", "bool input to the primitive", lambda: gc.make("reduce_sum", (b,), {"axes": (0,), "keepdims": False}), S)
    add("matmul", "contracted dimensions differ", lambda: x @ x, S)
    add("matmul", "vector length differs", lambda: x @ ph((4,), name="v4"), S)
    add("matmul", "0-d operand", lambda: gc.matmul(s, x), S)
    add("matmul", "0-d operand (right)", lambda: gc.matmul(x, s), S)
    add("matmul", "batch dimensions do not broadcast",
        lambda: ph((2, 2, 3), name="a") @ ph((3, 3, 4), name="c"), S)
    add("matmul", "bool operands", lambda: gc.matmul(b, ph((3, 2), B, name="b2")), D)
    add("matmul", "None operand", lambda: gc.matmul(x, None), TypeError)
    for shape in [(4,), (7, 1), (2, 2), (-1, -1), (-2, 3), (2.0, 3), "ab", None, (True, 6), ((2,), 3)]:
        add("reshape", f"shape {shape!r}", lambda shape=shape: gc.reshape(x, shape), S)
    for axes in [(0, 0), (0,), (0, 1, 2), (0, 5), (-3, 0), (0.0, 1), "ab", (None, 0)]:
        add("transpose", f"axes {axes!r}", lambda axes=axes: gc.transpose(x, axes), S)
    for a, c in [(0, 2), (-3, 0), (0.5, 1), (None, 0)]:
        add("swapaxes", f"axes {a!r}, {c!r}", lambda a=a, c=c: gc.swapaxes(x, a, c), S)
    for ax in [3, -4, 1.5, "a"]:
        add("expand_dims", f"axis {ax!r}", lambda ax=ax: gc.expand_dims(x, ax), S)
    for ax in [0, 1, 2, (0, 0), 1.5]:
        add("squeeze", f"axis {ax!r}", lambda ax=ax: gc.squeeze(x, ax), S)
    for shape in [(3, 2), (2,), (2, 4), (-1, 3), (2.5, 3), "ab", None, (2**40, 2**40, 2, 3)]:
        add("broadcast_to", f"shape {shape!r}", lambda shape=shape: gc.broadcast_to(x, shape), S)
    for shape in [(5,), (2, 3, 4), (3, 2), (-1,), "a"]:
        add("unbroadcast", f"shape {shape!r}", lambda shape=shape: gc.unbroadcast(x, shape), S)
    for key in [5, -3, (0, 3), (0, 0, 0), 1.5, np.array([0, 1]), [0, 1], True, "a", (Ellipsis, Ellipsis),
                slice(None, None, 0), slice("a", None), slice(0.5, 2), (slice(None), slice(0, 1.0)), 2**70,
                {0: 1}, 1j]:
        add("index", f"key {key!r}", lambda key=key: x[key], S)
    for xs, ax in [([], 0), ([s, s], 0), ([x, y], 0), ([x, x], 2), ([x, x], -3), ([x, x], 1.0),
                   ([x, x], True), ([x, b.astype(I32)[:, :2]], 0)]:
        add("concatenate", f"{len(xs)} inputs on axis {ax!r}", lambda xs=xs, ax=ax: gc.concatenate(xs, ax), S)
    for jn, j in [("None", None), ("a node", x), ("int", 3)]:
        add("concatenate", f"{jn} instead of a list", lambda j=j: gc.concatenate(j), TypeError)
    for op in ["softmax", "log_softmax"]:
        for ax in [2, -3, 1.0, "a", None, (0, 1)]:
            add(op, f"axis {ax!r}", lambda op=op, ax=ax: getattr(gc, op)(x, ax), S)
        add(op, "0-d input", lambda op=op: getattr(gc, op)(s), S)
        for jn, j in junk[:4]:
            add(op, f"{jn} operand", lambda op=op, j=j: getattr(gc, op)(j), (TypeError, ValueError))
    add("softmax_cross_entropy", "labels of the wrong shape",
        lambda: gc.softmax_cross_entropy(x, ph((3,), I64, name="l3")), S)
    add("softmax_cross_entropy", "float labels", lambda: gc.softmax_cross_entropy(x, ph((2,), F64, name="lf")), D)
    add("softmax_cross_entropy", "bool labels", lambda: gc.softmax_cross_entropy(x, ph((2,), B, name="lb")), D)
    add("softmax_cross_entropy", "int logits", lambda: gc.softmax_cross_entropy(i, lab), D)
    add("softmax_cross_entropy", "0-d logits", lambda: gc.softmax_cross_entropy(s, ph((), I64, name="l0")), S)
    add("softmax_cross_entropy", "zero classes",
        lambda: gc.softmax_cross_entropy(ph((2, 0), name="z"), lab), S)
    add("softmax_cross_entropy", "None labels", lambda: gc.softmax_cross_entropy(x, None), TypeError)
    for depth in [0, -1, 2.5, True, "3", None, 2**46]:
        add("one_hot", f"depth {depth!r}", lambda depth=depth: gc.one_hot(lab, depth), S)
    add("one_hot", "float labels", lambda: gc.one_hot(x, 3), D)
    add("one_hot", "bool labels", lambda: gc.one_hot(b, 3), D)
    add("one_hot", "None labels", lambda: gc.one_hot(None, 3), TypeError)
    for shape in [(-1, 2), (2.5, 2), "ab", None, (2**40, 2**40), ((2,),)]:
        add("placeholder", f"shape {shape!r}", lambda shape=shape: gc.placeholder(shape), S)
    for dt in ["complex64", "float16", "uint8", "foo", object, "U3"]:
        add("placeholder", f"dtype {dt!r}", lambda dt=dt: gc.placeholder((2,), dt), D)
    add("placeholder", "int name", lambda: gc.placeholder((2,), name=3), TypeError)
    for jn, j in [("complex", np.ones(2, complex)), ("str", "abc"), ("object", np.array([1, None])),
                  ("ragged", [[1], [2, 3]]), ("float16->unsupported dtype", np.ones(2, np.uint16))]:
        add("parameter", f"{jn} value", lambda j=j: gc.parameter(j), (TypeError, ValueError))
        add("constant", f"{jn} value", lambda j=j: gc.constant(j), (TypeError, ValueError))
    for shape, val in [((2**62, 4), 1.0), ((-1,), 0.0), ((2,), "a"), ((2,), 1j)]:
        add("broadcast_to" if shape[0] != 2 else "constant", f"full{shape!r}",
            lambda shape=shape, val=val: gc.full(shape, val), (TypeError, ValueError))
    # ops newer graphc versions add
    if hasattr(gc, "take"):
        for idx, ax in [(x, 0), (ph((2,), B, name="ib"), 0), (lab, 2), (lab, -3), (lab, 1.5)]:
            add("take", f"indices {idx!r} on axis {ax!r}", lambda idx=idx, ax=ax: gc.take(x, idx, ax), (S, D))
        add("take", "0-d source", lambda: gc.take(s, lab), S)
        add("take", "an empty axis", lambda: gc.take(e0, lab, 0), S)
        add("take", "None indices", lambda: gc.take(x, None), TypeError)
    if hasattr(gc, "scatter_add"):
        for size in [-1, 2.5, True, "3", None]:
            add("scatter_add", f"size {size!r}", lambda size=size: gc.scatter_add(x, lab, size), S)
        add("scatter_add", "float indices", lambda: gc.scatter_add(x, v[:2], 4), D)
        add("scatter_add", "bool updates", lambda: gc.scatter_add(b, lab, 4), D)
        add("scatter_add", "indices of the wrong length", lambda: gc.scatter_add(x, v.astype(I64), 4), S)
        add("scatter_add", "an empty axis", lambda: gc.scatter_add(x, lab, 0), S)
    if hasattr(gc, "random_uniform"):
        for shape in [(-1,), (2.5,), "ab", (2**40, 2**40)]:
            add("random_uniform", f"shape {shape!r}", lambda shape=shape: gc.random_uniform(shape, 0), S)
        for dt in ["int32", "bool", "complex64"]:
            add("random_uniform", f"dtype {dt}", lambda dt=dt: gc.random_uniform((2,), 0, dtype=dt), D)
        add("random_uniform", "seed 1.5", lambda: gc.random_uniform((2,), 1.5), D)
        add("random_uniform", "seed None", lambda: gc.random_uniform((2,), None), D)
    for op in ("erf", "log1p"):
        if hasattr(gc, op):
            add(op, "bool operand", lambda op=op: getattr(gc, op)(b), D)
            for jn, j in junk[:4]:
                add(op, f"{jn} operand", lambda op=op, j=j: getattr(gc, op)(j), (TypeError, ValueError))
    conv_cases(add, ph, junk, x, v, i, e0, B)     # tests/hostile_conv.py
    math_cases(add, ph, junk, x, v, i, e0, B)     # tests/hostile_math.py
    add("grad", "non-scalar y", lambda: gc.grad(x * 2, [x]), S)
    add("grad", "int y", lambda: gc.grad(gc.sum(i), [x]), D)
    add("grad", "int xs", lambda: gc.grad(gc.sum(x), [i]), D)
    add("grad", "xs a node", lambda: gc.grad(gc.sum(x), x), TypeError)
    add("grad", "xs None", lambda: gc.grad(gc.sum(x), None), TypeError)
    add("grad", "y None", lambda: gc.grad(None, [x]), TypeError)
    add("grad", "xs holds a str", lambda: gc.grad(gc.sum(x), ["x"]), TypeError)
    add("compile", "None outputs", lambda: gc.compile(None), TypeError)
    add("compile", "no outputs", lambda: gc.compile([]), ValueError)
    add("compile", "an output that is not a node", lambda: gc.compile([x, 3]), TypeError)
    add("compile", "unknown backend", lambda: gc.compile(x, backend="cuda"), ValueError)
    add("compile", "two placeholders named alike",
        lambda: gc.compile(ph((1,), name="dup") + ph((1,), name="dup")), ValueError)
    add("compile", "inputs that are not placeholders", lambda: gc.compile(x * 2, inputs=[x * 2]), TypeError)
    add("compile", "a placeholder missing from inputs", lambda: gc.compile(x + v[0], inputs=[x]), ValueError)
    add("compile", "a placeholder twice in inputs", lambda: gc.compile(x * 2, inputs=[x, x]), ValueError)
    add("compile", "updates of a non-parameter", lambda: gc.compile(x, updates={x: x}), TypeError)
    add("compile", "update of the wrong shape",
        lambda: gc.compile(x, updates={gc.parameter(np.ones(2), name="p2"): x}), S)
    return cases


CONSTRUCTION = _construction_cases()


@pytest.mark.parametrize("op,what,build,exc", CONSTRUCTION,
                         ids=[f"{c[0]}-{c[1]}" for c in CONSTRUCTION])
def test_invalid_construction_is_a_clear_error(op, what, build, exc):
    with pytest.raises(exc) as info:
        build()
    e = info.value
    assert isinstance(e, (ValueError, TypeError)), f"{type(e).__name__} is not a ValueError/TypeError"
    msg = str(e)
    names = {op, "index"} if op == "index" else {op}
    assert any(re.search(rf"\b{re.escape(n)}\b", msg) for n in names), \
        f"the message does not name the op {op!r}: {msg!r}"


def test_every_public_op_is_given_hostile_arguments():
    tried = {c[0] for c in CONSTRUCTION}
    public = {n for n in gc.ops.__all__ if n not in ("OPS", "OpDef", "get", "make", "register",
                                                     "as_node", "zeros", "ones", "full", "getitem")}
    assert public - tried - {"constant"} == set(), f"not tried: {public - tried}"


# ------------------------------------------------------------- calling: cases
# Each case is (name, fn); fn raises AssertionError if graphc misbehaves. They
# run in a subprocess, grouped by category (see test_call_time_category).

def expect(exc, fn, match=None):
    try:
        fn()
    except exc as e:
        if match is not None and not re.search(match, str(e)):
            raise AssertionError(f"{type(e).__name__} message {str(e)!r} does not match {match!r}") from None
        return
    except Exception as e:   # noqa: BLE001 - any other exception is the failure
        raise AssertionError(f"expected {exc}, got {type(e).__name__}: {e}") from None
    raise AssertionError(f"expected {exc}, nothing was raised")


def _binding_cases():
    x = ph((2, 3), name="x")
    q = ph((2,), I32, name="q")
    f = gc.compile(x * 2.0 + 1.0)
    fp = gc.compile([x * 2.0, gc.sum(q)], inputs=[x, q])
    fq = gc.compile(q * 2)
    ok = np.ones((2, 3))
    IE, ITE = gc.InputError, gc.InputTypeError
    cases = [
        ("missing input", lambda: expect(IE, lambda: f(), "missing input.*'x'")),
        ("unknown keyword", lambda: expect(IE, lambda: f(x=ok, y=ok), "unknown input 'y'")),
        ("positional to a keyword function", lambda: expect(IE, lambda: f(ok), "by keyword")),
        ("too many positional", lambda: expect(IE, lambda: fp(ok, [1, 2], ok), "too many")),
        ("given twice", lambda: expect(IE, lambda: fp(ok, [1, 2], x=ok), "given twice")),
        ("missing positional", lambda: expect(IE, lambda: fp(ok), "missing input.*'q'")),
    ]
    shapes = [(3, 2), (2,), (2, 3, 1), (1, 2, 3), (6,), (), (0, 3), (2, 4), (4, 3)]
    for sh in shapes:
        cases.append((f"shape {sh}", lambda sh=sh: expect(IE, lambda: f(x=np.ones(sh)), r"got shape")))
        cases.append((f"list of shape {sh}",
                      lambda sh=sh: expect(IE, lambda: f(x=np.ones(sh).tolist()), r"got shape")))
    for dt in [np.float32, np.int64, np.int32, np.bool_, np.float16, np.uint8, np.int8, np.complex128,
               np.longdouble, object, "U3", "S3", "M8[s]", "m8[s]"]:
        cases.append((f"array of dtype {np.dtype(dt)}",
                      lambda dt=dt: expect(ITE, lambda: f(x=np.zeros((2, 3), dt)), "placeholder 'x'")))
    junk = [None, "abc", b"abc", {}, {"a": 1}, {1, 2}, object(), 1j, [[1j, 2, 3], [4, 5, 6]],
            [[1, 2, 3], [4, 5]], [["a", "b", "c"], ["d", "e", "f"]], np.array([[1, None, 3], [4, 5, 6]]),
            lambda: 0, Ellipsis, slice(1), type, [[1.5, 2, 3], [4, 5, "6"]],
            np.ma.masked_array(np.ones((2, 3)), mask=[[1, 0, 0], [0, 0, 0]])]
    for j in junk:
        cases.append((f"junk {type(j).__name__}",
                      lambda j=j: expect((IE, ITE), lambda: f(x=j), "placeholder 'x'")))
    for j in [[1.5, 2], [2**40, 1], [2**31, 0], [-2**31 - 1, 0], np.array([2**40, 1]), [True, 2.5]]:
        cases.append((f"int32 input {j!r}", lambda j=j: expect(ITE, lambda: fq(q=j), "placeholder 'q'")))
    cases.append(("float list overflowing float32",
                  lambda: expect(ITE, lambda: gc.compile(ph((1,), F32, name="h") + 1)(h=[1e300]), "overflow")))

    def still_works():
        for bad in ({}, None, np.ones((3, 3))):
            try:
                f(x=bad)
            except (IE, ITE):
                pass
        np.testing.assert_array_equal(f(x=ok), ok * 2 + 1)
    cases.append(("the function still works after errors", still_works))
    return cases


def _layout_arrays(a):
    """The same values as ``a`` in every memory layout numpy can make."""
    out = [("c-contiguous", a.copy())]
    ro = a.copy()
    ro.setflags(write=False)
    out.append(("read-only", ro))
    if a.ndim:                        # (asfortranarray makes a 0-d array 1-d)
        out.append(("fortran", np.asfortranarray(a)))
        rev = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
        out.append(("negative strides", rev[(slice(None, None, -1),) * a.ndim]))
        wide = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        wide[(slice(None, None, 2),) * a.ndim] = a
        out.append(("strided view", wide[(slice(None, None, 2),) * a.ndim]))
        if a.shape[0] >= 1:
            out.append(("broadcast view (0 strides)", np.broadcast_to(a[:1], a.shape)))
    buf = np.zeros(a.nbytes + a.itemsize + 1, np.uint8)
    un = np.frombuffer(buf.data, a.dtype, count=a.size, offset=1).reshape(a.shape)
    un[...] = a
    out.append(("unaligned (byte offset 1)", un))
    ro_un = un.view()
    ro_un.setflags(write=False)
    out.append(("unaligned read-only", ro_un))
    if a.size:                        # an empty list has lost its shape
        out.append(("nested list", a.tolist()))
    if a.ndim == 2:
        out.append(("matrix subclass", np.asmatrix(a)))
    return out


def _graphs():
    """(name, outputs builder, input specs) for the layout and guard-page cases."""
    rng = np.random.default_rng(0)
    specs = []

    def g(name, build, *arrays):
        specs.append((name, build, arrays))
    a = rng.standard_normal((3, 4))
    w = rng.standard_normal((4, 5))
    lab = np.array([0, 4, 2])
    g("elementwise", lambda x: [gc.tanh(x) * 2.0 - gc.exp(-x)], a)
    g("matmul", lambda x, y: [x @ y, gc.relu(x) @ y + 1.0], a, w)
    g("reductions", lambda x: [gc.sum(x, 0), gc.max(x, 1), gc.mean(x), gc.min(x, (0, 1))], a)
    g("softmax family", lambda x: [gc.softmax(x), gc.log_softmax(x, 0), gc.logsumexp(x, 1)], a)
    g("cross-entropy", lambda x, y: [gc.softmax_cross_entropy(x @ w, y)], a, lab)
    g("one_hot", lambda y: [gc.one_hot(y, 5)], lab)
    g("slicing", lambda x: [x[::-1, 1:3], x[-1, ::-2], x[..., None, 0], x[1:, -1:-5:-1]], a)
    g("concatenate", lambda x, y: [gc.concatenate([x, y[:3, :2]], 1), gc.concatenate([y[:1, :4], x], 0)], a, w)
    g("movement", lambda x: [gc.transpose(x), gc.reshape(x, (2, 6)), gc.broadcast_to(x[:, :1], (2, 3, 4))], a)
    g("int32", lambda x: [x * 3 - 1, gc.sum(x, 1), gc.max(x)], np.arange(12, dtype=np.int32).reshape(3, 4))
    g("bool", lambda x: [gc.where(x, 1.0, -1.0), gc.one_hot(gc.cast(x, I64)[0], 2)], a > 0)
    g("float32", lambda x: [gc.sigmoid(x) @ gc.transpose(x), gc.sum(x * x, 1)], a.astype(np.float32))
    g("0-d", lambda x: [x * 2.0, gc.exp(x)], np.array(0.5))
    g("zero-size", lambda x: [x + 1.0, gc.sum(x, 0), x @ np.ones((4, 2))], np.zeros((0, 4)))
    g("gradient", lambda x, y: gc.grad(gc.mean(gc.softmax_cross_entropy(x @ w, y)), [x]), a, lab)
    return specs


def _build(build, arrays):
    phs = [ph(arr.shape, arr.dtype, name=f"in{k}") for k, arr in enumerate(arrays)]
    outs = build(*phs)
    return phs, outs


def _layout_cases():
    cases = []
    for name, build, arrays in _graphs():
        phs, outs = _build(build, arrays)
        f = gc.compile(outs, inputs=phs)
        fi = gc.compile(outs, inputs=phs, backend="interp")
        for k, arr in enumerate(arrays):
            for lname, variant in _layout_arrays(np.asarray(arr)):
                def case(f=f, fi=fi, k=k, variant=variant, arrays=arrays):
                    args = list(arrays)
                    args[k] = variant
                    plain = list(arrays)
                    plain[k] = np.array(variant, dtype=np.asarray(arrays[k]).dtype)   # C copy
                    before = np.array(variant, copy=True)
                    want = fi(*plain)
                    for got in (f(*args), fi(*args)):           # both backends take it
                        for gv, wv in zip(got, want):
                            assert type(gv) is np.ndarray and gv.shape == wv.shape, (type(gv), gv.shape)
                            np.testing.assert_allclose(gv, wv, rtol=1e-6, atol=1e-9)
                    np.testing.assert_array_equal(np.asarray(variant), before)   # not written
                cases.append((f"{name}: input {k} {lname}", case))
    return cases


def _special_cases():
    """NaN and inf propagate as numpy propagates them (numpy is the oracle)."""
    nan, inf = np.nan, np.inf
    v = np.array([1.0, nan, -inf, inf, 0.0, -0.0, -2.0])
    x = ph(v.shape, name="x")
    m = np.array([[1.0, nan], [inf, 2.0]])
    xm = ph(m.shape, name="m")
    checks = [
        ("exp", gc.exp(x), np.exp(v)), ("log", gc.log(x), np.log(v)), ("sqrt", gc.sqrt(x), np.sqrt(v)),
        ("tanh", gc.tanh(x), np.tanh(v)), ("sigmoid", gc.sigmoid(x), 1 / (1 + np.exp(-v))),
        ("relu", gc.relu(x), np.maximum(v, 0)), ("abs", gc.abs(x), np.abs(v)),
        ("1/x", 1.0 / x, 1.0 / v), ("x - x", x - x, v - v), ("x * 0", x * 0.0, v * 0.0),
        ("x ** 0", x ** 0.0, v ** 0.0), ("1 ** x", 1.0 ** x, np.power(1.0, v)),
        ("x ** 0.5", x ** 0.5, v ** 0.5), ("x ** -1", x ** -1.0, v ** -1.0),
        ("x ** y, y a full array of 0.5", x ** gc.constant(np.full(7, 0.5)), np.power(v, np.full(7, 0.5))),
        ("x ** y, y = 0.5 at run time", x ** gc.placeholder((), "float64", name="e"), v ** 0.5),
        ("maximum", gc.maximum(x, 0.5), np.maximum(v, 0.5)), ("minimum", gc.minimum(0.5, x), np.minimum(0.5, v)),
        ("x > 0", x > 0.0, v > 0), ("x == x", gc.equal(x, x), v == v), ("x != x", gc.not_equal(x, x), v != v),
        ("sum", gc.sum(x), np.sum(v)), ("max", gc.max(x), np.max(v)), ("min", gc.min(x), np.min(v)),
        ("mean", gc.mean(x), np.mean(v)), ("max of a NaN-free part", gc.max(x[0:1]), np.max(v[:1])),
        ("where", gc.where(x > 0.0, x, -x), np.where(v > 0, v, -v)),
        ("cast to bool", gc.cast(x, B), v.astype(bool)),
        ("cast to float32", gc.cast(x, F32), v.astype(np.float32)),
        ("softmax", gc.softmax(xm), None), ("matmul", xm @ xm, m @ m),
        ("max rows", gc.max(xm, 1), np.max(m, 1)), ("sum cols", gc.sum(xm, 0), np.sum(m, 0)),
    ]
    cases = []
    for name, out, want in checks:
        def case(out=out, want=want):
            f = gc.compile(out)
            feeds = {p.name: {"x": v, "m": m, "e": np.array(0.5)}[p.name] for p in f.graph.placeholders}
            got = f(**feeds)
            ref = gc.compile(out, backend="interp")(**feeds) if want is None else np.asarray(want)
            with np.errstate(all="ignore"):
                assert got.dtype == ref.dtype, (got.dtype, ref.dtype)
                np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
                np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0, equal_nan=True)
        cases.append((f"special values: {name}", case))
    return cases


def _label_cases():
    cases = []
    rng = np.random.default_rng(1)
    for ldt in (np.int32, np.int64):
        info = np.iinfo(ldt)
        for bad in (-1, 5, 6, 2**20, int(info.max), int(info.min), -2**20):
            for what, build in [
                ("softmax_cross_entropy", lambda x, y: gc.softmax_cross_entropy(x, y)),
                ("one_hot", lambda x, y: gc.one_hot(y, 5)),
                ("cross-entropy gradient",
                 lambda x, y: gc.grad(gc.sum(gc.softmax_cross_entropy(x, y)), [x])[0]),
            ]:
                def case(build=build, bad=bad, ldt=ldt):
                    logits = rng.standard_normal((4, 5))
                    labels = np.array([0, 1, bad, 4], ldt)
                    x, y = ph((4, 5), name="x"), ph((4,), np.dtype(ldt).name, name="y")
                    f = gc.compile(build(x, y), inputs=[x, y])
                    expect(gc.RuntimeCheckError, lambda: f(guarded(logits), guarded(labels)),
                           r"out of range \[0, 5\)")
                    labels[2] = 3                  # and the function still works
                    f(guarded(logits), guarded(labels))
                cases.append((f"{what}: {np.dtype(ldt).name} label {bad}", case))
    for bad in (-1, -2**40):
        def pow_case(bad=bad):
            xi = ph((3,), I64, name="xi")
            f = gc.compile(xi ** ph((3,), I64, name="e"))
            expect(gc.RuntimeCheckError, lambda: f(xi=np.array([2, 3, 4]), e=np.array([1, bad, 2])),
                   "negative integer powers")
        cases.append((f"integer power {bad}", pow_case))
    return cases


# Guard pages: an array whose data ends (or starts) exactly at a PROT_NONE page.

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_KEEP = []


def guarded(a, at_end=True):
    """A C-contiguous, aligned copy of ``a`` placed so that the byte after its
    last element (``at_end``) or before its first is an unreadable page."""
    a = np.array(a, order="C")        # (ascontiguousarray makes a 0-d array 1-d)
    page = mmap.PAGESIZE
    nbytes = max(a.nbytes, 1)
    pages = (nbytes + page - 1) // page
    m = mmap.mmap(-1, (pages + 2) * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    for p in (base, base + (pages + 1) * page):
        if _libc.mprotect(p, page, 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect failed")
    start = page + (pages * page - a.nbytes if at_end else 0)
    out = np.frombuffer(m, np.uint8, count=a.nbytes, offset=start).view(a.dtype).reshape(a.shape)
    out[...] = a
    _KEEP.append(m)
    return out


def _guard_cases():
    cases = []
    for name, build, arrays in _graphs():
        phs, outs = _build(build, arrays)
        f = gc.compile(outs, inputs=phs)
        want = gc.compile(outs, inputs=phs, backend="interp")(*arrays)
        for at_end in (True, False):
            def case(f=f, arrays=arrays, want=want, at_end=at_end):
                args = [guarded(np.asarray(arr), at_end) for arr in arrays]
                for gv, wv in zip(f(*args), want):
                    np.testing.assert_allclose(gv, wv, rtol=1e-6, atol=1e-9)
            cases.append((f"{name}: inputs against a guard page ({'after' if at_end else 'before'})", case))
    x = ph((3, 4), name="gx")
    for k in [(slice(None), slice(-1, None, -1)), (slice(None, None, -3), 0), (-1, slice(None, None, -1))]:
        def slice_case(k=k):
            a = np.arange(12.0).reshape(3, 4)
            for at_end in (True, False):
                np.testing.assert_array_equal(gc.compile(x[k])(gx=guarded(a, at_end)), a[k])
        cases.append((f"slice {k} against guard pages", slice_case))
    return cases


def _huge_cases():
    import inspect
    levels = [{"opt_level": k} for k in range(4)] \
        if "opt_level" in inspect.signature(gc.compile).parameters else [{}]

    def zero_size_with_huge_dims(kw):
        # zero elements, but a 2**40-long outer dimension: must not loop 2**40 times
        z = ph((2**40, 0), name="z")
        f = gc.compile([z + 1.0, gc.sum(z, 0), gc.exp(gc.transpose(z)) @ z], **kw)
        a, b, c = f(z=np.zeros((2**40, 0)))
        assert a.shape == (2**40, 0) and b.shape == (0,) and c.shape == (0, 0)

    def output_too_large_to_allocate():
        # within graphc's size limit, but not allocatable here: numpy's clear
        # MemoryError when the output is allocated, before any native code
        y = ph((1,), name="y")
        f = gc.compile(gc.broadcast_to(y, (2**42,)) * 2.0)
        expect(MemoryError, lambda: f(y=np.ones(1)), "Unable to allocate")
    return [(f"zero-size tensor with a 2**40 dimension {kw}", lambda kw=kw: zero_size_with_huge_dims(kw))
            for kw in levels] + [("an output too large to allocate", output_too_large_to_allocate)]


CATEGORIES = {"binding": _binding_cases, "layouts": _layout_cases, "special": _special_cases,
              "labels": _label_cases, "guard pages": _guard_cases, "huge": _huge_cases}


def run_category(cat: str) -> None:
    """Run one category here, printing CASE before and PASS/FAIL after each
    (a crash shows as the last CASE line without a result)."""
    import warnings
    warnings.simplefilter("ignore")
    for name, fn in CATEGORIES[cat]():
        print("CASE", name, flush=True)
        try:
            with np.errstate(all="ignore"):
                fn()
            print("PASS", name, flush=True)
        except Exception as e:   # noqa: BLE001 - reported to the parent
            msg = f"{type(e).__name__}: {e}".replace("\n", " | ")
            print("FAIL", name, "::", msg[:800], flush=True)


@pytest.mark.parametrize("cat", list(CATEGORIES))
def test_call_time_category(cat, isolated):
    """Every hostile call of one category, in a fresh interpreter: no crash
    (a segfault fails the test), and every case behaves."""
    r = isolated(f"import sys; sys.path.insert(0, 'tests'); import test_hostile as H; "
                 f"H.run_category({cat!r})", timeout=600,
                 env={"MALLOC_PERTURB_": "165"} if cat in ("labels", "guard pages") else None)
    lines = r.stdout.splitlines()
    started = [ln[5:] for ln in lines if ln.startswith("CASE ")]
    passed = [ln for ln in lines if ln.startswith("PASS ")]
    failed = [ln for ln in lines if ln.startswith("FAIL ")]
    assert started, f"no case ran\n{r.stderr[-3000:]}"
    assert not failed, f"{len(failed)} of {len(started)} cases failed:\n" + "\n".join(failed[:20])
    assert len(passed) == len(started), "some case produced no result"


def count() -> dict:
    """How many hostile inputs the suite tries, by kind."""
    n = {"construction": len(CONSTRUCTION)}
    with np.errstate(all="ignore"):
        for cat, fn in CATEGORIES.items():
            n[cat] = len(fn())
    n["total"] = sum(n.values())
    return n


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    print(count())
