"""The fuzz generator: :class:`Gen` draws leaves and operands and builds a
random graph op by op (the ops are its mixins, in fuzzops_math.py,
fuzzops_shape.py, fuzzops_nn.py and fuzzops_conv.py); :func:`cases` is the hypothesis
strategy of a random :class:`fuzzcase.Case`.
"""
from __future__ import annotations

import itertools

import numpy as np
from fuzzcase import DTYPES, F64, GRID, MAX_SIZE, NUMERIC, SPECIALS, B, Case, Val, _arr_src, size_of
from fuzzops_conv import ConvOps
from fuzzops_math import ElementwiseOps
from fuzzops_nn import NNOps
from fuzzops_shape import ShapeOps
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc


class Gen(ElementwiseOps, ShapeOps, NNOps, ConvOps):
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
            v = self.placeholder(shape, dt, value)
            if self.mode == "grad" and dt == F64:
                self.wrt.append(v.node)
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

    def placeholder(self, shape, dt, value) -> Val:
        """A fresh placeholder fed ``value``."""
        pname = self.fresh("p")
        node = gc.placeholder(shape, dt.name, name=pname)
        self.feeds[pname] = value
        return self.add(node, value, 0, f"gc.placeholder({shape}, '{dt.name}', name='{pname}')")

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

    # op families and their weights (elementwise ops are what most graphs are made of)
    VALUE_OPS = (("binary", 4), ("unary_float", 3), ("unary_numeric", 2), ("compare", 1),
                 ("where", 1), ("cast", 1), ("reduce", 2), ("matmul", 1), ("reshape", 1),
                 ("transpose", 1), ("squeeze", 1), ("broadcast", 1), ("unbroadcast", 1),
                 ("getitem", 2), ("concatenate", 1), ("softmax", 1), ("cross_entropy", 1),
                 ("one_hot", 1), ("special", 1), ("take", 1), ("scatter_add", 1), ("random", 1),
                 ("bitwise", 1), ("intdiv", 1), ("pad", 1), ("flatten", 1), ("argmax", 1),
                 ("pool", 1), ("conv", 1), ("windows", 1))
    GRAD_OPS = (("binary", 4), ("unary_float", 4), ("unary_numeric", 2), ("where", 1),
                ("reduce", 2), ("matmul", 1), ("reshape", 1), ("transpose", 1), ("squeeze", 1),
                ("broadcast", 1), ("unbroadcast", 1), ("getitem", 1), ("concatenate", 1),
                ("softmax", 1), ("cross_entropy", 1), ("cast", 1), ("special", 1), ("take", 1),
                ("scatter_add", 1), ("pad", 1), ("flatten", 1), ("pool", 1), ("conv", 1),
                ("windows", 1))

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

