"""Threads: one compiled function called from 8 threads x 500 calls with
different inputs gives every thread its own correct results; compiling (and
building graphs) from several threads at once is safe.

The native call releases the GIL (ctypes), so the calls really run in
parallel; each call gets its own status word and each thread its own arena.
Each scenario runs in a fresh interpreter (the ``isolated`` fixture), so a
crash from a race is a failed test, not a dead runner.
"""
from __future__ import annotations

import threading

import numpy as np

import graphc as gc

N_THREADS, N_CALLS = 8, 500


def _mlp():
    rng = np.random.default_rng(0)
    x = gc.placeholder((16, 8), "float64", name="x")
    y = gc.placeholder((16,), "int64", name="y")
    w = gc.parameter(rng.standard_normal((8, 5)), name="w")
    b = gc.parameter(rng.standard_normal(5), name="b")
    logits = gc.tanh(x @ w + b)
    losses = gc.softmax_cross_entropy(logits, y)
    (gw,) = gc.grad(gc.mean(losses), [w])
    return [x, y], [losses, gc.softmax(logits), gw]


def _inputs(t, k):
    rng = np.random.default_rng(1000 * t + k)
    return rng.standard_normal((16, 8)), rng.integers(0, 5, 16)


def _run_threads(fn, n=N_THREADS):
    """Run ``fn(t)`` in ``n`` threads started together; re-raise the first error."""
    errors = []
    barrier = threading.Barrier(n)

    def body(t):
        try:
            barrier.wait()
            fn(t)
        except BaseException as e:   # noqa: BLE001 - handed to the main thread
            errors.append((t, e))
    threads = [threading.Thread(target=body, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        t, e = errors[0]
        raise AssertionError(f"{len(errors)} thread(s) failed; thread {t}: {type(e).__name__}: {e}") from e


def one_function_many_threads():
    phs, outs = _mlp()
    f = gc.compile(outs, inputs=phs)
    fi = gc.compile(outs, inputs=phs, backend="interp")
    # a second function with other shapes, called at the same time (separate arenas)
    z = gc.placeholder((64,), "float32", name="z")
    g = gc.compile(gc.sum(gc.exp(z) * z), inputs=[z])
    # the expected results, one thread: every call of f checked against the interpreter
    expected = {}
    for t in range(N_THREADS):
        for k in range(N_CALLS):
            xs = _inputs(t, k)
            expected[t, k] = f(*xs)
            if k % 25 == 0:
                for a, b in zip(expected[t, k], fi(*xs)):
                    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    calls = [0] * N_THREADS
    checks = [0] * N_THREADS

    def work(t):
        zv = np.linspace(-1, 1, 64, dtype=np.float32) * (t + 1)
        zwant = np.float32(np.sum(np.exp(zv) * zv, dtype=np.float32))
        for k in range(N_CALLS):
            xs = _inputs(t, k)
            got = f(*xs)
            calls[t] += 1
            for a, b in zip(got, expected[t, k]):
                np.testing.assert_array_equal(a, b, err_msg=f"thread {t}, call {k}")
            if k % 50 == 7:     # a failing check in this thread leaves the others alone
                bad = xs[1].copy()
                bad[3] = 5 + t
                try:
                    f(xs[0], bad)
                    raise AssertionError(f"thread {t}: a bad label was not caught")
                except gc.RuntimeCheckError as e:
                    assert "out of range [0, 5)" in str(e), str(e)
                checks[t] += 1
            if k % 10 == 3:
                np.testing.assert_allclose(g(zv), zwant, rtol=1e-5)
    _run_threads(work)
    assert calls == [N_CALLS] * N_THREADS
    assert checks == [N_CALLS // 50] * N_THREADS
    print("calls", sum(calls), "error checks", sum(checks))


def compile_from_many_threads():
    # one shared subgraph, built here and compiled by every thread
    shared_x = gc.placeholder((4, 3), "float64", name="sx")
    shared = gc.softmax(gc.tanh(shared_x) * 2.0, 0)
    sv = np.random.default_rng(5).standard_normal((4, 3))
    swant = gc.compile(shared, backend="interp")(sx=sv)
    done = [0] * N_THREADS

    def work(t):
        rng = np.random.default_rng(t)
        for k in range(6):
            # graphs built in this thread (the hash-consing table and id
            # counter are shared), some identical across threads
            n = 2 + (k + t) % 3
            x = gc.placeholder((n, 5), "float32" if k % 2 else "float64", name="x")
            w = gc.constant(np.arange(5 * n, dtype=x.dtype).reshape(5, n) / 10)
            y = gc.sum(gc.relu(x @ w) - gc.max(x, 1, keepdims=True) * float(k), 1)
            if k % 3 == 0:
                y = y + gc.logsumexp(x, 1) + float(t)
            f = gc.compile([y, shared])
            xv = rng.standard_normal((n, 5)).astype(x.dtype)
            want = gc.compile(y, backend="interp")(x=xv)
            got, sgot = f(x=xv, sx=sv)
            tol = 1e-5 if x.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
            np.testing.assert_allclose(sgot, swant, rtol=1e-12)
            if k == 2:
                assert "ret" in f.asm          # assembly from the shared target machine
            done[t] += 1
    _run_threads(work)
    assert done == [6] * N_THREADS
    print("compiled", sum(done), "functions in", N_THREADS, "threads")


def test_one_function_called_from_8_threads_x_500(isolated):
    r = isolated("import sys; sys.path.insert(0, 'tests'); import test_threads as T; "
                 "T.one_function_many_threads()", timeout=600)
    assert f"calls {N_THREADS * N_CALLS}" in r.stdout


def test_compiling_from_several_threads_at_once(isolated):
    r = isolated("import sys; sys.path.insert(0, 'tests'); import test_threads as T; "
                 "T.compile_from_many_threads()", timeout=600)
    assert f"compiled {6 * N_THREADS} functions" in r.stdout
