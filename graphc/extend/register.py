"""``gc.register_op``: a new primitive op in one registration.

A registration gives the op's name, its numpy ``reference``, its ``vjp``
rule, optionally its shape and dtype rules, and one lowering:

* ``scalar=`` — one output element from the input elements, written with
  the scalar builder ``s`` (``graphc/backend/llvm/scalar.py``: ``s.exp(x)``,
  ``s.log(x)``, ``s.select(c, a, b)``, ``s.maximum(a, b)``, operators on the
  values). Inputs broadcast as in numpy, so the shape rule is broadcasting.
  The op is an ``elementwise`` op like ``exp``: it fuses into loops, GEMM
  epilogues and reductions, and LLVM vectorizes it.
* ``callback=`` — anything else: the native kernel calls back into Python
  for this node (``callback.py``). The op is opaque to fusion (it gets a
  kernel of its own and reads its inputs from memory).

It wraps :class:`graphc.ops.registry.OpDef`: the op is then known to every
pass, the interpreter, ``gc.grad`` and the backend by its name, like the
built-in ops. :func:`graphc.check_op` verifies a registration.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import AttrError, DTypeError, GraphcError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from ..ops import registry
from ..ops.attrs import show
from ..ops.common import as_node, broadcast_shapes
from ..ops.elementwise import promote
from ..ops.registry import OpDef, OpKind


@dataclass
class Registration:
    """Everything a user registration said, kept for :func:`check_op`."""
    name: str
    lowering: str                     # "scalar" or "callback"
    nin: int
    reference: Callable
    vjp: Callable | None
    shape: Callable | None
    dtype: Callable | str | None
    scalar: Callable | None
    callback: Callable | None
    attrs: dict
    samples: list | None
    doc: str
    function: Callable | None = None
    opdef: OpDef | None = None
    extra: dict = field(default_factory=dict)


USER_OPS: dict[str, Registration] = {}
# OpDefs replaced or unregistered are kept, never freed: the in-memory compile
# cache keys a user op by its OpDef's id(), which must not be reused
_RETIRED: list[OpDef] = []
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_ATTR_TYPES = (bool, int, float, str, type(None), np.dtype)


def _count_inputs(reference, nin, attr_names=()):
    if nin is not None:
        if not isinstance(nin, int) or isinstance(nin, bool) or nin < 0:
            raise ValueError(f"register_op: nin must be a non-negative int, got {nin!r}")
        return nin
    if isinstance(reference, np.ufunc):
        return reference.nin
    try:
        sig = inspect.signature(reference)
    except (TypeError, ValueError):
        raise TypeError("register_op: cannot read the reference's signature; give nin=") from None
    n = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            raise TypeError("register_op: the reference takes *args; give nin= (the number of "
                            "array inputs)")
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty \
                and p.name not in attr_names:
            n += 1
    return n


def _check_attr(op: str, key: str, v):
    if isinstance(v, (list, tuple)):
        return tuple(_check_attr(op, key, x) for x in v)
    if isinstance(v, np.generic):
        return v.item()
    if not isinstance(v, _ATTR_TYPES):
        raise AttrError(f"{op}: attribute {key}={show(v)} must be a number, string, bool, None or "
                        "a tuple of them (attributes are part of the node's identity)")
    return v


def _shape_of(op, rule_out):
    try:
        shape = tuple(int(s) for s in rule_out)
        ok = all(s >= 0 for s in shape) and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in rule_out)
    except TypeError:
        ok = False
    if not ok:
        raise ShapeError(f"{op}: the shape rule returned {rule_out!r}, not a tuple of "
                         "non-negative ints")
    return shape


def _make_infer(reg: Registration):
    name = reg.name

    def infer(inputs, attrs):
        if len(inputs) != reg.nin:
            raise TypeError(f"{name} takes {reg.nin} input(s), got {len(inputs)}")
        shapes = [i.shape for i in inputs]
        dts = [i.dtype for i in inputs]
        if reg.lowering == "scalar" and len(set(dts)) > 1:
            raise DTypeError(f"{name}: operand dtypes differ: " + ", ".join(map(str, dts)))
        try:
            if reg.shape is None:
                shape = broadcast_shapes(name, *shapes)
            else:
                shape = _shape_of(name, reg.shape(*shapes, **attrs))
            if reg.dtype is None:
                dtype = dts[0] if dts else D.float64
            elif callable(reg.dtype):
                dtype = reg.dtype(*dts, **attrs)
            else:
                dtype = reg.dtype
        except GraphcError as e:
            if name in str(e):
                raise
            raise type(e)(f"{name}: {e}") from None
        except Exception as e:  # a user rule rejecting its input: a shape error at the user's line
            raise ShapeError(f"{name}: the shape/dtype rule rejected inputs "
                             f"{', '.join(f'{d}{list(s)}' for s, d in zip(shapes, dts))}: "
                             f"{type(e).__name__}: {e}") from e
        try:
            dtype = D.as_dtype(dtype)
        except GraphcError:
            raise DTypeError(f"{name}: the dtype rule returned {dtype!r}, not a supported "
                             "dtype") from None
        return shape, dtype
    return infer


def _make_vjp(reg: Registration):
    name = reg.name
    if reg.vjp is None:
        def no_vjp(node, g):
            raise GraphcError(f"op {name!r} was registered without vjp=, so it has no gradient "
                              f"(node {node.name}, built at {node.source}); register a vjp rule "
                              "or wrap its use in gc.stop_gradient")
        return no_vjp

    def vjp(node, g):
        res = reg.vjp(node, g)
        if isinstance(res, Node) or not isinstance(res, (list, tuple)):
            res = [res]
        res = list(res)
        if len(res) != len(node.inputs):
            raise TypeError(f"the vjp rule of {name!r} returned {len(res)} cotangent(s) for "
                            f"{len(node.inputs)} input(s)")
        return [None if c is None else as_node(c) for c in res]
    return vjp


def _make_scalar(reg: Registration):
    name = reg.name

    def scalar(s, n, *args):
        try:
            v = reg.scalar(s, *args, **n.attrs)
        except (TypeError, ValueError) as e:
            ins = ", ".join(str(i.dtype) for i in n.inputs)
            raise type(e)(f"the scalar lowering of {name!r} (node {n.name}, built at {n.source}) "
                          f"failed for inputs of dtype {ins}: {e}") from e
        if isinstance(v, (int, float, bool, np.generic)):
            v = s.const(v, n.dtype)
        if not hasattr(v, "dtype") or not hasattr(v, "v"):
            raise TypeError(f"the scalar lowering of {name!r} returned a {type(v).__name__}, "
                            "not a scalar value of the builder s")
        return v
    return scalar


def register_op(name: str, *, reference: Callable, vjp: Callable | None = None,
                scalar: Callable | None = None, callback: Callable | bool | None = None,
                shape: Callable | None = None, dtype=None, nin: int | None = None,
                attrs: dict | None = None, samples: list | None = None, doc: str = "",
                replace: bool = False, cost: int | None = None,
                foldable: bool = True) -> Callable:
    """Register a new primitive op; return the function that builds it.

    ``reference(*arrays, **attrs) -> array``: the numpy meaning (the
    interpreter, constant folding and :func:`check_op` use it).
    ``vjp(node, g) -> [cotangent or None per input]``: written with graphc
    ops, ``node.inputs`` and ``node`` itself (the output). Without it the op
    has no gradient (``gc.grad`` through it raises).
    ``scalar(s, *xs, **attrs) -> value`` (elementwise lowering) or
    ``callback(*arrays, **attrs) -> array`` (host callback; ``True`` uses the
    reference). ``shape(*input_shapes, **attrs) -> tuple`` (default: numpy
    broadcasting; scalar ops always broadcast) and ``dtype(*input_dtypes,
    **attrs) -> dtype`` or a fixed dtype (default: the input dtype).
    ``attrs``: attribute names and default values (keywords of the built
    function). ``samples``: inputs for :func:`check_op` (tuples of arrays, or
    of shapes for random float64 arrays). ``nin``: the number of inputs, when
    the reference's signature does not tell. ``cost``: the cost of computing
    one element again, which fusion weighs before recomputing the op in
    several kernels (default 1, arithmetic; 4 is that of ``exp`` or a
    division). ``foldable=False``: constant folding never evaluates the op at
    compile time (a reference with side effects, or one too slow to run then).

    Scalar ops promote their operands as numpy does (``op(x32, 2.0)`` stays
    float32); callback ops take their inputs as given.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"register_op: op name must be an identifier (dots allowed), got {name!r}")
    if name in registry.OPS and name not in USER_OPS:
        raise ValueError(f"register_op: {name!r} is a built-in op; choose another name")
    if name in USER_OPS and not replace:
        raise ValueError(f"register_op: an op named {name!r} is already registered "
                         "(pass replace=True to redefine it, or gc.unregister_op it first)")
    if not callable(reference):
        raise TypeError(f"register_op {name!r}: reference must be a function of numpy arrays")
    if vjp is not None and not callable(vjp):
        raise TypeError(f"register_op {name!r}: vjp must be a function (node, g) -> cotangents")
    if (scalar is None) == (callback is None or callback is False):
        raise TypeError(f"register_op {name!r}: give exactly one lowering: scalar= (an elementwise "
                        "rule written with the scalar builder) or callback= (a numpy function "
                        "called from the native kernel)")
    if scalar is not None and not callable(scalar):
        raise TypeError(f"register_op {name!r}: scalar must be a function (s, *xs, **attrs)")
    if callback is True:
        callback = reference
    if callback is not None and not callable(callback):
        raise TypeError(f"register_op {name!r}: callback must be a function of numpy arrays")
    if scalar is not None and shape is not None:
        raise TypeError(f"register_op {name!r}: a scalar lowering computes each output element "
                        "from the input elements at the same index, so its shape rule is numpy "
                        "broadcasting; use callback= for ops with another shape rule")
    if shape is not None and not callable(shape):
        raise TypeError(f"register_op {name!r}: shape must be a function (*input_shapes, **attrs)")
    if dtype is not None and not callable(dtype):
        dtype = D.as_dtype(dtype)
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int) or cost < 0):
        raise ValueError(f"register_op {name!r}: cost must be an int >= 0 (1: arithmetic, "
                         f"4: exp or a division), got {cost!r}")
    if not isinstance(foldable, bool):
        raise TypeError(f"register_op {name!r}: foldable must be True or False, got {foldable!r}")
    defaults = {}
    for k, v in (attrs or {}).items():
        if not isinstance(k, str) or not k.isidentifier():
            raise ValueError(f"register_op {name!r}: attribute names must be identifiers, got {k!r}")
        defaults[k] = _check_attr(name, k, v)
    n_in = _count_inputs(reference, nin, defaults)
    if scalar is not None and n_in == 0:
        raise TypeError(f"register_op {name!r}: an elementwise op needs at least one input")

    reg = Registration(name, "scalar" if scalar is not None else "callback", n_in, reference,
                       vjp, shape, dtype, scalar, callback, defaults, samples,
                       doc or (getattr(reference, "__doc__", "") or "").strip().split("\n")[0])
    infer = _make_infer(reg)
    checks = dict(nin=n_in, attrs=tuple(defaults), cost=cost, foldable=foldable,
                  check_attrs=lambda ins, a: {k: _check_attr(name, k, v) for k, v in a.items()})
    if scalar is not None:
        opdef = OpDef(name, OpKind.ELEMENTWISE, infer, reference, _make_vjp(reg),
                      scalar=_make_scalar(reg), doc=reg.doc, **checks)
    else:
        from .callback import callback_kernel
        opdef = OpDef(name, OpKind.KERNEL, infer, reference, _make_vjp(reg),
                      kernel=callback_kernel(reg), doc=reg.doc, **checks)
        opdef.extra["opaque"] = f"host callback into Python ({_describe(callback)})"
        opdef.extra["calls_host"] = True     # runs Python: on the calling thread (planner)
    opdef.extra["user"] = reg
    reg.opdef = opdef
    if name in USER_OPS:
        _RETIRED.append(USER_OPS[name].opdef)
    reg.function = _make_function(reg)
    registry.register(opdef)
    USER_OPS[name] = reg
    return reg.function


