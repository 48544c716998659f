"""Regression tests: one small, named test per bug found by the fuzzing,
hostile-input, thread and memory suites (docs/reliability.md). Each says
what was wrong; native paths that could crash run in a subprocess."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import graphc as gc

OPT_LEVELS = [0, 1, 2, 3] if "opt_level" in inspect.signature(gc.compile).parameters else [None]


def run(out, backend="llvm", **feeds):
    """Compile ``out`` and call it with the entries of ``feeds`` it takes."""
    f = gc.compile(out, backend=backend)
    return f(**{p.name: feeds[p.name] for p in f.graph.placeholders})


def test_engine_does_not_free_the_shared_target_machine(isolated):
    """MCJIT takes ownership of the target machine it is given and deletes it
    with the engine. jit.py handed every engine the one shared target
    machine, so dropping a compiled function left a dangling pointer behind
    (hidden only because a typo re-created the target machine on every
    call). Compile/drop cycles, then assembly from the shared machine, with
    freed memory poisoned (MALLOC_PERTURB_)."""
    r = isolated("""
        import gc as pygc
        import numpy as np
        import graphc as gc
        from graphc.backend.llvm import jit
        for i in range(12):
            x = gc.placeholder((3,), "float64", name="x")
            f = gc.compile(gc.exp(x) * float(i))
            assert np.allclose(f(x=np.zeros(3)), float(i))
            if i % 3 == 0:
                assert "ret" in f.asm
            del f
            pygc.collect()
        assert jit.target_machine(3) is jit.target_machine(3)
        print("ok")
    """, env={"MALLOC_PERTURB_": "165"})
    assert r.stdout.strip().endswith("ok")


def test_target_machine_is_created_once():
    from graphc.backend.llvm import jit
    x = gc.placeholder((2,), "float64", name="x")
    tm = jit.target_machine(3)
    gc.compile(x + 1.0)(x=np.ones(2))
    assert jit.target_machine(3) is tm


def test_softmax_family_over_an_empty_axis():
    """softmax/log_softmax/logsumexp shift by the max over the axis; for an
    empty axis that max does not exist and building the graph raised
    ShapeError ("zero-size axis has no maximum"). numpy's answer: empty
    softmax rows, logsumexp = log(0) = -inf.
    (Then, with fusion, the row kernel's cache for ``exp(x - max)`` asked for
    a zero-byte buffer that was never allocated: KeyError in emit.py.)"""
    x = gc.placeholder((3, 0), "float32", name="x")
    xv = np.zeros((3, 0), np.float32)
    for out, want in [(gc.softmax(x), np.zeros((3, 0), np.float32)),
                      (gc.log_softmax(x, 1), np.zeros((3, 0), np.float32)),
                      (gc.logsumexp(x, 1), np.full(3, -np.inf, np.float32)),
                      (gc.logsumexp(x, None, True), np.full((1, 1), -np.inf, np.float32))]:
        for kw in [{"backend": "interp"}] + [{"opt_level": k} for k in OPT_LEVELS]:
            got = gc.compile(out, **kw)(x=xv)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def test_unbroadcast_keeps_the_dtype():
    """unbroadcast of an int32 (or bool) value returned int64 when it summed
    and the input's own dtype when there was nothing to sum: the result dtype
    depended on the shapes. It is the adjoint of broadcast_to and keeps the
    dtype (numpy: ``np.sum(g, axes, dtype=g.dtype)``)."""
    g = np.array([[2**31 - 1, 1], [5, -7]], np.int32)
    x = gc.placeholder((2, 2), "int32", name="x")
    b = gc.placeholder((2, 3), "bool", name="b")
    bv = np.array([[True, False, False], [False, False, False]])
    for out, want in [(gc.unbroadcast(x, ()), np.sum(g, dtype=np.int32)),
                      (gc.unbroadcast(x, (1, 2)), np.sum(g, 0, keepdims=True, dtype=np.int32)),
                      (gc.unbroadcast(x, (2, 2)), g),
                      (gc.unbroadcast(b, (3,)), np.sum(bv, 0, dtype=bool))]:
        assert out.dtype == want.dtype
        for backend in ("llvm", "interp"):
            np.testing.assert_array_equal(run(out, backend, x=g, b=bv), want)


def test_one_hot_depth_zero_is_rejected_at_construction():
    """one_hot(labels, 0) makes every label out of range, but its output is
    empty, so the compiled code had no element at which to check and
    returned quietly while the interpreter raised. Depth 0 (and
    cross-entropy over zero classes) is now refused when the graph is built."""
    lab = gc.placeholder((), "int64", name="lab")
    with pytest.raises(gc.ShapeError, match="one_hot: depth must be a positive int"):
        gc.one_hot(lab, 0)
    logits = gc.placeholder((2, 0), "float64", name="logits")
    with pytest.raises(gc.ShapeError, match="softmax_cross_entropy.*class axis"):
        gc.softmax_cross_entropy(logits, gc.placeholder((2,), "int64", name="y"))
    f = gc.compile(gc.one_hot(lab, 1))
    with pytest.raises(gc.RuntimeCheckError, match="out of range"):
        f(lab=np.array(1))


def test_empty_negative_step_slice_in_the_interpreter():
    """``x[-2:-3:-1]`` on an axis of size 1 is empty; slice.indices gives
    start -1 ("before index 0"), which the interpreter's reference passed to
    numpy, where -1 means the last element: it returned one element where
    the node's shape says none. Same for the gradient (unslice)."""
    x = gc.placeholder((3, 1), "float64", name="x")
    xv = np.arange(3.0).reshape(3, 1)
    for key in [(slice(-1, -9), slice(-2, -3, -1)), (slice(None), slice(-2, -3, -1)),
                (slice(0, 2), slice(-5, None, -1))]:
        y = x[key]
        assert y.shape == xv[key].shape
        for backend in ("llvm", "interp"):
            np.testing.assert_array_equal(gc.compile(y, backend=backend)(x=xv), xv[key])
        (g,) = gc.grad(gc.sum(y * 2.0), [x])
        want = np.zeros_like(xv)
        want[key] = 2.0
        for backend in ("llvm", "interp"):
            np.testing.assert_array_equal(run(g, backend, x=xv), want)


