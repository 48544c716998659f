"""Calling a compiled graph: argument checks, buffers, the native call.

Every argument is checked here, in Python, before native code is entered:
names, shapes and dtypes against the placeholders; arrays made C-contiguous
and aligned (copied if they are not). Results are fresh arrays owned by the
caller.
"""
from __future__ import annotations

import ctypes
import operator
import threading

import numpy as np

from .errors import InputError, InputTypeError, RuntimeCheckError
from .ir.arrays import _array_like, convert_exactly, has_own_dtype, to_array
from .ir.graph import Graph


def _describe(n) -> str:
    b = getattr(n, "batch", None)
    if b is not None:        # a symbolic leading axis (ir/dim.py)
        dims = ", ".join([f"{b.dim.name}<={b.dim.max}"] + [str(s) for s in n.shape[1:]])
        return f"placeholder {n.name!r} ({n.dtype}[{dims}])"
    return f"placeholder {n.name!r} ({n.dtype}{list(n.shape)})"


_MISSING = object()


def bind_inputs(graph: Graph, positional: bool, args: tuple, kwargs: dict,
                check=None) -> list:
    """Match call arguments to placeholders; return checked contiguous arrays
    in placeholder order. ``check(placeholder, value)``: the check of one
    value (default :func:`check_array`; ``dynamic.py`` checks symbolic axes)."""
    check_array = _check_array if check is None else check
    phs = graph.placeholders
    if args and positional and not kwargs and len(args) == len(phs):
        out = []
        for p, v in zip(phs, args):
            if type(v) is np.ndarray and v.dtype == p.dtype and v.shape == p.shape and \
                    v.flags.carray:
                out.append(v)
            else:
                out.append(check_array(p, v))
        return out
    if not args and len(kwargs) == len(phs):
        # fast path: every input by keyword, already an aligned C-contiguous array
        out = []
        for p in phs:
            v = kwargs.get(p.name, _MISSING)
            if v is _MISSING:
                break
            if type(v) is np.ndarray and v.dtype == p.dtype and v.shape == p.shape and \
                    v.flags.carray:
                out.append(v)
            else:
                out.append(check_array(p, v))
        else:
            return out
    values = [None] * len(phs)
    given = [False] * len(phs)
    if args:
        if not positional:
            names = ", ".join(p.name for p in phs)
            raise InputError(f"this function takes its inputs by keyword ({names}); "
                             f"got {len(args)} positional argument(s)")
        if len(args) > len(phs):
            raise InputError(f"too many positional inputs: got {len(args)}, expected {len(phs)}")
        for k, a in enumerate(args):
            values[k], given[k] = a, True
    if kwargs:
        index = {p.name: k for k, p in enumerate(phs)}
        for key, v in kwargs.items():
            k = index.get(key)
            if k is None:
                names = ", ".join(p.name for p in phs) or "none"
                raise InputError(f"unknown input {key!r} (the inputs are: {names})")
            if given[k]:
                raise InputError(f"input {key!r} given twice")
            values[k], given[k] = v, True
    missing = [p.name for p, g in zip(phs, given) if not g]
    if missing:
        raise InputError(f"missing input(s): {', '.join(map(repr, missing))}")
    return [check_array(p, v) for p, v in zip(phs, values)]


def check_array(p, v) -> np.ndarray:
    """``v`` as the aligned C-contiguous array of ``p``'s dtype and shape, or an
    InputError/InputTypeError naming the placeholder."""
    if isinstance(v, np.ma.MaskedArray):
        raise InputTypeError(f"{_describe(p)} got a masked array; graphc ignores no masks: "
                             "pass .filled(value) or .data")
    if isinstance(v, np.ndarray):
        v = np.asarray(v)        # subclasses (np.matrix...) as plain arrays, no copy
        if v.dtype != p.dtype:
            raise InputTypeError(f"{_describe(p)} got an array of dtype {v.dtype}; "
                                 f"convert it with .astype(np.{p.dtype})")
        a = v
    else:
        if isinstance(v, (str, bytes)) or v is None or not _array_like(v):
            raise InputTypeError(f"{_describe(p)} got a {type(v).__name__}, not an array")
        a = to_array(v, _describe(p), InputTypeError)
        if a.dtype == object:
            raise InputTypeError(f"{_describe(p)} got values of dtype {a.dtype}")
        if has_own_dtype(v):
            # an array-like (a tensor of another library, a numpy scalar...) has a dtype
            # of its own: the rule for numpy arrays, whatever library made it
            if a.dtype != p.dtype:
                raise InputTypeError(f"{_describe(p)} got a {type(v).__name__} of dtype "
                                     f"{a.dtype}; convert it to {p.dtype} first")
        else:
            # Python numbers, lists, tuples: no dtype of their own; exact conversion
            if not np.can_cast(a.dtype, p.dtype, casting="same_kind"):
                raise InputTypeError(f"{_describe(p)} got values of dtype {a.dtype}")
            a = convert_exactly(a, p.dtype, _describe(p))
    if a.shape != p.shape:
        raise InputError(f"{_describe(p)} got shape {a.shape}")
    if not (a.flags.c_contiguous and a.flags.aligned):
        a = np.array(a, order="C", copy=True)   # (ascontiguousarray would make 0-d 1-d)
    return a


