"""A symbolic batch dimension against fixed shapes, side by side in one process.

Two figures, each the median of ``--reps`` rounds, the two variants timed
alternately within a round (so drift hits both):

* call overhead: the 16-32-4 MLP forward at batch 8 (a call whose cost is
  mostly the call itself), fixed shape (8, 16) vs ``Dim("batch", max=8)``
  called with 8 rows (goal <= 1.1x);
* step time: a 64-128-10 MLP training step (cross-entropy, Adam) at batch
  32, fixed (32, 64) vs ``Dim("batch", max=32)`` called with 32 rows (goal
  <= 1.05x); plus the symbolic step called with a partial batch of 20 rows
  (which runs on the bound: the padding costs a full batch).

    python benchmarks/dynamic_batch.py              # --reps 31 --inner 2000/200
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc
from graphc import nn


def _timer(fn, args, inner):
    def run():
        t = time.perf_counter()
        for _ in range(inner):
            fn(*args)
        return (time.perf_counter() - t) / inner
    return run


def _mlp_forward(rows):
    model = nn.Sequential(nn.Dense(32, activation="relu", seed=0), nn.Dense(4, seed=1))
    x = gc.placeholder((rows, 16), "float32", name="x")
    return gc.compile(model(x), inputs=[x])


def _train_step(rows):
    model = nn.Sequential(nn.Dense(128, activation="relu", seed=0), nn.Dense(10, seed=1))
    x = gc.placeholder((rows, 64), "float32", name="x")
    y = gc.placeholder((x.batch.dim if x.batch else rows,), "int64", name="y")
    loss = nn.cross_entropy(model(x), y)
    return gc.compile(loss, inputs=[x, y], updates=gc.optim.Adam(1e-3).updates(
        loss, model.parameters()))


def _side_by_side(named, reps):
    times = {k: [] for k in named}
    for run in named.values():
        run()                                          # warm-up
    for _ in range(reps):
        for k, run in named.items():
            times[k].append(run())
    return {k: float(np.median(v)) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=31)
    ap.add_argument("--inner-call", type=int, default=2000)
    ap.add_argument("--inner-step", type=int, default=200)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)

    x8 = rng.normal(size=(8, 16)).astype(np.float32)
    fixed, sym = _mlp_forward(8), _mlp_forward(gc.Dim("batch", max=8))
    np.testing.assert_allclose(fixed(x8), sym(x8), rtol=1e-5)
    call = _side_by_side({"fixed": _timer(fixed, (x8,), a.inner_call),
                          "symbolic": _timer(sym, (x8,), a.inner_call)}, a.reps)

    X = rng.normal(size=(32, 64)).astype(np.float32)
    Y = rng.integers(0, 10, size=32)
    sfixed, ssym = _train_step(32), _train_step(gc.Dim("batch", max=32))
    step = _side_by_side({"fixed": _timer(sfixed, (X, Y), a.inner_step),
                          "symbolic": _timer(ssym, (X, Y), a.inner_step),
                          "symbolic, 20 rows": _timer(ssym, (X[:20], Y[:20]), a.inner_step)},
                         a.reps)

    print(f"{'figure':<44}{'fixed':>12}{'symbolic':>12}{'ratio':>8}")
    print(f"{'call overhead, MLP 16-32-4 forward, batch 8':<44}{call['fixed'] * 1e6:>10.2f}us"
          f"{call['symbolic'] * 1e6:>10.2f}us{call['symbolic'] / call['fixed']:>8.3f}")
    print(f"{'train step, MLP 64-128-10 Adam, batch 32':<44}{step['fixed'] * 1e6:>10.2f}us"
          f"{step['symbolic'] * 1e6:>10.2f}us{step['symbolic'] / step['fixed']:>8.3f}")
    print(f"{'  symbolic step on a partial batch of 20':<44}{'':>12}"
          f"{step['symbolic, 20 rows'] * 1e6:>10.2f}us"
          f"{step['symbolic, 20 rows'] / step['fixed']:>8.3f}")


if __name__ == "__main__":
    main()
