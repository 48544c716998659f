"""gc.nn layers, activations and losses against hand-written numpy
references (forward and gradients), on both backends."""
from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc
from graphc import nn

from helpers import check_grads

BACKENDS = ["llvm", "interp"]
_erf = np.vectorize(math.erf)


def run(outputs, backend="llvm", **feeds):
    return gc.compile(outputs, backend=backend)(**feeds)


# ------------------------------------------------------------------ activations

def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


ACTS = [
    ("relu", nn.relu, lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    ("leaky_relu", lambda x: nn.leaky_relu(x, 0.1), lambda x: np.where(x > 0, x, 0.1 * x),
     lambda x: np.where(x > 0, 1.0, 0.1)),
    ("gelu", nn.gelu, lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
     lambda x: 0.5 * (1 + _erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)),
    ("gelu_tanh", lambda x: nn.gelu(x, approximate="tanh"),
     lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))), None),
    ("softplus", nn.softplus, lambda x: np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))),
     lambda x: np.where(x > 20, 1.0, np_sigmoid(x))),
    ("softplus_beta", lambda x: nn.softplus(x, beta=2.0, threshold=5.0),
     lambda x: np.where(2 * x > 5, x, np.log1p(np.exp(np.minimum(2 * x, 5))) / 2),
     lambda x: np.where(2 * x > 5, 1.0, np_sigmoid(2 * x))),
    ("tanh", nn.tanh, np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    ("sigmoid", nn.sigmoid, np_sigmoid, lambda x: np_sigmoid(x) * (1 - np_sigmoid(x))),
    ("silu", nn.silu, lambda x: x * np_sigmoid(x), lambda x: np_sigmoid(x) * (1 + x * (1 - np_sigmoid(x)))),
    ("elu", nn.elu, lambda x: np.where(x > 0, x, np.exp(np.minimum(x, 0)) - 1),
     lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0)))),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,fn,ref,dref", ACTS, ids=[a[0] for a in ACTS])
def test_activation_values_and_gradients(name, fn, ref, dref, backend):
    v = np.concatenate([np.linspace(-8, 8, 41), [0.0, -40.0, 40.0, -800.0, 800.0]])
    x = gc.placeholder(v.shape, "float64", name="x")
    y = fn(x)
    (g,) = gc.grad(gc.sum(y), [x])
    yv, gv = run([y, g], backend, x=v)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(yv, ref(v), rtol=1e-12, atol=1e-15)
        if dref is not None:
            np.testing.assert_allclose(gv, dref(v), rtol=1e-10, atol=1e-15)
    assert np.all(np.isfinite(gv)), "a gradient overflowed"


@pytest.mark.parametrize("name,fn", [(a[0], a[1]) for a in ACTS if a[0] != "relu"])
def test_activation_float32_and_second_order(name, fn):
    v = np.linspace(-3, 3, 13).astype(np.float32)
    x = gc.placeholder(v.shape, "float32", name="x")
    assert run(fn(x), x=v).dtype == np.float32
    rng = np.random.default_rng(0)
    a = [rng.uniform(-3, 3, 7) + 0.01]
    phs = [gc.placeholder((7,), "float64", name="x")]
    (g,) = gc.grad(gc.sum(fn(phs[0]) * np.arange(7.0)), phs)
    check_grads(gc.sum(g * g), phs, a, (0,), 1e-6, 1e-5)


def test_activation_kinks_follow_pytorch():
    x = gc.placeholder((1,), "float64", name="x")
    z = np.zeros(1)
    for fn, want in [(nn.relu, 0.0), (lambda t: nn.leaky_relu(t, 0.2), 0.2),
                     (nn.softplus, 0.5), (nn.elu, 1.0)]:
        (g,) = gc.grad(gc.sum(fn(x)), [x])
        assert run(g, x=z)[0] == pytest.approx(want)


# ----------------------------------------------------------------------- losses

def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(backend, smoothing, reduction):
    rng = np.random.default_rng(3)
    Z = rng.standard_normal((6, 4)) * 3
    Y = rng.integers(0, 4, 6)
    z = gc.placeholder((6, 4), "float64", name="z")
    y = gc.placeholder((6,), "int64", name="y")
    loss = nn.cross_entropy(z, y, label_smoothing=smoothing, reduction=reduction)
    lp = np_log_softmax(Z)
    q = np.full((6, 4), smoothing / 4)
    q[np.arange(6), Y] += 1 - smoothing
    per = -(q * lp).sum(-1)
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(run(loss, backend, z=Z, y=Y), want, rtol=1e-12)
    (g,) = gc.grad(gc.sum(loss), [z])
    scale = 1 / 6 if reduction == "mean" else 1.0
    np.testing.assert_allclose(run(g, backend, z=Z, y=Y), scale * (np.exp(lp) - q), rtol=1e-10,
                               atol=1e-14)


