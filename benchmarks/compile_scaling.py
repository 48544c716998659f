"""Compile time as graphs grow (issue 11), graphc beside jax.jit in one run.

Workloads, each built fresh for every compile (no compile cache):

- ``adamN``: one Adam training step (forward, softmax cross-entropy,
  backward, the update of every parameter) of an MLP of N Dense(64, 64)
  ReLU layers, batch 32, float32. jax.jit compiles the same step
  (``value_and_grad`` plus Adam, written with jax.numpy) when JAX is
  installed; its time is ``jit(...).lower(...).compile()``.
- ``reduceN``: N steps of ``y = y - gc.sum(y) * 0.01`` on 64 float32.
- ``chainN``: N/2 steps of ``y = y * 1.0001 + 0.001`` (N nodes), checked
  against numpy after compiling.

Each row is the median of ``--repeat`` compiles (the 100 000-node chain once).

Run: python benchmarks/compile_scaling.py [--repeat 3] [--quick] [--threads T]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import graphc as gc

WIDTH, BATCH, CLASSES = 64, 32, 10


def _mlp_data(layers):
    r = np.random.default_rng(0)
    ws = [(r.standard_normal((WIDTH, WIDTH)).astype(np.float32) / 8,
           np.zeros(WIDTH, np.float32)) for _ in range(layers)]
    x = r.standard_normal((BATCH, WIDTH)).astype(np.float32)
    y = r.integers(0, CLASSES, BATCH).astype(np.int64)
    return ws, x, y


def graphc_adam(layers, threads=None):
    """Build and compile the Adam step; return (seconds, compiled, kernels)."""
    ws, xv, yv = _mlp_data(layers)
    model = gc.nn.Sequential(*[gc.nn.Dense(WIDTH, WIDTH, activation=gc.relu)
                               for _ in range(layers)])
    for layer, (w, b) in zip(model, ws):
        layer.weight.value, layer.bias.value = w, b
    x = gc.placeholder(xv.shape, "float32", name="x")
    y = gc.placeholder(yv.shape, "int64", name="y")
    t0 = time.perf_counter()
    loss = gc.nn.cross_entropy(model(x)[:, :CLASSES], y)
    updates = gc.optim.Adam(1e-3).updates(loss, model.parameters())
    f = gc.compile(loss, inputs=[x, y], updates=updates, cache=False, threads=threads)
    dt = time.perf_counter() - t0
    f(xv, yv)
    return dt, f


def jax_adam(layers):
    import jax
    import jax.numpy as jnp

    ws, xv, yv = _mlp_data(layers)
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in ws]

    def loss_fn(params, x, y):
        h = x
        for w, b in params:
            h = jax.nn.relu(h @ w + b)
        z = h[:, :CLASSES]
        lse = jax.nn.logsumexp(z, axis=1)
        return jnp.mean(lse - jnp.take_along_axis(z, y[:, None], 1)[:, 0])

    def step(params, m, v, t, x, y):
        loss, g = jax.value_and_grad(loss_fn)(params, x, y)
        t = t + 1
        new_p, new_m, new_v = [], [], []
        for (p, gp, mp, vp) in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(g),
                                   jax.tree_util.tree_leaves(m), jax.tree_util.tree_leaves(v)):
            mp = 0.9 * mp + 0.1 * gp
            vp = 0.999 * vp + 0.001 * gp * gp
            mh = mp / (1 - 0.9 ** t)
            vh = vp / (1 - 0.999 ** t)
            new_p.append(p - 1e-3 * mh / (jnp.sqrt(vh) + 1e-8))
            new_m.append(mp)
            new_v.append(vp)
        tree = jax.tree_util.tree_structure(params)
        return (loss, jax.tree_util.tree_unflatten(tree, new_p),
                jax.tree_util.tree_unflatten(tree, new_m), jax.tree_util.tree_unflatten(tree, new_v), t)

    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    t0 = time.perf_counter()
    jax.jit(step, donate_argnums=(0, 1, 2)).lower(params, m, v, jnp.float32(0), xv, yv).compile()
    return time.perf_counter() - t0


def graphc_reduce_chain(n, threads=None):
    x = gc.placeholder((64,), "float32", name="x")
    t0 = time.perf_counter()
    y = x
    for _ in range(n):
        y = y - gc.sum(y) * 0.01
    f = gc.compile(y, cache=False, threads=threads)
    dt = time.perf_counter() - t0
    a = np.linspace(-1, 1, 64).astype(np.float32)
    ref = a.astype(np.float64)
    for _ in range(n):
        ref = ref - ref.sum() * 0.01
    got = f(x=a)
    ok = np.allclose(got, ref, rtol=1e-3, atol=1e-3 * max(1.0, np.abs(ref).max()))
    return dt, f, ok


def graphc_chain(n, threads=None):
    x = gc.placeholder((16,), "float64", name="x")
    t0 = time.perf_counter()
    y = x
    for _ in range(n // 2):
        y = y * 1.0001 + 0.001
    f = gc.compile(y, cache=False, threads=threads)
    dt = time.perf_counter() - t0
    a = np.linspace(-1.0, 1.0, 16)
    ref = a.copy()
    for _ in range(n // 2):
        ref = ref * 1.0001 + 0.001
    ok = np.allclose(f(x=a), ref, rtol=1e-12)
    return dt, f, ok


def _median(fn, repeat):
    runs = [fn() for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), runs[-1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke test)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        import jax
        jax.config.update("jax_platforms", "cpu")
        have_jax = True
    except ImportError:
        have_jax = False
    print(f"graphc compile times, median of {args.repeat}; "
          f"jax.jit {'installed' if have_jax else 'not installed'}")
    layers = (2, 4) if args.quick else (10, 20, 40)
    adam = {}
    print(f"{'workload':<14}{'nodes':>7}{'kernels':>9}{'graphc s':>10}{'jax.jit s':>11}{'ratio':>8}")
    for n in layers:
        dt, (_, f) = _median(lambda: graphc_adam(n, args.threads), args.repeat)
        adam[n] = dt
        nodes = len(f.source_graph.nodes)
        jt = statistics.median(jax_adam(n) for _ in range(args.repeat)) if have_jax else None
        ratio = f"{dt / jt:7.2f}x" if jt else "      -"
        jts = f"{jt:10.3f}" if jt else "         -"
        print(f"{'adam' + str(n):<14}{nodes:>7}{f.num_kernels:>9}{dt:>10.3f}{jts} {ratio}")
    a, b = layers[-2], layers[-1]
    print(f"growth {a} -> {b} layers: {adam[b] / adam[a]:.2f}x")
    for n in ((20, 50) if args.quick else (100, 500, 2000)):
        dt, (_, f, ok) = _median(lambda: graphc_reduce_chain(n, args.threads), args.repeat)
        print(f"{'reduce' + str(n):<14}{len(f.source_graph.nodes):>7}{f.num_kernels:>9}"
              f"{dt:>10.3f}{'':>11}{'':>8}  {'ok' if ok else 'WRONG'}")
        if not ok:
            sys.exit(f"reduce chain N={n}: compiled result differs from numpy")
    for n in ((2000,) if args.quick else (10_000, 100_000)):
        rep = 1 if n >= 100_000 else args.repeat
        dt, (_, f, ok) = _median(lambda: graphc_chain(n, args.threads), rep)
        print(f"{'chain' + str(n):<14}{len(f.source_graph.nodes):>7}{f.num_kernels:>9}"
              f"{dt:>10.3f}{'':>11}{'':>8}  {'ok' if ok else 'WRONG'}")
        if not ok:
            sys.exit(f"chain N={n}: compiled result differs from numpy")


if __name__ == "__main__":
    main()
