"""Random well-typed graphc graphs for property-based testing (hypothesis).

:func:`cases` is a strategy that builds a random graph from the public op
functions, one op at a time, and at the same time computes every value with
plain numpy (the *mirror*): ``np.exp`` for ``gc.exp``, ``v[key]`` for
``x[key]``, numpy's own promotion for mixed dtypes and Python scalars. So a
case carries three things to compare: the graph (compiled, or run by the
interpreter) and numpy's answer.

Float results are not all bit-for-bit reproducible across implementations
(``exp`` in numpy is not LLVM's ``exp``; a float sum depends on its order),
so every mirror value carries an error bound ``err`` per element:

* ``err == 0`` — the value is determined exactly: it was computed only with
  correctly rounded IEEE operations (``+ - * /``, ``sqrt``, casts,
  comparisons, max, movement) from exact inputs, and float sums/matmuls only
  where every partial sum is exact (values on a dyadic grid), so any
  evaluation order gives the same bits. Compiled and interpreted results
  must then be identical — NaN where numpy gives NaN, ``inf`` with its sign;
* ``0 < err < inf`` — a first-order bound of the difference between any two
  faithful evaluations (operation error of a few ulps, propagated);
* ``err == inf`` — not comparable (e.g. an inexact value that may or may not
  overflow); such elements are skipped.

Discontinuous ops (comparisons, casts to int or bool, ``where`` conditions)
are only applied where the answer is certain: the generator checks the
margin against ``err`` and picks another op otherwise, so a mismatch is
always a bug, never rounding.

``mode="grad"`` builds float64 graphs of differentiable ops on continuous
random values, for gradient checks against finite differences.

A case renders itself as a runnable Python program (:meth:`Case.program`),
which is what a failing hypothesis example prints: paste it into
tests/test_regressions.py.
"""
from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc

F32, F64, I32, I64, B = (np.dtype(t) for t in ("float32", "float64", "int32", "int64", "bool"))
DTYPES = (F64, F32, I64, I32, B)
NUMERIC = (F64, F32, I64, I32)
MAX_SIZE = 64                 # elements per value
ND_ULPS = 12                  # ulps allowed to an inexact (libm-style) op
GRID = tuple(k / 4 for k in range(-16, 17))
SPECIALS = (np.nan, np.inf, -np.inf, -0.0, 1e30, -1e30, 0.1, 1e-30)


def unit(dt) -> float:
    """Unit roundoff of a float dtype."""
    return float(np.finfo(dt).eps) / 2


def is_float(dt) -> bool:
    return np.dtype(dt).kind == "f"


