"""The cost of a call of an exported graph from C, against the Python call
of the same compiled function, and the size of the library.

The graph is the ``tiny_call`` workload of ``python -m graphc bench``: a
batch-1 forward of a 16-32-4 MLP (ReLU), float32, its parameters embedded.
A C program linked to ``libtiny.so`` times ``tiny_run`` (and
``tiny_run_with_workspace``) in rounds of ``--calls`` calls; Python times
``f(x)`` the same way; each figure is the median over ``--rounds`` rounds,
kernel included. The C program and the Python loop alternate ``--repeat``
times, and the median of each is printed side by side::

    python benchmarks/export_bench.py
    python benchmarks/export_bench.py --rounds 31 --calls 20000
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import graphc as gc
from graphc.export import find_cc

C_TIMER = r"""
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "tiny.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
int main(int argc, char **argv) {
    int rounds = atoi(argv[1]), calls = atoi(argv[2]);
    static float x[TINY_INPUT0_SIZE], y[TINY_OUTPUT0_SIZE];
    static _Alignas(64) unsigned char ws[TINY_WORKSPACE_SIZE + 64];
    for (int k = 0; k < TINY_INPUT0_SIZE; k++) x[k] = 0.01f * k - 0.05f;
    const void *in[] = {x};
    void *out[] = {y};
    double *t = malloc(sizeof(double) * rounds), *u = malloc(sizeof(double) * rounds);
    for (int k = 0; k < calls; k++) tiny_run(in, out);            /* warm-up */
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        for (int k = 0; k < calls; k++) if (tiny_run(in, out)) return 1;
        double t1 = now();
        for (int k = 0; k < calls; k++) if (tiny_run_with_workspace(in, out, ws)) return 1;
        double t2 = now();
        t[r] = (t1 - t0) / calls;
        u[r] = (t2 - t1) / calls;
    }
    qsort(t, rounds, sizeof(double), cmp);
    qsort(u, rounds, sizeof(double), cmp);
    printf("%.9g %.9g %.9g\n", t[rounds / 2], u[rounds / 2], (double)y[0]);
    return 0;
}
"""


def tiny_mlp():
    """The tiny_call workload's MLP (the same weights), compiled."""
    r = np.random.default_rng(2)
    r.standard_normal((1, 16))
    w0 = (r.standard_normal((16, 32)) * 0.3).astype(np.float32)
    b0 = (0.1 * r.standard_normal(32)).astype(np.float32)
    w1 = (r.standard_normal((32, 4)) * 0.3).astype(np.float32)
    b1 = (0.1 * r.standard_normal(4)).astype(np.float32)
    X = gc.placeholder((1, 16), "float32", name="x")
    p = [gc.parameter(v, name=k) for k, v in zip(("w0", "b0", "w1", "b1"), (w0, b0, w1, b1))]
    return gc.compile(gc.relu(X @ p[0] + p[1]) @ p[2] + p[3], inputs=[X])


def python_median(f, x, rounds: int, calls: int) -> float:
    for _ in range(calls):
        f(x)
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            f(x)
        ts.append((time.perf_counter() - t0) / calls)
    return float(np.median(ts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=21, help="timed rounds (default 21)")
    ap.add_argument("--calls", type=int, default=20000, help="C calls per round (default "
                                                              "20000; Python: a tenth)")
    ap.add_argument("--repeat", type=int, default=3, help="alternations of C and Python "
                                                          "(default 3)")
    args = ap.parse_args(argv)
    cc = find_cc()
    f = tiny_mlp()
    x = (0.01 * np.arange(16, dtype=np.float32) - 0.05).reshape(1, 16)
    with tempfile.TemporaryDirectory(prefix="graphc-export-bench-") as d:
        shared = f.export(d, "tiny")
        static = f.export(os.path.join(d, "static"), "tiny", kind="static")
        src = os.path.join(d, "timer.c")
        with open(src, "w") as fh:
            fh.write(C_TIMER)
        exe = os.path.join(d, "timer")
        subprocess.run([*cc, "-O2", "-std=c11", f"-I{d}", "-o", exe, src, f"-L{d}", "-ltiny",
                        f"-Wl,-rpath,{d}"], check=True)
        c_run, c_ws, py = [], [], []
        for _ in range(args.repeat):
            out = subprocess.run([exe, str(args.rounds), str(args.calls)], check=True,
                                 capture_output=True, text=True).stdout.split()
            c_run.append(float(out[0]))
            c_ws.append(float(out[1]))
            if np.float32(out[2]) != f(x)[0, 0]:
                print("the C result differs from Python's", file=sys.stderr)
                return 1
            py.append(python_median(f, x, args.rounds, max(1, args.calls // 10)))
        so_size, a_size = os.path.getsize(shared.library), os.path.getsize(static.library)
    us = lambda v: f"{1e6 * float(np.median(v)):.3f} us"  # noqa: E731
    print("exported tiny MLP 16-32-4, batch 1, float32 (median per call, kernel included)")
    print(f"{'Python f(x)':<34}{'C tiny_run':<16}{'C tiny_run_with_workspace':<28}"
          f"{'Python / C':>10}")
    print(f"{us(py):<34}{us(c_run):<16}{us(c_ws):<28}"
          f"{np.median(py) / np.median(c_run):>9.1f}x")
    print(f"libtiny.so: {so_size} bytes ({so_size / 1024:.1f} KiB); libtiny.a: {a_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
