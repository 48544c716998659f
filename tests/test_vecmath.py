"""Accuracy and vectorization of the math functions written in IR
(``graphc/backend/llvm/vecmath.py``), run through ``gc.compile``.

Errors are measured in ulps of the result dtype against a reference computed
in higher precision (float64 for float32 inputs, x87 long double for float64
inputs), so "0.5 ulp" is a correctly rounded result. Results that are not
finite numbers (inf, NaN) and zeros must be exactly those of the correctly
rounded reference and of numpy. Inputs: random bit patterns (every binade,
denormals, infinities and NaNs), uniform samples of the interesting range,
runs of consecutive floats around every threshold (overflow, underflow, the
start of the denormals, saturation, the seams of the range reduction), and
special values. ``-m slow`` sweeps all 2**32 float32 inputs.
"""
from __future__ import annotations

import re
import zlib
from functools import cache

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm.scalar import ScalarBuilder

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
CHUNK = 1 << 20

# Largest error (ulps, against the correctly rounded result) allowed per function
# and dtype; the measured maxima are given in docs/performance.md.
MAX_ULP = {
    ("exp", F32): 1.0, ("exp", F64): 1.0,
    ("log", F32): 1.0, ("log", F64): 1.0,
    ("tanh", F32): 1.6, ("tanh", F64): 1.6,
    ("sigmoid", F32): 1.6, ("sigmoid", F64): 1.6,
    ("pow", F32): 0.51,
    ("sin", F32): 0.51, ("sin", F64): 1.0,
    ("cos", F32): 0.51, ("cos", F64): 1.0,
    ("atan", F32): 0.51, ("atan", F64): 1.0,
}
# our results against numpy's own: numpy's float32 log and exp are themselves up to
# 3.5 and 2.4 ulps off (numpy 2.4, AVX-512), so they may differ from ours by 4 ulps
MAX_ULP_VS_NUMPY = 5.0
# numpy's float64 cos (SVML on AVX-512 hosts) is 8 ulps off at 6381956970095103 * 2**797,
# the float64 closest to a multiple of pi/2 (ours is 0.05 ulp: test_trig_hardest_reduction)
VS_NUMPY = {("cos", F64): 9.0, ("sin", F64): 9.0}