def size_of(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


@dataclass
class Val:
    node: gc.Node
    val: np.ndarray            # numpy's value (the mirror)
    err: np.ndarray            # float64 error bound per element (see module doc)
    name: str                  # variable name in the rendered program
    raises: bool = False       # evaluating it raises a RuntimeCheckError (as numpy does)

    @property
    def shape(self):
        return self.node.shape

    @property
    def dtype(self):
        return self.node.dtype

    @property
    def exact(self) -> bool:
        return bool(np.all(self.err == 0))


class Case:
    """A random graph: ``outputs`` (Vals), ``feeds`` (placeholder name ->
    array, only those the outputs use), ``params`` ((node, value) pairs),
    every Val built (``all_vals``), the program text (``lines``) and, in
    grad mode, the leaves to differentiate with respect to (``wrt``)."""

    def __init__(self, mode, outputs, feeds, params, lines, all_vals, wrt):
        self.mode, self.outputs, self.params = mode, outputs, params
        self.lines, self.all_vals = lines, all_vals
        used = gc.Graph([o.node for o in outputs]).placeholders
        self.feeds = {p.name: feeds[p.name] for p in used}
        ids = {n.id for n in gc.Graph([o.node for o in outputs]).nodes}
        self.wrt = [w for w in wrt if w.id in ids]

    @property
    def expect_error(self) -> bool:
        return any(o.raises for o in self.outputs)

    def program(self) -> str:
        outs = ", ".join(o.name for o in self.outputs)
        feeds = ", ".join(f"{k}={_arr_src(v)}" for k, v in self.feeds.items())
        return "\n".join(["import numpy as np", "import graphc as gc", "nan, inf = np.nan, np.inf",
                          *self.lines, f"outs = [{outs}]", f"feeds = dict({feeds})",
                          "f = gc.compile(outs)", "fi = gc.compile(outs, backend='interp')",
                          "print(f(**feeds)); print(fi(**feeds))"])

    def __repr__(self):
        return "Case:\n" + self.program()


def _arr_src(a) -> str:
    a = np.asarray(a)
    body = np.array2string(a, separator=", ", threshold=10**6, floatmode="unique",
                           max_line_width=10**6) if a.size else "[]"
    body = body.replace("nan", "nan").replace("inf", "inf")
    if a.ndim == 0:
        body = repr(a.item())
        if a.dtype.kind == "f":
            body = repr(float(a))
    return f"np.array({body}, dtype='{a.dtype}').reshape({a.shape})"


# ----------------------------------------------------------------- error math

def _bcast(x, shape):
    return np.broadcast_to(np.asarray(x, np.float64), shape)


def _finish(out, err, in_err, *, inexact=True):
    """Final error array of a float result: non-finite results are certain
    unless an input was inexact there (overflow may or may not happen);
    finite results close to overflowing are not comparable."""
    out = np.asarray(out)
    if not is_float(out.dtype):
        return np.zeros(out.shape)
    with np.errstate(all="ignore"):
        err = np.array(_bcast(err, out.shape), dtype=np.float64)
        err = np.nan_to_num(err, nan=np.inf, posinf=np.inf)
        in_err = _bcast(in_err, out.shape)
        fin = np.isfinite(out)
        err = np.where(fin, err, np.where(in_err > 0, np.inf, 0.0))
        mag = np.abs(out.astype(np.float64))
        big = fin & (err > 0) & (mag + 4 * err >= float(np.finfo(out.dtype).max) / 2)
        err = np.where(big, np.inf, err)
        if not inexact:
            err = np.where(in_err == 0, np.where(fin, 0.0, err), err)
    return err


def _round(out, err_in, extra_ulps=1.0):
    """Error of a correctly rounded op: exact when its inputs are exact."""
    u = unit(out.dtype)
    return np.where(_bcast(err_in, out.shape) > 0,
                    err_in + 2 * extra_ulps * u * np.abs(out.astype(np.float64)), 0.0)


def _dyadic_bits(x) -> int | None:
    """Smallest k with every finite x * 2**k an integer (None if > 60)."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    for k in range(61):
        if np.all(np.mod(x * 2.0 ** k, 1.0) == 0):
            return k
    return None


def _sum_is_exact(x, dt) -> bool:
    """Every partial sum of x (any order) is exactly representable in dt."""
    k = _dyadic_bits(x)
    if k is None:
        return False
    x = np.asarray(x, np.float64)
    s = np.abs(x[np.isfinite(x)]).sum()
    return s * 2.0 ** k < 2.0 ** (np.finfo(dt).nmant + 1)


# ------------------------------------------------------------------ generator

class Gen:
    """Builds one random case. ``draw`` is hypothesis' draw function."""

    def __init__(self, draw, mode: str):
        self.draw = draw
        self.mode = mode
        self.pool: list[Val] = []
        self.lines: list[str] = []
        self.feeds: dict = {}
        self.params: list = []
        self.counter = itertools.count()
        self.used: set = set()            # ids of Vals some later op consumed
        self.allow_zero = mode == "value" and draw(st.integers(0, 4)) == 0
        self.specials = mode == "value" and draw(st.booleans())
        self.extreme_ints = mode == "value" and draw(st.integers(0, 3)) == 0
        self.wrt: list = []

    # -- drawing helpers -----------------------------------------------------
    def choice(self, seq):
        return self.draw(st.sampled_from(list(seq)))

    def integer(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def flip(self, p_true_in: int = 2) -> bool:
        """True with probability 1/p_true_in."""
        return self.draw(st.integers(0, p_true_in - 1)) == 0

    def shape(self, max_rank=3, max_size=24):
        rank = self.integer(0, max_rank)
        dims = [1, 2, 3, 4] + ([0] if self.allow_zero else [])
        for _ in range(10):
            s = tuple(self.choice(dims) for _ in range(rank))
            if size_of(s) <= max_size:
                return s
        return (2,) * min(rank, 2)

    def dtype(self, options=DTYPES):
        """A dtype from ``options`` (always float64 in grad mode)."""
        if self.mode == "grad":
            return F64
        return self.choice(options)

    def values(self, shape, dt) -> np.ndarray:
        dt = np.dtype(dt)
        if self.mode == "grad":
            # the leaf's number in the seed: two leaves never tie (a tie of
            # distinct variables is a kink finite differences cannot see)
            seed = (self.integer(0, 2**32 - 1), next(self.counter))
            return np.random.default_rng(seed).uniform(-1.5, 1.5, shape).astype(dt)
        if dt == B:
            elems = st.booleans()
        elif dt.kind == "i":
            vals = list(range(-6, 7))
            if self.extreme_ints:
                info = np.iinfo(dt)
                vals += [int(info.min), int(info.max), int(info.max) - 1]
            elems = st.sampled_from(vals)
        else:
            grid = st.sampled_from(GRID)
            density = self.integer(0, 3) if self.specials else 0
            if density == 3:       # mostly one special value, a few ordinary ones
                return self.draw(hnp.arrays(dt, shape, elements=grid,
                                            fill=st.sampled_from(SPECIALS)))
            elems = [grid, st.sampled_from(GRID + SPECIALS),
                     st.one_of(grid, st.sampled_from(SPECIALS)), grid][density]
        return self.draw(hnp.arrays(dt, shape, elements=elems))

    def fresh(self, prefix="v"):
        return f"{prefix}{next(self.counter)}"

    # -- values ----------------------------------------------------------------
    def add(self, node, val, err, src, inputs=(), raises=False) -> Val:
        val = np.asarray(val)
        name = self.fresh()
        self.lines.append(f"{name} = {src}")
        v = Val(node, val, np.asarray(err, np.float64) * np.ones(val.shape), name,
                raises or any(i.raises for i in inputs))
        for i in inputs:
            self.used.add(id(i))
        if v.raises:
            v.val = np.zeros(node.shape, node.dtype)
            v.err = np.zeros(node.shape)
        self.pool.append(v)
        return v

    def leaf(self, shape=None, dt=None, kind=None) -> Val:
        shape = self.shape() if shape is None else tuple(shape)
        dt = self.dtype() if dt is None else np.dtype(dt)
        kind = kind or self.choice(["placeholder"] * 4 + ["parameter", "constant", "full"])
        if kind == "full" and self.mode == "grad":
            kind = "constant"
        if kind == "full":
            value = self.values((), dt)
            node = gc.full(shape, value.item(), dt.name)
            return self.add(node, np.full(shape, value, dt), 0,
                            f"gc.full({shape}, {value.item()!r}, '{dt.name}')")
        value = self.values(shape, dt)
        if kind == "placeholder":
            pname = self.fresh("p")
            node = gc.placeholder(shape, dt.name, name=pname)
            self.feeds[pname] = value
            v = self.add(node, value, 0, f"gc.placeholder({shape}, '{dt.name}', name='{pname}')")
            if self.mode == "grad" and dt == F64:
                self.wrt.append(node)
            return v
        if kind == "parameter":
            node = gc.parameter(value, name=self.fresh("w"))
            self.params.append((node, value))
            v = self.add(node, value, 0, f"gc.parameter({_arr_src(value)})")
            if self.mode == "grad" and dt == F64:
                self.wrt.append(node)
            return v
        node = gc.constant(value)
        return self.add(node, value, 0, f"gc.constant({_arr_src(value)})")

    def numeric_leaf(self) -> Val:
        return self.leaf(dt=self.dtype(NUMERIC))

    def pick(self, pred=lambda v: True, *, make=None) -> Val | None:
        """An existing value satisfying ``pred`` (recent ones more often),
        else ``make()`` (a fresh leaf) if given."""
        cands = [v for v in self.pool if pred(v)]
        if cands and (make is None or not self.flip(3)):
            k = self.integer(0, len(cands) - 1)
            if self.flip(2):
                k = len(cands) - 1 - min(k, 2)      # bias towards the newest
            return cands[k]
        return make() if make is not None else None

    def numeric(self, v: Val) -> bool:
        return v.dtype != B

    # -- operand for a binary op ------------------------------------------------
    def partner_shape(self, shape):
        """A shape that broadcasts with ``shape``."""
        out = []
        for d in shape[self.integer(0, len(shape)):] if shape else ():
            out.append(d if not self.flip(3) else 1)
        if shape and self.flip(4):
            k = self.integer(0, len(shape) - 1)
            if shape[k] == 1 and len(out) == len(shape):
                out[k] = self.choice([2, 3])
        while len(out) < 3 and self.flip(5):
            out.insert(0, self.choice([1, 2]))
        s = tuple(out)
        try:
            full = np.broadcast_shapes(shape, s)
        except ValueError:
            return tuple(shape)
        return s if size_of(full) <= MAX_SIZE else tuple(shape)

    def operand(self, a: Val, pred=None, allow_scalar=True):
        """(graph operand, numpy operand, err, source, Val or None)."""
        pred = pred or self.numeric
        r = self.integer(0, 5)
        if allow_scalar and r == 0:
            if self.mode == "grad":
                s = float(np.round(self.draw(st.floats(-2, 2)), 3))
            else:
                s = self.choice([2, -1, 0, 3, 0.5, -2.5, 1.0, True, 2.0])
                if a.dtype == B and not isinstance(s, bool):
                    s = float(s)
            return s, s, 0.0, repr(s), None

        def ok(v):
            try:
                full = np.broadcast_shapes(a.shape, v.shape)
            except ValueError:
                return False
            return pred(v) and size_of(full) <= MAX_SIZE
        dt = a.dtype if self.flip(2) and self.mode == "value" else self.dtype()
        if dt == B and pred is self.numeric:
            dt = a.dtype
        b = self.pick(ok, make=lambda: self.leaf(self.partner_shape(a.shape), dt))
        if not pred(b):
            b = self.leaf(self.partner_shape(a.shape), a.dtype)
        return b.node, b.val, b.err, b.name, b

    # -- ops -------------------------------------------------------------------
    # Each op returns a new Val, or None when it does not apply to what it drew.

    def op_unary_float(self):
        name = self.choice(["exp", "log", "sqrt", "tanh", "sigmoid"])
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B:
            return None
        if self.mode == "grad" and name in ("log", "sqrt"):
            # a positive argument, well away from zero
            a = self.add(gc.mul(a.node, a.node) + 0.5, a.val * a.val + 0.5, 0,
                         f"{a.name} * {a.name} + 0.5", [a])
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
                base = self.add(gc.mul(a.node, a.node) + 0.5, a.val * a.val + 0.5, 0,
                                f"{a.name} * {a.name} + 0.5", [a])
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

    def axes_for(self, ndim, allow_tuple=True):
        r = self.integer(0, 3)
        if r == 0 or ndim == 0:
            return None
        if r == 1 or not allow_tuple:
            ax = self.integer(0, ndim - 1)
            return ax - ndim if self.flip(3) else ax
        k = self.integer(0, ndim)
        axes = sorted(self.draw(st.permutations(list(range(ndim))))[:k])
        return tuple(ax - ndim if self.flip(4) else ax for ax in axes)

    def op_reduce(self):
        name = self.choice(["sum", "mean", "max", "min", ".sum", ".mean", ".max"])
        a = self.pick(make=self.leaf)
        base = name.lstrip(".")
        axis = self.axes_for(len(a.shape))
        keep = self.flip(3)
        norm = tuple(range(len(a.shape))) if axis is None else \
            tuple(sorted(x % len(a.shape) for x in ((axis,) if isinstance(axis, int) else axis)))
        if base in ("max", "min") and any(a.shape[x] == 0 for x in norm):
            return None
        with np.errstate(all="ignore"):
            out = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}[base](
                a.val, axis=axis, keepdims=keep)
        out = np.asarray(out)
        if name.startswith("."):
            node = getattr(a.node, base)(axis, keep)
            src = f"{a.name}.{base}({axis!r}, {keep})"
        else:
            node = getattr(gc, base)(a.node, axis, keep)
            src = f"gc.{base}({a.name}, {axis!r}, {keep})"
        ea = np.broadcast_to(a.err, a.shape)
        with np.errstate(all="ignore"):
            if ea.size and norm:
                emax = np.max(ea, axis=norm, keepdims=keep)
                esum = np.sum(ea, axis=norm, keepdims=keep)
                mag = np.sum(np.abs(np.nan_to_num(a.val.astype(np.float64), posinf=0, neginf=0)),
                             axis=norm, keepdims=keep)
            else:
                emax = esum = mag = np.zeros(out.shape)
                if not norm and ea.size:
                    emax = esum = ea
        if not is_float(out.dtype):
            err = 0
        elif base in ("max", "min"):
            err = _finish(out, emax, emax, inexact=False)
        else:
            n = max(1, size_of([a.shape[x] for x in norm]))
            src_dt = out.dtype
            exact = a.exact and _sum_is_exact(a.val, src_dt)
            if exact:
                err = np.zeros(out.shape)
                if base == "mean":
                    err = _finish(out, err, err, inexact=False)
            else:
                err = esum + (n + 2) * unit(src_dt) * mag
                if base == "mean":
                    err = err / n + 2 * unit(src_dt) * np.abs(out.astype(np.float64))
                err = _finish(out, np.where(np.asarray(err) > 0, err, 1e-300), emax + 1e-300)
        return self.add(node, out, err, src, [a])

    def op_matmul(self):
        a = self.pick(lambda v: v.dtype != B and len(v.shape) >= 1, make=None)
        if a is None:
            a = self.leaf(self.shape(), self.dtype((F64, F32, I64, I32)))
            if not a.shape or a.dtype == B:
                return None
        k = a.shape[-1]
        n = self.choice([1, 2, 3])
        r = self.integer(0, 3)
        if r == 0:
            bshape = (k,)
        else:
            batch = a.shape[:-2] if len(a.shape) > 2 else ()
            if batch and self.flip(2):
                batch = batch[self.integer(0, len(batch)):]
            elif len(a.shape) == 2 and self.flip(4):
                batch = (self.choice([1, 2]),)
            bshape = batch + (k, n)
        dt = a.dtype if self.flip(3) else self.dtype((F64, F32, I64, I32))

        def ok(v):
            return v.shape == bshape and v.dtype != B
        b = self.pick(ok, make=lambda: self.leaf(bshape, dt))
        try:
            out = np.matmul(a.val, b.val)
        except ValueError:
            return None
        out = np.asarray(out)
        if out.size > MAX_SIZE:
            return None
        node = gc.matmul(a.node, b.node) if self.flip(2) else a.node @ b.node
        src = f"gc.matmul({a.name}, {b.name})"
        if not is_float(out.dtype):
            return self.add(node, out, 0, src, [a, b])
        av = a.val.astype(np.float64)
        bv = b.val.astype(np.float64)
        ea = _bcast(a.err, a.shape)
        eb = _bcast(b.err, b.shape)
        with np.errstate(all="ignore"):
            fa = np.nan_to_num(np.abs(av), posinf=0)
            fb = np.nan_to_num(np.abs(bv), posinf=0)
            mag = np.matmul(fa, fb)
            in_err = np.matmul(ea, fb) + np.matmul(fa, eb) + np.matmul(ea, eb)
            ka, kb = _dyadic_bits(av), _dyadic_bits(bv)
            exact = (a.exact and b.exact and ka is not None and kb is not None and
                     (mag.size == 0 or float(np.max(mag)) * 2.0 ** (ka + kb) <
                      2.0 ** (np.finfo(out.dtype).nmant + 1)))
            if exact:
                err = np.zeros(out.shape)
            else:
                err = in_err + (k + 2) * unit(out.dtype) * mag * 2 + 1e-300
        return self.add(node, out, _finish(out, err, in_err + (0 if exact else 1e-300)), src, [a, b])

    def op_reshape(self):
        a = self.pick(make=self.leaf)
        n = size_of(a.shape)
        dims = []
        rest = n
        for _ in range(self.integer(0, 3)):
            divs = [d for d in (1, 2, 3, 4) if rest % d == 0] if rest else [0, 1, 2]
            d = self.choice(divs)
            dims.append(d)
            rest = rest // d if d else rest
        if n == 0 and 0 not in dims:
            dims.append(0)
        elif n:
            dims.append(rest)
        shape = tuple(dims)
        if size_of(shape) != n:
            return None
        if n and self.flip(3) and shape:
            k = self.integer(0, len(shape) - 1)
            shape = shape[:k] + (-1,) + shape[k + 1:]
        out = a.val.reshape(shape)
        form = self.integer(0, 2)
        node = gc.reshape(a.node, shape) if form == 0 else a.node.reshape(shape) if form == 1 \
            else a.node.reshape(*shape) if shape else a.node.reshape(shape)
        return self.add(node, out, np.broadcast_to(a.err, a.shape).reshape(out.shape),
                        f"gc.reshape({a.name}, {shape})", [a])

    def op_transpose(self):
        a = self.pick(make=self.leaf)
        nd = len(a.shape)
        e = np.broadcast_to(a.err, a.shape)
        r = self.integer(0, 4)
        if r == 0 or nd == 0:
            node, out, src = gc.transpose(a.node), np.transpose(a.val), f"gc.transpose({a.name})"
            et = np.transpose(e)
        elif r == 1:
            perm = tuple(self.draw(st.permutations(list(range(nd)))))
            node, out, src = gc.transpose(a.node, perm), np.transpose(a.val, perm), \
                f"gc.transpose({a.name}, {perm})"
            et = np.transpose(e, perm)
        elif r == 2:
            node, out, src, et = a.node.T, a.val.T, f"{a.name}.T", e.T
        elif r == 3:
            i, j = self.integer(-nd, nd - 1), self.integer(-nd, nd - 1)
            node, out, src = gc.swapaxes(a.node, i, j), np.swapaxes(a.val, i, j), \
                f"gc.swapaxes({a.name}, {i}, {j})"
            et = np.swapaxes(e, i, j)
        else:
            if nd >= 3:
                return None
            ax = self.integer(-nd - 1, nd)
            node, out, src = gc.expand_dims(a.node, ax), np.expand_dims(a.val, ax), \
                f"gc.expand_dims({a.name}, {ax})"
            et = np.expand_dims(e, ax)
        return self.add(node, out, et, src, [a])

    def op_squeeze(self):
        a = self.pick(lambda v: 1 in v.shape, make=None)
        if a is None:
            return None
        ones = [i for i, d in enumerate(a.shape) if d == 1]
        axis = None if self.flip(2) else self.choice(ones)
        out = np.squeeze(a.val, axis)
        e = np.squeeze(np.broadcast_to(a.err, a.shape), axis)
        return self.add(gc.squeeze(a.node, axis), out, e, f"gc.squeeze({a.name}, {axis!r})", [a])

    def op_broadcast(self):
        a = self.pick(make=self.leaf)
        shape = list(a.shape)
        shape = [d if d != 1 or not self.flip(2) else self.choice([2, 3]) for d in shape]
        while len(shape) < 4 and self.flip(3):
            shape.insert(0, self.choice([1, 2, 3]))
        shape = tuple(shape)
        if size_of(shape) > MAX_SIZE:
            return None
        out = np.broadcast_to(a.val, shape).copy()
        e = np.broadcast_to(np.broadcast_to(a.err, a.shape), shape).copy()
        return self.add(gc.broadcast_to(a.node, shape), out, e,
                        f"gc.broadcast_to({a.name}, {shape})", [a])

    def op_unbroadcast(self):
        a = self.pick(lambda v: v.dtype != B and len(v.shape) >= 1, make=None)
        if a is None:
            return None
        shape = list(a.shape[self.integer(0, len(a.shape)):])
        shape = [1 if self.flip(3) else d for d in shape]
        shape = tuple(shape)
        lead = len(a.shape) - len(shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape)
                                          if d == 1 and a.shape[lead + i] != 1)
        with np.errstate(all="ignore"):
            out = np.sum(a.val, axis=axes, keepdims=True, dtype=a.dtype).reshape(shape)
        exact = a.exact and (not is_float(a.dtype) or _sum_is_exact(a.val, a.dtype))
        if exact or not is_float(a.dtype):
            err = 0
        else:
            ea = np.broadcast_to(a.err, a.shape)
            n = max(1, size_of([a.shape[x] for x in axes]))
            mag = np.sum(np.abs(np.nan_to_num(a.val.astype(np.float64), posinf=0, neginf=0)),
                         axis=axes, keepdims=True).reshape(shape)
            err = np.sum(ea, axis=axes, keepdims=True).reshape(shape) + (n + 2) * unit(a.dtype) * mag
            err = _finish(out, err + 1e-300, np.max(ea, axis=axes, keepdims=True).reshape(shape) + 1e-300)
        return self.add(gc.unbroadcast(a.node, shape), out, err,
                        f"gc.unbroadcast({a.name}, {shape})", [a])

    def slice_key(self, shape):
        key = []
        for d in shape:
            r = self.integer(0, 5)
            if r == 0 and d > 0:
                i = self.integer(-d, d - 1)
                key.append(i)
            elif r == 1:
                key.append(slice(None))
            else:
                start = self.choice([None, 0, 1, -1, -2, 2, 5, -7])
                stop = self.choice([None, 0, 1, -1, 3, -3, 9, -9])
                step = self.choice([None, 1, 2, -1, -2, 3])
                key.append(slice(start, stop, step))
        if key and self.flip(3):
            k = self.integer(0, len(key))
            key.insert(k, None)
        if self.flip(4):
            k = self.integer(0, len(key))
            key = key[:k] + [Ellipsis] + key[k + self.integer(0, len(key) - k):]
        if len(key) == 1 and self.flip(2):
            return key[0]
        return tuple(key)

    def op_getitem(self):
        a = self.pick(make=self.leaf)
        key = self.slice_key(a.shape)
        try:
            out = a.val[key]
        except IndexError:
            return None
        e = np.broadcast_to(a.err, a.shape)[key]
        return self.add(a.node[key], np.array(out), np.array(e), f"{a.name}[{_key_src(key)}]", [a])

    def op_concatenate(self):
        a = self.pick(lambda v: len(v.shape) >= 1, make=None)
        if a is None:
            return None
        nd = len(a.shape)
        ax = self.integer(-nd, nd - 1)
        parts = [a]
        for _ in range(self.integer(1, 2)):
            shape = list(a.shape)
            shape[ax] = self.choice([0, 1, 2]) if self.allow_zero else self.choice([1, 2])
            shape = tuple(shape)
            dt = a.dtype if self.flip(2) else self.dtype()

            def ok(v, shape=shape):
                return v.shape == shape
            parts.append(self.pick(ok, make=lambda shape=shape, dt=dt: self.leaf(shape, dt)))
        out = np.concatenate([p.val for p in parts], axis=ax)
        if out.size > MAX_SIZE:
            return None
        e = np.concatenate([np.broadcast_to(p.err, p.shape) for p in parts], axis=ax)
        if is_float(out.dtype):
            e = np.where(e > 0, e + 2 * unit(out.dtype) * np.abs(out.astype(np.float64)), 0.0)
        node = gc.concatenate([p.node for p in parts], ax)
        names = ", ".join(p.name for p in parts)
        return self.add(node, out, e, f"gc.concatenate([{names}], {ax})", parts)

    def op_softmax(self):
        name = self.choice(["softmax", "log_softmax", "logsumexp"])
        a = self.pick(lambda v: v.dtype != B and len(v.shape) >= 1, make=None)
        if a is None:
            return None
        nd = len(a.shape)
        if name == "logsumexp":
            axis = self.axes_for(nd)
            keep = self.flip(2)
            norm = tuple(range(nd)) if axis is None else tuple(
                sorted(x % nd for x in ((axis,) if isinstance(axis, int) else axis)))
            if not norm:
                return None
        else:
            axis = self.integer(-nd, nd - 1)
            keep = True
            norm = (axis % nd,)
        x = a.val if is_float(a.dtype) else a.val.astype(F64)
        dt = x.dtype
        e = np.broadcast_to(a.err, a.shape)
        with np.errstate(all="ignore"):
            if x.size == 0:
                m = np.zeros([1 if i in norm else s for i, s in enumerate(x.shape)], dt)
                emax = np.zeros(m.shape)
            else:
                m = np.max(x, axis=norm, keepdims=True)
                emax = np.max(e, axis=norm, keepdims=True)
            m = np.where(np.abs(m) < np.inf, m, dt.type(0))
            z = x - m
            ez = np.exp(z)
            s = np.sum(ez, axis=norm, keepdims=True)
            n = max(1, size_of([x.shape[i] for i in norm]))
            u = unit(dt)
            if name == "softmax":
                out = ez / s
                err = np.abs(out) * (2 * (e + emax) + (n + 2 * ND_ULPS) * u)
            elif name == "log_softmax":
                out = z - np.log(s)
                err = e + emax + u * (2 * np.abs(z) + 2 * np.abs(out) + ND_ULPS * np.abs(np.log(s))
                                      + n + ND_ULPS)
            else:
                out = np.log(s) + m
                err = emax + u * (ND_ULPS * np.abs(np.log(s)) + n + ND_ULPS + 2 * np.abs(out)
                                  + 2 * np.abs(m))
                if not keep:
                    out = np.squeeze(out, norm)
                    err = np.squeeze(err, norm)
                    emax = np.squeeze(emax, norm)
        fn = getattr(gc, name)
        if name == "logsumexp":
            node, src = fn(a.node, axis, keep), f"gc.logsumexp({a.name}, {axis!r}, {keep})"
        else:
            node, src = fn(a.node, axis), f"gc.{name}({a.name}, {axis})"
        in_err = np.broadcast_to(e + emax, out.shape) if name != "logsumexp" else emax
        return self.add(node, out.astype(dt), _finish(out.astype(dt), err, in_err + 1e-300), src, [a])

    def op_cross_entropy(self):
        a = self.pick(lambda v: is_float(v.dtype) and len(v.shape) >= 1 and v.shape[-1] > 0,
                      make=None)
        if a is None:
            a = self.leaf(self.shape(max_rank=2) + (self.choice([1, 2, 3, 4]),),
                          self.dtype((F32, F64)))
        c = a.shape[-1]
        ldt = self.choice([I64, I32])
        labels_shape = a.shape[:-1]
        bad = self.mode == "value" and self.flip(12)
        lab, bad = self.labels(labels_shape, ldt, c, bad)
        x = a.val
        e = np.broadcast_to(a.err, a.shape)
        with np.errstate(all="ignore"):
            m = np.max(x, axis=-1, keepdims=True) if x.size else np.zeros(x.shape[:-1] + (1,), x.dtype)
            m = np.where(np.abs(m) < np.inf, m, x.dtype.type(0))
            z = x - m
            s = np.sum(np.exp(z), axis=-1, keepdims=True)
            ls = z - np.log(s)
            emax = np.max(e, axis=-1, keepdims=True) if e.size else np.zeros(m.shape)
            u = unit(x.dtype)
            lerr = e + emax + u * (2 * np.abs(z) + 2 * np.abs(ls) + ND_ULPS * np.abs(np.log(s)) + c
                                   + ND_ULPS)
            safe = np.clip(lab.val, 0, c - 1).astype(np.int64)[..., None]
            out = -np.take_along_axis(ls, safe, axis=-1)[..., 0]
            err = np.take_along_axis(lerr, safe, axis=-1)[..., 0]
            in_err = np.take_along_axis(np.broadcast_to(e + emax, ls.shape), safe, axis=-1)[..., 0]
        node = gc.softmax_cross_entropy(a.node, lab.node)
        out = np.asarray(out, x.dtype)
        return self.add(node, out, _finish(out, err, in_err + 1e-300),
                        f"gc.softmax_cross_entropy({a.name}, {lab.name})", [a, lab], raises=bad)

    def labels(self, shape, dt, depth, bad):
        """A placeholder of integer labels in [0, depth) — with one out of
        range if ``bad`` — and whether one is out of range."""
        if self.mode == "grad" or depth == 0:
            vals = np.zeros(shape, dt)
        else:
            vals = self.draw(hnp.arrays(dt, shape, elements=st.integers(0, depth - 1)))
        if bad and vals.size:
            vals = vals.copy()
            vals.flat[self.integer(0, vals.size - 1)] = self.choice([-1, depth, depth + 5])
        if self.mode == "grad" and vals.size:
            vals = np.random.default_rng(self.integer(0, 2**31)).integers(0, depth, shape).astype(dt)
        pname = self.fresh("p")
        node = gc.placeholder(shape, dt.name, name=pname)
        self.feeds[pname] = vals
        v = self.add(node, vals, 0, f"gc.placeholder({shape}, '{dt.name}', name='{pname}')")
        return v, bool(np.any((vals < 0) | (vals >= depth)))

    def op_one_hot(self):
        lab = self.pick(lambda v: v.dtype in (I32, I64) and v.exact and v.val.size <= 12
                        and (v.val.size == 0 or (v.val.min() >= 0 and v.val.max() < 5)))
        depth = self.choice([1, 2, 3, 4, 5])
        bad = False
        if lab is None or (lab.val.size and lab.val.max() >= depth):
            lab, bad = self.labels(self.shape(max_rank=2, max_size=12), self.choice([I32, I64]),
                                   depth, self.flip(10))
        out = lab.val[..., None] == np.arange(depth)
        node = gc.one_hot(lab.node, depth)
        return self.add(node, out, 0, f"gc.one_hot({lab.name}, {depth})", [lab], raises=bad)

    # -- ops that newer graphc versions add (used when present) ---------------
    def op_special(self):
        names = [n for n in ("erf", "log1p") if hasattr(gc, n)]
        if not names:
            return None
        name = self.choice(names)
        a = self.pick(self.numeric, make=self.numeric_leaf)
        if a.dtype == B:
            return None
        x = a.val if is_float(a.dtype) else a.val.astype(F64)
        ea = a.err
        u = unit(x.dtype)
        with np.errstate(all="ignore"):
            if name == "erf":
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

    def index_array(self, shape, n):
        """Integer indices in [0, n) (one out of range now and then, in value
        mode) and whether one is out of range."""
        dt = self.choice([I64, I32])
        if self.mode == "grad":
            seed = (self.integer(0, 2**31), next(self.counter))
            vals = np.random.default_rng(seed).integers(0, n, shape).astype(dt)
        else:
            vals = self.draw(hnp.arrays(dt, shape, elements=st.integers(0, n - 1)))
        bad = self.mode == "value" and vals.size > 0 and self.flip(12)
        if bad:
            vals = vals.copy()
            vals.flat[self.integer(0, vals.size - 1)] = self.choice([-1, n, n + 3])
        pname = self.fresh("p")
        node = gc.placeholder(shape, dt.name, name=pname)
        self.feeds[pname] = vals
        v = self.add(node, vals, 0, f"gc.placeholder({shape}, '{dt.name}', name='{pname}')")
        return v, bad

    def op_take(self):
        if not hasattr(gc, "take"):
            return None
        a = self.pick(lambda v: len(v.shape) >= 1 and 0 not in v.shape, make=None)
        if a is None:
            return None
        nd = len(a.shape)
        ax = self.integer(-nd, nd - 1)
        ishape = self.shape(max_rank=2, max_size=6)
        idx, bad = self.index_array(ishape, a.shape[ax])
        safe = np.clip(idx.val, 0, a.shape[ax] - 1)
        out = np.take(a.val, safe, axis=ax)
        if out.size > MAX_SIZE:
            return None
        e = np.take(np.broadcast_to(a.err, a.shape), safe, axis=ax)
        return self.add(gc.take(a.node, idx.node, ax), out, e, f"gc.take({a.name}, {idx.name}, {ax})",
                        [a, idx], raises=bad)

    def op_scatter_add(self):
        if not hasattr(gc, "scatter_add"):
            return None
        upd = self.pick(lambda v: v.dtype != B and len(v.shape) >= 1 and v.shape[0] > 0, make=None)
        if upd is None:
            return None
        nd = len(upd.shape)
        ax = self.integer(0, nd - 1)
        if upd.shape[ax] == 0:
            return None
        size = self.choice([1, 2, 3, 4])
        idx, bad = self.index_array((upd.shape[ax],), size)
        out_shape = upd.shape[:ax] + (size,) + upd.shape[ax + 1:]
        if size_of(out_shape) > MAX_SIZE:
            return None
        key = (slice(None),) * ax + (np.clip(idx.val, 0, size - 1),)
        out = np.zeros(out_shape, upd.dtype)
        with np.errstate(all="ignore"):
            np.add.at(out, key, upd.val)
            if not is_float(out.dtype) or (upd.exact and _sum_is_exact(upd.val, out.dtype)):
                err = 0
            else:
                e = np.zeros(out_shape)
                np.add.at(e, key, np.broadcast_to(upd.err, upd.shape))
                mag = np.zeros(out_shape)
                np.add.at(mag, key, np.abs(np.nan_to_num(upd.val.astype(np.float64), posinf=0, neginf=0)))
                emax = np.zeros(out_shape)
                np.maximum.at(emax, key, np.broadcast_to(upd.err, upd.shape))
                n = upd.shape[ax]
                err = _finish(out, e + (n + 2) * unit(out.dtype) * mag + 1e-300, emax + 1e-300)
        node = gc.scatter_add(upd.node, idx.node, size, ax)
        return self.add(node, out, err, f"gc.scatter_add({upd.name}, {idx.name}, {size}, {ax})",
                        [upd, idx], raises=bad)

    def op_random(self):
        if not hasattr(gc, "random_uniform"):
            return None
        shape = self.shape()
        dt = self.choice([F32, F64])
        seed, counter = self.integer(0, 2**63), self.integer(0, 3)
        node = gc.random_uniform(shape, seed, counter, dt.name)
        # no numpy twin: the interpreter's value is the reference, and it must
        # be uniform-looking numbers in [0, 1)
        val = gc.compile(node, backend="interp")()
        assert val.shape == shape and val.dtype == dt and np.all((val >= 0) & (val < 1)), val
        return self.add(node, val, 0, f"gc.random_uniform({shape}, {seed}, {counter}, '{dt.name}')")

    # op families and their weights (elementwise ops are what most graphs are made of)
    VALUE_OPS = (("binary", 4), ("unary_float", 3), ("unary_numeric", 2), ("compare", 1),
                 ("where", 1), ("cast", 1), ("reduce", 2), ("matmul", 1), ("reshape", 1),
                 ("transpose", 1), ("squeeze", 1), ("broadcast", 1), ("unbroadcast", 1),
                 ("getitem", 2), ("concatenate", 1), ("softmax", 1), ("cross_entropy", 1),
                 ("one_hot", 1), ("special", 1), ("take", 1), ("scatter_add", 1), ("random", 1),
                 ("bitwise", 1), ("intdiv", 1))
    GRAD_OPS = (("binary", 4), ("unary_float", 4), ("unary_numeric", 2), ("where", 1),
                ("reduce", 2), ("matmul", 1), ("reshape", 1), ("transpose", 1), ("squeeze", 1),
                ("broadcast", 1), ("unbroadcast", 1), ("getitem", 1), ("concatenate", 1),
                ("softmax", 1), ("cross_entropy", 1), ("cast", 1), ("special", 1), ("take", 1),
                ("scatter_add", 1))

    def step(self) -> Val:
        ops = [n for n, w in (self.VALUE_OPS if self.mode == "value" else self.GRAD_OPS)
               for _ in range(w)]
        for _ in range(4):
            name = self.choice(ops)
            v = getattr(self, f"op_{name}")()
            if v is not None and (self.mode == "value" or v.dtype == F64):
                return v
        return self.op_unary_numeric_fallback()

    def op_unary_numeric_fallback(self):
        a = self.pick(lambda v: v.dtype != B, make=lambda: self.leaf(dt=F64 if self.mode == "grad" else None))
        if a.dtype == B:
            a = self.leaf(a.shape, F64)
        out = np.negative(a.val)
        return self.add(-a.node, out, a.err, f"-{a.name}", [a])


