"""Module plumbing (parameters, names, state, save/load, modes),
initializers, and the fit loop."""
from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.nn import init


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Dense(4, 4, seed=0)
        self.norm = nn.LayerNorm(4)
        self.drop = nn.Dropout(0.1, seed=0)
        self.scale = gc.parameter(np.float32(2.0), name="scale")

    def forward(self, x):
        return self.drop(self.norm(self.fc(x))) * self.scale


def make_model():
    return nn.Sequential(nn.Dense(3, 4, seed=1), gc.relu, Block(), nn.Dense(4, 2, seed=2))


def test_parameters_names_and_buffers():
    m = make_model()
    names = [k for k, _ in m.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.scale", "2.fc.weight", "2.fc.bias", "2.norm.weight",
                     "2.norm.bias", "3.weight", "3.bias"]
    assert [k for k, _ in m.named_parameters(False)] == ["2.drop.counter"]
    assert len(m.parameters()) == 9 and all(p.trainable for p in m.parameters())
    assert [p.dtype for p in m.buffers()] == [np.int64]
    assert [k for k, _ in m.named_modules()] == ["", "0", "2", "2.fc", "2.norm", "2.drop", "3"]
    assert len(m) == 4 and m[1] is gc.relu and isinstance(m[2], Block)
    assert "Dense(3, 4" in repr(m) and "relu" in repr(m)


def test_shared_parameters_are_listed_once():
    d = nn.Dense(2, 2, seed=0)
    m = nn.Sequential(d, d)
    assert len(m.parameters()) == 2


def test_state_dict_roundtrip_and_save_load(tmp_path):
    m = make_model()
    sd = m.state_dict()
    assert set(sd) == {k for k, _ in m.named_parameters(None)}
    other = make_model()
    for p in other.parameters():
        p.value = np.zeros(p.shape, p.dtype)
    other.load_state_dict(sd)
    for (k, a), (_, b) in zip(m.named_parameters(None), other.named_parameters(None)):
        np.testing.assert_array_equal(a.value, b.value, err_msg=k)
    # the state dict holds copies
    sd["0.weight"][:] = 7
    assert not (m[0].weight.value == 7).any()
    path = nn.save(m, tmp_path / "model")
    assert path.endswith(".npz")
    fresh = make_model()
    fresh[0].weight.value = np.ones((3, 4), np.float32)
    nn.load(fresh, tmp_path / "model")
    np.testing.assert_array_equal(fresh[0].weight.value, m[0].weight.value)
    with np.load(path) as f:
        assert set(f.files) == set(m.state_dict())


def test_loaded_values_are_used_by_compiled_graphs():
    m = nn.Dense(2, 1, seed=0, dtype="float64")
    x = gc.placeholder((1, 2), "float64", name="x")
    f = gc.compile(m(x))
    m.load_state_dict({"weight": np.array([[1.0], [2.0]]), "bias": np.array([0.5])})
    assert f(x=np.array([[1.0, 1.0]]))[0, 0] == 3.5


def test_load_state_dict_errors():
    m = make_model()
    sd = m.state_dict()
    bad = dict(sd)
    del bad["3.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['3.bias'\]"):
        m.load_state_dict(bad)
    m.load_state_dict(bad, strict=False)
    bad = dict(sd, extra=np.zeros(1))
    with pytest.raises(ValueError, match="unexpected keys"):
        m.load_state_dict(bad)
    bad = dict(sd)
    bad["3.weight"] = np.zeros((2, 4), np.float32)
    before = m[0].weight.value.copy()
    sd0 = dict(sd)
    sd0["0.weight"] = np.ones((3, 4), np.float32)
    sd0["3.weight"] = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"'3.weight' has shape \(2, 4\)"):
        m.load_state_dict(sd0)
    np.testing.assert_array_equal(m[0].weight.value, before)   # nothing half-loaded
    with pytest.raises(TypeError):
        m.load_state_dict([1, 2])
    with pytest.raises(TypeError, match="Module"):
        nn.save("not a module", "x")


