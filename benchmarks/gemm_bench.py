"""GEMM benchmark: graphc's packed GEMM against numpy's BLAS, one thread.

    python benchmarks/gemm_bench.py                 # 512^3 and 1024^3, float32 and float64
    python benchmarks/gemm_bench.py --crossover     # loop nest vs GEMM on small shapes
    python benchmarks/gemm_bench.py --split         # one call vs two threads on M halves

graphc is timed through its public API (a compiled ``x @ w`` with
placeholders); numpy through ``np.matmul(a, b)`` (both allocate the result). The two run
alternately in one process, and the table shows medians over many runs, so
load from other processes affects both alike (the 10th percentile is shown
too: the speed of the runs nobody preempted). BLAS threads are limited to one
before numpy is imported (threadpoolctl, if installed, double-checks it). For
reference the table shows two peaks: the nominal one (2 FMA units x vector
lanes x 2 flops x the clock in /proc/cpuinfo, if the CPU has FMA) and a
measured one (a register-only loop of independent vector FMAs).
"""
from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"          # before numpy is imported

import argparse  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import graphc as gc  # noqa: E402
from graphc.backend.llvm import gemm as G  # noqa: E402
from graphc.backend.llvm import matmul as MM  # noqa: E402


def limit_blas_threads():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "env vars"
    threadpool_limits(1)
    return "threadpoolctl"


def cpu_mhz() -> float | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("cpu mhz"):
                    return float(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return None


def measured_peak(dtype, seconds=0.3, repeats=15) -> float:
    """GFLOP/s of a loop of 24 independent vector FMA chains (no memory), best run."""
    from llvmlite import ir

    from graphc.backend.llvm.jit import JitModule
    from graphc.backend.llvm.scalar import F32, F64, I32, I64, PTR
    cfg = G.host_config(dtype)
    T = F32 if np.dtype(dtype) == np.float32 else F64
    V = ir.VectorType(T, cfg.lanes)
    nacc = 24
    m = ir.Module()
    name = "llvm.fma" if cfg.fma else "llvm.fmuladd"
    fma = ir.Function(m, ir.FunctionType(V, [V, V, V]), f"{name}.v{cfg.lanes}{T.intrinsic_name}")
    fn = ir.Function(m, ir.FunctionType(I32, [PTR]), "entry")
    b = ir.IRBuilder(fn.append_basic_block())
    n = b.load(fn.args[0], typ=I64)
    x = b.load(b.gep(fn.args[0], [ir.Constant(I64, 1)], source_etype=I64), typ=V, align=8)
    pre, loop, end = b.block, fn.append_basic_block(), fn.append_basic_block()
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(ir.Constant(I64, 0), pre)
    accs = [b.phi(V) for _ in range(nacc)]
    for a in accs:
        a.add_incoming(ir.Constant(V, None), pre)
    cur = list(accs)
    for _ in range(4):
        cur = [b.call(fma, [x, x, c]) for c in cur]
    for a, c in zip(accs, cur):
        a.add_incoming(c, b.block)
    i2 = b.add(i, ir.Constant(I64, 1))
    i.add_incoming(i2, b.block)
    b.cbranch(b.icmp_signed("<", i2, n), loop, end)
    b.position_at_end(end)
    s = cur[0]
    for c in cur[1:]:
        s = b.fadd(s, c)
    b.store(s, b.gep(fn.args[0], [ir.Constant(I64, 1)], source_etype=I64), align=8)
    b.ret(ir.Constant(I32, 0))
    jm = JitModule.compile(str(m), "entry")
    buf = np.zeros(64, np.int64)
    iters = 1000
    while True:                               # calibrate to ~seconds/repeats per run
        buf[0], buf[1:] = iters, 0
        t = time.perf_counter()
        jm.cfunc(buf.ctypes.data)
        if time.perf_counter() - t > seconds / repeats:
            break
        iters *= 2
    ts = []
    for _ in range(repeats):
        buf[0], buf[1:] = iters, 0
        t = time.perf_counter()
        jm.cfunc(buf.ctypes.data)
        ts.append(time.perf_counter() - t)
    flops = iters * 4 * nacc * cfg.lanes * 2
    return flops / min(ts) / 1e9         # best run: an upper bound


def nominal_peak(dtype) -> float | None:
    cfg = G.host_config(dtype)
    mhz = cpu_mhz()
    if mhz is None or not cfg.fma:
        return None
    return 2 * cfg.lanes * 2 * mhz / 1e3


def timed_pair(f, g, repeats, seed=0):
    """Run f and g ``repeats`` times each, in pairs whose order is random (a
    fixed order can phase-lock with the scheduler's time slices on a shared
    machine and always charge the preemptions to the same one); return both
    lists of times."""
    order = np.random.default_rng(seed).integers(0, 2, repeats)
    tf, tg = [], []
    for first in order:
        for which in ((0, 1) if first == 0 else (1, 0)):
            fn, acc = (f, tf) if which == 0 else (g, tg)
            t = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t)
    return np.array(tf), np.array(tg)