def _key_src(key) -> str:
    def one(k):
        if k is None:
            return "None"
        if k is Ellipsis:
            return "..."
        if isinstance(k, slice):
            s = "" if k.start is None else str(k.start)
            s += ":" + ("" if k.stop is None else str(k.stop))
            if k.step is not None:
                s += f":{k.step}"
            return s
        return str(k)
    if isinstance(key, tuple):
        return ", ".join(one(k) for k in key) + ("," if len(key) == 1 else "") if key else "()"
    return one(key)


@st.composite
def cases(draw, mode: str = "value", max_ops: int = 12):
    """A random :class:`Case` (see the module docstring)."""
    g = Gen(draw, mode)
    for _ in range(draw(st.integers(1, 3))):
        g.leaf()
    n_ops = draw(st.integers(1, max_ops))
    for _ in range(n_ops):
        g.step()
    # outputs: the sinks (values nothing else consumed), newest first, so that
    # every op built is computed; in value mode maybe another value too (a
    # leaf, or one output twice)
    sinks = [v for v in reversed(g.pool) if id(v) not in g.used and not v.node.is_leaf]
    if mode == "value":
        outs = sinks[:3] or [g.pool[-1]]
        for _ in range(draw(st.integers(0, 1))):
            outs.append(g.pick())
    else:
        outs = [v for v in sinks if v.dtype == F64][:4]
        outs = outs or [g.op_unary_numeric_fallback()]
    return Case(mode, outs, g.feeds, g.params, g.lines, g.pool, g.wrt)


