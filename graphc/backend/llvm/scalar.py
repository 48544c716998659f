"""The scalar-expression builder used by every elementwise lowering rule.

Lowering rules never touch llvmlite directly: they receive scalar values
(:class:`SV`, an LLVM value tagged with its numpy dtype) and a builder ``s``
whose methods (``s.exp(x)``, ``s.select(c, a, b)``, ``s.cast(x, dt)``, …)
and operators (``x * 2.0 + y``, ``x > 0``) emit LLVM IR. Because the rules
only describe one element, the same rule is used inside any loop nest, fused
with its neighbours, and vectorized by LLVM.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from ...errors import GraphcError
from ...ir import dtypes as D
from . import vecmath, vecmath_trig

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()
PTR = ir.PointerType()

_REG = {D.float32: F32, D.float64: F64, D.int32: I32, D.int64: I64, D.bool_: I1}
_MEM = {D.float32: F32, D.float64: F64, D.int32: I32, D.int64: I64, D.bool_: I8}


def reg_type(dt: np.dtype) -> ir.Type:
    """LLVM type of a value of dtype ``dt`` in registers (bool is i1)."""
    return _REG[dt]


def mem_type(dt: np.dtype) -> ir.Type:
    """LLVM type of an element of dtype ``dt`` in memory (bool is i8, as numpy)."""
    return _MEM[dt]


class LoweringError(GraphcError, TypeError):
    """A lowering rule used a scalar value of the program as a Python value."""


class SV:
    """A scalar value: an LLVM value with the numpy dtype it represents."""

    __slots__ = ("v", "dtype", "s")

    def __init__(self, v, dtype, s):
        self.v, self.dtype, self.s = v, dtype, s

    def _c(self, o):
        return o if isinstance(o, SV) else self.s.const(o, self.dtype)

    def __add__(self, o): return self.s.add(self, self._c(o))
    def __radd__(self, o): return self.s.add(self._c(o), self)
    def __sub__(self, o): return self.s.sub(self, self._c(o))
    def __rsub__(self, o): return self.s.sub(self._c(o), self)
    def __mul__(self, o): return self.s.mul(self, self._c(o))
    def __rmul__(self, o): return self.s.mul(self._c(o), self)
    def __truediv__(self, o): return self.s.div(self, self._c(o))
    def __rtruediv__(self, o): return self.s.div(self._c(o), self)
    def __neg__(self): return self.s.neg(self)
    def __gt__(self, o): return self.s.gt(self, self._c(o))
    def __lt__(self, o): return self.s.lt(self, self._c(o))
    def __ge__(self, o): return self.s.ge(self, self._c(o))
    def __le__(self, o): return self.s.le(self, self._c(o))
    # ``==``/``!=`` build comparisons like ``<``, so ``x == 0`` is a bool value of
    # the program, not Python's identity test (which was silently False)
    def __eq__(self, o): return self.s.eq(self, self._c(o))  # type: ignore[override]
    def __ne__(self, o): return self.s.ne(self, self._c(o))  # type: ignore[override]
    __hash__ = object.__hash__

    # A scalar value exists only when the compiled code runs: Python control
    # flow on it (``x if x > 0 else -x``, ``and``/``or``/``not``, ``max(a, b)``,
    # ``int(x)``, ``range(x)``, iteration, ``math.exp(x)``) would pick one
    # branch once, at lowering time, and silently compile the wrong program.
    def _misuse(self, what: str, instead: str):
        raise LoweringError(f"{self._where()}{what} a scalar value of the program ({self.dtype}) "
                            f"is not known while the code is being built; {instead}")

    def _where(self) -> str:
        n = getattr(self.s.kernel, "current", None)
        return f"the lowering of op {n.op!r} (node {n.name}): " if n is not None else ""

    def __bool__(self):
        self._misuse("the truth value (if/and/or/not/while, max/min) of",
                     "use s.select(cond, a, b) (and s.and_/s.or_/s.not_, s.maximum/s.minimum) "
                     "to choose between values")

    def __index__(self):
        self._misuse("an integer index/size from", "use the value in arithmetic with the "
                     "builder instead")

    def __int__(self):
        self._misuse("int() of", "use s.cast(x, 'int64') to convert inside the program")

    def __float__(self):
        self._misuse("float() (or a math.* function) of", "use s.cast(x, 'float64') and the "
                     "builder's math functions (s.exp, s.log, s.sqrt, ...)")

    def __complex__(self):
        self._misuse("complex() of", "graphc has no complex dtype")

    def __iter__(self):
        self._misuse("iterating over", "a scalar value has no elements")

    def __len__(self):
        self._misuse("len() of", "a scalar value has no elements")

    __array_ufunc__ = None       # np.float32(2) * x -> x.__rmul__; np.exp(x) is a TypeError

    def __array__(self, *a, **k):
        self._misuse("a numpy array of", "use the builder's functions (s.exp, s.select, ...) "
                     "instead of numpy's")


class ScalarBuilder:
    """Emits scalar LLVM IR for elementwise rules. ``b`` is an ``ir.IRBuilder``."""

    def __init__(self, b: ir.IRBuilder, module: ir.Module, kernel=None):
        self.b = b
        self.module = module
        self.kernel = kernel     # the kernel being emitted (for error_if)
        self.fp_flags = ()       # fast-math flags for float arithmetic (set for reductions)

    # -- values -------------------------------------------------------------
    def wrap(self, v, dtype) -> SV:
        return SV(v, dtype, self)

    def const(self, value, dtype) -> SV:
        dtype = np.dtype(dtype)
        t = reg_type(dtype)
        if D.is_float(dtype):
            c = ir.Constant(t, float(np.asarray(value, dtype=dtype)))
        elif D.is_bool(dtype):
            c = ir.Constant(t, int(bool(value)))
        else:
            c = ir.Constant(t, int(value))
        return SV(c, dtype, self)

    def _same(self, a: SV, b: SV, what: str):
        if a.dtype != b.dtype:
            raise TypeError(f"scalar {what}: dtypes differ ({a.dtype} vs {b.dtype})")

    # -- arithmetic -----------------------------------------------------------
    def _arith(self, fop, iop, a: SV, b: SV, what):
        self._same(a, b, what)
        if D.is_float(a.dtype):
            return SV(getattr(self.b, fop)(a.v, b.v, flags=self.fp_flags), a.dtype, self)
        if D.is_bool(a.dtype):
            raise TypeError(f"scalar {what} on bool")
        return SV(getattr(self.b, iop)(a.v, b.v), a.dtype, self)

    def add(self, a, b): return self._arith("fadd", "add", a, b, "add")
    def sub(self, a, b): return self._arith("fsub", "sub", a, b, "sub")
    def mul(self, a, b): return self._arith("fmul", "mul", a, b, "mul")

    def div(self, a, b):
        self._same(a, b, "div")
        if not D.is_float(a.dtype):
            raise TypeError("scalar div needs floats")
        return SV(self.b.fdiv(a.v, b.v), a.dtype, self)

    def neg(self, a):
        if D.is_float(a.dtype):
            return SV(self.b.fneg(a.v), a.dtype, self)
        return SV(self.b.sub(ir.Constant(a.v.type, 0), a.v), a.dtype, self)

    def fma(self, a, b, c):
        if D.is_float(a.dtype):
            return self._intrinsic("llvm.fma", a, b, c)
        return a * b + c

    def fmuladd(self, a, b, c):
        """``a * b + c``, fused into one FMA where the target has it (``llvm.fmuladd``:
        never a libm call, unlike ``llvm.fma`` on targets without FMA)."""
        self._float(a, "fmuladd")
        return self._intrinsic("llvm.fmuladd", a, b, c)

    def copysign(self, a, b):
        """``|a|`` with the sign bit of ``b``."""
        self._float(a, "copysign")
        return self._intrinsic("llvm.copysign", a, b)

    # -- bit patterns (for the math functions in vecmath.py) --------------------
    def bitcast(self, a, dt) -> SV:
        """Reinterpret the bits of ``a`` as ``dt`` (same width: float32<->int32, float64<->int64)."""
        dt = np.dtype(dt)
        if dt.itemsize != a.dtype.itemsize or D.is_bool(dt) or D.is_bool(a.dtype):
            raise TypeError(f"scalar bitcast: {a.dtype} -> {dt} changes the width")
        return SV(self.b.bitcast(a.v, reg_type(dt)), dt, self)

    def ldexp(self, a, n) -> SV:
        """``a * 2**n`` rounded once (``llvm.ldexp``; one ``vscalefps`` per vector on
        AVX-512, a libm call elsewhere: vecmath uses it only where the host has it).
        ``n`` is an integer SV, narrowed to i32 (callers keep it far below 2**31)."""
        self._float(a, "ldexp")
        self._int(n, "ldexp")
        nv = n.v if n.v.type == I32 else self.b.trunc(n.v, I32)
        t = a.v.type
        fname = f"llvm.ldexp.{'f32' if t == F32 else 'f64'}.i32"
        fn = self.module.globals.get(fname)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(t, [t, I32]), fname)
        return SV(self.b.call(fn, [a.v, nv]), a.dtype, self)

    def _int(self, a, what):
        if not D.is_int(a.dtype):
            raise TypeError(f"scalar {what} needs an integer, got {a.dtype}")

    def shl(self, a, k: int):
        """``a << k`` (bits shifted out are lost; no poison flags)."""
        self._int(a, "shl"); return SV(self.b.shl(a.v, ir.Constant(a.v.type, k)), a.dtype, self)

    def ashr(self, a, k: int):
        """Arithmetic (sign-filling) ``a >> k``."""
        self._int(a, "ashr"); return SV(self.b.ashr(a.v, ir.Constant(a.v.type, k)), a.dtype, self)

    def bit_and(self, a, b):
        self._int(a, "bit_and"); self._same(a, b, "bit_and")
        return SV(self.b.and_(a.v, b.v), a.dtype, self)

    def ult(self, a, b):
        """Float ``a < b`` or either is NaN (LLVM's unordered less-than)."""
        self._same(a, b, "ult")
        return SV(self.b.fcmp_unordered("<", a.v, b.v), D.bool_, self)

    # -- comparisons and selection -------------------------------------------
    def _cmp(self, fop, iop, a, b):
        self._same(a, b, "comparison")
        if D.is_float(a.dtype):
            return SV(self.b.fcmp_ordered(fop, a.v, b.v) if fop != "!=" else
                      self.b.fcmp_unordered(fop, a.v, b.v), D.bool_, self)
        if D.is_bool(a.dtype):
            return SV(self.b.icmp_unsigned(iop, a.v, b.v), D.bool_, self)
        return SV(self.b.icmp_signed(iop, a.v, b.v), D.bool_, self)

    def gt(self, a, b): return self._cmp(">", ">", a, b)
    def lt(self, a, b): return self._cmp("<", "<", a, b)
    def ge(self, a, b): return self._cmp(">=", ">=", a, b)
    def le(self, a, b): return self._cmp("<=", "<=", a, b)
    def eq(self, a, b): return self._cmp("==", "==", a, b)
    def ne(self, a, b): return self._cmp("!=", "!=", a, b)

    def isnan(self, a):
        if not D.is_float(a.dtype):
            return self.const(False, D.bool_)
        return SV(self.b.fcmp_unordered("uno", a.v, a.v), D.bool_, self)

    def select(self, c: SV, a: SV, b: SV) -> SV:
        self._same(a, b, "select")
        return SV(self.b.select(c.v, a.v, b.v), a.dtype, self)

    def and_(self, a, b): return SV(self.b.and_(a.v, b.v), D.bool_, self)
    def or_(self, a, b): return SV(self.b.or_(a.v, b.v), D.bool_, self)
    def not_(self, a): return SV(self.b.xor(a.v, ir.Constant(I1, 1)), D.bool_, self)

    def maximum(self, a, b):
        """numpy's maximum: NaN in either operand gives NaN."""
        if D.is_float(a.dtype):
            pick = self.b.fcmp_unordered(">", a.v, b.v)   # a > b or either is NaN
            r = self.b.select(pick, a.v, b.v)
            return SV(self.b.select(self.b.fcmp_unordered("uno", b.v, b.v), b.v, r), a.dtype, self)
        return self.select(self.ge(a, b), a, b)

    def fmaximum(self, a, b):
        """maximum through ``llvm.maximum`` (NaN-propagating, vectorizes as a
        reduction); integers and bools as :meth:`maximum`."""
        if D.is_float(a.dtype):
            return self._intrinsic("llvm.maximum", a, b)
        return self.maximum(a, b)

    def fminimum(self, a, b):
        """minimum through ``llvm.minimum`` (NaN-propagating, vectorizes as a
        reduction; -0.0 counts as less than +0.0); integers and bools as
        :meth:`minimum`."""
        if D.is_float(a.dtype):
            return self._intrinsic("llvm.minimum", a, b)
        return self.minimum(a, b)

    def minimum(self, a, b):
        if D.is_float(a.dtype):
            pick = self.b.fcmp_unordered("<", a.v, b.v)
            r = self.b.select(pick, a.v, b.v)
            return SV(self.b.select(self.b.fcmp_unordered("uno", b.v, b.v), b.v, r), a.dtype, self)
        return self.select(self.le(a, b), a, b)

    # -- integer-valued division, as numpy ------------------------------------
    def _divmod(self, a, b):
        """numpy's ``(floor_divide(a, b), remainder(a, b))``, branch-free.

        Floats follow numpy's npy_divmod (C fmod, then the quotient snapped to
        an integer; a zero divisor gives ``a / b`` and ``fmod(a, 0)`` = NaN).
        Integers never trap: a zero divisor gives 0 and 0 (numpy's result),
        ``MIN // -1`` wraps to MIN; ``sdiv``/``srem`` only ever see a divisor
        other than 0 and -1."""
        self._same(a, b, "floor_divide")
        B, t = self.b, a.v.type
        if D.is_bool(a.dtype):
            raise TypeError("scalar floor_divide on bool")
        if D.is_float(a.dtype):
            zero, one = ir.Constant(t, 0.0), ir.Constant(t, 1.0)
            fmod = B.frem(a.v, b.v)
            q = B.fdiv(a.v, b.v)
            div = B.fdiv(B.fsub(a.v, fmod), b.v)
            mod_nz = B.fcmp_unordered("!=", fmod, zero)          # C truth: non-zero or NaN
            fix = B.and_(mod_nz, B.xor(B.fcmp_ordered("<", b.v, zero),
                                       B.fcmp_ordered("<", fmod, zero)))
            mod = B.select(fix, B.fadd(fmod, b.v), fmod)
            div = B.select(fix, B.fsub(div, one), div)
            mod = B.select(mod_nz, mod, self.copysign(SV(zero, a.dtype, self), b).v)
            fl = self.floor(SV(div, a.dtype, self)).v
            fl = B.select(B.fcmp_ordered(">", B.fsub(div, fl), ir.Constant(t, 0.5)),
                          B.fadd(fl, one), fl)
            fd = B.select(B.fcmp_unordered("!=", div, zero), fl,
                          self.copysign(SV(zero, a.dtype, self), SV(q, a.dtype, self)).v)
            b_zero = B.fcmp_ordered("==", b.v, zero)
            return (SV(B.select(b_zero, q, fd), a.dtype, self),
                    SV(B.select(b_zero, fmod, mod), a.dtype, self))
        zero, one, m1 = ir.Constant(t, 0), ir.Constant(t, 1), ir.Constant(t, -1)
        b_zero = B.icmp_signed("==", b.v, zero)
        b_m1 = B.icmp_signed("==", b.v, m1)
        sb = B.select(B.or_(b_zero, b_m1), one, b.v)
        q, r = B.sdiv(a.v, sb), B.srem(a.v, sb)
        fix = B.and_(B.icmp_signed("!=", r, zero),
                     B.xor(B.icmp_signed("<", r, zero), B.icmp_signed("<", sb, zero)))
        q = B.select(fix, B.sub(q, one), q)
        r = B.select(fix, B.add(r, sb), r)
        q = B.select(b_m1, B.sub(zero, a.v), q)               # wraps: MIN // -1 = MIN
        q = B.select(b_zero, zero, q)
        return SV(q, a.dtype, self), SV(r, a.dtype, self)     # r is 0 for b in (0, -1)

    def floor_divide(self, a, b): return self._divmod(a, b)[0]
    def mod(self, a, b): return self._divmod(a, b)[1]

    # -- bitwise (logical on bools) ------------------------------------------------
    def _bits(self, a, what):
        if D.is_float(a.dtype):
            raise TypeError(f"scalar {what} needs an integer or bool, got {a.dtype}")

    def bitwise(self, op: str, a, b):
        """``a & b``, ``a | b`` or ``a ^ b`` (op "and", "or", "xor") on integers or bools."""
        self._bits(a, op); self._same(a, b, op)
        return SV({"and": self.b.and_, "or": self.b.or_, "xor": self.b.xor}[op](a.v, b.v),
                  a.dtype, self)

    def invert(self, a):
        """``~a``: bitwise not of an integer, logical not of a bool."""
        self._bits(a, "invert")
        return SV(self.b.xor(a.v, ir.Constant(a.v.type, -1 if D.is_int(a.dtype) else 1)),
                  a.dtype, self)

    # -- math functions -------------------------------------------------------
    def _intrinsic(self, name, *args: SV) -> SV:
        t = args[0].v.type
        fname = f"{name}.{'f32' if t == F32 else 'f64'}"
        fn = self.module.globals.get(fname)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(t, [t] * len(args)), fname)
        return SV(self.b.call(fn, [a.v for a in args]), args[0].dtype, self)

    def _float(self, a, what):
        if not D.is_float(a.dtype):
            raise TypeError(f"scalar {what} needs a float, got {a.dtype}")

    # exp, log, tanh, sigmoid and float32 pow are branch-free polynomials
    # written in IR (vecmath.py), so loops that use them vectorize; with
    # ``vector_math = False`` they are LLVM intrinsics, which become scalar
    # libm calls (kept for A/B benchmarks and tests).
    vector_math = True

    def exp(self, a):
        self._float(a, "exp")
        return vecmath.exp(self, a) if self.vector_math else self._intrinsic("llvm.exp", a)

    def log(self, a):
        self._float(a, "log")
        return vecmath.log(self, a) if self.vector_math else self._intrinsic("llvm.log", a)

    def tanh(self, a):
        self._float(a, "tanh")
        return vecmath.tanh(self, a) if self.vector_math else self._intrinsic("llvm.tanh", a)

    def sqrt(self, a): self._float(a, "sqrt"); return self._intrinsic("llvm.sqrt", a)
    def floor(self, a): self._float(a, "floor"); return self._intrinsic("llvm.floor", a)
    def ceil(self, a): self._float(a, "ceil"); return self._intrinsic("llvm.ceil", a)

    def roundeven(self, a):
        """Round to the nearest integer, ties to even (numpy's ``round``)."""
        self._float(a, "roundeven"); return self._intrinsic("llvm.roundeven", a)

    # sin and cos: vecmath's polynomials (Cody-Waite reduction, and Payne-Hanek
    # for large arguments); llvm.sin/llvm.cos (libm calls) without vector_math
    def sin(self, a):
        self._float(a, "sin")
        return vecmath_trig.sin(self, a) if self.vector_math else self._intrinsic("llvm.sin", a)

    def cos(self, a):
        self._float(a, "cos")
        return vecmath_trig.cos(self, a) if self.vector_math else self._intrinsic("llvm.cos", a)

    def atan(self, a):
        self._float(a, "atan")
        return vecmath_trig.atan(self, a) if self.vector_math else self._intrinsic("llvm.atan", a)

    def pow(self, a, b):
        self._same(a, b, "pow")
        if D.is_float(a.dtype):
            if self.vector_math and vecmath.has_pow(a.dtype):
                return vecmath.pow(self, a, b)
            return self._intrinsic("llvm.pow", a, b)
        return self._ipow(a, b)

    def abs(self, a):
        if D.is_float(a.dtype):
            return self._intrinsic("llvm.fabs", a)
        return self.select(self.lt(a, self.const(0, a.dtype)), self.neg(a), a)

    def log1p(self, a):
        return self.log(a + 1.0)

    def sigmoid(self, a):
        self._float(a, "sigmoid")
        if self.vector_math:
            return vecmath.sigmoid(self, a)
        one = self.const(1.0, a.dtype)
        return one / (one + self.exp(-a))

    def _ipow(self, a, b):
        """Integer power by repeated squaring; a negative exponent is an error."""
        t = a.v.type
        fname = f"graphc.ipow.i{t.width}"
        fn = self.module.globals.get(fname)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(t, [t, t]), fname)
            fn.linkage = "internal"
            bb = ir.IRBuilder(fn.append_basic_block("entry"))
            base, e = fn.args
            loop = fn.append_basic_block("loop")
            done = fn.append_basic_block("done")
            bb.branch(loop)
            lb = ir.IRBuilder(loop)
            r = lb.phi(t); x = lb.phi(t); k = lb.phi(t)
            r.add_incoming(ir.Constant(t, 1), fn.entry_basic_block)
            x.add_incoming(base, fn.entry_basic_block)
            k.add_incoming(e, fn.entry_basic_block)
            odd = lb.trunc(k, I1)
            r2 = lb.select(odd, lb.mul(r, x), r)
            x2 = lb.mul(x, x)
            k2 = lb.ashr(k, ir.Constant(t, 1))
            r.add_incoming(r2, loop); x.add_incoming(x2, loop); k.add_incoming(k2, loop)
            lb.cbranch(lb.icmp_signed(">", k2, ir.Constant(t, 0)), loop, done)
            db = ir.IRBuilder(done)
            res = db.phi(t)
            res.add_incoming(r2, loop)
            db.ret(res)
        zero = self.const(0, a.dtype)
        self.error_if(self.lt(b, zero), "integers to negative integer powers are not allowed")
        safe_b = self.select(self.lt(b, zero), zero, b)
        isz = self.eq(safe_b, zero)
        r = SV(self.b.call(fn, [a.v, self.select(isz, self.const(1, a.dtype), safe_b).v]), a.dtype, self)
        return self.select(isz, self.const(1, a.dtype), r)

    # -- conversions ------------------------------------------------------------
    def cast(self, a: SV, dt) -> SV:
        dt = np.dtype(dt)
        src, b = a.dtype, self.b
        if src == dt:
            return a
        t = reg_type(dt)
        if D.is_bool(dt):
            if D.is_float(src):
                return SV(b.fcmp_unordered("!=", a.v, ir.Constant(a.v.type, 0.0)), dt, self)
            return SV(b.icmp_unsigned("!=", a.v, ir.Constant(a.v.type, 0)), dt, self)
        if D.is_bool(src):
            return SV(b.uitofp(a.v, t) if D.is_float(dt) else b.zext(a.v, t), dt, self)
        if D.is_float(src) and D.is_float(dt):
            return SV(b.fpext(a.v, t) if dt.itemsize > src.itemsize else b.fptrunc(a.v, t), dt, self)
        if D.is_float(src):      # float -> int: saturating, NaN -> 0 (never poison)
            fname = f"llvm.fptosi.sat.i{t.width}.{'f32' if src == D.float32 else 'f64'}"
            fn = self.module.globals.get(fname) or ir.Function(
                self.module, ir.FunctionType(t, [a.v.type]), fname)
            return SV(b.call(fn, [a.v]), dt, self)
        if D.is_float(dt):
            return SV(b.sitofp(a.v, t), dt, self)
        return SV(b.sext(a.v, t) if dt.itemsize > src.itemsize else b.trunc(a.v, t), dt, self)

    # -- checks -----------------------------------------------------------------
    def error_if(self, cond: SV, message: str) -> None:
        """Record a run-time error (raised after the call) when ``cond`` holds."""
        if self.kernel is None:
            raise RuntimeError("error_if outside a kernel")
        self.kernel.error_if(cond, message)