def test_cross_entropy_probability_targets_and_extremes():
    z = gc.placeholder((2, 3), "float32", name="z")
    t = gc.placeholder((2, 3), "float32", name="t")
    Z = np.array([[1e4, -1e4, 0], [3, 2, 1]], np.float32)
    T = np.array([[0.5, 0.25, 0.25], [0, 0, 1]], np.float32)
    got = run(nn.cross_entropy(z, t, reduction="none"), z=Z, t=T)
    lp = np_log_softmax(Z.astype(np.float64))
    np.testing.assert_allclose(got, -(T * lp).sum(-1), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_entropy_bad_label_is_a_runtime_error(backend):
    z = gc.placeholder((2, 3), "float32", name="z")
    y = gc.placeholder((2,), "int64", name="y")
    f = gc.compile(nn.cross_entropy(z, y), backend=backend)
    with pytest.raises(gc.RuntimeCheckError, match="out of range"):
        f(z=np.zeros((2, 3), np.float32), y=np.array([0, 3]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mse(backend):
    rng = np.random.default_rng(4)
    P, T = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    p = gc.placeholder((5, 2), "float64", name="p")
    t = gc.placeholder((5, 2), "float64", name="t")
    loss = nn.mse(p, t)
    (g,) = gc.grad(loss, [p])
    lv, gv = run([loss, g], backend, p=P, t=T)
    np.testing.assert_allclose(lv, ((P - T) ** 2).mean(), rtol=1e-12)
    np.testing.assert_allclose(gv, 2 * (P - T) / 10, rtol=1e-12)
    np.testing.assert_allclose(run(nn.mse(p, t, reduction="sum"), backend, p=P, t=T),
                               ((P - T) ** 2).sum(), rtol=1e-12)
    with pytest.raises(ValueError, match="differ in shape"):
        nn.mse(p, gc.placeholder((5,), "float64", name="u"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_binary_cross_entropy_with_logits(backend, pos_weight):
    X = np.array([-800.0, -30.0, -2.0, -1e-9, 0.0, 0.0, 1.5, 30.0, 800.0])
    Y = np.array([1.0, 0.0, 1.0, 0.3, 1.0, 0.0, 0.0, 1.0, 0.0])
    x = gc.placeholder(X.shape, "float64", name="x")
    y = gc.placeholder(Y.shape, "float64", name="y")
    loss = nn.binary_cross_entropy_with_logits(x, y, pos_weight=pos_weight, reduction="none")
    (g,) = gc.grad(gc.sum(loss), [x])
    lv, gv = run([loss, g], backend, x=X, y=Y)
    w = 1.0 if pos_weight is None else pos_weight
    # -[w y log s(x) + (1-y) log(1-s(x))], with log s(x) = -log(1+e^-x) written stably
    log_s = -(np.maximum(-X, 0) + np.log1p(np.exp(-np.abs(X))))
    log_1ms = -(np.maximum(X, 0) + np.log1p(np.exp(-np.abs(X))))
    # (PyTorch's form (1-y)·x + (1+(w-1)y)·log(1+e^-x) rounds like this: atol on |x|'s scale)
    np.testing.assert_allclose(lv, -(w * Y * log_s + (1 - Y) * log_1ms), rtol=1e-12,
                               atol=4e-16 * np.abs(X).max())
    s, one_minus_s = np_sigmoid(np.clip(X, -700, 700)), np_sigmoid(-np.clip(X, -700, 700))
    np.testing.assert_allclose(gv, (1 - Y) * s - w * Y * one_minus_s, rtol=1e-10, atol=1e-16)
    f32 = gc.placeholder(X.shape, "float32", name="x")
    v32 = run(nn.binary_cross_entropy_with_logits(f32, gc.constant(Y.astype(np.float32))),
              x=X.astype(np.float32))
    assert np.isfinite(v32)


# ----------------------------------------------------------------------- layers

@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_forward_and_gradients(backend):
    layer = nn.Dense(4, 3, activation=gc.tanh, dtype="float64", seed=1)
    W, b = layer.weight.value.copy(), layer.bias.value.copy()
    x = gc.placeholder((5, 4), "float64", name="x")
    G = np.random.default_rng(2).standard_normal((5, 3))
    y = layer(x)
    gx, gw, gb = gc.grad(gc.sum(y * G), [x, layer.weight, layer.bias])
    X = np.random.default_rng(3).standard_normal((5, 4))
    yv, gxv, gwv, gbv = run([y, gx, gw, gb], backend, x=X)
    h = np.tanh(X @ W + b)
    d = G * (1 - h ** 2)
    np.testing.assert_allclose(yv, h, rtol=1e-12)
    np.testing.assert_allclose(gxv, d @ W.T, rtol=1e-12)
    np.testing.assert_allclose(gwv, X.T @ d, rtol=1e-12)
    np.testing.assert_allclose(gbv, d.sum(0), rtol=1e-12)


def test_dense_default_init_is_torch_linear():
    layer = nn.Dense(400, 300, seed=0)
    W, b = layer.weight.value, layer.bias.value
    assert W.shape == (400, 300) and b.shape == (300,) and W.dtype == np.float32
    bound = 1 / np.sqrt(400)
    for a in (W, b):
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.95 * bound
    # U(-bound, bound): variance bound^2 / 3
    assert abs(W.var() / (bound ** 2 / 3) - 1) < 0.02
    assert abs(W.mean()) < 0.01 * bound
    np.testing.assert_array_equal(W, nn.Dense(400, 300, seed=0).weight.value)
    assert not np.array_equal(W, nn.Dense(400, 300, seed=1).weight.value)
    nn.manual_seed(5)
    w1 = nn.Dense(3, 2).weight.value
    nn.manual_seed(5)
    np.testing.assert_array_equal(w1, nn.Dense(3, 2).weight.value)


def test_dense_custom_init_no_bias_and_errors():
    import functools
    layer = nn.Dense(3, 2, bias=False, weight_init=nn.init.zeros)
    assert layer.bias is None and len(layer.parameters()) == 1
    assert not layer.weight.value.any()
    k = nn.Dense(50, 40, weight_init=functools.partial(nn.init.kaiming_normal, nonlinearity="relu"),
                 seed=3)
    assert abs(k.weight.value.std() / np.sqrt(2 / 50) - 1) < 0.1
    with pytest.raises(ValueError, match="last axis of 3"):
        layer(gc.placeholder((2, 4), "float32", name="x"))
    with pytest.raises(ValueError, match="in_features"):
        nn.Dense(-1, 2)
    with pytest.raises(TypeError, match="activation"):
        nn.Dense(2, 2, activation=3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_layernorm(backend):
    ln = nn.LayerNorm((3, 4), dtype="float64")
    rng = np.random.default_rng(5)
    ln.weight.value = rng.standard_normal((3, 4))
    ln.bias.value = rng.standard_normal((3, 4))
    X = rng.standard_normal((2, 3, 4)) * 5 + 2
    x = gc.placeholder((2, 3, 4), "float64", name="x")
    mu = X.mean((1, 2), keepdims=True)
    var = X.var((1, 2), keepdims=True)
    want = (X - mu) / np.sqrt(var + 1e-5) * ln.weight.value + ln.bias.value
    np.testing.assert_allclose(run(ln(x), backend, x=X), want, rtol=1e-10, atol=1e-12)
    # gradients with respect to input, weight and bias vs finite differences
    phs = [x]
    check_grads(gc.sum(ln(x) * gc.constant(rng.standard_normal((2, 3, 4)))), phs, [X], (0,))
    assert [p.shape for p in ln.parameters()] == [(3, 4), (3, 4)]
    with pytest.raises(ValueError, match="does not end in"):
        ln(gc.placeholder((2, 4, 3), "float64", name="z"))
    assert nn.LayerNorm(4, elementwise_affine=False).parameters() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_embedding(backend):
    emb = nn.Embedding(7, 3, dtype="float64", seed=0)
    W = emb.weight.value.copy()
    assert abs(nn.Embedding(1000, 50, seed=1).weight.value.std() - 1) < 0.02   # N(0, 1)
    idx = gc.placeholder((2, 4), "int64", name="i")
    IDX = np.array([[1, 6, 6, 0], [3, 1, 1, 1]])
    G = np.random.default_rng(1).standard_normal((2, 4, 3))
    out = emb(idx)
    (gw,) = gc.grad(gc.sum(out * G), [emb.weight])
    ov, gv = run([out, gw], backend, i=IDX)
    np.testing.assert_array_equal(ov, W[IDX])
    want = np.zeros_like(W)
    np.add.at(want, IDX, G)
    np.testing.assert_allclose(gv, want, rtol=1e-12)
    f = gc.compile(out, backend=backend)
    with pytest.raises(gc.RuntimeCheckError, match="out of range"):
        f(i=np.array([[1, 7, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(TypeError, match="integers"):
        emb(gc.placeholder((2,), "float32", name="f"))


def test_embedding_padding_idx():
    emb = nn.Embedding(5, 2, padding_idx=0, dtype="float64", seed=0)
    assert not emb.weight.value[0].any()
    idx = gc.placeholder((4,), "int64", name="i")
    (gw,) = gc.grad(gc.sum(emb(idx)), [emb.weight])
    gv = run(gw, i=np.array([0, 2, 0, 2]))
    np.testing.assert_array_equal(gv, [[0, 0], [0, 0], [2, 2], [0, 0], [0, 0]])


# ---------------------------------------------------------------------- dropout

def _dropout_step(layer, shape=(64, 128), backend="llvm"):
    x = gc.placeholder(shape, "float32", name="x")
    y = layer(x)
    return gc.compile(y, updates=nn.rng_updates(y), backend=backend), y


def test_dropout_mask_statistics_and_scaling():
    d = nn.Dropout(0.3, seed=11)
    step, _ = _dropout_step(d)
    X = np.random.default_rng(0).uniform(1, 2, (64, 128)).astype(np.float32)
    out = step(x=X)
    kept = out != 0
    n = X.size
    assert abs(1 - kept.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / n)
    np.testing.assert_allclose(out[kept], X[kept] / np.float32(0.7), rtol=1e-6)
    # rows and columns are not patterned
    assert abs(np.corrcoef(kept[:, :-1].ravel(), kept[:, 1:].ravel())[0, 1]) < 0.05


def test_dropout_masks_differ_across_steps_and_layers_and_are_deterministic():
    X = np.ones((64, 128), np.float32)
    d = nn.Dropout(0.5, seed=3)
    step, _ = _dropout_step(d)
    masks = [step(x=X) != 0 for _ in range(3)]
    assert d.counter.value == 3
    assert (masks[0] != masks[1]).mean() > 0.4 and (masks[1] != masks[2]).mean() > 0.4
    # the same seed and counter give the same masks, compiled or interpreted
    again = nn.Dropout(0.5, seed=3)
    step2, _ = _dropout_step(again, backend="interp")
    assert all(np.array_equal(step2(x=X) != 0, m) for m in masks)
    other = nn.Dropout(0.5, seed=4)
    step3, _ = _dropout_step(other)
    assert (step3(x=X) != 0).tolist() != masks[0].tolist()
    # one layer used twice in a graph draws two different masks
    x = gc.placeholder((64, 128), "float32", name="x")
    d2 = nn.Dropout(0.5, seed=9)
    a, b = gc.compile([d2(x), d2(x)])(x=X)
    assert (a != b).mean() > 0.4


def test_dropout_eval_mode_is_identity_and_p_edges():
    model = nn.Sequential(nn.Dense(8, 8, seed=0), nn.Dropout(0.5, seed=0))
    x = gc.placeholder((4, 8), "float32", name="x")
    model.eval()
    assert not model[1].training and not model.training
    y = model(x)
    f = gc.compile(y)
    assert all(n.op != "random_uniform" for n in f.graph.nodes)
    X = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    np.testing.assert_allclose(f(x=X), X @ model[0].weight.value + model[0].bias.value, rtol=1e-5)
    model.train()
    assert any(n.op == "random_uniform" for n in gc.compile(model(x)).graph.nodes)
    assert nn.Dropout(0.0)(x) is x
    np.testing.assert_array_equal(gc.compile(nn.Dropout(1.0)(x))(x=X), np.zeros_like(X))
    with pytest.raises(ValueError, match="probability"):
        nn.Dropout(1.5)


def test_dropout_gradient_uses_the_same_mask():
    d = nn.Dropout(0.4, seed=1)
    x = gc.placeholder((50,), "float64", name="x")
    y = d(x)
    (g,) = gc.grad(gc.sum(y), [x])
    yv, gv = gc.compile([y, g])(x=np.ones(50))
    np.testing.assert_allclose(gv, yv)        # dy/dx = mask / (1-p) = y at x = 1


def test_dropout_matches_a_numpy_reference():
    from optable import _np_random_uniform
    d = nn.Dropout(0.3, seed=5)
    x = gc.placeholder((6, 7), "float32", name="x")
    y = d(x)
    step = gc.compile(y, updates=nn.rng_updates(y))
    (node,) = [n for n in step.graph.nodes if n.op == "random_uniform"]
    X = np.random.default_rng(0).standard_normal((6, 7)).astype(np.float32)
    for counter in range(3):
        u = _np_random_uniform(counter, (6, 7), node.attrs["seed"], "float32")
        want = np.where(u >= np.float32(0.3), X * np.float32(1 / 0.7), np.float32(0))
        np.testing.assert_allclose(step(x=X), want, rtol=1e-7)
