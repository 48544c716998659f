"""``@gc.custom_gradient``: a function with a gradient of your choosing.

TensorFlow's semantics: the decorated function returns ``(y, grad_fn)``;
``grad_fn(dy)`` returns one cotangent per input (``None`` for no gradient).
``y`` may also be a tuple of outputs, then ``grad_fn(*dys)`` gets one
cotangent per output.

How it works. Each output becomes a node of the primitive ``custom_vjp``::

    %5 = custom_vjp %3, %0, %1 {grad=<grad_fn of clip_gradient>, output=0}

whose first input is the forward value ``y`` (any subgraph, computed as
usual) and whose other inputs are the function's inputs (and the trainable
parameters it captured, see ``variables`` below), so the graph shows what
the gradient depends on. Its value is ``y``; its VJP rule calls ``grad_fn``,
which builds ordinary graph nodes (so a ``grad_fn`` made of differentiable
ops can be differentiated again: grad-of-grad works). The node's ``grad``
attribute is an identity token holding ``grad_fn`` (hash-consing keys
attributes by identity, so two calls never merge before differentiation).

Once gradients exist the wrapper has no job left: the ``simplify`` pass
replaces it by ``y`` (rule ``custom-gradient``, like ``stop_gradient``), so
the forward computation is fused like any other. Without ``simplify`` (at
``opt_level=0``) it is lowered as an identity index map (a copy); the
interpreter evaluates it as ``y``.

``variables``: a trainable parameter used inside the function but not passed
as an input would silently get no gradient through a custom rule. As in
TensorFlow, ``grad_fn`` must then accept a ``variables`` keyword: it is
called as ``grad_fn(dy, variables=[p, ...])`` and returns
``(input_cotangents, variable_cotangents)``; otherwise the call raises a
``TypeError`` naming the parameters.
"""
from __future__ import annotations

import functools
import inspect
import itertools

import numpy as np

from ..errors import AttrError, GraphcError, OpArgError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from ..ops.attrs import integer, show
from ..ops.common import as_node, constant
from ..ops.movement import broadcast_to
from ..ops.registry import OpDef, make, register

_serial = itertools.count(1)


class GradToken:
    """Identity of one call of a custom-gradient function: holds ``grad_fn``.
    Hashed and compared by identity; its repr is unique and readable."""

    __slots__ = ("fn_name", "grad_fn", "n_inputs", "n_outputs", "variables", "serial",
                 "outputs", "__weakref__")

    def __init__(self, fn_name, grad_fn, n_inputs, n_outputs, variables):
        self.fn_name = fn_name
        self.grad_fn = grad_fn
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs
        self.variables = tuple(variables)
        self.serial = next(_serial)
        self.outputs: tuple = ()        # (shape, dtype) of each output

    def __repr__(self):
        # not unique on purpose: the compiled code never depends on grad_fn (the
        # wrapper is the identity on its first input), so two wrappers that print
        # alike may share compiled code (the compile cache keys attributes by repr)
        return f"<grad_fn of {self.fn_name}>"


def _infer(inputs, attrs):
    if not inputs:
        raise TypeError("custom_vjp needs the forward value as its first input")
    return inputs[0].shape, inputs[0].dtype


def _ref(y, *rest, grad=None, output=0):
    return y


def _lower_at(em, n, idx):
    return em.eval(n.inputs[0], idx)


def _as_cotangent(ct, target: Node, tok: GradToken, what: str):
    if ct is None:
        return None
    if not isinstance(ct, Node):
        try:
            ct = constant(np.asarray(ct, dtype=target.dtype if D.is_float(target.dtype)
                                     else np.float64))
        except (TypeError, ValueError) as e:
            raise TypeError(f"custom_gradient {tok.fn_name}: grad_fn returned a "
                            f"{type(ct).__name__} for {what}, not a graph node: {e}") from None
    try:     # a broadcast cotangent is summed back to the input's shape by gc.grad
        np.broadcast_shapes(ct.shape, target.shape)
    except ValueError:
        raise ShapeError(f"custom_gradient {tok.fn_name}: grad_fn returned a cotangent of "
                         f"shape {ct.shape} for {what}, which has shape {target.shape}") from None
    return ct


def _vjp(node: Node, g: Node):
    tok: GradToken = node.attrs["grad"]
    k = node.attrs["output"]
    if tok.n_outputs == 1:
        dys = [g]
    else:
        # grad_fn is linear in the output cotangents: the VJP of output k is
        # grad_fn with zeros for the others (the contributions add up)
        dys = []
        for j, (shape, dtype) in enumerate(tok.outputs):
            if j == k:
                dys.append(g)
            elif D.is_float(dtype):
                dys.append(broadcast_to(constant(0, dtype), shape))
            else:
                dys.append(None)
    n_in = tok.n_inputs
    xs = node.inputs[1:1 + n_in]
    vs = node.inputs[1 + n_in:]
    if vs:
        res = tok.grad_fn(*dys, variables=list(vs))
        if not (isinstance(res, (tuple, list)) and len(res) == 2):
            raise TypeError(f"custom_gradient {tok.fn_name}: with variables, grad_fn must return "
                            "(input cotangents, variable cotangents)")
        in_cts, var_cts = res
        in_cts = _as_list(in_cts, n_in, tok, "inputs")
        var_cts = _as_list(var_cts, len(vs), tok, "variables")
    else:
        in_cts = _as_list(tok.grad_fn(*dys), n_in, tok, "inputs")
        var_cts = []
    out = [None]
    out += [_as_cotangent(c, x, tok, f"input {i}") for i, (c, x) in enumerate(zip(in_cts, xs))]
    out += [_as_cotangent(c, v, tok, f"variable {v.name!r}") for c, v in zip(var_cts, vs)]
    return out


