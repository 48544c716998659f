"""Graphs with in-place updates for the fuzzer: :class:`UpdateCase`,
:class:`UpdateGen` (leaves mostly parameters, ops that move elements) and
the strategy :func:`update_cases`.
"""
from __future__ import annotations

import numpy as np
from fuzzcase import B, Case, Val, _arr_src, _bcast, _finish, _key_src, _round, is_float
from fuzzgen import Gen
from hypothesis import strategies as st

import graphc as gc


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
