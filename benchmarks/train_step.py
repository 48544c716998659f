"""Benchmark: one training step (forward, softmax cross-entropy, backward and
Adam's update of every parameter) compiled by graphc, against the same step
written by hand in numpy, run by graphc's interpreter, PyTorch eager and JAX
``jit`` (the peers only when installed).

Every implementation starts from the same weights and data; the losses of
their first steps are checked to agree before anything is timed. Times are
medians over many calls, measured side by side in one process; ratios are
each implementation's median divided by graphc's (> 1: graphc is faster).

    python benchmarks/train_step.py [--threads N] [--quick]

``run(threads=None) -> dict`` is the entry point for a benchmark harness.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import graphc as gc  # noqa: E402

WORKLOADS = {
    # name: (layer sizes, batch) — ReLU MLPs, float32, Adam(lr=1e-3)
    "mlp_784_256_10": ((784, 256, 10), 128),
    "spiral_2_64_64_3": ((2, 64, 64, 3), 300),
}
LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8


# ------------------------------------------------------------------ implementations

def make_data(sizes, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch).astype(np.int64)
    gc.nn.manual_seed(seed)
    model = gc.nn.Sequential(*[gc.nn.Dense(a, b, activation=gc.relu if k < len(sizes) - 2 else None)
                               for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))])
    weights = [(layer.weight.value.copy(), layer.bias.value.copy()) for layer in model]
    return x, y, weights


def graphc_step(sizes, batch, weights, backend="llvm"):
    model = gc.nn.Sequential(*[gc.nn.Dense(a, b, activation=gc.relu if k < len(sizes) - 2 else None)
                               for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))])
    for layer, (w, b) in zip(model, weights):
        layer.weight.value, layer.bias.value = w, b
    x = gc.placeholder((batch, sizes[0]), "float32", name="x")
    y = gc.placeholder((batch,), "int64", name="y")
    loss = gc.nn.cross_entropy(model(x), y)
    t0 = time.perf_counter()
    step = gc.compile(loss, updates=gc.optim.Adam(LR).updates(loss, model.parameters()),
                      backend=backend)
    info = {"compile_s": time.perf_counter() - t0, "kernels": step.num_kernels}
    return (lambda xb, yb: float(step(x=xb, y=yb))), info


def numpy_step(sizes, batch, weights):
    """Forward, backward and Adam by hand, in place, float32."""
    params = [p.copy() for wb in weights for p in wb]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    state = {"t": 0}
    nl = len(weights)

    def step(x, y):
        hs, h = [x], x
        for k in range(nl):
            h = h @ params[2 * k] + params[2 * k + 1]
            if k < nl - 1:
                h = np.maximum(h, 0)
            hs.append(h)
        z = h - h.max(1, keepdims=True)
        e = np.exp(z)
        s = e.sum(1, keepdims=True)
        n = len(y)
        loss = float(np.mean(np.log(s[:, 0]) - z[np.arange(n), y]))
        d = e / s
        d[np.arange(n), y] -= 1
        d /= n
        grads = [None] * len(params)
        for k in reversed(range(nl)):
            grads[2 * k] = hs[k].T @ d
            grads[2 * k + 1] = d.sum(0)
            if k:
                d = (d @ params[2 * k].T) * (hs[k] > 0)
        state["t"] += 1
        t = state["t"]
        step_size = LR / (1 - B1 ** t)
        bc2 = np.float32(np.sqrt(1 - B2 ** t))
        for p, g, mi, vi in zip(params, grads, m, v):
            mi *= B1
            mi += (1 - B1) * g
            vi *= B2
            vi += (1 - B2) * g * g
            p -= np.float32(step_size) * mi / (np.sqrt(vi) / bc2 + np.float32(EPS))
        return loss
    return step, {}


def torch_step(sizes, batch, weights):
    import torch
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if k < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for lin, (w, b) in zip([m for m in model if isinstance(m, torch.nn.Linear)], weights):
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    def step(x, y):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()
        return loss.item()
    return step, {"torch_threads": torch.get_num_threads()}


def jax_step(sizes, batch, weights):
    import jax
    import jax.numpy as jnp

    def loss_fn(params, x, y):
        h = x
        for k, (w, b) in enumerate(params):
            h = h @ w + b
            if k < len(params) - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], 1))

    def update(params, m, v, t, x, y):
        loss, g = jax.value_and_grad(loss_fn)(params, x, y)
        t = t + 1
        tm = jax.tree_util.tree_map
        m = tm(lambda a, b: a + (1 - B1) * (b - a), m, g)
        v = tm(lambda a, b: B2 * a + (1 - B2) * b * b, v, g)
        bc1 = 1 - B1 ** t
        bc2 = jnp.sqrt(1 - B2 ** t)
        params = tm(lambda p, a, b: p - (LR / bc1) * a / (jnp.sqrt(b) / bc2 + EPS), params, m, v)
        return params, m, v, t, loss

    jstep = jax.jit(update, donate_argnums=(0, 1, 2))
    st = {"p": [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]}
    st["m"] = jax.tree_util.tree_map(jnp.zeros_like, st["p"])
    st["v"] = jax.tree_util.tree_map(jnp.zeros_like, st["p"])
    st["t"] = jnp.float32(0)

    def step(x, y):
        st["p"], st["m"], st["v"], st["t"], loss = jstep(st["p"], st["m"], st["v"], st["t"], x,
                                                         y.astype(np.int32))
        return float(loss)                     # blocks until the step is done
    return step, {}


# ------------------------------------------------------------------------ measuring

def set_blas_threads(n: int) -> bool:
    """Best effort: set OpenBLAS's thread count through its C API."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
        return True
    except ImportError:
        pass
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                if "openblas" in line.lower():
                    libs.add(line.split()[-1])
    except OSError:
        return False
    ok = False
    for path in libs:
        lib = ctypes.CDLL(path)
        for fn in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                   "openblas_set_num_threads"):
            if hasattr(lib, fn):
                getattr(lib, fn)(ctypes.c_int(n))
                ok = True
                break
    return ok


