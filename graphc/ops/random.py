"""Counter-based random numbers compiled into the kernel.

``random_uniform(shape, seed, counter)`` is a pure function of its
arguments: element ``i`` (row-major linear index) is Philox-4x32-10
(Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011)
applied to the 128-bit counter ``(i, counter)`` under the 64-bit key
``seed``, turned into a float in ``[0, 1)`` (24 random bits for float32,
53 for float64). No state lives in the kernel: a different ``counter``
(e.g. a step count kept in a parameter and incremented through
``compile(updates=...)``) gives an independent draw, the same arguments give
the same numbers on both backends, bit for bit.

The op is an index map (``lower_at``): it computes its element from the
loop index, so it fuses into whatever consumes it.
"""
from __future__ import annotations

import operator

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from . import attrs as A
from .common import as_node, check_size, shape_of
from .elementwise import cast
from .registry import OpDef, make, register

M0, M1 = 0xD2511F53, 0xCD9E8D57          # Philox-4x32 multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85          # Weyl key increments
ROUNDS = 10
MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1


def philox4x32(c0, c1, c2, c3, k0, k1, rounds: int = ROUNDS):
    """Philox-4x32 on uint64 numpy arrays holding 32-bit words (vectorized)."""
    m = np.uint64(MASK32)
    s32 = np.uint64(32)
    c = [np.asarray(v, np.uint64) for v in (c0, c1, c2, c3)]
    k0, k1 = int(k0), int(k1)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
        p0 = np.uint64(M0) * c[0]
        p1 = np.uint64(M1) * c[2]
        c = [(p1 >> s32) ^ c[1] ^ np.uint64(k0), p1 & m, (p0 >> s32) ^ c[3] ^ np.uint64(k1), p0 & m]
    return c


def _uniform_ref(counter, shape, dtype, seed):
    n = int(np.prod(shape, dtype=np.int64))
    lin = np.arange(n, dtype=np.uint64)
    ctr = int(np.asarray(counter).astype(np.int64)) & MASK64
    m = np.uint64(MASK32)
    w = philox4x32(lin & m, lin >> np.uint64(32), ctr & MASK32, ctr >> 32,
                   seed & MASK32, seed >> 32)
    if dtype == D.float32:
        out = (w[0] >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24)
    else:
        bits = (w[0] << np.uint64(21)) | (w[1] >> np.uint64(11))
        out = bits.astype(np.float64) * 2.0 ** -53
    return out.reshape(shape)


def _uniform_infer(inputs, attrs):
    (ctr,) = inputs
    if ctr.shape != () or not D.is_int(ctr.dtype):
        raise DTypeError(f"random_uniform: the counter must be a 0-d integer, got "
                         f"{ctr.dtype}{list(ctr.shape)}")
    return attrs["shape"], attrs["dtype"]


def _uniform_lower(ctx, n, idx):
    from llvmlite import ir
    s = ctx.s
    b = s.b                      # the IRBuilder behind the scalar builder
    i32, i64 = ir.IntType(32), ir.IntType(64)
    c64 = lambda v: ir.Constant(i64, v)
    c32 = lambda v: ir.Constant(i32, v)
    lin = ctx.ix.linearize(idx, n.shape)
    ctr = s.cast(ctx.eval(n.inputs[0], []), D.int64).v
    c = [b.trunc(lin, i32), b.trunc(b.lshr(lin, c64(32)), i32),
         b.trunc(ctr, i32), b.trunc(b.lshr(ctr, c64(32)), i32)]
    seed = n.attrs["seed"]
    k0, k1 = seed & MASK32, seed >> 32
    for r in range(ROUNDS):
        if r:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
        p0 = b.mul(b.zext(c[0], i64), c64(M0))
        p1 = b.mul(b.zext(c[2], i64), c64(M1))
        hi0, lo0 = b.trunc(b.lshr(p0, c64(32)), i32), b.trunc(p0, i32)
        hi1, lo1 = b.trunc(b.lshr(p1, c64(32)), i32), b.trunc(p1, i32)
        c = [b.xor(b.xor(hi1, c[1]), c32(k0)), lo1, b.xor(b.xor(hi0, c[3]), c32(k1)), lo0]
    if n.dtype == D.float32:
        f = b.uitofp(b.lshr(c[0], c32(8)), ir.FloatType())
        return s.wrap(f, D.float32) * s.const(2.0 ** -24, D.float32)
    bits = b.or_(b.shl(b.zext(c[0], i64), c64(21)), b.zext(b.lshr(c[1], c32(11)), i64))
    return s.wrap(b.uitofp(bits, ir.DoubleType()), D.float64) * s.const(2.0 ** -53, D.float64)


def _uniform_attrs(inputs, attrs):
    dt = A.dtype("random_uniform", "dtype", attrs["dtype"])
    if not D.is_float(dt):
        raise DTypeError(f"random_uniform: attribute dtype must be float32 or float64, got {dt}")
    return {"shape": A.shape("random_uniform", "shape", attrs["shape"]), "dtype": dt,
            "seed": A.integer("random_uniform", "seed", attrs["seed"], 0, MASK64)}


register(OpDef("random_uniform", "index", _uniform_infer, _uniform_ref,
               lambda n, g: [None], lower_at=_uniform_lower, nin=1,
               attrs=("shape", "dtype", "seed"), check_attrs=_uniform_attrs,
               doc="uniform [0, 1) floats: Philox-4x32-10 of (linear index, counter) under key seed"))


def random_uniform(shape, seed: int, counter=0, dtype="float32") -> Node:
    """Uniform floats in ``[0, 1)`` of ``shape``, a pure function of
    ``(seed, counter)``: the same arguments give the same array; change
    ``counter`` (an int or a 0-d integer node, e.g. a step-count parameter)
    for a fresh, independent draw. ``seed`` is any int (taken modulo 2**64)."""
    shape = shape_of("random_uniform", shape)
    dt = D.as_dtype(dtype, "random_uniform")
    if not D.is_float(dt):
        raise DTypeError(f"random_uniform: dtype must be float32 or float64, got {dt}")
    check_size("random_uniform", shape, dt)
    try:
        seed = operator.index(seed) & MASK64
    except TypeError:
        raise DTypeError(f"random_uniform: seed must be an int, got {seed!r}") from None
    ctr = as_node(counter, None if not isinstance(counter, int) else D.int64, opname="random_uniform")
    if ctr.shape != ():
        raise ShapeError(f"random_uniform: the counter must be 0-d, got shape {ctr.shape}")
    if D.is_int(ctr.dtype) and ctr.dtype != D.int64:
        ctr = cast(ctr, D.int64)
    return make("random_uniform", (ctr,), {"shape": shape, "dtype": dt, "seed": seed})