def test_relu_of_negative_zero_is_positive_zero():
    """relu(-0.0) was -0.0 in compiled code (``x < 0 ? 0 : x``) and +0.0 in
    numpy (``np.maximum(x, 0)``), so ``1 / relu(x)`` was -inf instead of inf."""
    x = gc.placeholder((4,), "float32", name="x")
    xv = np.array([-0.0, 0.0, -1.0, np.nan], np.float32)
    want = np.maximum(xv, np.float32(0))
    for backend in ("llvm", "interp"):
        got = run(gc.relu(x), backend, x=xv)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
        np.testing.assert_array_equal(got, want)
        with np.errstate(divide="ignore"):
            np.testing.assert_array_equal(run(1.0 / gc.relu(x), backend, x=xv)[:3], 1.0 / want[:3])


def test_transpose_axis_out_of_range_is_an_error():
    """transpose(x, (0, 5)) on a 2-d x wrapped 5 to 1 (``a % ndim``) and
    returned x unchanged; numpy raises. Shapes and axes given as floats or
    strings were truncated by int() or raised an unnamed ValueError."""
    x = gc.placeholder((2, 3), "float64", name="x")
    with pytest.raises(gc.ShapeError, match="transpose: axis 5 is out of range"):
        gc.transpose(x, (0, 5))
    with pytest.raises(gc.ShapeError, match="transpose: axis -3 is out of range"):
        gc.transpose(x, (-3, 0))
    np.testing.assert_array_equal(run(gc.transpose(x, (-1, 0)), x=np.ones((2, 3))), np.ones((3, 2)))
    with pytest.raises(gc.ShapeError, match="transpose: axes must be a tuple of ints"):
        gc.transpose(x, "ab")
    for bad in [(2.5, 2), "ab", None, (True, 3)]:
        with pytest.raises(gc.ShapeError, match="placeholder: shape must be a tuple of ints"):
            gc.placeholder(bad)
        with pytest.raises(gc.ShapeError, match="reshape: shape must be a tuple of ints"):
            gc.reshape(x, bad)


def test_op_results_too_large_are_refused_at_construction():
    """Only placeholders had a size limit: broadcast_to, full, one_hot (any
    op) could build a node of 2**80 bytes, whose sizes then overflowed the
    64-bit index arithmetic of the kernels and the buffer allocation."""
    x = gc.placeholder((2, 3), "float64", name="x")
    lab = gc.placeholder((2**30,), "int64", name="lab")
    for build, op in [(lambda: gc.broadcast_to(x, (2**40, 2**40, 2, 3)), "broadcast_to"),
                      (lambda: gc.full((2**62, 4), 1.0), "broadcast_to"),
                      (lambda: gc.one_hot(lab, 2**40), "one_hot"),
                      (lambda: gc.placeholder((2**23, 1), name="a") @ gc.full((1, 2**40), 1.0, "float32"),
                       "matmul")]:
        with pytest.raises(gc.ShapeError, match=f"{op}: shape .* needs .* bytes, more than graphc allows"):
            build()