def bench_sizes(sizes, dtypes, repeats):
    """GFLOP/s from the median time and from the 10th percentile (on a shared
    machine, runs that were preempted form a slow mode that can move the
    median; the 10th percentile is the undisturbed speed)."""
    print(f"{'':15} {'---- median ----':>29}   {'-- 10th percentile --':>29}")
    print(f"{'dtype':8} {'M=N=K':>6} {'graphc':>9} {'numpy':>9} {'ratio':>9}   "
          f"{'graphc':>9} {'numpy':>9} {'ratio':>9}   (GFLOP/s)")
    rows = []
    for dt in dtypes:
        for n in sizes:
            rng = np.random.default_rng(0)
            a = rng.standard_normal((n, n)).astype(dt)
            w = rng.standard_normal((n, n)).astype(dt)
            x_ = gc.placeholder((n, n), dt, name="x")
            w_ = gc.placeholder((n, n), dt, name="w")
            f = gc.compile(x_ @ w_, inputs=[x_, w_])
            got = f(a, w)
            err = np.abs(got - a @ w).max() / np.abs(a @ w).max()
            assert err < (1e-4 if dt == "float32" else 1e-12), f"wrong result ({err})"
            for _ in range(3):
                f(a, w)
                np.matmul(a, w)
            # both allocate their result, as graphc's call does
            tg, tn = timed_pair(lambda: f(a, w), lambda: np.matmul(a, w), repeats)
            flop = 2.0 * n ** 3 / 1e9
            gg, gn = flop / np.median(tg), flop / np.median(tn)
            pg, pn = flop / np.percentile(tg, 10), flop / np.percentile(tn, 10)
            rows.append((dt, n, gg, gn, pg, pn))
            print(f"{dt:8} {n:6d} {gg:9.1f} {gn:9.1f} {gg / gn:9.2f}   {pg:9.1f} {pn:9.1f} {pg / pn:9.2f}")
    return rows


