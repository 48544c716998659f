"""How close the elemwise kernel runs to the memory bandwidth.

A stream copy (``np.copyto`` of a large float32 array, one thread; bytes read
+ bytes written per second) against the fused kernel of the ``elemwise`` workload,
``sum(tanh(x*a+b)*sigmoid(x) - 0.1*x)``, whose traffic is its three input
arrays read once (``3 * 4 * n`` bytes; the result is one float), at 1 and 2
threads. Every figure is the median of ``--reps`` timed runs after a warm-up::

    python benchmarks/bandwidth.py                  # n = 2**20 (the workload) and 2**24
    python benchmarks/bandwidth.py --n 1048576 --copy-mb 64

At ``n = 2**20`` the inputs (12 MB) stay in the last-level cache between runs;
``2**24`` (192 MB) streams from memory. The copy is measured at both sizes
(``--copy-mb``: 64 MB, and the kernel's own 12 MB), so each kernel figure is
compared with the copy that moves data from the same level.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc


def median_time(fn, reps: int) -> float:
    fn()                                   # warm-up (page faults, compile, caches)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def copy_gbs(nbytes: int, reps: int) -> float:
    """Stream copy: (read + written) bytes per second, in GB/s."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    t = median_time(lambda: np.copyto(dst, src), reps)
    return 2 * src.nbytes / t / 1e9


def elemwise_gbs(n: int, threads: int, reps: int) -> tuple[float, float]:
    """(GB/s of the three inputs read, seconds) of the elemwise kernel."""
    r = np.random.default_rng(1)
    x, a, b = (r.standard_normal(n).astype(np.float32) for _ in range(3))
    X, A, B = (gc.placeholder((n,), "float32", name=k) for k in "xab")
    f = gc.compile(gc.sum(gc.tanh(X * A + B) * gc.sigmoid(X) - 0.1 * X),
                   inputs=[X, A, B], threads=threads)
    t = median_time(lambda: f(x, a, b), reps)
    return 3 * 4 * n / t / 1e9, t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1 << 20, 1 << 24],
                    help="elemwise sizes (default 2**20, the workload's, and 2**24)")
    ap.add_argument("--copy-mb", type=int, default=64, help="stream copy size in MB (default 64)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=30, help="timed runs per figure (default 30)")
    args = ap.parse_args()
    print(f"{'what':34s} {'threads':>7s} {'time':>10s} {'GB/s':>7s}  of the copy")
    big = copy_gbs(args.copy_mb << 20, args.reps)
    print(f"{f'numpy copy {args.copy_mb} MB':34s} {1:7d} {'':>10s} {big:7.1f}")
    for n in args.n:
        mb = 3 * 4 * n / 2**20
        ref = big
        if mb < args.copy_mb:         # compare with a copy of the same size (same cache level)
            ref = copy_gbs(3 * 4 * n, args.reps)
            print(f"{f'numpy copy {mb:g} MB':34s} {1:7d} {'':>10s} {ref:7.1f}")
        for threads in args.threads:
            gbs, t = elemwise_gbs(n, threads, args.reps)
            print(f"{f'elemwise n={n} (reads {mb:g} MB)':34s} {threads:7d} "
                  f"{t * 1e3:8.3f}ms {gbs:7.1f}  {gbs / ref:6.1%} (of {ref:.1f} GB/s)")


if __name__ == "__main__":
    main()
