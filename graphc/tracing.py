"""``@gc.function`` (alias ``gc.jit``): trace a Python function of arrays into
a graph, compile it once per signature, call the compiled code.

On a call, each argument is either an *array* (a numpy array, or anything
with a shape and dtype: it becomes a placeholder) or *static* (any other
hashable Python value: part of the signature, seen by the Python code as
itself). The signature is the tuple of (dtype, shape) per array — with
``batch=`` the leading axis of every array of rank >= 1 is one symbolic
dim, so its size is not part of the signature — and the static values. A
new signature traces the function again: it runs once on placeholders,
its returned nodes (a node, a tuple/list of nodes or a dict of them) are
compiled, and the compiled function is kept for that signature. Parameters
the function reads (an ``nn`` Module's, or any ``gc.parameter``) are read
at each call, as in any compiled graph; ``gc.assign(p, value)`` inside the
function makes the call write ``value`` into ``p`` (an optimizer's updates:
``gc.assign(opt.updates(loss, params))``).

``f.traces`` counts traces; beyond ``max_traces`` (5) every new trace
warns (:class:`RetraceWarning`), naming the signatures seen: a function
traced per batch size is the recompilation storm a symbolic ``batch=`` cures.
"""
from __future__ import annotations

import functools
import threading
import warnings

import numpy as np

from .autodiff import grad
from .errors import GraphcError
from .ir.dim import Dim
from .ir.node import Node, attr_key


class RetraceWarning(UserWarning):
    """A traced function was traced again more often than ``max_traces``."""


class TraceError(GraphcError, TypeError):
    """A traced function was given or returned something it cannot trace."""


_local = threading.local()


def _stack() -> list:
    s = getattr(_local, "stack", None)
    if s is None:
        s = _local.stack = []
    return s


def assign(param, value=None) -> None:
    """Inside a traced function: the call writes ``value`` into parameter
    ``param`` (after computing every output from the old values). A dict
    ``{param: value}`` assigns each."""
    st = _stack()
    if not st:
        raise TraceError("gc.assign: only inside a function traced by @gc.function")
    items = param.items() if isinstance(param, dict) else [(param, value)]
    for p, v in items:
        if not isinstance(p, Node) or p.op != "parameter":
            raise TraceError(f"gc.assign: the target must be a gc.parameter, got {p!r}")
        st[-1][p] = v


def _is_array(v) -> bool:
    return isinstance(v, np.ndarray) or (hasattr(v, "shape") and hasattr(v, "dtype")
                                         and not isinstance(v, Node))


class Function:
    """A traced function (see the module's doc). Inspection: ``traces``,
    ``signatures``, ``compiled`` (signature -> CompiledFunction) and, of the
    last call's compiled function, ``report()``, ``passes``, ``llvm_ir``,
    ``graph``."""

    def __init__(self, fn, batch=None, max_traces: int = 5, **options):
        if isinstance(batch, bool) or not (batch is None or isinstance(batch, (Dim, int))):
            raise TypeError(f"gc.function: batch must be a gc.Dim or an int bound, got {batch!r}")
        self.fn = fn
        self.batch = Dim("batch", max=batch) if isinstance(batch, int) else batch
        self.max_traces = max_traces
        self.options = options
        self.compiled: dict = {}
        self.traces = 0
        self.last = None
        functools.update_wrapper(self, fn)

    @property
    def signatures(self) -> list:
        return list(self.compiled)

    def _signature(self, args, kwargs):
        key, arrays = [], []
        for where, v in [(k, a) for k, a in enumerate(args)] + sorted(kwargs.items()):
            if _is_array(v):
                a = np.asarray(v)
                if a.dtype.kind not in "biuf":
                    raise TraceError(f"{self.__name__}: argument {where!r} has dtype {a.dtype}")
                shape = a.shape
                if self.batch is not None and a.ndim:
                    shape = (self.batch.name,) + shape[1:]
                key.append(("array", where, a.dtype.str, shape))
                arrays.append((where, a))
            else:
                try:
                    hash(v)
                except TypeError:
                    raise TraceError(f"{self.__name__}: argument {where!r} is a "
                                     f"{type(v).__name__}, neither an array nor a hashable static "
                                     f"value") from None
                key.append(("static", where, attr_key(v) if not callable(v) else id(v)))
        return tuple(key), arrays

    def _trace(self, args, kwargs, key):
        args, kwargs = list(args), dict(kwargs)
        phs = []
        for k, v in [(k, a) for k, a in enumerate(args)] + sorted(kwargs.items()):
            if not _is_array(v):
                continue
            a = np.asarray(v)
            shape = a.shape
            if self.batch is not None and a.ndim:
                shape = (self.batch,) + shape[1:]
            from .ops.common import placeholder
            name = k if isinstance(k, str) else f"arg{k}"
            p = placeholder(shape, a.dtype, name=name)
            phs.append(p)
            if isinstance(k, str):
                kwargs[k] = p
            else:
                args[k] = p
        _stack().append({})
        try:
            out = self.fn(*args, **kwargs)
        finally:
            updates = _stack().pop()
        structure, nodes = _flatten(self.__name__, out)
        from .compiler import compile as gc_compile
        f = gc_compile(nodes, inputs=phs, updates=updates or None, **self.options)
        self.traces += 1
        if self.traces > self.max_traces:
            warnings.warn(f"{self.__name__} was traced {self.traces} times (signatures: "
                          f"{list(self.compiled) + [key]}); each trace compiles. Arrays whose "
                          f"leading size varies: give batch=gc.Dim(...)", RetraceWarning,
                          stacklevel=3)
        return f, structure

    def __call__(self, *args, **kwargs):
        key, arrays = self._signature(args, kwargs)
        entry = self.compiled.get(key)
        if entry is None:
            entry = self.compiled[key] = self._trace(args, kwargs, key)
        f, structure = entry
        self.last = f
        results = f(*[a for _, a in arrays])
        return _unflatten(structure, results if isinstance(results, tuple) else (results,))

    def _need_last(self):
        if self.last is None:
            raise GraphcError(f"{self.__name__}: not traced yet; call it first")
        return self.last

    def report(self) -> str:
        return self._need_last().report()

    @property
    def passes(self):
        return self._need_last().passes

    @property
    def llvm_ir(self):
        return self._need_last().llvm_ir

    @property
    def graph(self):
        return self._need_last().graph

    def __repr__(self):
        return f"<gc.function {self.__name__}: {self.traces} trace(s)>"


