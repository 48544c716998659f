"""Softmax-family, label and gather ops of the fuzz generator (a mixin of
fuzzgen.Gen): softmax, log_softmax, logsumexp, softmax cross-entropy, and
the ops with integer index inputs (one-hot, take, scatter-add, each with an
out-of-range index now and then), plus random numbers.
"""
from __future__ import annotations

import numpy as np
from fuzzcase import F32, F64, I32, I64, MAX_SIZE, ND_ULPS, B, _finish, _sum_is_exact, is_float, size_of, unit
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc


class NNOps:
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
        v = self.placeholder(shape, dt, vals)
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
        v = self.placeholder(shape, dt, vals)
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

