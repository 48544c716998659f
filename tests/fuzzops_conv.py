"""Convolutional-network ops of the fuzz generator (a mixin of fuzzgen.Gen):
pad, flatten, windows, argmax/argmin, max/avg/adaptive/global pooling, conv2d
and conv1d, mirrored by the numpy references of tests/convref.py. Selections
(pad, flatten, max pooling) carry their inputs' errors; sums (convolutions,
average pooling) get matmul's bound: the propagated input errors plus
(terms + 2) ulps of the sum of magnitudes.
"""
from __future__ import annotations

import numpy as np
from convref import np_adaptive_avg_pool2d, np_avg_pool2d, np_conv2d, np_flatten, np_pad, np_windows
from fuzzcase import F32, F64, MAX_SIZE, B, _bcast, _finish, is_float, size_of, unit

import graphc as gc


def _np_max_pool2d(x, k, s, p):
    """PyTorch's tap rule (val > max or isnan(val)) over a -inf padded input."""
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=-np.inf)
    oh = (xp.shape[2] - k[0]) // s[0] + 1
    ow = (xp.shape[3] - k[1]) // s[1] + 1
    y = None
    for i in range(k[0]):
        for j in range(k[1]):
            t = xp[:, :, i:i + (oh - 1) * s[0] + 1:s[0], j:j + (ow - 1) * s[1] + 1:s[1]]
            y = t if y is None else np.where((t > y) | np.isnan(t), t, y)
    return y


def _window_max(e, k, s, p):
    """Per output, the largest error in its window (the padding has none)."""
    return _np_max_pool2d(np.asarray(e, np.float64), k, s, p).clip(0)