def _sigmoid_ref(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


FUNCS = {"exp": (gc.exp, np.exp), "log": (gc.log, np.log), "tanh": (gc.tanh, np.tanh),
         "sigmoid": (gc.sigmoid, _sigmoid_ref), "sin": (gc.sin, np.sin), "cos": (gc.cos, np.cos),
         "atan": (gc.atan, np.arctan)}
# where the results are neither constant nor overflowing: (float32, float64)
RANGES = {"exp": ((-105, 90), (-750, 712)), "log": ((0, 5), (0, 5)),
          "tanh": ((-11, 11), (-21, 21)), "sigmoid": ((-106, 20), (-750, 40)),
          "sin": ((-40, 40), (-40, 40)), "cos": ((-40, 40), (-40, 40)),
          "atan": ((-10, 10), (-10, 10))}
# sin and cos: the multiples of pi/2 near which the reduction cancels most, the seam of
# the two reductions (2**28), the largest floats, and the inputs closest to a multiple of
# pi/2 (float32: 16367173 * 2**72; float64: 6381956970095103 * 2**797, J.-M. Muller,
# "Elementary Functions", table 11.1)
_TRIG_EDGES = [np.pi / 4, np.pi / 2, np.pi, 3 * np.pi / 2, 2 * np.pi, 100 * np.pi, 2.0 ** 28,
               -(2.0 ** 28), 1e5 * np.pi / 2, 16367173 * 2.0 ** 72, 1e22, 2.0 ** 60 * np.pi]


def _ref_dtype(dt):
    return np.float64 if dt == F32 else np.longdouble


def _uint(dt):
    return np.uint32 if dt == F32 else np.uint64


@cache
def _compiled(name, dt):
    x = gc.placeholder((CHUNK,), dt, "x")
    return gc.compile(FUNCS[name][0](x), inputs=[x])


def run(name, xs):
    """``name`` applied to ``xs`` by compiled graphc code, in chunks of CHUNK."""
    f = _compiled(name, xs.dtype)
    out = np.empty_like(xs)
    for i in range(0, xs.size, CHUNK):
        part = xs[i:i + CHUNK]
        buf = np.zeros(CHUNK, xs.dtype)
        buf[:part.size] = part
        out[i:i + CHUNK] = f(buf)[:part.size]
    return out


def ulp_error(got, ref, dt):
    """|got - ref| in ulps of dtype ``dt`` at ``ref`` (``ref`` finite, higher precision)."""
    info = np.finfo(dt)
    _, e = np.frexp(np.abs(ref))
    e = np.where(ref == 0, info.minexp, np.maximum(e.astype(np.int64) - 1, info.minexp))
    ulp = np.ldexp(np.ones_like(ref), (e - info.nmant).astype(np.int32))
    return np.abs(got.astype(ref.dtype) - ref) / ulp


def _classes(a):
    return np.stack([np.isnan(a), np.isposinf(a), np.isneginf(a), a == 0])


def check(name, xs, numpy_classes=True):
    """Run ``name`` on ``xs``; assert classes and the ulp bound; return (max ulp vs the
    correctly rounded result, max ulp vs numpy). ``numpy_classes=False`` (sigmoid, for
    which "numpy" is the formula 1/(1+exp(-x)) that underflows early) compares with
    numpy only where numpy's result is a normal number."""
    dt = xs.dtype
    got = run(name, xs)
    ref_fn = FUNCS[name][1]
    with np.errstate(all="ignore"):
        ref = ref_fn(xs.astype(_ref_dtype(dt)))
        rounded = ref.astype(dt)
        npv = ref_fn(xs)
    bad = np.any(_classes(got) != _classes(rounded), axis=0)
    assert not bad.any(), (f"{name}({dt}): inf/nan/zero differs from the correctly rounded "
                           f"result at x={xs[bad][:5]}: got {got[bad][:5]}, "
                           f"expected {rounded[bad][:5]}")
    if numpy_classes:
        bad = np.any(_classes(got) != _classes(npv), axis=0)
        assert not bad.any(), (f"{name}({dt}): inf/nan/zero differs from numpy at "
                               f"x={xs[bad][:5]}: got {got[bad][:5]}, numpy {npv[bad][:5]}")
    fin = np.isfinite(got) & np.isfinite(rounded)
    err = ulp_error(got[fin], ref[fin], dt)
    worst = float(err.max()) if err.size else 0.0
    if err.size:
        i = int(np.argmax(err))
        assert worst <= MAX_ULP[name, dt], (f"{name}({dt}): {worst:.3f} ulp at "
                                             f"x={xs[fin][i]!r}: got {got[fin][i]!r}, "
                                             f"reference {ref[fin][i]!r}")
    fin &= np.isfinite(npv)
    if not numpy_classes:       # sigmoid: the numpy formula is only accurate for normal results
        fin &= np.abs(npv) >= np.finfo(dt).smallest_normal
    vs_np = ulp_error(got[fin], npv[fin].astype(_ref_dtype(dt)), dt)
    worst_np = float(vs_np.max()) if vs_np.size else 0.0
    assert worst_np <= VS_NUMPY.get((name, dt), MAX_ULP_VS_NUMPY), \
        f"{name}({dt}): {worst_np} ulp from numpy"
    return worst, worst_np


def window(center, k, dt):
    """The 2k floats of dtype ``dt`` nearest to ``center`` (consecutive bit patterns)."""
    c = np.asarray(center, dtype=dt)
    bits = c.view(_uint(dt)).astype(np.int64) + np.arange(-k, k)
    bits = bits[(bits >= 0) & (bits < np.iinfo(_uint(dt)).max)]
    return bits.astype(_uint(dt)).view(dt)


def _edges(name, dt):
    """Thresholds of each function in dtype ``dt``."""
    info = np.finfo(dt)
    big, tiny, sub = float(info.max), float(info.smallest_normal), float(info.smallest_subnormal)
    L = np.log
    sat_tanh = float(np.arctanh(np.longdouble(1) - np.longdouble(info.epsneg) / 2))
    return {
        "exp": [L(big), L(tiny), L(sub), L(sub) - L(2), 0.0, -0.0, L(2) / 2],
        "log": [1.0, tiny, sub, big, np.sqrt(0.5), np.sqrt(2.0), 0.0],
        "tanh": [0.0, -0.0, np.log(2) / 4, np.log(2) / 2, np.log(3) / 2, sat_tanh, -sat_tanh,
                 10.0 if dt == F32 else 20.0],
        "sigmoid": [0.0, -L(info.epsneg), -L(big), L(tiny), L(sub), L(sub) - L(2), L(sub) - 1],
        "sin": _TRIG_EDGES + [big, -big, tiny, 0.0] + ([] if dt == F32 else
                                                       [6381956970095103 * 2.0 ** 797]),
        "cos": _TRIG_EDGES + [big, -big, tiny, 0.0] + ([] if dt == F32 else
                                                       [6381956970095103 * 2.0 ** 797]),
        # atan: the seams of the reduction (0.66, tan(3 pi/8)), 1, and where atan(x) = x ends
        "atan": [0.66, -0.66, 1 + np.sqrt(2.0), -1 - np.sqrt(2.0), 1.0, 0.0, tiny, sub,
                 float(np.sqrt(3 * np.finfo(dt).eps)), 1.0 / np.finfo(dt).eps, big],
    }[name]


SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0, 2.0, 0.5]


