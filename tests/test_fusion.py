"""Fusion and memory planning on known graphs: kernel counts, what each
kernel holds, memory reuse and in-place writes, why_not_fused reasons — and
that every plan computes what the interpreter computes."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import OpDef, make, register


def agree(outs, feeds, levels=(0, 1, 2, 3), rtol=1e-5, atol=1e-6):
    want = gc.compile(outs, backend="interp")(**feeds)
    for level in levels:
        got = gc.compile(outs, opt_level=level)(**feeds)
        for g, w in zip(got if isinstance(got, tuple) else [got],
                        want if isinstance(want, tuple) else [want]):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"opt_level {level}")


def test_elementwise_chain_is_one_kernel():
    x = gc.placeholder((1 << 12,), "float32", name="x")
    a = gc.parameter(np.float32(0.7), name="a")
    b = gc.parameter(np.float32(-0.2), name="b")
    y = gc.sum(gc.tanh(x * a + b) * gc.sigmoid(x) - 0.1 * x)
    f = gc.compile(y)
    assert f.num_kernels == 1
    assert f.memory.size == 0                      # nothing stored but the output
    agree(y, {"x": np.random.default_rng(0).standard_normal(1 << 12).astype(np.float32)},
          rtol=1e-4, atol=1e-3)


def test_softmax_is_one_row_kernel():
    x = gc.placeholder((32, 50), "float32", name="x")
    y = gc.softmax(x)
    f = gc.compile(y)
    assert f.num_kernels == 1
    k = f.kernels[0]
    assert k.split == 1 and len(k.hoisted) == 2    # max, then sum of exp, per row
    agree(y, {"x": np.random.default_rng(1).standard_normal((32, 50)).astype(np.float32)})


def test_matmul_absorbs_bias_and_activation():
    x = gc.placeholder((16, 8), "float64", name="x")
    w = gc.parameter(np.random.default_rng(2).standard_normal((8, 4)), name="w")
    b = gc.parameter(np.arange(4.0), name="b")
    y = gc.relu(x @ w + b)
    f = gc.compile(y)
    assert f.num_kernels == 1 and f.kernels[0].matmul is not None
    agree(y, {"x": np.random.default_rng(3).standard_normal((16, 8))})


def test_reduction_absorbs_prologue_and_bias_grad_accumulates():
    x = gc.placeholder((16, 8), "float64", name="x")
    w = gc.parameter(np.random.default_rng(4).standard_normal((8, 4)), name="w")
    b = gc.parameter(np.zeros(4), name="b")
    loss = gc.sum(gc.tanh(x @ w + b) ** 2)
    gw, gb = gc.grad(loss, [w, b])
    f = gc.compile([loss, gw, gb])
    acc = [a for k in f.kernels for a in k.accumulates]
    assert any(a is f.current(gb) for a in acc)    # bias gradient summed while the kernel runs
    agree([loss, gw, gb], {"x": np.random.default_rng(5).standard_normal((16, 8))},
          rtol=1e-10, atol=1e-10)


def mlp(batch=128, sizes=(784, 256, 128, 10), dtype="float32"):
    rng = np.random.default_rng(0)
    x = gc.placeholder((batch, sizes[0]), dtype, name="x")
    y = gc.placeholder((batch,), "int64", name="y")
    params, h = [], x
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = gc.parameter((rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(dtype), name=f"w{k}")
        bias = gc.parameter(np.zeros(b, dtype), name=f"b{k}")
        params += [w, bias]
        h = h @ w + bias
        if k < len(sizes) - 2:
            h = gc.relu(h)
    loss = gc.mean(gc.softmax_cross_entropy(h, y))
    feeds = {"x": rng.standard_normal((batch, sizes[0])).astype(dtype),
             "y": rng.integers(0, sizes[-1], batch)}
    return [loss, *gc.grad(loss, params)], feeds


def test_mlp_forward_backward_kernels_and_memory():
    outs, feeds = mlp()
    f = gc.compile(outs)
    assert f.num_kernels <= 12, f.report()
    gemms = sum(k.matmul is not None for k in f.kernels)
    assert gemms == 8                                # 3 forward, 5 backward products
    assert f.memory.peak <= 0.6 * f.memory.naive_size, f.report()
    # the ReLU derivative masks are computed by the forward kernels
    forward = [k for k in f.kernels if k.matmul is not None and
               any(o.op == "greater" for o in k.outputs)]
    assert len(forward) == 2
    agree(outs, feeds, rtol=1e-4, atol=1e-5)


def test_memory_reuse_and_in_place():
    x = gc.placeholder((1000,), "float64", name="x")
    a = gc.exp(x)
    b = gc.tanh(a)
    c = gc.exp(b)
    d = c * 2.0
    f1 = gc.compile(d, opt_level=1)               # unfused: intermediates reuse two buffers
    assert f1.num_kernels == 4
    assert f1.memory.size <= 2 * 8064
    assert f1.memory.naive_size == 4 * 8000
    f3 = gc.compile([d, gc.sum(a)], opt_level=3)
    agree([d, gc.sum(a)], {"x": np.linspace(-1, 1, 1000)}, rtol=1e-12, atol=1e-12)
    assert f3.memory.size <= 8064


def test_in_place_output_over_dying_input_is_correct():
    # a stored value (used by two kernels over different domains) dies in a kernel
    # that writes an output of the same size: the output takes its buffer
    x = gc.placeholder((64, 64), "float64", name="x")
    e = gc.exp(x)                       # costly, needed by a row kernel and a column sum
    s = gc.sum(e, 0)
    y = e / gc.sum(e, 1, keepdims=True) + s
    outs = [y, s]
    agree(outs, {"x": np.random.default_rng(7).standard_normal((64, 64))}, rtol=1e-12)


# -- why_not_fused ----------------------------------------------------------------

def _opaque_op():
    """A custom-kernel op (copies its input): opaque to fusion."""
    from graphc.backend.llvm.loops import for_nest
    if "test_opaque_copy" not in gc.OPS:
        def kernel(em, n):
            with for_nest(em.b, n.shape) as idx:
                em.store(n, idx, em.load(n.inputs[0], idx))
        register(OpDef("test_opaque_copy", "kernel", lambda ins, a: (ins[0].shape, ins[0].dtype),
                       lambda x: x.copy(), lambda n, g: [g], kernel=kernel))
    return lambda x: make("test_opaque_copy", (x,))


def test_why_not_fused_reasons():
    x = gc.placeholder((32, 16), "float32", name="x")
    w = gc.parameter(np.ones((16, 8), np.float32), name="w")
    e = gc.exp(x)
    col = gc.sum(e, 0)                       # reduction over rows: a boundary for e * ...
    out = e * col                            # consumer over (32,16)
    r = gc.tanh(x) @ w                       # matmul operand must be stored
    opaque = _opaque_op()(gc.sigmoid(x))
    after = opaque + 1.0
    f = gc.compile([out, r, after])
    same = f.why_not_fused(e, out)
    assert "fused" in same or "kernel" in same
    assert "reduction" in f.why_not_fused(col, out)
    assert "matmul reads its operands from memory" in f.why_not_fused(gc.tanh(x), r)
    assert "opaque" in f.why_not_fused(gc.sigmoid(x), opaque)
    assert "opaque" in f.why_not_fused(opaque, after)
    assert "do not depend on each other" in f.why_not_fused(r, after)
    assert "placeholder" in f.why_not_fused(x, out)
    agree([out, r, after], {"x": np.random.default_rng(8).standard_normal((32, 16)).astype(np.float32)})


def test_why_not_fused_costly_shared_and_broadcast():
    x = gc.placeholder((64,), "float64", name="x")
    z = gc.placeholder((64, 64), "float64", name="z")
    t = gc.tanh(x)                          # costly
    u = gc.sum(t * z, 1)                    # t broadcast along rows (outer axis) of z
    v = gc.sum(t)                           # and needed by another kernel
    f = gc.compile([u, v])
    why = f.why_not_fused(t, u)
    assert "broadcast" in why or "costs too much" in why, why
    assert f.why_not_fused(x, x) and f.why_not_fused(t, t).endswith(
        f"kernel #{f.kernel_of(t)}")


def test_why_not_fused_below_opt_level_2():
    x = gc.placeholder((8,), "float64", name="x")
    a = gc.exp(x)
    b = a * 2.0
    f = gc.compile(b, opt_level=1)
    assert f.num_kernels == 2
    assert f.why_not_fused(a, b)


def test_fusion_never_changes_results_on_the_op_table_graphs():
    """Every gradient graph of the op table, at every opt level, vs the interpreter."""
    from helpers import placeholders_for, user_kwargs
    from optable import OPS, draw
    rng = np.random.default_rng(0)
    for info in OPS:
        if not info.grad:
            continue
        for s in info.grad_cases()[:2]:
            arrays = draw(info, s, rng, for_grad=True)
            phs = placeholders_for(arrays)
            out = info.fn(*phs, **user_kwargs(s))
            loss = gc.sum(gc.cast(out, "float64") * gc.constant(rng.standard_normal(out.shape)))
            grads = gc.grad(loss, [phs[i] for i in info.grad])
            feeds = {p.name: a for p, a in zip(phs, arrays)}
            agree([loss, *grads], feeds, levels=(0, 2, 3), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_updates_at_every_level(level):
    w = gc.parameter(np.ones((4, 3)), name="w")
    b = gc.parameter(np.zeros(3), name="b")
    x = gc.placeholder((5, 4), "float64", name="x")
    loss = gc.mean(gc.relu(x @ w + b) ** 2)
    gw, gb = gc.grad(loss, [w, b])
    step = gc.compile(loss, updates={w: w - 0.1 * gw, b: b - 0.1 * gb}, opt_level=level)
    X = np.random.default_rng(9).standard_normal((5, 4))
    h = np.maximum(X @ np.ones((4, 3)), 0)
    want_loss = np.mean(h ** 2)
    g = 2 * h * (h > 0) / h.size
    assert np.isclose(step(x=X), want_loss)
    np.testing.assert_allclose(w.value, 1 - 0.1 * X.T @ g)
    np.testing.assert_allclose(b.value, -0.1 * g.sum(0))


def test_row_reduction_read_at_other_rows_is_not_hoisted():
    # sum over rows of x, then read as a *row vector* (transposed use): row fusion
    # would read rows not yet reduced, so it must not happen
    x = gc.placeholder((16, 16), "float64", name="x")
    r = gc.sum(x, 1)                                  # (16,), broadcasts along the inner axis
    y = x * r                                         # y[i, j] = x[i, j] * r[j]
    z = x * gc.reshape(gc.max(x, 1), (1, 16))         # same through a reshape
    X = np.random.default_rng(10).standard_normal((16, 16))
    agree([y, z], {"x": X}, rtol=1e-12, atol=1e-12)
    f = gc.compile([y, z])
    assert "other rows" in f.why_not_fused(r, y) or "reduction" in f.why_not_fused(r, y)
