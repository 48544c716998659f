"""A module compiled on two cores (backend/llvm/shard.py, parallel.py): split
at function level, half compiled in a worker process, both object files
loaded into one engine — checked against numpy's interpreter, with the worker
killed or late, and through the disk cache."""
from __future__ import annotations

import ctypes
import os
import signal
import threading

import numpy as np
import pytest

import graphc as gc
from graphc import cache, cachefile
from graphc.backend.llvm import jit, parallel, shard

pytestmark = pytest.mark.skipif(not parallel.enabled(), reason="needs 2 CPUs and the worker")


@pytest.fixture
def sharding(monkeypatch, tmp_path):
    """Every module with two kernels or more is sharded; a fresh worker."""
    monkeypatch.setattr(parallel, "SHARD_MIN_BYTES", 1)
    monkeypatch.setattr(parallel, "idle_core", lambda: True)    # however busy the machine
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    cache.clear_memory()
    parallel.shutdown()
    parallel._state["failures"] = 0
    ready_worker()
    yield tmp_path
    parallel._on_sent = None
    parallel.shutdown()
    parallel._state["failures"] = 0
    cache.clear_memory()


def ready_worker():
    """Start the worker and wait until it has loaded LLVM (a compile uses only
    a ready worker, or one it waits for briefly)."""
    parallel.prestart(10 ** 9)
    assert parallel._state["worker"].ready(60)


def chain(n=8):
    """n reduce steps with different constants: n distinct kernel functions."""
    x = gc.placeholder((64,), "float64", name="x")
    y = x
    for k in range(n):
        y = gc.tanh(y - gc.sum(y) * (0.01 * (k + 1)))
    return x, y


def check(f, x, y):
    a = np.linspace(-1, 1, 64)
    ref = gc.compile(y, inputs=[x], backend="interp")(a)
    np.testing.assert_allclose(f(a), ref, rtol=1e-12, atol=1e-12)


def test_a_sharded_graph_matches_the_interpreter(sharding):
    x, y = chain()
    before = dict(parallel.stats)
    f = gc.compile(y, inputs=[x], cache=False)
    assert parallel.stats["sharded"] == before["sharded"] + 1
    assert parallel.stats["fallbacks"] == before["fallbacks"]
    assert len(f._jit.objects) == 2
    check(f, x, y)
    # both shards are inspectable
    assert "shard 1 of 2" in f.llvm_ir_optimized and "shard 1 of 2" in f.asm


def test_a_threaded_graph_is_sharded_too(sharding):
    x = gc.placeholder((256, 256), "float32", name="x")
    y = x
    for k in range(4):
        y = gc.tanh(y * (k + 1.5) - gc.sum(y) * 1e-5)
    f = gc.compile(y, inputs=[x], cache=False, threads=2)
    assert "graphc_rt_parallel" in f.llvm_ir and f.num_kernels >= 4
    assert len(f._jit.objects) == 2
    a = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    ref = gc.compile(y, inputs=[x], backend="interp")(a)
    np.testing.assert_allclose(f(a), ref, rtol=1e-4, atol=1e-4)


def test_the_worker_killed_mid_compile_falls_back_to_this_process(sharding):
    x, y = chain()
    killed = []

    def kill(w):
        os.kill(w.pid, signal.SIGKILL)
        killed.append(w.pid)
    parallel._on_sent = kill
    before = dict(parallel.stats)
    f = gc.compile(y, inputs=[x], cache=False)
    assert killed and parallel.stats["fallbacks"] == before["fallbacks"] + 1
    assert len(f._jit.objects) == 2          # the shard was compiled here instead
    check(f, x, y)
    # a new worker is started, and used
    parallel._on_sent = None
    ready_worker()
    assert parallel._state["worker"].pid != killed[0]
    x2, y2 = chain(6)
    f2 = gc.compile(y2, inputs=[x2], cache=False)
    assert parallel.stats["fallbacks"] == before["fallbacks"] + 1
    assert len(f2._jit.objects) == 2
    check(f2, x2, y2)


def test_a_late_worker_is_not_waited_for(sharding, monkeypatch):
    monkeypatch.setattr(parallel, "_deadline", lambda local: 0.0)   # already past
    x, y = chain()
    before = dict(parallel.stats)
    f = gc.compile(y, inputs=[x], cache=False)
    assert parallel.stats["fallbacks"] == before["fallbacks"] + 1
    check(f, x, y)


def test_no_worker_means_one_whole_module(sharding, monkeypatch):
    monkeypatch.setenv("GRAPHC_LLVM_WORKER", "0")
    x, y = chain()
    f = gc.compile(y, inputs=[x], cache=False)
    assert len(f._jit.objects) == 1
    check(f, x, y)


def test_a_busy_machine_compiles_whole(sharding, monkeypatch):
    monkeypatch.setattr(parallel, "idle_core", lambda: False)
    x, y = chain()
    f = gc.compile(y, inputs=[x], cache=False)
    assert len(f._jit.objects) == 1
    check(f, x, y)


