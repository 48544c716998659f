"""Extending graphc, way 3 with a host callback: the native kernel calls
back into numpy for one node. Oracles: numpy, the interpreter, finite
differences (through check_op)."""
from __future__ import annotations

import gc as pygc
import threading

import numpy as np
import pytest

import graphc as gc
from graphc.extend import callback as cb


def _rownorm_ref(x):
    return np.sqrt((x * x).sum(axis=-1))


def register_rownorm(registered, callback=True):
    f = gc.register_op("rownorm", reference=_rownorm_ref, callback=callback,
                       shape=lambda s: s[:-1],
                       vjp=lambda n, g: [gc.expand_dims(g / n, -1) * n.inputs[0]])
    registered.append("rownorm")
    return f


def test_callback_op_matches_numpy_on_both_backends(registered):
    rownorm = register_rownorm(registered)
    rng = np.random.default_rng(0)
    x = gc.placeholder((16, 8), "float64", name="x")
    y = gc.exp(rownorm(gc.tanh(x)) * 0.5) + 1.0
    xv = rng.standard_normal((16, 8))
    want = np.exp(_rownorm_ref(np.tanh(xv)) * 0.5) + 1.0
    for kw in (dict(), dict(opt_level=0), dict(opt_level=2), dict(backend="interp")):
        np.testing.assert_allclose(gc.compile(y, **kw)(x=xv), want, rtol=1e-13)
    # float32 and an empty batch
    x32 = gc.placeholder((0, 3), "float32", name="e")
    out = gc.compile(rownorm(x32))(e=np.zeros((0, 3), np.float32))
    assert out.shape == (0,) and out.dtype == np.float32


def test_callback_op_check_op_and_gradient(registered):
    register_rownorm(registered)
    rep = gc.check_op("rownorm", samples=[((3, 4),), ((2, 3, 5),), ((6,),)])
    assert rep.ok
    assert any(r == "vjp" for r, *_ in rep.lines) and any(r == "lowering (opt 3)"
                                                          for r, *_ in rep.lines)


def test_callback_is_opaque_and_the_report_says_so(registered):
    rownorm = register_rownorm(registered)
    x = gc.placeholder((32, 16), "float32", name="x")
    t = gc.tanh(x)
    r = rownorm(t)
    out = gc.exp(r) * 2.0 + 1.0
    f = gc.compile(out)
    k = f.kernels[f.kernel_of(r)]
    assert k.kind == "custom" and [o.id for o in k.outputs] == [f.current(r).id]
    assert k.members == {f.current(r).id}                 # nothing fused into it
    assert f.kernel_of(t) != f.kernel_of(r) != f.kernel_of(out)
    assert f.kernel_of(gc.exp(r)) == f.kernel_of(out)    # its neighbours still fuse
    assert "opaque" in f.why_not_fused(t, r)
    assert "opaque" in f.why_not_fused(r, out)
    rep = f.report()
    assert "custom" in rep and "(rownorm)" in rep
    assert "; opaque: host callback into Python (" in rep and "._rownorm_ref)" in rep
    assert "@\"graphc_host_callback\"" in f.llvm_ir


def test_callback_receives_views_without_copies(registered):
    seen = {}

    def spy(x, y):
        seen["x"] = (x.ctypes.data, x.flags.writeable, x.shape, x.dtype)
        seen["y"] = y.ctypes.data
        return x * 2.0 + y.sum()

    op = gc.register_op("spy", reference=lambda x, y: x * 2.0 + y.sum(), callback=spy,
                        shape=lambda a, b: a)
    registered.append("spy")
    x = gc.placeholder((5, 3), "float64", name="x")
    y = gc.placeholder((7,), "float64", name="y")
    f = gc.compile(op(x, y), inputs=[x, y])
    xv, yv = np.arange(15.0).reshape(5, 3), np.ones(7)
    np.testing.assert_allclose(f(xv, yv), xv * 2 + 7)
    assert seen["x"] == (xv.ctypes.data, False, (5, 3), np.float64)   # the caller's memory
    assert seen["y"] == yv.ctypes.data


def test_callback_exception_becomes_a_clear_error(registered):
    def picky(x):
        if (x < 0).any():
            raise ValueError(f"picky wants non-negative values, got {int((x < 0).sum())} negative")
        return np.sqrt(x)

    op = gc.register_op("picky_sqrt", reference=np.sqrt, callback=picky)
    registered.append("picky_sqrt")
    x = gc.placeholder((4,), "float64", name="x")
    node = op(x)
    line = node.source
    f = gc.compile(gc.exp(node) + 1.0)
    with pytest.raises(gc.RuntimeCheckError) as ei:
        f(x=np.array([1.0, -2.0, 3.0, -4.0]))
    msg = str(ei.value)
    assert msg.startswith(f"host callback of op 'picky_sqrt' (node {node.name}, built at {line}) "
                          "raised ValueError: picky wants non-negative values, got 2 negative")
    assert "in picky, " in msg and __file__ in msg and line.startswith(__file__)
    # the function still works afterwards
    np.testing.assert_allclose(f(x=np.array([1.0, 4, 9, 16])), np.exp([1.0, 2, 3, 4]) + 1)
    with pytest.raises(gc.RuntimeCheckError, match="got 1 negative"):
        f(x=np.array([1.0, 4, -9, 16]))


