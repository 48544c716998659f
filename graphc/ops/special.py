"""Special functions: ``erf`` (for the exact GELU) and an accurate ``log1p``
(for softplus and the stable binary cross-entropy).

``erf`` lowers to the C library's ``erf``/``erff`` (there is no LLVM
intrinsic); ``log1p`` lowers to ``log(1 + x) * x / ((1 + x) - 1)``, which
cancels the rounding error of ``1 + x`` and stays accurate for tiny ``x``.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DTypeError
from ..ir import dtypes as D
from ..ir.node import Node
from .common import as_node
from .elementwise import cast, exp
from .registry import OpDef, make, register


def _infer_float(name):
    def infer(inputs, attrs):
        if len(inputs) != 1:
            raise TypeError(f"{name} takes 1 input, got {len(inputs)}")
        (x,) = inputs
        if not D.is_float(x.dtype):
            raise DTypeError(f"{name}: needs a floating operand, got {x.dtype}")
        return x.shape, x.dtype
    return infer


def libm_call(s, x, name64: str, name32: str):
    """Call the C library's ``name64(double)`` / ``name32(float)`` on ``x``."""
    from llvmlite import ir
    t = x.v.type
    fname = name32 if x.dtype == D.float32 else name64
    fn = s.module.globals.get(fname)
    if fn is None:
        fn = ir.Function(s.module, ir.FunctionType(t, [t]), fname)
    return s.wrap(s.b.call(fn, [x.v]), x.dtype)


_erf_vec = np.vectorize(math.erf, otypes=[np.float64])


def _erf_ref(x):
    return _erf_vec(x.astype(np.float64)).astype(x.dtype) if x.size else x.copy()


register(OpDef("erf", "elementwise", _infer_float("erf"), _erf_ref,
               lambda n, g: [g * (2.0 / math.sqrt(math.pi)) * exp(-(n.inputs[0] * n.inputs[0]))],
               scalar=lambda s, n, x: libm_call(s, x, "erf", "erff"),
               doc="the error function (C library erf)", nin=1))


def _log1p_scalar(s, n, x):
    one = s.const(1.0, x.dtype)
    u = x + one
    d = u - one
    r = s.log(u) * (x / d)
    r = s.select(s.eq(d, s.const(0.0, x.dtype)), x, r)          # 1 + x rounds to 1
    return s.select(s.eq(u, s.const(np.inf, x.dtype)), u, r)      # x = +inf


register(OpDef("log1p", "elementwise", _infer_float("log1p"), np.log1p,
               lambda n, g: [g / (n.inputs[0] + 1.0)], scalar=_log1p_scalar,
               doc="log(1 + x), accurate for tiny x", nin=1))


def _float_arg(name, x) -> Node:
    x = as_node(x, opname=name)
    if D.is_int(x.dtype):
        x = cast(x, D.float64)
    elif D.is_bool(x.dtype):
        raise DTypeError(f"{name}: bool operand; cast it to a float first")
    return x


def erf(x) -> Node:
    """The error function, elementwise (integers give float64, as numpy)."""
    return make("erf", (_float_arg("erf", x),))


def log1p(x) -> Node:
    """``log(1 + x)``, accurate also where ``|x|`` is tiny."""
    return make("log1p", (_float_arg("log1p", x),))
