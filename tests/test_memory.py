"""Memory: compiled code is released with its function, compiling and
dropping many distinct graphs does not grow the process, and calling one
function many times does not either.

Resident memory is read from /proc/self/statm in a fresh interpreter (the
``isolated`` fixture), after a warm-up that loads LLVM and fills its caches.
Default run: 100 small graphs and 10 000 calls; ``-m slow``: the 500
training-step graphs (forward, loss and gradient) of issue 7 (limit 100 MB).
"""
from __future__ import annotations

import inspect
import json

import pytest

import graphc as gc

# with a compile cache, a cached function's code is meant to outlive it (up
# to the cache's bound): the release checks compile with cache=False
CACHED = "cache" in inspect.signature(gc.compile).parameters

pytestmark = pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"),
                                reason="needs /proc/self/statm (Linux)")

_PRELUDE = """
import gc as pygc, json, os, weakref
import numpy as np
import graphc as gc

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def build(i, small=False):
    # a distinct graph for every i: shapes, constants and structure vary
    n = 3 + i % 5
    if small:                  # a few nodes: cheap to compile
        x = gc.placeholder((n, 6), "float64", name="x")
        y = gc.placeholder((n,), "int64", name="y")
        h = gc.sum(gc.tanh(x * float(i) + 1.0) @ gc.constant(np.full((6, 2), i / 7)), 1)
        return [h, gc.cast(y, "float64") + h], (np.ones((n, 6)), np.arange(n))
    x = gc.placeholder((n, 6), "float32" if i % 2 else "float64", name="x")
    y = gc.placeholder((n,), "int64", name="y")
    w = gc.parameter(np.full((6, 4), 0.01 * (i % 7 + 1), x.dtype), name="w")
    h = gc.tanh(x @ w + float(i))
    if i % 3 == 0:
        h = gc.relu(h) * gc.sigmoid(h)
    loss = gc.mean(gc.softmax_cross_entropy(h, y))
    (gw,) = gc.grad(loss, [w])
    return [loss, gw], (np.ones((n, 6), x.dtype), np.arange(n) % 4)

def compile_and_drop(i, small=False, cache=None):
    outs, (xv, yv) = build(i, small)
    f = gc.compile(outs) if cache is None else gc.compile(outs, cache=cache)
    f(x=xv, y=yv)
    jit, engine = weakref.ref(f._jit), weakref.ref(f._jit.engine)
    del f
    return jit, engine
"""


def _compile_drop(isolated, n, small, cache=None, cache_dir=None):
    cache = False if cache is None and CACHED else cache
    r = isolated(_PRELUDE + f"""
for i in range(30):                      # warm up: LLVM, numpy, caches
    compile_and_drop(10**6 + i, {small}, {cache})
pygc.collect()
r0 = rss_mb()
alive, refs = 0, []
for i in range({n}):
    jit, engine = compile_and_drop(i, {small}, {cache})
    alive += jit() is not None or engine() is not None   # freed at once, no cycle
    refs.append(jit)
pygc.collect()
print(json.dumps({{"growth_mb": rss_mb() - r0, "alive": alive, "rss_mb": rss_mb(),
                   "alive_at_end": sum(r() is not None for r in refs)}}))
""", timeout=1200, env={"GRAPHC_CACHE_DIR": str(cache_dir)} if cache_dir else None)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_compiling_and_dropping_100_graphs_does_not_grow(isolated):
    res = _compile_drop(isolated, 100, small=True)
    assert res["alive"] == 0, "JIT code outlived its compiled function (a reference cycle?)"
    assert res["growth_mb"] < 20, f"RSS grew by {res['growth_mb']:.1f} MB over 100 compiles"


@pytest.mark.skipif(not CACHED, reason="gc.compile has no compile cache")
def test_the_compile_cache_keeps_memory_bounded(isolated, tmp_path):
    """With the cache on, functions' code may outlive them, but only up to
    the cache's bound: 150 distinct graphs still do not grow the process."""
    res = _compile_drop(isolated, 150, small=True, cache=True, cache_dir=tmp_path)
    assert res["alive_at_end"] <= 64, f"{res['alive_at_end']} JIT modules kept alive by the cache"
    assert res["growth_mb"] < 30, f"RSS grew by {res['growth_mb']:.1f} MB over 150 cached compiles"


@pytest.mark.slow
def test_compiling_and_dropping_500_graphs_grows_under_100mb(isolated):
    res = _compile_drop(isolated, 500, small=False)
    assert res["alive"] == 0
    assert res["growth_mb"] < 100, f"RSS grew by {res['growth_mb']:.1f} MB over 500 compiles"


def test_10000_calls_do_not_grow_memory(isolated):
    r = isolated(_PRELUDE + """
outs, (xv, yv) = build(0)
f = gc.compile(outs)
bad = yv.copy(); bad[0] = 99
for i in range(500):
    f(x=xv, y=yv)
pygc.collect()
r0 = rss_mb()
for i in range(10000):
    loss, gw = f(x=xv + i % 3, y=yv)
    if i % 1000 == 0:                  # the error path must not leak either
        try:
            f(x=xv, y=bad)
        except gc.RuntimeCheckError:
            pass
pygc.collect()
print(json.dumps({"growth_mb": rss_mb() - r0}))
""", timeout=600)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["growth_mb"] < 5, f"RSS grew by {res['growth_mb']:.1f} MB over 10 000 calls"


def test_dropped_graphs_leave_the_hash_consing_table(isolated):
    """Nodes are hash-consed in a weak table: once nothing uses a graph its
    entries go (after the IR builder's own reference cycles are collected)."""
    r = isolated(_PRELUDE + """
from graphc.ir import node
n0 = len(node._CONS)
for i in range(20):
    compile_and_drop(i, True)
pygc.collect()
print(json.dumps({"before": n0, "after": len(node._CONS)}))
""")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["after"] <= res["before"] + 5, res


if __name__ == "__main__":
    # the figures of docs/reliability.md: python tests/test_memory.py
    import sys
    sys.path.insert(0, __import__("os").path.dirname(__file__))
    from conftest import Isolated

    class _Run(Isolated):
        def __call__(self, code, **kw):
            try:
                return super().__call__(code, **kw)
            except BaseException as e:          # pytest.fail outside pytest
                raise SystemExit(str(e)) from None
    run = _Run()
    print("100 small graphs:", _compile_drop(run, 100, small=True))
    print("500 training-step graphs:", _compile_drop(run, 500, small=False))
    r = run(_PRELUDE + """
outs, (xv, yv) = build(0)
f = gc.compile(outs)
for i in range(500):
    f(x=xv, y=yv)
pygc.collect()
r0 = rss_mb()
for i in range(10000):
    f(x=xv + i % 3, y=yv)
pygc.collect()
print(json.dumps({"growth_mb": rss_mb() - r0, "rss_mb": rss_mb()}))
""")
    print("10 000 calls:", r.stdout.strip().splitlines()[-1])