def test_train_eval_modes_propagate():
    m = make_model()
    assert all(s.training for s in m.modules())
    assert m.eval() is m and not any(s.training for s in m.modules())
    m.train()
    assert all(s.training for s in m.modules())


def test_module_without_super_init_still_registers():
    class Bare(nn.Module):
        def __init__(self):
            self.w = gc.parameter(np.zeros(2), name="w")

        def forward(self, x):
            return x * self.w
    b = Bare()
    assert b.parameters() == [b.w]
    with pytest.raises(NotImplementedError):
        nn.Module()(1)


# ------------------------------------------------------------------ initializers

def test_initializer_distributions_follow_pytorch_formulas():
    shape = (300, 200)                    # graphc layout: (fan_in, fan_out)
    fi, fo = 300, 200
    assert init.compute_fans(shape) == (300, 200)
    assert init.compute_fans((3, 3, 16, 32)) == (144, 288)
    cases = [
        (init.xavier_uniform(shape, seed=0), "u", math.sqrt(6 / (fi + fo))),
        (init.xavier_normal(shape, seed=0), "n", math.sqrt(2 / (fi + fo))),
        (init.kaiming_uniform(shape, seed=0), "u", math.sqrt(3) * math.sqrt(2) / math.sqrt(fi)),
        (init.kaiming_uniform(shape, a=math.sqrt(5), seed=0), "u", 1 / math.sqrt(fi)),
        (init.kaiming_normal(shape, nonlinearity="relu", seed=0), "n", math.sqrt(2 / fi)),
        (init.kaiming_normal(shape, mode="fan_out", nonlinearity="relu", seed=0), "n", math.sqrt(2 / fo)),
        (init.uniform(shape, -3, 3, seed=0), "u", 3.0),
        (init.normal(shape, 0, 0.5, seed=0), "n", 0.5),
    ]
    for a, kind, scale in cases:
        assert a.dtype == np.float32 and a.shape == shape
        if kind == "u":
            assert np.abs(a).max() <= scale * (1 + 1e-6) and np.abs(a).max() > 0.99 * scale
            assert abs(a.std() / (scale / math.sqrt(3)) - 1) < 0.02
        else:
            assert abs(a.std() / scale - 1) < 0.02
    t = init.trunc_normal((10000,), 0, 1, -1, 1.5, seed=0)
    assert t.min() >= -1 and t.max() <= 1.5
    q = init.orthogonal((5, 8), seed=0, dtype="float64")
    np.testing.assert_allclose(q @ q.T, np.eye(5), atol=1e-12)
    assert init.zeros((2, 3), dtype="float64").dtype == np.float64
    np.testing.assert_array_equal(init.constant((2,), 3.0), [3, 3])
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)


def test_initializers_are_seeded():
    a = init.normal((5,), seed=3)
    np.testing.assert_array_equal(a, init.normal((5,), seed=3))
    assert not np.array_equal(a, init.normal((5,), seed=4))
    nn.manual_seed(42)
    b = init.uniform((5,))
    nn.manual_seed(42)
    np.testing.assert_array_equal(b, init.uniform((5,)))
    g = np.random.default_rng(0)
    c1, c2 = init.normal((3,), seed=g), init.normal((3,), seed=g)
    assert not np.array_equal(c1, c2)
    with pytest.raises(TypeError, match="seed"):
        init.normal((3,), seed="x")
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal((3, 3), mode="fan")
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swishy")


# ----------------------------------------------------------------------------- fit

