"""Host callbacks: a native kernel that calls back into Python for one node.

The op's ``kernel`` lowering (kind ``"kernel"``, so fusion gives it a kernel
of its own) emits::

    %bufs = alloca [n+2 x ptr]            ; input buffers, the output buffer, %word
    store ptr %in0, ...                   ; (one-element constants are spilled)
    if (*status == 0)                     ; an earlier failure: skip the call
        store i32 <interrupted>, ptr %word
        call i32 @graphc_host_callback(i64 <site>, ptr %bufs)
        err = load i32 %word               ; 0, or the code of an error message

The status comes back through ``%word``, not the return value: an
asynchronous exception (Ctrl-C) raised as the trampoline is entered, before
any ``try`` of it runs, is reported by ctypes as unraisable and leaves the
return value undefined; the word then still holds the code of "was
interrupted", and the exception itself is taken from ctypes'
``sys.unraisablehook`` call.

``graphc_host_callback`` is one ctypes ``CFUNCTYPE`` trampoline, made once
per process and never freed, whose address is given to the JIT's linker
(``llvmlite.binding.add_symbol``). ctypes releases the GIL around the native
call and the trampoline takes it back, so the Python code runs under the GIL.

``<site>`` identifies the node in this compiled code: a table entry with the
numpy function, the input and output shapes and dtypes, the attributes, and
the code's list of error messages. Entries are never removed: the compile
cache may give the same machine code (and so the same site) to later
functions built from structurally equal graphs, long after the first one is
gone. An entry is small (it keeps the numpy function alive).

The trampoline hands the function read-only arrays that stay valid for as
long as the function keeps them (it may store them): an input that is the
caller's array or a constant is a read-only view of that very array (no
copy; the view's base keeps it alive), and anything else — an intermediate
in the call's scratch arena, which the next call overwrites, a parameter,
which the call's updates overwrite, an output, a spilled one-element constant
on the native stack — is a read-only copy (measured: a few microseconds on a
typical callback, against tens for the callback's own overhead; see
docs/extending.md). Which one each input is comes from the buffer plan at
compile time; the arrays come from the running call's frame
(``runtime.FRAMES``). The result is checked (shape, dtype) and copied into
the output buffer.

Any exception is caught (it never unwinds through native code) and recorded
in the call's frame; its description is appended to the function's error
messages and the trampoline returns that message's code. The call then
raises ``RuntimeCheckError`` naming the op, the node, where it was built and
the exception (chained as ``__cause__``); a ``BaseException`` that is not an
``Exception`` (KeyboardInterrupt, SystemExit) is re-raised as itself.
"""
from __future__ import annotations

import ctypes
import itertools
import traceback

import numpy as np
from llvmlite import ir

from ..backend.llvm.scalar import I32, I64, PTR, mem_type
from ..runtime import CALLBACK_SYMBOL as SYMBOL
from ..runtime import FRAMES

_PROTO = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p)
_SITES: dict[int, _Site] = {}
_tokens = itertools.count(1)
_state: dict = {}


