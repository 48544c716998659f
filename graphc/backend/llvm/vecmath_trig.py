"""Vectorizable sin, cos and atan (see ``vecmath.py`` for the scheme every
function follows: range reduction, a polynomial, reconstruction, special
values by selects; no branches and no calls, so loops over them vectorize).
``scalar.py`` calls them; they use vecmath's constants and evaluation rule
(``vecmath.EVAL``, read at each call)."""
from __future__ import annotations

import numpy as np

from ...ir import dtypes as D
from . import vecmath as V
from .vecmath import _F64, _consts, _h, _horner

# ------------------------------------------------------------------ sin, cos
#
# x = n * pi/2 + r, |r| <= pi/4, then fdlibm's kernels (__kernel_sin/__kernel_cos,
# in float64 for both dtypes: float32 rounds the float64 result once). Two
# reductions, both computed and one selected (no branches):
#
# * |x| < 2**28: Cody-Waite in double-double, pi/2 = P1 + P2 + P3 (53 bits each):
#   x - n*P1 is exact (one FMA), n*P2 is split exactly (FMA), n*P3 is a correction;
# * larger |x| (to 2**1024): Payne-Hanek in 64-bit integers: with x = m * 2**E,
#   the bits of 2/pi from 2**-(E-1) on (a window of 128 or 192 bits read from a
#   table; the bits before give multiples of 4, that is of 2*pi) times m, taken
#   mod 2**(64*words): two integer bits (the quadrant, rounded) and 126 or 190
#   fraction bits, converted to double-double exactly in 42-bit pieces.
#
# 64x64 -> 128-bit products are written with 32-bit halves, so the loop stays in
# i64 lanes (vpmuludq) and vectorizes; the table read is a gather.

_TRIG_WORDS = {np.dtype(np.float32): 2, np.dtype(np.float64): 3}
_PIO2 = (_h("0x1.921fb54442d18p+0"), _h("0x1.1a62633145c07p-54"), _h("-0x1.f1976b7ed8fbcp-110"))
_PIO2_HI, _PIO2_LO = _PIO2[0], _PIO2[1]
_SIN = (-1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
        2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10)
_COS = (4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
        -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11)
_CW_LIMIT = 2.0 ** 28
_TABLE_ZERO_WORDS = 1       # zero words before 2/pi's bits: windows that start before its point


