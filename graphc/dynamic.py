"""Calling a compiled graph whose placeholders have a symbolic leading axis.

The graph was built and compiled for the bound (``ir/dim.py``): every
buffer is laid out for ``dim.max`` rows. A call with ``n <= dim.max`` rows

1. checks each input (any leading size from 1 to the bound; every other
   axis, the dtype and the other rules of ``runtime.check_array`` as usual),
   and that all inputs of one dim have the same size;
2. pads each input to the bound with copies of its last row (so padding
   rows compute finite values wherever the valid rows do);
3. gives each dim's size parameter (``ops/symbolic.py: size_node``), which
   the masks of cross-row ops and the divisors of means read, the call's
   size for this call only (``runtime.NativeCall``'s and ``fast_call``'s
   override; the interpreter's feeds): the parameter's own value stays the
   bound, so concurrent calls of any sizes never see each other's, and the
   graph read by anything else (an ONNX export, another compile) means the
   bound;
4. runs the one compiled function (native or interpreter);
5. returns each output that carries a dim cut to its valid extent.

No step compiles anything: one compiled function serves every size.
"""
from __future__ import annotations

import warnings

import numpy as np

from .errors import InputError, PaddedBatchWarning, ShapeError, user_stacklevel
from .ir.dim import DEFAULT_MAX
from .runtime import SLOW, _describe, bind_inputs, check_array

PADDED_WARN = 4          # a call of fewer than bound / PADDED_WARN rows warns (once per function)

_SIZES: dict = {}


def _sized(n: int) -> np.ndarray:
    """The 0-d int64 array holding ``n`` (one per size, never written: a call
    in flight keeps reading the array it was given)."""
    a = _SIZES.get(n)
    if a is None:
        a = _SIZES[n] = np.array(n, np.int64)
    return a


class _Sized:
    """A placeholder as seen by one call: its shape with the call's size."""
    __slots__ = ("name", "dtype", "shape", "batch")

    def __init__(self, p, n):
        self.name, self.dtype, self.batch = p.name, p.dtype, p.batch
        self.shape = (n,) + p.shape[1:]


def _leading(p, v) -> int:
    shape = v.shape if isinstance(v, np.ndarray) else None
    if shape is None:
        try:
            shape = np.shape(v)
        except (ValueError, TypeError):
            return check_array(p, v).shape[0]        # its own error
    b = p.batch
    if len(shape) != len(p.shape) or tuple(shape[1:]) != p.shape[1:] or \
            not 1 <= shape[0] <= b.dim.max:
        rows = f"1 to {b.dim.max}"
        raise InputError(f"{_describe(p)} got shape {tuple(shape)}: its axis 0 is the symbolic "
                         f"dim {b.dim.name!r} (any size from {rows}), the others must be "
                         f"{p.shape[1:]}")
    return int(shape[0])


def check_value(p, v) -> np.ndarray:
    """runtime.check_array for a placeholder with a symbolic axis (any size
    up to the bound); the others as usual."""
    if p.batch is None:
        return check_array(p, v)
    return check_array(_Sized(p, _leading(p, v)), v)


def check_updates(graph) -> None:
    for p, v in graph.updates:
        if v.batch is not None:
            raise ShapeError(f"compile: the update of parameter {p.name!r} carries "
                              f"{v.batch.describe()}; an update must not depend on the padding "
                              f"rows (reduce over the symbolic axis first)")