class _Site:
    """One callback node of one compiled function."""

    __slots__ = ("fn", "op", "node_name", "source", "ins", "out", "attrs", "errors", "owners")

    def __init__(self, fn, node, errors: list, owners: list | None = None):
        self.fn = fn
        self.op = node.op
        self.node_name = node.name
        self.source = node.source
        self.ins = [(i.shape, i.dtype) for i in node.inputs]
        self.out = (node.shape, node.dtype)
        self.attrs = dict(node.attrs)
        self.errors = errors
        # per input: the index of the call argument that *is* its buffer (a
        # placeholder's or constant's array, handed over as a view), or None (copied)
        self.owners = owners or [None] * len(self.ins)

    def where(self) -> str:
        return f"node {self.node_name}, built at {self.source}"

    def interrupted(self) -> str:
        """The message of the code the kernel reports when the trampoline never
        wrote its status word (see :func:`_trampoline`)."""
        return f"host callback of op {self.op!r} ({self.where()}) was interrupted"

    def run(self, bufs: int) -> int:
        frame = FRAMES.stack[-1] if FRAMES.stack else None
        word = None
        try:
            n = len(self.ins)
            ptrs = (ctypes.c_void_p * (n + 2)).from_address(bufs)
            word = (ctypes.c_int32 * 1).from_address(ptrs[n + 1])
            arrays = frame[0] if frame is not None else None
            args = [_input(ptrs[k], shape, dtype, arrays, self.owners[k])
                    for k, (shape, dtype) in enumerate(self.ins)]
            out = _view(ptrs[n], *self.out, True)
            r = self.fn(*args, **self.attrs)
            self._store(r, out)
            word[0] = 0
        except BaseException as e:   # never let an exception reach native code
            if frame is not None and frame[1] is None:
                frame[1] = e
            code = self._fail(e)
            if word is not None:
                word[0] = code
        return 0

    def _store(self, r, out: np.ndarray) -> None:
        try:
            r = np.asarray(r)
        except Exception as e:
            raise TypeError(f"returned a {type(r).__name__} that is not an array: {e}") from None
        if r.shape != out.shape:
            raise ValueError(f"returned shape {r.shape}, but the op's shape rule says {out.shape}")
        if r.dtype != out.dtype:
            if r.dtype == object or not np.can_cast(r.dtype, out.dtype, casting="same_kind"):
                raise TypeError(f"returned dtype {r.dtype}, which does not convert to the op's "
                                f"dtype {out.dtype}")
        if out.size:
            np.copyto(out, r, casting="same_kind")

    def _fail(self, e: BaseException) -> int:
        frames = traceback.extract_tb(e.__traceback__)
        inner = ""
        if frames:
            fr = frames[-1]
            inner = f" (in {fr.name}, {fr.filename}:{fr.lineno})"
        what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if isinstance(e, (ValueError, TypeError)) and frames and frames[-1].name == "_store":
            msg = f"host callback of op {self.op!r} ({self.where()}) {e}"
        else:
            msg = f"host callback of op {self.op!r} ({self.where()}) raised {what}{inner}"
        if msg not in self.errors:
            self.errors.append(msg)
        return self.errors.index(msg) + 1


def _input(ptr, shape, dtype, arrays, owner) -> np.ndarray:
    """A read-only array for a callback input at ``ptr`` that outlives the call:
    a view of the owning array when there is one and it is this buffer, else a copy."""
    if owner is not None and arrays is not None:
        a = arrays[owner]
        if a.shape == shape and a.dtype == dtype and (a.size == 0 or
                                                      a.__array_interface__["data"][0] == ptr):
            v = a.view(np.ndarray)
            v.flags.writeable = False
            return v
    v = np.array(_view(ptr, shape, dtype, False))
    v.flags.writeable = False
    return v


def _view(ptr, shape, dtype, writable: bool) -> np.ndarray:
    dtype = np.dtype(dtype)
    size = 1
    for s in shape:
        size *= s
    if size == 0 or not ptr:
        a = np.zeros(shape, dtype)
    else:
        buf = (ctypes.c_char * (size * dtype.itemsize)).from_address(ptr)
        a = np.frombuffer(buf, dtype).reshape(shape)
    a.flags.writeable = writable
    return a


def _trampoline(token: int, bufs: int) -> int:
    # The kernel reads the status from a word it set to the site's "interrupted"
    # code, never from this return value: if an asynchronous exception (Ctrl-C:
    # a signal handler's exception) is raised on entering this function, before
    # any try can catch it, ctypes reports it as unraisable (see _unraisable) and
    # leaves the return value undefined, while the word still says "interrupted".
    try:
        site = _SITES.get(token)
        if site is not None:        # (always: sites are never removed)
            site.run(bufs)
    except BaseException as e:       # raised on entering run(), before its try
        _record(e)
    return 0