def test_callback_bad_results_are_clear_errors(registered):
    x = gc.placeholder((3,), "float64", name="x")
    cases = {
        "wrong_shape": (lambda a: a[:2], r"returned shape \(2,\), but the op's shape rule says \(3,\)"),
        "wrong_type": (lambda a: np.array(["a", "b", "c"]), r"returned dtype <U1, which does not "
                                                           r"convert to the op's dtype float64"),
        "writes_input": (lambda a: a.__setitem__(0, 1.0), r"raised ValueError: assignment "
                                                          r"destination is read-only"),
    }
    for name, (fn, pattern) in cases.items():
        op = gc.register_op(name, reference=lambda a: a, callback=fn)
        registered.append(name)
        with pytest.raises(gc.RuntimeCheckError, match=pattern):
            gc.compile(op(x) * 2.0)(x=np.ones(3))


def test_callback_with_integer_inputs_and_immediate_constants(registered):
    # "anything else": a histogram of integer labels (int output, no gradient)
    hist = gc.register_op("histogram", reference=lambda y, k: np.bincount(y, minlength=k),
                          callback=True, shape=lambda s, k: (k,), dtype="int64", attrs={"k": 0})
    registered.append("histogram")
    scale = gc.register_op("scale_by", reference=lambda x, s: x * s, callback=True,
                           shape=lambda a, b: a)
    registered.append("scale_by")
    y = gc.placeholder((10,), "int64", name="y")
    x = gc.placeholder((4,), "float32", name="x")
    h = hist(y, k=5)
    s = scale(x, np.float32(3.0))          # a one-element constant: an immediate in kernels
    yv = np.array([0, 1, 1, 4, 4, 4, 2, 0, 0, 0])
    xv = np.arange(4, dtype=np.float32)
    for kw in (dict(), dict(opt_level=0), dict(backend="interp")):
        hv, sv = gc.compile([h, s], **kw)(y=yv, x=xv)
        np.testing.assert_array_equal(hv, np.bincount(yv, minlength=5))
        np.testing.assert_array_equal(sv, xv * 3)
        assert hv.dtype == np.int64 and sv.dtype == np.float32


def test_callback_from_several_threads(registered):
    rownorm = register_rownorm(registered)
    x = gc.placeholder((64, 32), "float64", name="x")
    f = gc.compile(rownorm(x) * 2.0)
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((64, 32)) for _ in range(8)]
    results = [None] * 8

    def work(k):
        for _ in range(20):
            results[k] = f(x=inputs[k])
    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for xv, r in zip(inputs, results):
        np.testing.assert_allclose(r, 2 * _rownorm_ref(xv), rtol=1e-13)


def test_callback_code_reused_by_the_compile_cache_still_calls_back(registered):
    def checked(x):
        if np.isnan(x).any():
            raise FloatingPointError("NaN input")
        return _rownorm_ref(x)
    rownorm = register_rownorm(registered, callback=checked)

    def build():
        x = gc.placeholder((5, 4), "float64", name="x")
        return gc.compile(rownorm(x) + 1.0)
    f = build()
    np.testing.assert_allclose(f(x=np.ones((5, 4))), 3.0)
    del f
    pygc.collect()
    g = build()                        # a structurally equal graph: the same machine code
    assert g.cache_hit == "memory"
    np.testing.assert_allclose(g(x=np.full((5, 4), 2.0)), 5.0)
    bad = np.ones((5, 4))
    bad[2, 1] = np.nan
    with pytest.raises(gc.RuntimeCheckError, match="raised FloatingPointError: NaN input"):
        g(x=bad)
    assert cb._SITES            # sites outlive the first function (the cache may reuse them)


def test_a_callback_runs_on_the_calling_thread_in_a_threaded_compile(registered):
    # the pool runs a threaded graph's tasks on any thread; a host callback
    # needs the caller's (its frame: exceptions, nested calls), so a graph
    # with one is planned for one thread
    import threading
    seen = []

    def spy(x):
        seen.append(threading.get_ident())
        return x * 2.0
    op = gc.register_op("thread_spy", reference=lambda x: x * 2.0, callback=spy)
    registered.append("thread_spy")
    x = gc.placeholder((512, 512), "float32", name="x")
    big = gc.exp(x) * 3.0                    # split across threads on its own
    f = gc.compile([op(gc.sum(big, axis=1)), big], threads=2, cache=False)
    assert f.plan.threads == 1 and "graphc_rt_parallel" not in f.llvm_ir
    X = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    got, b = f(x=X)
    np.testing.assert_allclose(got, 2 * (3 * np.exp(X.astype(np.float64))).sum(1), rtol=1e-4)
    assert seen == [threading.get_ident()]
