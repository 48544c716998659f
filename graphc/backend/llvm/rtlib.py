"""The native runtime library: small functions every compiled graph may call,
compiled once per process and made visible to JIT-compiled code as symbols.
Their object code is cached on disk (``rt-<key>.o``) in the layout of graph
entries (``cachefile.py``), with a header naming the component, its key, the
format and the symbols it defines; a file that fails any check, or whose code
lacks a symbol once loaded, is discarded, rebuilt and rewritten.

- ``graphc_rt_pycall``: the body of a Python builtin (METH_O) that takes a
  tuple of numpy arrays, reads their data pointers straight from the objects,
  releases the GIL and calls a compiled entry — a call costs about as much as
  calling any builtin. Used only if the object layouts it assumes are checked
  to hold in this interpreter (see :func:`fast_call_ok`).
- ``graphc_rt_parallel(task, ctx, widths, phases, n)``: runs a job of
  ``phases`` phases, phase ``p`` being ``widths[p]`` tasks
  ``task(ctx, p, chunk, slot)`` that may run at once, on the caller and up to
  ``n-1`` persistent worker threads (created on first use with
  pthread_create, asleep on a futex between jobs). Tasks are claimed one at
  a time by whichever thread is running, so the caller never waits for work
  that a descheduled worker has not started (see :func:`_emit_threads`).
  One job at a time: a second caller that finds the pool busy runs its tasks
  alone, in order, so concurrent calls stay correct. After a fork the child
  starts a new pool.

Other components (the GEMMs in gemm.py) register here too: a component is a
name and a function that emits it into an ``ir.Module``.
"""
from __future__ import annotations

import ctypes
import hashlib
import os

import llvmlite.binding as llvm
from llvmlite import ir

from ... import forksafe
from ...version import graphc_fingerprint
from . import pool
from .rtemit import VOID, _decl, indirect_call
from .scalar import I32, I64, PTR

_lock = forksafe.lock(globals(), "_lock", rank=0)   # (see graphc/forksafe.py)
_loaded: dict = {}                           # component name -> JitModule keeping it alive
COMPONENTS: dict = {}                        # name -> (emit(module), [symbols])


def component(name: str, symbols: list, tuning: dict | None = None, opt: int = 3):
    """Declare a component: ``fn(module)`` emits the functions named in
    ``symbols``; ``tuning`` adjusts LLVM's pipeline options for it, ``opt``
    is its optimization level."""
    def deco(fn):
        COMPONENTS[name] = (fn, symbols, tuning or {}, opt)
        return fn
    return deco


def uses(module: ir.Module, name: str) -> None:
    """Record that code in ``module`` calls component ``name`` (the compile
    cache keeps the list, so loading the object code later loads it first)."""
    s = getattr(module, "graphc_rt", None)
    if s is None:
        s = module.graphc_rt = set()
    if name not in s:
        require(name)          # its symbols must exist before the module is loaded
        s.add(name)


def used(module: ir.Module) -> list:
    return sorted(getattr(module, "graphc_rt", ()))


# -- helpers for emitting ------------------------------------------------------------

# -- the components ------------------------------------------------------------------

