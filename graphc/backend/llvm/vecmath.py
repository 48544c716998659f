"""Vectorizable math functions: exp, log, tanh, sigmoid, float32 pow (sin, cos and
atan: ``vecmath_trig.py``).

A libm call (``expf``, ``tanh``…) inside a loop stops LLVM's loop vectorizer,
and LLVM's ``llvm.exp.*`` intrinsics become exactly such calls. The functions
here are written instead as straight-line IR with the scalar builder ``s``
(``scalar.py``): floating-point arithmetic, ``llvm.fmuladd``, integer
operations on the bit patterns, and ``select`` — no branches and no calls, so
a loop over them vectorizes like a loop over additions.

Each function follows the classic scheme:

* **range reduction** to a small interval: ``exp(x) = 2**n * exp(r)`` with
  ``n = round(x / ln 2)`` and ``|r| <= ln(2)/2`` (Cody–Waite: ``ln 2`` split
  in a short ``hi`` part, so that ``n * hi`` and ``x - n * hi`` are exact, and
  a ``lo`` correction); ``log(x) = e * ln 2 + log(m)`` with ``x = 2**e * m``,
  ``m`` in ``[sqrt(1/2), sqrt(2))`` read from the exponent and mantissa bits.
* a **minimax polynomial** on that interval, evaluated by Horner's rule with
  fused multiply-adds (Estrin's scheme in pow); its coefficients are fitted
  per dtype (float32 has its own, shorter polynomials and never goes through
  float64, except in pow).
* **reconstruction** ``p * 2**n``, rounded once as IEEE arithmetic does (overflow
  to inf, gradual underflow through the denormals): on AVX-512 hosts one
  ``llvm.ldexp`` (``vscalefps``); elsewhere ``2**n`` is built by writing
  ``n + bias`` into the exponent field and applied as two factors
  ``2**(n//2) * 2**(n - n//2)``, so that only the last multiplication rounds.
* **special values by selects**: inputs are clamped into the range where the
  formulas hold (clamping keeps NaN, which then flows through arithmetic to a
  NaN result), and the few inputs whose answer is not what the formula gives
  (``log(0) = -inf``, ``log(inf) = inf``, ``log(x < 0) = nan``) are fixed by a
  final ``select``.

tanh is ``t = h / (h + 1)``, ``h = expm1(2|x|) / 2``, with the sign of ``x``
(relative accuracy down to the denormals, saturates to ±1); sigmoid is
``e / (1 + e)`` for ``x < 0`` and ``1 / (1 + e)`` otherwise, with
``e = exp(-|x|)``, so it never overflows and stays accurate where the result
is tiny. Both divisions are one reciprocal, a product and a Newton correction
that also takes the rounding of the denominator into account
(:func:`_div_corrected`). float32 pow is ``exp(b * log|a|)`` computed in float64 (the
product needs more than float32's precision), plus C99's special cases;
float64 pow stays ``llvm.pow`` (see :func:`has_pow`).

sin and cos reduce by ``n * pi/2`` (Cody-Waite below ``2**28``, Payne-Hanek in
64-bit integer lanes above) and evaluate fdlibm's kernels in float64; see the
section "sin, cos" below and docs/ops.md. atan is Cephes' rational
approximation after reducing ``|x|`` to ``[-0.42, 0.66]`` (section "atan").

Accuracy (max error against the correctly rounded result, measured by
``tests/test_vecmath.py`` over random bit patterns, ranges and boundaries,
and for float32 over all 2**32 inputs by the slow test) is stated in
``docs/performance.md``, section "Vector math".

The polynomial coefficients are weighted minimax (Remez) fits of the relative
error, computed in 40-digit arithmetic with ``benchmarks/vecmath_fit.py`` and
rounded to the target precision one coefficient at a time, the higher ones
refitted after each rounding.
"""
from __future__ import annotations

import numpy as np

from ...ir import dtypes as D
from . import host

_h = float.fromhex


class _Consts:
    """Constants of the functions for one float dtype."""

    def __init__(self, dtype, **kw):
        self.dtype = np.dtype(dtype)
        self.itype = np.dtype(np.int32 if self.dtype == np.float32 else np.int64)
        self.mant = 23 if self.dtype == np.float32 else 52       # mantissa bits
        self.bias = 127 if self.dtype == np.float32 else 1023    # exponent bias
        self.magic = 1.5 * 2.0 ** self.mant      # x + magic - magic rounds x to an integer
        self.__dict__.update(kw)