_check_array = check_array


class NativeCall:
    """Runs the native entry on checked arrays.

    All pointers the kernel needs — inputs, parameters, constants, outputs,
    the arena — are handed over as one tuple of arrays to a native builtin
    (rtlib.native_callable) that reads their data pointers from the array
    objects themselves, releases the GIL and runs the kernel: no ctypes
    conversions and no per-array pointer extraction in Python. (If this
    interpreter's object layout is not the one checked, pointers go through
    ctypes instead.) Each calling thread has its own arena, so concurrent calls
    do not share buffers.

    Code without host callbacks never runs Python code while it runs, so it
    cannot be re-entered: this class is its whole fast path. Code with host
    callbacks uses :class:`HostedCall`."""

    def __init__(self, jit, layout, arena_size: int, errors: list[str]):
        from .backend.llvm import rtlib
        self.cfunc = jit.cfunc
        self.entry = jit.address
        self.params = list(layout.params)
        self.consts = tuple(c.value for c in layout.consts)
        self.count = layout.count
        self.arena_size = arena_size
        self.errors = errors
        self._local = threading.local()
        self.ptr_type = ctypes.c_void_p * layout.count
        self._call = rtlib.native_callable(jit.address, layout.count)
        self._values = operator.attrgetter("_value")

    def arena(self) -> np.ndarray:
        """This thread's arena (at least 64 bytes: a valid pointer even when
        the graph needs none)."""
        try:
            return self._local.arena
        except AttributeError:
            a = self._local.arena = np.zeros(max(self.arena_size, 64), np.uint8)
            return a

    def __call__(self, inputs: list, outputs: list, override: dict | None = None) -> None:
        """Run on checked ``inputs`` into ``outputs``; ``override`` (node id ->
        array) gives some parameters another value for this call only (a
        symbolic batch's size: dynamic.py), leaving theirs untouched."""
        values = map(self._values, self.params)
        if override:
            values = [override.get(p.id, v) for p, v in zip(self.params, values)]
        if self._call is not None:
            try:
                arena = self._local.arena
            except AttributeError:
                arena = self.arena()
            status = self._call((*inputs, *values, *self.consts, *outputs, arena))
        else:
            ptrs = [a.ctypes.data for a in inputs]
            ptrs += [v.ctypes.data for v in values]
            ptrs += [c.ctypes.data for c in self.consts]
            ptrs += [o.ctypes.data for o in outputs]
            ptrs.append(self.arena().ctypes.data)
            status = self.cfunc(self.ptr_type(*ptrs))
        if status:
            raise RuntimeCheckError(self.errors[status - 1])


SLOW = object()      # what a fast call returns when it cannot take the call (see fast_call)


