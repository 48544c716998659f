"""The public API's contract: compile() options, call-time behaviour,
parameters, gradients as graphs, numerical stability."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


def test_issue_example_end_to_end():
    rng = np.random.default_rng(0)
    x = gc.placeholder((16, 12), "float64", name="x")
    y = gc.placeholder((16,), "int64", name="y")
    w = gc.parameter(rng.standard_normal((12, 5)), name="w")
    c = gc.constant(np.linspace(0, 1, 5))
    logits = gc.tanh(x @ w + c)
    loss = gc.mean(gc.softmax_cross_entropy(logits, y))
    (gw,) = gc.grad(loss, [w])
    f = gc.compile([loss, gw])
    fi = gc.compile([loss, gw], backend="interp")
    X, Y = rng.standard_normal((16, 12)), rng.integers(0, 5, 16)
    (l1, g1), (l2, g2) = f(x=X, y=Y), fi(x=X, y=Y)
    # numpy oracle
    z = np.tanh(X @ w.value + np.linspace(0, 1, 5))
    ls = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert np.isclose(l1, -ls[np.arange(16), Y].mean())
    assert np.isclose(l1, l2) and np.allclose(g1, g2)
    assert "define" in f.llvm_ir and "graphc_main" in f.llvm_ir
    assert isinstance(l1, np.ndarray) and l1.shape == ()


def test_single_output_returns_array_and_list_returns_tuple():
    x = gc.placeholder((3,), "float32", name="x")
    assert isinstance(gc.compile(x * 2.0)(x=np.ones(3, np.float32)), np.ndarray)
    r = gc.compile([x * 2.0])(x=np.ones(3, np.float32))
    assert isinstance(r, tuple) and len(r) == 1
    r = gc.compile((x + 1.0, x - 1.0))(x=np.ones(3, np.float32))
    assert isinstance(r, tuple) and len(r) == 2


def test_positional_inputs_follow_given_order():
    a = gc.placeholder((2,), "float64", name="a")
    b = gc.placeholder((2,), "float64", name="b")
    f = gc.compile(a - b, inputs=[b, a])
    np.testing.assert_array_equal(f(np.array([1.0, 1.0]), np.array([5.0, 7.0])), [4.0, 6.0])
    np.testing.assert_array_equal(f(b=np.array([1.0, 1.0]), a=np.array([5.0, 7.0])), [4.0, 6.0])


def test_parameters_are_read_at_each_call():
    w = gc.parameter(np.array([1.0, 2.0]), name="w")
    x = gc.placeholder((2,), "float64", name="x")
    for backend in ("llvm", "interp"):
        f = gc.compile(gc.sum(w * x), backend=backend)
        assert f(x=np.ones(2)) == 3.0
        w.value = np.array([10.0, 20.0])
        assert f(x=np.ones(2)) == 30.0
        w.value[0] = 0.0                  # in-place edits count too
        assert f(x=np.ones(2)) == 20.0
        w.value = np.array([1.0, 2.0])


def test_parameter_value_checks():
    w = gc.parameter(np.zeros((2, 3)), name="w")
    with pytest.raises(ValueError, match="w.*shape"):
        w.value = np.zeros((3, 2))
    w.value = np.ones((2, 3), np.float32)     # same kind: converted
    assert w.value.dtype == np.float64
    with pytest.raises(TypeError, match="w.*dtype"):
        w.value = np.array([[True] * 3] * 2).astype(complex)


def test_graph_without_placeholders():
    w = gc.parameter(np.arange(4.0), name="w")
    f = gc.compile(gc.sum(w * w))
    assert f() == 14.0
    assert gc.compile(gc.constant(3.0) * 2)() == 6.0


def test_results_are_fresh_arrays_owned_by_caller():
    x = gc.placeholder((3,), "float64", name="x")
    f = gc.compile([x * 1.0, x])
    X = np.arange(3.0)
    a, b = f(x=X)
    a2, _ = f(x=X)
    assert a is not a2 and not np.shares_memory(a, a2)
    assert not np.shares_memory(b, X)
    b[0] = 99
    assert X[0] == 0


def test_outputs_that_are_leaves_or_repeated():
    w = gc.parameter(np.arange(3.0), name="w")
    x = gc.placeholder((3,), "float64", name="x")
    y = x + w
    f = gc.compile([y, y, w, x, gc.constant(np.ones(2))])
    r = f(x=np.ones(3))
    np.testing.assert_array_equal(r[0], [1, 2, 3])
    np.testing.assert_array_equal(r[1], [1, 2, 3])
    assert not np.shares_memory(r[0], r[1])
    np.testing.assert_array_equal(r[2], w.value)
    np.testing.assert_array_equal(r[3], np.ones(3))
    np.testing.assert_array_equal(r[4], np.ones(2))


def test_non_contiguous_inputs_are_accepted():
    x = gc.placeholder((3, 4), "float64", name="x")
    f = gc.compile(x * 2.0)
    base = np.arange(24.0).reshape(4, 6)
    for arr in (base[:3, :4], base.T[:3, :4], np.asfortranarray(base[:3, :4]), base[::-1][:3, ::-1][:, :4]):
        np.testing.assert_array_equal(f(x=arr), arr * 2)


def test_lists_and_scalars_as_inputs():
    x = gc.placeholder((2,), "float32", name="x")
    s = gc.placeholder((), "float64", name="s")
    f = gc.compile(gc.cast(x, "float64") * s)
    np.testing.assert_allclose(f(x=[1.0, 2.0], s=3), [3.0, 6.0])


def test_zero_size_and_zero_d():
    x = gc.placeholder((0, 3), "float32", name="x")
    y = gc.placeholder((), "float32", name="y")
    f = gc.compile([x * 2.0, gc.sum(x, 0), y * y])
    a, b, c = f(x=np.zeros((0, 3), np.float32), y=np.float32(3.0))
    assert a.shape == (0, 3) and np.all(b == 0) and b.shape == (3,) and c == 9.0


def test_weak_python_scalars_keep_dtype():
    x32 = gc.placeholder((2,), "float32", name="x")
    assert (x32 * 2.0).dtype == np.float32
    assert (2 * x32 + 1).dtype == np.float32
    assert (x32 ** 2).dtype == np.float32
    i32 = gc.placeholder((2,), "int32", name="i")
    assert (i32 + 1).dtype == np.int32
    assert (i32 * 1.5).dtype == np.float64      # numpy 2 (NEP 50)
    assert (x32 + gc.constant(np.float64(1))).dtype == np.float64
    assert (x32 > 0).dtype == np.bool_


def test_grad_of_grad_hessian_vector_product():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((4, 4))
    x = gc.placeholder((4,), "float64", name="x")
    v = gc.placeholder((4,), "float64", name="v")
    f = gc.sum(gc.tanh(gc.constant(A) @ x) ** 2)
    (g,) = gc.grad(f, [x])
    (hv,) = gc.grad(gc.sum(g * v), [x])
    X, V = rng.standard_normal(4), rng.standard_normal(4)
    got = gc.compile(hv)(x=X, v=V)
    fg = gc.compile(g, backend="interp")
    eps = 1e-6
    num = (fg(x=X + eps * V) - fg(x=X - eps * V)) / (2 * eps)
    np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-8)


def test_grad_zero_when_independent_and_argument_checks():
    x = gc.placeholder((3,), "float64", name="x")
    w = gc.parameter(np.ones((2, 2)), name="w")
    gx, gw = gc.grad(gc.sum(x * x), [x, w])
    assert gw.shape == (2, 2)
    np.testing.assert_array_equal(gc.compile(gw)(), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="scalar"):
        gc.grad(x * 2.0, [x])
    with pytest.raises(TypeError, match="floating"):
        gc.grad(gc.sum(gc.cast(x, "int64")), [x])
    with pytest.raises(TypeError, match="list"):
        gc.grad(gc.sum(x), x)
    i = gc.placeholder((3,), "int64", name="i")
    with pytest.raises(TypeError, match="int64"):
        gc.grad(gc.sum(x), [i])


def test_grad_accumulates_over_multiple_uses():
    x = gc.placeholder((3,), "float64", name="x")
    y = gc.sum(x * x + x * 3.0 + gc.exp(x))
    (g,) = gc.grad(y, [x])
    X = np.array([0.1, -0.4, 2.0])
    np.testing.assert_allclose(gc.compile(g)(x=X), 2 * X + 3 + np.exp(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_family_is_stable_for_huge_logits(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, 3.0]], dtype)
    x = gc.placeholder((3, 3), dtype, name="x")
    lab = gc.placeholder((3,), "int64", name="lab")
    ce = gc.softmax_cross_entropy(x, lab)
    outs = [gc.softmax(x), gc.log_softmax(x), gc.logsumexp(x, axis=1), ce,
            gc.grad(gc.sum(ce), [x])[0]]
    for backend in ("llvm", "interp"):
        res = gc.compile(outs, backend=backend)(x=z, lab=np.array([0, 1, 2]))
        for r in res:
            assert np.all(np.isfinite(r)), (backend, r)
        sm, ls, lse, c, g = res
        np.testing.assert_allclose(sm.sum(1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(lse, [1e4, -1e4 + np.log(3), 1e4 + np.log(2)], rtol=1e-6)
        np.testing.assert_allclose(c, [0.0, np.log(3), 1e4 - 3.0 + np.log(2)], rtol=1e-5, atol=1e-6)


def test_nan_and_inf_propagate_as_numpy():
    x = gc.placeholder((4,), "float64", name="x")
    outs = [gc.exp(x), gc.maximum(x, 0.0), gc.relu(x), gc.max(x), gc.sum(x), gc.sigmoid(x)]
    X = np.array([np.nan, np.inf, -np.inf, 1.0])
    got = gc.compile(outs)(x=X)
    with np.errstate(all="ignore"):
        want = [np.exp(X), np.maximum(X, 0), np.maximum(X, 0), np.max(X), np.sum(X),
                1 / (1 + np.exp(-X))]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_node_attributes_known_at_construction():
    x = gc.placeholder((4, 3), np.float32, name="x")
    y = (x @ gc.constant(np.ones((3, 2), np.float32))).sum(axis=0)
    assert y.shape == (2,) and y.dtype == np.float32 and isinstance(y.name, str)
    assert x.T.shape == (3, 4) and x[1:3].shape == (2, 3) and x[0, 1].shape == ()


def test_hash_consing_shares_identical_nodes():
    x = gc.placeholder((3,), "float64", name="x")
    assert gc.exp(x) is gc.exp(x)
    assert (x + 1.0) is (x + 1.0)
    assert gc.exp(x) is not gc.exp(x + 1.0)
