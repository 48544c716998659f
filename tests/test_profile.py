"""f.profile(): the kernel profiler, and the loop coalescing it led to.

The profiled function is compiled from the same graph with counters around
each kernel call; it must compute what the function computes (the oracle:
the uninstrumented function, itself checked against the interpreter
elsewhere) and update parameters as calls do. Times are not asserted."""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim


def _mlp_step(seed):
    model = nn.Sequential(nn.Dense(8, 16, activation=gc.relu, seed=seed), nn.Dense(16, 3, seed=seed + 1))
    x = gc.placeholder((5, 8), "float32", name="x")
    y = gc.placeholder((5,), "int64", name="y")
    loss = nn.cross_entropy(model(x), y)
    step = gc.compile(loss, updates=optim.SGD(lr=0.1).updates(loss, model.parameters()),
                      threads=1)
    return model, step


def test_profile_rows_and_table():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    y = rng.integers(0, 3, 5)
    _, step = _mlp_step(0)
    p = step.profile(x=x, y=y, repeat=3)
    assert p.calls == 3
    assert sorted(r.index for r in p.rows) == list(range(len(step.plan.steps)))
    assert all(r.seconds >= 0 and r.share >= 0 for r in p.rows)
    assert [r.seconds for r in p.rows] == sorted((r.seconds for r in p.rows), reverse=True)
    text = p.text()
    assert text.startswith(f"profile: {len(p.rows)} kernels, 3 calls")
    assert len(re.findall(r"^\s+#\d+ ", text, re.M)) == min(len(p.rows), 25)
    assert str(p) == text


def test_profile_updates_parameters_as_calls_do():
    """profile(repeat=3) is 1 + 3 calls of the step: the parameters end where
    four calls of an identical model's step leave them."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    y = rng.integers(0, 3, 5)
    m1, s1 = _mlp_step(7)
    m2, s2 = _mlp_step(7)
    s1.profile(x=x, y=y, repeat=3)
    for _ in range(4):
        s2(x=x, y=y)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(p1.value, p2.value, rtol=1e-6, atol=1e-7)


def test_profile_outputs_match():
    x = gc.placeholder((64, 32, 4, 4), "float32", name="x")
    y = gc.tanh(x) * 2.0 + gc.sum(x, axis=(0, 2, 3), keepdims=True)
    f = gc.compile(y, threads=2)
    xv = np.random.default_rng(2).standard_normal((64, 32, 4, 4)).astype(np.float32)
    f.profile(x=xv, repeat=1)
    np.testing.assert_allclose(f._profiled(x=xv), f(x=xv), rtol=1e-6, atol=1e-6)


def test_profile_errors():
    x = gc.placeholder((3,), "float32", name="x")
    f = gc.compile(x * 2.0)
    with pytest.raises(ValueError, match="repeat must be a positive int"):
        f.profile(x=np.ones(3, np.float32), repeat=0)
    with pytest.raises(ValueError, match="repeat must be a positive int"):
        f.profile(x=np.ones(3, np.float32), repeat=True)
    with pytest.raises(gc.InputError):
        f.profile(x=np.ones(4, np.float32))
    g = gc.compile(x * 2.0, backend="interp")
    with pytest.raises(ValueError, match="backend='llvm'"):
        g.profile(x=np.ones(3, np.float32))


# ------------------------------------------------------------------ coalesced loops

@pytest.mark.parametrize("shapes", [
    [(64, 32, 4, 4), (64, 32, 4, 4)],
    [(64, 32, 4, 4), (1, 32, 1, 1)],
    [(64, 32, 4, 4), (4, 4)],
    [(64, 32, 4, 4), (32, 4, 4)],
    [(64, 32, 4, 4), (64, 1, 4, 4)],
    [(64, 32, 4, 4), (64, 32, 1, 1)],
    [(3, 5, 7), (3, 1, 7)],
    [(2, 3, 5, 7), ()],
    [(1, 3, 1, 5), (1, 3, 1, 5)],
    [(6, 1, 1), (6, 1, 1)],
])
def test_coalesced_elementwise_matches_numpy(shapes):
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    phs = [gc.placeholder(s, "float32", name=f"a{k}") for k, s in enumerate(shapes)]
    y = gc.where(phs[0] > 0, phs[0] * phs[1], phs[0] - phs[1])
    want = np.where(arrays[0] > 0, arrays[0] * arrays[1], arrays[0] - arrays[1])
    for threads in (1, 2):
        f = gc.compile(y, threads=threads)
        got = f(**{f"a{k}": a for k, a in enumerate(arrays)})
        np.testing.assert_array_equal(got, want)


def test_full_shape_elementwise_kernel_is_one_loop():
    """A 4-d elementwise kernel whose buffers all span the whole domain
    addresses memory through one loop index: the kernel function has one loop."""
    a = gc.placeholder((64, 32, 4, 4), "float32", name="a")
    b = gc.placeholder((64, 32, 4, 4), "float32", name="b")
    f = gc.compile(a + b, threads=1)
    (k,) = [m for m in re.finditer(r"define internal void @\"?kernel\d+[^{]*\{(.*?)\n\}",
                                   f.llvm_ir, re.S)]
    loops = set(re.findall(r"^(\w+)\.cond:", k.group(1), re.M))
    assert len(loops) == 1, loops
    out = f(a=np.ones((64, 32, 4, 4), np.float32), b=np.full((64, 32, 4, 4), 2, np.float32))
    assert np.all(out == 3)