def fast_call(native, graph: Graph, out_specs: list, single: bool, override=None):
    """A function ``run(args) -> result or SLOW`` that takes a call of
    ``native`` (a :class:`NativeCall`) with the one argument form that needs
    no conversion — every input positional, an aligned C-contiguous
    ``np.ndarray`` of its placeholder's dtype and shape, on a thread that has
    its arena — and returns :data:`SLOW` for any other call, which the
    caller then binds through :func:`bind_inputs` (its checks, conversions
    and errors). The same checks as bind_inputs' own fast path, with what
    they compare bound once: half the fixed cost of a small call (1.1 us
    instead of 2.0 for the 16-32-4 MLP of ``bench --only tiny_call``).
    None when there is no such path (code with host callbacks, or no native
    builtin for this interpreter).

    With ``override`` (a parameter node of the graph), ``run(args, value)``
    gives that parameter the array ``value`` for this call only (a symbolic
    batch's size: dynamic.py); the parameter's own value is never written,
    so concurrent calls cannot see each other's."""
    if type(native) is not NativeCall or native._call is None:
        return None
    call, params, consts, values = native._call, native.params, native.consts, native._values
    local, errors = native._local, native.errors
    specs = tuple((p.dtype, p.shape) for p in graph.placeholders)
    n = len(specs)
    ndarray, empty = np.ndarray, np.empty
    outs = tuple(out_specs)
    if n == 1 and single and override is None:      # the commonest form, without the loops
        (dt, shape), = specs
        (oshape, odt), = outs

        def run1(args):
            if len(args) != 1:
                return SLOW
            v, = args
            if type(v) is not ndarray or v.dtype != dt or v.shape != shape or not v.flags.carray:
                return SLOW
            try:
                arena = local.arena
            except AttributeError:
                return SLOW
            out = empty(oshape, odt)
            status = call((v, *map(values, params), *consts, out, arena))
            if status:
                raise RuntimeCheckError(errors[status - 1])
            return out
        return run1

    k = None if override is None else next(i for i, p in enumerate(params) if p is override)
    before, after = (params, ()) if k is None else (tuple(params[:k]), tuple(params[k + 1:]))

    def run(args, value=None):
        if len(args) != n:
            return SLOW
        for v, (dt, shape) in zip(args, specs):
            if type(v) is not ndarray or v.dtype != dt or v.shape != shape or not v.flags.carray:
                return SLOW
        try:
            arena = local.arena
        except AttributeError:
            return SLOW
        results = [empty(shape, dt) for shape, dt in outs]
        pv = map(values, params) if k is None else (*map(values, before), value,
                                                    *map(values, after))
        status = call((*args, *pv, *consts, *results, arena))
        if status:
            raise RuntimeCheckError(errors[status - 1])
        return results[0] if single else tuple(results)
    return run


# The symbol JIT code calls a host callback through (extend/callback.py makes
# it); code that references it runs Python code while it runs (HostedCall).
CALLBACK_SYMBOL = "graphc_host_callback"


class _Frames(threading.local):
    """Per thread: the calls of code with host callbacks now running, innermost
    last. Each is ``[arrays, exception]``: the tuple of arrays the native code
    was given (a callback wraps its inputs from them) and the first exception
    a callback raised in that call (None)."""

    def __init__(self):
        self.stack = []


FRAMES = _Frames()


class HostedCall(NativeCall):
    """A :class:`NativeCall` for code with host callbacks, which may be
    re-entered: a callback may call the same compiled function again (or
    another one), on this thread or any other. Each active call on a thread
    has its own arena (one per nesting depth, kept for reuse), so a nested
    call never overwrites the outer call's intermediates.

    A callback's exception is recorded in the call's frame (see
    :data:`FRAMES`) and the native code returns an error code; then an
    ``Exception`` becomes a :class:`RuntimeCheckError` naming the op, the
    node and the exception, with the exception as ``__cause__``, and any
    other ``BaseException`` (KeyboardInterrupt, SystemExit, GeneratorExit)
    is re-raised as itself."""

    def __call__(self, inputs: list, outputs: list) -> None:
        loc = self._local
        depth = getattr(loc, "depth", 0)
        try:
            arenas = loc.arenas
        except AttributeError:
            arenas = loc.arenas = [self.arena()]
        if depth == len(arenas):
            arenas.append(np.zeros(max(self.arena_size, 64), np.uint8))
        arrays = (*inputs, *map(self._values, self.params), *self.consts, *outputs,
                  arenas[depth])
        frame = [arrays, None]
        stack = FRAMES.stack
        stack.append(frame)
        loc.depth = depth + 1
        try:
            if self._call is not None:
                status = self._call(arrays)
            else:
                status = self.cfunc(self.ptr_type(*[a.ctypes.data for a in arrays]))
        finally:
            loc.depth = depth
            stack.pop()
        if status:
            exc = frame[1]
            frame[1] = None
            if exc is not None and not isinstance(exc, Exception):
                raise exc
            raise RuntimeCheckError(self.errors[status - 1]) from exc