def _special(dt):
    info = np.finfo(dt)
    extra = [info.max, -info.max, info.smallest_normal, -info.smallest_normal,
             info.smallest_subnormal, -info.smallest_subnormal]
    return np.array(SPECIAL + [float(v) for v in extra], dtype=dt)


def _samples(name, dt, rng, n_bits, n_range, k_window):
    parts = [rng.integers(0, np.iinfo(_uint(dt)).max, size=n_bits, dtype=_uint(dt),
                          endpoint=True).view(dt)]
    lo, hi = RANGES[name][dt == F64]
    parts.append(rng.uniform(lo, hi, n_range).astype(dt))
    mag = 10.0 ** rng.uniform(np.log10(float(np.finfo(dt).smallest_subnormal)), 0, n_range // 4)
    parts.append((mag * rng.choice([-1.0, 1.0], mag.size)).astype(dt))     # tiny |x|
    parts += [window(c, k_window, dt) for c in _edges(name, dt)]
    parts.append(_special(dt))
    return np.concatenate(parts)


@pytest.mark.parametrize("dt", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(FUNCS))
def test_accuracy(name, dt):
    rng = np.random.default_rng(zlib.crc32(f"{name}{dt}".encode()))
    n = 1 << 21 if dt == F32 else 1 << 19
    xs = _samples(name, dt, rng, n, n // 2, 4096)
    # numpy has no sigmoid: 1/(1+exp(-x)) in the dtype underflows to 0 where the
    # correctly rounded result is a denormal; compare classes with the reference only
    check(name, xs, numpy_classes=name != "sigmoid")


EXACT = {
    # name: [(x, expected)], compared bit for bit (sign of zero included)
    "exp": [(0.0, 1.0), (-0.0, 1.0), (np.inf, np.inf), (-np.inf, 0.0), (1e-300, 1.0),
            (-1e-300, 1.0), (1e6, np.inf), (-1e6, 0.0)],
    "log": [(1.0, 0.0), (0.0, -np.inf), (-0.0, -np.inf), (np.inf, np.inf), (-np.inf, np.nan),
            (-1.0, np.nan), (-1e-30, np.nan)],
    "tanh": [(0.0, 0.0), (-0.0, -0.0), (np.inf, 1.0), (-np.inf, -1.0), (30.0, 1.0),
             (-30.0, -1.0), (1e30, 1.0)],
    "sigmoid": [(0.0, 0.5), (-0.0, 0.5), (np.inf, 1.0), (-np.inf, 0.0), (50.0, 1.0),
                (-1e4, 0.0)],
    "sin": [(0.0, 0.0), (-0.0, -0.0), (np.inf, np.nan), (-np.inf, np.nan), (1e-300, 1e-300),
            (-1e-30, -1e-30)],
    "cos": [(0.0, 1.0), (-0.0, 1.0), (np.inf, np.nan), (-np.inf, np.nan), (1e-30, 1.0)],
    "atan": [(0.0, 0.0), (-0.0, -0.0), (1e-30, 1e-30), (-1e-30, -1e-30), (1e-300, 1e-300)],
}


@pytest.mark.parametrize("dt", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(FUNCS))
def test_exact_special_values(name, dt):
    xs = np.array([x for x, _ in EXACT[name]] + [np.nan], dtype=dt)
    want = np.array([y for _, y in EXACT[name]] + [np.nan], dtype=dt)
    got = run(name, xs)
    same = (got == want) & (np.signbit(got) == np.signbit(want)) | np.isnan(got) & np.isnan(want)
    assert same.all(), f"{name}({dt}) at {xs[~same]}: got {got[~same]}, expected {want[~same]}"
    if name != "sigmoid":
        with np.errstate(all="ignore"):
            npv = FUNCS[name][1](xs)
        np.testing.assert_array_equal(want, npv)    # the table says what numpy says


@pytest.mark.parametrize("dt", [F32, F64], ids=["float32", "float64"])
def test_tiny_inputs_are_relative(dt):
    """tanh(x) = x and sigmoid(x) = 1/2 for tiny x, down to the denormals; exp(-x) for
    large x keeps relative accuracy in sigmoid (no 1/(1+inf) underflow to 0)."""
    info = np.finfo(dt)
    tiny = np.array([info.smallest_subnormal, 3 * info.smallest_subnormal,
                     info.smallest_normal, 1e-20, 1e-10], dtype=dt)
    tiny = np.concatenate([tiny, -tiny])
    np.testing.assert_array_equal(run("tanh", tiny), tiny)
    tiny = tiny[np.abs(tiny) < info.epsneg / 4]       # where sigmoid(x) rounds to 1/2
    np.testing.assert_array_equal(run("sigmoid", tiny), np.full_like(tiny, 0.5))
    x = np.array([-80, -87, -95, -100, -103] if dt == F32 else [-700, -720, -740], dtype=dt)
    got = run("sigmoid", x)
    ref = np.exp(x.astype(_ref_dtype(dt))) / (1 + np.exp(x.astype(_ref_dtype(dt))))
    assert (got > 0).all()
    assert ulp_error(got, ref, dt).max() <= MAX_ULP["sigmoid", dt]


def test_trig_hardest_reduction():
    """At the float64 closest to a multiple of pi/2, x = 6381956970095103 * 2**797,
    x = (4k + 1) pi/2 + r with r = 4.6871659242546276e-19: cos(x) = -sin(r), sin(x) =
    cos(r) (r from 2400 bits of 2/pi in integer arithmetic, the series in 80 digits)."""
    x = np.array([6381956970095103 * 2.0 ** 797, -6381956970095103 * 2.0 ** 797])
    assert run("cos", x)[0] == -4.6871659242546276e-19
    assert run("cos", x)[1] == -4.6871659242546276e-19
    np.testing.assert_array_equal(run("sin", x), [1.0, -1.0])


# ----------------------------------------------------------------------- pow

POW_SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, np.inf, -np.inf,
                        np.nan, 1e-45, -1e-45, 1e-40, 3.4e38, -3.4e38, 1.5, -1.5, 1e10, -1e10,
                        2.0 ** 24, -(2.0 ** 24), 2.0 ** 24 + 2, 0.1, -0.1, 7.0, -7.0,
                        1 - 2.0 ** -24, 1 + 2.0 ** -23, 127.0, -149.0, 128.5], dtype=F32)