class DynamicCall:
    """The call of a compiled function with symbolic placeholders."""

    def __init__(self, graph, outputs, positional: bool):
        self.graph = graph
        self.positional = positional
        phs = graph.placeholders
        self.batched = [(k, p.batch.dim, p.shape) for k, p in enumerate(phs) if p.batch is not None]
        self.dims = {}
        for _, d, _ in self.batched:
            self.dims[d.id] = d
        self.specs = [(p.dtype, p.shape, p.shape[1:], p.batch is not None) for p in phs]
        self.outs = [(k, o.batch) for k, o in enumerate(outputs) if o.batch is not None]
        self.warned = False

    def _plain(self, args):
        """Every input positional, a C-contiguous array of its dtype and trailing shape."""
        if not self.positional or len(args) != len(self.specs):
            return None
        for v, (dt, shape, rest, sym) in zip(args, self.specs):
            if type(v) is not np.ndarray or v.dtype != dt or not v.flags.carray:
                return None
            if sym:
                if v.ndim != len(shape) or v.shape[1:] != rest or not 1 <= v.shape[0] <= shape[0]:
                    return None
            elif v.shape != shape:
                return None
        return list(args)

    def warn_padded(self, n: int, bound: int, dim) -> None:
        """Say once per function that a call of ``n`` rows computed ``bound``."""
        if self.warned:
            return
        self.warned = True
        warnings.warn(f"a call with {n} rows of the symbolic dim {dim.name!r} computed all "
                      f"{bound} rows of its bound (the padding is masked, so the result is "
                      f"right, but it costs a full batch); give the dim a tighter bound, "
                      f"gc.Dim({dim.name!r}, max=...) (None in a shape means {DEFAULT_MAX} rows). "
                      "Shown once per compiled function", PaddedBatchWarning,
                      stacklevel=user_stacklevel())

    def fast(self, sized_call, single: bool):
        """A function ``run(args) -> result or SLOW`` for partial batches:
        pads the batched arguments to the bound and calls
        ``sized_call(size_param)`` (runtime.fast_call with that override,
        which takes only arrays of the bound's shape) with the call's size;
        any other form (or a mismatch fast_call's exact checks refuse)
        returns SLOW, for :meth:`__call__`'s checks and errors. Full batches
        take the plain fast call: the size parameter's own value is always
        the bound, and a call's size is given to that call alone, so
        concurrent calls of any sizes never see each other's."""
        if len(self.dims) != 1 or not self.batched:
            return None
        (dim,) = self.dims.values()
        if dim._size is None:
            return None
        call = sized_call(dim._size)
        if call is None:
            return None
        bound, nargs = dim.max, len(self.specs)
        lead = self.batched[0][0]
        batched = tuple((k, shape) for k, _, shape in self.batched)
        outs = tuple((k, b.axis, b.inner) for k, b in self.outs)
        ndarray, empty = np.ndarray, np.empty

        def run(args):
            try:
                n = args[lead].shape[0]
            except (IndexError, AttributeError, TypeError):
                return SLOW
            if len(args) != nargs or type(args[lead]) is not ndarray or not 1 <= n < bound:
                return SLOW
            args = list(args)
            for k, shape in batched:
                a = args[k]
                if type(a) is not ndarray or a.shape[:1] != (n,) or a.shape[1:] != shape[1:]:
                    return SLOW
                buf = empty(shape, a.dtype)
                buf[:n] = a
                buf[n:] = a[n - 1]
                args[k] = buf
            if n * PADDED_WARN < bound:
                self.warn_padded(n, bound, dim)
            r = call(args, _sized(n))
            if r is SLOW or not outs:
                return r
            rs = [r] if single else list(r)
            for k, axis, inner in outs:
                idx = (slice(None),) * axis + (slice(0, n * inner),)
                rs[k] = np.ascontiguousarray(rs[k][idx])
            return rs[0] if single else tuple(rs)
        return run

    def __call__(self, run, args: tuple, kwargs: dict):
        inputs = None if kwargs else self._plain(args)
        if inputs is None:
            inputs = bind_inputs(self.graph, self.positional, args, kwargs, check_value)
        sizes = {}
        for k, d, shape in self.batched:
            a = inputs[k]
            n = a.shape[0]
            m = sizes.setdefault(d.id, n)
            if m != n:
                p = self.graph.placeholders[k]
                raise InputError(f"{_describe(p)} got {n} rows, but another input of dim "
                                 f"{d.name!r} got {m}: inputs of one symbolic dim take the "
                                 f"same size in a call")
            if n < shape[0]:
                buf = np.empty(shape, a.dtype)
                buf[:n] = a
                buf[n:] = a[n - 1]
                inputs[k] = buf
        for i, n in sizes.items():
            d = self.dims[i]
            if n * PADDED_WARN < d.max:
                self.warn_padded(n, d.max, d)
        # each dim's size, for this call only (its parameter's own value stays the
        # bound: concurrent calls, and anything else reading the graph, see that)
        override = {self.dims[i]._size.id: _sized(n) for i, n in sizes.items()
                    if self.dims[i]._size is not None}
        results = run(inputs, override)
        if self.outs:
            results = list(results)
            for k, b in self.outs:
                n = sizes.get(b.dim.id, b.dim.max) * b.inner
                r = results[k]
                if n < r.shape[b.axis]:
                    idx = (slice(None),) * b.axis + (slice(0, n),)
                    results[k] = np.ascontiguousarray(r[idx])
        return results
