"""Keras/PyTorch habits: activations by name, Dense(out) inferring
in_features at its first call, and the warning when a loss that takes logits
is given probabilities (softmax applied twice)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import nn


def _run(out, **feeds):
    return gc.compile(out, backend="interp")(**feeds)


# ----------------------------------------------------------------- activation names

@pytest.mark.parametrize("name,ref", [
    ("relu", lambda z: np.maximum(z, 0)),
    ("tanh", np.tanh),
    ("sigmoid", lambda z: 1 / (1 + np.exp(-z))),
    ("softmax", lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)),
    ("log_softmax", lambda z: z - np.log(np.exp(z).sum(-1, keepdims=True))),
    ("silu", lambda z: z / (1 + np.exp(-z))),
    ("elu", lambda z: np.where(z > 0, z, np.exp(np.minimum(z, 0)) - 1)),
    ("linear", lambda z: z),
])
def test_dense_activation_by_name(name, ref):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((4, 3))
    layer = nn.Dense(3, 5, activation=name, dtype="float64", seed=0)
    x = gc.placeholder((4, 3), "float64", name="x")
    z = v @ layer.weight.value + layer.bias.value
    np.testing.assert_allclose(_run(layer(x), x=v), ref(z), rtol=1e-12, atol=1e-12)


def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match="unknown activation 'rleu'.*'relu'"):
        nn.Dense(3, 5, activation="rleu")
    with pytest.raises(TypeError, match="activation must be a function or a name"):
        nn.Dense(3, 5, activation=3)


# ----------------------------------------------------------------- lazy Dense

def _pair(seed):
    lazy = nn.Sequential(nn.Dense(16, activation="relu", seed=seed), nn.Dense(3, seed=seed + 1))
    explicit = nn.Sequential(nn.Dense(5, 16, activation=gc.relu, seed=seed),
                             nn.Dense(16, 3, seed=seed + 1))
    return lazy, explicit


def test_lazy_dense_equals_explicit_dense():
    lazy, explicit = _pair(3)
    x = gc.placeholder((7, 5), "float32", name="x")
    out = lazy(x)
    assert [lay.in_features for lay in lazy] == [5, 16]
    assert list(lazy.state_dict()) == list(explicit.state_dict()) == \
        ["0.weight", "0.bias", "1.weight", "1.bias"]
    for a, b in zip(lazy.state_dict().values(), explicit.state_dict().values()):
        np.testing.assert_array_equal(a, b)          # the same seed gives the same weights
    v = np.random.default_rng(1).standard_normal((7, 5)).astype(np.float32)
    w0, b0, w1, b1 = (p.value.astype(np.float64) for p in explicit.parameters())
    ref = np.maximum(v @ w0 + b0, 0) @ w1 + b1
    np.testing.assert_allclose(_run(out, x=v), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_run(out, x=v), _run(explicit(x), x=v), rtol=0, atol=0)


def test_lazy_dense_global_seed_stream_unchanged():
    nn.manual_seed(11)
    lazy = nn.Dense(4)
    after_lazy = nn.init.next_seed()
    nn.manual_seed(11)
    explicit = nn.Dense(2, 4)
    assert nn.init.next_seed() == after_lazy       # laziness draws no extra seed
    lazy(gc.placeholder((1, 2), "float32"))
    np.testing.assert_array_equal(lazy.weight.value, explicit.weight.value)
    np.testing.assert_array_equal(lazy.bias.value, explicit.bias.value)


def test_lazy_dense_trains_as_explicit():
    lazy, explicit = _pair(5)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 5)).astype(np.float32)
    Y = rng.integers(0, 3, 8)
    losses = []
    for model in (lazy, explicit):
        x = gc.placeholder((8, 5), "float32", name="x")
        y = gc.placeholder((8,), "int64", name="y")
        loss = nn.cross_entropy(model(x), y)
        step = gc.compile(loss, updates=gc.optim.Adam(0.01).updates(loss, model.parameters()))
        losses.append([float(step(x=X, y=Y)) for _ in range(5)])
    assert losses[0] == losses[1]


def test_lazy_dense_before_first_call():
    lazy, _ = _pair(0)
    for ask in (lazy.parameters, lazy.state_dict, lazy.buffers):
        with pytest.raises(nn.LazyParameterError, match=r"Dense\(\? -> 16\) has no parameters "
                                                        r"yet.*call the model on a placeholder"):
            ask()
    with pytest.raises(ValueError, match="asked for .weight"):
        _ = lazy[0].weight
    assert not hasattr(lazy[1], "bias")              # an AttributeError too
    assert "Dense(?, 16, activation=relu" in repr(lazy)
    assert nn.Dense(out_features=4).in_features is None
    with pytest.raises(ValueError, match="give out_features"):
        nn.Dense()


def test_lazy_dense_load_state_dict_creates_parameters():
    lazy, explicit = _pair(2)
    lazy2, _ = _pair(9)
    lazy2.load_state_dict(explicit.state_dict())
    assert [lay.in_features for lay in lazy2] == [5, 16]
    for a, b in zip(lazy2.state_dict().values(), explicit.state_dict().values()):
        np.testing.assert_array_equal(a, b)
    x = gc.placeholder((2, 5), "float32", name="x")
    lazy2(x)                                          # the loaded shapes fit
    with pytest.raises(gc.ShapeError, match="needs a last axis of 5"):
        lazy2(gc.placeholder((2, 6), "float32"))


def test_lazy_dense_failed_load_leaves_it_lazy(tmp_path):
    _, explicit = _pair(2)
    bad = nn.Sequential(nn.Dense(16), nn.Dense(4))     # the second does not fit (16, 3)
    with pytest.raises(ValueError, match="lazy layer '1'"):
        bad.load_state_dict(explicit.state_dict())
    assert bad[0].in_features is None and not hasattr(bad[0], "weight")
    state = explicit.state_dict()
    state["1.bias"] = np.zeros(4, np.float32)
    half = nn.Sequential(nn.Dense(16), nn.Dense(3))
    with pytest.raises(ValueError, match="'1.bias' has shape"):
        half.load_state_dict(state)
    assert [lay.in_features for lay in half] == [None, None]
    path = nn.save(explicit, tmp_path / "m")
    loaded = nn.load(nn.Sequential(nn.Dense(16, activation="relu"), nn.Dense(3)), path)
    np.testing.assert_array_equal(loaded[1].weight.value, explicit[1].weight.value)


def test_lazy_dense_torch_layout():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    model = nn.Sequential(nn.Dense(16), gc.relu, nn.Dense(3))
    model.load_state_dict(nn.convert_torch_state_dict(model, tm.state_dict()))
    v = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    x = gc.placeholder((4, 5), "float32", name="x")
    with torch.no_grad():
        ref = tm(torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(_run(model(x), x=v), ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------- softmax twice

def test_cross_entropy_warns_on_softmax_output():
    x = gc.placeholder((4, 8), "float32", name="x")
    y = gc.placeholder((4,), "int64", name="y")
    model = nn.Sequential(nn.Dense(10, activation="softmax"))     # the seed's Keras model
    with pytest.warns(nn.DoubleActivationWarning, match="softmax is applied twice") as rec:
        nn.cross_entropy(model(x), y)
    assert rec[0].filename == __file__                 # points at the user's line
    with pytest.warns(nn.DoubleActivationWarning, match="output of a softmax"):
        e = gc.exp(x)
        nn.cross_entropy(e / gc.sum(e, axis=-1, keepdims=True), y)   # written by hand
    with pytest.warns(gc.DoubleActivationWarning, match="softmax_cross_entropy: .* softmax"):
        gc.softmax_cross_entropy(gc.softmax(x, axis=-1), y)
    with pytest.warns(nn.DoubleActivationWarning, match="output of a sigmoid"):
        nn.binary_cross_entropy_with_logits(gc.sigmoid(x), x * 0.0)


def test_no_warning_on_logits():
    x = gc.placeholder((4, 8), "float32", name="x")
    y = gc.placeholder((4,), "int64", name="y")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.cross_entropy(nn.Dense(10, seed=0)(x), y)
        nn.cross_entropy(gc.log_softmax(x), y)          # log-softmax is idempotent: no harm
        e = gc.exp(x)
        nn.cross_entropy(e / gc.sum(e * 2.0, axis=-1, keepdims=True), y)
        nn.binary_cross_entropy_with_logits(x, x * 0.0)


def test_softmax_twice_is_really_wrong():
    """The warned case computes log_softmax(softmax(z)), not log_softmax(z)."""
    v = np.random.default_rng(0).standard_normal((4, 8)) * 4
    lab = np.array([0, 3, 7, 2])
    x = gc.placeholder((4, 8), "float64", name="x")
    y = gc.placeholder((4,), "int64", name="y")
    with pytest.warns(nn.DoubleActivationWarning):
        twice = nn.cross_entropy(gc.softmax(x), y)
    p = np.exp(v) / np.exp(v).sum(-1, keepdims=True)
    ref = -(p[np.arange(4), lab] - np.log(np.exp(p).sum(-1))).mean()
    np.testing.assert_allclose(_run(twice, x=v, y=lab), ref, rtol=1e-12)