def test_float_to_int_cast_saturates_in_the_interpreter():
    """The interpreter's float -> int cast clipped to the int's max *in the
    float's dtype*: 2**31 - 1 is not a float32 (it rounds to 2**31), nor is
    2**63 - 1 a float64, so inf and large values overflowed to the minimum
    (-2147483648) where compiled code saturates to the maximum."""
    vals = [np.inf, -np.inf, np.nan, 3e9, -3e9, 2.0**31, 2.0**31 - 256, -2.0**31, 1e19, -1e19,
            2.0**63, -2.0**63, 2.0**62, -7.9, 7.9, -0.0]
    for fdt in ("float32", "float64"):
        xv = np.array(vals, fdt)
        x = gc.placeholder(xv.shape, fdt, name="x")
        for idt in ("int32", "int64"):
            info = np.iinfo(idt)
            want = np.array([info.max, info.min, 0] + [
                info.max if v >= 2.0 ** (info.bits - 1) else info.min if v < -2.0 ** (info.bits - 1)
                else int(np.trunc(v)) for v in xv.astype(np.float64)[3:]], idt)
            for backend in ("llvm", "interp"):
                np.testing.assert_array_equal(run(gc.cast(x, idt), backend, x=xv), want,
                                              err_msg=f"{fdt} -> {idt} ({backend})")


def test_out_of_range_integers_are_refused_not_wrapped():
    """A Python list given for an int32 input, or an int64 array assigned to an
    int32 parameter, was converted with astype: 2**40 silently became 0.
    Values that do not fit (or floats that overflow to inf) are now an error."""
    q = gc.placeholder((2,), "int32", name="q")
    f = gc.compile(q * 2)
    with pytest.raises(gc.InputTypeError, match="values do not fit in int32"):
        f(q=[2**40, 2])
    np.testing.assert_array_equal(f(q=[2**30, -2]), np.array([2**31, -4], np.int64).astype(np.int32))
    h = gc.placeholder((1,), "float32", name="h")
    with pytest.raises(gc.InputTypeError, match="values overflow float32"):
        gc.compile(h + 1)(h=[1e300])
    w = gc.parameter(np.zeros(2, np.int32), name="w")
    with pytest.raises(gc.DTypeError, match="values do not fit in int32"):
        w.value = np.array([2**40, 1])
    w.value = np.array([7, -7])                 # int64 values that fit are fine
    assert w.value.dtype == np.int32 and list(w.value) == [7, -7]


def test_ndarray_subclasses_are_plain_arrays_and_masked_arrays_refused():
    """An np.matrix input reached the interpreter as a matrix, whose sum()
    and * differ from ndarray's (TypeError about keepdims); a masked array's
    mask was silently ignored. Subclasses are now viewed as plain arrays,
    masked arrays refused."""
    x = gc.placeholder((2, 3), "float64", name="x")
    m = np.asmatrix(np.arange(6.0).reshape(2, 3))
    for backend in ("llvm", "interp"):
        s, p = gc.compile([gc.sum(x, 0), x * x], backend=backend)(x=m)
        assert type(s) is np.ndarray and type(p) is np.ndarray
        np.testing.assert_array_equal(s, [3.0, 5.0, 7.0])
        np.testing.assert_array_equal(p, np.arange(6.0).reshape(2, 3) ** 2)
        with pytest.raises(gc.InputTypeError, match="masked array"):
            gc.compile(x * 2.0, backend=backend)(x=np.ma.masked_array(np.ones((2, 3)), mask=True))


def test_min_of_bool_and_min_errors_name_min():
    """gc.min is -max(-x): on bool it raised "neg: bool operand" (numpy's
    min of bool is a logical and), and its axis errors named max."""
    b = gc.placeholder((2, 3), "bool", name="b")
    v = np.array([[True, False, True], [True, True, True]])
    for backend in ("llvm", "interp"):
        got = gc.compile([gc.min(b), gc.min(b, 1), gc.min(b, 0, True)], backend=backend)(b=v)
        for g, w in zip(got, [np.min(v), np.min(v, 1), np.min(v, 0, keepdims=True)]):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
    with pytest.raises(gc.ShapeError, match="min: axis 2 is out of range"):
        gc.min(b, 2)
    with pytest.raises(gc.ShapeError, match="min: zero-size axis"):
        gc.min(gc.placeholder((0, 2), name="e"), 0)


