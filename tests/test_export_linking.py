"""Exported libraries in the ways programs use them: several outputs and
dtypes, no inputs, after a cache hit, from several C threads, through
ctypes, dlopen/dlclose, the named-struct call in C and C++ (the core and
its oracle: tests/test_export.py)."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import graphc as gc
from tests.export_c import (
    build_driver,
    cc_or_skip,
    mlp_forward,
    mlp_step,
    param_values,
    run_driver,
    same_bits,
    threaded_matmul,
)

RNG = np.random.default_rng(0)


def test_several_outputs_dtypes_names_and_constants(tmp_path):
    """Two inputs of different dtypes, odd names, a constant array, three
    outputs (one an input returned as is), no parameters."""
    cc_or_skip()
    a = gc.placeholder((3, 4), "float64", name='a "quoted" */ name')
    k = gc.placeholder((5,), "int32", name="idx-é")
    table = gc.constant(np.arange(12.0).reshape(3, 4) ** 1.5)
    outs = [gc.sum(a * table, axis=1), gc.cast(k, "int64") * 3, a]
    f = gc.compile(outs, inputs=[a, k])
    exp = f.export(str(tmp_path / "lib"), name="multi", output_names=["s", "k3", "same"])
    assert [o.name for o in exp.interface.outputs] == ["s", "k3", "same"]
    assert len(exp.interface.embedded) == 1                  # the constant
    av = RNG.standard_normal((3, 4))
    kv = RNG.integers(-100, 100, 5).astype(np.int32)
    exe = build_driver(exp, tmp_path)
    status, got, _ = run_driver(exe, exp, tmp_path, [av, kv])
    assert status == "status 0 ok"
    for g, w in zip(got, f(av, kv)):
        assert same_bits(g, w)


def test_no_inputs(tmp_path):
    cc = cc_or_skip()
    f = gc.compile(gc.exp(gc.constant(np.linspace(0, 1, 7))))
    f.export(str(tmp_path), name="noin")
    src = tmp_path / "m.c"
    src.write_text('#include <stdio.h>\n#include "noin.h"\nint main(void) {\n'
                   "  double y[NOIN_OUTPUT0_SIZE]; void *o[] = {y};\n"
                   "  int s = noin_run(NULL, o);\n"
                   '  for (int i = 0; i < 7; i++) printf("%.17g\\n", y[i]);\n  return s; }\n')
    subprocess.run([*cc, "-std=c11", f"-I{tmp_path}", str(src), "-o", str(tmp_path / "m"),
                    f"-L{tmp_path}", "-lnoin", f"-Wl,-rpath,{tmp_path}"], check=True)
    out = subprocess.run([str(tmp_path / "m")], capture_output=True, text=True, check=True)
    assert same_bits(np.array([float(v) for v in out.stdout.split()]), f())


def test_export_after_a_cache_hit_threads(tmp_path):
    """A function the compile cache answered (its plan rebuilt on request)
    exports with its runtime components: the GEMM, the pool."""
    cc_or_skip()
    threaded_matmul()
    f = threaded_matmul()
    assert f.cache_hit
    exp = f.export(str(tmp_path / "lib"), name="hitmm")
    assert exp.interface.pool and exp.interface.threads == 2
    x = RNG.standard_normal((256, 256)).astype(np.float32)
    exe = build_driver(exp, tmp_path)
    status, (out,), _ = run_driver(exe, exp, tmp_path, [x])
    assert status == "status 0 ok" and same_bits(out, f(x))


def test_export_after_a_cache_hit(tmp_path):
    """A function the compile cache answered exports the same code."""
    cc_or_skip()
    f1 = mlp_step()
    f2 = mlp_step()                   # same graph: from the cache, its plan rebuilt on request
    assert f2.cache_hit
    exp = f2.export(str(tmp_path / "lib"), name="hit", params="input")
    assert exp.interface.errors == f1._native.errors
    x = RNG.standard_normal((16, 2)).astype(np.float32)
    y = RNG.integers(0, 3, 16).astype(np.int64)
    start = param_values(f2)
    exe = build_driver(exp, tmp_path)
    status, (loss,), after = run_driver(exe, exp, tmp_path, [x, y, *start])
    assert status == "status 0 ok" and same_bits(loss, f2(x, y))
    assert all(same_bits(a, p.value) for a, p in zip(after[2:], f2._native.params))


def test_concurrent_calls_from_c_threads(tmp_path):
    """mlp_run from four threads at once, each with its own workspace."""
    cc = cc_or_skip()
    f, _ = mlp_forward(batch=8)
    f.export(str(tmp_path), name="mt")
    src = tmp_path / "mt.c"
    src.write_text(r"""
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "mt.h"
static float x[4][MT_INPUT0_SIZE], want[4][MT_OUTPUT0_SIZE];
static void *work(void *arg) {
    long t = (long)arg;
    float y[MT_OUTPUT0_SIZE];
    const void *in[] = {x[t]};
    void *out[] = {y};
    for (int r = 0; r < 2000; r++) {
        if (mt_run(in, out) || memcmp(y, want[t], sizeof y)) return (void *)1;
    }
    return 0;
}
int main(void) {
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        for (int k = 0; k < MT_INPUT0_SIZE; k++) x[t][k] = 0.1f * k - 0.3f * t;
        const void *in[] = {x[t]};
        void *out[] = {want[t]};
        if (mt_run(in, out)) return 2;
    }
    for (long t = 0; t < 4; t++) pthread_create(&th[t], 0, work, (void *)t);
    int bad = 0;
    for (int t = 0; t < 4; t++) { void *r; pthread_join(th[t], &r); bad |= r != 0; }
    printf("%s\n", bad ? "differ" : "same");
    return 0;
}
""")
    subprocess.run([*cc, "-std=c11", "-O2", f"-I{tmp_path}", str(src), "-o",
                    str(tmp_path / "mt"), f"-L{tmp_path}", "-lmt", f"-Wl,-rpath,{tmp_path}",
                    "-lpthread"], check=True)
    out = subprocess.run([str(tmp_path / "mt")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "same"


def test_loaded_with_ctypes_next_to_the_jit(tmp_path):
    """The library loads into a Python process that runs graphc's own JIT
    code (its symbols are its own), and computes the same bits."""
    import ctypes
    cc_or_skip()
    f, _ = mlp_forward()
    exp = f.export(str(tmp_path), name="viactypes")
    lib = ctypes.CDLL(exp.library)
    lib.viactypes_error_message.restype = ctypes.c_char_p
    x = RNG.standard_normal((8, 2)).astype(np.float32)
    y = np.empty((8, 3), np.float32)
    ins = (ctypes.c_void_p * 1)(x.ctypes.data)
    outs = (ctypes.c_void_p * 1)(y.ctypes.data)
    assert lib.viactypes_run(ins, outs) == 0
    assert same_bits(y, f(x=x))
    assert lib.viactypes_run(None, outs) == -1
    assert b"null pointer" in lib.viactypes_error_message(-1)
    assert lib.viactypes_set_num_threads(0) == -3 and lib.viactypes_num_threads() == 1


def test_dlopen_dlclose_with_the_pool_running(tmp_path):
    """A program that dlopens the library, runs it on two threads (the pool's
    worker then sleeps in the library's code), dlcloses it and opens it
    again keeps running: the library is never unmapped (-z nodelete)."""
    cc = cc_or_skip()
    f = threaded_matmul()
    exp = f.export(str(tmp_path), name="mm")
    src = tmp_path / "dl.c"
    src.write_text(r"""
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
typedef int (*run_t)(const void *const *, void *const *);
int main(int argc, char **argv) {
    float *x = calloc(256 * 256, 4), *y = malloc(256 * 256 * 4);
    for (int k = 0; k < 256 * 256; k++) x[k] = (k % 7) * 0.125f - 0.25f;
    const void *in[] = {x};
    void *out[] = {y};
    float first = 0;
    for (int round = 0; round < 3; round++) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
        run_t run = (run_t)dlsym(h, "mm_run");
        for (int r = 0; r < 20; r++) if (run(in, out)) return 2;
        if (round == 0) first = y[12345];
        else if (y[12345] != first) return 3;
        dlclose(h);
    }
    printf("%.9g\n", first);
    return 0;
}
""")
    exe = tmp_path / "dl"
    subprocess.run([*cc, "-std=c11", "-O2", str(src), "-o", str(exe), "-ldl", "-lpthread"],
                   check=True)
    r = subprocess.run([str(exe), exp.library], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    x = ((np.arange(256 * 256) % 7) * 0.125 - 0.25).astype(np.float32).reshape(256, 256)
    assert np.float32(r.stdout.strip()) == f(x).reshape(-1)[12345]


@pytest.mark.parametrize("lang", ["c", "c++"])
def test_named_struct_call(tmp_path, lang):
    """<name>_run_named: typed structs of named pointers, in C and C++."""
    cc = cc_or_skip()
    if lang == "c++":
        cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
        if not cxx:
            pytest.skip("no C++ compiler")
        cc = [cxx]
    a = gc.placeholder((2, 3), "float64", name="a-in")
    k = gc.placeholder((3,), "int32", name="int")           # a keyword: a generated field name
    f = gc.compile([gc.sum(a, axis=0) * gc.cast(k, "float64"), gc.exp(a)], inputs=[a, k])
    exp = f.export(str(tmp_path), name="nm", output_names=["weighted", "e"])
    h = open(exp.header).read()
    assert "const double *a_in;" in h and "const int32_t *in1;" in h and "double *weighted;" in h
    src = tmp_path / ("m.c" if lang == "c" else "m.cpp")
    src.write_text('#include <stdio.h>\n#include "nm.h"\nint main(void) {\n'
                   "  double a[6] = {1, 2, 3, 4, 5, 6}, w[3], e[6]; int32_t k[3] = {1, -2, 3};\n"
                   "  nm_inputs in = {a, k}; nm_outputs out = {w, e};\n"
                   "  int s = nm_run_named(&in, &out);\n"
                   '  printf("%d %.17g %.17g %.17g %.17g\\n", s, w[0], w[1], w[2], e[5]);\n'
                   "  return 0; }\n")
    subprocess.run([*cc, "-Wall", "-Wextra", "-Werror", f"-I{tmp_path}", str(src), "-o",
                    str(tmp_path / "m"), f"-L{tmp_path}", "-lnm", f"-Wl,-rpath,{tmp_path}"],
                   check=True, capture_output=True)
    out = subprocess.run([str(tmp_path / "m")], capture_output=True, text=True,
                         check=True).stdout.split()
    w, e = f(np.arange(1.0, 7.0).reshape(2, 3), np.array([1, -2, 3], np.int32))
    assert out[0] == "0"
    assert [float(v) for v in out[1:4]] == list(w) and float(out[4]) == e[1, 2]


def test_a_cpu_without_the_extensions_gets_a_status_not_a_crash(tmp_path, monkeypatch):
    """The library checks at load time that the CPU has the extensions the
    code was compiled for; a call on one that lacks them returns
    <NAME>_ERR_CPU. Simulated with an extension this host lacks (checking
    for more than the code uses is harmless)."""
    from graphc.backend.llvm import host
    from graphc.export import csource
    cc_or_skip()
    h = host.cpu()
    lacks = [x for x in ("avx512vp2intersect", "avx512fp16", "amx-tile")
             if f"-{x}" in h["features"].split(",")]
    if not h["triple"].startswith("x86_64") or not lacks:
        pytest.skip("needs an x86 host that lacks one of avx512vp2intersect, avx512fp16, amx-tile")
    real = csource.cpu_checks(h["triple"], h["features"])
    assert "sse4.2" in real                              # (every x86-64 host graphc targets)
    monkeypatch.setattr(csource, "cpu_checks", lambda *a: [*real, lacks[0]])
    f, _ = mlp_forward()
    try:
        exp = f.export(str(tmp_path / "lib"), name="old")
    except Exception as e:            # a compiler that does not know the name
        pytest.skip(f"the C compiler does not check {lacks[0]!r}: {e}")
    exe = build_driver(exp, tmp_path)
    status, _, _ = run_driver(exe, exp, tmp_path, [np.zeros((8, 2), np.float32)])
    assert status.startswith("status -4 this CPU lacks") and lacks[0] in status


def test_static_library_exports_only_the_entry_points(tmp_path):
    cc_or_skip()
    if not shutil.which("nm") or not shutil.which("objcopy"):
        pytest.skip("needs nm and objcopy")
    f = threaded_matmul()
    exp = f.export(str(tmp_path), name="st", kind="static")
    r = subprocess.run(["nm", "--defined-only", "-g", exp.library], capture_output=True,
                       text=True, check=True)
    syms = {ln.split()[-1] for ln in r.stdout.splitlines() if len(ln.split()) == 3}
    assert syms and all(s.startswith("st_") and "__" not in s for s in syms), syms
