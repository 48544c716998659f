"""float32 reductions over 10**7 elements: within 1e-6 relative of the
float64 result (numpy's own float32 sums are not, for some layouts), and the
same bits on every call of a compiled function.

The oracle is numpy's float64 sum of the same float32 values. Zero-mean data
cancels (its sum is ~1e-4 of the sum of magnitudes), so for it the bound is
relative to ``sum(|x|)``, the quantity any floating-point sum's error is
proportional to."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

N = 10 ** 7
LAYOUTS = [((N,), None), ((10, N // 10), 1), ((N // 10, 10), 0), ((100, 1000, 100), (0, 2))]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return {"uniform(0, 1)": rng.uniform(0, 1, N).astype(np.float32),
            "1000 + normal": (1000 + rng.standard_normal(N)).astype(np.float32),
            "-uniform(0, 1e30)": (-rng.uniform(0, 1e30, N)).astype(np.float32),
            "normal": rng.standard_normal(N).astype(np.float32)}


def rel_errors(got, a, axis, mean: bool):
    ref = a.astype(np.float64).sum(axis)
    mag = np.abs(a).astype(np.float64).sum(axis)
    count = a.size // np.size(ref)
    if mean:
        ref, mag = ref / count, mag / count
    err = np.abs(np.asarray(got, np.float64) - ref)
    return np.max(err / np.abs(ref)), np.max(err / mag)


@pytest.mark.parametrize("opt_level", [0, 3])
@pytest.mark.parametrize("shape,axis", LAYOUTS, ids=[f"{s}-axis{a}" for s, a in LAYOUTS])
def test_float32_sums_of_ten_million_match_float64(data, shape, axis, opt_level):
    x = gc.placeholder(shape, "float32", name="x")
    f = gc.compile([gc.sum(x, axis), gc.mean(x, axis)], opt_level=opt_level)
    for name, flat in data.items():
        a = flat.reshape(shape)
        s, m = f(x=a)
        assert s.dtype == m.dtype == np.float32
        for got, mean in ((s, False), (m, True)):
            rel, rel_mag = rel_errors(got, a, axis, mean)
            if name == "normal":            # cancels: bound the error by sum(|x|)
                assert rel_mag <= 1e-7, (name, "mean" if mean else "sum", rel_mag)
            else:
                assert rel <= 1e-6, (name, "mean" if mean else "sum", rel)


def test_numpy_float32_sums_are_less_accurate_here(data):
    """Why graphc does not just do what numpy does: numpy's float32 sum down
    the columns of a (10**6, 10) array accumulates row after row in float32."""
    a = data["1000 + normal"].reshape(N // 10, 10)
    rel, _ = rel_errors(a.sum(0), a, 0, False)
    assert rel > 1e-4
    x = gc.placeholder(a.shape, "float32", name="x")
    rel, _ = rel_errors(gc.compile(gc.sum(x, 0))(x=a), a, 0, False)
    assert rel <= 1e-6


@pytest.mark.parametrize("shape,axis", LAYOUTS[:3], ids=[f"{s}-axis{a}" for s, a in LAYOUTS[:3]])
def test_bitwise_reproducible_for_a_fixed_thread_count(data, shape, axis):
    """Every call of one compiled function gives the same bits (the order of
    additions is fixed at compile time, whatever the threads that run);
    functions compiled for other thread counts agree to rounding."""
    x = gc.placeholder(shape, "float32", name="x")
    outs = [gc.sum(x * 0.5 + 1.0, axis), gc.mean(gc.tanh(x), axis)]
    a = data["normal"].reshape(shape)
    first = None
    for threads in (1, 2, 3):
        f = gc.compile(outs, threads=threads)
        mine = f(x=a)
        for _ in range(3):
            for g, w in zip(f(x=a), mine):
                np.testing.assert_array_equal(g, w)
        if first is None:
            first = mine
        for g, w in zip(mine, first):
            np.testing.assert_allclose(g, w, rtol=1e-6)