def _pow(a, b):
    A = gc.placeholder(a.shape, a.dtype, "a")
    B = gc.placeholder(b.shape, b.dtype, "b")
    return gc.compile(A ** B, inputs=[A, B])(a, b)


def test_pow_float32_special_cases_match_numpy():
    """Every pair of special bases and exponents: x**0 = 1, 1**y = 1 (NaN too), 0 and inf
    bases, negative bases with integer (odd/even) and non-integer exponents, ±inf."""
    a = np.repeat(POW_SPECIAL, POW_SPECIAL.size)
    b = np.tile(POW_SPECIAL, POW_SPECIAL.size)
    got = _pow(a, b)
    with np.errstate(all="ignore"):
        ref = np.power(a, b)
        ref64 = np.power(a.astype(np.float64), b.astype(np.float64))
        # a full array of exponents goes through pow, as in numpy (only a
        # one-element exponent of 0.5 is sqrt: tested in test_fuzz/test_regressions)
    bad = np.any(_classes(got) != _classes(ref), axis=0)
    bad |= (np.signbit(got) != np.signbit(ref)) & ~np.isnan(ref)
    assert not bad.any(), f"pow{list(zip(a[bad][:5], b[bad][:5]))}: got {got[bad][:5]}, numpy {ref[bad][:5]}"
    fin = np.isfinite(got) & (got != 0)
    assert ulp_error(got[fin], ref64[fin], F32).max() <= MAX_ULP["pow", F32]


