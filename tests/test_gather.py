"""take / scatter_add (embedding lookups and their gradient) and the special
functions erf / log1p: range checks, construction errors, accuracy."""
from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc


@pytest.mark.parametrize("backend", ["llvm", "interp"])
@pytest.mark.parametrize("bad", [5, -1, 1 << 40])
def test_take_out_of_range_is_a_runtime_error(backend, bad):
    x = gc.placeholder((5, 3), "float32", name="x")
    i = gc.placeholder((4,), "int64", name="i")
    f = gc.compile(gc.take(x, i), backend=backend)
    X = np.ones((5, 3), np.float32)
    np.testing.assert_array_equal(f(x=X, i=np.array([0, 4, 2, 1])), np.ones((4, 3)))
    with pytest.raises(gc.RuntimeCheckError, match=r"take: .*out of range \[0, 5\)"):
        f(x=X, i=np.array([0, bad, 2, 1]))


@pytest.mark.parametrize("backend", ["llvm", "interp"])
def test_scatter_add_out_of_range_and_repeats(backend):
    u = gc.placeholder((4, 2), "float64", name="u")
    i = gc.placeholder((4,), "int32", name="i")
    f = gc.compile(gc.scatter_add(u, i, 3), backend=backend)
    U = np.arange(8.0).reshape(4, 2)
    np.testing.assert_array_equal(f(u=U, i=np.array([2, 0, 2, 2], np.int32)),
                                  [[2, 3], [0, 0], [0 + 4 + 6, 1 + 5 + 7]])
    with pytest.raises(gc.RuntimeCheckError, match="scatter_add"):
        f(u=U, i=np.array([0, 3, 1, 1], np.int32))


def test_embedding_gradient_is_a_scatter_add():
    w = gc.parameter(np.random.default_rng(0).standard_normal((6, 3)), name="w")
    i = gc.placeholder((2, 5), "int64", name="i")
    g = gc.placeholder((2, 5, 3), "float64", name="g")
    (gw,) = gc.grad(gc.sum(gc.take(w, i) * g), [w])
    IDX = np.array([[0, 5, 5, 2, 0], [5, 1, 1, 1, 3]])
    G = np.random.default_rng(1).standard_normal((2, 5, 3))
    want = np.zeros((6, 3))
    np.add.at(want, IDX, G)
    for backend in ("llvm", "interp"):
        np.testing.assert_allclose(gc.compile(gw, backend=backend)(i=IDX, g=G), want, rtol=1e-12)


def test_construction_errors():
    x = gc.placeholder((5, 3), "float32", name="x")
    with pytest.raises(TypeError, match="integers"):
        gc.take(x, gc.placeholder((2,), "float32", name="f"))
    with pytest.raises(ValueError, match="axis"):
        gc.take(x, gc.placeholder((2,), "int64", name="i"), axis=2)
    with pytest.raises(ValueError, match="empty axis"):
        gc.take(gc.placeholder((0, 3), "float32", name="e"), gc.placeholder((2,), "int64", name="i"))
    with pytest.raises(ValueError, match="indices' shape"):
        gc.scatter_add(gc.placeholder((4, 2), "float32", name="u"),
                       gc.placeholder((3,), "int64", name="i"), 5)
    with pytest.raises(ValueError, match="size"):
        gc.scatter_add(gc.placeholder((4,), "float32", name="u"),
                       gc.placeholder((4,), "int64", name="i"), -1)
    with pytest.raises(TypeError, match="bool"):
        gc.scatter_add(gc.placeholder((4,), "bool", name="u"),
                       gc.placeholder((4,), "int64", name="i"), 5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log1p_is_accurate_for_tiny_and_extreme_values(dtype):
    v = np.array([0.0, -0.0, 1e-30, -1e-20, 1e-10, 3e-8, -1e-7, 1e-4, 0.5, -0.5, -0.999, 1e10,
                  np.inf, -1.0, -2.0, np.nan], dtype)
    x = gc.placeholder(v.shape, dtype, name="x")
    got = gc.compile(gc.log1p(x))(x=v)
    with np.errstate(all="ignore"):
        want = np.log1p(v.astype(np.float64)).astype(dtype)
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps, atol=0)
    assert np.signbit(got[1])                               # log1p(-0) = -0


def test_erf_matches_math_erf():
    v = np.concatenate([np.linspace(-6, 6, 101), [0.0, 1e-300, -1e-10, np.inf, -np.inf]])
    x = gc.placeholder(v.shape, "float64", name="x")
    got = gc.compile(gc.erf(x))(x=v)
    np.testing.assert_allclose(got, [math.erf(t) for t in v], rtol=1e-15, atol=1e-300)
