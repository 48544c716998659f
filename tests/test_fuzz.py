"""Property-based fuzzing: random well-typed graphs (tests/fuzzgraph.py and
the files it names), compiled with the llvm backend at every ``opt_level``
and compared with the interpreter and with numpy; random differentiable
float64 graphs, their gradients compared with central finite differences.

Graphs with ``updates=`` (tests/fuzzgraph.py ``update_cases``: parameters
returned as outputs, copied, transposed, reversed; updates whose values read
other updated parameters, swaps, transposes) are compiled at every
``opt_level`` and compared with the interpreter run from the same parameter
values: the outputs and every parameter after a first and a second call.

Default run: 160 value graphs + 40 gradient graphs + 150 update graphs,
derandomized (the ``graphc-ci`` profile in conftest.py). The ``slow`` long run
fuzzes 4000 + 1000 + 2500 random graphs: ``python -m pytest -m slow
tests/test_fuzz.py``.

A failure prints the shrunk case as a runnable program; every one found
became a test in tests/test_regressions.py (or test_regressions_fusion.py).
"""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest
from fuzzgraph import MAX_SIZE, Case, UpdateCase, cases, update_cases
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc
from graphc.backend import interp

OPT_LEVELS = [0, 1, 2, 3] if "opt_level" in inspect.signature(gc.compile).parameters else [None]
# the long runs are random; GRAPHC_HYPOTHESIS_PROFILE=graphc-dev makes them skip shrinking too
LONG = settings.get_profile("graphc-dev" if os.environ.get("GRAPHC_HYPOTHESIS_PROFILE") == "graphc-dev"
                            else "graphc-long")


def compile_at(outs, level, **kw):
    if level is None:
        return gc.compile(outs, **kw)
    return gc.compile(outs, opt_level=level, **kw)


def feeds_for(f, feeds) -> dict:
    """The entries of ``feeds`` that ``f`` takes (its graph's placeholders)."""
    return {p.name: feeds[p.name] for p in f.graph.placeholders}


def call(f, feeds):
    try:
        return "ok", list(f(**feeds_for(f, feeds)))
    except gc.RuntimeCheckError as e:
        return "error", e


def frozen(feeds):
    out = {}
    for k, v in feeds.items():
        a = np.array(v, copy=True)
        a.setflags(write=False)       # inputs are only read: read-only arrays must work
        out[k] = a
    return out