def _two_over_pi_bits(nbits: int) -> int:
    """floor(2/pi * 2**nbits), from pi by Machin's formula in integers."""
    g = nbits + 64
    one = 1 << g

    def atan_inv(k):            # atan(1/k) * 2**g
        total, term, n, sign = 0, one // k, 1, 1
        while term:
            total += sign * (term // n)
            term //= k * k
            n += 2
            sign = -sign
        return total
    pi = 16 * atan_inv(5) - 4 * atan_inv(239)
    return (2 << (g + nbits)) // pi


def _table_words():
    nwords = (1100 + 256) // 64
    bits = _two_over_pi_bits(64 * nwords)
    words = [0] * _TABLE_ZERO_WORDS
    words += [(bits >> (64 * (nwords - 1 - i))) & ((1 << 64) - 1) for i in range(nwords)]
    return words


_TABLE = _table_words()


def _signed64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


def _i64(s, v):
    from llvmlite import ir
    return ir.Constant(ir.IntType(64), _signed64(v))


def _table_load(s, k):
    """Word ``k`` (an i64 value, in bounds) of the 2/pi table."""
    from llvmlite import ir
    t = ir.ArrayType(ir.IntType(64), len(_TABLE))
    g = s.module.globals.get("graphc.two_over_pi")
    if g is None:
        g = ir.GlobalVariable(s.module, t, "graphc.two_over_pi")
        g.global_constant = True
        g.linkage = "internal"
        g.initializer = ir.Constant(t, [_signed64(w) for w in _TABLE])
    p = s.b.gep(g, [_i64(s, 0), k], inbounds=True, source_etype=t)
    return s.b.load(p, typ=ir.IntType(64), align=8)


# A table of at most this many words is read by a chain of selects instead of a
# load at a computed index (a gather, or one scalar load per lane where gathers
# are slow): float32's windows need words 0..5 only.
_SELECT_WORDS = 8


def _table_select(s, w, j, last):
    """Word ``w + j`` of the 2/pi table, ``w + j <= last``, by selects."""
    b = s.b
    v = _i64(s, _TABLE[j])
    for k in range(j + 1, last + 1):
        v = b.select(b.icmp_unsigned("==", w, _i64(s, k - j)), _i64(s, _TABLE[k]), v)
    return v


def _mul_wide(s, a, v):
    """(hi, lo) of the 128-bit product of the i64 values ``a`` (< 2**53) and ``v``."""
    b = s.b
    m32 = _i64(s, 0xFFFFFFFF)
    c32 = _i64(s, 32)
    al, ah = b.and_(a, m32), b.lshr(a, c32)
    vl, vh = b.and_(v, m32), b.lshr(v, c32)
    ll, lh, hl, hh = b.mul(al, vl), b.mul(al, vh), b.mul(ah, vl), b.mul(ah, vh)
    mid = b.add(b.add(b.lshr(ll, c32), b.and_(lh, m32)), b.and_(hl, m32))
    lo = b.or_(b.shl(mid, c32), b.and_(ll, m32))
    hi = b.add(b.add(hh, b.lshr(lh, c32)), b.add(b.lshr(hl, c32), b.lshr(mid, c32)))
    return hi, lo


def _payne_hanek(s, ax, C):
    """(n, r_hi, r_lo) for ``ax = |x| >= 2**28`` (other lanes: some value, safely)."""
    from llvmlite import ir
    b, i64 = s.b, ir.IntType(64)
    words = _TRIG_WORDS[C.dtype]
    bits = s.bitcast(ax, C.itype).v
    if C.dtype.itemsize == 4:
        bits = b.zext(bits, i64)
    mask = _i64(s, (1 << C.mant) - 1)
    m = b.or_(b.and_(bits, mask), _i64(s, 1 << C.mant))
    e = b.lshr(bits, _i64(s, C.mant))                         # biased exponent
    # window start: bit k0 = E - 1 of 2/pi (E = e - bias - mant), at table bit t0
    t0 = b.add(e, _i64(s, 64 * _TABLE_ZERO_WORDS - 2 - C.bias - C.mant))
    # the largest window start: from the largest finite exponent (inf/NaN lanes are
    # clamped to it; their result is replaced by NaN)
    top = (2 * C.bias) + 64 * _TABLE_ZERO_WORDS - 2 - C.bias - C.mant
    t0 = b.select(b.icmp_signed("<", t0, _i64(s, 0)), _i64(s, 0), t0)
    t0 = b.select(b.icmp_signed(">", t0, _i64(s, top)), _i64(s, top), t0)
    w, o = b.lshr(t0, _i64(s, 6)), b.and_(t0, _i64(s, 63))
    fshl = s.module.globals.get("llvm.fshl.i64") or ir.Function(
        s.module, ir.FunctionType(i64, [i64] * 3), "llvm.fshl.i64")
    last = (top >> 6) + words                  # the last table word a window reads
    assert last < len(_TABLE)
    if last < _SELECT_WORDS:                   # float32: a few words, picked by selects
        raw = [_table_select(s, w, j, last) for j in range(words + 1)]
    else:
        raw = [_table_load(s, b.add(w, _i64(s, j))) for j in range(words + 1)]
    win = [b.call(fshl, [raw[j], raw[j + 1], o]) for j in range(words)]     # top word first
    # the low 64*words bits of m * window, least significant word first
    p, carry = [], _i64(s, 0)
    for j in reversed(range(words)):
        hi, lo = _mul_wide(s, m, win[j])
        lo2 = b.add(lo, carry)
        p.append(lo2)
        carry = b.add(hi, b.zext(b.icmp_unsigned("<", lo2, lo), i64))
    topw, nxt = p[-1], p[-2]
    q = b.lshr(b.add(topw, _i64(s, 1 << 61)), _i64(s, 62))   # round(value) mod 4
    st = b.sub(topw, b.shl(q, _i64(s, 62)))                    # signed, |st| <= 2**61
    A = b.ashr(st, _i64(s, 20))
    B = b.or_(b.shl(b.and_(st, _i64(s, (1 << 20) - 1)), _i64(s, 22)), b.lshr(nxt, _i64(s, 42)))
    Cw = b.and_(nxt, _i64(s, (1 << 42) - 1))
    f64 = D.float64
    conv = lambda v, k: s.wrap(b.sitofp(v, ir.DoubleType()), f64) * float(2.0 ** -k)  # noqa: E731
    a, bb, c = conv(A, 42), conv(B, 84), conv(Cw, 126)
    hi = a + bb
    lo = (bb - (hi - a)) + c                                    # |a| > |bb| unless a == 0
    r_hi = hi * _PIO2_HI
    r_lo = s.fma(hi, s.const(_PIO2_HI, f64), -r_hi)             # the exact error
    r_lo = r_lo + (hi * _PIO2_LO + lo * _PIO2_HI)
    return s.wrap(q, D.int64), r_hi, r_lo


def _cody_waite(s, ax):
    """(n, r_hi, r_lo) for a float64 ``ax = |x| < 2**28``."""
    f64 = D.float64
    magic = s.const(_F64.magic, f64)
    t = s.fmuladd(ax, s.const(2 / np.pi, f64), magic)
    nf = t - magic
    n = s.bitcast(t, D.int64) - s.bitcast(magic, D.int64)
    r1 = s.fma(-nf, s.const(_PIO2[0], f64), ax)                 # exact
    p = nf * _PIO2[1]
    pe = s.fma(nf, s.const(_PIO2[1], f64), -p)                  # n*P2 = p + pe exactly
    hi = r1 - p
    lo = ((r1 - hi) - p) - (pe + nf * _PIO2[2])                 # (|r1| >= |p|)
    r_hi = hi + lo
    return n, r_hi, lo - (r_hi - hi)


def _ksin(s, x, y):
    z = x * x
    v = z * x
    r = V.EVAL(s, z, _SIN[1:])
    return x - ((z * (y * 0.5 - v * r) - y) - v * _SIN[0])


def _kcos(s, x, y):
    z = x * x
    w = z * z
    r = z * V.EVAL(s, z, _COS[:3]) + w * w * V.EVAL(s, z, _COS[3:])
    hz = z * 0.5
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + (z * r - x * y))


