"""nn's convolutional layers (Conv2d, Conv1d, MaxPool2d, AvgPool2d,
AdaptiveAvgPool2d, Flatten, BatchNorm1d/2d) against loop-by-loop numpy
references and, when it is installed, PyTorch; batch norm's training/eval
semantics and running statistics over several compiled steps; parameter
names and state-dict loading; argument errors; the digits data set; and a
short CNN training run (the demo reaching >= 97% test accuracy)."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from convref import _pair, np_avg_pool2d, np_conv1d, np_conv2d, np_max_pool2d

import graphc as gc
from graphc.datasets import load_digits, train_test_split
from graphc.nn import ConfigError, ConfigTypeError

nn = gc.nn


# ------------------------------------------------------------- numpy references


class BatchNormRef:
    """PyTorch's batch norm, step by step, in float64."""

    def __init__(self, c, eps=1e-5, momentum=0.1):
        self.rm, self.rv, self.nbt = np.zeros(c), np.ones(c), 0
        self.eps, self.momentum = eps, momentum

    def train(self, x, w=None, b=None):
        axes = tuple(a for a in range(x.ndim) if a != 1)
        shape = [1] * x.ndim
        shape[1] = -1
        mean, var = x.mean(axes), x.var(axes)
        n = x.size // x.shape[1]
        y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + self.eps)
        if w is not None:
            y = y * w.reshape(shape) + b.reshape(shape)
        self.nbt += 1
        f = self.momentum if self.momentum is not None else 1.0 / self.nbt
        self.rm = (1 - f) * self.rm + f * mean
        self.rv = (1 - f) * self.rv + f * var * n / (n - 1)
        return y

    def eval(self, x, w=None, b=None):
        shape = [1] * x.ndim
        shape[1] = -1
        y = (x - self.rm.reshape(shape)) / np.sqrt(self.rv.reshape(shape) + self.eps)
        return y if w is None else y * w.reshape(shape) + b.reshape(shape)


def run(module, x, backend="llvm"):
    ph = gc.placeholder(x.shape, x.dtype, name="x")
    return gc.compile(module(ph), backend=backend)(x=x)


RNG = np.random.default_rng(0)


# ------------------------------------------------------------------- Conv2d


CONV_CASES = [
    dict(cin=3, cout=4, k=3, stride=1, padding=0, dilation=1, groups=1, bias=True),
    dict(cin=2, cout=6, k=(3, 2), stride=(2, 1), padding=(1, 2), dilation=1, groups=2, bias=True),
    dict(cin=4, cout=4, k=3, stride=1, padding="same", dilation=2, groups=4, bias=False),
    dict(cin=2, cout=3, k=2, stride=3, padding="valid", dilation=(1, 2), groups=1, bias=True),
    dict(cin=3, cout=2, k=4, stride=1, padding="same", dilation=1, groups=1, bias=True),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"k{c['k']}-s{c['stride']}-p{c['padding']}-g{c['groups']}")
def test_conv2d_matches_numpy(case):
    layer = nn.Conv2d(case["cin"], case["cout"], case["k"], stride=case["stride"],
                      padding=case["padding"], dilation=case["dilation"], groups=case["groups"],
                      bias=case["bias"], dtype="float64", seed=1)
    k = _pair(case["k"])
    assert layer.weight.shape == (case["cout"], case["cin"] // case["groups"], *k)
    x = RNG.standard_normal((2, case["cin"], 7, 8))
    want = np_conv2d(x, layer.weight.value, layer.bias.value if case["bias"] else None,
                     case["stride"], case["padding"], case["dilation"], case["groups"])
    np.testing.assert_allclose(run(layer, x), want, rtol=1e-10, atol=1e-12)


def test_conv2d_padding_modes_and_unbatched():
    x = RNG.standard_normal((1, 2, 5, 6))
    for mode, npmode in (("reflect", "reflect"), ("replicate", "edge")):
        layer = nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode=mode, dtype="float64", seed=2)
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 2)), mode=npmode)
        want = np_conv2d(xp, layer.weight.value, layer.bias.value)
        np.testing.assert_allclose(run(layer, x), want, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(run(layer, x[0]), want[0], rtol=1e-10, atol=1e-12)   # (C, H, W)


def test_conv1d_matches_numpy():
    layer = nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2, dtype="float64", seed=3)
    assert layer.weight.shape == (6, 2, 3) and layer.bias.shape == (6,)
    x = RNG.standard_normal((2, 4, 9))
    want = np_conv1d(x, layer.weight.value, layer.bias.value, stride=2, padding=1, groups=2)
    np.testing.assert_allclose(run(layer, x), want, rtol=1e-10, atol=1e-12)