def test_disk_cache_round_trip_of_a_sharded_artifact(sharding):
    x, y = chain()
    f1 = gc.compile(y, inputs=[x])
    assert f1.cache_hit is False and len(f1._jit.objects) == 2
    (path,) = cache.entries()
    header, _ = cache.read_entry(path)
    assert header["objects"] == 2 and header["format"] == cache.FORMAT
    cache.clear_memory()
    x2, y2 = chain()
    f2 = gc.compile(y2, inputs=[x2])
    assert f2.cache_hit == "disk" and len(f2._jit.objects) == 2
    check(f2, x2, y2)
    assert f2.llvm_ir_optimized == f1.llvm_ir_optimized
    assert "shard 1 of 2" in f2.asm


def test_an_entry_of_the_old_format_is_rejected_and_rebuilt(sharding):
    x, y = chain()
    gc.compile(y, inputs=[x])
    (path,) = cache.entries()
    header, blobs = cachefile.read(path, cache.MAGIC)
    old = {k: v for k, v in header.items() if k not in ("blobs", "objects")}
    old["format"] = 1
    cachefile.write(str(sharding), path, cache.MAGIC, old, blobs[:1] + blobs[2:3])
    cache.clear_memory()
    x2, y2 = chain()
    f = gc.compile(y2, inputs=[x2])
    assert f.cache_hit is False
    assert "format 1" in f.cache_miss_reason
    check(f, x2, y2)


def test_two_threads_compiling_at_once(sharding):
    results, errors = {}, []

    def work(k):
        try:
            x, y = chain(6 + k)
            f = gc.compile(y, inputs=[x], cache=False)
            check(f, x, y)
            results[k] = len(f._jit.objects)
        except Exception as e:       # pragma: no cover - reported below
            errors.append(e)
    ths = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(120)
    assert not errors and len(results) == 3


# -- the splitter on hand-written IR ------------------------------------------------------

IR = """; ModuleID = "t"
target triple = "unknown-unknown-unknown"
target datalayout = ""

define i64 @"entry"(i64 %"x")
{
entry:
  %"a" = call i64 @"f1"(i64 %"x")
  %"b" = call i64 @"f2"(i64 %"x")
  %"c" = call i64 @"f3"(i64 %"x")
  %"s" = add i64 %"a", %"b"
  %"t" = add i64 %"s", %"c"
  ret i64 %"t"
}

define internal i64 @"f1"(i64 %"x") noinline
{
entry:
  %"y" = call i64 @"helper"(i64 %"x")
  %"z" = mul i64 %"y", 3
  ret i64 %"z"
}

define internal i64 @"f2"(i64 %"x") noinline
{
entry:
  %"y" = call i64 @"helper"(i64 %"x")
  %"z" = mul i64 %"y", %"y"
  ret i64 %"z"
}

define internal i64 @"f3"(i64 %"x") noinline
{
entry:
  %"z" = sub i64 100, %"x"
  ret i64 %"z"
}

define internal i64 @"helper"(i64 %"x")
{
entry:
  %"y" = add i64 %"x", 7
  ret i64 %"y"
}
"""


def test_split_hand_written_ir_and_load_the_shards_into_one_engine():
    parts, load = shard.split(IR, 2)
    assert len(parts) == 2 and all(load)
    objs = [jit.compile_object(p, 2)[0] for p in parts]
    jm = jit.JitModule(objs, "entry")
    fn = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(jm.address)
    for v in (0, 5, -13):
        h = v + 7
        assert fn(v) == 3 * h + h * h + (100 - v)
    # the helper is copied into every shard that calls it, kept internal
    assert sum('define internal i64 @"helper"' in p for p in parts) == 2


def test_split_refuses_what_it_cannot_copy():
    assert shard.split(IR.replace('target datalayout = ""',
                                  'target datalayout = ""\n@"g" = internal global i64 0'), 2) is None
    assert shard.split(IR, 5) is None                       # fewer kernels than shards
    const = IR.replace('target datalayout = ""',
                       'target datalayout = ""\n@"k" = internal constant i64 4')
    assert shard.split(const, 2) is not None


def test_a_forked_child_uses_its_own_worker(isolated):
    isolated("""
        import os
        import numpy as np
        import graphc as gc
        from graphc.backend.llvm import parallel
        parallel.SHARD_MIN_BYTES = 1
        parallel.idle_core = lambda: True

        def run(n):
            x = gc.placeholder((64,), "float64", name="x")
            y = x
            for k in range(n):
                y = gc.tanh(y - gc.sum(y) * (0.01 * (k + 1)))
            a = np.linspace(-1, 1, 64)
            ref = gc.compile(y, inputs=[x], backend="interp")(a)
            f = gc.compile(y, inputs=[x], cache=False)
            return len(f._jit.objects) == 2 and np.allclose(f(a), ref, rtol=1e-12)

        parallel.prestart(10 ** 9)
        parent = parallel._state["worker"]
        assert parent.ready(60) and run(8)
        pid = os.fork()
        if pid == 0:
            ok = parallel._state["worker"] is None      # forgot the parent's
            parallel.prestart(10 ** 9)
            w = parallel._state["worker"]
            ok = ok and w.pid != parent.pid and w.ready(60) and run(7)
            os._exit(0 if ok else 3)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        assert parallel._state["worker"] is parent and run(6)   # the parent's still serves it
        print("ok")
    """, timeout=300)
