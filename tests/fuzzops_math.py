"""Elementwise ops of the fuzz generator (a mixin of fuzzgen.Gen): unary
float and numeric functions, arithmetic, comparisons, bitwise and integer
division, ``where``, casts. Each ``op_*`` returns a new Val, or None when it
does not apply to what it drew.
"""
from __future__ import annotations

import operator

import numpy as np
from fuzzcase import F64, I64, MAX_SIZE, ND_ULPS, B, _bcast, _finish, _round, is_float, size_of, unit

import graphc as gc

# functions fuzzed on inputs clipped into (lo, hi), where their slope is at most the third
_DOMAIN = {"tan": (-1.2, 1.2, 8.0), "asin": (-0.8, 0.8, 1.7), "acos": (-0.8, 0.8, 1.7),
           "atanh": (-0.8, 0.8, 2.8), "acosh": (1.2, 50.0, 1.5), "sinh": (-20.0, 20.0, None),
           "cosh": (-20.0, 20.0, None)}


class ElementwiseOps:
    def positive(self, a):
        """``a * a + 0.5``: positive and well away from zero (grad mode)."""
        return self.add(gc.mul(a.node, a.node) + 0.5, a.val * a.val + 0.5, 0,
                        f"{a.name} * {a.name} + 0.5", [a])

    def op_unary_float(self):
        name = self.choice(["exp", "log", "sqrt", "tanh", "sigmoid"])
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B:
            return None
        if self.mode == "grad" and name in ("log", "sqrt"):
            # a positive argument, well away from zero
            a = self.positive(a)
        x = a.val if is_float(a.dtype) else a.val.astype(F64)
        ea = a.err
        with np.errstate(all="ignore"):
            if name == "exp":
                out = np.exp(x)
                err = np.abs(out) * np.expm1(ea) + ND_ULPS * unit(out.dtype) * np.abs(out)
            elif name == "log":
                out = np.log(x)
                err = np.where(np.abs(x) > 2 * ea, ea / np.abs(x), np.inf)
                err = err + ND_ULPS * unit(out.dtype) * np.abs(out)
            elif name == "sqrt":
                out = np.sqrt(x)
                err = np.where(np.abs(x) > 2 * ea, ea / (2 * np.sqrt(np.abs(x))), np.inf)
                err = np.where(ea > 0, err + 2 * unit(out.dtype) * np.abs(out), 0.0)
            elif name == "tanh":
                out = np.tanh(x)
                err = ea + ND_ULPS * unit(out.dtype) * np.abs(out)
            else:
                one = x.dtype.type(1)
                out = one / (one + np.exp(-x))
                err = ea / 4 + 2 * ND_ULPS * unit(out.dtype) * np.abs(out)
        inexact = name != "sqrt"
        node = getattr(gc, name)(a.node)
        return self.add(node, out, _finish(out, err, ea, inexact=inexact), f"gc.{name}({a.name})", [a])

    def op_unary_numeric(self):
        # stop_gradient is not the derivative finite differences see: value mode only
        name = self.choice(["neg", "abs", "relu", "-", "abs()"]
                           + (["stop_gradient"] if self.mode == "value" else []))
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B:
            return None
        with np.errstate(all="ignore"):
            if name in ("neg", "-"):
                out = np.negative(a.val)
            elif name in ("abs", "abs()"):
                out = np.abs(a.val)
            elif name == "relu":
                out = np.maximum(a.val, 0)
            else:
                out = a.val.copy()
        node = {"neg": gc.neg, "-": lambda n: -n, "abs": gc.abs, "abs()": lambda n: abs(n),
                "relu": gc.relu, "stop_gradient": gc.stop_gradient}[name](a.node)
        src = {"-": f"-{a.name}", "abs()": f"abs({a.name})"}.get(name, f"gc.{name}({a.name})")
        return self.add(node, out, _finish(out, a.err, a.err, inexact=False), src, [a])

    def op_binary(self):
        names = ["add", "sub", "mul", "div", "maximum", "minimum", "pow", "+", "-", "*", "/", "**"]
        name = self.choice(names)
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B:
            return None
        bn, bv, be, bsrc, bval = self.operand(a)
        if isinstance(bv, np.ndarray) and bv.dtype == B:
            return None
        swap = self.flip(3)
        xs, ys = (a.val, bv) if not swap else (bv, a.val)
        ex, ey = (a.err, be) if not swap else (be, a.err)
        na, nb = (a.node, bn) if not swap else (bn, a.node)
        sa, sb = (a.name, bsrc) if not swap else (bsrc, a.name)
        op = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}.get(name, name)
        if op == "pow":
            if self.mode == "grad":
                # positive base, exponent a small constant: smooth everywhere
                base = self.positive(a)
                e = float(self.choice([2, 3, 0.5, -1, 1.5]))
                out = base.val ** e
                node = base.node ** e
                return self.add(node, out, 0, f"{base.name} ** {e!r}", [base])
            if self.flip(2) and not swap:
                ys, ey, nb, sb, bval = self.choice([2, 3, 0, 1, 0.5, 2.0]), 0.0, None, None, None
                nb, sb = ys, repr(ys)
        if op == "div" and self.mode == "grad":
            # keep the denominator well away from zero: d * d + 1
            if isinstance(ys, np.ndarray):
                nb, ys, sb = gc.mul(nb, nb) + 1.0, ys * ys + 1.0, f"({sb} * {sb} + 1.0)"
            elif abs(ys) < 0.5:
                ys, nb, sb = 2.0, 2.0, "2.0"
        inputs = [a] + ([bval] if bval is not None else [])
        with np.errstate(all="ignore"):
            try:
                out = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
                       "maximum": np.maximum, "minimum": np.minimum, "pow": np.power}[op](xs, ys)
            except ValueError:                      # integers to negative integer powers
                out = None
        fn = {"add": gc.add, "sub": gc.sub, "mul": gc.mul, "div": gc.div, "maximum": gc.maximum,
              "minimum": gc.minimum, "pow": gc.pow}[op]
        if name in ("+", "-", "*", "/", "**"):
            node = {"+": lambda p, q: p + q, "-": lambda p, q: p - q, "*": lambda p, q: p * q,
                    "/": lambda p, q: p / q, "**": lambda p, q: p ** q}[name](na, nb)
            src = f"{sa} {name} {sb}"
        else:
            node = fn(na, nb)
            src = f"gc.{op}({sa}, {sb})"
        if out is None:
            return self.add(node, np.zeros(node.shape, node.dtype), 0, src, inputs, raises=True)
        out = np.asarray(out)
        if not is_float(out.dtype):
            return self.add(node, out, 0, src, inputs)
        x = np.asarray(xs, np.float64)
        y = np.asarray(ys, np.float64)
        ex, ey = _bcast(ex, out.shape), _bcast(ey, out.shape)
        o = out.astype(np.float64)
        u = unit(out.dtype)
        in_err = ex + ey
        with np.errstate(all="ignore"):
            if op in ("add", "sub"):
                err = _round(out, ex + ey)
            elif op == "mul":
                unsure = (np.isinf(x) & (np.abs(y) <= ey)) | (np.isinf(y) & (np.abs(x) <= ex))
                err = _round(out, np.abs(y) * ex + np.abs(x) * ey + ex * ey)
                err = np.where(unsure, np.inf, err)
            elif op == "div":
                ok = np.abs(y) > 2 * ey
                err = np.where(ok, (ex + np.abs(o) * ey) / np.abs(y) * 2, np.inf)
                err = np.where(in_err > 0, err, 0.0)
                err = _round(out, err)
            elif op in ("maximum", "minimum"):
                err = np.maximum(ex, ey)
            else:   # float pow: inexact
                ok = (np.abs(x) > 2 * ex) & ((x > 0) | ((ex == 0) & (ey == 0)))
                rel = np.abs(y / x) * ex + np.abs(np.log(np.abs(x))) * ey
                err = np.where(ok, np.abs(o) * np.expm1(rel) * 2, np.inf)
                err = np.where(in_err > 0, err, 0.0) + ND_ULPS * u * np.abs(o)
        return self.add(node, out, _finish(out, err, in_err, inexact=op == "pow"), src, inputs)

    def margin_ok(self, diff, e) -> bool:
        with np.errstate(all="ignore"):
            return bool(np.all((e == 0) | (np.isfinite(diff) & (diff > 4 * e + 1e-300))))

    def op_compare(self):
        name = self.choice(["greater", "less", "greater_equal", "less_equal", "equal", "not_equal",
                            ">", "<", ">=", "<="])
        a = self.pick(make=self.leaf)
        bn, bv, be, bsrc, bval = self.operand(a, pred=lambda v: True)
        with np.errstate(all="ignore"):
            diff = np.abs(np.asarray(a.val, np.float64) - np.asarray(bv, np.float64))
        if not self.margin_ok(diff, _bcast(a.err, diff.shape) + _bcast(be, diff.shape)):
            return None
        np_fn = {"greater": np.greater, "less": np.less, "greater_equal": np.greater_equal,
                 "less_equal": np.less_equal, "equal": np.equal, "not_equal": np.not_equal,
                 ">": np.greater, "<": np.less, ">=": np.greater_equal, "<=": np.less_equal}[name]
        out = np_fn(a.val, bv)
        if name in (">", "<", ">=", "<="):
            node = {">": lambda p, q: p > q, "<": lambda p, q: p < q, ">=": lambda p, q: p >= q,
                    "<=": lambda p, q: p <= q}[name](a.node, bn)
            src = f"({a.name} {name} {bsrc})"
        else:
            node = getattr(gc, name)(a.node, bn)
            src = f"gc.{name}({a.name}, {bsrc})"
        return self.add(node, out, 0, src, [a] + ([bval] if bval else []))

    def _exact_of(self, kinds):
        def ok(v):
            return v.exact and v.dtype.kind in kinds
        return ok

    # operator -> (graphc function, numpy reference, Python operator on nodes)
    _EXACT_BINARY = {"&": ("bitwise_and", np.bitwise_and, operator.and_),
                     "|": ("bitwise_or", np.bitwise_or, operator.or_),
                     "^": ("bitwise_xor", np.bitwise_xor, operator.xor),
                     "//": ("floor_divide", np.floor_divide, operator.floordiv),
                     "%": ("mod", np.remainder, operator.mod)}

    def _exact_binary(self, symbol, kinds, dtypes):
        """``a <symbol> b`` on exact values of ``kinds``, spelled as the
        operator or as the graphc function (at random)."""
        fname, ref, pyop = self._EXACT_BINARY[symbol]
        ok = self._exact_of(kinds)
        a = self.pick(ok, make=lambda: self.leaf(dt=np.dtype(self.choice(dtypes))))
        if not ok(a):
            return None
        bn, bv, be, bsrc, bval = self.operand(a, pred=ok, allow_scalar=False)
        with np.errstate(all="ignore"):
            out = ref(a.val, bv)
        if self.choice([True, False]):
            node, src = pyop(a.node, bn), f"({a.name} {symbol} {bsrc})"
        else:
            node, src = getattr(gc, fname)(a.node, bn), f"gc.{fname}({a.name}, {bsrc})"
        return self.add(node, out, 0, src, [a, bval])

    def op_bitwise(self):
        """& | ^ ~ (and bitwise_and/or/xor, invert) on exact integers and bools."""
        name = self.choice(["&", "|", "^", "~", "invert"])
        if name in ("&", "|", "^"):
            return self._exact_binary(name, "ib", ["int32", "int64", "bool"])
        bits = self._exact_of("ib")
        a = self.pick(bits, make=lambda: self.leaf(dt=np.dtype(self.choice(["int32", "int64", "bool"]))))
        if not bits(a):
            return None
        node = gc.invert(a.node) if name == "invert" else ~a.node
        src = f"gc.invert({a.name})" if name == "invert" else f"~{a.name}"
        return self.add(node, np.invert(a.val), 0, src, [a])

    def op_intdiv(self):
        """// and % (and floor_divide, mod) on exact integers, zero divisors
        included (numpy's result: 0)."""
        return self._exact_binary(self.choice(["//", "%"]), "i", ["int32", "int64"])

    def op_where(self):
        c = self.pick(lambda v: v.dtype == B and v.exact)
        if c is None:
            c = self.op_compare()
            if c is None:
                return None
        an, av, ae, asrc, aval = self.operand(c, pred=lambda v: True)
        bn, bv, be, bsrc, bval = self.operand(c, pred=lambda v: True)
        if self.mode == "grad" and (isinstance(av, bool) or isinstance(bv, bool)):
            return None
        try:
            shape = np.broadcast_shapes(c.shape, np.shape(av), np.shape(bv))
        except ValueError:
            return None
        if size_of(shape) > MAX_SIZE:
            return None
        out = np.where(c.val, av, bv)
        node = gc.where(c.node, an, bn)
        err = np.where(c.val, _bcast(ae, shape), _bcast(be, shape))
        ins = [c] + [v for v in (aval, bval) if v is not None]
        return self.add(node, out, _finish(out, err, err, inexact=False),
                        f"gc.where({c.name}, {asrc}, {bsrc})", ins)

    def op_cast(self):
        a = self.pick(make=self.leaf)
        dt = self.dtype()
        x = a.val
        with np.errstate(all="ignore"):
            if is_float(a.dtype) and not is_float(dt):
                xf = x.astype(np.float64)
                e = a.err
                if dt == B:
                    ok = self.margin_ok(np.abs(xf), e)
                    out = x != 0
                else:
                    info = np.iinfo(dt)
                    dist = np.abs(xf - np.round(xf))
                    ok = self.margin_ok(np.minimum(dist, np.abs(np.abs(xf) - 0.5) + 0.5), e) and \
                        bool(np.all((e == 0) | (np.abs(xf) < info.max / 2)))
                    y = np.nan_to_num(xf, nan=0.0, posinf=float(info.max), neginf=float(info.min))
                    y = np.clip(np.trunc(y), info.min, info.max)
                    # float64 cannot hold int64 max: saturate like the cast does
                    out = np.where(y >= 2.0 ** 63, info.max, y).astype(dt) if dt == I64 else y.astype(dt)
                    if dt == I64:
                        out = np.where(xf >= 2.0 ** 63, info.max, out).astype(dt)
                if not ok:
                    return None
                err = 0
            else:
                out = x.astype(dt)
                if is_float(dt):
                    err = _round(out, a.err) if dt.itemsize < a.dtype.itemsize or not is_float(a.dtype) \
                        else a.err
                    err = _finish(out, err, a.err, inexact=False)
                else:
                    err = 0
        style = self.integer(0, 1)
        node = gc.cast(a.node, dt.name) if style == 0 else a.node.astype(dt.name)
        src = f"gc.cast({a.name}, '{dt.name}')" if style == 0 else f"{a.name}.astype('{dt.name}')"
        return self.add(node, out, err, src, [a])


    # -- ops that newer graphc versions add (used when present) ---------------
    def op_special(self):
        names = [n for n in ("erf", "log1p", "sin", "cos", "cumsum", "scan", "reciprocal",
                             "clip", "expand", "prod", "atan", "asinh", "einsum") if hasattr(gc, n)]
        if self.mode == "value":      # piecewise constant: no finite differences
            names += [n for n in ("floor", "ceil", "round", "sign", "logical_and", "topk",
                                  "bitcast", *_DOMAIN) if hasattr(gc, n)]
        if not names:
            return None
        name = self.choice(names)
        if name in ("atan", "asinh") or name in _DOMAIN:
            return self._smooth_unary(name)
        if name in ("einsum", "topk", "bitcast"):
            return getattr(self, f"_{name}")()
        if name in ("floor", "ceil", "round", "sign"):
            return self._rounding(name)
        if name in ("cumsum", "scan"):
            return self._cumsum(name == "scan")
        if name in ("reciprocal", "clip", "expand", "prod", "logical_and"):
            return getattr(self, f"_{name}")()
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B:
            return None
        x = a.val if is_float(a.dtype) else a.val.astype(F64)
        ea = a.err
        u = unit(x.dtype)
        with np.errstate(all="ignore"):
            if name in ("sin", "cos"):        # |derivative| <= 1; within an ulp or two
                out = getattr(np, name)(x)
                err = ea + ND_ULPS * u * np.abs(out) + 2 * u
            elif name == "erf":
                import math
                out = np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64)).astype(x.dtype)
                slope = 2 / np.sqrt(np.pi) * np.exp(-np.minimum(np.abs(x.astype(np.float64)) - ea, 0) ** 2)
                err = slope * ea + ND_ULPS * u * np.abs(out) + 4 * u
            else:
                if self.mode == "grad":
                    a = self.add(gc.mul(a.node, a.node), a.val * a.val, 0, f"{a.name} * {a.name}", [a])
                    x, ea = a.val, a.err
                out = np.log1p(x)
                err = np.where(1 + x > 2 * ea, ea / np.abs(1 + x), np.inf) + ND_ULPS * u * np.abs(out)
        node = getattr(gc, name)(a.node)
        return self.add(node, out, _finish(out, err, ea), f"gc.{name}({a.name})", [a])

    def _smooth_unary(self, name):
        """atan, asinh (Lipschitz 1 everywhere) and the functions of _DOMAIN on
        inputs clipped into an interval where their slope is at most
        ``bound`` (value mode): the error is the input's times the slope,
        plus a few ulps of the result."""
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B:
            return None
        node, src = a.node, a.name
        x = a.val if is_float(a.dtype) else a.val.astype(F64)
        ea = np.broadcast_to(a.err, a.shape)
        slope = 1.0
        if name in _DOMAIN:
            lo, hi, slope = _DOMAIN[name]
            node = gc.clip(gc.cast(node, x.dtype.name) if not is_float(a.dtype) else node, lo, hi)
            src = f"gc.clip({src}, {lo}, {hi})"
            with np.errstate(all="ignore"):
                x = np.clip(x, lo, hi)
            if name in ("sinh", "cosh"):
                slope = np.cosh(np.minimum(np.abs(x.astype(np.float64)) + ea, 30.0))
        u = unit(x.dtype)
        with np.errstate(all="ignore"):
            out = getattr(np, {"asin": "arcsin", "acos": "arccos", "atan": "arctan",
                               "asinh": "arcsinh", "acosh": "arccosh", "atanh": "arctanh"}
                          .get(name, name))(x.astype(np.float64)).astype(x.dtype)
            err = slope * ea + 2 * ND_ULPS * u * np.abs(out) + 4 * u
        return self.add(getattr(gc, name)(node), out, _finish(out, err, ea), f"gc.{name}({src})",
                        [a])

    def _einsum(self):
        """Exact einsums: a transpose, a diagonal, an outer axis insertion."""
        a = self.pick(make=self.leaf)
        if len(a.shape) != 2 or a.dtype == B:
            return None
        e = np.broadcast_to(a.err, a.shape)
        eq = self.choice(["ij->ji", "ij->ij", "ii->i"])
        if eq == "ii->i" and a.shape[0] != a.shape[1]:
            eq = "ij->ji"
        out, err = np.einsum(eq, a.val), np.einsum(eq, e)
        return self.add(gc.einsum(eq, a.node), out, err, f"gc.einsum({eq!r}, {a.name})", [a])

    def _topk(self):
        """The k largest (or smallest) values along the last axis: an order
        statistic moves by at most the largest error of its row."""
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B or not a.shape or a.shape[-1] == 0 or not np.all(np.isfinite(a.val)):
            return None
        k = self.integer(1, a.shape[-1])
        largest = self.flip(2)
        srt = np.sort(a.val, axis=-1)
        out = (np.flip(srt, -1) if largest else srt)[..., :k]
        ea = np.broadcast_to(a.err, a.shape)
        err = np.broadcast_to(np.max(ea, axis=-1, keepdims=True), out.shape) if ea.size else 0
        return self.add(gc.topk(a.node, k, -1, largest)[0], out, err,
                        f"gc.topk({a.name}, {k}, -1, {largest})[0]", [a])

    def _bitcast(self):
        """float32 <-> int32, float64 <-> int64 bits, of exactly known values."""
        a = self.pick(self.numeric, make=self.numeric_leaf)
        to = {np.dtype(np.float32): "int32", np.dtype(np.int32): "float32",
              np.dtype(np.float64): "int64", np.dtype(np.int64): "float64"}.get(a.dtype)
        if to is None or np.any(np.broadcast_to(a.err, a.shape) != 0):
            return None
        out = np.ascontiguousarray(a.val).view(to)
        if is_float(out.dtype) and not np.all(np.isfinite(out)):
            return None                # NaN payloads: numpy and graphc may differ
        return self.add(gc.bitcast(a.node, to), out, 0, f"gc.bitcast({a.name}, {to!r})", [a])

    def _rounding(self, name):
        """floor, ceil, round (ties to even) and sign: exact, where the input's
        error cannot move it across a step (an integer, a half-integer, zero)."""
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B:
            return None
        out = getattr(np, name)(a.val)
        if is_float(a.dtype):
            x = a.val.astype(np.float64)
            with np.errstate(all="ignore"):
                step = {"floor": np.round(x), "ceil": np.round(x), "round": np.floor(x) + 0.5,
                        "sign": np.zeros_like(x)}[name]
                dist = np.where(np.isfinite(x), np.abs(x - step), np.inf)
            if not self.margin_ok(dist, np.broadcast_to(a.err, dist.shape)):
                return None
        node = getattr(gc, name)(a.node)
        return self.add(node, out, _finish(out, 0, a.err, inexact=False), f"gc.{name}({a.name})", [a])

    def _cumsum(self, as_scan=False):
        """cumsum along a random axis, maybe exclusive and/or reversed (or spelled
        as the recurrence ``gc.scan(1, x, axis, reverse)``: inclusive, dtype kept)."""
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B or not a.shape:
            return None
        ax = self.integer(0, len(a.shape) - 1)
        exclusive, reverse = self.flip(2) and not as_scan, self.flip(2)
        dt = I64 if a.dtype in (np.dtype(np.int32), B) and not as_scan else a.dtype
        x = np.flip(a.val, ax) if reverse else a.val
        ea = np.broadcast_to(a.err, a.shape)
        ea = np.flip(ea, ax) if reverse else ea
        with np.errstate(all="ignore"):
            out = np.cumsum(x, axis=ax, dtype=dt)
            err = np.cumsum(ea, axis=ax)
            mag = np.cumsum(np.abs(x.astype(np.float64)), axis=ax)
            if exclusive:       # [0, c[0], ..., c[n-2]]
                def shift(v):
                    if v.shape[ax] == 0:
                        return v
                    head = np.zeros_like(np.take(v, [0], axis=ax))
                    return np.concatenate([head, np.take(v, range(v.shape[ax] - 1), axis=ax)], ax)
                out, err, mag = shift(out), shift(err), shift(mag)
        if is_float(dt):
            n = a.shape[ax]
            err = _finish(out, err + 2 * (n + 1) * unit(dt) * mag, err)
        else:
            err = 0
        flip = (lambda v: np.flip(v, ax)) if reverse else (lambda v: v)
        out = flip(out)
        err = flip(err) if not np.isscalar(err) else err
        if as_scan:
            node = gc.scan(1, a.node, ax, reverse)
            return self.add(node, out, err, f"gc.scan(1, {a.name}, {ax}, {reverse})", [a])
        node = gc.cumsum(a.node, ax, exclusive, reverse)
        return self.add(node, out, err, f"gc.cumsum({a.name}, {ax}, {exclusive}, {reverse})", [a])

    def _reciprocal(self):
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B:
            return None
        if self.mode == "grad":
            a = self.positive(a)
        x = a.val if is_float(a.dtype) else a.val.astype(F64)
        ea = np.broadcast_to(a.err, a.shape)
        with np.errstate(all="ignore"):
            out = x.dtype.type(1) / x
            ax = np.abs(x.astype(np.float64))
            err = np.where(ax > 2 * ea, 2 * ea / (ax * ax), np.inf)
            err = np.where(ea > 0, err, 0.0) + 2 * unit(out.dtype) * np.abs(out.astype(np.float64))
        return self.add(gc.reciprocal(a.node), out, _finish(out, err, ea), f"gc.reciprocal({a.name})", [a])

    def _clip(self):
        """clip by scalar bounds (either may be None), away from the bounds."""
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B:
            return None
        lo, hi = self.choice([-1.0, -0.5, 0, None]), self.choice([0.5, 1, 2.0, None])
        ea = np.broadcast_to(a.err, a.shape)
        x = a.val.astype(np.float64)
        margin = 1e-3 if self.mode == "grad" else 0.0
        for bnd in (lo, hi):
            if bnd is not None and not self.margin_ok(np.abs(x - bnd) - margin, ea):
                return None
        with np.errstate(all="ignore"):
            out = np.asarray(np.clip(a.val, lo, hi))
        return self.add(gc.clip(a.node, lo, hi), out, _finish(out, ea, ea, inexact=False),
                        f"gc.clip({a.name}, {lo!r}, {hi!r})", [a])

    def _expand(self):
        a = self.pick(make=self.leaf)
        shape = self.partner_shape(a.shape)
        full = np.broadcast_shapes(a.shape, shape)
        if size_of(full) > MAX_SIZE:
            return None
        out = np.broadcast_to(a.val, full).copy()
        err = np.broadcast_to(a.err, full)
        return self.add(gc.expand(a.node, shape), out, err, f"gc.expand({a.name}, {shape!r})", [a])

    def _prod(self):
        """prod over one axis (or all), error bound by the product rule."""
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B or not a.shape:
            return None
        ax = self.integer(0, len(a.shape) - 1) if self.flip(4) else None
        keep = self.flip(3)
        dt = I64 if a.dtype in (np.dtype(np.int32), B) else a.dtype
        with np.errstate(all="ignore"):
            out = np.asarray(np.prod(a.val, axis=ax, keepdims=keep, dtype=dt))
            if not is_float(dt):
                err = 0
            else:
                x = a.val.astype(np.float64).reshape(-1) if ax is None else \
                    np.moveaxis(a.val.astype(np.float64), ax, -1)
                e = np.broadcast_to(a.err, a.shape).reshape(-1) if ax is None else \
                    np.moveaxis(np.broadcast_to(a.err, a.shape), ax, -1)
                m = np.abs(x) + e
                n = x.shape[-1]
                err = sum(e[..., k] * np.prod(np.delete(m, k, axis=-1), axis=-1) for k in range(n)) \
                    if n else np.zeros(x.shape[:-1])
                err = err + 2 * (n + 1) * unit(dt) * np.prod(m, axis=-1)
                err = np.asarray(err).reshape(out.shape)
                err = _finish(out, err, np.where(err > 0, 1.0, 0.0))
        node = gc.prod(a.node, ax, keep)
        return self.add(node, out, err, f"gc.prod({a.name}, {ax!r}, {keep})", [a])

    def _logical_and(self):
        """logical_and/or/xor/not of exact bools."""
        exact_b = lambda v: v.dtype == B and v.exact      # noqa: E731
        a = self.pick(exact_b, make=lambda: self.leaf(dt=B))
        if not exact_b(a):
            return None
        name = self.choice(["logical_and", "logical_or", "logical_xor", "logical_not"])
        if name == "logical_not":
            return self.add(gc.logical_not(a.node), np.logical_not(a.val), 0,
                            f"gc.logical_not({a.name})", [a])
        bn, bv, be, bsrc, bval = self.operand(a, pred=exact_b, allow_scalar=False)
        if not isinstance(bv, np.ndarray) or bv.dtype != B:
            return None
        out = getattr(np, name)(a.val, bv)
        return self.add(getattr(gc, name)(a.node, bn), out, 0, f"gc.{name}({a.name}, {bsrc})",
                        [a, bval])
