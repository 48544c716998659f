"""``gc.check_op``: verify an op's rules against its numpy reference.

For every sample (and its float32 twin, when the sample is float64):

1. **shape and dtype rules** — the node built from placeholders has the
   shape and dtype of what the reference returns for those arrays;
2. **lowering** — the compiled function (each ``opt_level`` asked for)
   matches the reference;
3. **vjp** (float64 samples) — ``gc.grad`` of ``sum(op(x) * c)`` (random
   ``c``) matches central finite differences of the reference, for every
   floating input, in the interpreter; and the compiled gradient matches
   the interpreted one.

Every failure names the rule, the sample and the size of the error (the
largest absolute difference, where it is, both values and the tolerance).
A registration that passes returns a :class:`CheckReport`; one that fails
raises :class:`OpCheckError` listing every failure.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import GraphcError
from ..ir import dtypes as D
from ..ops import registry


class OpCheckError(GraphcError, ValueError):
    """An op's registration disagrees with its reference. ``failures`` lists
    ``(rule, message)`` pairs."""

    def __init__(self, message: str, failures=(), report=None):
        super().__init__(message)
        self.failures = list(failures)
        self.report = report


@dataclass
class CheckReport:
    """What :func:`check_op` checked: one line per check, and the failures."""
    op: str
    lines: list = field(default_factory=list)        # (rule, sample, detail, ok)
    failures: list = field(default_factory=list)     # (rule, message)

    @property
    def ok(self) -> bool:
        return not self.failures

    def add(self, rule, sample, detail, ok=True, message=None):
        self.lines.append((rule, sample, detail, ok))
        if not ok:
            self.failures.append((rule, f"{rule} [sample {sample}]: {message or detail}"))

    def __str__(self):
        n = len(self.lines)
        head = (f"check_op({self.op!r}): {n} checks, all passed" if self.ok else
                f"check_op({self.op!r}): {len(self.failures)} of {n} checks FAILED")
        rows = [head]
        for rule, sample, detail, ok in self.lines:
            rows.append(f"  {'ok ' if ok else 'BAD'}  {rule:<18} {sample:<28} {detail}")
        return "\n".join(rows)


def _sig(arrays) -> str:
    return ", ".join(f"{D.SHORT.get(a.dtype, str(a.dtype))}[{','.join(map(str, a.shape))}]"
                     for a in arrays)


def _default_shapes(nin: int) -> list:
    if nin == 0:
        return [()]
    if nin == 1:
        return [((),), ((7,),), ((3, 5),)]
    full = tuple((3, 5) for _ in range(nin))
    bcast = ((3, 5),) + tuple((5,) for _ in range(nin - 1))
    outer = ((4, 1),) + tuple((1, 3) for _ in range(nin - 1))
    return [full, bcast, outer]


def _materialize(sample, rng) -> tuple:
    if isinstance(sample, np.ndarray) or not isinstance(sample, (tuple, list)):
        sample = (sample,)
    out = []
    for s in sample:
        if isinstance(s, tuple) and all(isinstance(k, (int, np.integer)) for k in s):
            out.append(rng.standard_normal(s))
        else:
            out.append(np.array(s, copy=True))
    return tuple(out)


def _worst(actual, expected, rtol, atol):
    """(max abs error, index, actual value, expected value, passes)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return np.inf, None, None, None, False
    both_nan = np.isnan(a) & np.isnan(e)
    same_inf = np.isinf(a) & (a == e)
    diff = np.where(both_nan | same_inf, 0.0, np.abs(a - e))
    diff = np.where(np.isnan(diff), np.inf, diff)
    if diff.size == 0:
        return 0.0, None, None, None, True
    bad = diff > atol + rtol * np.abs(np.where(np.isfinite(e), e, 0.0))
    k = int(np.argmax(np.where(bad, diff, -1.0))) if bad.any() else int(np.argmax(diff))
    idx = np.unravel_index(k, diff.shape)
    return float(diff.flat[k]), tuple(int(i) for i in idx), a[idx], e[idx], not bad.any()