def _sincos(s, x, cos: bool):
    C = _consts(x)
    f64 = D.float64
    ax = s.abs(x)
    ax64 = s.cast(ax, f64)
    n1, h1, l1 = _cody_waite(s, s.select(ax64 < _CW_LIMIT, ax64, s.const(0.0, f64)))
    n2, h2, l2 = _payne_hanek(s, ax, C)
    small = ax64 < _CW_LIMIT
    n = s.select(small, n1, n2)
    r_hi, r_lo = s.select(small, h1, h2), s.select(small, l1, l2)
    if cos:
        n = n + 1                                        # cos(x) = sin(x + pi/2)
    one = s.const(1, D.int64)
    odd = s.eq(s.bit_and(n, one), one)
    res = s.select(odd, _kcos(s, r_hi, r_lo), _ksin(s, r_hi, r_lo))
    neg = s.eq(s.bit_and(n, s.const(2, D.int64)), s.const(2, D.int64))
    if not cos:                                          # sin(-x) = -sin(x), -0.0 included
        neg = s.b.xor(neg.v, s.lt(s.bitcast(x, C.itype), s.const(0, C.itype)).v)
        neg = s.wrap(neg, D.bool_)
    res = s.cast(s.select(neg, -res, res), C.dtype)
    return s.select(ax < np.inf, res, s.const(np.nan, C.dtype))   # inf, NaN -> NaN


def sin(s, x):
    """sin(x), within about 1 ulp for every finite x; sin(±0) = ±0, inf/NaN -> NaN."""
    return _sincos(s, x, False)


def cos(s, x):
    """cos(x), within about 1 ulp for every finite x; inf/NaN -> NaN."""
    return _sincos(s, x, True)


# ------------------------------------------------------------------ atan
# Cephes' atan (S. L. Moshier, atan.c): |x| > tan(3 pi/8): pi/2 + atan(-1/|x|);
# |x| > 0.66: pi/4 + atan((|x| - 1) / (|x| + 1)); then t + t z P(z)/Q(z), z = t**2,
# with the part of pi/2 (pi/4) below float64's precision added back last. Always in
# float64 (float32 inputs are widened and the result rounded once: 0.5 ulp); about
# 1 ulp in float64. The reduction is one division num/den chosen by selects.
_ATAN_P = (-6.485021904942025371773E1, -1.228866684490136173410E2,
           -7.500855792314704667340E1, -1.615753718733365076637E1,
           -8.750608600031904122785E-1)                      # P(z), lowest degree first
_ATAN_Q = (1.945506571482613964425E2, 4.853903996359136964868E2, 4.328810604912902668951E2,
           1.650270098316988542046E2, 2.485846490142306297962E1, 1.0)
_ATAN_T3P8 = 2.41421356237309504880                         # tan(3 pi / 8)
_ATAN_MOREBITS = 6.123233995736765886130E-17                # pi/2 - float64(pi/2)


def atan(s, x):
    """atan(x): odd, atan(±0) = ±0, atan(±inf) = ±pi/2, NaN -> NaN; tiny x -> x."""
    _consts(x)
    f64 = D.float64
    xd = s.cast(x, f64) if x.dtype != f64 else x
    a = s.abs(xd)
    big = a > _ATAN_T3P8
    mid = s.and_(s.not_(big), a > 0.66)
    one = s.const(1.0, f64)
    num = s.select(big, s.const(-1.0, f64), s.select(mid, a - 1.0, a))
    den = s.select(big, a, s.select(mid, a + 1.0, one))
    t = num / den
    zero = s.const(0.0, f64)
    base = s.select(big, s.const(np.pi / 2, f64), s.select(mid, s.const(np.pi / 4, f64), zero))
    more = s.select(big, s.const(_ATAN_MOREBITS, f64),
                    s.select(mid, s.const(_ATAN_MOREBITS / 2, f64), zero))
    z = t * t
    r = s.fmuladd(t, z * _horner(s, z, _ATAN_P) / _horner(s, z, _ATAN_Q), t)
    res = base + (r + more)
    res = s.copysign(res, xd)
    return s.cast(res, x.dtype) if x.dtype != f64 else res
