"""Where a second thread starts to pay, per kind of kernel (issue 12).

The planner (graphc/backend/llvm/planner.py) splits a kernel across threads
only from a size on: ``PAR_ELEMS`` element-operations for loop nests and
scalar reductions, ``PAR_MACS`` multiply-adds for GEMMs. This script measures
where the split starts to win: for each kernel kind and size it compiles the
graph at one thread and, with the thresholds lowered to zero (every kernel
split), at ``--threads`` threads, times both side by side (the project's
interleaved timing, medians) and prints the speed ratio t_1 / t_split. The
crossover is the size from which the split stays faster; the planner's
thresholds should sit at or above it.

Run: python benchmarks/thread_crossover.py [--threads 2] [--repeat 15]
"""
from __future__ import annotations

import argparse

import numpy as np

import graphc as gc
from graphc.backend.llvm import planner
from graphc.bench.timing import interleaved


def _loop(n):
    x = gc.placeholder((n // 64, 64), "float32", name="x")
    feeds = {"x": np.random.default_rng(0).standard_normal((n // 64, 64)).astype(np.float32)}
    return gc.tanh(x * 0.5 + 0.1) * 2.0, feeds, 4 * n        # 4 element-ops per element


def _reduce(n):
    x = gc.placeholder((n,), "float32", name="x")
    feeds = {"x": np.random.default_rng(0).standard_normal(n).astype(np.float32)}
    return gc.sum(gc.tanh(x) * x), feeds, 3 * n


def _gemm(m):
    a = gc.placeholder((m, m), "float32", name="a")
    b = gc.placeholder((m, m), "float32", name="b")
    r = np.random.default_rng(0)
    feeds = {"a": r.standard_normal((m, m)).astype(np.float32),
             "b": r.standard_normal((m, m)).astype(np.float32)}
    return a @ b, feeds, m ** 3


KINDS = {
    "loop nest (element-ops)": (_loop, [1 << k for k in range(10, 19)]),
    "scalar reduction (element-ops)": (_reduce, [1 << k for k in range(10, 19)]),
    "GEMM (multiply-adds)": (_gemm, [32, 48, 64, 96, 128, 192, 256]),
}


def compile_split(out, threads):
    """Compile with every kernel split (the planner's thresholds at zero)."""
    old = planner.PAR_ELEMS, planner.PAR_MACS
    planner.PAR_ELEMS, planner.PAR_MACS = 0, 0
    try:
        return gc.compile(out, threads=threads, cache=False)
    finally:
        planner.PAR_ELEMS, planner.PAR_MACS = old


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--sample-time", type=float, default=0.02)
    args = ap.parse_args(argv)
    print(f"split at {args.threads} threads vs 1 thread; medians of {args.repeat}; "
          f"planner thresholds: PAR_ELEMS={planner.PAR_ELEMS}, PAR_MACS={planner.PAR_MACS}")
    for kind, (build, sizes) in KINDS.items():
        print(f"\n{kind}")
        print(f"  {'work':>10}  {'1 thread':>10}  {'split':>10}  {'ratio':>6}")
        cross = None
        for n in sizes:
            out, feeds, work = build(n)
            f1 = gc.compile(out, threads=1, cache=False)
            fs = compile_split(out, args.threads)
            if "graphc_rt_parallel" not in fs.llvm_ir:
                print(f"  {work:>10}  (not split: too few rows)")
                continue
            np.testing.assert_allclose(fs(**feeds), f1(**feeds), rtol=1e-4, atol=1e-3)
            res = interleaved({"one": lambda: f1(**feeds), "split": lambda: fs(**feeds)},
                              args.repeat, args.sample_time)
            t1, ts = (float(np.median(res[k].times)) for k in ("one", "split"))
            ratio = t1 / ts
            if ratio <= 1.0:
                cross = None
            elif cross is None:
                cross = work
            print(f"  {work:>10}  {t1 * 1e6:>8.1f}us  {ts * 1e6:>8.1f}us  {ratio:>5.2f}x")
        print(f"  crossover: {cross if cross is not None else 'not reached'}")


if __name__ == "__main__":
    main()