def compare(got, ref, err, what):
    """``got`` vs ``ref``: exact where ``err == 0`` (NaN matches NaN, inf and
    zero their sign), within ``4 * err`` where finite, skipped where ``err``
    is inf."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert got.dtype == ref.dtype, f"{what}: dtype {got.dtype} != {ref.dtype}"
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, ref, err_msg=what)
        return
    g, r = got.astype(np.float64), ref.astype(np.float64)
    e = np.broadcast_to(np.asarray(err, np.float64), g.shape)
    with np.errstate(all="ignore"):
        same = (g == r) | (np.isnan(g) & np.isnan(r))
        close = same | (np.isfinite(g) & np.isfinite(r) & (np.abs(g - r) <= 4 * e))
        # exactly determined values match bit for bit, down to the sign of zero
        exact = same & ((g != 0) | (np.signbit(g) == np.signbit(r)))
    bad = np.where(e == 0, ~exact, np.where(np.isinf(e), False, ~close))
    if np.any(bad):
        idx = np.argwhere(bad)[:5]
        rows = [f"  at {tuple(int(i) for i in ix)}: got {g[tuple(ix)]!r}, expected {r[tuple(ix)]!r}"
                f" (error bound {e[tuple(ix)]:.3g})" for ix in idx]
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements differ\n"
                             + "\n".join(rows))


def check_value_case(case: Case):
    # 1. graphc's shape and dtype rules agree with numpy, for every value built
    for v in case.all_vals:
        if not v.raises:
            assert v.node.shape == v.val.shape, f"{v.name}: shape rule {v.node.shape} vs numpy {v.val.shape}"
            assert v.node.dtype == v.val.dtype, f"{v.name}: dtype rule {v.node.dtype} vs numpy {v.val.dtype}"
    outs = [o.node for o in case.outputs]
    feeds = frozen(case.feeds)
    params = [(p, p.value.copy()) for p, _ in case.params]
    # 2. the interpreter agrees with numpy
    fi = gc.compile(outs, backend="interp")
    status, ref = call(fi, feeds)
    if case.expect_error:
        assert status == "error", "interpreter: expected a RuntimeCheckError (numpy raises)"
    else:
        assert status == "ok", f"interpreter raised {ref!r}"
        for k, (o, r) in enumerate(zip(case.outputs, ref)):
            compare(r, o.val, o.err, f"interp vs numpy, output {k} ({o.name})")
    # 3. compiled code, at every opt_level, agrees with the interpreter
    for level in OPT_LEVELS:
        f = compile_at(outs, level)
        what = f"llvm (opt_level={level}) vs interp"
        s1, r1 = call(f, feeds)
        s2, r2 = call(f, feeds)
        if case.expect_error:
            # A check fires for the elements that are computed. At opt_level 0
            # every node is computed whole, as in the interpreter; fused code
            # computes only what an output needs, so a failing element no
            # output needs (an integer ** -6 read by a take of no indices) may
            # go unreported. The outputs are then still computed right.
            if level in (0, None) or s1 == "error":
                assert s1 == s2 == "error", f"{what}: expected a RuntimeCheckError"
            else:
                assert s2 == "ok", f"{what}: the second call raised"
            continue
        assert s1 == "ok", f"{what}: compiled code raised {r1!r}"
        for k, (o, got, r) in enumerate(zip(case.outputs, r1, ref)):
            compare(got, r, o.err, f"{what}, output {k} ({o.name})")
        for k, (a, b) in enumerate(zip(r1, r2)):       # a second call: the same bits
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: second call differs, output {k}")
        # results are fresh arrays: they alias neither the inputs nor each other
        arrays = list(r1)
        for i, a in enumerate(arrays):
            assert a.flags.owndata or a.base is None or a.size == 0, f"output {i} is a view"
            for b in arrays[i + 1:]:
                assert a.size == 0 or b.size == 0 or not np.shares_memory(a, b), "outputs alias"
            for x in feeds.values():
                assert a.size == 0 or x.size == 0 or not np.shares_memory(a, x), "output aliases input"
    # 4. inputs and parameters were not written
    for k, v in case.feeds.items():
        np.testing.assert_array_equal(feeds[k], v, err_msg=f"input {k} was modified")
    for p, old in params:
        np.testing.assert_array_equal(p.value, old, err_msg=f"parameter {p.name} was modified")


# ----------------------------------------------------------------- gradients

KINK = 1e-4      # distance to a kink (relu at 0, a tie in max, a flipping comparison)
FD_EPS = 1e-6


def _kink_distance(graph) -> float:
    """The smallest distance, over the graph's primitive nodes, from the
    current values to a point where the function is not differentiable
    (exact ties, which are structural — max(x, x) — are allowed)."""
    env, dist = {}, np.inf

    def near(d):
        d = np.abs(np.asarray(d, np.float64)).ravel()
        d = d[np.isfinite(d) & (d > 0)]
        return float(d.min()) if d.size else np.inf
    for n in graph.nodes:
        if n.is_leaf:
            env[n.id] = env_val = (n.value if n.op != "placeholder" else graph._feeds[n.name])
            continue
        args = [env[i.id] for i in n.inputs]
        env[n.id] = env_val = interp.eval_node(n, args)
        with np.errstate(all="ignore"):
            if n.op in ("relu", "abs"):
                dist = min(dist, near(args[0]))
            elif n.op in ("maximum", "minimum", "greater", "less", "greater_equal", "less_equal",
                          "equal", "not_equal") and n.inputs[0].dtype.kind == "f":
                dist = min(dist, near(np.subtract(args[0], args[1])))
            elif n.op == "cast" and n.inputs[0].dtype.kind == "f" and n.dtype.kind in "ib":
                x = args[0]
                dist = min(dist, near(x) if n.dtype.kind == "b" else near(x - np.round(x)))
            elif n.op == "reduce_max" and args[0].size:
                x = args[0]
                axes = n.attrs["axes"]
                rest = [i for i in range(x.ndim) if i not in axes]
                y = np.transpose(x, rest + list(axes)).reshape(-1, int(np.prod([x.shape[a] for a in axes])))
                if y.shape[1] >= 2:
                    ys = np.sort(y, axis=1)
                    dist = min(dist, near(ys[:, -1] - ys[:, -2]))
        del env_val
    return dist


def check_grad_case(case: Case):
    outs = [o.node for o in case.outputs if o.dtype == np.float64]
    wrt = list(case.wrt)
    assume(outs and wrt)
    rng = np.random.default_rng(len(case.lines))
    loss = None
    for o in outs:
        term = gc.sum(o * gc.constant(rng.uniform(0.5, 1.5, o.shape)))
        loss = term if loss is None else loss + term
    feeds = dict(case.feeds)
    graph = gc.Graph([loss])
    graph._feeds = feeds
    assume(_kink_distance(graph) > KINK)
    grads = gc.grad(loss, wrt)
    f_loss = gc.compile(loss, backend="interp")
    f0 = float(f_loss(**feeds))
    assume(np.isfinite(f0) and abs(f0) < 1e8)
    fg = gc.compile(grads, backend="interp")
    g_int = fg(**feeds_for(fg, feeds))
    scale = max([1.0] + [float(np.max(np.abs(g))) for g in g_int if g.size])
    for level in OPT_LEVELS:
        fl = compile_at(grads, level)
        g_llvm = fl(**feeds_for(fl, feeds))
        for k, (a, b) in enumerate(zip(g_llvm, g_int)):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9 * scale,
                                       err_msg=f"compiled (opt_level={level}) gradient {k} vs interp")
    # central finite differences of the interpreted loss
    for k, x in enumerate(wrt):
        base = feeds[x.name] if x.op == "placeholder" else x.value
        num = np.zeros(x.shape)
        for i in range(base.size):
            vals = []
            for sgn in (1, -1):
                arr = np.array(base, copy=True)
                arr.flat[i] += sgn * FD_EPS
                if x.op == "placeholder":
                    vals.append(float(f_loss(**{**feeds, x.name: arr})))
                else:
                    x.value = arr
                    vals.append(float(f_loss(**feeds)))
            num.flat[i] = (vals[0] - vals[1]) / (2 * FD_EPS)
        if x.op == "parameter":
            x.value = base
        tol = 1e-4 * np.abs(num) + 1e-5 * scale + 1e-8 * abs(f0)
        bad = np.abs(g_int[k] - num) > tol
        assert not np.any(bad), (f"gradient wrt {x.name} differs from finite differences:\n"
                                 f"autodiff {g_int[k][bad]}\nnumeric  {num[bad]}")


# ------------------------------------------------------------------- updates

def close_after_steps(got, ref, what, err=0.0):
    """A value after a second call: its bound from the first call's mirror no
    longer applies, so floats agree to a relative tolerance (an update
    written too early or read at the wrong index is off by far more);
    integers, booleans, NaN and infinities exactly."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape and got.dtype == ref.dtype, what
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, ref, err_msg=what)
        return
    g, r = got.astype(np.float64), ref.astype(np.float64)
    fin = np.isfinite(r)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=f"{what}: NaNs")
    np.testing.assert_array_equal(np.where(fin, 0, g), np.where(fin, 0, r), err_msg=what)
    tol = 1e-9 if got.dtype == np.float64 else 1e-4
    scale = max(1.0, float(np.max(np.abs(r[fin]), initial=0)))
    # plus the first call's bound: an inexact op (a float32 tanh) is as inexact again
    slack = 8 * float(np.max(np.asarray(err, np.float64), initial=0))
    np.testing.assert_allclose(g[fin], r[fin], rtol=tol, atol=tol * scale + slack, err_msg=what)


