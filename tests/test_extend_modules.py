"""Extending graphc, way 4: a new layer (gc.nn.Module subclass), a new
optimizer (gc.optim.Optimizer subclass: Lion) and a new loss (a function),
checked against numpy; the seed document's activation inside
gc.nn.Dense(784, 128, activation=...) fused into the GEMM epilogue, and
training the spiral demo with it."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.demo import spiral

from helpers import check_grads


def custom_activation(x):
    return gc.maximum(0.0, x) - 0.1 * x


class Lion(gc.optim.Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms")::

        c = b1 * m + (1 - b1) * g
        p = p * (1 - lr * wd) - lr * sign(c)
        m = b2 * m + (1 - b2) * g
    """

    def __init__(self, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(lr)
        self.betas = tuple(float(b) for b in betas)
        self.weight_decay = float(weight_decay)

    def init_state(self, p):
        return {"exp_avg": np.zeros(p.shape)}

    def update(self, p, g, state, t):
        b1, b2 = self.betas
        m = state["exp_avg"]
        c = b1 * m + (1.0 - b1) * g
        sign = gc.where(c > 0, 1.0, gc.where(c < 0, -1.0, 0.0))
        lr = self.lr_for(p)
        new_p = p * (1.0 - lr * self.weight_decay) - lr * sign
        return new_p, {m: b2 * m + (1.0 - b2) * g}


def np_lion(p, g, m, lr, b1, b2, wd):
    c = b1 * m + (1 - b1) * g
    p = p * (1 - lr * wd) - lr * np.sign(c)
    return p, b2 * m + (1 - b2) * g


def test_lion_matches_numpy_over_several_steps():
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((16, 4)), rng.standard_normal((16, 3))
    w = gc.parameter(rng.standard_normal((4, 3)), name="w")
    b = gc.parameter(np.zeros(3), name="b")
    x = gc.placeholder((16, 4), "float64", name="x")
    t = gc.placeholder((16, 3), "float64", name="t")
    loss = gc.mean((x @ w + b - t) ** 2.0)
    opt = Lion(lr=0.05, betas=(0.9, 0.99), weight_decay=0.1)
    for backend in ("llvm", "interp"):
        w.value, b.value = rng.standard_normal((4, 3)), np.zeros(3)
        W, B = w.value.copy(), b.value.copy()
        mW, mB = np.zeros((4, 3)), np.zeros(3)
        opt = Lion(lr=0.05, betas=(0.9, 0.99), weight_decay=0.1)
        step = gc.compile(loss, updates=opt.updates(loss, [w, b]), backend=backend)
        for _ in range(6):
            got = step(x=X, t=T)
            r = X @ W + B - T
            np.testing.assert_allclose(got, (r ** 2).mean(), rtol=1e-12)
            gW, gB = 2 * X.T @ r / r.size, 2 * r.sum(0) / r.size
            W, mW = np_lion(W, gW, mW, 0.05, 0.9, 0.99, 0.1)
            B, mB = np_lion(B, gB, mB, 0.05, 0.9, 0.99, 0.1)
            np.testing.assert_allclose(w.value, W, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(b.value, B, rtol=1e-12, atol=1e-14)
        sd = opt.state_dict()
        assert int(sd["step"]) == 6
        np.testing.assert_allclose(sd["0.exp_avg"], mW, rtol=1e-12, atol=1e-15)


class ScaledDense(gc.nn.Module):
    """A new layer: ``activation(x @ w + b) * scale`` with a learned
    per-output scale."""

    def __init__(self, n_in, n_out, activation=custom_activation, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.w = gc.parameter(rng.standard_normal((n_in, n_out)) / np.sqrt(n_in), name="sd.w")
        self.b = gc.parameter(np.zeros(n_out), name="sd.b")
        self.scale = gc.parameter(np.ones(n_out), name="sd.scale")
        self.activation = activation

    def forward(self, x):
        return self.activation(x @ self.w + self.b) * self.scale


def huber(pred, target, delta=1.0):
    """A new loss is a function: mean Huber loss."""
    d = pred - target
    a = gc.abs(d)
    return gc.mean(gc.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta)))


def test_custom_module_and_loss_match_numpy():
    layer = ScaledDense(5, 3)
    assert [n for n, _ in layer.named_parameters()] == ["w", "b", "scale"]
    rng = np.random.default_rng(1)
    X, T = rng.standard_normal((8, 5)), rng.standard_normal((8, 3)) * 2
    layer.scale.value = rng.uniform(0.5, 1.5, 3)
    x = gc.placeholder((8, 5), "float64", name="x")
    t = gc.placeholder((8, 3), "float64", name="t")
    out = layer(x)
    z = X @ layer.w.value + layer.b.value
    want = (np.maximum(0, z) - 0.1 * z) * layer.scale.value
    np.testing.assert_allclose(gc.compile(out)(x=X), want, rtol=1e-12)
    d = want - T
    hub = np.where(np.abs(d) <= 1.0, 0.5 * d * d, np.abs(d) - 0.5).mean()
    loss = huber(out, t)
    np.testing.assert_allclose(gc.compile(loss)(x=X, t=T), hub, rtol=1e-12)
    # gradients of the loss with respect to the input and the target vs finite differences
    check_grads(huber(layer(x), t), [x, t], [X, T], (0, 1))

    # one SGD step updates exactly the module's parameters, by the numpy gradient
    step = gc.compile(loss, updates=gc.optim.SGD(lr=0.1).updates(loss, layer))
    w0, s0 = layer.w.value.copy(), layer.scale.value.copy()
    step(x=X, t=T)
    dd = np.clip(d, -1, 1) / d.size                      # d huber / d out
    act = np.maximum(0, z) - 0.1 * z
    np.testing.assert_allclose(layer.scale.value, s0 - 0.1 * (dd * act).sum(0), rtol=1e-12)
    dz = dd * s0 * np.where(z > 0, 0.9, -0.1)
    np.testing.assert_allclose(layer.w.value, w0 - 0.1 * X.T @ dz, rtol=1e-12)


def test_seed_activation_in_dense_784_128_fuses_into_the_epilogue():
    gc.nn.manual_seed(0)
    model = gc.nn.Sequential(gc.nn.Dense(784, 128, activation=custom_activation),
                             gc.nn.Dense(128, 10))
    dense = model[0] if hasattr(model, "__getitem__") else model.children()[0]
    x = gc.placeholder((64, 784), "float32", name="x")
    y = gc.placeholder((64,), "int64", name="y")
    z = x @ dense.weight + dense.bias
    h = custom_activation(z)
    logits = model(x)
    f = gc.compile(logits)
    k = f.kernel_of(h)
    assert f.kernels[k].matmul is not None and f.kernel_of(z) == k
    ops = {f.graph_node(m).op for m in f.kernels[k].members}
    assert {"matmul", "add", "maximum", "mul", "sub"} <= ops
    rng = np.random.default_rng(2)
    xv = rng.standard_normal((64, 784)).astype(np.float32)
    W1, b1 = dense.weight.value.astype(np.float64), dense.bias.value
    W2, b2 = model.children()[1].weight.value, model.children()[1].bias.value
    zz = xv @ W1 + b1
    want = (np.maximum(0, zz) - 0.1 * zz) @ W2 + b2
    np.testing.assert_allclose(f(x=xv), want, rtol=1e-4, atol=1e-4)

    # the train step: activation and its derivative mask in the forward GEMM's epilogue
    loss = gc.nn.cross_entropy(logits, y)
    step = gc.compile(loss, updates=gc.optim.Adam(1e-3).updates(loss, model.parameters()))
    k = step.kernel_of(h)
    assert step.kernels[k].matmul is not None and step.kernel_of(z) == k


def test_spiral_demo_trains_with_the_seed_activation():
    X, Y = spiral()
    X = X.astype(np.float32)
    n = len(X)
    results = {}
    for name, opt in (("adam", gc.optim.Adam(lr=0.01)), ("lion", Lion(lr=0.002))):
        model = gc.nn.Sequential(gc.nn.Dense(2, 64, activation=custom_activation, seed=0),
                                 gc.nn.Dense(64, 64, activation=custom_activation, seed=1),
                                 gc.nn.Dense(64, 3, seed=2))
        x = gc.placeholder((n, 2), "float32", name="x")
        y = gc.placeholder((n,), "int64", name="y")
        loss = gc.nn.cross_entropy(model(x), y)
        step = gc.compile(loss, updates=opt.updates(loss, model.parameters()))
        history = gc.nn.fit(step, {"x": X, "y": Y}, epochs=400, batch_size=n, shuffle=False,
                            progress=False)
        acc = float((gc.compile(model(x))(x=X).argmax(1) == Y).mean())
        results[name] = (history.losses[0], history.losses[-1], acc)
    for name, (first, last, acc) in results.items():
        assert last < 0.2 * first, (name, first, last)
        assert acc > 0.95, (name, acc)


@pytest.mark.parametrize("bad", ["no_update", "wrong_state"])
def test_custom_optimizer_errors_are_clear(bad):
    class Broken(gc.optim.Optimizer):
        def init_state(self, p):
            return {"m": np.zeros(p.shape)}

        def update(self, p, g, state, t):
            if bad == "no_update":
                return super().update(p, g, state, t)
            return p - g, {state["m"]: gc.zeros((7,))}
    w = gc.parameter(np.ones(3), name="w_broken")
    loss = gc.sum(w * w)
    if bad == "no_update":
        with pytest.raises(NotImplementedError):
            Broken(0.1).updates(loss, [w])
    else:
        with pytest.raises(gc.ShapeError, match="w_broken.m"):
            gc.compile(loss, updates=Broken(0.1).updates(loss, [w]))
