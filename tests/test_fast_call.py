"""The call fast path (runtime.fast_call): a call whose every input is a
positional, aligned C-contiguous ndarray of its placeholder's dtype and shape
runs without bind_inputs; every other call takes the checked path. Both must
give the same results, see parameter changes and raise the same errors.
Oracle: numpy."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import graphc as gc


def _mlp():
    r = np.random.default_rng(0)
    w0 = r.standard_normal((16, 8)).astype(np.float32)
    b0 = r.standard_normal(8).astype(np.float32)
    x = gc.placeholder((2, 16), "float32", name="x")
    pw, pb = gc.parameter(w0.copy(), name="w0"), gc.parameter(b0.copy(), name="b0")
    f = gc.compile(gc.relu(x @ pw + pb), inputs=[x], threads=1)

    def ref(xv):
        return np.maximum(xv.astype(np.float64) @ pw.value + pb.value, 0)
    return f, pw, ref


def test_fast_and_checked_calls_agree_and_see_new_parameter_values():
    f, pw, ref = _mlp()
    assert f._fast is not None
    xv = np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)
    first = f(xv)                                   # makes this thread's arena
    np.testing.assert_allclose(f(xv), ref(xv), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(f(xv), f(x=xv))   # fast path == keyword (checked) path
    np.testing.assert_array_equal(first, f(xv))
    out = f(xv)
    assert out is not f(xv) and out.flags.owndata     # a fresh array per call
    pw.value = pw.value * 2
    np.testing.assert_allclose(f(xv), ref(xv), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", ["fortran", "strided", "matrix", "list", "readonly"])
def test_inputs_the_fast_path_declines_are_still_right(form):
    f, _, ref = _mlp()
    xv = np.random.default_rng(2).standard_normal((2, 16)).astype(np.float32)
    f(xv)
    given = {"fortran": np.asfortranarray(xv),
             "strided": np.repeat(xv, 2, axis=1)[:, ::2],
             "matrix": np.asmatrix(xv),
             "list": xv.tolist(),
             "readonly": xv.copy()}[form]
    if form == "readonly":
        given.flags.writeable = False
    np.testing.assert_allclose(f(given), ref(xv), rtol=1e-5, atol=1e-5)


def test_wrong_inputs_raise_the_checked_errors():
    f, _, _ = _mlp()
    xv = np.zeros((2, 16), np.float32)
    f(xv)
    with pytest.raises(gc.InputTypeError, match=r"placeholder 'x' .*dtype float64"):
        f(xv.astype(np.float64))
    with pytest.raises(gc.InputError, match=r"placeholder 'x' .*got shape \(3, 16\)"):
        f(np.zeros((3, 16), np.float32))
    with pytest.raises(gc.InputError, match="too many positional inputs"):
        f(xv, xv)
    with pytest.raises(gc.InputError):
        f()


def test_a_new_thread_gets_its_own_arena():
    f, _, ref = _mlp()
    xs = [np.full((2, 16), k, np.float32) for k in range(4)]
    f(xs[0])
    got = {}

    def work(k):
        for _ in range(50):
            got[k] = f(xs[k])
    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for k in range(4):
        np.testing.assert_allclose(got[k], ref(xs[k]), rtol=1e-5, atol=1e-5)


def test_several_inputs_and_outputs_and_a_runtime_check():
    x = gc.placeholder((5, 3), "float32", name="x")
    i = gc.placeholder((4,), "int64", name="i")
    f = gc.compile([gc.take(x, i), gc.sum(x)], inputs=[x, i])
    assert f._fast is not None
    X = np.arange(15, dtype=np.float32).reshape(5, 3)
    idx = np.array([0, 4, 2, 1])
    for _ in range(2):
        a, s = f(X, idx)
        np.testing.assert_array_equal(a, X[idx])
        assert s == X.sum()
    with pytest.raises(gc.RuntimeCheckError, match=r"take: .*out of range \[0, 5\)"):
        f(X, np.array([0, 5, 2, 1]))
    a, s = f(X, idx)                       # and the next call is right again
    np.testing.assert_array_equal(a, X[idx])


def test_keyword_functions_and_host_callbacks_have_no_fast_path():
    x = gc.placeholder((3,), "float32", name="x")
    assert gc.compile(x * 2)._fast is None            # inputs by keyword only
    f = gc.compile(x * 2, inputs=[x], backend="interp")
    np.testing.assert_array_equal(f(np.ones(3, np.float32)), 2 * np.ones(3))