# ----------------------------------------------------------------- updates

class UpdateCase(Case):
    """A random graph with in-place updates: ``updates`` is a list of
    ``(parameter node, new value Val, expected new value, error bound)``;
    ``params`` holds every parameter the graph or an update touches."""

    def __init__(self, outputs, updates, feeds, params, lines, all_vals):
        super().__init__("update", outputs, feeds, params, lines, all_vals, [])
        self.updates = updates
        nodes = [o.node for o in outputs] + [v.node for _, v, _, _ in updates]
        self.feeds = {p.name: feeds[p.name] for p in gc.Graph(nodes).placeholders}

    @property
    def expect_error(self) -> bool:
        return any(o.raises for o in self.outputs) or any(v.raises for _, v, _, _ in self.updates)

    def update_dict(self) -> dict:
        return {p: v.node for p, v, _, _ in self.updates}

    def program(self) -> str:
        outs = ", ".join(o.name for o in self.outputs)
        ups = ", ".join(f"{self._pname(p)}: {v.name}" for p, v, _, _ in self.updates)
        feeds = ", ".join(f"{k}={_arr_src(v)}" for k, v in self.feeds.items())
        return "\n".join(["import numpy as np", "import graphc as gc", "nan, inf = np.nan, np.inf",
                          *self.lines, f"outs = [{outs}]", f"updates = {{{ups}}}",
                          f"feeds = dict({feeds})",
                          "f = gc.compile(outs, updates=updates)",
                          "print(f(**feeds), f(**feeds))  # compare with backend='interp'"])

    def _pname(self, p) -> str:
        for v in self.all_vals:
            if v.node is p:
                return v.name
        return repr(p.name)