def bench_crossover(dtype, repeats):
    """Loop nest vs packed GEMM on small shapes (kernel time, no Python)."""
    shapes = [(1, 16, 32), (1, 512, 512), (2, 512, 512), (3, 512, 512), (4, 512, 512),
              (8, 512, 512), (4, 64, 64), (16, 16, 16), (32, 32, 32), (32, 32, 16),
              (48, 48, 48), (64, 64, 16), (64, 64, 32), (64, 64, 64), (8, 128, 128),
              (512, 512, 8), (512, 512, 16), (512, 512, 32), (1024, 1024, 10),
              (128, 128, 128)]
    # B transposed (stored N x K: a convolution's weight gradient, g @ cols.T)
    shapes += [(m, k, n, "T") for m, k, n in ((16, 4096, 9), (32, 1024, 144), (16, 512, 8),
                                              (64, 256, 4), (8, 2048, 25))]
    print(f"{'M x K @ K x N':>22} {'loop us':>9} {'gemm us':>9} {'loop/gemm':>9}  chosen")
    saved = MM.GEMM_MIN_MACS, MM.GEMM_MIN_M, MM.GEMM_MIN_N
    for m, k, n, *bt in shapes:
        a = np.random.rand(m, k).astype(dtype)
        w = np.random.rand(n if bt else k, k if bt else n).astype(dtype)
        runs = []
        for force in (False, True):
            MM.GEMM_MIN_MACS, MM.GEMM_MIN_M, MM.GEMM_MIN_N = (0, 0, 0) if force else (1 << 62,) * 3
            x_ = gc.placeholder(a.shape, dtype, name="x")
            w_ = gc.placeholder(w.shape, dtype, name="w")
            f = gc.compile(x_ @ (gc.transpose(w_) if bt else w_), inputs=[x_, w_], cache=False)
            out = np.empty((m, n), dtype)
            nat = f._native
            ptrs = nat.ptr_type(a.ctypes.data, w.ctypes.data, out.ctypes.data, nat.arena().ctypes.data)
            # the closure keeps f (the code) and out (the memory) alive
            runs.append((f, lambda nat=nat, ptrs=ptrs, keep=(f, out): nat.cfunc(ptrs)))
        MM.GEMM_MIN_MACS, MM.GEMM_MIN_M, MM.GEMM_MIN_N = saved
        inner = max(1, int(2e5 / (m * n * k)))
        (_, loop), (_, gem) = runs

        def rep(fn, inner=inner):
            for _ in range(inner):
                fn()
        tl, tg = [], []
        for _ in range(repeats):
            for fn, acc in ((loop, tl), (gem, tg)):
                t = time.perf_counter()
                rep(fn)
                acc.append((time.perf_counter() - t) / inner)
        # a low percentile: the least disturbed runs on a shared machine
        l_, g_ = np.percentile(tl, 10), np.percentile(tg, 10)
        wt = gc.placeholder((n, k), dtype)
        mm = gc.placeholder((m, k), dtype) @ (gc.transpose(wt) if bt else
                                              gc.placeholder((k, n), dtype))
        plan = MM.plan_matmul(mm, {mm.inputs[1].id} if bt else set(),
                              lambda v: v.op == "placeholder")
        print(f"{m:6d}x{k:5d} @ {k:5d}x{n:5d}{'T' if bt else ' '}{l_ * 1e6:9.2f} {g_ * 1e6:9.2f} "
              f"{l_ / g_:9.2f}  {'gemm' if plan else 'loop'}")


def bench_split(n, dtype, repeats):
    """One call on M x N vs two threads each on half of M (own workspaces)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype)
    h = n // 2

    def one():
        G.gemm_numpy(a, b, c)

    def two(kind):
        if kind == "rows":
            parts = [(a[:h], b, c[:h]), (a[h:], b, c[h:])]
        else:
            parts = [(a, b[:, :h], c[:, :h]), (a, b[:, h:], c[:, h:])]
        ts = [threading.Thread(target=G.gemm_numpy, args=p) for p in parts]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    for kind in ("rows", "cols"):
        two(kind)
        assert np.allclose(c, a @ b, rtol=1e-3, atol=1e-2)
        t1, t2 = timed_pair(one, lambda kind=kind: two(kind), repeats)
        flop = 2.0 * n ** 3 / 1e9
        for what, stat in (("median", np.median), ("10th percentile", lambda t: np.percentile(t, 10))):
            print(f"{dtype} {n}^3 ({what}): 1 thread {flop / stat(t1):.1f} GFLOP/s, 2 threads "
                  f"({kind} split) {flop / stat(t2):.1f} GFLOP/s, speedup {stat(t1) / stat(t2):.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--crossover", action="store_true", help="loop nest vs GEMM on small shapes")
    p.add_argument("--split", action="store_true", help="2 threads on halves of M / N")
    args = p.parse_args(argv)
    how = limit_blas_threads()
    print(f"BLAS threads limited to 1 via {how}; host GEMM configuration:")
    for dt in args.dtypes:
        cfg = G.host_config(dt)
        print(f"  {dt}: {cfg.vector_bits}-bit vectors, MR x NR = {cfg.mr} x {cfg.nr}, "
              f"KC={cfg.kc} MC={cfg.mc} NC={cfg.nc}, fma={cfg.fma}")
    if args.crossover:
        bench_crossover(args.dtypes[0], args.repeats * 4)
        return
    if args.split:
        for dt in args.dtypes:
            bench_split(args.sizes[-1], dt, args.repeats)
        return
    for dt in args.dtypes:
        nom = nominal_peak(dt)
        nom_s = f"{nom:.0f}" if nom else "n/a"
        print(f"  {dt} peak, 1 core: nominal {nom_s} GFLOP/s (at {cpu_mhz()} MHz), "
              f"measured FMA loop {measured_peak(dt):.0f} GFLOP/s")
    bench_sizes(args.sizes, args.dtypes, args.repeats)


if __name__ == "__main__":
    main()
