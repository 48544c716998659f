"""Figures of the optimizing pipeline (issue 3), measured:

- kernels for the 10-op elementwise chain sum(tanh(x*a+b) * sigmoid(x) - 0.1*x);
- kernels and memory-plan peak for forward+backward of a 784-256-128-10 MLP
  (ReLU, softmax cross-entropy, batch 128, float32);
- time of the pipeline's own passes (before LLVM) for that graph: median
  over repeated compiles of freshly built graphs.

Run: python benchmarks/passes_bench.py [--repeat N]
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np

import graphc as gc
from graphc.bench.workloads import mlp_graph


def chain(n=1 << 20):
    x = gc.placeholder((n,), "float32", name="x")
    a = gc.parameter(np.float32(0.5), name="a")
    b = gc.parameter(np.float32(0.1), name="b")
    return gc.sum(gc.tanh(x * a + b) * gc.sigmoid(x) - 0.1 * x)


def mlp_step():
    loss, params, _ = mlp_graph()
    return [loss, *gc.grad(loss, params)]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=21)
    args = ap.parse_args(argv)
    f = gc.compile(chain())
    ops = len(f.source_graph.op_nodes())
    print(f"elementwise chain: {ops} op nodes -> {f.num_kernels} kernel(s)")
    times, llvm = [], []
    for _ in range(args.repeat):
        outs = mlp_step()                      # a fresh graph each time (no caching)
        g = gc.compile(outs, cache=False)
        times.append(sum(r.seconds for r in g.passes))
        llvm.append(g.llvm_seconds)
    m = g.memory
    print(f"MLP 784-256-128-10 forward+backward: {len(g.source_graph.op_nodes())} op nodes -> "
          f"{g.num_kernels} kernels ({sum(k.matmul is not None for k in g.kernels)} GEMMs)")
    print(f"  memory: peak {m.peak} bytes vs one buffer per node {m.naive_size} bytes "
          f"= {100 * m.peak / m.naive_size:.1f}%  (arena {m.size} bytes)")
    print(f"  pipeline passes: median {1e3 * statistics.median(times):.2f} ms, "
          f"min {1e3 * min(times):.2f} ms over {args.repeat} compiles "
          f"(LLVM afterwards: median {1e3 * statistics.median(llvm):.0f} ms)")
    for r in g.passes:
        print(f"    {r.name:<10} {1e3 * r.seconds:6.2f} ms  {r.nodes_before} -> {r.nodes_after}")


if __name__ == "__main__":
    main()
