"""The counter-based generator behind dropout: Philox-4x32-10 against the
published known-answer vectors, compiled vs interpreter bit for bit, and the
statistics of its uniforms."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ops.random import philox4x32

from optable import _np_random_uniform, _py_philox4x32_10

# Random123 tests/kat_vectors: counter (4 words), key (2 words) -> output (4 words)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_philox_known_answers(ctr, key, want):
    assert tuple(_py_philox4x32_10(ctr, key)) == want          # the test oracle
    got = philox4x32(*[np.array([c], np.uint64) for c in ctr], *key)   # the op's reference
    assert tuple(int(w[0]) for w in got) == want


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_interp_and_oracle_agree_bitwise(dtype):
    c = gc.placeholder((), "int64", name="c")
    u = gc.random_uniform((7, 5), 2 ** 63 + 12345, c, dtype)
    f, fi = gc.compile(u), gc.compile(u, backend="interp")
    for counter in (0, 1, 2 ** 33 + 5, -1):
        a = f(c=np.int64(counter))
        np.testing.assert_array_equal(a, fi(c=np.int64(counter)))
        np.testing.assert_array_equal(a, _np_random_uniform(counter, (7, 5), 2 ** 63 + 12345, dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_statistics(dtype):
    c = gc.placeholder((), "int64", name="c")
    n = 1 << 16
    f = gc.compile(gc.random_uniform((n,), 7, c, dtype))
    a, b = f(c=np.int64(0)), f(c=np.int64(1))
    for v in (a, b):
        assert v.dtype == np.dtype(dtype)
        assert v.min() >= 0.0 and v.max() < 1.0
        # mean and variance of U(0,1): 1/2 and 1/12, within 6 standard errors
        assert abs(v.mean() - 0.5) < 6 * np.sqrt(1 / 12 / n)
        assert abs(v.var() - 1 / 12) < 6 * np.sqrt(1 / 180 / n)
        # chi-square over 64 bins (63 dof: mean 63, sd ~11.2)
        counts = np.bincount((v * 64).astype(int), minlength=64)
        chi2 = ((counts - n / 64) ** 2 / (n / 64)).sum()
        assert chi2 < 63 + 6 * 11.2
    # consecutive counters and neighbouring elements are uncorrelated
    assert abs(np.corrcoef(a, b)[0, 1]) < 6 / np.sqrt(n)
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 6 / np.sqrt(n)
    assert not np.array_equal(a, b)


def test_seeds_differ_and_are_deterministic():
    f1 = gc.compile(gc.random_uniform((100,), 1, 0))
    f2 = gc.compile(gc.random_uniform((100,), 2, 0))
    np.testing.assert_array_equal(f1(), gc.compile(gc.random_uniform((100,), 1, 0))())
    assert np.mean(f1() == f2()) < 0.05


def test_random_uniform_errors():
    with pytest.raises(TypeError, match="float32 or float64"):
        gc.random_uniform((3,), 0, 0, "int32")
    with pytest.raises(TypeError, match="seed"):
        gc.random_uniform((3,), 1.5)
    with pytest.raises(TypeError, match="counter"):
        gc.random_uniform((3,), 0, gc.placeholder((), "float32", name="c"))
    with pytest.raises(ValueError, match="0-d"):
        gc.random_uniform((3,), 0, gc.placeholder((2,), "int64", name="c"))


def test_random_has_no_gradient_and_fuses_into_consumers():
    x = gc.placeholder((4,), "float64", name="x")
    y = gc.sum(x * gc.random_uniform((4,), 3, 0, "float64"))
    (g,) = gc.grad(y, [x])
    f = gc.compile([y, g])
    fi = gc.compile([y, g], backend="interp")
    X = np.arange(4.0)
    np.testing.assert_allclose(f(x=X)[1], fi(x=X)[1])
    np.testing.assert_array_equal(f(x=X)[1], _np_random_uniform(0, (4,), 3, "float64"))