def test_conv2d_default_init_is_pytorchs():
    layer = nn.Conv2d(6, 32, (3, 5), groups=2, seed=0)
    fan_in = 3 * 3 * 5
    bound = 1 / math.sqrt(fan_in)            # kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in))
    w, b = layer.weight.value, layer.bias.value
    assert w.dtype == np.float32 and w.shape == (32, 3, 3, 5) and b.shape == (32,)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound        # uniform's std
    assert np.abs(b).max() <= bound
    same = nn.Conv2d(6, 32, (3, 5), groups=2, seed=0)
    assert np.array_equal(same.weight.value, w)                      # seeded
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert nn.Conv2d(1, 2, 3, bias=False).bias is None


# ------------------------------------------------------------------ pooling


@pytest.mark.parametrize("k,s,p,d,ceil", [((2, 2), (2, 2), (0, 0), (1, 1), False),
                                          ((3, 3), (2, 2), (1, 1), (1, 1), True),
                                          ((3, 2), (1, 2), (1, 0), (2, 1), False),
                                          ((2, 2), (3, 3), (1, 1), (1, 1), True)])
def test_max_pool2d_matches_numpy(k, s, p, d, ceil):
    x = RNG.standard_normal((2, 3, 7, 8))
    layer = nn.MaxPool2d(k, s, p, d, ceil_mode=ceil)
    np.testing.assert_allclose(run(layer, x), np_max_pool2d(x, k, s, p, d, ceil), rtol=0, atol=0)


@pytest.mark.parametrize("k,s,p,ceil,include,div", [((2, 2), (2, 2), (0, 0), False, True, None),
                                                    ((3, 3), (2, 2), (1, 1), True, True, None),
                                                    ((3, 3), (2, 2), (1, 1), True, False, None),
                                                    ((2, 3), (1, 2), (1, 1), False, False, None),
                                                    ((3, 3), (2, 2), (1, 1), False, True, 5)])
def test_avg_pool2d_matches_numpy(k, s, p, ceil, include, div):
    x = RNG.standard_normal((2, 3, 7, 8))
    layer = nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include, divisor_override=div)
    np.testing.assert_allclose(run(layer, x), np_avg_pool2d(x, k, s, p, ceil, include, div),
                               rtol=1e-12, atol=1e-12)


def test_pool_default_stride_unbatched_adaptive_and_flatten():
    x = RNG.standard_normal((2, 3, 6, 6))
    np.testing.assert_allclose(run(nn.MaxPool2d(3), x[0]), np_max_pool2d(x, 3)[0])
    np.testing.assert_allclose(run(nn.AdaptiveAvgPool2d(1), x), x.mean((2, 3), keepdims=True))
    np.testing.assert_allclose(run(nn.AdaptiveAvgPool2d((2, 3)), x),
                               x.reshape(2, 3, 2, 3, 3, 2).mean((3, 5)))
    assert run(nn.Flatten(), x).shape == (2, 108)
    np.testing.assert_array_equal(run(nn.Flatten(), x), x.reshape(2, -1))
    np.testing.assert_array_equal(run(nn.Flatten(0, 1), x), x.reshape(6, 6, 6))
    np.testing.assert_array_equal(run(nn.Flatten(-2), x), x.reshape(2, 3, 36))