class UpdateGen(Gen):
    """A :class:`Gen` for graphs with updates: leaves are mostly parameters
    (some square, so that their transposes can be new values of each other)
    and the ops are weighted towards those that move elements (transposes,
    reversed slices) and mix them."""

    VALUE_OPS = (("binary", 4), ("unary_numeric", 2), ("where", 1), ("reduce", 1),
                 ("matmul", 1), ("reshape", 1), ("transpose", 3), ("broadcast", 1),
                 ("getitem", 3), ("concatenate", 1), ("cast", 1), ("unary_float", 1),
                 ("compare", 1))

    def leaf(self, shape=None, dt=None, kind=None) -> Val:
        if kind is None:
            kind = self.choice(["parameter"] * 4 + ["placeholder", "constant"])
        if shape is None and self.flip(2):
            n = self.choice([1, 2, 3, 4])
            shape = (n, n) if self.flip(2) else (self.choice([1, 2]), n, n)
        return super().leaf(shape, dt, kind)

    def param_view(self, pv: Val) -> Val:
        """A parameter itself, or a copy, transpose or reversed slice of it."""
        nd = len(pv.shape)
        r = self.integer(0, 4)
        e = np.broadcast_to(pv.err, pv.shape)
        if r == 0 or nd == 0:
            return pv
        if r == 1:
            return self.add(gc.reshape(pv.node, pv.shape), pv.val.reshape(pv.shape), e,
                            f"gc.reshape({pv.name}, {pv.shape})", [pv])
        if r == 2:
            return self.add(gc.transpose(pv.node), np.transpose(pv.val), np.transpose(e),
                            f"gc.transpose({pv.name})", [pv])
        ax = self.integer(0, nd - 1)
        key = (slice(None),) * ax + (slice(None, None, -1),)
        if r == 4 and nd >= 2:
            key = (slice(None, None, -1),) * nd
        return self.add(pv.node[key], pv.val[key].copy(), e[key].copy(),
                        f"{pv.name}[{_key_src(key)}]", [pv])


