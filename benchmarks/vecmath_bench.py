"""Speed of the vectorized math functions (graphc/backend/llvm/vecmath.py).

For each function and dtype, three ways to compute it over the same array,
timed in one process, interleaved run by run (so a change of machine load
hits all three alike), medians over many runs:

* ``intrinsic``: graphc with ``ScalarBuilder.vector_math = False``, i.e. LLVM's
  ``llvm.exp``/``llvm.tanh``… intrinsics, which become scalar libm calls;
* ``vecmath``: graphc as it is (branch-free polynomials, vectorized loops);
* ``numpy``: numpy's own ufunc (for sigmoid, ``1 / (1 + np.exp(-x))``).

    python benchmarks/vecmath_bench.py [--n 1048576] [--reps 50] [--dtypes float32,float64]
    python benchmarks/vecmath_bench.py --accuracy [--samples 4194304]

``--accuracy`` prints instead the maximum error in ulps, of graphc and of
numpy, against the correctly rounded result (computed in float64 for
float32, in long double for float64) over random bit patterns and uniform
samples of each function's interesting range.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's graphc

import graphc as gc  # noqa: E402
from graphc.backend.llvm.scalar import ScalarBuilder  # noqa: E402


def _np_sigmoid(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


# name: (graph builder, numpy function, input range)
CASES = {
    "exp": (lambda x, y: gc.exp(x), lambda x, y: np.exp(x), (-10, 10)),
    "log": (lambda x, y: gc.log(x), lambda x, y: np.log(x), (0.01, 100)),
    "tanh": (lambda x, y: gc.tanh(x), lambda x, y: np.tanh(x), (-5, 5)),
    "sigmoid": (lambda x, y: gc.sigmoid(x), lambda x, y: _np_sigmoid(x), (-10, 10)),
    "pow": (lambda x, y: x ** y, lambda x, y: np.power(x, y), (0.01, 10)),
    "sum(tanh*exp)": (lambda x, y: gc.sum(gc.tanh(x) * gc.exp(x)),
                      lambda x, y: np.sum(np.tanh(x) * np.exp(x)), (-5, 5)),
}


def compile_case(build, n, dtype, vector_math: bool):
    old = ScalarBuilder.vector_math
    ScalarBuilder.vector_math = vector_math
    try:
        x = gc.placeholder((n,), dtype, "x")
        y = gc.placeholder((n,), dtype, "y")
        out = build(x, y)
        found = {q.id for q in _placeholders(out)}
        used = [p for p in (x, y) if p.id in found]   # (`in` would compare with ==)
        return gc.compile(out, inputs=used), len(used)
    finally:
        ScalarBuilder.vector_math = old


def _placeholders(node):
    seen, stack, found = set(), [node], []
    while stack:
        v = stack.pop()
        if v.id in seen:
            continue
        seen.add(v.id)
        if v.op == "placeholder":
            found.append(v)
        stack.extend(v.inputs)
    return found


def bench(name, dtype, n, reps, rng):
    build, np_fn, (lo, hi) = CASES[name]
    xs = rng.uniform(lo, hi, n).astype(dtype)
    ys = rng.uniform(-20, 20, n).astype(dtype)
    f_old, nin = compile_case(build, n, dtype, False)
    f_new, _ = compile_case(build, n, dtype, True)
    args = (xs, ys)[:nin]
    runners = {"intrinsic": lambda: f_old(*args), "vecmath": lambda: f_new(*args),
               "numpy": lambda: np_fn(xs, ys)}
    for r in runners.values():       # warm up (page faults, caches)
        r()
    times = {k: [] for k in runners}
    for _ in range(reps):
        for k, r in runners.items():
            t0 = time.perf_counter()
            r()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


ACC_RANGES = {"exp": ((-104, 89), (-746, 710)), "log": ((0, 4), (0, 4)),
              "tanh": ((-10, 10), (-20, 20)), "sigmoid": ((-104, 20), (-745, 40))}


def ulp_error(got, ref, dtype):
    """|got - ref| in ulps of ``dtype`` at ``ref`` (finite, higher precision)."""
    info = np.finfo(dtype)
    _, e = np.frexp(np.abs(ref))
    e = np.where(ref == 0, info.minexp, np.maximum(e.astype(np.int64) - 1, info.minexp))
    return np.abs(got.astype(ref.dtype) - ref) / np.ldexp(np.ones_like(ref), (e - info.nmant)
                                                          .astype(np.int32))


def accuracy(dtype, samples, rng):
    """Max ulp error of graphc and of numpy for each function, on the same inputs."""
    hi_t = np.float64 if dtype == np.float32 else np.longdouble
    ut = np.uint32 if dtype == np.float32 else np.uint64
    chunk = 1 << 20
    rows = []
    for name, (lo_hi32, lo_hi64) in ACC_RANGES.items():
        build, np_fn, _ = CASES[name]
        f, _ = compile_case(build, chunk, dtype, True)
        worst = {"graphc": 0.0, "numpy": 0.0}
        for k in range(max(1, samples // chunk)):
            if k % 2 == 0:
                xs = rng.integers(0, np.iinfo(ut).max, chunk, dtype=ut, endpoint=True).view(dtype)
            else:
                xs = rng.uniform(*(lo_hi32 if dtype == np.float32 else lo_hi64), chunk).astype(dtype)
            with np.errstate(all="ignore"):
                ref = np_fn(xs.astype(hi_t), None)
                rounded = ref.astype(dtype)
                results = {"graphc": f(xs), "numpy": np_fn(xs, None)}
            for who, got in results.items():
                ok = np.isfinite(got) & np.isfinite(rounded)
                if name == "sigmoid" and who == "numpy":   # underflows early: see docs
                    ok &= got >= np.finfo(dtype).smallest_normal
                if ok.any():
                    worst[who] = max(worst[who], float(ulp_error(got[ok], ref[ok], dtype).max()))
        rows.append((name, worst["graphc"], worst["numpy"]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1 << 20, help="elements (default 2**20)")
    ap.add_argument("--reps", type=int, default=50, help="timed runs of each (default 50)")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--accuracy", action="store_true", help="print max ulp errors instead")
    ap.add_argument("--samples", type=int, default=1 << 22, help="inputs per function (--accuracy)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.accuracy:
        print(f"max error in ulps vs the correctly rounded result, {args.samples} inputs per row")
        print(f"{'function':10} {'dtype':8} {'graphc':>8} {'numpy':>8}")
        for dt in args.dtypes.split(","):
            for name, ours, theirs in accuracy(np.dtype(dt), args.samples, rng):
                print(f"{name:10} {dt:8} {ours:8.3f} {theirs:8.3f}")
        return
    print(f"n = {args.n}, median of {args.reps} runs, times in ms")
    head = (f"{'function':14} {'dtype':8} {'intrinsic':>10} {'vecmath':>9} {'numpy':>8} "
            f"{'intrinsic/vecmath':>18} {'numpy/vecmath':>14}")
    print(head)
    print("-" * len(head))
    for dt in args.dtypes.split(","):
        for name in args.cases.split(","):
            t = bench(name, np.dtype(dt), args.n, args.reps, rng)
            note = "  (float64 pow: llvm.pow in both)" if name == "pow" and dt == "float64" else ""
            print(f"{name:14} {dt:8} {t['intrinsic']:10.3f} {t['vecmath']:9.3f} {t['numpy']:8.3f} "
                  f"{t['intrinsic'] / t['vecmath']:17.2f}x {t['numpy'] / t['vecmath']:13.2f}x{note}")


if __name__ == "__main__":
    main()