# --------------------------------------------------------------- batch norm


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_batchnorm2d_training_steps_and_running_stats(momentum):
    c = 3
    bn = nn.BatchNorm2d(c, momentum=momentum, dtype="float64")
    bn.weight.value = RNG.uniform(0.5, 1.5, c)
    bn.bias.value = RNG.standard_normal(c)
    ref = BatchNormRef(c, momentum=momentum)
    x = gc.placeholder((4, c, 3, 5), "float64", name="x")
    y = bn(x)
    step = gc.compile(y, updates=gc.nn.state_updates(y))
    for t in range(4):
        X = RNG.standard_normal((4, c, 3, 5)) * (t + 1) + t
        np.testing.assert_allclose(step(x=X), ref.train(X, bn.weight.value, bn.bias.value),
                                   rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(bn.running_mean.value, ref.rm, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(bn.running_var.value, ref.rv, rtol=1e-12, atol=1e-14)
        assert int(bn.num_batches_tracked.value) == ref.nbt == t + 1
    bn.eval()
    X = RNG.standard_normal((2, c, 3, 5))
    np.testing.assert_allclose(run(bn, X), ref.eval(X, bn.weight.value, bn.bias.value),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(run(bn, X, "interp"), ref.eval(X, bn.weight.value, bn.bias.value),
                               rtol=1e-10, atol=1e-12)


def test_batchnorm_interpreter_step_and_float32():
    bn = nn.BatchNorm2d(2)
    ref = BatchNormRef(2)
    x = gc.placeholder((3, 2, 4, 4), "float32", name="x")
    y = bn(x)
    step = gc.compile(y, updates=gc.nn.state_updates(y), backend="interp")
    for _ in range(3):
        X = RNG.standard_normal((3, 2, 4, 4)).astype(np.float32) * 3 + 1
        out = step(x=X)
        assert out.dtype == np.float32 and bn.running_var.value.dtype == np.float32
        np.testing.assert_allclose(out, ref.train(X.astype(np.float64)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.value, ref.rm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.value, ref.rv, rtol=1e-5, atol=1e-6)


def test_batchnorm_without_updates_keeps_stats_and_shared_use_chains():
    bn = nn.BatchNorm2d(2, dtype="float64")
    x = gc.placeholder((2, 2, 3, 3), "float64", name="x")
    X1, X2 = RNG.standard_normal((2, 2, 3, 3)), RNG.standard_normal((2, 2, 3, 3)) + 2
    gc.compile(bn(x))(x=X1)                               # no updates given: nothing written
    assert not bn.running_mean.value.any() and int(bn.num_batches_tracked.value) == 0
    # one layer used twice in a graph: the updates apply in call order, as PyTorch's
    z = gc.placeholder((2, 2, 3, 3), "float64", name="z")
    out = gc.sum(bn(x)) + gc.sum(bn(z))
    gc.compile(out, updates=gc.nn.state_updates(out))(x=X1, z=X2)
    ref = BatchNormRef(2)
    ref.train(X1), ref.train(X2)
    np.testing.assert_allclose(bn.running_mean.value, ref.rm, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.value, ref.rv, rtol=1e-12)
    assert int(bn.num_batches_tracked.value) == 2


def test_optimizer_step_updates_running_stats():
    bn = nn.BatchNorm2d(3, dtype="float64")
    head = nn.Dense(3 * 2 * 2, 2, dtype="float64", seed=0)
    model = nn.Sequential(bn, nn.Flatten(), head)
    x = gc.placeholder((5, 3, 2, 2), "float64", name="x")
    y = gc.placeholder((5,), "int64", name="y")
    loss = nn.cross_entropy(model(x), y)
    opt = gc.optim.SGD(0.1)
    ups = opt.updates(loss, model.parameters())
    assert bn.running_mean in ups and bn.running_var in ups and bn.num_batches_tracked in ups
    step = gc.compile(loss, updates=ups)
    ref = BatchNormRef(3)
    w0 = bn.weight.value.copy()
    for _ in range(3):
        X = RNG.standard_normal((5, 3, 2, 2)) + 1
        step(x=X, y=RNG.integers(0, 2, 5))
        ref.train(X)
    np.testing.assert_allclose(bn.running_mean.value, ref.rm, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.value, ref.rv, rtol=1e-12)
    assert not np.array_equal(bn.weight.value, w0)            # the affine parameters train


def test_batchnorm_variants_and_gradient():
    x3 = RNG.standard_normal((4, 3, 5))
    ref = BatchNormRef(3)
    np.testing.assert_allclose(run(nn.BatchNorm1d(3, dtype="float64"), x3), ref.train(x3),
                               rtol=1e-10, atol=1e-12)
    x2 = RNG.standard_normal((6, 3))
    np.testing.assert_allclose(run(nn.BatchNorm1d(3, dtype="float64"), x2), BatchNormRef(3).train(x2),
                               rtol=1e-10, atol=1e-12)
    plain = nn.BatchNorm2d(3, affine=False, track_running_stats=False, dtype="float64")
    assert plain.named_parameters(None) == [] and plain.running_mean is None
    x4 = RNG.standard_normal((2, 3, 2, 2))
    plain.eval()                                           # no running stats: batch stats always
    np.testing.assert_allclose(run(plain, x4), BatchNormRef(3).train(x4), rtol=1e-10, atol=1e-12)
    # the gradient through the batch statistics vs central differences (float64)
    from helpers import check_grads
    bn = nn.BatchNorm2d(3, dtype="float64")
    bn.weight.value = np.array([0.5, 1.5, 2.0])
    xp = gc.placeholder((2, 3, 2, 2), "float64", name="xp")
    coef = gc.constant(RNG.standard_normal((2, 3, 2, 2)))
    check_grads(gc.sum(bn(xp) ** 2 * coef), [xp], [x4.copy()], [0], eps=1e-6, tol=1e-6)


def test_batchnorm_names_and_state():
    bn = nn.BatchNorm2d(4)
    assert [n for n, _ in bn.named_parameters(None)] == \
        ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert [p.shape for p in bn.parameters()] == [(4,), (4,)]
    assert [(p.shape, str(p.dtype)) for p in bn.buffers()] == \
        [((4,), "float32"), ((4,), "float32"), ((), "int64")]
    bn.running_mean.value = np.ones(4, np.float32)
    bn.reset_running_stats()
    assert not bn.running_mean.value.any() and (bn.running_var.value == 1).all()


# ------------------------------------------------------ state dict and errors


def test_state_dict_names_and_loading_with_dense_transposed():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), gc.relu,
                          nn.MaxPool2d(2), nn.Flatten(), nn.Dense(8, 3))
    keys = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
            "1.num_batches_tracked", "5.weight", "5.bias"]
    assert list(model.state_dict()) == keys
    # a PyTorch-shaped state (Linear weight (out, in)) as numpy arrays
    torch_like = {k: RNG.standard_normal(v.shape).astype(v.dtype) for k, v in model.state_dict().items()}
    torch_like["5.weight"] = RNG.standard_normal((3, 8)).astype(np.float32)
    with pytest.raises(ConfigError, match="5.weight"):
        model.load_state_dict(torch_like)                  # shape (3, 8) vs (8, 3)
    model.load_state_dict(nn.convert_torch_state_dict(model, torch_like))
    assert np.array_equal(model[5].weight.value, torch_like["5.weight"].T)
    assert np.array_equal(model[0].weight.value, torch_like["0.weight"])
    with pytest.raises(ConfigTypeError):
        nn.convert_torch_state_dict(model, [1, 2])


@pytest.mark.parametrize("make,match", [
    (lambda: nn.Conv2d(3, 4, 0), "kernel_size"),
    (lambda: nn.Conv2d(3, 4, 3, groups=2), "divisible by groups"),
    (lambda: nn.Conv2d(0, 4, 3), "in_channels"),
    (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), "'same' needs stride 1"),
    (lambda: nn.Conv2d(3, 4, 3, padding="full"), "padding must be"),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), "padding"),
    (lambda: nn.Conv2d(3, 4, (3, 3, 3)), "kernel_size"),
    (lambda: nn.Conv2d(3, 4, 3, padding_mode="circular"), "padding_mode"),
    (lambda: nn.Conv2d(3, 4, 3, dtype="int32"), "dtype"),
    (lambda: nn.MaxPool2d(2, padding=2), "half the kernel"),
    (lambda: nn.MaxPool2d(2, return_indices=True), "return_indices"),
    (lambda: nn.AvgPool2d(2, stride=0), "stride"),
    (lambda: nn.AvgPool2d(2, divisor_override=0), "divisor_override"),
    (lambda: nn.AdaptiveAvgPool2d(0), "output_size"),
    (lambda: nn.BatchNorm2d(0), "num_features"),
    (lambda: nn.BatchNorm2d(3, momentum=1.5), "momentum"),
    (lambda: nn.BatchNorm2d(3, eps=-1), "eps"),
])
def test_bad_arguments(make, match):
    with pytest.raises((ConfigError, ConfigTypeError), match=match):
        make()


