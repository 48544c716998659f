"""Convolutions and a CNN training step: graphc against PyTorch (eager,
oneDNN) and jax.jit when they are installed, at the same thread count,
side by side in one process (medians of interleaved rounds).

- ResNet-style 3x3 convolutions, forward: batch 8, 64 channels 56x56 and 128
  channels 28x28 (stride 1, padding 1, with bias), in GFLOP/s and against
  the machine's peak (its FMA width times the clock; see ``peak_gflops``);
- the LeNet-style training step of ``python -m graphc demo --cnn`` (conv,
  batch norm, ReLU, max pooling x 2, two dense layers, Adam) against the same
  model in PyTorch eager.

Run: python benchmarks/conv_bench.py [--threads 1 2] [--rounds 7]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

import graphc as gc


def timed(fns: dict, rounds: int, min_time: float = 0.1) -> dict:
    """Median seconds per call of each callable, interleaved in rounds."""
    reps = {}
    for k, f in fns.items():
        f()
        n, t = 1, 0.0
        while t < min_time / 4:
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


def peak_gflops(threads: int) -> tuple[float, str]:
    """The float32 FLOP/s this machine's FMA units reach, measured: a JIT
    loop of 12 independent vector FMA chains (no memory access) on one
    thread, best of 5 runs, times ``threads``."""
    import ctypes

    from graphc.backend.llvm import host
    from graphc.backend.llvm.jit import JitModule
    lanes = 16 if host.has_feature("avx512f") else 8
    acc, V = 12, f"<{lanes} x float>"
    lines = ["define float @peak(i64 %n, float %m) {", "entry:",
             f"  %v0 = insertelement {V} poison, float %m, i32 0",
             f"  %v = shufflevector {V} %v0, {V} poison, <{lanes} x i32> zeroinitializer",
             "  br label %loop", "loop:", "  %i = phi i64 [0, %entry], [%i1, %loop]"]
    lines += [f"  %a{k} = phi {V} [%v, %entry], [%b{k}, %loop]" for k in range(acc)]
    lines += [f"  %b{k} = call {V} @llvm.fma.v{lanes}f32({V} %a{k}, {V} %v, {V} %v)"
              for k in range(acc)]
    lines += ["  %i1 = add i64 %i, 1", "  %c = icmp slt i64 %i1, %n",
              "  br i1 %c, label %loop, label %done", "done:"]
    s = "%b0"
    for k in range(1, acc):                    # every chain feeds the result
        lines.append(f"  %s{k} = fadd {V} {s}, %b{k}")
        s = f"%s{k}"
    lines += [f"  %e = extractelement {V} {s}, i32 0", "  ret float %e", "}",
              f"declare {V} @llvm.fma.v{lanes}f32({V}, {V}, {V})"]
    jit = JitModule.compile("\n".join(lines), "peak")
    fn = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_int64, ctypes.c_float)(jit.address)
    n = 5_000_000
    fn(1000, 0.5)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        fn(n, 0.5)
        best = min(best, time.perf_counter() - t0)
    per_core = n * acc * lanes * 2 / best / 1e9
    return per_core * threads, f"measured FMA loop, {per_core:.0f} per core x {threads}"


_PEERS = None


def _peers(threads: int):
    """The bench harness's peers (graphc.bench.peers): PyTorch and JAX
    imported lazily with their thread counts set to ``threads`` (JAX's only
    before its import: one thread count per process, see main)."""
    global _PEERS
    if _PEERS is None:
        from graphc.bench.peers import Peers, Threads
        th = Threads(threads)
        th.apply_global()
        _PEERS = Peers(th)
    return _PEERS


def _torch(threads: int):
    return _peers(threads).torch()


def _jax(threads: int):
    return _peers(threads).jax()


def conv_rows(threads: int, rounds: int):
    torch, jax = _torch(threads), _jax(threads)
    rng = np.random.default_rng(0)
    peak, how = peak_gflops(threads)
    print(f"\nResNet-style 3x3 convolutions, forward, float32, {threads} thread(s); "
          f"peak {peak:.0f} GFLOP/s ({how})")
    print(f"  {'shape':<24} {'impl':<12} {'ms':>8} {'GFLOP/s':>8} {'of peak':>8} {'vs graphc':>10}")
    for n, c, hw in ((8, 64, 56), (8, 128, 28)):
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        flops = 2.0 * n * c * c * 9 * hw * hw
        X = gc.placeholder(x.shape, "float32", name="x")
        f = gc.compile(gc.conv2d(X, gc.constant(w), gc.constant(b), padding=1), inputs=[X],
                       threads=threads)
        fns = {"graphc": lambda f=f, x=x: f(x)}
        want = None
        if torch is not None:
            tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))

            def tconv(tx=tx, tw=tw, tb=tb):
                with torch.no_grad():
                    return torch.nn.functional.conv2d(tx, tw, tb, padding=1)
            fns["torch"] = tconv
            want = tconv().numpy()
        if jax is not None:
            jx, jw, jb = (jax.device_put(a) for a in (x, w, b))
            jf = jax.jit(lambda x, w, b: jax.lax.conv_general_dilated(
                x, w, (1, 1), ((1, 1), (1, 1))) + b[None, :, None, None])
            fns["jax.jit"] = lambda jf=jf, jx=jx, jw=jw, jb=jb: jf(jx, jw, jb).block_until_ready()
        if want is not None:
            err = float(np.max(np.abs(f(x) - want)))
            assert err < 1e-3, f"graphc's convolution differs from PyTorch's by {err}"
        t = timed(fns, rounds)
        for k, v in t.items():
            g = flops / v / 1e9
            print(f"  {f'{n}x{c}x{hw}x{hw}':<24} {k:<12} {v * 1e3:8.3f} {g:8.1f} "
                  f"{100 * g / peak:7.1f}% {t['graphc'] / v if k != 'graphc' else 1.0:9.2f}x")


def lenet_rows(threads: int, rounds: int):
    from graphc import nn, optim
    from graphc.demo_cnn import DEFAULT_BATCH, build_model, digits
    torch = _torch(threads)
    bs = DEFAULT_BATCH
    x_tr, y_tr, _, _ = digits()
    xb, yb = np.ascontiguousarray(x_tr[:bs]), np.ascontiguousarray(y_tr[:bs])
    model = build_model(0)
    model.train()
    x = gc.placeholder((bs, 1, 8, 8), "float32", name="x")
    y = gc.placeholder((bs,), "int64", name="y")
    loss = nn.cross_entropy(model(x), y)
    step = gc.compile(loss, updates=optim.Adam(lr=3e-3).updates(loss, model.parameters()),
                      threads=threads)
    fns = {"graphc": lambda: step(x=xb, y=yb)}
    if torch is not None:
        T = torch.nn
        tm = T.Sequential(T.Conv2d(1, 16, 3, padding=1), T.BatchNorm2d(16), T.ReLU(), T.MaxPool2d(2),
                          T.Conv2d(16, 32, 3, padding=1), T.BatchNorm2d(32), T.ReLU(), T.MaxPool2d(2),
                          T.Flatten(), T.Linear(128, 64), T.ReLU(), T.Linear(64, 10))
        topt = torch.optim.Adam(tm.parameters(), lr=3e-3)
        tx, ty = torch.from_numpy(xb), torch.from_numpy(yb)

        def tstep():
            topt.zero_grad()
            T.functional.cross_entropy(tm(tx), ty).backward()
            topt.step()
        fns["torch eager"] = tstep
    t = timed(fns, rounds)
    print(f"\nLeNet-style training step (demo --cnn: batch {bs}, 8x8 digits), {threads} thread(s)")
    for k, v in t.items():
        print(f"  {k:<12} {v * 1e3:8.3f} ms   graphc {v / t['graphc']:.2f}x faster"
              if k != "graphc" else f"  {k:<12} {v * 1e3:8.3f} ms")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", choices=["conv", "lenet"], default=None)
    args = ap.parse_args(argv)
    if len(args.threads) > 1:       # one process per thread count (JAX sets its pool once)
        for th in args.threads:
            cmd = [sys.executable, __file__, "--threads", str(th), "--rounds", str(args.rounds)]
            subprocess.run(cmd + (["--only", args.only] if args.only else []), check=True)
        return
    th = args.threads[0]
    if args.only in (None, "conv"):
        conv_rows(th, args.rounds)
    if args.only in (None, "lenet"):
        lenet_rows(th, args.rounds)


if __name__ == "__main__":
    main()
