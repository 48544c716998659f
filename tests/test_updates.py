"""compile(..., updates=...): parameters written in place by the kernel,
every right-hand side computed from the values before the call."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


@pytest.mark.parametrize("backend", ["llvm", "interp"])
def test_sgd_step_updates_in_place(backend):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 2))
    w = gc.parameter(w0, name="w")
    x = gc.placeholder((4, 3), "float64", name="x")
    loss = gc.mean((x @ w) ** 2)
    (g,) = gc.grad(loss, [w])
    step = gc.compile(loss, updates={w: w - 0.1 * g}, backend=backend)
    X = rng.standard_normal((4, 3))
    buf = w.value
    l0 = step(x=X)
    np.testing.assert_allclose(l0, np.mean((X @ w0) ** 2))
    grad0 = 2 * X.T @ (X @ w0) / 8
    np.testing.assert_allclose(w.value, w0 - 0.1 * grad0)
    if backend == "llvm":
        assert w.value is buf          # written in place, no new array
    l1 = step(x=X)
    assert l1 < l0


@pytest.mark.parametrize("backend", ["llvm", "interp"])
def test_updates_see_old_values_and_swaps(backend):
    a = gc.parameter(np.array([1.0, 2.0]), name="a")
    b = gc.parameter(np.array([10.0, 20.0]), name="b")
    c = gc.parameter(np.array([0.0, 0.0]), name="c")
    f = gc.compile(gc.sum(a), updates={a: b, b: a, c: a + b}, backend=backend)
    assert f() == 3.0
    np.testing.assert_array_equal(a.value, [10, 20])
    np.testing.assert_array_equal(b.value, [1, 2])
    np.testing.assert_array_equal(c.value, [11, 22])


@pytest.mark.parametrize("backend", ["llvm", "interp"])
def test_update_from_placeholder_constant_and_broadcast(backend):
    p = gc.parameter(np.zeros((2, 2), np.float32), name="p")
    q = gc.parameter(np.zeros(3), name="q")
    x = gc.placeholder((2, 2), "float32", name="x")
    f = gc.compile(x * 1.0, updates={p: x, q: 5.0}, backend=backend)
    f(x=np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(p.value, np.ones((2, 2)))
    np.testing.assert_array_equal(q.value, [5, 5, 5])


def test_update_errors():
    p = gc.parameter(np.zeros(3), name="p")
    x = gc.placeholder((3,), "float64", name="x")
    with pytest.raises(TypeError, match="parameters"):
        gc.compile(x, updates={x: x})
    with pytest.raises(ValueError, match="'p'"):
        gc.compile(x, updates={p: gc.placeholder((4,), "float64", name="y")})
    with pytest.raises(TypeError, match="'p'"):
        gc.compile(x, updates={p: gc.cast(x, "int64")})
    with pytest.raises(TypeError, match="dict"):
        gc.compile(x, updates=[p])