_F32 = _Consts(
    np.float32,
    log2e=_h("0x1.715476p+0"),
    ln2_hi=_h("0x1.62e400p-1"),        # 16 significant bits: n * ln2_hi is exact for |n| < 2**8
    ln2_lo=_h("0x1.7f7d1cp-20"),
    # exp clamps its argument to [exp_lo, exp_hi]: below, the result rounds to 0
    # (exp(-104) < 2**-150); above, it overflows to inf (exp(89) > 2**128).
    exp_lo=-104.0, exp_hi=89.0,
    # exp(r) = 1 + r + r**2 * P(r) on |r| <= ln(2)/2; relative error of the
    # r + r**2 * P(r) part (expm1) 1.5e-8, i.e. 0.1 ulp of exp
    exp_poly=(0.4999999701976776, 0.1666654646396637, 0.04166743904352188,
              0.008366258814930916, 0.0013872799463570118),
    # expm1(r) = r + r**2 * P(r) on 0 <= r <= ln 2 (for tanh): relative error 4.7e-10
    expm1_poly=(0.4999999701976776, 0.16666746139526367, 0.04165942221879959,
                0.008364103734493256, 0.0013227688614279032, 0.0002668634115252644),
    # tanh reduces |x| = n * ln(2)/2 + r/2 in one step with ln(2)/2 rounded to float32:
    # the error n * 1e-9 of r/2 is damped by 2 / (e**2|x| + 1) in tanh (0.04 ulp at n = 1)
    tanh_ln2_half=float(np.float32(np.log(2) / 2)),
    # log1p(f) = 2 atanh(s), s = f / (2 + f): 2s + s * z * P(z), z = s*s <= 0.0295;
    # relative error 9.8e-10
    log_poly=(0.6666677594184875, 0.3997814655303955, 0.29850324988365173),
    min_normal=2.0 ** -126, denorm_shift=25,     # denormal inputs of log are scaled by 2**25
    sqrt_half_bits=0x3F3504F3,                   # bits of sqrt(1/2) rounded
    tanh_clamp=10.0,                             # tanh(10) rounds to 1.0 in float32
)

_F64 = _Consts(
    np.float64,
    log2e=_h("0x1.71547652b82fep+0"),
    ln2_hi=_h("0x1.62e42fee00000p-1"),  # 32 significant bits: exact products for |n| < 2**21
    ln2_lo=_h("0x1.a39ef35793c76p-33"),
    exp_lo=-746.0, exp_hi=710.0,        # exp(-746) < 2**-1075 rounds to 0; exp(710) overflows
    # relative errors: 2.1e-17 (expm1 part of exp), 6.4e-19 (expm1), 1.7e-18 (log)
    exp_poly=(0.5000000000000006, 0.1666666666666665, 0.04166666666657628,
              0.008333333333375971, 0.0013888888931575846, 0.00019841269712181483,
              2.4801505186396864e-05, 2.7557436750388605e-06, 2.7626113390164163e-07,
              2.5039279473531396e-08),
    expm1_poly=(0.5000000000000001, 0.16666666666665841, 0.041666666666883845,
                0.00833333333037746, 0.0013888889130102768, 0.00019841257209736929,
                2.4802025194252315e-05, 2.754719294806302e-06, 2.771119797447864e-07,
                2.3586965460960677e-08, 2.8659975207677158e-09),
    log_poly=(0.6666666666666734, 0.39999999999433905, 0.2857142873708844,
              0.22222199173699833, 0.181835305663728, 0.1531497978309103,
              0.14785988794210914),
    # shorter tables for float32 pow, which needs float64 log and exp only to about
    # 2**-38 (log) and 2**-34 (exp) relative: errors 3.6e-14 and 2.3e-12
    pow_log_poly=(0.6666666667580455, 0.3999999576073167, 0.2857208967175906,
                  0.22177097834862738, 0.19570248498984302),
    pow_exp_poly=(0.5000000000105066, 0.16666666753976364, 0.04166666595412651,
                  0.00833328910723516, 0.0013888985169869324, 0.00019904870984199872,
                  2.479685130103504e-05),
    min_normal=2.0 ** -1022, denorm_shift=54,
    sqrt_half_bits=0x3FE6A09E667F3BCD,
    tanh_clamp=20.0,                             # tanh(20) rounds to 1.0 in float64
    tanh_ln2_half=None,                          # two steps (Cody-Waite) in float64
)

