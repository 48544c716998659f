"""Graphs of any depth compile (issue 10, item 9): no pass or emitter
recurses on graph depth, kernels stay bounded in size, and identical kernels
share one LLVM function. Each result is checked against numpy."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.passes import fusion


def _tanh_chain(x, steps):
    y = x
    for _ in range(steps):
        y = gc.tanh(y) + 0.001
    return y


def _np_tanh_chain(a, steps):
    for _ in range(steps):
        a = np.tanh(a) + 0.001
    return a


def test_long_tanh_chain_compiles_at_opt_level_3():
    # 250 steps (500 nodes) raised RecursionError in the emitter
    x = gc.placeholder((4,), "float64", name="x")
    f = gc.compile(_tanh_chain(x, 250), cache=False)
    a = np.linspace(-1.0, 1.0, 4)
    np.testing.assert_allclose(f(x=a), _np_tanh_chain(a, 250), rtol=1e-13, atol=1e-15)
    # kernels are bounded, and identical ones reuse one function
    assert all(len(k.members) <= fusion.MAX_KERNEL_MEMBERS for k in f.kernels)
    assert f.num_kernels >= 500 // fusion.MAX_KERNEL_MEMBERS


def test_sum_of_a_thousand_exp_terms():
    # a left-deep sum of 1000 terms raised RecursionError at opt_level 3
    x = gc.placeholder((8,), "float64", name="x")
    s = gc.exp(x * 0.0)
    for i in range(1, 1000):
        s = s + gc.exp(x * (i / 1000.0))
    f = gc.compile(gc.sum(s), cache=False)
    a = np.linspace(-1.0, 1.0, 8)
    ref = sum(np.exp(a * (i / 1000.0)) for i in range(1000)).sum()
    np.testing.assert_allclose(f(x=a), ref, rtol=1e-12)


def test_deep_chain_of_movement_ops_compiles():
    # index rules (transpose, reshape) nest inside one kernel: fusion bounds that depth
    x = gc.placeholder((2, 4), "float64", name="x")
    y, r = x, np.arange(8.0).reshape(2, 4)
    ref = r.copy()
    for _ in range(400):
        y = gc.reshape(gc.transpose(y), (2, 4)) * 0.5 + 1.0
        ref = ref.T.reshape(2, 4) * 0.5 + 1.0
    f = gc.compile(y, cache=False)
    np.testing.assert_allclose(f(x=r), ref, rtol=1e-13)


def _affine_chain(steps):
    """A chain of 2 * steps nodes, compiled, checked against numpy."""
    x = gc.placeholder((16,), "float64", name="x")
    y = x
    a = np.linspace(-1.0, 1.0, 16)
    ref = a.copy()
    for _ in range(steps):
        y = y * 1.0001 + 0.001
        ref = ref * 1.0001 + 0.001
    f = gc.compile(y, cache=False)
    np.testing.assert_allclose(f(x=a), ref, rtol=1e-12)
    return f


def test_identical_kernels_share_one_function():
    f = _affine_chain(2000)
    assert f.num_kernels >= 4000 // fusion.MAX_KERNEL_MEMBERS
    # far fewer functions than kernels in the module
    n_fns = f.llvm_ir.count("define internal void @kernel")
    assert n_fns <= 4, n_fns


@pytest.mark.slow
def test_hundred_thousand_node_chain_compiles_and_runs():
    _affine_chain(50000)