def test_bad_inputs():
    x = gc.placeholder((2, 3, 8, 8), "float32", name="x")
    with pytest.raises(gc.ShapeError, match="has 3 channels, expected 4"):
        nn.Conv2d(4, 2, 3)(x)
    with pytest.raises(gc.ShapeError, match="4-D input"):
        nn.Conv2d(3, 2, 3)(gc.placeholder((3, 8), "float32"))
    with pytest.raises(gc.ShapeError, match="channels"):
        nn.BatchNorm2d(2)(x)
    with pytest.raises(gc.ShapeError, match="4-D"):
        nn.BatchNorm2d(3)(gc.placeholder((2, 3), "float32"))
    with pytest.raises(gc.ShapeError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(gc.placeholder((1, 3), "float32"))
    with pytest.raises(gc.ShapeError):
        nn.Conv2d(3, 2, 9)(x)                              # kernel larger than the input
    with pytest.raises(gc.ShapeError, match="out of range"):
        nn.Flatten(1, 5)(x)
    with pytest.raises(gc.ShapeError, match="after"):
        nn.Flatten(3, 1)(x)


def test_state_update_records_are_checked():
    p = gc.parameter(np.zeros(2), name="p", trainable=False)
    with pytest.raises(ConfigTypeError, match="graph node"):
        nn.state.record(np.zeros(2), [(p, lambda cur: cur(p) + 1)])
    with pytest.raises(ConfigTypeError, match="parameter, rule"):
        nn.state.record(p + 1, [(p, 3)])
    with pytest.raises(ConfigTypeError, match="state_updates"):
        nn.state_updates(3)
    x = gc.placeholder((2,), "float64", name="x")
    out = nn.state.record(x * 2, [(p, lambda cur: cur(p) + x)])
    assert nn.state_updates(gc.sum(out)) and not nn.state_updates(gc.sum(x * 3))
    gc.compile(gc.sum(out), updates=nn.state_updates(out))(x=np.array([1.0, 2.0]))
    assert np.array_equal(p.value, [1.0, 2.0])


# ------------------------------------------------------------------ PyTorch


def test_layers_match_pytorch():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(
        torch.nn.Conv2d(2, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
        torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        torch.nn.Conv2d(6, 8, (2, 3), stride=(1, 2), padding="valid", groups=2, dilation=(2, 1)),
        torch.nn.BatchNorm2d(8, momentum=None), torch.nn.ReLU(),
        torch.nn.AvgPool2d(2, 1, 1, count_include_pad=False), torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 3, 5)).double()
    f8 = "float64"
    gm = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1, dtype=f8), nn.BatchNorm2d(6, dtype=f8), gc.relu,
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.Conv2d(6, 8, (2, 3), stride=(1, 2), padding="valid", groups=2, dilation=(2, 1), dtype=f8),
        nn.BatchNorm2d(8, momentum=None, dtype=f8), gc.relu,
        nn.AvgPool2d(2, 1, 1, count_include_pad=False), nn.Flatten(), nn.Dense(8 * 4 * 3, 5, dtype=f8))
    gm.load_state_dict(nn.convert_torch_state_dict(gm, tm.state_dict()))
    assert list(gm.state_dict()) == list(tm.state_dict())
    x = gc.placeholder((4, 2, 9, 9), "float64", name="x")
    out = gm(x)
    params = gm.parameters()
    loss = gc.sum(out * gc.constant(np.linspace(-1, 1, 20).reshape(4, 5)))
    step = gc.compile([out, *gc.grad(loss, [x, *params])], updates=gc.nn.state_updates(loss))
    tnames = [n for n, _ in tm.named_parameters()]
    gnames = [n for n, _ in gm.named_parameters()]
    assert tnames == gnames
    for _ in range(3):                                          # running stats over 3 steps
        X = RNG.standard_normal((4, 2, 9, 9))
        tx = torch.tensor(X, requires_grad=True)
        tout = tm(tx)
        tm.zero_grad()
        (tout * torch.linspace(-1, 1, 20, dtype=torch.float64).reshape(4, 5)).sum().backward()
        got = step(x=X)
        np.testing.assert_allclose(got[0], tout.detach().numpy(), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(got[1], tx.grad.numpy(), rtol=1e-8, atol=1e-10)
        for name, g, (_, tp) in zip(gnames, got[2:], tm.named_parameters()):
            tg = tp.grad.numpy()
            np.testing.assert_allclose(g, tg.T if name == "9.weight" else tg, rtol=1e-8,
                                       atol=1e-10, err_msg=name)
    for k, v in tm.state_dict().items():
        if "running" in k or "num_batches" in k:
            np.testing.assert_allclose(gm.state_dict()[k], v.numpy(), rtol=1e-12, err_msg=k)
    gm.eval(), tm.eval()
    X = RNG.standard_normal((4, 2, 9, 9))
    np.testing.assert_allclose(gc.compile(gm(x))(x=X), tm(torch.tensor(X)).detach().numpy(),
                               rtol=1e-9, atol=1e-10)


def test_conv_init_matches_pytorch_distribution():
    torch = pytest.importorskip("torch")
    t = torch.nn.Conv2d(8, 16, 5, groups=2)
    g = nn.Conv2d(8, 16, 5, groups=2)
    for tp, gp in ((t.weight, g.weight), (t.bias, g.bias)):
        tv = tp.detach().numpy()
        assert tv.shape == gp.shape
        assert abs(np.abs(tv).max() - np.abs(gp.value).max()) < 0.05 / math.sqrt(4 * 25) * 4
        assert np.abs(gp.value).max() <= 1 / math.sqrt(4 * 25)


# --------------------------------------------------------- data and training


def test_digits_data():
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert images.min() == 0 and images.max() == 16 and np.all(images == np.round(images))
    assert set(np.unique(labels)) == set(range(10)) and np.bincount(labels).min() >= 170
    tr, te = train_test_split(len(labels), 0.25, seed=0)
    assert len(te) == 449 and len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 1797
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(10, 1.5)


def test_digits_data_is_sklearns():
    datasets = pytest.importorskip("sklearn.datasets")
    ref = datasets.load_digits()
    images, labels = load_digits()
    np.testing.assert_array_equal(images, ref.images)
    np.testing.assert_array_equal(labels, ref.target)


def test_short_cnn_training():
    from graphc.demo_cnn import main
    r = main(epochs=3, quiet=True)
    assert len(r["loss"]) == 3 and r["loss"][2] < r["loss"][0] / 3
    assert r["test_accuracy"][-1] > 0.9                    # chance is 0.1
    bn = r["model"][1]
    assert int(bn.num_batches_tracked.value) == 3 * (1348 // 64)


def test_cnn_demo_reaches_97_percent():
    from graphc.demo_cnn import main
    r = main(quiet=True)
    assert r["accuracy"] >= 0.97
    assert r["loss"][-1] < r["loss"][0] / 10


def test_cli_demo_cnn_runs():
    out = subprocess.run([sys.executable, "-m", "graphc", "demo", "--cnn", "--epochs", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for text in ("epoch   1/1", "loss", "test acc", "final test accuracy"):
        assert text in out.stdout
    for args in (["--steps", "3"], ["--epochs", "0"]):
        bad = subprocess.run([sys.executable, "-m", "graphc", "demo", "--cnn", *args],
                             capture_output=True, text=True, timeout=300)
        assert bad.returncode == 2 and "--epochs" in bad.stderr, bad.stderr
