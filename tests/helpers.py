"""Shared test helpers: build graphs from an op-table sample, run them on
both backends, and check gradients against central finite differences."""
from __future__ import annotations

import numpy as np

import graphc as gc


def user_kwargs(sample) -> dict:
    return {k: v for k, v in sample.kwargs.items() if not k.startswith("_")}


def placeholders_for(arrays, prefix="in"):
    return [gc.placeholder(a.shape, a.dtype, name=f"{prefix}{k}") for k, a in enumerate(arrays)]


def feeds_for(phs, arrays) -> dict:
    return {p.name: a for p, a in zip(phs, arrays)}


def assert_close(actual, expected, rtol, atol, what=""):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if actual.dtype.kind in "fc":
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


def numeric_grad(f, arrays, wrt, eps):
    """Central finite differences of scalar ``f(arrays)`` w.r.t. ``arrays[wrt]``."""
    x = arrays[wrt]
    g = np.zeros_like(x, dtype=np.float64)
    flat = x.reshape(-1)
    gflat = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = float(f(arrays))
        flat[i] = old - eps
        fm = float(f(arrays))
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def check_grads(loss, phs, arrays, wrt, eps=1e-6, tol=1e-6):
    """Compare gc.grad(loss) (compiled and interpreted) with finite differences."""
    grads = gc.grad(loss, [phs[i] for i in wrt])
    f_int = gc.compile(loss, inputs=phs, backend="interp")
    g_llvm = gc.compile(grads, inputs=phs)(*arrays)
    g_int = gc.compile(grads, inputs=phs, backend="interp")(*arrays)
    for k, i in enumerate(wrt):
        num = numeric_grad(lambda arrs: f_int(*arrs), arrays, i, eps)
        np.testing.assert_allclose(g_int[k], num, rtol=tol * 10, atol=tol,
                                   err_msg=f"interp gradient wrt input {i}")
        np.testing.assert_allclose(g_llvm[k], g_int[k], rtol=1e-9, atol=1e-12,
                                   err_msg=f"compiled gradient wrt input {i}")
    return grads


def _as_list(r) -> list:
    return [np.array(x) for x in (r if isinstance(r, tuple) else (r,))]


def against_interp_with_updates(outputs, updates, params, feeds, *, calls=2, rtol=1e-6,
                                atol=1e-6, **compile_kw):
    """Compile ``outputs`` with ``updates``, run it ``calls`` times, then run
    the numpy interpreter from the same starting parameter values and
    compare the outputs and the parameters after each call. Returns the
    compiled function."""
    start = [p.value.copy() for p in params]
    f = gc.compile(outputs, updates=updates, cache=False, **compile_kw)
    got = []
    for _ in range(calls):
        got.append((_as_list(f(**feeds)), [p.value.copy() for p in params]))
    for p, v in zip(params, start):
        p.value = v
    ref = gc.compile(outputs, updates=updates, backend="interp")
    for c in range(calls):
        for a, b in zip(got[c][0], _as_list(ref(**feeds))):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"output, call {c + 1}")
        for p, a in zip(params, got[c][1]):
            np.testing.assert_allclose(a, p.value, rtol=rtol, atol=atol,
                                       err_msg=f"parameter {p.name}, call {c + 1}")
    return f