def _describe_err(what, err, idx, got, want, rtol, atol, names=("got", "expected")):
    where = f" at index {idx}" if idx else ""
    rel = abs(err) / max(abs(want), 1e-300) if want is not None and np.isfinite(err) else None
    relpart = f", relative {rel:.3g}" if rel is not None else ""
    vals = f": {names[0]} {got:.9g}, {names[1]} {want:.9g}" if got is not None else ""
    return (f"{what} by {err:.6g} (max abs{where}{vals}{relpart}; tolerance rtol={rtol:g}, "
            f"atol={atol:g})")


def _builder(name):
    from .register import USER_OPS
    reg = USER_OPS.get(name)
    if reg is not None:
        return reg, reg.function
    registry.get(name)
    return None, lambda *xs, **attrs: registry.make(name, xs, attrs)


def check_op(name: str, samples=None, *, attrs: dict | None = None, opt_levels=(0, 3),
             rtol: float = 1e-6, atol: float = 1e-9, grad_rtol: float = 1e-5,
             grad_atol: float = 1e-6, eps: float = 1e-6, float32: bool = True,
             seed: int = 0, raise_on_failure: bool = True) -> CheckReport:
    """Check op ``name``'s shape, dtype, lowering and VJP rules against its
    reference; return a :class:`CheckReport` (raise :class:`OpCheckError`
    on any failure, unless ``raise_on_failure=False``).

    ``samples``: a list of inputs, each a tuple of arrays or of shapes (random
    float64 arrays); by default the registration's ``samples=``, else a few
    broadcasting float64 shapes. ``attrs``: attributes for the op.
    Tolerances: ``rtol``/``atol`` for float64 values (float32 uses at least
    ``1e-5``/``1e-6``), ``grad_rtol``/``grad_atol`` for the gradient against
    finite differences of step ``eps``.
    """
    from ..autodiff import grad as gc_grad
    from ..compiler import compile as gc_compile
    from ..ops.common import placeholder
    from ..ops.reduce import sum as gc_sum
    reg, build = _builder(name)
    rng = np.random.default_rng(seed)
    if samples is None:
        samples = reg.samples if reg is not None and reg.samples else None
    if samples is None:
        if reg is None:
            raise ValueError(f"check_op({name!r}): give samples= (a list of input tuples)")
        samples = _default_shapes(reg.nin)
    attrs = dict(attrs or {})
    ref = registry.get(name).ref
    rep = CheckReport(name)

    variants = []
    for s in samples:
        arrays = _materialize(s, rng)
        variants.append(arrays)
        if float32 and arrays and all(a.dtype == np.float64 for a in arrays):
            variants.append(tuple(a.astype(np.float32) for a in arrays))

    for arrays in variants:
        sig = _sig(arrays)
        phs = [placeholder(a.shape, a.dtype, name=f"in{k}") for k, a in enumerate(arrays)]
        try:
            node = build(*phs, **attrs)
        except Exception as e:
            rep.add("shape/dtype rule", sig, f"raised {type(e).__name__}: {e}", False)
            continue
        try:
            with np.errstate(all="ignore"):
                want = np.asarray(ref(*arrays, **node.attrs))
        except Exception as e:
            rep.add("reference", sig, f"raised {type(e).__name__}: {e}", False)
            continue
        ok_shape = want.shape == node.shape
        rep.add("shape rule", sig, f"-> {node.shape}", ok_shape,
                f"the shape rule gives {node.shape} for inputs {sig}, but the reference returns "
                f"shape {want.shape}")
        ok_dtype = want.dtype == node.dtype
        rep.add("dtype rule", sig, f"-> {node.dtype}", ok_dtype,
                f"the dtype rule gives {node.dtype} for inputs {sig}, but the reference returns "
                f"{want.dtype} (make the reference return {node.dtype}, or fix the rule)")
        if not ok_shape:
            continue              # nothing else can be compared
        want = want.astype(node.dtype)
        low_rtol, low_atol = (max(rtol, 1e-5), max(atol, 1e-6)) if node.dtype == np.float32 \
            else (rtol, atol)
        for level in opt_levels:
            what = f"lowering (opt {level})"
            try:
                got = gc_compile(node, inputs=phs, opt_level=level)(*arrays)
            except Exception as e:
                rep.add(what, sig, f"failed: {type(e).__name__}: {e}", False)
                continue
            err, idx, g, w, ok = _worst(got, want, low_rtol, low_atol)
            if D.is_float(node.dtype):
                rep.add(what, sig, f"max error {err:.2g}", ok, _describe_err(
                    f"the compiled op (opt_level {level}) differs from the reference", err, idx,
                    g, w, low_rtol, low_atol, ("compiled", "reference")))
            else:
                same = np.array_equal(got, want)
                rep.add(what, sig, "exact" if same else "differs", same,
                        f"the compiled op (opt_level {level}) differs from the reference at "
                        f"{int(np.sum(got != want))} element(s)")
        _check_vjp(rep, reg, name, node, phs, arrays, sig, ref, rng, gc_compile, gc_grad, gc_sum,
                   grad_rtol, grad_atol, eps)
    if rep.failures and raise_on_failure:
        lines = [f"check_op({name!r}) failed {len(rep.failures)} check(s):"]
        lines += [f"  - {m}" for _, m in rep.failures]
        raise OpCheckError("\n".join(lines), rep.failures, rep)
    return rep