class ConvOps:
    def image(self, max_size=MAX_SIZE, dts=(F64, F32)):
        """A 4-D float value (N, C, H, W): an existing one or a fresh leaf."""
        def ok(v):
            return len(v.shape) == 4 and v.dtype in dts and 0 not in v.shape
        shape = (self.choice([1, 2]), self.choice([1, 2]), self.choice([2, 3, 4]),
                 self.choice([2, 3, 4, 5]))
        if size_of(shape) > max_size:
            shape = (1,) + shape[1:]
        return self.pick(ok, make=lambda: self.leaf(shape, self.dtype(dts)))

    def op_pad(self):
        a = self.pick(lambda v: len(v.shape) >= 1, make=None)
        if a is None:
            return None
        mode = self.choice(["constant", "constant", "reflect", "edge"])
        pw = []
        for n in a.shape:
            hi = 2 if mode == "constant" else (min(2, n - 1) if mode == "reflect" else (2 if n else 0))
            pw.append((self.integer(0, max(hi, 0)), self.integer(0, max(hi, 0))))
        pw = tuple(pw)
        out_shape = tuple(n + x + y for n, (x, y) in zip(a.shape, pw))
        if size_of(out_shape) > MAX_SIZE:
            return None
        value = 0
        if mode == "constant" and self.flip(2):
            value = bool(self.flip(2)) if a.dtype == B else (
                self.choice([-2.5, 1.0, 3.0, np.inf]) if is_float(a.dtype) else self.choice([-3, 7]))
        out = np_pad(a.val, pw, mode, value)
        err = np_pad(np.array(_bcast(a.err, a.shape)), pw, mode, 0)
        src = f"gc.pad({a.name}, {pw!r}, {mode!r}, {value!r})"
        return self.add(gc.pad(a.node, pw, mode, value), out, err, src, [a])

    def op_flatten(self):
        a = self.pick(lambda v: len(v.shape) >= 1, make=None)
        if a is None:
            return None
        nd = len(a.shape)
        s = self.integer(0, nd - 1)
        e = self.integer(s, nd - 1) - (nd if self.flip(2) else 0)
        out = np_flatten(a.val, s, e)
        err = np_flatten(np.array(_bcast(a.err, a.shape)), s, e)
        return self.add(gc.flatten(a.node, s, e), out, err, f"gc.flatten({a.name}, {s}, {e})", [a])

    def op_windows(self):
        a = self.pick(lambda v: len(v.shape) >= 1 and 0 not in v.shape, make=None)
        if a is None:
            return None
        nd = len(a.shape)
        ns = self.integer(1, min(nd, 3))
        spatial = a.shape[nd - ns:]
        dil = tuple(self.integer(1, 2) for _ in spatial)
        kern = tuple(self.integer(1, max(1, (s - 1) // d + 1)) for s, d in zip(spatial, dil))
        stride = tuple(self.integer(1, 3) for _ in spatial)
        out = np_windows(a.val, kern, stride, dil)
        if out.size > MAX_SIZE:
            return None
        err = np_windows(np.array(_bcast(a.err, a.shape)), kern, stride, dil)
        src = f"gc.windows({a.name}, {kern}, {stride}, {dil})"
        return self.add(gc.windows(a.node, kern, stride, dil), out, err, src, [a])

    def op_argmax(self):
        # an inexact value's argmax is not determined: exact values only
        a = self.pick(lambda v: len(v.shape) >= 1 and 0 not in v.shape and v.exact, make=None)
        if a is None:
            return None
        name = self.choice(["argmax", "argmin"])
        nd = len(a.shape)
        axis = None if self.flip(3) else self.integer(-nd, nd - 1)
        keep = self.flip(2)
        out = getattr(np, name)(a.val, axis=axis, keepdims=keep).astype(np.int64)
        node = getattr(gc, name)(a.node, axis=axis, keepdims=keep)
        return self.add(node, out, 0, f"gc.{name}({a.name}, axis={axis}, keepdims={keep})", [a])

    def op_pool(self):
        a = self.image()
        kind = self.choice(["max", "avg", "adaptive", "global"])
        if kind == "max" and self.mode == "grad" and not a.node.is_leaf:
            return None              # ties of computed values are kinks finite differences miss
        h, w = a.shape[2:]
        k = (self.integer(1, h), self.integer(1, w))
        s = (self.integer(1, 3), self.integer(1, 3))
        p = (self.integer(0, k[0] // 2), self.integer(0, k[1] // 2))
        x = a.val
        e = np.array(_bcast(a.err, a.shape))
        if kind == "max":
            out = _np_max_pool2d(x, k, s, p)
            node = gc.max_pool2d(a.node, k, s, p)
            src = f"gc.max_pool2d({a.name}, {k}, {s}, {p})"
            return self.add(node, out, _finish(out, _window_max(e, k, s, p), _window_max(e, k, s, p)),
                            src, [a])
        if kind == "avg":
            inc = self.flip(2)
            out = np_avg_pool2d(x, k, s, p, count_include_pad=inc)
            node = gc.avg_pool2d(a.node, k, s, p, count_include_pad=inc)
            src = f"gc.avg_pool2d({a.name}, {k}, {s}, {p}, count_include_pad={inc})"
            terms = k[0] * k[1]
            ein = np_avg_pool2d(e, k, s, p, count_include_pad=inc)
            with np.errstate(all="ignore"):
                mag = np_avg_pool2d(np.nan_to_num(np.abs(x.astype(np.float64)), posinf=0), k, s, p,
                                    count_include_pad=inc)
            err = ein + (terms + 2) * unit(out.dtype) * mag * 2 + 1e-300
            return self.add(node, out, _finish(out, err, ein + 1e-300), src, [a])
        size = (1, 1) if kind == "global" else (self.integer(1, h), self.integer(1, w))
        out = np_adaptive_avg_pool2d(x, size)
        node = gc.global_avg_pool2d(a.node) if kind == "global" else gc.adaptive_avg_pool2d(a.node, size)
        src = (f"gc.global_avg_pool2d({a.name})" if kind == "global"
               else f"gc.adaptive_avg_pool2d({a.name}, {size})")
        ein = np_adaptive_avg_pool2d(e, size)
        with np.errstate(all="ignore"):
            mag = np_adaptive_avg_pool2d(np.nan_to_num(np.abs(x.astype(np.float64)), posinf=0), size)
        err = ein + (h * w + 4) * unit(out.dtype) * mag * 2 + 1e-300
        return self.add(node, out, _finish(out, err, ein + 1e-300), src, [a])

    def op_conv(self):
        a = self.image(max_size=32)
        n, c, h, w = a.shape
        conv1d = self.flip(5)          # conv1d on the first row of each image
        if conv1d:
            h = 1
        groups = self.choice([g for g in (1, 2) if c % g == 0])
        o = groups * self.choice([1, 2])
        k = (self.integer(1, min(h, 3)), self.integer(1, min(w, 3)))
        s = (1 if conv1d else self.integer(1, 2), self.integer(1, 2))
        d = (1, self.integer(1, 2) if w >= 2 * k[1] - 1 else 1)
        pl, pr = self.integer(0, 1), self.integer(0, 1)
        pt, pb = (0, 0) if conv1d else (self.integer(0, 1), self.integer(0, 1))
        pads = ((pt, pb), (pl, pr))
        wv = self.leaf((o, c // groups) + k, a.dtype if self.mode == "value" else F64)
        x = a.val[:, :, :h]
        kw = dict(stride=s, padding=pads, dilation=d, groups=groups)
        out = np_conv2d(x, wv.val, None, **kw)
        if out.size == 0 or out.size > MAX_SIZE:
            return None
        ex = np.array(_bcast(a.err, a.shape))[:, :, :h]
        ew = np.array(_bcast(wv.err, wv.shape))
        with np.errstate(all="ignore"):
            fx = np.nan_to_num(np.abs(x.astype(np.float64)), posinf=0)
            fw = np.nan_to_num(np.abs(wv.val.astype(np.float64)), posinf=0)
            mag = np_conv2d(fx, fw, None, **kw)
            in_err = np_conv2d(ex, fw, None, **kw) + np_conv2d(fx, ew, None, **kw) + \
                np_conv2d(ex, ew, None, **kw)
        terms = (c // groups) * k[0] * k[1]
        err = in_err + (terms + 2) * unit(out.dtype) * mag * 2 + 1e-300
        if conv1d:
            kw1 = dict(stride=s[1], padding=((pl, pr),), dilation=d[1], groups=groups)
            node = gc.conv1d(a.node[:, :, 0], wv.node[:, :, 0], **kw1)
            src = f"gc.conv1d({a.name}[:, :, 0], {wv.name}[:, :, 0], **{kw1!r})"
            out, err, in_err = out[:, :, 0], err[:, :, 0], in_err[:, :, 0]
        else:
            node = gc.conv2d(a.node, wv.node, **kw)
            src = f"gc.conv2d({a.name}, {wv.name}, **{kw!r})"
        return self.add(node, out, _finish(out, err, in_err + 1e-300), src, [a, wv])
