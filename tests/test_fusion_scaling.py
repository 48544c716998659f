"""The fusion pass's work grows linearly with the graph (issue 11, item 5).

Work is counted, not timed: the Python lines the pass executes (in
``graphc/passes/fusion*.py`` and ``backend/plan.py``), traced with
``sys.settrace``, for a graph and for one four times its size. A pass that
rescans every kernel per kernel (as ``deps()`` per ``can_merge`` did) does
about sixteen times the work; a linear one about four.
"""
from __future__ import annotations

import sys

import numpy as np

import graphc as gc
from graphc.ir.graph import Graph
from graphc.passes import Pipeline, fusion
from graphc.passes.manager import PassContext


def _reduce_chain(n):
    x = gc.placeholder((64,), "float32", name="x")
    y = x
    for _ in range(n):
        y = y - gc.sum(y) * 0.01
    return x, y


def _reduce_graph(n):
    x, y = _reduce_chain(n)
    return Graph([y], [x], [])


def _numpy_reduce_chain(a, n):
    ref = a.astype(np.float64)
    for _ in range(n):
        ref = ref - ref.sum() * 0.01
    return ref


def _adam_step(layers):
    model = gc.nn.Sequential(*[gc.nn.Dense(16, 16, activation=gc.relu) for _ in range(layers)])
    x = gc.placeholder((8, 16), "float32", name="x")
    y = gc.placeholder((8,), "int64", name="y")
    loss = gc.nn.cross_entropy(model(x)[:, :10], y)
    updates = gc.optim.Adam(1e-3).updates(loss, model.parameters())
    return Graph([loss], [x, y], list(updates.items()))


def _prepared(graph):
    """The graph as the fusion pass sees it (after the graph passes)."""
    g, _ = Pipeline(["fold", "simplify", "cse", "dce"]).run(graph, PassContext(opt_level=3))
    return g


def _fusion_work(graph) -> tuple[int, int]:
    """(lines the fusion pass executes, kernels it makes) for the prepared graph."""
    count = [0]

    def local(frame, event, arg):
        if event == "line":
            count[0] += 1
        return local

    def calls(frame, event, arg):
        f = frame.f_code.co_filename.replace("\\", "/")
        return local if "passes/fusion" in f or f.endswith("backend/plan.py") else None

    sys.settrace(calls)
    try:
        kernels = fusion.Fuser(graph, PassContext(opt_level=3)).run()
    finally:
        sys.settrace(None)
    return count[0], len(kernels)


def test_fusion_work_is_linear_in_the_reduce_chain():
    # N steps of y = y - sum(y) * 0.01: one kernel per step (the sum accumulates
    # in the loop that computes y) plus one
    small, big = _prepared(_reduce_graph(100)), _prepared(_reduce_graph(400))
    (w1, k1), (w2, k2) = _fusion_work(small), _fusion_work(big)
    assert (k1, k2) == (101, 401)
    growth = (w2 / w1) / (len(big.nodes) / len(small.nodes))
    assert growth < 1.4, f"work grew {w2 / w1:.1f}x for {len(big.nodes) / len(small.nodes):.1f}x nodes"


def test_fusion_work_is_linear_in_the_depth_of_an_adam_step():
    small, big = _prepared(_adam_step(3)), _prepared(_adam_step(12))
    (w1, _), (w2, _) = _fusion_work(small), _fusion_work(big)
    growth = (w2 / w1) / (len(big.nodes) / len(small.nodes))
    assert growth < 1.4, f"work grew {w2 / w1:.1f}x for {len(big.nodes) / len(small.nodes):.1f}x nodes"


def test_adam_updates_of_different_parameters_are_not_tied_by_shared_scalars():
    # every update reads the same one-element values (learning rate, bias
    # corrections); that alone must not merge the updates of different layers
    # into one loop (it did: one kernel read all 18 bias, m and v arrays of 6
    # layers), so the per-layer kernels stay alike (one LLVM function for all)
    g = _adam_step(6)
    prepared = _prepared(g)
    by_id = {n.id: n for n in prepared.nodes}
    state = {p.id for p, _ in g.updates if p.size > 1}     # parameters, Adam's m and v
    kernels = fusion.Fuser(prepared, PassContext(opt_level=3)).run()
    for k in kernels:
        read = {i.id for m in k.members for i in by_id[m].inputs if i.id in state}
        assert len(read) <= 3, f"{k.name} reads {len(read)} parameter and state arrays"


def test_reduce_chain_of_2000_steps_is_planned_one_kernel_per_step():
    n = 2000
    ctx = PassContext(opt_level=3)
    Pipeline(["fold", "simplify", "cse", "dce", "fusion", "memory"]).run(_reduce_graph(n), ctx)
    ks = ctx.kernels
    assert len(ks) == n + 1
    sums = [k for k in ks for o in k.outputs if o.op == "reduce_sum"]
    assert len(sums) == n
    # every sum accumulates in the loop over y that computes its input, but the
    # first two and those just after a value the inline-depth limit stored
    # (every MAX_INLINE_DEPTH - 1 steps), which are kernels of their own
    own = 2 + (n - 1) // (fusion.MAX_INLINE_DEPTH - 1)
    assert sum(len(k.accumulates) == 1 and k.shape == (64,) for k in ks) == n - own


def test_reduce_chain_compiled_matches_numpy():
    n = 150
    x, y = _reduce_chain(n)
    f = gc.compile(y, cache=False)
    assert f.num_kernels == n + 1
    a = np.linspace(-1, 1, 64).astype(np.float32)
    ref = _numpy_reduce_chain(a, n)
    np.testing.assert_allclose(f(x=a), ref, rtol=1e-3, atol=1e-3 * max(1.0, np.abs(ref).max()))