def _as_list(res, n, tok, what):
    if isinstance(res, (tuple, list)):
        res = list(res)
    elif n == 1:
        res = [res]
    else:
        raise TypeError(f"custom_gradient {tok.fn_name}: grad_fn must return one cotangent per "
                        f"{what[:-1]} ({n}), got a {type(res).__name__}")
    if len(res) != n:
        raise TypeError(f"custom_gradient {tok.fn_name}: grad_fn returned {len(res)} "
                        f"cotangent(s) for {n} {what}")
    return res


def _check_attrs(inputs, attrs):
    tok, k = attrs["grad"], attrs["output"]
    if not isinstance(tok, GradToken):
        raise AttrError(f"custom_vjp: attribute grad={show(tok)} must be the GradToken of a "
                        "@gc.custom_gradient call (build it with the decorator, not gc.make)")
    k = integer("custom_vjp", "output", k, 0, tok.n_outputs - 1)
    want = 1 + tok.n_inputs + len(tok.variables)
    if len(inputs) != want:
        raise OpArgError(f"custom_vjp of {tok.fn_name} takes {want} inputs (the output, "
                        f"{tok.n_inputs} input(s), {len(tok.variables)} variable(s)), "
                        f"got {len(inputs)}")
    if tok.outputs and (inputs[0].shape, inputs[0].dtype) != tuple(tok.outputs[k]):
        raise ShapeError(f"custom_vjp of {tok.fn_name}: input 0 is {inputs[0].dtype}"
                         f"{list(inputs[0].shape)}, but output {k} is {tok.outputs[k][1]}"
                         f"{list(tok.outputs[k][0])}")
    return {"grad": tok, "output": k}


_opdef = register(OpDef("custom_vjp", "index", _infer, _ref, _vjp, lower_at=_lower_at,
                        nin=(1, None), attrs=("grad", "output"), check_attrs=_check_attrs,
                        doc="the value of input 0, with the gradient rule of a @custom_gradient "
                            "function (removed by `simplify` after differentiation)"))
_opdef.builtin = True      # part of graphc: its code may be cached on disk like a built-in's


def _captured_variables(ys, xs) -> list:
    """Trainable float parameters the outputs depend on other than through the inputs."""
    stop = {x.id for x in xs}
    found, seen, stack = [], set(), list(ys)
    while stack:
        n = stack.pop()
        if n.id in seen or n.id in stop:
            continue
        seen.add(n.id)
        if n.op == "parameter":
            if n.trainable and D.is_float(n.dtype):
                found.append(n)
            continue
        stack.extend(n.inputs)
    return sorted(found, key=lambda p: p.id)


def _accepts_variables(fn) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return any(p.name == "variables" or p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def custom_gradient(f):
    """Decorator: ``f(*inputs) -> (y, grad_fn)`` with ``grad_fn(dy) -> cotangents``.

    Example (gradient clipping in the backward pass only)::

        @gc.custom_gradient
        def clip_gradient(x):
            def grad_fn(dy):
                return gc.minimum(gc.maximum(dy, -1.0), 1.0)
            return x, grad_fn

    Positional arguments are the differentiable inputs (Python numbers and
    arrays become constants); keyword arguments are passed through as they
    are. See the module docstring for outputs tuples and ``variables``.
    """
    if not callable(f):
        raise TypeError(f"custom_gradient: expected a function, got {type(f).__name__}")
    fname = getattr(f, "__qualname__", getattr(f, "__name__", "function"))

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        xs = [as_node(a) for a in args]
        out = f(*xs, **kwargs)
        if not (isinstance(out, tuple) and len(out) == 2 and callable(out[1])):
            raise TypeError(f"custom_gradient {fname}: the function must return (y, grad_fn) with "
                            f"a callable grad_fn, got {type(out).__name__}")
        ys, grad_fn = out
        multi = isinstance(ys, (tuple, list))
        ys = [as_node(y) for y in (ys if multi else [ys])]
        if not ys:
            raise GraphcError(f"custom_gradient {fname}: the function returned no outputs")
        variables = _captured_variables(ys, xs)
        if variables and not _accepts_variables(grad_fn):
            names = ", ".join(repr(v.name) for v in variables)
            raise TypeError(f"custom_gradient {fname}: the function uses trainable parameter(s) "
                            f"{names} that are not among its inputs, so its gradient rule must "
                            "cover them: give grad_fn a `variables` keyword (it is called as "
                            "grad_fn(dy, variables=[...]) and returns (input cotangents, variable "
                            "cotangents)), or pass the parameters as inputs")
        tok = GradToken(fname, grad_fn, len(xs), len(ys), variables)
        tok.outputs = tuple((y.shape, y.dtype) for y in ys)
        nodes = tuple(make("custom_vjp", (y, *xs, *variables), {"grad": tok, "output": k})
                      for k, y in enumerate(ys))
        return nodes if multi else nodes[0]

    wrapper.custom_gradient = True
    return wrapper
