"""Compile-cache timings (issue 7): cold compile of the MLP train step vs a
warm compile from the in-memory cache and from the on-disk cache (a fresh
process), medians of several runs, each in a subprocess with its own cache
directory. Timed: the ``gc.compile`` call (the graph is built before; module
imports and LLVM start-up are done before).

Run: python benchmarks/cache_bench.py [--repeat N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
import numpy as np
t_import = time.perf_counter()
import graphc as gc
from graphc.backend.llvm import emit, jit  # noqa: F401 - module imports, not part of a compile
import graphc.passes  # noqa: F401
jit._init()                                   # LLVM start-up, not part of a compile
def step():
    rng = np.random.default_rng(0)
    x = gc.placeholder((128, 784), "float32", name="x")
    y = gc.placeholder((128,), "int64", name="y")
    params, h = [], x
    sizes = (784, 256, 128, 10)
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = gc.parameter((rng.standard_normal((a, b)) * 0.05).astype(np.float32), name=f"w{k}")
        bb = gc.parameter(np.zeros(b, np.float32), name=f"b{k}")
        params += [w, bb]
        h = h @ w + bb
        if k < 2:
            h = gc.relu(h)
    loss = gc.mean(gc.softmax_cross_entropy(h, y))
    grads = gc.grad(loss, params)
    t = time.perf_counter()
    f = gc.compile(loss, updates={p: p - 0.01 * g for p, g in zip(params, grads)})
    return f, time.perf_counter() - t
f, first = step()
g, second = step()
print(json.dumps({"first": first, "first_hit": f.cache_hit, "second": second,
                  "second_hit": g.cache_hit}))
"""


def run(cache_dir):
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    cold, disk, mem = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            a = run(d)                 # empty cache: cold, then a memory hit
            b = run(d)                 # new process: disk hit
        assert a["first_hit"] is False and a["second_hit"] == "memory", a
        assert b["first_hit"] == "disk", b
        cold.append(a["first"])
        mem.append(a["second"])
        disk.append(b["first"])
    c, m, d = (statistics.median(v) for v in (cold, mem, disk))
    print("MLP train step (784-256-128-10, batch 128, SGD updates), medians of "
          f"{args.repeat} runs:")
    print(f"  cold compile            {1e3 * c:8.1f} ms")
    print(f"  warm, in-memory cache   {1e3 * m:8.2f} ms   ({100 * m / c:.1f}% of cold)")
    print(f"  warm, on-disk cache     {1e3 * d:8.2f} ms   ({100 * d / c:.1f}% of cold, new process)")


if __name__ == "__main__":
    main()