def test_pow_float32_accuracy():
    rng = np.random.default_rng(11)
    n = 1 << 19
    u = lambda: rng.integers(0, 2 ** 32, n, dtype=np.uint32).view(np.float32)
    cases = [(u(), u()),                                                        # bit patterns
             (rng.uniform(0, 8, n).astype(F32), rng.uniform(-50, 50, n).astype(F32)),
             (rng.uniform(-3, 3, n).astype(F32), rng.integers(-80, 80, n).astype(F32)),
             (np.float32(1) + rng.uniform(-1e-3, 1e-3, n).astype(F32),   # near 1, huge powers
              rng.uniform(-1e5, 1e5, n).astype(F32))]
    for a, b in cases:
        got = _pow(a, b)
        with np.errstate(all="ignore"):
            ref = np.power(a, b)
            ref64 = np.power(a.astype(np.float64), b.astype(np.float64))
            rounded = ref64.astype(F32)
        bad = np.any(_classes(got) != _classes(rounded), axis=0)
        assert not bad.any(), f"pow at {a[bad][:3]}, {b[bad][:3]}: {got[bad][:3]}"
        assert not np.any(_classes(got) != _classes(ref), axis=0).any()
        fin = np.isfinite(got) & np.isfinite(rounded)
        assert ulp_error(got[fin], ref64[fin], F32).max() <= MAX_ULP["pow", F32]


def test_pow_float64_and_integer_powers_unchanged():
    """float64 pow stays libm's (llvm.pow); integer pow is exact."""
    rng = np.random.default_rng(3)
    a = rng.uniform(-4, 4, 1000)
    b = rng.integers(-6, 6, 1000).astype(np.float64)
    np.testing.assert_allclose(_pow(a, b), np.power(a, b), rtol=1e-15)
    ai = rng.integers(-5, 5, 100)
    bi = rng.integers(0, 8, 100)
    np.testing.assert_array_equal(_pow(ai, bi), np.power(ai, bi))


def test_broadcast_and_fused_use():
    """The functions inside a fused expression with broadcasting (the real path)."""
    rng = np.random.default_rng(5)
    xv = rng.standard_normal((64, 33)).astype(F32)
    yv = np.abs(rng.standard_normal(33)).astype(F32) + 0.1
    x = gc.placeholder(xv.shape, F32, "x")
    y = gc.placeholder(yv.shape, F32, "y")
    out = gc.sum(gc.tanh(x) * gc.exp(x) + gc.sigmoid(x) * gc.log(y) + y ** x, axis=1)
    got = gc.compile(out, inputs=[x, y])(xv, yv)
    x64, y64 = xv.astype(np.float64), yv.astype(np.float64)
    ref = np.sum(np.tanh(x64) * np.exp(x64) + _sigmoid_ref(x64) * np.log(y64) + y64 ** x64, axis=1)
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-4)


@pytest.mark.parametrize("dt", [F32, F64], ids=["float32", "float64"])
def test_two_factor_scaling_without_avx512(monkeypatch, dt):
    """Hosts without AVX-512 apply 2**n as two factors instead of ``llvm.ldexp``
    (a libm call there): the same bounds, denormal results and overflow included."""
    from graphc.backend.llvm import vecmath
    monkeypatch.setattr(vecmath, "scalef", lambda: False)

    def run_fresh(name, xs):
        x = gc.placeholder(xs.shape, xs.dtype, "x")
        f = gc.compile(FUNCS[name][0](x), inputs=[x], cache=False)
        assert "llvm.ldexp" not in f.llvm_ir
        return f(xs)

    monkeypatch.setitem(globals(), "run", run_fresh)
    rng = np.random.default_rng(zlib.crc32(f"two factors {dt}".encode()))
    for name in ("exp", "sigmoid"):
        check(name, _samples(name, dt, rng, 1 << 16, 1 << 15, 512), numpy_classes=name != "sigmoid")