def test_pass_manager_is_freed_after_each_compile(isolated):
    """llvmlite's ModulePassManager never frees its native object (in its MRO
    ObjectRef's no-op _dispose hides NewPassManager's), so every O3 pipeline
    — its passes and their caches — leaked: ~200 KB per compile, 100 MB per
    500 graphs. jit.py now frees it. 120 distinct compiles must not grow the
    C heap by more than 4 MB (it grew ~25 MB)."""
    r = isolated("""
        import ctypes, gc as pygc
        import numpy as np
        import graphc as gc
        class MI(ctypes.Structure):
            _fields_ = [(k, ctypes.c_size_t) for k in ("arena", "ordblks", "smblks", "hblks",
                        "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MI
        def once(i):
            x = gc.placeholder((4, 5), "float64", name="x")
            f = gc.compile(gc.sum(gc.tanh(x * float(i) + 1.0) @ gc.constant(np.ones((5, 3)) * i), 0))
            f(x=np.ones((4, 5)))
        for i in range(20):
            once(i)
        pygc.collect()
        before = libc.mallinfo2().uordblks
        for i in range(120):
            once(100 + i)
        pygc.collect()
        print((libc.mallinfo2().uordblks - before) / 2**20)
    """)
    grew = float(r.stdout.split()[-1])
    assert grew < 4.0, f"the C heap grew by {grew:.1f} MB over 120 compiles"


def test_power_one_half_is_sqrt_as_in_numpy():
    """numpy computes ``x ** 0.5`` as sqrt(x) when the exponent has one
    element: (-inf) ** 0.5 is nan and (-0.0) ** 0.5 is -0.0; with a larger
    exponent array it calls pow (inf, +0.0). The interpreter inherited that
    dispatch and compiled code always called pow. Both now follow numpy's
    rule, for constant and run-time exponents."""
    v = np.array([-np.inf, -0.0, 0.0, -1.0, 4.0, np.inf, np.nan])
    with np.errstate(invalid="ignore"):
        want = v ** 0.5
    x = gc.placeholder(v.shape, "float64", name="x")
    e = gc.placeholder((), "float64", name="e")
    for backend in ("llvm", "interp"):
        with np.errstate(invalid="ignore"):
            want_pow = np.power(v, np.full(7, 0.5))        # numpy's pow path
        for out, feeds, w in [(x ** 0.5, {"x": v}, want), (x ** e, {"x": v, "e": np.array(0.5)}, want),
                              (gc.pow(x, gc.constant(np.full(7, 0.5))), {"x": v}, want_pow)]:
            got = gc.compile(out, backend=backend)(**feeds)
            np.testing.assert_array_equal(got, w)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(w))
        got = gc.compile(x ** e, backend=backend)(x=v, e=np.array(2.0))   # other exponents: pow
        np.testing.assert_array_equal(got, v ** 2.0)


def test_in_place_only_between_elements_of_one_size():
    """An elementwise float64 output was written in place of a dying bool
    input of the same shape (both 64-byte aligned buffers): storing element 0
    as 8 bytes overwrote bools 1-7 before the loop read them. Found by the
    long gradient fuzzing (the gradient of ``abs(where(p > 0, exp(q), r))``
    beside another gradient came out wrong at opt_level 3)."""
    p = gc.placeholder((2, 1), "float64", name="p")
    q = gc.placeholder((1, 1, 1), "float64", name="q")
    r = gc.placeholder((1,), "float64", name="r")
    u = gc.placeholder((1, 1), "float64", name="u")
    m = p > 0.0
    w = gc.where(m, gc.exp(0.0 + q), r)
    rng = np.random.default_rng(0)
    loss = None
    for o in [gc.abs(w), gc.where(m, 0.0, u), gc.where(m, 0.0, 0.0)]:
        term = gc.sum(o * gc.constant(rng.uniform(0.5, 1.5, o.shape)))
        loss = term if loss is None else loss + term
    grads = gc.grad(loss, [q, r])
    feeds = dict(p=np.array([[-0.004], [-0.88]]), q=np.array([[[0.41]]]), r=np.array([-0.42]))
    want = gc.compile(grads, backend="interp")(**feeds)
    for level in range(4):
        f = gc.compile(grads, opt_level=level, cache=False)
        for got, w_ in zip(f(**feeds), want):
            np.testing.assert_allclose(got, w_, rtol=1e-12)
        for out, inp in f._memory.inplace if f._memory is not None else []:
            assert out.dtype.itemsize == inp.dtype.itemsize, (out, inp)


def test_integer_power_of_an_empty_array_is_not_an_error():
    """The interpreter raised 'integers to negative integer powers' for an
    empty base (numpy, and compiled code, compute nothing and return an empty
    array). Found by the long fuzz run."""
    v = gc.placeholder((0,), "int64", name="v")
    w = gc.placeholder((2,), "int64", name="w")
    for backend in ("interp", "llvm"):
        assert gc.compile(gc.pow(v, -1), backend=backend)(v=np.array([], np.int64)).shape == (0,)
        with pytest.raises(gc.RuntimeCheckError, match="negative integer powers"):
            gc.compile(gc.pow(w, -1), backend=backend)(w=np.array([1, 2]))