def check_update_case(case: UpdateCase, calls: int = 2):
    """Compiled code with ``updates=``, at every opt_level, against the
    interpreter run from the same parameter values: the outputs and every
    parameter after each call (the first call also against numpy)."""
    assume(not case.expect_error)
    outs = [o.node for o in case.outputs]
    ups = case.update_dict()
    feeds = frozen(case.feeds)
    start = [p.value.copy() for p in case.params]

    def run(f):
        """(outputs, parameters after the call) per call, up to the first call
        that raised (its entry is None). The first call never raises (the
        case expects no error); a later one may, on updated values (an
        integer exponent that became negative), as numpy would."""
        for p, v in zip(case.params, start):
            p.value = v
        got = []
        for c in range(calls):
            status, r = call(f, feeds)
            if status != "ok":
                assert c > 0, f"{f.backend} raised {r!r}"
                got.append(None)
                break
            got.append((r, [p.value.copy() for p in case.params]))
        return got

    fi = gc.compile(outs, updates=ups, backend="interp")
    ref = run(fi)
    updated = {p.id for p in ups}
    new = {p.id: (val, err) for p, _, val, err in case.updates}
    # the interpreter agrees with numpy on the first call
    for k, (o, r) in enumerate(zip(case.outputs, ref[0][0])):
        compare(r, o.val, o.err, f"interp vs numpy, output {k} ({o.name})")
    for p, v0, v1 in zip(case.params, start, ref[0][1]):
        want, err = new.get(p.id, (v0, 0))
        compare(v1, want, err, f"interp vs numpy, parameter {p.name} after the call")
    bounded = all(np.all(np.isfinite(o.err)) for o in case.outputs) and \
        all(np.all(np.isfinite(e)) for _, _, _, e in case.updates)
    for level in OPT_LEVELS:
        f = compile_at(outs, level, updates=ups)
        got = run(f)
        what = f"llvm (opt_level={level}) vs interp"
        for k, (o, a, b) in enumerate(zip(case.outputs, got[0][0], ref[0][0])):
            compare(a, b, o.err, f"{what}, output {k} ({o.name}), call 1")
        for p, a, b in zip(case.params, got[0][1], ref[0][1]):
            compare(a, b, new.get(p.id, (None, 0))[1] if p.id in updated else 0,
                    f"{what}, parameter {p.name} after call 1")
        for c in range(1, len(ref)):
            if ref[c] is None or got[c] is None:
                # the interpreter raised on this call: so does code that computes
                # every node whole; fused code computes only what an output
                # needs and may not meet the failing element (see check_value_case)
                if level == 0 or got[c] is None:
                    assert ref[c] is None and got[c] is None, \
                        f"{what}, call {c + 1}: {'only the interpreter' if got[c] else 'only compiled code'} raised"
                break
            if not bounded:
                break
            for k, (o, a, b) in enumerate(zip(case.outputs, got[c][0], ref[c][0])):
                close_after_steps(a, b, f"{what}, output {k}, call {c + 1}", o.err)
            for p, a, b in zip(case.params, got[c][1], ref[c][1]):
                close_after_steps(a, b, f"{what}, parameter {p.name} after call {c + 1}",
                                  new.get(p.id, (None, 0))[1])
    for p, v in zip(case.params, start):
        p.value = v


