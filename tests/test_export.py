"""Ahead-of-time export (graphc/export/): the library a compiled function
exports, linked into a C program that runs it on inputs numpy wrote, gives
the bits the compiled function gives in Python (the oracle here is the
Python call of the same compiled function, itself tested against the
interpreter elsewhere). Tests that need a C compiler skip without one."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.errors import RuntimeCheckError
from graphc.export import CompilerNotFoundError, ExportError, find_cc
from tests.export_c import (
    build_driver,
    cc_or_skip,
    mlp_forward,
    mlp_step,
    param_values,
    run_driver,
    same_bits,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("params", ["embed", "input"])
def test_mlp_forward_same_bits(tmp_path, params):
    cc_or_skip()
    f, _ = mlp_forward()
    exp = f.export(str(tmp_path / "lib"), name="mlp", params=params)
    assert os.path.basename(exp.library) == "libmlp.so"
    assert os.path.isfile(tmp_path / "lib" / "mlp.h")
    assert os.path.isfile(tmp_path / "lib" / "README.md")
    x = RNG.standard_normal((8, 2)).astype(np.float32)
    inputs = [x] + (param_values(f) if params == "input" else [])
    exe = build_driver(exp, tmp_path)
    status, (out,), _ = run_driver(exe, exp, tmp_path, inputs)
    assert status == "status 0 ok"
    expected = f(x=x)
    assert same_bits(out, expected)
    np.testing.assert_allclose(out, gc.compile(f.source_graph.outputs[0],
                                               backend="interp")(x=x), rtol=1e-5, atol=1e-6)


def test_library_needs_only_libc_libm_libpthread(tmp_path):
    cc_or_skip()
    if not shutil.which("ldd"):
        pytest.skip("no ldd")
    a = gc.placeholder((256, 256), "float32", name="a")
    w = gc.parameter(RNG.standard_normal((256, 256)).astype(np.float32), name="w")
    f = gc.compile(gc.tanh(a @ w) * 2.0, threads=2)      # the GEMM and the thread pool
    exp = f.export(str(tmp_path), name="step")
    assert f._runtime == ["gemm_f32", "threads"]
    r = subprocess.run(["ldd", exp.library], capture_output=True, text=True, check=True)
    deps = [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()]
    allowed = re.compile(r"(linux-vdso|linux-gate)\.so\.\d+|ld-linux[-\w.]*\.so\.\d+|"
                         r"lib(c|m|pthread)\.so\.\d+")
    assert deps and all(allowed.fullmatch(os.path.basename(d)) for d in deps), deps
    if shutil.which("nm"):               # only the C entry points are exported
        r = subprocess.run(["nm", "-D", "--defined-only", exp.library], capture_output=True,
                           text=True, check=True)
        syms = {ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip()}
        assert syms and all(s.startswith("step_") and "__" not in s for s in syms), syms
        assert {"step_run", "step_error_message", "step_set_num_threads"} <= syms


def small_cnn_step(batch=8, channels=(4, 8), hidden=16, threads=None):
    from graphc.demo_cnn import build_model as cnn
    model = cnn(seed=1, channels=channels, hidden=hidden)
    model.train()
    x = gc.placeholder((batch, 1, 8, 8), "float32", name="x")
    y = gc.placeholder((batch,), "int64", name="y")
    logits = model(x)
    loss = nn.cross_entropy(logits, y)
    hits = gc.sum(gc.cast(gc.equal(gc.argmax(logits, axis=1), y), "int64"))
    updates = optim.Adam(lr=0.003).updates(loss, model.parameters())
    return gc.compile([loss, hits], inputs=[x, y], updates=updates, threads=threads)


@pytest.mark.parametrize("size", ["small", "demo"])
def test_cnn_training_step_same_bits(tmp_path, size):
    """Three Adam steps of a CNN (conv, batch norm, pooling, dense): the
    losses, hit counts and every parameter, moment and running statistic
    after them, bit for bit. "small" is all loop nests; "demo" is the net of
    ``python -m graphc demo --cnn`` at batch 32 on two threads, which calls
    the packed GEMM and the thread pool compiled into the library."""
    cc_or_skip()
    batch = 8 if size == "small" else 32
    f = small_cnn_step(batch) if size == "small" else \
        small_cnn_step(batch, (16, 32), 64, threads=2)
    x = RNG.standard_normal((batch, 1, 8, 8)).astype(np.float32)
    y = RNG.integers(0, 10, batch).astype(np.int64)
    start = param_values(f)
    exp = f.export(str(tmp_path / "lib"), name="cnn_step", params="input")
    iface = exp.interface
    if size == "demo":
        assert iface.pool and "gemm_f32" in f._runtime
    assert [a.kind for a in iface.inputs[:2]] == ["placeholder"] * 2
    assert all(a.kind == "parameter" for a in iface.inputs[2:])
    assert any(a.updated for a in iface.inputs[2:])
    exe = build_driver(exp, tmp_path)
    status, (loss_c, hits_c), after = run_driver(exe, exp, tmp_path, [x, y, *start], reps=3)
    assert status == "status 0 ok"
    for _ in range(3):
        loss, hits = f(x, y)
    assert same_bits(loss_c, loss) and same_bits(hits_c, hits)
    for p, got in zip(f._native.params, after[2:]):
        assert same_bits(got, p.value), p.name
    assert same_bits(after[0], x) and same_bits(after[1], y)     # inputs only read
    assert not all(same_bits(a, b) for a, b in zip(start, after[2:]))


def test_label_out_of_range_is_the_python_error(tmp_path):
    cc_or_skip()
    f = mlp_step()
    x = RNG.standard_normal((16, 2)).astype(np.float32)
    y = np.zeros(16, np.int64)
    y[3] = 7                                    # 3 classes
    start = param_values(f)
    with pytest.raises(RuntimeCheckError) as e:
        f(x, y)
    exp = f.export(str(tmp_path / "lib"), name="step", params="input")
    exe = build_driver(exp, tmp_path)
    status, _, _ = run_driver(exe, exp, tmp_path, [x, y, *start])
    code, message = status.split(" ", 2)[1:]
    assert int(code) > 0 and message == str(e.value)
    assert exp.interface.errors[int(code) - 1] == str(e.value)
    header = open(exp.header).read()
    assert f"#define STEP_ERR_CHECK_{code} {code}" in header


def test_static_library(tmp_path):
    cc_or_skip()
    f, _ = mlp_forward()
    exp = f.export(str(tmp_path / "lib"), name="mlp_s", kind="static")
    assert exp.library.endswith("libmlp_s.a")
    x = RNG.standard_normal((8, 2)).astype(np.float32)
    exe = build_driver(exp, tmp_path, static=True)
    status, (out,), _ = run_driver(exe, exp, tmp_path, [x])
    assert status == "status 0 ok" and same_bits(out, f(x=x))


def test_threads_same_bits_at_any_setting(tmp_path):
    """A graph split across two threads uses the library's own pool; the
    results are the same bits with one thread or two."""
    cc_or_skip()
    a = gc.placeholder((256, 256), "float32", name="a")
    w = gc.parameter(RNG.standard_normal((256, 256)).astype(np.float32), name="w")
    f = gc.compile(gc.tanh(a @ w) * 2.0, threads=2)
    exp = f.export(str(tmp_path / "lib"), name="big")
    assert exp.interface.pool and exp.interface.threads == 2
    x = RNG.standard_normal((256, 256)).astype(np.float32)
    exe = build_driver(exp, tmp_path)
    want = f(a=x)
    for t in (1, 2, 8):
        status, (out,), _ = run_driver(exe, exp, tmp_path, [x], reps=2, threads=t)
        assert status == "status 0 ok" and same_bits(out, want), t


def test_two_libraries_in_one_program(tmp_path):
    """Internal symbols are prefixed per export: two graphs link together."""
    cc = cc_or_skip()
    f1, _ = mlp_forward()
    f2 = gc.compile(gc.exp(gc.placeholder((4,), "float64", name="v")))
    e1 = f1.export(str(tmp_path), name="one", kind="static")
    e2 = f2.export(str(tmp_path), name="two", kind="static")
    src = tmp_path / "both.c"
    src.write_text('#include "one.h"\n#include "two.h"\n#include <stdio.h>\n'
                   "int main(void) { float x[16] = {0}, y[24]; double v[4] = {0, 1, 2, 3}, "
                   "w[4];\n const void *i1[] = {x}, *i2[] = {v}; void *o1[] = {y}, *o2[] = {w};\n"
                   " int s = one_run(i1, o1) | two_run(i2, o2);\n"
                   ' printf("%d %.17g %.9g\\n", s, w[3], y[0]); return 0; }\n')
    exe = tmp_path / "both"
    subprocess.run([*cc, "-std=c11", f"-I{tmp_path}", "-o", str(exe), str(src), e1.library,
                    e2.library, "-lpthread", "-lm"], check=True, capture_output=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "0"
    assert float(out[1]) == float(f2(v=np.arange(4.0))[3])
    assert np.float32(out[2]) == f1(x=np.zeros((8, 2), np.float32))[0, 0]


def test_header_describes_the_interface(tmp_path):
    cc_or_skip()
    f = mlp_step()
    exp = f.export(str(tmp_path), name="step", params="input")
    h = open(exp.header).read()
    assert "int32_t step_run(const void *const *inputs, void *const *outputs);" in h
    # x, y, then every parameter: the model's six, Adam's moments and step count
    assert f"#define STEP_NUM_INPUTS {2 + len(f._native.params)}" in h
    assert len(f._native.params) == 6 + 12 + 1
    assert '#define STEP_INPUT0_NAME "x"' in h and "#define STEP_INPUT0_SHAPE {16, 2}" in h
    assert "#define STEP_INPUT1_TYPE int64_t" in h
    assert "#define STEP_OUTPUT0_TYPE float" in h
    assert f"#define STEP_WORKSPACE_SIZE {f._native.arena_size}" in h
    assert "step_set_num_threads" in h and "step_error_message" in h
    assert "updated in place" in open(exp.readme).read()


# -- errors -------------------------------------------------------------------------


def test_no_c_compiler_is_a_clear_error(tmp_path, monkeypatch):
    f, _ = mlp_forward()
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))          # nothing on it
    with pytest.raises(CompilerNotFoundError, match="cc, gcc, clang"):
        f.export(str(tmp_path / "out"), name="m")
    monkeypatch.setenv("CC", "no-such-compiler-xyz -O2")
    with pytest.raises(CompilerNotFoundError, match="no-such-compiler-xyz.*CC"):
        find_cc()
    assert not os.path.exists(tmp_path / "out")


def test_bad_requests(tmp_path):
    f, _ = mlp_forward()
    for name in ("1abc", "a-b", "int", ""):
        with pytest.raises(ExportError, match="C identifier"):
            f.export(str(tmp_path), name=name)
    with pytest.raises(ExportError, match="params"):
        f.export(str(tmp_path), name="m", params="const")
    with pytest.raises(ExportError, match="kind"):
        f.export(str(tmp_path), name="m", kind="dll")
    with pytest.raises(ExportError, match="params='input'"):
        mlp_step().export(str(tmp_path), name="m")
    g = gc.compile(f.source_graph.outputs[0], backend="interp")
    with pytest.raises(ExportError, match="backend='llvm'"):
        g.export(str(tmp_path), name="m")
    with pytest.raises(ExportError, match="output names"):
        f.export(str(tmp_path), name="m", output_names=["a", "b"])