def _update_value(target, v: Val):
    """The value ``v`` stored into parameter ``target`` (broadcast, and cast
    between float dtypes, as compile(updates=...) does) and its error bound."""
    dt = np.dtype(target.dtype)
    with np.errstate(all="ignore"):
        out = np.broadcast_to(v.val, target.shape).astype(dt)
    err = np.broadcast_to(v.err, target.shape)
    if dt != v.dtype:
        err = _finish(out, _round(out, err), err, inexact=False)
    return out, np.array(err, np.float64)


@st.composite
def update_cases(draw, max_ops: int = 8):
    """A random :class:`UpdateCase`: a graph built as :func:`cases` builds
    one, mostly from parameters; outputs that are its sinks and parameters,
    their copies, transposes and reversed slices; updates of some parameters
    to values of the graph (which read other updated parameters), to other
    parameters (swaps) and to their transposes and reversed slices."""
    g = UpdateGen(draw, "value")
    for _ in range(draw(st.integers(1, 3))):
        g.leaf(kind="parameter")
    for _ in range(draw(st.integers(0, max_ops))):
        g.step()
    params = [v for v in g.pool if v.node.op == "parameter"]
    sinks = [v for v in reversed(g.pool) if id(v) not in g.used and not v.node.is_leaf]
    outs = sinks[:2]
    for _ in range(draw(st.integers(0 if outs else 1, 3))):
        outs.append(g.param_view(g.choice(params)))
    # new values: any value (or a view of a parameter) of the target's shape,
    # or one that broadcasts to it, of its dtype (or another float dtype)
    targets = draw(st.lists(st.sampled_from(params), min_size=1, max_size=len(params),
                            unique_by=lambda v: v.node.id))
    updates = []
    for t in targets:
        views = [g.param_view(p) for p in params if draw(st.booleans())]

        def fits(v, t=t):
            if v.raises or not (v.dtype == t.dtype or (is_float(v.dtype) and is_float(t.dtype))):
                return False
            try:
                return np.broadcast_shapes(v.shape, t.shape) == t.shape
            except ValueError:
                return False
        cands = [v for v in views if fits(v)] + [v for v in g.pool if fits(v)]
        r = draw(st.integers(0, 2))
        if r == 0 and views and any(fits(w) for w in views):
            v = draw(st.sampled_from([w for w in views if fits(w)]))
        else:
            v = draw(st.sampled_from(cands))          # t itself always fits
        if r == 1 and t.dtype != B and v.dtype == t.dtype:
            # the target's old value mixed with the new one: t + v (or t * v)
            mul = draw(st.booleans())
            et, ev = _bcast(t.err, t.shape), _bcast(v.err, t.shape)
            with np.errstate(all="ignore"):
                out = (np.multiply if mul else np.add)(t.val, v.val)
                if mul:          # first-order propagation, as op_binary does
                    at = np.abs(_bcast(t.val.astype(np.float64), t.shape))
                    av = np.abs(_bcast(np.asarray(v.val, np.float64), t.shape))
                    e_in = at * ev + av * et + et * ev
                else:
                    e_in = et + ev
            err = _finish(out, _round(out, e_in), et + ev) if is_float(t.dtype) else 0
            if mul and is_float(t.dtype):
                x, y = _bcast(t.val, t.shape), _bcast(np.asarray(v.val, np.float64), t.shape)
                err = np.where((np.isinf(x) & (np.abs(y) <= ev)) | (np.isinf(y) & (np.abs(x) <= et)),
                               np.inf, err)
            v = g.add(t.node * v.node if mul else t.node + v.node, out, err,
                      f"{t.name} {'*' if mul else '+'} {v.name}", [t, v])
        val, err = _update_value(t.node, v)
        updates.append((t.node, v, val, err))
    touched = gc.Graph([o.node for o in outs] + [v.node for _, v, _, _ in updates]).parameters
    touched = list(dict.fromkeys(list(touched) + [t.node for t in targets]))
    return UpdateCase(outs, updates, g.feeds, touched, g.lines, g.pool)
