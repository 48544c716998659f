"""@gc.function / gc.jit, gc.assign and gc.value_and_grad, against numpy
and against graphs built and compiled by hand."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import nn

# small batches of a symbolic dim warn that they cost the bound (tests/test_dynamic.py checks it)
pytestmark = pytest.mark.filterwarnings("ignore::graphc.PaddedBatchWarning")


def test_traces_once_per_signature_and_matches_numpy():
    @gc.function
    def f(x, y, scale=2.0):
        return gc.tanh(x @ y) * scale, gc.sum(x, 0)

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    for _ in range(3):
        out, s = f(a, b)
    np.testing.assert_allclose(out, np.tanh(a @ b) * 2.0, rtol=1e-12)
    np.testing.assert_allclose(s, a.sum(0), rtol=1e-12)
    assert f.traces == 1
    f(a, b, scale=3.0)                                     # a static argument: a new trace
    f(a.astype(np.float32), b.astype(np.float32))          # a new dtype
    f(rng.normal(size=(5, 4)), b)                          # a new shape
    assert f.traces == 4 and len(f.signatures) == 4
    assert "kernel" in f.report().lower() and f.passes and "graphc_main" in f.llvm_ir
    assert gc.jit is gc.function


def test_a_symbolic_batch_traces_once_for_every_size():
    @gc.function(batch=gc.Dim("batch", max=16))
    def f(x):
        return gc.mean(x, 0), gc.softmax(x, -1)

    rng = np.random.default_rng(1)
    for n in (1, 16, 5, 9):
        a = rng.normal(size=(n, 3))
        m, s = f(a)
        np.testing.assert_allclose(m, a.mean(0), rtol=1e-12)
        e = np.exp(a - a.max(1, keepdims=True))
        np.testing.assert_allclose(s, e / e.sum(1, keepdims=True), rtol=1e-12)
    assert f.traces == 1
    assert "symbolic: batch <= 16 on arg0 (planned for the bound)" in f.report()


def test_retracing_warns_beyond_max_traces():
    f = gc.function(lambda x: x * 2.0, max_traces=2)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for n in range(1, 5):
            f(np.zeros(n))
    assert f.traces == 4
    assert sum(issubclass(x.category, gc.RetraceWarning) for x in w) == 2
    assert "batch=gc.Dim" in str(w[-1].message)


def test_a_training_step_with_a_module_assign_and_value_and_grad():
    model = nn.Sequential(nn.Dense(8, activation="relu", seed=0), nn.Dense(3, seed=1))
    model(gc.placeholder((1, 4)))
    opt = gc.optim.SGD(0.1)

    def loss_fn(x, y):
        return nn.cross_entropy(model(x), y)

    @gc.function(batch=8)
    def step(x, y):
        loss, grads = gc.value_and_grad(loss_fn, wrt=model)(x, y)
        gc.assign({p: p - 0.1 * g for p, g in zip(model.parameters(), grads)})
        return loss

    # the oracle: the same step built and compiled by hand, on a copy of the weights
    start = [p.value.copy() for p in model.parameters()]
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(8, 4)).astype(np.float32), rng.integers(0, 3, size=8)
    traced = [float(step(X[:k], Y[:k])) for k in (8, 3, 8)]
    after = [p.value.copy() for p in model.parameters()]
    for p, v in zip(model.parameters(), start):
        p.value = v
    by_hand = []
    for k in (8, 3, 8):
        x = gc.placeholder((k, 4), name="x")
        y = gc.placeholder((k,), "int64", name="y")
        loss = loss_fn(x, y)
        f = gc.compile(loss, inputs=[x, y], updates=opt.updates(loss, model.parameters()),
                       backend="interp")
        by_hand.append(float(f(X[:k], Y[:k])))
    np.testing.assert_allclose(traced, by_hand, rtol=1e-5)
    for a, b in zip(after, [p.value for p in model.parameters()]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert step.traces == 1


def test_value_and_grad_on_arrays():
    vg = gc.value_and_grad(lambda x, w: gc.sum(gc.sin(x * w)), argnums=1)
    x, w = np.linspace(0, 1, 5), np.linspace(1, 2, 5)
    v, g = vg(x, w)
    np.testing.assert_allclose(v, np.sin(x * w).sum(), rtol=1e-12)
    np.testing.assert_allclose(g, x * np.cos(x * w), rtol=1e-12)


def test_errors():
    with pytest.raises(TypeError, match="return a graph node"):
        gc.function(lambda x: 3)(np.zeros(2))
    with pytest.raises(TypeError, match="neither an array nor a hashable"):
        gc.function(lambda x, d: x)(np.zeros(2), {})
    with pytest.raises(TypeError, match="only inside"):
        gc.assign(gc.parameter(np.zeros(2)), gc.constant(np.ones(2)))
    with pytest.raises(gc.GraphcError, match="not traced yet"):
        gc.function(lambda x: x).report()
