"""Optimizers against hand-written numpy references (PyTorch's documented
algorithms), on both backends; PyTorch parity of whole training runs when
torch is installed; state, schedules, clipping and errors."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim

# ------------------------------------------------------- numpy reference optimizers


class NpSGD:
    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0):
        self.h = dict(lr=lr, mu=momentum, nest=nesterov, wd=weight_decay, damp=dampening)
        self.buf = {}

    def step(self, params, grads, t, lr=None):
        h = self.h
        lr = h["lr"] if lr is None else lr
        out = []
        for k, (p, g) in enumerate(zip(params, grads)):
            g = g + h["wd"] * p
            if h["mu"]:
                b = g.copy() if t == 1 else h["mu"] * self.buf[k] + (1 - h["damp"]) * g
                self.buf[k] = b
                g = g + h["mu"] * b if h["nest"] else b
            out.append(p - lr * g)
        return out


class NpAdam:
    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 decoupled=False):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.wd, self.ams, self.dec = weight_decay, amsgrad, decoupled
        self.m, self.v, self.vmax = {}, {}, {}

    def step(self, params, grads, t, lr=None):
        lr = self.lr if lr is None else lr
        out = []
        for k, (p, g) in enumerate(zip(params, grads)):
            if self.dec:
                p = p * (1 - lr * self.wd)
            else:
                g = g + self.wd * p
            m = self.m[k] = self.b1 * self.m.get(k, 0) + (1 - self.b1) * g
            v = self.v[k] = self.b2 * self.v.get(k, 0) + (1 - self.b2) * g * g
            if self.ams:
                v = self.vmax[k] = np.maximum(self.vmax.get(k, 0), v)
            mhat, vhat = m / (1 - self.b1 ** t), v / (1 - self.b2 ** t)
            out.append(p - lr * mhat / (np.sqrt(vhat) + self.eps))
        return out


class NpRMSProp:
    def __init__(self, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        self.lr, self.a, self.eps, self.wd, self.mu, self.c = lr, alpha, eps, weight_decay, momentum, centered
        self.v, self.gavg, self.buf = {}, {}, {}

    def step(self, params, grads, t, lr=None):
        lr = self.lr if lr is None else lr
        out = []
        for k, (p, g) in enumerate(zip(params, grads)):
            g = g + self.wd * p
            v = self.v[k] = self.a * self.v.get(k, 0) + (1 - self.a) * g * g
            if self.c:
                ga = self.gavg[k] = self.a * self.gavg.get(k, 0) + (1 - self.a) * g
                v = v - ga * ga
            if self.mu:
                b = self.buf[k] = self.mu * self.buf.get(k, 0) + g / (np.sqrt(v) + self.eps)
                out.append(p - lr * b)
            else:
                out.append(p - lr * g / (np.sqrt(v) + self.eps))
        return out


# ------------------------------------------------------------- the test problem

def regression(dtype="float64", seed=0):
    """Least squares: params W (3, 2), b (2,); batches change every step."""
    rng = np.random.default_rng(seed)
    W0, b0 = rng.standard_normal((3, 2)), rng.standard_normal(2)
    data = [(rng.standard_normal((8, 3)), rng.standard_normal((8, 2))) for _ in range(6)]
    W = gc.parameter(W0, name="W", dtype=dtype)
    b = gc.parameter(b0, name="b", dtype=dtype)
    x = gc.placeholder((8, 3), dtype, name="x")
    y = gc.placeholder((8, 2), dtype, name="y")
    loss = gc.mean((x @ W + b - y) ** 2)
    return (W, b), (W0, b0), data, x, y, loss


def np_loss_grads(W, b, X, Y):
    r = X @ W + b - Y
    return (r ** 2).mean(), [2 * X.T @ r / r.size, 2 * r.sum(0) / r.size]


CONFIGS = [
    ("sgd", lambda: optim.SGD(0.1), lambda: NpSGD(0.1)),
    ("sgd_momentum", lambda: optim.SGD(0.1, momentum=0.9), lambda: NpSGD(0.1, 0.9)),
    ("sgd_nesterov_wd", lambda: optim.SGD(0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
     lambda: NpSGD(0.05, 0.8, True, 0.1)),
    ("sgd_dampening", lambda: optim.SGD(0.1, momentum=0.9, dampening=0.3),
     lambda: NpSGD(0.1, 0.9, dampening=0.3)),
    ("adam", lambda: optim.Adam(0.05), lambda: NpAdam(0.05)),
    ("adam_wd_amsgrad", lambda: optim.Adam(0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True),
     lambda: NpAdam(0.05, (0.8, 0.99), 1e-6, 0.1, True)),
    ("adamw", lambda: optim.AdamW(0.05, weight_decay=0.2), lambda: NpAdam(0.05, weight_decay=0.2, decoupled=True)),
    ("rmsprop", lambda: optim.RMSProp(0.01), lambda: NpRMSProp(0.01)),
    ("rmsprop_centered_momentum_wd",
     lambda: optim.RMSProp(0.01, alpha=0.9, weight_decay=0.05, momentum=0.7, centered=True),
     lambda: NpRMSProp(0.01, 0.9, 1e-8, 0.05, 0.7, True)),
]


@pytest.mark.parametrize("backend", ["llvm", "interp"])
@pytest.mark.parametrize("name,make,make_ref", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_optimizer_matches_numpy_reference(name, make, make_ref, backend):
    params, (W, b), data, x, y, loss = regression()
    opt, ref = make(), make_ref()
    step = gc.compile(loss, updates=opt.updates(loss, params), backend=backend)
    buf = params[0].value
    for t, (X, Y) in enumerate(data, start=1):
        want_loss, grads = np_loss_grads(W, b, X, Y)
        got = step(x=X, y=Y)
        np.testing.assert_allclose(got, want_loss, rtol=1e-12, err_msg=f"loss at step {t}")
        W, b = ref.step([W, b], grads, t)
        np.testing.assert_allclose(params[0].value, W, rtol=1e-11, atol=1e-14, err_msg=f"W at step {t}")
        np.testing.assert_allclose(params[1].value, b, rtol=1e-11, atol=1e-14, err_msg=f"b at step {t}")
    assert opt.step_count.value == len(data)
    if backend == "llvm":
        assert params[0].value is buf          # updated in place by the kernel
    for st in opt.state.values():
        for s in st.values():
            assert not s.trainable and s.dtype == np.float64


@pytest.mark.parametrize("backend", ["llvm", "interp"])
def test_learning_rate_placeholder_schedule(backend):
    params, (W, b), data, x, y, loss = regression()
    lr = gc.placeholder((), "float64", name="lr")
    step = gc.compile(loss, updates=optim.Adam(lr).updates(loss, params), backend=backend)
    ref = NpAdam(None)
    for t, (X, Y) in enumerate(data, start=1):
        rate = 0.1 * 0.5 ** t
        step(x=X, y=Y, lr=np.float64(rate))
        W, b = ref.step([W, b], np_loss_grads(W, b, X, Y)[1], t, lr=rate)
    np.testing.assert_allclose(params[0].value, W, rtol=1e-11)
    np.testing.assert_allclose(params[1].value, b, rtol=1e-11)


@pytest.mark.parametrize("backend", ["llvm", "interp"])
def test_gradient_clipping_by_global_norm(backend):
    params, (W, b), data, x, y, loss = regression()
    step = gc.compile(loss, updates=optim.SGD(0.1, clip_norm=0.5).updates(loss, params),
                      backend=backend)
    ref = NpSGD(0.1)
    for t, (X, Y) in enumerate(data, start=1):
        grads = np_loss_grads(W, b, X, Y)[1]
        norm = np.sqrt(sum((g ** 2).sum() for g in grads))
        coef = min(1.0, 0.5 / (norm + 1e-6))
        assert t > 1 or coef < 1            # the clip is active
        step(x=X, y=Y)
        W, b = ref.step([W, b], [g * coef for g in grads], t)
    np.testing.assert_allclose(params[0].value, W, rtol=1e-11)
    g = [gc.constant(np.array([3.0, 4.0]))]
    np.testing.assert_allclose(gc.compile(optim.clip_by_global_norm(g, 1.0)[0])(), [0.6, 0.8],
                               rtol=1e-6)


def test_float32_state_and_mixed_parameters():
    params, _, data, x, y, loss = regression("float32")
    opt = optim.Adam(1e-2)
    step = gc.compile(loss, updates=opt.updates(loss, params))
    l0 = step(x=data[0][0].astype(np.float32), y=data[0][1].astype(np.float32))
    assert l0.dtype == np.float32
    assert all(s.dtype == np.float32 for st in opt.state.values() for s in st.values())


def test_unused_parameters_are_not_updated_and_state_is_shared():
    params, _, data, x, y, loss = regression()
    unused = gc.parameter(np.ones(3), name="unused")
    opt = optim.Adam(0.1)
    u = opt.updates(loss, [*params, unused])
    assert unused not in u and params[0] in u and opt.step_count in u
    # a second step function (e.g. another loss) reuses the same state parameters
    u2 = opt.updates(gc.sum(params[0]), [params[0]])
    m = opt.state[params[0].id]["exp_avg"]
    assert m in u and m in u2


def test_optimizer_state_dict_roundtrip():
    params, _, data, x, y, loss = regression()
    opt = optim.Adam(0.1)
    step = gc.compile(loss, updates=opt.updates(loss, params), backend="interp")
    for X, Y in data[:3]:
        step(x=X, y=Y)
    sd = opt.state_dict()
    assert sd["step"] == 3 and set(sd) == {"step", "0.exp_avg", "0.exp_avg_sq", "1.exp_avg",
                                           "1.exp_avg_sq"}
    snapshot = [p.value.copy() for p in params]
    step(x=data[3][0], y=data[3][1])
    after = [p.value.copy() for p in params]
    opt.load_state_dict(sd)
    for p, v in zip(params, snapshot):
        p.value = v
    step(x=data[3][0], y=data[3][1])
    for p, v in zip(params, after):
        np.testing.assert_array_equal(p.value, v)
    with pytest.raises(ValueError, match="keys differ"):
        opt.load_state_dict({"step": 1})


def test_dropout_counters_advance_with_the_optimizer():
    model = nn.Sequential(nn.Dense(4, 8, seed=0), nn.Dropout(0.5, seed=1), nn.Dense(8, 1, seed=2))
    x = gc.placeholder((16, 4), "float32", name="x")
    loss = gc.mean(model(x) ** 2)
    u = optim.SGD(0.01).updates(loss, model.parameters())
    assert model[1].counter in u
    step = gc.compile(loss, updates=u)
    X = np.ones((16, 4), np.float32)
    losses = {float(step(x=X)) for _ in range(4)}
    assert model[1].counter.value == 4 and len(losses) == 4


def test_optimizer_errors():
    params, _, _, x, y, loss = regression()
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(-0.1)
    with pytest.raises(TypeError, match="lr"):
        optim.SGD("fast")
    with pytest.raises(TypeError, match="0-d float"):
        optim.Adam(gc.placeholder((2,), "float32", name="lr"))
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        optim.Adam(betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="pair"):
        optim.Adam(betas=0.9)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match="clip_norm"):
        optim.SGD(0.1, clip_norm=0)
    opt = optim.SGD(0.1)
    with pytest.raises(TypeError, match="not a parameter"):
        opt.updates(loss, [x])
    with pytest.raises(ValueError, match="twice"):
        opt.updates(loss, [params[0], params[0]])
    frozen = gc.parameter(np.zeros(2), name="frozen", trainable=False)
    with pytest.raises(ValueError, match="not trainable"):
        opt.updates(loss, [frozen])
    with pytest.raises(TypeError, match="int64"):
        opt.updates(loss, [gc.parameter(np.zeros(2, np.int64), name="ints")])
    with pytest.raises(TypeError, match="list of parameters"):
        opt.updates(loss, params[0])


# ------------------------------------------------------------ parity with PyTorch

@functools.cache
def _mlp_run(kind, backend="llvm", steps=50):
    """50 steps of an MLP on fixed batches; returns graphc's loss trajectory,
    the initial weights and the data."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 32, 10)).astype(np.float32)
    Y = rng.integers(0, 4, (4, 32))
    model = nn.Sequential(nn.Dense(10, 32, activation=gc.relu, seed=1),
                          nn.Dense(32, 32, activation=gc.tanh, seed=2), nn.Dense(32, 4, seed=3))
    init = [(model[k].weight.value.copy(), model[k].bias.value.copy()) for k in range(3)]
    x = gc.placeholder((32, 10), "float32", name="x")
    y = gc.placeholder((32,), "int64", name="y")
    loss = nn.cross_entropy(model(x), y)
    opt = PARITY[kind][0]()
    step = gc.compile(loss, updates=opt.updates(loss, model.parameters()), backend=backend)
    hist = [float(step(x=X[i % 4], y=Y[i % 4])) for i in range(steps)]
    return np.array(hist), init, X, Y