def _regression(n=64, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    Y = (X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype(np.float32)
    model = nn.Dense(3, 1, seed=0)
    x = gc.placeholder((batch, 3), "float32", name="x")
    y = gc.placeholder((batch, 1), "float32", name="y")
    lr = gc.placeholder((), "float32", name="lr")
    loss = nn.mse(model(x), y)
    step = gc.compile(loss, updates=gc.optim.SGD(lr).updates(loss, model.parameters()),
                      backend="interp")
    return X, Y, model, step


def test_fit_runs_epochs_and_returns_history(capsys):
    X, Y, model, step = _regression()
    lrs = []
    hist = nn.fit(step, {"x": X, "y": Y}, epochs=30, batch_size=16, progress="plain",
                  feeds={"lr": lambda i: lrs.append(i) or np.float32(0.1)})
    assert len(hist.losses) == 30 * 4 and lrs == list(range(120)) and len(hist) == 30
    assert hist.losses[-1] < 1e-3 * hist.losses[0]
    np.testing.assert_allclose(hist["loss"], np.reshape(hist.losses, (30, 4)).mean(1), rtol=1e-12)
    assert hist[-1]["epoch"] == 29 and hist.keys() == ["epoch", "loss"]
    np.testing.assert_allclose(model.weight.value.ravel(), [1, -2, 0.5], atol=1e-2)
    out = capsys.readouterr().out
    assert "epoch   30/30  loss" in out and len(out.splitlines()) <= 12


def test_fit_single_epoch_prints_steps(capsys):
    X, Y, _, step = _regression(n=160)
    nn.fit(step, {"x": X, "y": Y}, progress="plain", feeds={"lr": np.float32(0.01)})
    out = capsys.readouterr().out
    assert "step     10/10" in out and len(out.splitlines()) <= 12


def test_fit_batches_are_permutations_of_the_data():
    seen = []
    x = gc.placeholder((4,), "int64", name="x")

    class Spy:
        graph = gc.compile(gc.sum(x), backend="interp").graph

        def __call__(self, **kw):
            seen.append(kw["x"].copy())
            return np.float32(0)
    with pytest.warns(nn.DroppedExamplesWarning, match="remaining 2 are not used"):
        hist = nn.fit(Spy(), [np.arange(10)], epochs=2, progress=False, seed=1)
    assert len(hist.losses) == 4 and hist.dropped == 2    # 10 // 4 = 2 batches per epoch
    for e in (0, 1):
        got = np.concatenate(seen[2 * e: 2 * e + 2])
        assert len(set(got.tolist())) == 8
    assert not np.array_equal(np.concatenate(seen[:2]), np.arange(8))
    seen.clear()
    with pytest.warns(nn.DroppedExamplesWarning, match="the same last 2 every epoch"):
        nn.fit(Spy(), [np.arange(10)], epochs=1, shuffle=False, progress=False)
    np.testing.assert_array_equal(np.concatenate(seen), np.arange(8))


def test_fit_with_tqdm(capsys):
    pytest.importorskip("tqdm")
    X, Y, _, step = _regression()
    hist = nn.fit(step, (X, Y), epochs=2, feeds={"lr": np.float32(0.05)}, progress=True)
    assert len(hist.losses) == 8
    assert "train" in capsys.readouterr().err


def test_fit_errors():
    X, Y, _, step = _regression()
    feeds = {"lr": np.float32(0.1)}
    with pytest.raises(ValueError, match="batch_size=32"):
        nn.fit(step, {"x": X, "y": Y}, batch_size=32, feeds=feeds)
    with pytest.raises(ValueError, match="no data for input"):
        nn.fit(step, {"x": X}, feeds=feeds)
    with pytest.raises(ValueError, match="different lengths"):
        nn.fit(step, {"x": X, "y": Y[:10]}, feeds=feeds)
    with pytest.raises(ValueError, match="shape"):
        nn.fit(step, {"x": X[:, :2], "y": Y}, feeds=feeds)
    with pytest.raises(ValueError, match="fewer than one batch"):
        nn.fit(step, {"x": X[:8], "y": Y[:8]}, feeds=feeds)
    with pytest.raises(TypeError, match="compiled function"):
        nn.fit(lambda **k: 0, {"x": X}, feeds=feeds)
    with pytest.raises(ValueError, match="'lr' is a scalar.*feeds="):
        nn.fit(step, (X, Y, np.zeros(64, np.float32)))
