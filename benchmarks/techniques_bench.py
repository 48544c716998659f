"""The measured effect of each speed technique (docs/performance.md), side by
side in one process, medians of interleaved rounds:

- fusion: the same graphs at opt_level 1 (one kernel per op) and 3;
- thin calls: the native builtin call path vs the ctypes pointer-array path;
- direct parameter updates: an Adam step with and without writing new values
  straight into the parameters;
- coalesced loops: 4-d elementwise kernels with their trailing axes run as one
  loop, and as the plain loop nest.

Run: python benchmarks/techniques_bench.py [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import graphc as gc
from graphc.bench.workloads import mlp_graph


def timed(fns: dict, rounds=15, min_time=0.05) -> dict:
    """Median seconds per call of each callable, interleaved in rounds."""
    reps = {}
    for k, f in fns.items():
        f()
        n, t = 1, 0.0
        while t < min_time / 5:
            s = time.perf_counter()
            for _ in range(n):
                f()
            t = time.perf_counter() - s
            n *= 2
        reps[k] = max(1, n // 2)
    out = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            s = time.perf_counter()
            for _ in range(reps[k]):
                f()
            out[k].append((time.perf_counter() - s) / reps[k])
    return {k: statistics.median(v) for k, v in out.items()}


def fmt(t):
    return f"{t * 1e6:9.1f} us" if t < 1e-3 else f"{t * 1e3:9.3f} ms"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    T = args.threads
    print(f"threads={T}; medians of interleaved rounds, one process")

    # fusion
    loss, params, feeds = mlp_graph()
    outs = [loss, *gc.grad(loss, params)]
    x = gc.placeholder((1 << 20,), "float32", name="x")
    ew = gc.sum(gc.tanh(x * 0.5 + 0.1) * gc.sigmoid(x) - 0.1 * x)
    X = np.random.default_rng(1).standard_normal(1 << 20).astype(np.float32)
    x2 = gc.placeholder((256, 1000), "float32", name="z")
    sm = gc.softmax(x2)
    Z = np.random.default_rng(2).standard_normal((256, 1000)).astype(np.float32)
    print("\nfusion (opt_level 1: one kernel per op; 3: fused)")
    for name, o, fd in (("mlp_step fwd+bwd", outs, feeds), ("elemwise chain 2^20", ew, {"x": X}),
                        ("softmax 256x1000", sm, {"z": Z})):
        f1 = gc.compile(o, opt_level=1, threads=T)
        f3 = gc.compile(o, opt_level=3, threads=T)
        t = timed({"1": lambda: f1(**fd), "3": lambda: f3(**fd)})
        print(f"  {name:<22} opt1 {fmt(t['1'])} ({f1.num_kernels:3d} kernels)   opt3 "
              f"{fmt(t['3'])} ({f3.num_kernels:2d} kernels)   {t['1'] / t['3']:.2f}x")

    # thin calls
    rng = np.random.default_rng(0)
    xi = gc.placeholder((1, 16), "float32", name="x")
    w1 = gc.parameter(rng.standard_normal((16, 32)).astype(np.float32))
    b1 = gc.parameter(np.zeros(32, np.float32))
    w2 = gc.parameter(rng.standard_normal((32, 4)).astype(np.float32))
    b2 = gc.parameter(np.zeros(4, np.float32))
    tiny = gc.relu(xi @ w1 + b1) @ w2 + b2
    fa = gc.compile(tiny, threads=T)
    fb = gc.compile(tiny, threads=T, cache=False)
    fb._native._call = None                     # force the ctypes pointer-array path
    XI = rng.standard_normal((1, 16)).astype(np.float32)
    t = timed({"builtin": lambda: fa(x=XI), "ctypes": lambda: fb(x=XI)}, min_time=0.02)
    print("\nthin calls (batch-1 forward of a 16-32-4 MLP)")
    print(f"  native builtin {fmt(t['builtin'])}   ctypes pointer array {fmt(t['ctypes'])}   "
          f"{t['ctypes'] / t['builtin']:.2f}x")

    # direct updates
    print("\ndirect parameter updates (Adam step of the MLP)")
    steps = {}
    for mode in ("direct", "copy"):
        loss, params, fd = mlp_graph()
        opt = gc.optim.Adam(1e-3)
        ups = opt.updates(loss, params)
        from graphc.passes import fusion
        orig = fusion.Fuser._direct_updates
        if mode == "copy":
            fusion.Fuser._direct_updates = lambda self, live, deps: {}
        try:
            steps[mode] = gc.compile(loss, updates=ups, threads=T, cache=False)
        finally:
            fusion.Fuser._direct_updates = orig
    t = timed({k: (lambda f=f: f(**fd)) for k, f in steps.items()})
    print(f"  written in place {fmt(t['direct'])}   via temporaries and copies {fmt(t['copy'])}   "
          f"{t['copy'] / t['direct']:.2f}x")

    # coalesced loops
    print("\ncoalesced loops (elementwise kernels on NCHW activations, 64x32x4x4)")
    from graphc.backend.llvm import stages
    a = gc.placeholder((64, 32, 4, 4), "float32", name="a")
    c = gc.placeholder((1, 32, 1, 1), "float32", name="c")
    A = rng.standard_normal((64, 32, 4, 4)).astype(np.float32)
    C = rng.standard_normal((1, 32, 1, 1)).astype(np.float32)
    for name, o in (("a + a * 2", a + a * 2.0), ("a * c (per channel)", a * c)):
        fs = {}
        for mode in ("one loop", "nest"):
            orig = stages.LoopStages._coalesced
            if mode == "nest":
                stages.LoopStages._coalesced = lambda self, dims, outs: 0
            try:
                fs[mode] = gc.compile(o, threads=T, cache=False)
            finally:
                stages.LoopStages._coalesced = orig
        fd = {"a": A, "c": C} if "c" in [p.name for p in fs["nest"].graph.placeholders] else {"a": A}
        t = timed({k: (lambda f=f: f(**fd)) for k, f in fs.items()})
        print(f"  {name:<22} one loop {fmt(t['one loop'])}   nest {fmt(t['nest'])}   "
              f"{t['nest'] / t['one loop']:.2f}x")


if __name__ == "__main__":
    main()
