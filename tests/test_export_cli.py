"""``python -m graphc export`` and docs/export.md's example, linked and run
(tests/test_export.py has the library itself)."""
from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest

from graphc.export import Exported
from tests.export_c import (
    build_driver,
    cc_or_skip,
    mlp_forward,
    run_driver,
    same_bits,
)

RNG = np.random.default_rng(0)


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