def test_fused_code_checks_the_elements_it_computes():
    """``take(2 ** k, [])`` with a negative integer k: the interpreter computes
    ``2 ** k`` whole and raises; fused code computes only the elements the
    take reads (none) and returns the (right) empty result. At opt_level 0
    every node is computed whole, as in the interpreter."""
    k = gc.placeholder((1, 1, 1), "int64", name="k")
    i = gc.placeholder((0,), "int64", name="i")
    out = gc.take(gc.pow(2, k), i, 0)
    feeds = dict(k=np.array([[[-6]]]), i=np.array([], np.int64))
    for f in (gc.compile(out, backend="interp"), gc.compile(out, opt_level=0, cache=False)):
        with pytest.raises(gc.RuntimeCheckError):
            f(**feeds)
    got = gc.compile(out, opt_level=2, cache=False)(**feeds)
    assert got.shape == (0, 1, 1)


def test_scatter_add_checks_indices_even_with_no_updates():
    """With empty updates the scatter kernel returned at once and never
    checked its indices; numpy (and the interpreter) reject them. Found by the
    long fuzz run."""
    u = gc.placeholder((2, 2, 0), "float64", name="u")
    i = gc.placeholder((2,), "int64", name="i")
    out = gc.scatter_add(gc.softmax(u, 0), i, 1, 0)
    fs = [gc.compile(out, backend="interp")] + [gc.compile(out, opt_level=lv, cache=False)
                                                for lv in range(4)]
    for f in fs:
        with pytest.raises(gc.RuntimeCheckError, match="out of range"):
            f(u=np.zeros((2, 2, 0)), i=np.array([-1, 0]))
        assert f(u=np.zeros((2, 2, 0)), i=np.array([0, 0])).shape == (1, 2, 0)


def test_softmax_of_an_empty_vector_fuses():
    """At opt_level 3 the sum of an empty softmax became an accumulation of
    the kernel that divides by it ("fusion bug: kernel #0 reads its own
    accumulation"). Found by the long fuzz run."""
    x = gc.placeholder((0,), "float64", name="x")
    out = gc.add(2, gc.reshape(gc.softmax(x, 0), (0,)))
    for level in range(4):
        assert gc.compile(out, opt_level=level, cache=False)(x=np.zeros(0)).shape == (0,)


def test_sum_of_an_empty_broadcast_is_positive_zero():
    """The rule sum(broadcast_to(x, S)) -> x * count gave x * 0: -0.0 for a
    negative x and NaN for an infinite one, where numpy's empty sum is 0.0.
    Found by the long fuzz run."""
    for fill in (-4.0, np.inf, np.nan):
        out = gc.sum(gc.full((1, 1, 0), fill, "float64"), None, True)
        for level in range(4):
            got = gc.compile(out, opt_level=level, cache=False)()
            assert got.shape == (1, 1, 1) and got[0, 0, 0] == 0.0 and not np.signbit(got[0, 0, 0])


def test_adding_or_subtracting_a_zero_keeps_the_sign_of_zero():
    """``x + 0.0`` is +0.0 at x = -0.0, and ``0.0 - x`` is +0.0 at x = +0.0:
    simplify rewrote both (to x and to -x) and changed the sign of a zero
    result (found by the long update fuzz, issue 10). Only the zero of the
    exact sign is an identity, unless fast_math."""
    x = gc.placeholder((2,), "float64", name="x")
    a = np.array([0.0, -0.0])
    for expr, ref in ((x + 0.0, a + 0.0), (0.0 + x, 0.0 + a), (0.0 - x, 0.0 - a),
                      (x - 0.0, a - 0.0), (x + (-0.0), a + (-0.0)), (-0.0 - x, -0.0 - a)):
        for level in (0, 1, 2, 3):
            got = gc.compile(expr, opt_level=level, cache=False)(x=a)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(ref))
    f = gc.compile(x + 0.0, fast_math=True, cache=False)
    assert f.graph.outputs[0].op == "placeholder"


def test_sum_over_no_axes_is_numpys():
    """numpy's sum starts from +0.0: the sum of a 0-d -0.0 (or over
    ``axis=()``) is +0.0, and graphc returned x itself (found by the long
    update fuzz, issue 10)."""
    x = gc.placeholder((), "float32", name="x")
    y = gc.placeholder((2,), "float64", name="y")
    a, b = np.array(-0.0, np.float32), np.array([-0.0, 1.0])
    for backend, level in (("interp", 3), ("llvm", 0), ("llvm", 3)):
        f = gc.compile([gc.sum(x, None, True), gc.sum(y, ()), gc.mean(x)], backend=backend,
                       opt_level=level, cache=False)
        for got, ref in zip(f(x=a, y=b), (np.sum(a, None, keepdims=True), np.sum(b, axis=()),
                                           np.mean(a))):
            np.testing.assert_array_equal(np.signbit(got), np.signbit(ref))