def _describe(fn) -> str:
    mod = getattr(fn, "__module__", None)
    qn = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{mod}.{qn}" if mod else qn


def _make_function(reg: Registration):
    name = reg.name

    def op(*inputs, **kw) -> Node:
        if len(inputs) != reg.nin:
            raise TypeError(f"{name}() takes {reg.nin} input(s), got {len(inputs)}")
        unknown = set(kw) - set(reg.attrs)
        if unknown:
            known = ", ".join(reg.attrs) or "none"
            raise TypeError(f"{name}() got unknown attribute(s) {sorted(unknown)} (known: {known})")
        attrs = dict(reg.attrs)
        attrs.update({k: _check_attr(name, k, v) for k, v in kw.items()})
        if reg.lowering == "scalar":
            nodes = promote(name, *inputs) if len(inputs) > 1 else [as_node(inputs[0])]
        else:
            nodes = [as_node(x) for x in inputs]
        if USER_OPS.get(name) is not reg:
            raise GraphcError(f"op {name!r} has been unregistered or redefined; use the function "
                              "the newest register_op returned")
        return registry.make(name, nodes, attrs)

    op.__name__ = name.replace(".", "_")
    op.__qualname__ = op.__name__
    op.__doc__ = reg.doc or f"The user-registered op {name!r}."
    op.op_name = name
    return op


def unregister_op(name: str) -> None:
    """Remove an op added by :func:`register_op` (built-in ops cannot be removed).
    Graphs that still use it can no longer be compiled."""
    if name not in USER_OPS:
        if name in registry.OPS:
            raise ValueError(f"unregister_op: {name!r} is a built-in op")
        raise ValueError(f"unregister_op: no user-registered op named {name!r}")
    _RETIRED.append(USER_OPS.pop(name).opdef)
    registry.OPS.pop(name, None)


def op_function(name: str) -> Callable:
    """The function that builds the user-registered op ``name``."""
    try:
        return USER_OPS[name].function
    except KeyError:
        raise ValueError(f"no user-registered op named {name!r} (known: "
                         f"{', '.join(sorted(USER_OPS)) or 'none'})") from None


def floating(*dtypes, **attrs):
    """A dtype rule: the (common) input dtype, which must be floating."""
    dt = dtypes[0]
    if not D.is_float(dt):
        raise DTypeError(f"needs floating inputs, got {dt}; cast with .astype('float64')")
    return dt