PARITY = {
    "sgd_momentum": (lambda: optim.SGD(0.1, momentum=0.9),
                     lambda ps, torch: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
    "adam": (lambda: optim.Adam(5e-3), lambda ps, torch: torch.optim.Adam(ps, lr=5e-3)),
    "adamw": (lambda: optim.AdamW(5e-3, weight_decay=0.1),
              lambda ps, torch: torch.optim.AdamW(ps, lr=5e-3, weight_decay=0.1)),
    "rmsprop": (lambda: optim.RMSProp(1e-3, momentum=0.5, centered=True),
                lambda ps, torch: torch.optim.RMSprop(ps, lr=1e-3, momentum=0.5, centered=True)),
    "sgd_nesterov_wd": (lambda: optim.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
                        lambda ps, torch: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True,
                                                          weight_decay=1e-2)),
}


@pytest.mark.parametrize("kind", [k if k in ("sgd_momentum", "adam") else
                                  pytest.param(k, marks=pytest.mark.slow) for k in PARITY])
def test_pytorch_parity_50_steps(kind):
    torch = pytest.importorskip("torch")
    hist, init, X, Y = _mlp_run(kind, "llvm")
    tm = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32),
                             torch.nn.Tanh(), torch.nn.Linear(32, 4))
    with torch.no_grad():
        for k, (w, b) in zip((0, 2, 4), init):
            tm[k].weight.copy_(torch.from_numpy(w.T.copy()))     # graphc stores (in, out)
            tm[k].bias.copy_(torch.from_numpy(b))
    topt = PARITY[kind][1](tm.parameters(), torch)
    want = []
    for i in range(len(hist)):
        topt.zero_grad()
        out = torch.nn.functional.cross_entropy(tm(torch.from_numpy(X[i % 4])),
                                                torch.from_numpy(Y[i % 4]))
        out.backward()
        topt.step()
        want.append(out.item())
    want = np.array(want)
    assert want[-1] < 0.9 * want[0]            # the run actually trains
    np.testing.assert_allclose(hist, want, rtol=1e-4)


@pytest.mark.parametrize("kind", ["sgd_momentum", "adam"])
def test_compiled_and_interpreted_training_agree(kind):
    a, *_ = _mlp_run(kind, "llvm")
    b, *_ = _mlp_run(kind, "interp")
    assert a[-1] < 0.9 * a[0]
    np.testing.assert_allclose(a, b, rtol=1e-5)