@pytest.mark.parametrize("opt_level", [0, 1, 2, 3])
def test_sum_over_unit_or_broadcast_axes_keeps_the_sign_of_zero(opt_level):
    # simplify rewrote sum over extent-1 axes as a reshape and sum over
    # broadcast axes as x * count: both gave -0.0 where the sum (from +0.0) is +0.0
    from graphc.ops.movement import unbroadcast
    x = gc.placeholder((1, 1, 1), "float64", name="x")
    a = np.full((1, 1, 1), -0.0)
    got = gc.compile(unbroadcast(x, (1, 1)), opt_level=opt_level, cache=False)(x=a)
    want = a.sum(axis=0)
    assert np.array_equal(np.signbit(got), np.signbit(want)), (got, want)
    v = gc.placeholder((3,), "float32", name="v")
    b = np.array([-0.0, 1.0, -2.0], np.float32)
    got = gc.compile(gc.sum(gc.broadcast_to(v, (4, 3)), axis=0), opt_level=opt_level,
                     cache=False)(v=b)
    want = np.broadcast_to(b, (4, 3)).sum(axis=0)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


def _reads_other_rows():
    """Row reductions whose consumer, itself a row reduction over the same
    domain, reads them at every row (the column index of its own row)."""
    n = 6
    x = gc.placeholder((n, n), "float64", name="x")
    r = gc.sum(x * x, axis=-1)
    x3 = gc.placeholder((3, n, n), "float64", name="x")
    r3 = gc.sum(x3, axis=-1)
    return {
        "sum": (x, gc.sum(gc.reshape(r, (1, n)) * x, axis=-1)),
        "max": (x, gc.max(x - gc.reshape(r, (1, n)), axis=-1)),
        "this-and-other-rows": (x, gc.sum(x * gc.reshape(r, (n, 1)) + gc.reshape(r, (1, n)),
                                          axis=-1)),
        "3-d": (x3, gc.sum(gc.reshape(r3, (3, 1, n)) * x3, axis=-1)),
    }


@pytest.mark.parametrize("case", list(_reads_other_rows()))
@pytest.mark.parametrize("threads", [1, 2])
def test_a_row_reduction_reading_another_at_every_row_is_not_fused_into_its_rows(case, threads):
    # fusion's horizontal row step put y[a] = sum_b r[b] * x[a, b] into the
    # row loop of r = sum(x * x, -1): row a read r[b] for rows b not yet
    # reduced (wrong values at opt_level >= 2; found while adding gc.topk)
    x, y = _reads_other_rows()[case]
    xv = np.random.default_rng(0).standard_normal(x.shape)
    want = gc.compile(y, [x], backend="interp")(xv)
    for level in (2, 3):
        got = gc.compile(y, [x], opt_level=level, threads=threads, cache=False)(xv)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("opt_level", [2, 3])
def test_a_transpose_of_a_row_kernel_value_is_not_merged_into_its_rows(opt_level):
    # d = w - sum(w, 1, keepdims) is computed in a row loop; t = d.T merged
    # into that kernel evaluated d[j, i] inline, reading the row sum of rows
    # j not reduced yet (vertical merge, and a second row reduction of d
    # joining: found by tests/test_fusion_fuzz.py's long run)
    w = gc.placeholder((4, 4), "float64", name="w")
    d = w - gc.sum(w, axis=1, keepdims=True)
    t, r = gc.transpose(d), gc.sum(d, axis=1)
    wv = np.array([[1, 0, 0, 2], [-1, 2, 1, -2], [-1, 2, 0, -2], [1, 1, 2, -2]], np.float64)
    for outs in ([t, d], [t, r, d], [t, r, r, d]):
        want = gc.compile(outs, [w], backend="interp")(wv)
        got = gc.compile(outs, [w], opt_level=opt_level, cache=False)(wv)
        for g, ref in zip(got, want):
            np.testing.assert_array_equal(g, ref)