def _flatten(name, out):
    if isinstance(out, Node):
        return ("node",), [out]
    if isinstance(out, (tuple, list)) and out and all(isinstance(o, Node) for o in out):
        return ("seq", len(out)), list(out)
    if isinstance(out, dict) and out and all(isinstance(o, Node) for o in out.values()):
        return ("dict", tuple(out)), list(out.values())
    raise TraceError(f"{name}: a traced function must return a graph node, or a non-empty "
                     f"tuple, list or dict of them; got {type(out).__name__}")


def _unflatten(structure, results):
    if structure[0] == "node":
        return results[0]
    if structure[0] == "seq":
        return tuple(results)
    return dict(zip(structure[1], results))


def function(fn=None, *, batch=None, max_traces: int = 5, **options):
    """Decorator: trace ``fn`` into a compiled graph per signature (see the
    module doc). ``batch``: a gc.Dim (or an int bound) for the leading axis
    of every array argument; ``options``: gc.compile's (backend, opt_level...)."""
    if fn is None:
        return lambda f: Function(f, batch=batch, max_traces=max_traces, **options)
    return Function(fn, batch=batch, max_traces=max_traces, **options)


jit = function


def value_and_grad(fn, wrt=None, argnums=0):
    """``fn``'s value and its gradients: ``g(*args) -> (value, grads)``, a list
    of gradients with respect to ``wrt`` (parameters, or a Module: its
    parameters) or else to the arguments ``argnums`` (an int: one gradient).
    On graph nodes (inside a traced function) it builds nodes; on arrays it
    traces itself (``gc.function``)."""
    def on_nodes(*args, **kwargs):
        y = fn(*args, **kwargs)
        if not isinstance(y, Node) or y.ndim:
            raise TraceError(f"value_and_grad: {getattr(fn, '__name__', fn)} must return a "
                             f"scalar node, got {y!r}")
        if wrt is not None:
            xs = list(wrt.parameters()) if hasattr(wrt, "parameters") else list(wrt)
            return y, grad(y, xs)
        if isinstance(argnums, int):
            return y, grad(y, [args[argnums]])[0]
        return y, grad(y, [args[k] for k in argnums])

    traced = None

    def g(*args, **kwargs):
        nonlocal traced
        if any(isinstance(a, Node) for a in list(args) + list(kwargs.values())):
            return on_nodes(*args, **kwargs)
        if traced is None:
            traced = Function(lambda *a, **k: _pair(on_nodes(*a, **k)))
        out = traced(*args, **kwargs)
        return out[0], (list(out[1:]) if (wrt is not None or not isinstance(argnums, int))
                        else out[1])
    g.__name__ = f"value_and_grad({getattr(fn, '__name__', 'fn')})"
    return g


def _pair(vg):
    y, gs = vg
    return (y, *gs) if isinstance(gs, list) else (y, gs)
