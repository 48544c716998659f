"""Loop-nest and index-arithmetic helpers for emitting kernels (in the style
of numba's ``cgutils.for_range``)."""
from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

from ...ir import dtypes as D
from .scalar import I1, I64, SV


@contextmanager
def for_step(b: ir.IRBuilder, start, stop, step=1, name: str = "i"):
    """``for i in range(start, stop, step)`` over non-negative i64 indices
    (``step > 0``; ints or i64 values): yields the index; the builder is left
    after the loop when the block exits."""
    start, stop, step = (ir.Constant(I64, v) if isinstance(v, int) else v
                         for v in (start, stop, step))
    fn = b.function
    pre = b.block
    cond = fn.append_basic_block(f"{name}.cond")
    body = fn.append_basic_block(f"{name}.body")
    end = fn.append_basic_block(f"{name}.end")
    b.branch(cond)
    b.position_at_end(cond)
    i = b.phi(I64, name=name)
    i.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, stop), body, end)
    b.position_at_end(body)
    yield i
    nxt = b.add(i, step, name=f"{name}.next", flags=("nuw", "nsw"))
    i.add_incoming(nxt, b.block)
    b.branch(cond)
    b.position_at_end(end)


def for_range(b: ir.IRBuilder, count, name: str = "i"):
    """``for i in range(count)``: yields the i64 index."""
    return for_step(b, 0, count, 1, name)


def for_nest(b: ir.IRBuilder, shape, name: str = "i"):
    """Nested loops over ``shape`` (outermost first); yields the index list."""
    return for_ranges(b, [(0, n) for n in shape], name)


@contextmanager
def for_ranges(b: ir.IRBuilder, ranges, name: str = "i"):
    """Nested loops over ``[lo, hi)`` per axis (ints or i64 values); yields
    the index list."""
    def val(v):
        return ir.Constant(I64, v) if isinstance(v, int) else v
    idx, cms = [], []
    try:
        for d, (lo, hi) in enumerate(ranges):
            if isinstance(lo, int) and lo == 0:
                cm = for_range(b, hi, f"{name}{d}")
                idx.append(cm.__enter__())
            else:
                cm = for_range(b, b.sub(val(hi), val(lo)), f"{name}{d}")
                idx.append(b.add(cm.__enter__(), val(lo)))
            cms.append(cm)
        yield idx
    finally:
        for cm in reversed(cms):
            cm.__exit__(None, None, None)


@contextmanager
def if_then(b: ir.IRBuilder, cond, name: str = "then"):
    """``if cond: ...`` (the builder continues after the block)."""
    fn = b.function
    then = fn.append_basic_block(name)
    after = fn.append_basic_block(f"{name}.end")
    b.cbranch(cond, then, after)
    b.position_at_end(then)
    yield
    b.branch(after)
    b.position_at_end(after)


class IndexBuilder:
    """i64 index arithmetic: the index algebra of ``ops/index.py`` (for the
    ``index_map`` rules of movement ops) and the ``lower_at`` rules of the
    other index ops. Conditions are i1 values."""

    def __init__(self, b: ir.IRBuilder, s):
        self.b = b
        self.s = s
        self._consts = {}
        self._merged = {}         # id(first digit) -> (linear index, digits, their extents)

    def const(self, k: int):
        c = self._consts.get(k)
        if c is None:
            c = self._consts[k] = ir.Constant(I64, int(k))
        return c

    def _c(self, v):
        return self.const(v) if isinstance(v, int) else v

    def add(self, a, b):
        a, b = self._c(a), self._c(b)
        if isinstance(b, ir.Constant) and b.constant == 0:
            return a
        if isinstance(a, ir.Constant) and a.constant == 0:
            return b
        return self.b.add(a, b)

    def sub(self, a, b):
        a, b = self._c(a), self._c(b)
        if isinstance(b, ir.Constant) and b.constant == 0:
            return a
        return self.b.sub(a, b)

    def mul(self, a, b):
        a, b = self._c(a), self._c(b)
        for x, y in ((a, b), (b, a)):
            if isinstance(y, ir.Constant):
                if y.constant == 1:
                    return x
                if y.constant == 0:
                    return self.const(0)
        return self.b.mul(a, b)

    def sdiv(self, a, b):
        a, b = self._c(a), self._c(b)
        if isinstance(b, ir.Constant) and b.constant == 1:
            return a
        return self.b.sdiv(a, b)

    def udiv(self, a, b):
        a, b = self._c(a), self._c(b)
        if isinstance(b, ir.Constant) and b.constant == 1:
            return a
        return self.b.udiv(a, b)

    def urem(self, a, b):
        a, b = self._c(a), self._c(b)
        if isinstance(b, ir.Constant) and b.constant == 1:
            return self.const(0)
        return self.b.urem(a, b)

    def floordiv(self, a, k: int):
        """``a // k`` for ``a >= 0`` (the algebra's contract)."""
        return self.udiv(a, k)

    def mod(self, a, k: int):
        return self.urem(a, k)

    def eq(self, a, b): return self.b.icmp_signed("==", self._c(a), self._c(b))
    def lt(self, a, b): return self.b.icmp_signed("<", self._c(a), self._c(b))
    def ge(self, a, b): return self.b.icmp_signed(">=", self._c(a), self._c(b))
    def and_(self, a, b): return self.b.and_(a, b)

    def select(self, c, a, b):
        return self.b.select(c, self._c(a), self._c(b))

    def clamp(self, v, lo: int, hi: int):
        v = self.select(self.lt(v, lo), lo, v)
        return self.select(self.lt(self._c(hi), v), hi, v)

    def linearize(self, idx, shape):
        """Row-major linear offset of ``idx`` in ``shape``. A run of digits
        that :meth:`merge` made from one linear index, over the same extents,
        contributes that index itself (no division, no multiplication)."""
        lin = self.const(0)
        p = 0
        while p < len(idx):
            g = self._merged.get(id(idx[p]))
            if g is not None:
                t, digits, dims = g
                r = len(digits)
                if tuple(shape[p:p + r]) == dims and all(a is b for a, b in zip(idx[p:p + r],
                                                                                 digits)):
                    size = 1
                    for n in dims:
                        size *= n
                    lin = self.add(self.mul(lin, size), t)
                    p += r
                    continue
            lin = self.add(self.mul(lin, shape[p]), idx[p])
            p += 1
        return lin

    def merge(self, t, dims) -> list:
        """The digits of linear index ``t`` over extents ``dims`` (row-major),
        remembered so that :meth:`linearize` folds them back into ``t``: a
        loop over the product of several contiguous axes addresses memory
        as one axis, and the divisions are only emitted for the uses that
        need a digit alone (LLVM drops the others)."""
        digits = self.delinearize(t, dims)
        if len(dims) > 1:
            self._merged[id(digits[0])] = (t, digits, tuple(dims))
        return digits

    def delinearize(self, lin, shape):
        """Split a row-major linear offset into an index of ``shape``."""
        parts = [None] * len(shape)
        nonunit = [k for k, n in enumerate(shape) if n != 1]
        for k, n in enumerate(shape):
            if n == 1:
                parts[k] = self.const(0)
        for pos, k in enumerate(reversed(nonunit)):
            if pos == len(nonunit) - 1:
                parts[k] = lin
            else:
                parts[k] = self.urem(lin, shape[k])
                lin = self.udiv(lin, shape[k])
        return parts

    def as_bool(self, v) -> SV:
        assert v.type == I1
        return SV(v, D.bool_, self.s)

    def scalar(self, v) -> SV:
        """An index as an int64 scalar value."""
        return SV(v, D.int64, self.s)