def test_in_place_buffer_reused_while_still_read():
    """A GRU unrolled over 5 steps, its inputs' projection reversed per entry by a
    take at linear indices, states masked by a length (found while adding the ONNX
    GRU converter): PlanError at opt_level 3 (an in-place buffer reused while a
    later kernel read it, said the verifier); it compiles and matches since the
    fusion fuzz's fixes of the same stop (the verifier's write order, fusion's row
    checks)."""
    T, Bt, In, Hs = 5, 3, 4, 6
    r = np.random.default_rng(0)
    X = gc.placeholder((T, Bt, In), "float32", name="X")
    L = gc.placeholder((Bt,), "int32", name="L")
    W = gc.constant(r.standard_normal((In, 3 * Hs)).astype(np.float32))
    R = gc.constant(r.standard_normal((Hs, 3 * Hs)).astype(np.float32))
    ln = gc.reshape(gc.cast(L, "int64"), (Bt, 1))
    t_ = gc.constant(np.arange(T, dtype=np.int64).reshape(1, T))
    src = gc.where(t_ < ln, ln - 1 - t_, t_) + gc.constant(np.arange(Bt).reshape(Bt, 1) * T)

    def rev(v):                 # reverse each entry (axis 1) within its length along axis 0
        flat = gc.reshape(gc.transpose(v, (1, 0, 2)), (Bt * T, v.shape[2]))
        return gc.transpose(gc.take(flat, src, 0), (1, 0, 2))
    xw = rev(X @ W)
    h = zeros = gc.constant(np.zeros((Bt, Hs), np.float32))
    out = []
    for t in range(T):
        z = gc.sigmoid(xw[t][:, :Hs] + h @ R[:, :Hs])
        rr = gc.sigmoid(xw[t][:, Hs:2 * Hs] + h @ R[:, Hs:2 * Hs])
        hh = gc.tanh(xw[t][:, 2 * Hs:] + (rr * h) @ R[:, 2 * Hs:])
        new = (1.0 - z) * hh + z * h
        ok = gc.constant(np.int64(t)) < ln
        h = gc.where(ok, new, h)
        out.append(gc.where(ok, new, zeros))
    y = rev(gc.concatenate([gc.expand_dims(o, 0) for o in out], 0))
    xv = r.standard_normal((T, Bt, In)).astype(np.float32)
    lv = np.array([5, 2, 3], np.int32)
    want = gc.compile([y, h], [X, L], backend="interp")(xv, lv)
    got = gc.compile([y, h], [X, L], cache=False)(xv, lv)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gradient_of_values_picked_by_rank():
    """rank[i] = #{j: x[j] < x[i]}; v[r] = sum_i where(rank[i] == r, x[i], 0): d(w . v)/dx
    is w[rank]. Found while adding gc.topk: wrong at opt_level 3 (the axis-0 sum of the
    picks was accumulated in rank's row loop, reading ranks of rows not reduced yet),
    fixed with the fusion fuzz's bug A (fusion_merge._rows_stay_current)."""
    n = 5
    x = gc.placeholder((n,), "float64", name="x")
    xi, xj = gc.reshape(x, (n, 1)), gc.reshape(x, (1, n))
    rank = gc.sum(xj < xi, axis=-1)
    pick = gc.reshape(rank, (1, n)) == gc.constant(np.arange(n).reshape(n, 1))
    v = gc.sum(gc.where(pick, xj, 0.0), axis=-1)
    w = np.array([0.3, -1.2, 0.7, 2.0, -0.4])
    (g,) = gc.grad(gc.sum(v * gc.constant(w)), [x])
    xv = np.array([0.1, -0.8, 0.5, 1.1, -0.3])
    want = w[np.argsort(np.argsort(xv))]
    np.testing.assert_allclose(gc.compile(g, [x], backend="interp")(xv), want)
    np.testing.assert_allclose(gc.compile(g, [x], opt_level=3, cache=False)(xv), want)


def _row_sum_read_at_other_rows():
    """Steps that add work to the row kernel of r = sum(x, -1) other than by
    merging two kernels, each reading r at a column index."""
    x = gc.placeholder((4, 4), "float64", name="x")
    w = gc.placeholder((4, 4), "float64", name="w")
    r = gc.sum(x, axis=-1)
    d = x - gc.reshape(r, (4, 1))           # read at the current row
    return {
        # an accumulation: y[b] = sum_a x[a, b] + r[b]
        "accumulation": (x, w, [gc.sum(x + gc.reshape(r, (1, 4)), axis=0)]),
        "accumulation-and-row": (x, w, [gc.sum(x + gc.reshape(r, (1, 4)), axis=-1),
                                        gc.sum(x + gc.reshape(r, (1, 4)), axis=0)]),
        # a mask sunk into the producer of d: (d.T > 0)[a, b] reads r[b]
        "sunk-mask": (x, w, [gc.where(gc.transpose(d) > 0, w @ w, 0.0)]),
    }