# ------------------------------------------------------------------- tests

@settings(max_examples=160)
@given(cases("value"))
def test_fuzz_compiled_matches_interpreter_and_numpy(case):
    check_value_case(case)


@settings(max_examples=40)
@given(cases("grad", max_ops=8))
def test_fuzz_gradients_match_finite_differences(case):
    check_grad_case(case)


@pytest.mark.slow
@settings(LONG, max_examples=4000)
@given(cases("value", max_ops=16))
def test_fuzz_long_compiled_matches_interpreter_and_numpy(case):
    check_value_case(case)


@pytest.mark.slow
@settings(LONG, max_examples=1000)
@given(cases("grad", max_ops=10))
def test_fuzz_long_gradients_match_finite_differences(case):
    check_grad_case(case)


@settings(max_examples=150)
@given(update_cases())
def test_fuzz_updates_match_interpreter(case):
    check_update_case(case)


@pytest.mark.slow
@settings(LONG, max_examples=2500)
@given(update_cases(max_ops=12))
def test_fuzz_long_updates_match_interpreter(case):
    check_update_case(case)


def test_generator_covers_every_public_op():
    """The generator reaches every public op function (else the fuzzing
    above has a blind spot)."""
    import fuzzgraph
    src = "".join(inspect.getsource(m) for m in (fuzzgraph, *fuzzgraph.MODULES))
    skip = {"grad", "compile", "CompiledFunction", "Graph", "Node", "OPS", "OpDef", "get", "make",
            "register", "as_node", "getitem", "placeholder", "parameter", "zeros", "ones"}
    missing = [n for n in gc.ops.__all__ + ["placeholder", "parameter"]
               if n not in skip and f"gc.{n}" not in src and f'"{n}"' not in src]
    assert not missing, f"ops the fuzzer never builds: {missing}"
    assert MAX_SIZE <= 64


# ------------------------------------------------------- special values, wide

UNARY = ["neg", "abs", "relu", "exp", "log", "sqrt", "tanh", "sigmoid"]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "pow", "greater", "less",
          "greater_equal", "less_equal", "equal", "not_equal"]
