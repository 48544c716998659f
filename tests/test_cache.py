"""The compile cache: memory and disk hits, explanations of misses, and
entries that are truncated, corrupted, foreign or written concurrently."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from graphc import cache, version


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    cache.clear_memory()
    yield tmp_path
    cache.clear_memory()


def build(n=8, value=1.0, scale=2.0, dtype="float64"):
    x = gc.placeholder((4, n), dtype, name="x")
    w = gc.parameter(np.full((n, 3), value, dtype), name="w")
    loss = gc.sum(gc.tanh(x @ w) * scale)
    (gw,) = gc.grad(loss, [w])
    return [loss, gw], w


def reference(X, W, scale=2.0):
    t = np.tanh(X @ W)
    return np.sum(t * scale), X.T @ ((1 - t * t) * scale)


def test_memory_hit_binds_the_new_graph(cache_dir):
    outs1, w1 = build(value=1.0)
    f1 = gc.compile(outs1)
    assert f1.cache_hit is False
    outs2, w2 = build(value=0.5)                  # same structure, new nodes, other values
    f2 = gc.compile(outs2)
    assert f2.cache_hit == "memory"
    X = np.random.default_rng(0).standard_normal((4, 8))
    for f, w in ((f1, w1), (f2, w2)):
        loss, gw = f(x=X)
        want = reference(X, w.value)
        np.testing.assert_allclose(loss, want[0])
        np.testing.assert_allclose(gw, want[1])
    assert f2.num_kernels == f1.num_kernels and "kernels" in f2.report()   # plan rebuilt lazily


def test_memory_hit_with_updates_writes_the_new_parameters(cache_dir):
    def step():
        w = gc.parameter(np.ones(3), name="w")
        x = gc.placeholder((3,), "float64", name="x")
        loss = gc.sum(w * x)
        return gc.compile(loss, updates={w: w - 0.5 * x}), w
    f1, w1 = step()
    f2, w2 = step()
    assert f2.cache_hit == "memory"
    f2(x=np.ones(3))
    np.testing.assert_array_equal(w2.value, [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(w1.value, [1, 1, 1])


def test_miss_explanations(cache_dir):
    gc.compile(build()[0])
    f = gc.compile(build(n=9)[0])
    assert f.cache_hit is False and "shapes" in f.cache_miss_reason
    f = gc.compile(build(scale=3.0)[0])
    assert "constant values" in f.cache_miss_reason
    f = gc.compile(build()[0], opt_level=1)
    assert "compile options" in f.cache_miss_reason
    f = gc.compile(build(dtype="float32")[0])
    assert "shapes/dtypes" in f.cache_miss_reason


def test_a_miss_is_explained_only_when_asked_and_never_by_itself(cache_dir, monkeypatch):
    """Explaining reads entries' headers: a compile must not pay for it (it
    cost ~16 ms a miss with a full cache directory) unless the reason is read."""
    for n in range(3, 8):
        gc.compile(build(n=n)[0])
    cache.clear_memory()
    reads = []
    real = cache.read_header
    monkeypatch.setattr(cache, "read_header", lambda p: reads.append(p) or real(p))
    f = gc.compile(build(n=9)[0])
    g = gc.compile(build(n=3, scale=5.0)[0])
    assert reads == []
    assert "shapes" in f.cache_miss_reason and reads
    assert g.cache_miss_reason == "closest cached graph differs in: constant values"
    h = gc.compile(build(n=9)[0])                                    # f's entry: a hit
    assert h.cache_hit == "memory" and h.cache_miss_reason == ""


SCRIPT = """
import numpy as np, graphc as gc
x = gc.placeholder((4, 8), "float64", name="x")
w = gc.parameter(np.full((8, 3), 1.0), name="w")
f = gc.compile(gc.sum(gc.tanh(x @ w) * 2.0))
X = np.arange(32.0).reshape(4, 8) / 32
assert abs(float(f(x=X)) - float(np.sum(np.tanh(X @ w.value) * 2.0))) < 1e-12
print("HIT", f.cache_hit)
"""


def run_script(cache_dir, code=SCRIPT):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_disk_hit_across_processes(cache_dir):
    assert run_script(cache_dir) == "HIT False"
    assert len(cache.entries()) == 1
    assert run_script(cache_dir) == "HIT disk"


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "foreign", "empty"])
def test_bad_entries_are_discarded_and_rebuilt(cache_dir, damage):
    run_script(cache_dir)
    (path,) = cache.entries()
    data = open(path, "rb").read()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data = data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:]
    elif damage == "garbage":
        data = os.urandom(len(data))
    elif damage == "empty":
        data = b""
    if damage == "foreign":
        # a sound entry of another graph under this key's name
        other = SCRIPT.replace("* 2.0", "* 3.0")
        os.unlink(path)
        run_script(cache_dir, other)
        (other_path,) = cache.entries()
        os.replace(other_path, path)
    else:
        with open(path, "wb") as fh:
            fh.write(data)
    assert run_script(cache_dir) == "HIT False"          # detected, rebuilt, correct
    (path2,) = cache.entries()
    cache.read_entry(path2)                               # and the new entry is sound
    assert run_script(cache_dir) == "HIT disk"


def test_concurrent_processes_leave_a_valid_cache(cache_dir):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    procs = []
    for k in range(6):
        code = SCRIPT.replace("* 2.0", f"* {2.0 + (k % 3)}")
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()
    files = cache.entries()
    assert len(files) == 3
    for f in files:
        cache.read_entry(f)
    assert not [f for f in os.listdir(cache_dir) if f.startswith(".tmp-")]


def test_graph_with_external_op_is_not_cached_on_disk(cache_dir):
    from graphc.ops.registry import OpDef, make, register
    if "test_ext_double" not in gc.OPS:
        register(OpDef("test_ext_double", "elementwise", lambda ins, a: (ins[0].shape, ins[0].dtype),
                       lambda x: x * 2, lambda n, g: [g * 2.0], scalar=lambda s, n, x: x + x))
    x = gc.placeholder((3,), "float64", name="x")
    f = gc.compile(make("test_ext_double", (x,)))
    np.testing.assert_array_equal(f(x=np.ones(3)), [2, 2, 2])
    assert cache.entries() == []
    assert gc.compile(make("test_ext_double", (x,))).cache_hit == "memory"


def test_changed_graphc_source_is_a_miss(cache_dir, monkeypatch):
    gc.compile(build()[0])
    cache.clear_memory()
    monkeypatch.setattr(version, "_source_hash", "0.1.0+someotherbuild")
    f = gc.compile(build()[0])
    assert f.cache_hit is False and "graphc version" in f.cache_miss_reason


def test_disabled_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", "")
    assert cache.cache_dir() is None
    cache.clear_memory()
    gc.compile(build()[0])
    assert cache.entries() == []


def test_cli_cache_info_and_clear(cache_dir):
    run_script(cache_dir)
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-m", "graphc", "cache", "info"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert "1 entries" in out.stdout and "ok" in out.stdout
    out = subprocess.run([sys.executable, "-m", "graphc", "cache", "clear"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert "removed 1 entries" in out.stdout
    assert cache.entries() == []