def _check_vjp(rep, reg, name, node, phs, arrays, sig, ref, rng, gc_compile, gc_grad, gc_sum,
               grad_rtol, grad_atol, eps):
    if node.dtype != np.float64 or not arrays:
        return
    wrt = [k for k, a in enumerate(arrays) if a.dtype == np.float64]
    if not wrt:
        return
    if reg is not None and reg.vjp is None:
        rep.add("vjp", sig, "none registered (no gradient)")
        return
    from ..ops.common import constant
    c = rng.standard_normal(node.shape)
    loss = gc_sum(node * constant(c))
    try:
        grads = gc_grad(loss, [phs[k] for k in wrt])
        g_int = gc_compile(grads, inputs=phs, backend="interp")(*arrays)
    except Exception as e:
        rep.add("vjp", sig, f"raised {type(e).__name__}: {e}", False,
                f"the vjp rule raised {type(e).__name__}: {e}")
        return

    def L(arrs):
        with np.errstate(all="ignore"):
            return float(np.sum(np.asarray(ref(*arrs, **node.attrs), dtype=np.float64) * c))
    for j, k in enumerate(wrt):
        x = np.array(arrays[k], copy=True)
        fd = np.zeros_like(x)
        arrs = list(arrays)
        arrs[k] = x
        flat, out = x.reshape(-1), fd.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            fp = L(arrs)
            flat[i] = old - eps
            fm = L(arrs)
            flat[i] = old
            out[i] = (fp - fm) / (2 * eps)
        got = np.asarray(g_int[j])
        err, idx, g, w, ok = _worst(got, fd, grad_rtol, grad_atol)
        rep.add("vjp", sig, f"d/d input {k}: max error {err:.2g}", ok, _describe_err(
            f"the vjp rule's gradient with respect to input {k} differs from finite differences",
            err, idx, g, w, grad_rtol, grad_atol, ("vjp", "finite differences")))
    try:
        g_nat = gc_compile(grads, inputs=phs)(*arrays)
    except Exception as e:
        rep.add("vjp lowering", sig, f"failed: {type(e).__name__}: {e}", False)
        return
    for j, k in enumerate(wrt):
        err, idx, g, w, ok = _worst(g_nat[j], g_int[j], 1e-9, 1e-12)
        rep.add("vjp lowering", sig, f"d/d input {k}: max error {err:.2g}", ok, _describe_err(
            f"the compiled gradient with respect to input {k} differs from the interpreted one",
            err, idx, g, w, 1e-9, 1e-12, ("compiled", "interpreted")))


__all__ = ["check_op", "CheckReport", "OpCheckError"]