INEXACT = {"exp", "log", "tanh", "sigmoid", "pow", "softmax", "log_softmax", "logsumexp",
           "mean", "sum", "matmul"}
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.0, 0.5, -3.0, 1e30, -1e30, 1e-30]


@st.composite
def special_inputs(draw):
    dt = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    elems = st.sampled_from(SPECIAL)
    a = draw(hnp.arrays(dt, shape, elements=elems))
    b = draw(hnp.arrays(dt, shape[draw(st.integers(0, len(shape) - 1)):], elements=elems))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return a, b, axis


def _wide_graph(a, b, axis):
    """Every elementwise op, both ways round, every reduction, the softmax
    family, a matmul and casts, on two inputs full of special values."""
    x = gc.placeholder(a.shape, a.dtype, name="a")
    y = gc.placeholder(b.shape, b.dtype, name="b")
    outs = [(n, getattr(gc, n)(x)) for n in UNARY]
    outs += [(n, getattr(gc, n)(p, q)) for n in BINARY for p, q in ((x, y), (y, x))]
    outs += [("where", gc.where(x > y, x, y))]
    outs += [(n, getattr(gc, n)(x, axis)) for n in ("sum", "mean", "max", "min")]
    outs += [(n, getattr(gc, n)(x, axis)) for n in ("softmax", "log_softmax", "logsumexp")]
    outs += [("cast", gc.cast(x, t)) for t in ("int32", "int64", "bool",
                                                "float32" if a.dtype == np.float64 else "float64")]
    outs += [("matmul", gc.matmul(x, gc.transpose(x)))] if a.ndim <= 2 else []
    return [n for n, _ in outs], [o for _, o in outs]


@settings(max_examples=20)
@given(special_inputs())
def test_fuzz_special_values_propagate_as_numpy(inputs):
    """NaN, ±inf, ±0 and huge values through every op at once: compiled code
    gives numpy's NaN/inf exactly where numpy does (and bit-identical results
    for the correctly rounded ops)."""
    a, b, axis = inputs
    names, outs = _wide_graph(a, b, axis)
    want = gc.compile(outs, backend="interp")(a=a, b=b)
    for level in OPT_LEVELS:
        got = compile_at(outs, level)(a=a, b=b)
        for name, g, w in zip(names, got, want):
            what = f"{name} (opt_level={level}) on a={a!r}, b={b!r}, axis={axis}"
            assert g.shape == w.shape and g.dtype == w.dtype, what
            if g.dtype.kind != "f":
                np.testing.assert_array_equal(g, w, err_msg=what)
                continue
            eps = float(np.finfo(g.dtype).eps)
            fa = np.abs(np.where(np.isfinite(a), a, 0)).astype(np.float64)
            atol, keep = 0.0, np.ones(g.shape, bool)
            if name in ("sum", "mean", "matmul"):
                # sums cancel: their error is relative to the sum of magnitudes;
                # where that sum overflows, whether the result is inf, NaN or
                # finite depends on the order (numpy's BLAS may even accumulate
                # float32 in float64): not compared
                n = a.shape[axis] if name != "matmul" else a.shape[-1]
                mag = np.sum(fa, axis) if name != "matmul" else fa @ fa.T
                atol = 4 * n * eps * mag / (n if name == "mean" else 1)
                keep = mag < float(np.finfo(g.dtype).max) / 2
            g, w = g[keep], w[keep]
            atol = atol[keep] if np.ndim(atol) else atol
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg="NaN positions: " + what)
            np.testing.assert_array_equal(np.isposinf(g), np.isposinf(w), err_msg="+inf positions: " + what)
            np.testing.assert_array_equal(np.isneginf(g), np.isneginf(w), err_msg="-inf positions: " + what)
            if name in INEXACT:
                fin = np.isfinite(w)
                with np.errstate(all="ignore"):
                    err = np.abs(g.astype(np.float64) - w)
                ok = err <= 64 * eps * np.abs(w.astype(np.float64)) + atol + 1e-30
                assert np.all(ok | ~fin), f"{what}: got {g[~ok & fin]}, want {w[~ok & fin]}"
            else:
                np.testing.assert_array_equal(g, w, err_msg=what)


@pytest.mark.slow
@settings(LONG, max_examples=1500)
@given(special_inputs())
def test_fuzz_long_special_values_propagate_as_numpy(inputs):
    test_fuzz_special_values_propagate_as_numpy.hypothesis.inner_test(inputs)