def test_intrinsic_path_still_available(monkeypatch):
    """``ScalarBuilder.vector_math = False`` (for A/B benchmarks) uses LLVM's intrinsics."""
    monkeypatch.setattr(ScalarBuilder, "vector_math", False)
    x = gc.placeholder((1000,), F32, "x")
    f = gc.compile([gc.exp(x), gc.tanh(x), gc.sigmoid(x), gc.log(gc.abs(x)), gc.sin(x),
                    gc.atan(x)], inputs=[x])
    assert "llvm.exp" in f.llvm_ir and "llvm.tanh" in f.llvm_ir and "llvm.sin" in f.llvm_ir
    assert "llvm.atan" in f.llvm_ir
    xv = np.linspace(-5, 5, 1000, dtype=F32)
    e, t, s, lg, sn, at = f(xv)
    np.testing.assert_allclose(sn, np.sin(xv), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(at, np.arctan(xv), rtol=1e-6)
    np.testing.assert_allclose(e, np.exp(xv), rtol=1e-6)
    np.testing.assert_allclose(t, np.tanh(xv), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s, _sigmoid_ref(xv), rtol=1e-6)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(lg, np.log(np.abs(xv)), rtol=1e-6)


# ------------------------------------------------------------- vectorization

_SCALAR_MATH = re.compile(r"@(llvm\.(exp|exp2|log|log2|tanh|pow|sin|cos|atan)\.|"
                          r"(expf?|logf?|tanhf?|powf?|sinf?|cosf?|atanf?)\b)")


def _calls(ir_text):
    return set(re.findall(r"call [^@]*@([\w.$]+)", ir_text))


@pytest.mark.parametrize("dt,vec", [(F32, "float"), (F64, "double")], ids=["float32", "float64"])
def test_loops_vectorize(dt, vec):
    """The optimized IR of loops using the functions has vector arithmetic and no
    calls other than LLVM intrinsics (a libm call would keep the loop scalar)."""
    x = gc.placeholder((1 << 16,), dt, "x")
    graphs = [gc.exp(x), gc.log(x), gc.tanh(x), gc.sigmoid(x),
              gc.sum(gc.tanh(x) * gc.exp(x)), gc.sum(gc.sigmoid(gc.log(gc.abs(x) + 1.0))),
              gc.sin(x), gc.cos(x), gc.sum(gc.sin(x) * gc.cos(x * 3.0)), gc.atan(x)]
    if dt == F32:
        graphs.append(gc.abs(x) ** x)
    for g in graphs:
        ir = gc.compile(g).llvm_ir_optimized
        assert re.search(rf"<(4|8|16) x {vec}>", ir), f"no <N x {vec}> vectors for {g}"
        # (float32 pow evaluates its polynomials in float64)
        assert re.search(r"@llvm\.fmuladd\.v(4|8|16)f(32|64)", ir), f"polynomial not vectorized for {g}"
        assert not _SCALAR_MATH.search(ir), f"scalar math call left in {g}"
        # (the thread pool's entry points and the module's own kernels, never
        # inlined into the entry, are the only other calls)
        defined = set(re.findall(r"define [^@]*@\"?([\w.$]+)", ir))
        assert all(c.startswith(("llvm.", "graphc_rt_")) or c in defined
                   for c in _calls(ir)), _calls(ir) - defined


# ----------------------------------------------------------------- slow: all inputs

@pytest.mark.slow
@pytest.mark.parametrize("name", list(FUNCS))
def test_all_float32_inputs(name):
    """Every one of the 2**32 float32 bit patterns (10-15 minutes per function here)."""
    worst = worst_np = 0.0
    step = 1 << 22
    for start in range(0, 1 << 32, step):
        xs = np.arange(start, start + step, dtype=np.uint32).view(np.float32)
        w, wn = check(name, xs, numpy_classes=name != "sigmoid")
        worst, worst_np = max(worst, w), max(worst_np, wn)
    print(f"{name} float32: max {worst:.3f} ulp (vs numpy {worst_np:.1f})")


@pytest.mark.slow
@pytest.mark.parametrize("dt", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(FUNCS))
def test_accuracy_many(name, dt):
    """Like test_accuracy with 16x more samples and wider threshold windows."""
    rng = np.random.default_rng(zlib.crc32(f"many {name}{dt}".encode()))
    for _ in range(8 if dt == F32 else 4):
        xs = _samples(name, dt, rng, 1 << 22, 1 << 21, 1 << 16)
        check(name, xs, numpy_classes=name != "sigmoid")
