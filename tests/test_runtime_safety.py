"""Hostile testing (issue 10) of the runtime: host callbacks that keep their
inputs, re-enter the compiled code or are interrupted; forking while another
thread compiles; array-likes from other libraries. Oracles: numpy, the
interpreter (``backend="interp"``)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import graphc as gc


def _op(registered, name, fn, reference=None, **kw):
    op = gc.register_op(name, reference=reference or fn, callback=fn, **kw)
    registered.append(name)
    return op


# -- item 7: a callback may keep what it is given ----------------------------------------

def test_callback_may_keep_its_inputs_after_the_call(isolated):
    # every kind of buffer a callback input can live in: the scratch arena (tanh(x)),
    # the caller's array (x, 8 MB: freed memory goes back to the OS), a parameter
    # (updated in place by the call), a constant, a one-element constant (spilled
    # to the native stack) and an output; after the calls, the function is dropped
    # and memory churned: what the callback kept must still hold the values of its call
    isolated("""
        import gc as pygc
        import numpy as np
        import graphc as gc

        saved = []
        def keep(a, x, p, c, one, o):
            saved.append((a, x, p, c, one, o))
            return a * 2.0 + x + p + c + one + o
        op = gc.register_op("keep6", reference=keep, callback=keep, shape=lambda *s: s[0])
        n = 1 << 20
        x = gc.placeholder((n,), "float64", name="x")
        p = gc.parameter(np.ones(n), name="p")
        c = gc.constant(np.linspace(0, 1, n))
        o = gc.sqrt(x * x + 1.0)
        y = op(gc.tanh(x), x, p, c, gc.constant(3.0), o)
        f = gc.compile([y, o], updates={p: p + 1.0})
        want = []
        for k in range(3):
            xv = np.random.default_rng(k).standard_normal(n)
            pv = p.value.copy()
            f(x=xv)
            want.append((np.tanh(xv), xv.copy(), pv, np.linspace(0, 1, n), np.array(3.0),
                         np.sqrt(xv * xv + 1.0)))
            del xv
        del f
        pygc.collect()
        junk = [np.full(n, 7.0) for _ in range(8)]
        for got, exp in zip(saved, want):
            for g, e in zip(got, exp):
                assert not g.flags.writeable
                np.testing.assert_allclose(g, e, rtol=1e-12)
        print("ok")
    """)


def test_callback_inputs_from_the_caller_and_constants_are_not_copied(registered):
    seen = []

    def spy(x, c):
        seen.append((x, c))
        return x + c

    op = _op(registered, "spy2", spy, shape=lambda a, b: a)
    x = gc.placeholder((4, 3), "float64", name="x")
    cv = np.arange(12.0).reshape(4, 3)
    f = gc.compile(op(x, gc.constant(cv)) * 2.0)
    xv = np.ones((4, 3))
    np.testing.assert_allclose(f(x=xv), (xv + cv) * 2.0)
    sx, sc = seen[0]
    assert np.shares_memory(sx, xv) and not sx.flags.writeable     # a view that keeps xv alive
    np.testing.assert_array_equal(sc, cv)


def test_callback_result_is_copied_in_and_checked(registered):
    buf = np.zeros(3)

    def reuse(x):           # returns the same array every time, and changes it later
        buf[:] = x * 10.0
        return buf

    op = _op(registered, "reuse", reuse)
    x = gc.placeholder((3,), "float64", name="x")
    f = gc.compile(op(x), cache=False)
    r1 = f(x=np.array([1.0, 2, 3]))
    f(x=np.array([4.0, 5, 6]))
    np.testing.assert_array_equal(r1, [10.0, 20, 30])
    op2 = _op(registered, "badshape", lambda a: a[:2])
    with pytest.raises(gc.RuntimeCheckError, match=r"returned shape \(2,\)"):
        gc.compile(op2(x))(x=np.ones(3))


# -- item 8: re-entrant callbacks -----------------------------------------------------------

def _np_y(xv):
    return np.exp(np.tanh(xv) * 2.0) + np.sqrt(xv * xv + 1.0)


def _reentrant(registered, name, depth_limit=1):
    """y(x) = exp(cb(tanh x)) + sqrt(x^2 + 1), where cb(a) = 2a also calls
    ``state.f`` (the compiled y) on a constant vector, up to ``depth_limit``
    deep, and keeps what it returned (in ``state.inner``, per thread)."""
    state = threading.local()

    def re(a):
        d = getattr(state, "d", 0)
        if d < depth_limit:
            state.d = d + 1
            try:
                v = np.full(a.shape, 0.25 * (d + 1))
                state.inner.append((v, state.f(x=v)))
            finally:
                state.d = d
        return a * 2.0

    op = _op(registered, name, re, reference=lambda a: a * 2.0)
    x = gc.placeholder((64,), "float64", name="x")
    return state, gc.exp(op(gc.tanh(x))) + gc.sqrt(x * x + 1.0)


def test_callback_reentering_the_same_function(registered):
    state, y = _reentrant(registered, "re1", depth_limit=3)
    f = gc.compile(y)
    state.f, state.inner = f, []
    xv = np.linspace(-1, 1, 64)
    for _ in range(3):
        np.testing.assert_allclose(f(x=xv), _np_y(xv), rtol=1e-14)
    assert len(state.inner) == 9
    for v, got in state.inner:
        np.testing.assert_allclose(got, _np_y(v), rtol=1e-14)


def test_callback_calling_another_compiled_function(registered):
    z = gc.placeholder((64,), "float64", name="x")
    g = gc.compile(gc.tanh(z) * 3.0 + 1.0)
    calls = []

    def other(x):
        calls.append(g(x=x * 0.5))
        return x * 2.0

    op = _op(registered, "other", other, reference=lambda x: x * 2.0)
    x = gc.placeholder((64,), "float64", name="x")
    f = gc.compile(gc.exp(op(gc.tanh(x))) + gc.sqrt(x * x + 1.0))
    xv = np.linspace(-2, 2, 64)
    np.testing.assert_allclose(f(x=xv), _np_y(xv), rtol=1e-14)
    np.testing.assert_allclose(calls[0], np.tanh(np.tanh(xv) * 0.5) * 3 + 1, rtol=1e-14)


def test_reentrant_callback_from_several_threads(registered):
    state, y = _reentrant(registered, "re2", depth_limit=2)
    f = gc.compile(y)
    errors = []

    def worker(seed):
        try:
            state.f, state.inner = f, []
            rng = np.random.default_rng(seed)
            for _ in range(30):
                xv = rng.standard_normal(64)
                np.testing.assert_allclose(f(x=xv), _np_y(xv), rtol=1e-14)
            assert len(state.inner) == 60
            for v, got in state.inner:
                np.testing.assert_allclose(got, _np_y(v), rtol=1e-14)
        except BaseException as e:      # reported below
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]


# -- item 10: fork while another thread compiles ------------------------------------------

def test_fork_while_another_thread_compiles(isolated):
    isolated("""
        import faulthandler, os, threading, time, warnings
        import numpy as np
        import graphc as gc
        warnings.simplefilter("ignore", DeprecationWarning)   # "multi-threaded fork"
        stop, count = threading.Event(), [0]
        def churn():
            k = 0
            while not stop.is_set():
                k += 1
                x = gc.placeholder((8, k % 7 + 1), "float32", name="x")
                gc.compile(gc.tanh(x) * float(k) + 1.0, cache=False)
                count[0] += 1
        t = threading.Thread(target=churn, daemon=True)
        t.start()
        while count[0] < 2:
            time.sleep(0.01)
        codes = []
        for i in range(6):
            time.sleep(0.03 * i)
            pid = os.fork()
            if pid == 0:
                faulthandler.dump_traceback_later(60, exit=True)   # a deadlock fails
                x = gc.placeholder((3,), "float64", name="x")
                f = gc.compile(gc.exp(x) * 3.0 + float(i), cache=False)
                ok = np.allclose(f(x=np.arange(3.0)), np.exp(np.arange(3.0)) * 3 + i)
                os._exit(0 if ok else 3)
            codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        stop.set()
        t.join()
        assert codes == [0] * 6, codes
        # and the parent still compiles
        x = gc.placeholder((2,), "float64", name="x")
        assert np.allclose(gc.compile(x * 2.0, cache=False)(x=np.ones(2)), 2.0)
    """, timeout=400)


def test_fork_handlers_recreate_graphc_locks():
    from graphc import cache, forksafe
    from graphc.backend.llvm import gemm, jit, rtlib
    names = {(g.get("__name__"), n) for _, g, n in forksafe._LOCKS}
    for mod, name in ((cache, "_lock"), (jit, "_lock"), (rtlib, "_lock"), (gemm, "_SHARED_LOCK")):
        assert (mod.__name__, name) in names
    ranks = [r for r, *_ in forksafe._LOCKS]
    assert ranks == sorted(ranks)


# -- item 17: one rule for array-likes ------------------------------------------------------

class Raising:
    """Like a torch tensor that requires grad."""
    shape, dtype = (3,), np.dtype(np.float32)

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("Can't call numpy() on Tensor that requires grad")


class F64:
    def __init__(self, a):
        self.a = np.asarray(a, np.float64)

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


class Interface:
    def __init__(self, a):
        self._a = np.ascontiguousarray(a)
        self.__array_interface__ = self._a.__array_interface__


def test_array_like_whose_conversion_raises_is_an_input_type_error():
    x = gc.placeholder((3,), "float32", name="x")
    f = gc.compile(x * 2.0)
    with pytest.raises(gc.InputTypeError, match=r"placeholder 'x'.*RuntimeError: Can't call numpy") as ei:
        f(x=Raising())
    assert isinstance(ei.value.__cause__, RuntimeError)
    with pytest.raises(gc.DTypeError, match="parameter.*RuntimeError") as ei:
        gc.parameter(Raising())
    assert isinstance(ei.value.__cause__, RuntimeError)
    p = gc.parameter(np.zeros(3, np.float32), name="w")
    with pytest.raises(gc.DTypeError, match="parameter 'w'.*RuntimeError") as ei:
        p.value = Raising()
    assert isinstance(ei.value.__cause__, RuntimeError)
    with pytest.raises(gc.DTypeError, match="constant.*RuntimeError"):
        gc.constant(Raising())


@pytest.mark.parametrize("make", [F64, Interface, np.array], ids=["__array__", "__array_interface__",
                                                                 "ndarray"])
def test_array_likes_follow_the_numpy_dtype_rule(make):
    v = np.array([1.5, -2.0, 3.25])
    x32 = gc.placeholder((3,), "float32", name="x")
    f32 = gc.compile(x32 * 2.0)
    with pytest.raises(gc.InputTypeError, match=r"placeholder 'x' \(float32\[3\]\).*float64"):
        f32(x=make(v))
    x64 = gc.placeholder((3,), "float64", name="x")
    np.testing.assert_array_equal(gc.compile(x64 * 2.0)(x=make(v)), v * 2.0)
    # Python lists have no dtype of their own: converted exactly, as before
    np.testing.assert_array_equal(f32(x=[1.5, -2.0, 3.25]), (v * 2.0).astype(np.float32))


def test_torch_tensors_follow_the_numpy_dtype_rule():
    torch = pytest.importorskip("torch")
    x32 = gc.placeholder((3,), "float32", name="x")
    f32 = gc.compile(x32 * 2.0)
    with pytest.raises(gc.InputTypeError, match="float64"):
        f32(x=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    with pytest.raises(gc.InputTypeError, match="placeholder 'x'") as ei:
        f32(x=torch.ones(3, requires_grad=True))
    assert ei.value.__cause__ is not None
    np.testing.assert_array_equal(f32(x=torch.ones(3)), np.full(3, 2.0, np.float32))


# -- item 19: KeyboardInterrupt and other BaseExceptions in a callback -----------------------

@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exception_in_callback_propagates_as_itself(registered, exc):
    armed = [True]

    def stop(x):
        if armed[0]:
            raise exc("stop")
        return x

    op = _op(registered, f"stop_{exc.__name__}", stop, reference=lambda x: x)
    x = gc.placeholder((3,), "float64", name="x")
    f = gc.compile(gc.exp(op(gc.tanh(x))) * 2.0)
    with pytest.raises(exc, match="stop"):
        f(x=np.ones(3))
    armed[0] = False          # and the function works afterwards
    np.testing.assert_allclose(f(x=np.ones(3)), np.exp(np.tanh(np.ones(3))) * 2.0)


def test_exception_in_callback_is_chained_to_the_runtime_check_error(registered):
    def bad(x):
        raise ValueError("no thanks")

    op = _op(registered, "bad_cb", bad, reference=lambda x: x)
    x = gc.placeholder((3,), "float64", name="x")
    with pytest.raises(gc.RuntimeCheckError, match="raised ValueError: no thanks") as ei:
        gc.compile(op(x) * 2.0)(x=np.ones(3))
    assert isinstance(ei.value.__cause__, ValueError) and str(ei.value.__cause__) == "no thanks"


def test_keyboard_interrupt_in_a_nested_call_reaches_the_caller(registered):
    z = gc.placeholder((3,), "float64", name="z")

    def inner_cb(a):
        raise KeyboardInterrupt

    iop = _op(registered, "inner_ki", inner_cb, reference=lambda a: a)
    g = gc.compile(iop(z) + 1.0)

    def outer_cb(a):
        return g(z=a)

    op = _op(registered, "outer_ki", outer_cb, reference=lambda a: a + 1.0)
    x = gc.placeholder((3,), "float64", name="x")
    with pytest.raises(KeyboardInterrupt):
        gc.compile(op(x) * 2.0)(x=np.ones(3))


def test_ctrl_c_during_a_callback_is_a_keyboard_interrupt(isolated):
    # a real SIGINT and _thread.interrupt_main() while the callback runs
    r = isolated("""
        import _thread, os, signal
        import numpy as np
        import graphc as gc
        how = {}
        def slow(x):
            how["send"]()
            s = 0
            for k in range(100000):    # Python code: the pending signal is handled here
                s += k
            return x
        op = gc.register_op("slow_cb", reference=lambda x: x, callback=slow)
        x = gc.placeholder((4,), "float64", name="x")
        f = gc.compile(gc.exp(op(gc.tanh(x))) + 1.0)
        for name, send in (("interrupt_main", _thread.interrupt_main),
                           ("SIGINT", lambda: os.kill(os.getpid(), signal.SIGINT))):
            how["send"] = send
            try:
                f(x=np.ones(4))
                print(name, "no exception")
            except KeyboardInterrupt:
                print(name, "KeyboardInterrupt")
            except BaseException as e:
                print(name, type(e).__name__)
        how["send"] = lambda: None
        assert np.allclose(f(x=np.ones(4)), np.exp(np.tanh(np.ones(4))) + 1.0)
    """)
    assert r.stdout.split("\n")[:2] == ["interrupt_main KeyboardInterrupt", "SIGINT KeyboardInterrupt"]


def test_ctrl_c_in_native_code_just_before_a_callback_is_a_keyboard_interrupt(isolated):
    # the signal arrives while native code runs; its KeyboardInterrupt is raised as
    # the callback's trampoline is entered, before any try in it (ctypes reports it
    # as unraisable and leaves the callback's return value undefined)
    r = isolated("""
        import os, signal, threading, time
        import numpy as np
        import graphc as gc
        op = gc.register_op("after_cb", reference=lambda x: x, callback=lambda x: x)
        n = 1 << 21
        x = gc.placeholder((n,), "float64", name="x")
        slow = gc.exp(gc.tanh(gc.exp(gc.tanh(x)) * 0.5))
        f = gc.compile(op(slow).sum(), threads=1)
        xv = np.ones(n)
        t0 = time.perf_counter(); f(x=xv); t = time.perf_counter() - t0
        outcomes = []
        for k in range(3):
            threading.Timer(t * 0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
            try:
                f(x=xv)
                time.sleep(t)                 # (a late signal lands here)
                outcomes.append("none")
            except KeyboardInterrupt:
                outcomes.append("KeyboardInterrupt")
            except BaseException as e:
                outcomes.append(type(e).__name__)
        print(outcomes)
    """)
    assert r.stdout.strip() == str(["KeyboardInterrupt"] * 3), r.stdout + r.stderr


def test_fork_drops_other_threads_arenas(isolated):
    # per-thread state (a compiled function's arena) of threads that do not exist in
    # the child is freed there; the forking thread's own is kept and still works
    isolated("""
        import gc as pygc, os, threading, warnings, weakref
        import numpy as np
        import graphc as gc
        warnings.simplefilter("ignore", DeprecationWarning)
        x = gc.placeholder((1000,), "float64", name="x")
        f = gc.compile(gc.exp(gc.tanh(x)) * 2.0 + x)
        refs, go, ready = [], threading.Event(), threading.Event()
        def other():
            f(x=np.ones(1000))
            refs.append(weakref.ref(f._native._local.arena))
            ready.set()
            go.wait()
        t = threading.Thread(target=other)
        t.start()
        ready.wait()
        f(x=np.ones(1000))
        mine = weakref.ref(f._native._local.arena)
        pid = os.fork()
        if pid == 0:
            pygc.collect()
            ok = refs[0]() is None and mine() is not None and \\
                np.allclose(f(x=np.zeros(1000)), 2.0)
            os._exit(0 if ok else 1)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        go.set()
        t.join()
        assert code == 0, code
    """)


def test_parameters_take_array_likes_as_they_take_numpy_arrays():
    a64 = np.array([1.5, -2.0, 3.25])
    for make in (F64, Interface):
        p = gc.parameter(make(a64), name="w")
        assert p.dtype == np.float64
        np.testing.assert_array_equal(p.value, a64)
        q = gc.parameter(np.zeros(3, np.float32), name="v")
        q.value = a64                       # a numpy float64 array: converted exactly
        from_numpy = q.value.copy()
        q.value = make(a64)                 # the same for an array-like
        np.testing.assert_array_equal(q.value, from_numpy)
        assert q.value.dtype == np.float32
        with pytest.raises(gc.DTypeError):
            q.value = np.array([1e300, 0, 0])          # overflows float32
        with pytest.raises(gc.DTypeError):
            q.value = make(np.array([1e300, 0, 0]))


def test_only_code_that_calls_back_takes_the_reentrant_path(registered):
    from graphc.runtime import HostedCall, NativeCall
    x = gc.placeholder((3,), "float64", name="x")
    assert type(gc.compile(x * 2.0)._native) is NativeCall
    op = _op(registered, "plain_cb", lambda a: a + 1.0)
    f = gc.compile(op(x) * 2.0)
    assert type(f._native) is HostedCall
    assert type(gc.compile(op(x) * 2.0)._native) is HostedCall      # a cache hit too
    np.testing.assert_array_equal(f(x=np.ones(3)), np.full(3, 4.0))