def _record(e: BaseException) -> None:
    """Make ``e`` the running call's exception (if it has none yet)."""
    stack = FRAMES.stack
    if stack and stack[-1][1] is None:
        stack[-1][1] = e


def _unraisable(hook):
    """A ``sys.unraisablehook`` that takes an exception that escaped the
    trampoline (see :func:`_trampoline`) as the running call's exception,
    and passes anything else on to ``hook``."""
    def unraisablehook(u):
        if getattr(u, "object", None) is _trampoline and FRAMES.stack:
            _record(u.exc_value)
            return
        hook(u)
    unraisablehook.graphc = True
    return unraisablehook


def _install() -> None:
    """Create the trampoline and give its address to the JIT linker (once)."""
    if "cfunc" in _state:
        return
    import sys

    import llvmlite.binding as llvm
    cfunc = _PROTO(_trampoline)
    # kept for the life of the process: every one made (two threads may get
    # here at once), since LLVM keeps whichever address it was given last
    _state.setdefault("all", []).append(cfunc)
    llvm.add_symbol(SYMBOL, ctypes.cast(cfunc, ctypes.c_void_p).value)
    _state["cfunc"] = cfunc
    if not getattr(sys.unraisablehook, "graphc", False):
        sys.unraisablehook = _unraisable(sys.unraisablehook)


def register_site(fn, node, errors: list, owners: list | None = None) -> int:
    """A site token for ``node`` calling ``fn`` (valid for the process's life)."""
    _install()
    token = next(_tokens)
    _SITES[token] = _Site(fn, node, errors, owners)
    return token


def _owners(em, n) -> list:
    """For each input of ``n``: the call-argument index of its buffer when that
    is a placeholder's or a constant's whole array (memory graphc never
    writes, owned by an array that can be handed over), else None."""
    lay = em.me.layout
    first_const = len(lay.inputs) + len(lay.params)
    out = []
    for x in n.inputs:
        k = None
        if not (x.op == "constant" and x.size == 1):
            kind, k = em._loc(x)
            if kind != "slot" or not (k < len(lay.inputs) or first_const <= k < lay.output0):
                k = None
        out.append(k)
    return out


def callback_kernel(reg):
    """The ``kernel(em, node)`` lowering of a callback op."""

    def kernel(em, n):
        token = register_site(reg.callback, n, em.me.errors, _owners(em, n))
        interrupted = em.me.error_code(_SITES[token].interrupted())
        b = em.b
        nodes = list(n.inputs) + [n]
        ab = em.alloca_builder             # in the entry block, like every alloca
        ab.position_at_start(em.fn.entry_basic_block)
        bufs = ab.alloca(PTR, size=len(nodes) + 1, name="cb_bufs")
        word = em.alloca(I32, name="cb_status")     # the trampoline's status
        for k, x in enumerate(nodes):
            if x is not n and x.op == "constant" and x.size == 1:
                # one-element constants are immediates in kernels: spill it
                slot = em.alloca(mem_type(x.dtype), name="cb_const")
                v = em.s.const(x.value.reshape(-1)[0], x.dtype).v
                if x.dtype == np.bool_:
                    v = b.zext(v, mem_type(x.dtype))
                b.store(v, slot)
                p = slot
            else:
                p = em.pointer(x, writing=x is n)
            dst = b.gep(bufs, [ir.Constant(I64, k)], source_etype=PTR, inbounds=True)
            b.store(p, dst)
        b.store(word, b.gep(bufs, [ir.Constant(I64, len(nodes))], source_etype=PTR, inbounds=True))
        fn = em.me.module.globals.get(SYMBOL)
        if fn is None:
            fn = ir.Function(em.me.module, ir.FunctionType(I32, [I64, PTR]), SYMBOL)
        ok = b.icmp_unsigned("==", b.load(em.status, typ=I32), ir.Constant(I32, 0))
        with b.if_then(ok):
            b.store(ir.Constant(I32, interrupted), word)
            b.call(fn, [ir.Constant(I64, token), bufs])
            b.store(b.load(word, typ=I32), em.err)
    return kernel
