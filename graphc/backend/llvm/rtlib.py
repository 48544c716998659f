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
- ``graphc_rt_parallel(fn, ctx, n)``: runs ``fn(ctx, tid, n)`` for tid in
  ``0..n-1``, on the caller and ``n-1`` persistent worker threads (created on
  first use with pthread_create, parked on a futex between jobs). One job at a
  time: a second caller that finds the pool busy runs ``fn(ctx, 0, 1)`` alone,
  so concurrent calls stay correct. After a fork the child starts a new pool.
- ``graphc_rt_barrier(sync, n)``: a barrier for the ``n`` threads of one job
  (``sync``: two zeroed i32 words that return to zero after each use).

Other components (the GEMMs in gemm.py) register here too: a component is a
name and a function that emits it into an ``ir.Module``.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform

import llvmlite.binding as llvm
from llvmlite import ir

from ... import forksafe
from ...version import graphc_fingerprint
from .scalar import I32, I64, PTR

VOID = ir.VoidType()
SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "arm64": 98}.get(platform.machine(), 202)
FUTEX_WAIT, FUTEX_WAKE = 128, 129          # the _PRIVATE variants
SPIN_CYCLES = 60_000           # spin about 25 us before sleeping on the futex

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

def _decl(m: ir.Module, name: str, ret, args, var_arg=False) -> ir.Function:
    f = m.globals.get(name)
    if f is None:
        f = ir.Function(m, ir.FunctionType(ret, args, var_arg=var_arg), name)
    return f


def _pause(b: ir.IRBuilder):
    """A spin-wait hint to the CPU (x86 ``pause``, arm ``yield``)."""
    arch = platform.machine()
    m = b.module
    if arch in ("x86_64", "AMD64", "i686"):
        b.call(_decl(m, "llvm.x86.sse2.pause", VOID, []), [])
    elif arch in ("aarch64", "arm64"):
        b.call(_decl(m, "llvm.aarch64.hint", VOID, [I32]), [ir.Constant(I32, 1)])


def _futex(m, b, addr, op, val):
    sc = _decl(m, "syscall", I64, [I64], var_arg=True)
    b.call(sc, [ir.Constant(I64, SYS_FUTEX), addr, ir.Constant(I32, op), val,
                ir.Constant(PTR, None), ir.Constant(PTR, None), ir.Constant(I32, 0)])


def _wait_while_equal(m, b, fn, addr, value, name):
    """Spin (for about SPIN_CYCLES), then sleep on the futex, while
    ``*addr == value`` (acquire loads)."""
    clock = _decl(m, "llvm.readcyclecounter", I64, [])
    t0 = b.call(clock, [])
    head = fn.append_basic_block(f"{name}.head")
    spin = fn.append_basic_block(f"{name}.spin")
    sleep = fn.append_basic_block(f"{name}.sleep")
    done = fn.append_basic_block(f"{name}.done")
    b.branch(head)
    b.position_at_end(head)
    cur = b.load_atomic(addr, "acquire", 4, typ=I32)
    b.cbranch(b.icmp_signed("!=", cur, value), done, spin)
    b.position_at_end(spin)
    _pause(b)
    waited = b.sub(b.call(clock, []), t0)
    b.cbranch(b.icmp_unsigned("<", waited, ir.Constant(I64, SPIN_CYCLES)), head, sleep)
    b.position_at_end(sleep)
    _futex(m, b, addr, FUTEX_WAIT, value)
    b.branch(head)
    b.position_at_end(done)


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


class _FnPtr:
    """A function pointer value presented to llvmlite's call instruction with
    the function type it has (opaque pointers carry none)."""

    def __init__(self, value, fnty):
        self.value, self.function_type, self.type = value, fnty, value.type

    def get_reference(self):
        return self.value.get_reference()


def indirect_call(b: ir.IRBuilder, ftype: ir.FunctionType, fptr, args):
    """Call through a function pointer."""
    return b.call(_FnPtr(fptr, ftype), args)


