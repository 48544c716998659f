"""The complete plan (backend/schedule.py, issue 11 item 4): golden texts of
the plans of three graphs — an MLP training step, a softmax over rows, an
update that needs staging — each compiled result also checked against the
interpreter (so the golden text is not the only oracle); and verify_plan
rejecting corrupted plans, naming the problem.

The golden files are tests/golden/plan_*.txt. After a deliberate change of
fusion, memory or the planner, rewrite them with
``GRAPHC_UPDATE_GOLDEN=1 pytest tests/test_plan.py`` and review the diff.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm.planner import build_plan
from graphc.backend.schedule import PlanError, verify_plan

from helpers import against_interp_with_updates

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"


def golden(name: str, text: str) -> None:
    path = GOLDEN / f"plan_{name}.txt"
    if os.environ.get("GRAPHC_UPDATE_GOLDEN"):
        path.write_text(text + "\n")
    want = path.read_text().rstrip("\n")
    assert text == want, f"plan of {name} differs from {path.name}:\n{text}"


def against_interp(outputs, updates, params, feeds, threads, calls=2):
    """Compile, run ``calls`` times, and compare outputs and parameters with
    the interpreter run from the same starting values. Returns the compiled
    function."""
    return against_interp_with_updates(outputs, updates, params, feeds, calls=calls,
                                       rtol=1e-5, atol=1e-6, threads=threads)


def mlp_step():
    r = np.random.default_rng(0)
    model = gc.nn.Sequential(gc.nn.Dense(4, 8, activation=gc.relu, name="l1"),
                             gc.nn.Dense(8, 3, name="l2"))
    for layer in model:
        layer.weight.value = r.standard_normal(layer.weight.shape).astype(np.float32) / 2
        layer.bias.value = r.standard_normal(layer.bias.shape).astype(np.float32) / 4
    x = gc.placeholder((6, 4), "float32", name="x")
    y = gc.placeholder((6,), "int64", name="y")
    loss = gc.nn.cross_entropy(model(x), y)
    opt = gc.optim.SGD(0.1)
    updates = opt.updates(loss, model.parameters())
    feeds = {"x": r.standard_normal((6, 4)).astype(np.float32),
             "y": r.integers(0, 3, 6).astype(np.int64)}
    return loss, updates, list(updates), feeds


def softmax_rows():
    x = gc.placeholder((64, 512), "float32", name="x")
    e = gc.exp(x - gc.max(x, axis=1, keepdims=True))
    out = e / gc.sum(e, axis=1, keepdims=True)
    feeds = {"x": np.random.default_rng(1).standard_normal((64, 512)).astype(np.float32)}
    return out, None, [], feeds


def swap():
    a = gc.parameter(np.arange(6.0).reshape(2, 3), name="a")
    b = gc.parameter(-np.arange(6.0).reshape(2, 3), name="b")
    c = gc.parameter(np.ones(3), name="c")
    out = gc.sum(a * b) + gc.sum(c)
    return out, {a: b, b: a, c: c + a[0]}, [a, b, c], {}


CASES = {"mlp_sgd": (mlp_step, 1), "softmax": (softmax_rows, 2), "swap": (swap, 1)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_plan(name):
    build, threads = CASES[name]
    outputs, updates, params, feeds = build()
    f = against_interp(outputs, updates, params, feeds, threads)
    verify_plan(f.plan, deep=True)
    golden(name, f.plan_text())
    assert f.plan.arena_size == f._native.arena_size     # the bytes the runtime allocates


def test_plan_facts():
    """What the golden texts show, asserted directly."""
    out, updates, params, feeds = swap()
    p = against_interp(out, updates, params, feeds, 1).plan
    roles = [s.role for s in p.steps]
    assert roles[:2] == ["stage", "stage"] and roles.count("update") >= 2
    staged = {n.name for n, _, _ in p.staging}
    assert staged == {"a", "b"}
    ends = [off + size for _, off, size in p.staging] + [p.memory.size]
    assert p.arena_size == max(ends) + (p.ws_stride * p.threads if p.workspace else 0)

    out, updates, params, feeds = softmax_rows()
    p = against_interp(out, updates, params, feeds, 2).plan
    (s,) = [s for s in p.steps if s.role == "kernel"]
    assert s.loop == "rows" and s.row_cache and s.workspace == 512 * 4
    assert p.workspace[1] >= s.workspace and p.arena_size >= p.workspace[0] + 2 * p.workspace[1]


def test_chunked_reduction_plan():
    x = gc.placeholder((1 << 16,), "float32", name="x")
    xv = np.random.default_rng(2).standard_normal(1 << 16).astype(np.float32)
    f = gc.compile(gc.sum(x * 2.0), cache=False, threads=2)
    (s,) = f.plan.steps
    # one float64 partial per chunk, spread over the threads' workspace slices
    assert s.loop == "chunks" and s.workspace == 8 * f.plan.chunks_per_thread and not s.barrier
    assert f.plan.workspace[1] * f.plan.threads >= 8 * f.plan.chunks
    np.testing.assert_allclose(f(x=xv), 2 * xv.astype(np.float64).sum(), rtol=1e-5)
    assert "all threads: loop chunks" in f.plan_text()


def test_barriers_only_around_parallel_kernels():
    x = gc.placeholder((64, 1024), "float32", name="x")
    small = gc.placeholder((4,), "float32", name="s")
    big = gc.exp(x) * 2.0                      # split by rows
    t = gc.sum(small * 3.0) + 1.0              # one thread
    f = gc.compile([big, t, small * 2.0], cache=False, threads=2)
    steps = f.plan.steps
    assert any(s.parallel for s in steps) and not all(s.parallel for s in steps)
    for s, nxt in zip(steps, steps[1:]):
        assert s.barrier == (s.parallel or nxt.parallel), s.label()
    assert not steps[-1].barrier
    xv = np.random.default_rng(3).standard_normal((64, 1024)).astype(np.float32)
    sv = np.arange(4, dtype=np.float32)
    r = f(x=xv, s=sv)
    np.testing.assert_allclose(r[0], np.exp(xv) * 2, rtol=1e-6)
    np.testing.assert_allclose(r[1], (sv * 3).sum() + 1, rtol=1e-6)
    np.testing.assert_allclose(r[2], sv * 2)


def test_plan_text_is_the_same_for_the_same_graph_built_twice():
    texts = []
    for _ in range(2):
        loss, updates, _, _ = mlp_step()
        texts.append(gc.compile(loss, updates=updates, cache=False, threads=1).plan_text())
    assert texts[0] == texts[1]


def test_plan_after_a_cache_hit():
    out, updates, params, feeds = swap()
    f1 = gc.compile(out, updates=updates)
    f2 = gc.compile(out, updates=updates)
    assert f2.cache_hit and f2.plan_text() == f1.plan_text()


def test_interp_backend_has_no_plan():
    x = gc.placeholder((3,), "float32", name="x")
    f = gc.compile(x * 2.0, backend="interp")
    assert f.plan is None and f.plan_text() == ""


# -- verify_plan on corrupted plans ---------------------------------------------------
def unfused():
    """exp -> transpose -> add, one kernel per op (opt_level 1: no in-place)."""
    a = gc.placeholder((4, 4), "float32", name="a")
    xe = gc.exp(a)
    y = gc.transpose(xe)
    z = gc.exp(y * 2.0)
    f = gc.compile([z + 1.0], opt_level=1, cache=False, threads=1)
    return f


def replan(f, **memory_changes):
    mem = dataclasses.replace(f.memory, **memory_changes)
    return build_plan(f.graph, f.kernels, mem, 1)


def arena_values(f):
    """The arena values, in the order their kernels write them."""
    return [n for s in f.plan.steps for n, loc in s.writes if loc[0] == "arena"]


def test_verify_accepts_the_compilers_plans():
    f = unfused()
    verify_plan(f.plan, deep=True)
    verify_plan(replan(f), deep=True)


def test_verify_rejects_overlapping_values():
    f = unfused()
    x, y = arena_values(f)[:2]         # exp's result is read while transpose writes y
    arena = dict(f.memory.arena)
    arena[y.id] = arena[x.id] + 16      # overlaps x, which is live
    with pytest.raises(PlanError, match=r"kernel #1 .*overlaps %\d+ at \[\d+, \d+\), live until"):
        verify_plan(replan(f, arena=arena))


def test_verify_rejects_an_in_place_write_at_another_index():
    f = unfused()
    x, y = arena_values(f)[:2]
    arena = dict(f.memory.arena)
    arena[y.id] = arena[x.id]          # transpose(x) written over x: reads it transposed
    with pytest.raises(PlanError, match="not recorded as in place by the memory plan"):
        verify_plan(replan(f, arena=arena))
    # record it as in place (and so each later value put where y was, over it)
    at = [v for v in arena_values(f) if arena[v.id] == arena[x.id]]
    p = replan(f, arena=arena, inplace=list(zip(at[1:], at)))
    verify_plan(p)                     # recorded: the linear check trusts the record ...
    with pytest.raises(PlanError, match=r"kernel #1 .*overlaps %\d+ .*\(the kernel reads it "
                                        r"at other indices than it writes\)"):
        verify_plan(p, deep=True)      # ... the deep one re-derives it


def test_verify_rejects_a_read_before_its_write():
    f = unfused()
    p = f.plan
    move(p, p.steps[1], 0)
    with pytest.raises(PlanError, match=r"kernel #0 .*reads %\d+ \(exp\) at .* before any "
                                        "kernel writes it"):
        verify_plan(p)


def move(p, step, to):
    p.steps.remove(step)
    p.steps.insert(to, step)
    for i, s in enumerate(p.steps):
        s.index = i


@pytest.mark.parametrize("which", ["copy", "direct"])
def test_verify_rejects_an_update_before_a_reader_of_the_old_value(which):
    out, updates, _, _ = swap()
    f = gc.compile(out, updates=updates, cache=False, threads=1)
    p = f.plan
    first_reader = min(s.index for s in p.steps if s.role == "kernel")
    if which == "copy":       # update_a (from its staging slot) before the kernels read a
        (up,) = [s for s in p.steps if s.name == "update_a"]
    else:                     # c's kernel writes c in place: moved before sum(c) reads c
        (up,) = [s for s in p.steps if s.role == "kernel" and s.writes[0][1][0] == "slot"
                 and s.writes[0][1] != ("slot", p.layout.output0)]
    move(p, up, first_reader)
    with pytest.raises(PlanError, match=r"reads the old value of %\d+ '[ac]' after kernel "
                                        rf"#{first_reader} \S+ overwrote it"):
        verify_plan(p)


def test_verify_rejects_a_buffer_outside_the_arena():
    f = unfused()
    p = f.plan
    p.arena_size = 8
    with pytest.raises(PlanError, match="outside the arena"):
        verify_plan(p)


def test_verify_rejects_workspace_over_values():
    f = unfused()
    p = f.plan
    p.workspace = (0, 64)
    with pytest.raises(PlanError, match=r"the workspace \[0, 64\) overlaps %\d+"):
        verify_plan(p)


def test_verify_rejects_an_unsupported_split():
    f = unfused()
    p = f.plan
    p.steps[0].loop = "rows"
    with pytest.raises(PlanError, match="kernel #0 .*split across threads in a one-thread plan"):
        verify_plan(p)
    p.threads = 2
    p.steps[0].loop = "diagonal"
    with pytest.raises(PlanError, match="kernel #0 .*unknown loop split 'diagonal'"):
        verify_plan(p)
    p.steps[0].loop = None
    p.steps[0].gemm = "rows"
    with pytest.raises(PlanError, match="kernel #0 .*splits a GEMM \\(rows\\) but calls none"):
        verify_plan(p)


def test_verify_rejects_a_write_into_an_input():
    f = unfused()
    p = f.plan
    s = p.steps[0]
    n, _ = s.writes[0]
    s.writes[0] = (n, ("slot", 0))
    with pytest.raises(PlanError, match="kernel #0 .*writes %\\d+ \\(exp\\) into argument 0 "
                                        "\\(input %0 'a'\\)"):
        verify_plan(p)


# -- where the plan is shown ----------------------------------------------------------
def test_report_dump_and_inspect_show_the_plan(tmp_path):
    import subprocess
    import sys
    out, updates, params, feeds = swap()
    f = gc.compile(out, updates=updates, cache=False, dump=str(tmp_path / "d"))
    (line,) = [ln for ln in f.report().splitlines() if "allocated" in ln]
    assert line.split()[1:3] == [str(f.plan.arena_size), "B"]
    (d,) = list((tmp_path / "d").iterdir())
    (name,) = [n for n in os.listdir(d) if n.endswith("plan.txt")]
    assert (d / name).read_text() == f.plan_text() + "\n"
    script = tmp_path / "s.py"
    script.write_text("import numpy as np, graphc as gc\n"
                      "x = gc.placeholder((4, 3), 'float64', name='x')\n"
                      "gc.compile(gc.softmax(x), threads=1)\n")
    run = subprocess.run([sys.executable, "-m", "graphc", "inspect", "--plan", str(script)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "plan: 1 kernel, 1 thread, arena" in run.stdout and "arena " in run.stdout
    assert "  #0   loop" in run.stdout
