"""The numpy mirror of a fuzzed graph: its values (:class:`Val`, each with
an error bound per element), the case (:class:`Case`, which renders itself
as a runnable program) and the error arithmetic the generator's ops use
(:func:`_finish`, :func:`_round`, exact-sum tests). The error bounds are
explained in the docstring of tests/fuzzgraph.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

