"""Inspection API: report(), passes, IR and assembly, DOT/networkx, dumps,
and `python -m graphc inspect`."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

import graphc as gc


def small():
    x = gc.placeholder((32, 16), "float32", name="x")
    w = gc.parameter(np.ones((16, 8), np.float32), name="w")
    loss = gc.mean(gc.relu(x @ w + 0.0) ** 2)
    (gw,) = gc.grad(loss, [w])
    return [loss, gw]


def test_report_sections():
    f = gc.compile(small())
    r = f.report()
    for section in ("passes", "kernels (", "memory", "arena", "peak", "one buffer/node",
                    "saved by reuse", "simplify", "fusion"):
        assert section in r, section
    assert f"kernels ({f.num_kernels})" in r
    assert "gemm" in r
    ri = gc.compile(small(), backend="interp").report()
    assert "interpreter" in ri


def test_ir_and_assembly_are_available():
    f = gc.compile(small())
    assert "define i32 @\"graphc_main\"" in f.llvm_ir
    assert "graphc_main" in f.llvm_ir_optimized
    assert "graphc_main" in f.asm and ("ret" in f.asm)
    assert f.num_kernels == len(f.kernels) >= 1


def test_dot_and_networkx():
    f = gc.compile(small())
    dot = f.graph.to_dot()
    assert dot.startswith("digraph") and "->" in dot
    g = f.graph.to_networkx()
    assert g.number_of_nodes() == len(f.graph)
    import networkx as nx
    assert nx.is_directed_acyclic_graph(g)
    fusion = [r for r in f.passes if r.name == "fusion"][0]
    assert "subgraph cluster_0" in fusion.dot()


def test_dump_directory(tmp_path):
    f = gc.compile(small(), dump=str(tmp_path))
    (d,) = list(tmp_path.iterdir())
    names = sorted(os.listdir(d))
    assert names[0] == "00-input.txt"
    for want in ("simplify.txt", "simplify.dot", "fusion.dot", "llvm.ll", "llvm-opt.ll",
                 "asm.s", "report.txt"):
        assert any(n.endswith(want) for n in names), (want, names)
    # numbered in pipeline order
    order = [n.split("-", 1)[1] for n in names]
    assert order.index("fold.txt") < order.index("simplify.txt") < order.index("fusion.txt")
    assert "graphc_main" in (d / [n for n in names if n.endswith("llvm.ll")][0]).read_text()
    assert f.num_kernels >= 1


def test_dump_environment_variable(tmp_path):
    code = ("import graphc as gc; x = gc.placeholder((3,), 'float64', name='x'); "
            "gc.compile(gc.exp(x) * 2.0)")
    env = dict(os.environ, GRAPHC_DUMP=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    (d,) = list(tmp_path.iterdir())
    assert any(n.endswith("asm.s") for n in os.listdir(d))


def test_cli_inspect(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(
        "import numpy as np, graphc as gc\n"
        "x = gc.placeholder((4, 3), 'float64', name='x')\n"
        "f = gc.compile(gc.softmax(x))\n"
        "g = gc.compile(gc.sum(gc.tanh(x)))\n"
        "print('script ran', f(x=np.zeros((4, 3))).sum())\n")
    out = subprocess.run([sys.executable, "-m", "graphc", "inspect", str(script)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("=== graphc: compiled function") == 2
    assert "script ran 4.0" in out.stdout and "kernels (1)" in out.stdout
    assert "2 compiled function(s)" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "graphc", "inspect", str(tmp_path / "nope.py")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no such script" in bad.stderr