@pytest.mark.parametrize("case", list(_row_sum_read_at_other_rows()))
def test_a_row_sum_read_at_other_rows_is_not_added_to_its_row_kernel(case):
    # fusion's accumulation step, and its sinking of a cheap consumer into its
    # producer, added a value reading r = sum(x, -1) at its column index to
    # r's row kernel: row a read r[b] for rows b not reduced yet (wrong values
    # at opt_level 3; found by tests/test_fusion_fuzz.py's long run)
    x, w, outs = _row_sum_read_at_other_rows()[case]
    xv = np.array([[2, 1, 0, -1], [-1, -2, -2, -2], [-2, 2, 1, 2], [0, 1, 2, 1]], np.float64)
    wv = np.array([[1, 0, 0, 2], [-1, 2, 1, -2], [-1, 2, 0, -2], [1, 1, 2, -2]], np.float64)
    want = gc.compile(outs, [x, w], backend="interp")(xv, wv)
    for threads in (1, 2):
        got = gc.compile(outs, [x, w], opt_level=3, threads=threads, cache=False)(xv, wv)
        for g, ref in zip(got, want):
            np.testing.assert_array_equal(g, ref)


def test_a_loop_output_in_place_of_its_kernels_gemm_result_verifies():
    # -x (stored for cumsum, an opaque op) merged into the GEMM kernel of
    # -(w @ x), which shares the input x; the memory plan wrote -x in place
    # of w @ x, which dies in that kernel's epilogue loop (sound: the loop
    # reads it at the index it writes), but the plan's verifier took the
    # kernel's writes in graph order, -x before the GEMM's, and refused the
    # plan with a PlanError at opt_level 3 (found by tests/test_fusion_fuzz.py)
    x = gc.placeholder((4, 4), "float64", name="x")
    w = gc.placeholder((4, 4), "float64", name="w")
    outs = [gc.cumsum(-x, axis=0), -(w @ x)]
    xv = np.arange(16.0).reshape(4, 4) % 5 - 2
    wv = np.arange(16.0).reshape(4, 4) % 3 - 1
    want = gc.compile(outs, [x, w], backend="interp")(xv, wv)
    for threads in (1, 2):
        got = gc.compile(outs, [x, w], opt_level=3, threads=threads, cache=False)(xv, wv)
        for g, ref in zip(got, want):
            np.testing.assert_array_equal(g, ref)


@pytest.mark.parametrize("opt_level", [2, 3])
def test_a_reduction_evaluated_inline_reading_a_row_sum_at_every_row_is_not_fused(opt_level):
    # r3[a, b] = sum_c (x[a, b] + h[c]), with h = sum(x, -1), is a reduction
    # over an axis of its own, evaluated inline in a kernel over (4, 4); the
    # row step fused h into that kernel's row loop (its check of who reads h
    # at which row followed only elementwise values), so row a read h[c] for
    # rows not reduced yet. The first call with other values leaves stale
    # row sums in the buffers, which a second call's wrong reads would find
    # (found while widening tests/test_fusion_fuzz.py)
    x = gc.placeholder((4, 4), "float64", name="x")
    h = gc.sum(x, axis=-1)
    u = x - gc.reshape(h, (4, 1))
    r3 = gc.sum(gc.reshape(x, (4, 4, 1)) + gc.reshape(h, (1, 1, 4)), axis=-1)
    xv = np.arange(16.0).reshape(4, 4) % 5 - 2
    for outs in ([u, r3], [r3, u], [u + r3], [u, r3, h]):
        want = gc.compile(outs, [x], backend="interp")(xv)
        f = gc.compile(outs, [x], opt_level=opt_level, cache=False)
        f(-xv)
        for g, ref in zip(f(xv), want):
            np.testing.assert_array_equal(g, ref)


def test_a_consumer_of_an_accumulation_is_not_sunk_into_the_kernel_accumulating_it():
    # s = sum(n, 0, keepdims) is accumulated by the GEMM kernel computing
    # n = -(a @ b); the mask n > n - s, read by another kernel, was sunk into
    # that kernel (which can free s then), where s is complete only after the
    # loop: "fusion bug: kernel reads its own accumulation" at opt_level 3
    # (found by tests/test_fusion_fuzz.py's wide grammar)
    x = gc.placeholder((3, 4), "float64", name="x")
    m = (-x) @ gc.transpose(x)
    n = -m
    out = gc.where(n > n - gc.sum(n, axis=0, keepdims=True), m, n)
    xv = np.arange(12.0).reshape(3, 4) % 5 - 2
    want = gc.compile(out, [x], backend="interp")(xv)
    np.testing.assert_array_equal(gc.compile(out, [x], opt_level=3, cache=False)(xv), want)