def median_ms(fn, data, budget_s=1.0, min_reps=10, max_reps=500):
    for xb, yb in data[:3]:               # warm up (JIT compilation, caches)
        fn(xb, yb)
    ts = []
    t_end = time.perf_counter() + budget_s
    k = 0
    while (len(ts) < min_reps or time.perf_counter() < t_end) and len(ts) < max_reps:
        xb, yb = data[k % len(data)]
        t = time.perf_counter()
        fn(xb, yb)
        ts.append(time.perf_counter() - t)
        k += 1
    ts = np.array(ts) * 1e3
    return {"ms": float(np.median(ts)), "p10_ms": float(np.percentile(ts, 10)),
            "p90_ms": float(np.percentile(ts, 90)), "reps": len(ts)}


def run(threads: int | None = None, workloads=None, quick: bool = False, verbose: bool = True) -> dict:
    """Run every workload on every available implementation; returns
    ``{"threads": ..., "workloads": {name: {impl: {ms, p10_ms, p90_ms, reps,
    ratio}}}}`` where ``ratio`` = impl median / graphc median."""
    if threads is not None and "jax" not in sys.modules:
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                              f"intra_op_parallelism_threads={threads}")
    impls = {"graphc": lambda s, b, w: graphc_step(s, b, w),
             "graphc-interp": lambda s, b, w: graphc_step(s, b, w, backend="interp"),
             "numpy": numpy_step}
    notes = {}
    try:
        import torch
        if threads is not None:
            torch.set_num_threads(threads)
        impls["torch-eager"] = torch_step
        notes["torch"] = torch.__version__
    except ImportError:
        notes["torch"] = "not installed"
    try:
        import jax
        impls["jax-jit"] = jax_step
        notes["jax"] = jax.__version__
    except ImportError:
        notes["jax"] = "not installed"
    if threads is not None:
        notes["numpy_blas_threads_set"] = set_blas_threads(threads)
    budget = 0.3 if quick else 1.5
    out = {"threads": threads, "versions": notes, "workloads": {}}
    for name in (workloads or WORKLOADS):
        sizes, batch = WORKLOADS[name]
        x, y, weights = make_data(sizes, batch)
        rng = np.random.default_rng(1)
        data = [(x, y)] + [(rng.standard_normal(x.shape).astype(np.float32),
                            rng.integers(0, sizes[-1], batch).astype(np.int64)) for _ in range(3)]
        res, first = {}, {}
        for impl, make in impls.items():
            fn, info = make(sizes, batch, weights)
            first[impl] = [fn(*data[0]), fn(*data[1])]      # the first two steps' losses
            res[impl] = dict(median_ms(fn, data, budget / (4 if impl == "graphc-interp" else 1)),
                             **info)
        ref = np.array(first["numpy"])
        agree = {k: bool(np.allclose(v, ref, rtol=1e-4)) for k, v in first.items()}
        base = res["graphc"]["ms"]
        for r in res.values():
            r["ratio"] = r["ms"] / base
        out["workloads"][name] = {"results": res, "first_losses": first, "losses_agree": agree}
        if verbose:
            print_table(name, sizes, batch, res, agree)
    return out


def print_table(name, sizes, batch, res, agree):
    print(f"\n{name}: MLP {'-'.join(map(str, sizes))}, batch {batch}, float32, "
          "forward + cross-entropy + backward + Adam")
    print(f"  {'implementation':<15} {'median ms':>10} {'p10':>8} {'p90':>8} {'runs':>5} "
          f"{'vs graphc':>10}  first losses agree")
    for impl, r in res.items():
        print(f"  {impl:<15} {r['ms']:>10.3f} {r['p10_ms']:>8.3f} {r['p90_ms']:>8.3f} "
              f"{r['reps']:>5d} {r['ratio']:>9.2f}x  {agree[impl]}")
    g = res["graphc"]
    print(f"  graphc: {g['kernels']} kernels, compiled in {g['compile_s']:.2f} s; ratio > 1 means "
          "graphc is faster")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None,
                   help="thread count for numpy's BLAS, PyTorch and XLA (graphc is single-threaded)")
    p.add_argument("--quick", action="store_true", help="shorter timing budget")
    p.add_argument("--workload", choices=list(WORKLOADS), action="append")
    a = p.parse_args(argv)
    r = run(a.threads, a.workload, a.quick)
    print(f"\nthreads: {a.threads or 'default'}; versions: {r['versions']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
