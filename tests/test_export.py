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
from graphc.demo import build_model
from graphc.errors import RuntimeCheckError
from graphc.export import CompilerNotFoundError, Exported, ExportError, find_cc
from tests.export_c import build_driver, cc_or_skip, run_driver, same_bits

RNG = np.random.default_rng(0)


def mlp_forward(batch=8):
    model = build_model()                  # the demo MLP, 2-64-64-3
    x = gc.placeholder((batch, 2), "float32", name="x")
    return gc.compile(model.eval()(x)), model


def mlp_step(batch=16):
    model = build_model()
    x = gc.placeholder((batch, 2), "float32", name="x")
    y = gc.placeholder((batch,), "int64", name="y")
    loss = nn.cross_entropy(model(x), y)
    return gc.compile(loss, inputs=[x, y], updates=optim.Adam(lr=0.01).updates(
        loss, model.parameters()))


def param_values(f):
    return [np.array(p.value) for p in f._native.params]


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


# -- the command line ----------------------------------------------------------------


def test_cli_exports_an_onnx_model(tmp_path, capsys):
    """``python -m graphc export`` on a graph saved with graphc.onnx.save:
    the library computes what the loaded model's compiled function does."""
    pytest.importorskip("onnx")
    cc_or_skip()
    import graphc.onnx
    from graphc.cli import main
    f, model = mlp_forward(batch=4)
    path = str(tmp_path / "mlp.onnx")
    graphc.onnx.save(f.source_graph.outputs, path, inputs=list(f.source_graph.placeholders),
                 output_names=["logits"])
    assert main(["export", path, "-o", str(tmp_path / "lib"), "--name", "mlp"]) == 0
    out = capsys.readouterr().out
    assert "libmlp.so" in out and "'logits'" in out
    loaded = graphc.onnx.load(path).compile()
    # the driver is built from what the header says (names, dtypes, shapes)
    exp = Exported(str(tmp_path / "lib" / "libmlp.so"), "", "",
                   _parse_interface(str(tmp_path / "lib" / "mlp.h")))
    x = RNG.standard_normal((4, 2)).astype(np.float32)
    exe = build_driver(exp, tmp_path)
    status, (got,), _ = run_driver(exe, exp, tmp_path, [x])
    assert status == "status 0 ok" and same_bits(got, loaded(x)[0])


def _parse_interface(header: str):
    """An Interface (names, dtypes, shapes) read back from a header's macros."""
    from graphc.export.csource import Arg, Interface
    text = open(header).read()
    name = re.search(r"int32_t (\w+)_run\(", text).group(1)
    U = name.upper()

    def args(what, kind):
        n = int(re.search(rf"#define {U}_NUM_{what}S (\d+)", text).group(1))
        out = []
        for k in range(n):
            get = lambda f: re.search(rf"#define {U}_{what}{k}_{f} (.*)", text).group(1)  # noqa: E731
            shape = tuple(int(d) for d in get("SHAPE").strip("{}").split(",") if d.strip())
            nd = int(get("NDIM"))
            out.append(Arg(get("NAME").strip('"'), get("DTYPE").strip('"'), shape[:nd], kind))
        return out
    return Interface(name, args("INPUT", "placeholder"), args("OUTPUT", "output"), [], 0, 1,
                     [], "", False, "")


def test_cli_symbolic_batch_and_errors(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from graphc.cli import main
    cc_or_skip()
    w = RNG.standard_normal((3, 5)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(w, "w")])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["export", path, "-o", str(tmp_path / "a"), "--name", "m",
                 "--input-shape", "x=2,3", "--params", "input"]) == 0
    h = open(tmp_path / "a" / "m.h").read()
    assert "#define M_INPUT0_SHAPE {2, 3}" in h and '#define M_INPUT1_NAME "w"' in h
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "b")])
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", path, "-o", str(tmp_path / "b"), "--input-shape", "x:2"])
    assert main(["export", path, "-o", str(tmp_path / "b"), "--input-shape", "x=2,3",
                 "--name", "bad-name"]) == 1
    assert "C identifier" in capsys.readouterr().err


def test_cli_exports_a_script_function(tmp_path):
    """``python -m graphc export script.py:fn``, fn returning a compiled function."""
    cc_or_skip()
    import sys
    script = tmp_path / "model.py"
    script.write_text("import graphc as gc\n"
                      "def build():\n"
                      "    x = gc.placeholder((3,), 'float64', name='x')\n"
                      "    return gc.compile(gc.sin(x) * 2.0)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, "-m", "graphc", "export", f"{script}:build", "-o",
                        str(tmp_path / "out"), "--name", "sine", "--static"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "libsine.a").is_file() and (tmp_path / "out" / "sine.h").is_file()
    r = subprocess.run([sys.executable, "-m", "graphc", "export", f"{script}:nope", "-o",
                        str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "defines no function 'nope'" in r.stderr


# -- docs/export.md ------------------------------------------------------------------


def test_docs_example_runs_and_prints_the_python_bits(tmp_path, monkeypatch):
    """docs/export.md's complete example: its Python block exports, its C
    program is built by its shell line and prints f(x=xs) exactly."""
    import shlex
    cc = cc_or_skip()
    doc = (os.path.dirname(__file__) + "/../docs/export.md")
    text = open(doc).read()
    py = re.search(r"## A complete example.*?```python\n(.*?)```", text, re.S).group(1)
    c = re.search(r"```c\n(#include <stdio.h>.*?)```", text, re.S).group(1)
    sh = re.search(r"Build and run it:\s*```sh\n(.*?)\n```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": "__doc_example__"}
    exec(compile(py, "<docs/export.md>", "exec"), scope)
    (tmp_path / "main.c").write_text(c)
    build, run = sh.split("&&")
    cmd = shlex.split(build)
    assert cmd[0] == "cc"
    subprocess.run([*cc, *cmd[1:]], check=True, capture_output=True, text=True)
    out = subprocess.run(shlex.split(run), check=True, capture_output=True, text=True).stdout
    got = np.array([[np.float32(v) for v in ln.split()] for ln in out.splitlines()], np.float32)
    assert same_bits(got, scope["f"](x=scope["xs"]))


# -- more interfaces -----------------------------------------------------------------


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


def threaded_matmul():
    a = gc.placeholder((256, 256), "float32", name="a")
    w = gc.parameter(np.random.default_rng(5).standard_normal((256, 256)).astype(np.float32),
                     name="w")
    return gc.compile(gc.tanh(a @ w) * 2.0, inputs=[a], threads=2)


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