_CONSTS = {np.dtype(np.float32): _F32, np.dtype(np.float64): _F64}


def _consts(x) -> _Consts:
    c = _CONSTS.get(x.dtype)
    if c is None:
        raise TypeError(f"vecmath: needs float32 or float64, got {x.dtype}")
    return c


def _horner(s, r, coeffs):
    """``coeffs[0] + r * (coeffs[1] + r * (...))`` with fused multiply-adds."""
    dt = r.dtype
    p = s.const(coeffs[-1], dt)
    for c in reversed(coeffs[:-1]):
        p = s.fmuladd(p, r, s.const(c, dt))
    return p


def _estrin(s, r, coeffs):
    """The same polynomial by Estrin's scheme: pairs ``c[2i] + c[2i+1] r``, then pairs
    of those with ``r**2``, and so on. A few more multiplications than Horner, but a
    dependency chain of log2(degree) FMAs instead of degree: faster where the loop is
    bound by latency (long functions such as pow)."""
    terms = [s.const(c, r.dtype) for c in coeffs]
    x = r
    while len(terms) > 1:
        nxt = [s.fmuladd(terms[i + 1], x, terms[i]) for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
        if len(terms) > 1:
            x = x * x
    return terms[0]


# How polynomials are evaluated: Horner (fewest operations, most accurate) in
# general; Estrin in float32 pow, whose one long dependency chain per element
# makes the loop latency-bound (measured about 15% faster there).
EVAL = _horner
POW_EVAL = _estrin


def _reduce(s, x, C):
    """``x = n * ln 2 + r`` with ``n`` an integer and ``|r| <= ln(2)/2``.

    Returns ``(n as an integer SV, r)``. ``x`` must satisfy ``|x / ln 2| < 2**(mant-2)``
    (or be NaN, which gives some ``n`` and ``r = NaN``)."""
    dt = x.dtype
    magic = s.const(C.magic, dt)
    t = s.fmuladd(x, s.const(C.log2e, dt), magic)        # magic + round(x / ln 2)
    nf = t - magic
    r = s.fmuladd(nf, s.const(-C.ln2_hi, dt), x)         # exact
    r = s.fmuladd(nf, s.const(-C.ln2_lo, dt), r)
    n = s.bitcast(t, C.itype) - s.bitcast(magic, C.itype)
    return n, r


def _pow2(s, n, C):
    """``2.0**n`` built in the exponent field; valid for normal results."""
    return s.bitcast(s.shl(n + C.bias, C.mant), C.dtype)


def scalef() -> bool:
    """Whether :func:`_scale` uses ``llvm.ldexp``: one ``vscalefps``/``vscalefpd`` per
    vector on AVX-512 hosts; elsewhere ldexp is a libm call, so two factors instead."""
    return host.has_feature("avx512f")


def _scale(s, p, n, C):
    """``p * 2**n`` for ``|n| <= 2 * bias``, rounded once (overflow to inf,
    gradual underflow through the denormals, as IEEE multiplication)."""
    if scalef():
        return s.ldexp(p, n)
    n1 = s.ashr(n, 1)
    return p * _pow2(s, n1, C) * _pow2(s, n - n1, C)


def exp(s, x, poly=None, evaluate=None, nonpositive=False):
    """e**x. exp(±0) = 1, exp(-inf) = 0, exp(inf) = inf, NaN -> NaN.

    ``poly``/``evaluate``: another coefficient table and evaluation scheme (pow);
    ``nonpositive``: the caller guarantees ``x <= 0`` or NaN (no upper clamp)."""
    C = _consts(x)
    # clamped into [exp_lo, exp_hi] (NaN stays NaN: ordered comparisons are false)
    x = s.select(x < C.exp_lo, s.const(C.exp_lo, x.dtype), x)
    if not nonpositive:
        x = s.select(x > C.exp_hi, s.const(C.exp_hi, x.dtype), x)
    n, r = _reduce(s, x, C)
    # 1 + r * (1 + r * P(r)): the last step is one fused multiply-add onto the
    # exact 1, so the result is within about 0.5 ulp + |r| * 0.5 ulp
    P = (evaluate or EVAL)(s, r, poly or C.exp_poly)
    p = s.fmuladd(s.fmuladd(P, r, s.const(1.0, x.dtype)), r, s.const(1.0, x.dtype))
    return _scale(s, p, n, C)


def _div_corrected(s, num, den, den_lo):
    """``num / (den + den_lo)`` to about 0.5 ulp, ``den_lo`` being the rounding error
    of ``den`` (|den_lo| <= ulp(den)/2). With ``y = 1/den`` (one division) and
    ``q = num * y``, the remainder ``num - q * (den + den_lo)`` is formed exactly
    enough by two fused multiply-adds and added back as ``remainder * y``: one
    Newton step on the quotient, so the result is within about 0.5 ulp plus
    ``ulp**2`` terms, for any ``num`` (``1 - q`` as ``1/den``, which would save the
    multiplication, is inaccurate where ``q`` rounds to near 1)."""
    y = s.const(1.0, den.dtype) / den
    q = num * y
    rem = s.fmuladd(-q, den, num)
    return s.fmuladd(s.fmuladd(-q, den_lo, rem), y, q)


def log(s, x, poly=None, evaluate=None):
    """Natural log. log(1) = 0, log(±0) = -inf, log(inf) = inf, log(x < 0) = NaN."""
    C = _consts(x)
    dt, it = C.dtype, C.itype
    # denormals: scale into the normal range first
    sub = x < C.min_normal
    xs = s.select(sub, x * float(2.0 ** C.denorm_shift), x)
    k = s.select(sub, s.const(C.denorm_shift, it), s.const(0, it))
    # x = 2**e * m with m in [sqrt(1/2), sqrt(2)): subtracting the bits of sqrt(1/2)
    # carries into the exponent field exactly when m >= sqrt(1/2)
    d = s.bitcast(xs, it) - C.sqrt_half_bits
    e = s.ashr(d, C.mant) - k
    m_bits = s.bit_and(d, s.const((1 << C.mant) - 1, it)) + C.sqrt_half_bits
    f = s.bitcast(m_bits, dt) - 1.0                        # exact, in [-0.293, 0.415)
    # log(1 + f) = 2 atanh(sv) = 2 sv + sv * R, sv = f / (2 + f), R = z * P(z), z = sv*sv;
    # written as f - (f*f/2 - sv * (f*f/2 + R)) so the large part f is exact
    sv = f / (f + 2.0)
    z = sv * sv
    R = z * (evaluate or EVAL)(s, z, poly or C.log_poly)
    hfsq = f * f * 0.5
    ef = s.cast(e, dt)
    # result = e*ln2_hi + f + tail, tail = e*ln2_lo - (hfsq - sv*(hfsq + R)) is small;
    # e*ln2_hi + f is summed exactly (Fast2Sum: |e*ln2_hi| >= |f| unless e = 0, when
    # the sum is f itself), so only the small tail and the last addition round
    tail = s.fmuladd(ef, s.const(C.ln2_lo, dt), s.fmuladd(sv, hfsq + R, -hfsq))
    hi = ef * C.ln2_hi                                     # exact
    big = hi + f
    err = f - (big - hi)
    res = big + (tail + err)
    inf = s.const(np.inf, dt)
    res = s.select(s.eq(x, inf), inf, res)
    res = s.select(s.eq(x, s.const(0.0, dt)), -inf, res)
    return s.select(s.ult(x, s.const(0.0, dt)), s.const(np.nan, dt), res)   # x < 0 or NaN


def tanh(s, x):
    """tanh(x) = sign(x) * h / (h + 1), h = expm1(2|x|) / 2: relative accuracy for tiny x
    (tanh(x) = x for denormals), ±1 for |x| beyond the saturation point, NaN -> NaN.

    ``2|x| = n ln2 + r`` with ``0 <= r < ln 2`` (floor, so that ``h = 2**n * q/2 +
    (2**(n-1) - 1/2)`` adds two non-negative terms: no cancellation); the polynomial is
    evaluated at ``r/2 = |x| - n ln(2)/2`` with its coefficients scaled by powers of two,
    so ``2|x|``, ``r`` and ``q = expm1(r)`` are never formed. The division ``h / (h + 1)``
    is corrected for its rounding and for the rounding of ``h + 1`` (Fast2Sum)."""
    C = _consts(x)
    dt = x.dtype
    ax = s.abs(x)
    ax = s.select(ax > C.tanh_clamp, s.const(C.tanh_clamp, dt), ax)   # NaN stays
    magic = s.const(C.magic, dt)
    # magic - 1/2 is not representable: subtract 1/2 first
    t = s.fmuladd(ax, s.const(2.0 * C.log2e, dt), s.const(-0.5, dt)) + magic
    nf = t - magic                                            # floor(2|x| / ln 2)
    if C.tanh_ln2_half is not None:
        r = s.fmuladd(nf, s.const(-C.tanh_ln2_half, dt), ax)
    else:
        r = s.fmuladd(nf, s.const(-C.ln2_hi / 2, dt), ax)     # exact
        r = s.fmuladd(nf, s.const(-C.ln2_lo / 2, dt), r)
    # q/2 = expm1(2 r)/2 = r + r**2 * (2 P(2 r)): coefficient k of P times 2**(k+1), exact
    scaled = [c * 2.0 ** (k + 1) for k, c in enumerate(C.expm1_poly)]
    qh = s.fmuladd(r * r, EVAL(s, r, scaled), r)
    n = s.bitcast(t, C.itype) - s.bitcast(magic, C.itype)
    # 2**(n-1) - 1/2 is exact for n <= mant + 1; beyond, the 1/2 is below the precision
    h = s.fmuladd(_pow2(s, n, C), qh, _pow2(s, n - 1, C) - 0.5)
    one = s.const(1.0, dt)
    d = h + 1.0
    small = h < one
    d_lo = s.select(small, h, one) - (d - s.select(small, one, h))   # Fast2Sum
    return s.copysign(_div_corrected(s, h, d, d_lo), x)


def sigmoid(s, x):
    """1 / (1 + e**-x), as ``e / (1 + e)`` for x < 0 and ``1 / (1 + e)`` for x >= 0 with
    ``e = exp(-|x|) <= 1``: no overflow, relative accuracy where the result is tiny."""
    e = exp(s, -s.abs(x), nonpositive=True)
    num = s.select(x < 0.0, e, s.const(1.0, x.dtype))
    d = e + 1.0
    return _div_corrected(s, num, d, e - (d - 1.0))           # (d - 1 is exact: e <= 1)


def has_pow(dtype) -> bool:
    """Whether :func:`pow` handles ``dtype``. float64 pow needs log(a) to about
    70 bits (an error ``d`` in ``b * log(a)`` is a relative error ``d`` of the
    result, and ``|b * log(a)|`` reaches 745), that is double-double arithmetic;
    it is left to ``llvm.pow`` (libm)."""
    return np.dtype(dtype) == np.float32


def pow(s, a, b):  # noqa: A001
    """float32 a**b as numpy (C99 powf): ``exp(b * log|a|)`` in float64, then
    the sign and special cases: x**0 = 1 and 1**y = 1 (even for NaN),
    (-1)**±inf = 1, a negative finite base to a non-integer power is NaN, a
    negative base to an odd integer power is negative, ±0 and ±inf bases give
    ±0 or ±inf by the sign of b."""
    if not has_pow(a.dtype) or a.dtype != b.dtype:
        raise TypeError(f"vecmath.pow: needs two float32 operands, got {a.dtype}, {b.dtype}")
    dt = a.dtype
    aa = s.abs(a)
    # |b * log|a|| < 2**7 wherever the result is finite and not 0, so a relative error
    # e of log gives 2**7 e in the result: log needs 2**-38, exp 2**-34 (shorter tables)
    y = s.cast(b, D.float64) * log(s, s.cast(aa, D.float64), _F64.pow_log_poly, POW_EVAL)
    mag = s.cast(exp(s, y, _F64.pow_exp_poly, POW_EVAL), dt)
    zero, one = s.const(0.0, dt), s.const(1.0, dt)
    # integer and odd-integer exponents (±inf counts as an even integer)
    b_int = s.eq(s.floor(b), b)
    half = b * 0.5
    b_odd = s.and_(b_int, s.ne(s.floor(half), half))
    neg = s.lt(s.copysign(one, a), zero)              # sign bit of a (also -0, -inf)
    res = s.select(s.and_(neg, b_odd), -mag, mag)
    finite_neg = s.and_(s.lt(a, zero), s.gt(a, s.const(-np.inf, dt)))
    res = s.select(s.and_(finite_neg, s.not_(b_int)), s.const(np.nan, dt), res)
    # |a| = 1 and b = ±inf: log|a| * b is 0 * inf = NaN, C99 says 1
    unit = s.or_(s.eq(b, zero), s.eq(a, one))
    unit = s.or_(unit, s.and_(s.eq(a, -one), s.eq(s.abs(b), s.const(np.inf, dt))))
    return s.select(unit, one, res)