@component("pycall", ["graphc_rt_pycall"])
def _emit_pycall(m: ir.Module):
    """``PyObject *graphc_rt_pycall(PyObject *self, PyObject *arrays)``: a
    METH_O builtin. ``self`` is a uint64 array ``[entry, n]``; ``arrays`` a
    tuple of ``n`` numpy arrays. Gathers their data pointers on the stack,
    releases the GIL, calls ``entry(pointers)`` and returns its status as an
    int."""
    tuple_items, array_data = _layout()
    fn = ir.Function(m, ir.FunctionType(PTR, [PTR, PTR]), "graphc_rt_pycall")
    me, tup = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ctx = b.load(b.gep(me, [ir.Constant(I64, array_data)], source_etype=ir.IntType(8)), typ=PTR)
    entry = b.inttoptr(b.load(ctx, typ=I64), PTR)
    n = b.load(b.gep(ctx, [ir.Constant(I64, 1)], source_etype=I64), typ=I64)
    scratch = b.alloca(PTR, n)
    loop = fn.append_basic_block("loop")
    body = fn.append_basic_block("body")
    done = fn.append_basic_block("done")
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(ir.Constant(I64, 0), fn.entry_basic_block)
    b.cbranch(b.icmp_signed("<", i, n), body, done)
    b.position_at_end(body)
    slot = b.gep(tup, [b.add(ir.Constant(I64, tuple_items // 8), i)], source_etype=PTR)
    obj = b.load(slot, typ=PTR)
    data = b.load(b.gep(obj, [ir.Constant(I64, array_data)], source_etype=ir.IntType(8)),
                  typ=PTR)
    b.store(data, b.gep(scratch, [i], source_etype=PTR))
    i.add_incoming(b.add(i, ir.Constant(I64, 1)), body)
    b.branch(loop)
    b.position_at_end(done)
    save = b.call(_decl(m, "PyEval_SaveThread", PTR, []), [])
    status = indirect_call(b, ir.FunctionType(I32, [PTR]), entry, [scratch])
    b.call(_decl(m, "PyEval_RestoreThread", VOID, [PTR]), [save])
    b.ret(b.call(_decl(m, "PyLong_FromLong", PTR, [I64]), [b.sext(status, I64)]))


component("threads", ["graphc_rt_parallel"])(pool.emit_threads)


# -- object layouts (fast argument passing) ---------------------------------------------

_layout_cache = None


def _layout() -> tuple[int, int]:
    """(offset of a tuple's first item, offset of a numpy array's data pointer)
    in this interpreter, checked on live objects; (0, 0) if they cannot be."""
    global _layout_cache
    if _layout_cache is None:
        import numpy as np
        try:
            a = np.empty(3)
            t = (a,)
            item = ctypes.c_void_p.from_address(id(t) + 24).value
            data = ctypes.c_void_p.from_address(id(a) + 16).value
            ok = item == id(a) and data == a.ctypes.data
        except (ValueError, OSError):
            ok = False
        _layout_cache = (24, 16) if ok else (0, 0)
    return _layout_cache


def fast_call_ok() -> bool:
    return _layout() != (0, 0)


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


_method_def = None
METH_O = 0x0008


def native_callable(entry: int, n: int):
    """A Python builtin ``call(arrays_tuple) -> status`` that runs the compiled
    entry at address ``entry`` on the data pointers of ``n`` arrays (see
    graphc_rt_pycall). None if this interpreter's layout is not the one checked."""
    global _method_def
    if not fast_call_ok():
        return None
    import numpy as np
    require("pycall")
    with _lock:
        if _method_def is None:
            _method_def = _MethodDef(b"graphc_native_call", address("graphc_rt_pycall"),
                                     METH_O, b"run a compiled graphc kernel")
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.POINTER(_MethodDef), ctypes.py_object, ctypes.py_object]
    ctx = np.array([entry, n], dtype=np.uint64)
    return new(ctypes.byref(_method_def), ctx, None)


def _python_symbols() -> None:
    """The C-API functions graphc_rt_pycall uses, from this interpreter."""
    for name in ("PyEval_SaveThread", "PyEval_RestoreThread", "PyLong_FromLong"):
        llvm.add_symbol(name, ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value)


# -- compiling and loading ---------------------------------------------------------------

def _key(name: str) -> str:
    from .host import host_info
    h = host_info()
    return hashlib.sha256(repr((name, COMPONENTS[name][2:], graphc_fingerprint(), h["llvm"], h["cpu"],
                                h["features"], _layout())).encode()).hexdigest()


def require(*names: str) -> None:
    """Make the named components' symbols available to JIT code (compile or
    load them once per process)."""
    for name in names:
        if name in _loaded:
            continue
        with _lock:
            if name in _loaded:
                continue
            _loaded[name] = _load(name)


def address(symbol: str) -> int:
    for name, (_, syms, *_rest) in COMPONENTS.items():
        if symbol in syms:
            require(name)
            return _loaded[name].engine.get_function_address(symbol)
    raise KeyError(symbol)


RT_MAGIC = b"GRAPHCRT"
RT_FORMAT = 1


def _check_object(header: dict, name: str, key: str, symbols: list) -> None:
    """Raise BadEntry unless ``header`` is that of component ``name``'s object
    (its key, this format, the symbols it must define)."""
    from ...cachefile import BadEntry
    want = {"format": RT_FORMAT, "kind": "rtlib", "component": name, "key": key,
            "symbols": list(symbols)}
    wrong = [k for k, v in want.items() if header.get(k) != v]
    if wrong or len(header["blobs"]) != 1:
        raise BadEntry(f"not the object of component {name!r} (differs in: "
                       f"{', '.join(wrong) or 'blobs'})")


def _from_disk(path: str, name: str, key: str, symbols: list):
    """The component's JitModule from its cache file, or None (a missing or
    bad file; a bad one is discarded, to be rebuilt and rewritten)."""
    from ...cachefile import BadEntry, discard, read
    from .jit import JitModule
    try:
        header, blobs = read(path, RT_MAGIC)
        _check_object(header, name, key, symbols)
        (obj,) = blobs
    except FileNotFoundError:
        return None
    except (BadEntry, OSError):
        discard(path)
        return None
    try:
        jm = JitModule(obj, symbols[0])
        missing = [s for s in symbols if not jm.engine.get_function_address(s)]
    except Exception:                # object code LLVM cannot load
        missing = symbols
    if missing:
        discard(path)
        return None
    return jm


def _load(name: str):
    from ...cachefile import cache_dir, write
    from .jit import JitModule
    emit, symbols, tuning, opt = COMPONENTS[name]
    if name == "pycall":
        _python_symbols()
    key = _key(name)
    d = cache_dir()
    path = os.path.join(d, f"rt-{key}.o") if d else None
    jm = _from_disk(path, name, key, symbols) if path else None
    if jm is None:
        m = ir.Module(f"graphc_rt_{name}")
        emit(m)
        jm = JitModule.compile(str(m), symbols[0], opt=opt, tuning=tuning)
        if path:
            write(d, path, RT_MAGIC, {"format": RT_FORMAT, "kind": "rtlib", "component": name,
                                      "key": key, "symbols": list(symbols)}, [jm.objects[0]])
    for s in symbols:
        addr = jm.engine.get_function_address(s)
        if not addr:
            raise RuntimeError(f"runtime component {name!r} defines no function {s!r}")
        llvm.add_symbol(s, addr)
    return jm
