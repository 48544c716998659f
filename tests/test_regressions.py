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