@component("threads", ["graphc_rt_parallel", "graphc_rt_barrier"])
def _emit_threads(m: ir.Module):
    def glob(name, t):
        g = ir.GlobalVariable(m, t, name)
        g.linkage = "internal"
        g.initializer = ir.Constant(t, None)
        return g
    lock, gen, pending = glob("pool.lock", I32), glob("pool.gen", I32), glob("pool.pending", I32)
    started, pid_g, n_g = glob("pool.started", I32), glob("pool.pid", I32), glob("pool.n", I32)
    fn_g, ctx_g = glob("pool.fn", PTR), glob("pool.ctx", PTR)
    job_t = ir.FunctionType(VOID, [PTR, I32, I32])
    intmax = ir.Constant(I32, 0x7FFFFFFF)

    # worker(arg): arg = tid | (generation seen at creation << 32)
    w = ir.Function(m, ir.FunctionType(PTR, [PTR]), "graphc_rt_worker")
    w.linkage = "internal"
    b = ir.IRBuilder(w.append_basic_block("entry"))
    packed = b.ptrtoint(w.args[0], I64)
    tid = b.trunc(packed, I32)
    seen0 = b.trunc(b.lshr(packed, ir.Constant(I64, 32)), I32)
    seen = b.alloca(I32)
    b.store(seen0, seen)
    top = w.append_basic_block("top")
    b.branch(top)
    b.position_at_end(top)
    s = b.load(seen, typ=I32)
    _wait_while_equal(m, b, w, gen, s, "wjob")
    g = b.load_atomic(gen, "acquire", 4, typ=I32)
    b.store(g, seen)
    n = b.load(n_g, typ=I32)
    run = w.append_basic_block("run")
    b.cbranch(b.icmp_signed("<", tid, n), run, top)
    b.position_at_end(run)
    f = b.load(fn_g, typ=PTR)
    c = b.load(ctx_g, typ=PTR)
    indirect_call(b, job_t, f, [c, tid, n])
    left = b.atomic_rmw("sub", pending, ir.Constant(I32, 1), "acq_rel")
    last = w.append_basic_block("last")
    b.cbranch(b.icmp_signed("==", left, ir.Constant(I32, 1)), last, top)
    b.position_at_end(last)
    _futex(m, b, pending, FUTEX_WAKE, ir.Constant(I32, 1))
    b.branch(top)

    # parallel(fn, ctx, n)
    p = ir.Function(m, ir.FunctionType(VOID, [PTR, PTR, I32]), "graphc_rt_parallel")
    fnp, ctx, n = p.args
    b = ir.IRBuilder(p.append_basic_block("entry"))
    alone = p.append_basic_block("alone")
    try_lock = p.append_basic_block("try_lock")
    b.cbranch(b.icmp_signed("<=", n, ir.Constant(I32, 1)), alone, try_lock)
    b.position_at_end(alone)
    indirect_call(b, job_t, fnp, [ctx, ir.Constant(I32, 0), ir.Constant(I32, 1)])
    b.ret_void()
    b.position_at_end(try_lock)
    getpid = _decl(m, "getpid", I32, [])
    me = b.call(getpid, [])
    forked = p.append_basic_block("forked")
    locking = p.append_basic_block("locking")
    b.cbranch(b.icmp_signed("!=", me, b.load(pid_g, typ=I32)), forked, locking)
    b.position_at_end(forked)          # a new process (or the first call): no workers yet
    b.store(ir.Constant(I32, 0), started)
    b.store(ir.Constant(I32, 0), lock)
    b.store(me, pid_g)
    b.branch(locking)
    b.position_at_end(locking)
    res = b.cmpxchg(lock, ir.Constant(I32, 0), ir.Constant(I32, 1), "acquire", "monotonic")
    got = b.extract_value(res, 1)
    spawn = p.append_basic_block("spawn")
    b.cbranch(got, spawn, alone)
    # start workers up to n-1
    b.position_at_end(spawn)
    create = _decl(m, "pthread_create", I32, [PTR, PTR, PTR, PTR])
    handle = b.alloca(I64)
    sloop = p.append_basic_block("sloop")
    sbody = p.append_basic_block("sbody")
    sok = p.append_basic_block("sok")
    sdone = p.append_basic_block("sdone")
    b.branch(sloop)
    b.position_at_end(sloop)
    k = b.load(started, typ=I32)
    b.cbranch(b.icmp_signed("<", k, b.sub(n, ir.Constant(I32, 1))), sbody, sdone)
    b.position_at_end(sbody)
    g0 = b.load_atomic(gen, "acquire", 4, typ=I32)
    arg = b.or_(b.zext(b.add(k, ir.Constant(I32, 1)), I64),
                b.shl(b.zext(g0, I64), ir.Constant(I64, 32)))
    rc = b.call(create, [handle, ir.Constant(PTR, None), w, b.inttoptr(arg, PTR)])
    b.cbranch(b.icmp_signed("==", rc, ir.Constant(I32, 0)), sok, sdone)
    b.position_at_end(sok)
    b.store(b.add(k, ir.Constant(I32, 1)), started)
    b.branch(sloop)
    b.position_at_end(sdone)
    have = b.add(b.load(started, typ=I32), ir.Constant(I32, 1))
    nn = b.select(b.icmp_signed("<", have, n), have, n)
    go = p.append_basic_block("go")
    unlock_alone = p.append_basic_block("unlock_alone")
    b.cbranch(b.icmp_signed("<=", nn, ir.Constant(I32, 1)), unlock_alone, go)
    b.position_at_end(unlock_alone)
    b.atomic_rmw("xchg", lock, ir.Constant(I32, 0), "release")
    b.branch(alone)
    b.position_at_end(go)
    b.store(fnp, fn_g)
    b.store(ctx, ctx_g)
    b.store(nn, n_g)
    b.atomic_rmw("xchg", pending, b.sub(nn, ir.Constant(I32, 1)), "release")
    b.atomic_rmw("add", gen, ir.Constant(I32, 1), "acq_rel")
    _futex(m, b, gen, FUTEX_WAKE, intmax)
    indirect_call(b, job_t, fnp, [ctx, ir.Constant(I32, 0), nn])
    # wait for the workers
    wl = p.append_basic_block("wait")
    wsleep = p.append_basic_block("wait.check")
    fin = p.append_basic_block("finish")
    b.branch(wl)
    b.position_at_end(wl)
    left = b.load_atomic(pending, "acquire", 4, typ=I32)
    b.cbranch(b.icmp_signed("==", left, ir.Constant(I32, 0)), fin, wsleep)
    b.position_at_end(wsleep)
    _wait_while_equal(m, b, p, pending, left, "wpend")
    b.branch(wl)
    b.position_at_end(fin)
    b.atomic_rmw("xchg", lock, ir.Constant(I32, 0), "release")
    b.ret_void()

    # barrier(sync, n): sync = {i32 count, i32 generation}
    bar = ir.Function(m, ir.FunctionType(VOID, [PTR, I32]), "graphc_rt_barrier")
    sync, n = bar.args
    b = ir.IRBuilder(bar.append_basic_block("entry"))
    cont = bar.append_basic_block("cont")
    out = bar.append_basic_block("out")
    b.cbranch(b.icmp_signed("<=", n, ir.Constant(I32, 1)), out, cont)
    b.position_at_end(cont)
    genp = b.gep(sync, [ir.Constant(I64, 1)], source_etype=I32)
    g = b.load_atomic(genp, "acquire", 4, typ=I32)
    c = b.atomic_rmw("add", sync, ir.Constant(I32, 1), "acq_rel")
    lastb = bar.append_basic_block("last")
    waitb = bar.append_basic_block("waitb")
    b.cbranch(b.icmp_signed("==", c, b.sub(n, ir.Constant(I32, 1))), lastb, waitb)
    b.position_at_end(lastb)
    b.atomic_rmw("xchg", sync, ir.Constant(I32, 0), "monotonic")
    b.atomic_rmw("add", genp, ir.Constant(I32, 1), "acq_rel")
    _futex(m, b, genp, FUTEX_WAKE, intmax)
    b.branch(out)
    b.position_at_end(waitb)
    _wait_while_equal(m, b, bar, genp, g, "bar")
    b.branch(out)
    b.position_at_end(out)
    b.ret_void()


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
