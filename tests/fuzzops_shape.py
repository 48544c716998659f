"""Reductions, matmul and movement ops of the fuzz generator (a mixin of
fuzzgen.Gen): sum/mean/max/min, matmul, reshape, transposes, squeeze,
broadcast and unbroadcast, indexing by slices, concatenation.
"""
from __future__ import annotations

import numpy as np
from fuzzcase import (
    F32,
    F64,
    I32,
    I64,
    MAX_SIZE,
    B,
    _bcast,
    _dyadic_bits,
    _finish,
    _key_src,
    _sum_is_exact,
    is_float,
    size_of,
    unit,
)
from hypothesis import strategies as st

import graphc as gc


class ShapeOps:
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

