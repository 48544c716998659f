"""Extending graphc, way 5: new passes (by name, before/after, recorded and
reported like the built-ins) and plugins found through the entry-point
group ``graphc.plugins`` (a real package on a path, in a fresh interpreter)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
from importlib import metadata

import numpy as np
import pytest

import graphc as gc
from graphc.passes import DEFAULT_ORDER, PASSES, Pass, register_pass

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def clean_registry():
    """Undo pass and op registrations made by a test."""
    order, passes = list(DEFAULT_ORDER), dict(PASSES)
    ops = set(gc.extend.USER_OPS)
    yield
    DEFAULT_ORDER[:] = order
    PASSES.clear()
    PASSES.update(passes)
    for name in set(gc.extend.USER_OPS) - ops:
        gc.unregister_op(name)


def _is_const(n, v) -> bool:
    return n.op == "constant" and n.size == 1 and float(n.value.reshape(-1)[0]) == v


def square_rewrite(n, ctx):
    """pow(x, 2) -> x * x (a multiply instead of a call to pow)."""
    if n.op == "pow" and _is_const(n.inputs[1], 2.0) and n.inputs[0].shape == n.shape:
        x = n.inputs[0]
        return x * x
    return None


class CountOps(Pass):
    name = "count-ops"
    purpose = "count op nodes by op (changes nothing)"

    def run(self, graph, ctx):
        counts = {}
        for n in graph.op_nodes():
            counts[n.op] = counts.get(n.op, 0) + 1
        ctx.notes.append(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
        return graph


def test_rewrite_pass_by_name_and_object(clean_registry):
    square = gc.RewritePass("square", "pow(x, 2) -> x * x", rewrite=square_rewrite)
    register_pass(square, default=False)               # known by name, not in the default list
    x = gc.placeholder((16,), "float64", name="x")
    sq1, sq2 = gc.exp(x) ** 2.0, x ** 2.0
    y = gc.sum(sq1 + sq2)
    (g,) = gc.grad(y, [x])
    xv = np.linspace(-1, 1, 16)
    want = gc.compile([y, g], backend="interp")(x=xv)
    for spec in (["fold", "square", "simplify", "cse", "dce"], [square, CountOps()]):
        f = gc.compile([y, g], passes=spec)
        names = [r.name for r in f.passes]
        assert "square" in names and names[-2:] == ["fusion", "memory"]
        rec = f.passes[names.index("square")]
        assert rec.purpose == "pow(x, 2) -> x * x"
        assert len(rec.rewrites) >= 2 and all(rule == "square" for *_, rule in rec.rewrites)
        assert f.current(sq1).op == f.current(sq2).op == "mul"
        assert "rewrote" in rec.diff() and "(pow) ->" in rec.diff() and "[square]" in rec.diff()
        assert "square" in f.report()
        for got, w in zip(f(x=xv), want):
            np.testing.assert_allclose(got, w, rtol=1e-12)
    assert "square" not in DEFAULT_ORDER
    assert "square" not in [r.name for r in gc.compile(y).passes]


def test_registered_pass_joins_the_default_pipeline_before_and_after(clean_registry):
    register_pass(gc.RewritePass("square", "pow(x, 2) -> x * x", rewrite=square_rewrite),
                  before="simplify")
    register_pass(CountOps(), after="dce")
    x = gc.placeholder((8,), "float32", name="x")
    f = gc.compile(gc.tanh(x) ** 2.0 + 1.0)
    names = [r.name for r in f.passes]
    assert names == ["fold", "square", "simplify", "cse", "dce", "count-ops", "fusion", "memory"]
    counts = f.passes[names.index("count-ops")]
    assert counts.notes == ["add: 1, mul: 1, tanh: 1"]            # after square and simplify
    assert counts.nodes_before == counts.nodes_after
    assert "count-ops" in f.report()
    np.testing.assert_allclose(f(x=np.full(8, 0.5, np.float32)), np.tanh(0.5) ** 2 + 1, rtol=1e-6)
    # opt_level=0 runs no graph pass, ours included (min_level 1)
    assert [r.name for r in gc.compile(x * 2.0, opt_level=0).passes] == ["fusion", "memory"]


def test_rewrite_pass_subclass_and_verification(clean_registry):
    class ExpToExp2(gc.RewritePass):
        name = "bad-rewrite"
        purpose = "changes a type: must be caught"

        def rewrite(self, n, ctx):
            return gc.sum(n) if n.op == "exp" else None

    x = gc.placeholder((4,), "float64", name="x")
    with pytest.raises(RuntimeError, match="rewrite 'bad-rewrite' changed exp's type"):
        gc.compile(gc.exp(x), passes=[ExpToExp2()])
    with pytest.raises(ValueError, match="give the pass a name"):
        gc.RewritePass()
    with pytest.raises(ValueError, match="unknown pass 'nope'"):
        gc.compile(x, passes=["nope"])


# -- plugins ---------------------------------------------------------------------------------

GOOD_PLUGIN = '''
import numpy as np
import graphc as gc

cube = gc.register_op(
    "demo.cube", reference=lambda x: x ** 3, vjp=lambda n, g: [3.0 * g * n.inputs[0] ** 2],
    scalar=lambda s, x: x * x * x)


class Tally(gc.Pass):
    name = "demo-tally"
    purpose = "note how many nodes the graph has"

    def run(self, graph, ctx):
        ctx.notes.append(f"{len(graph)} nodes")
        return graph


gc.register_pass(Tally(), after="dce")
'''

CALLABLE_PLUGIN = '''
def setup():
    import graphc as gc
    gc.register_op("demo.twice", reference=lambda x: 2 * x, vjp=lambda n, g: [2 * g],
                   scalar=lambda s, x: x + x)
'''

BROKEN_PLUGIN = '''
import graphc as gc
gc.register_op("broken.half", reference=lambda x: x / 2, scalar=lambda s, x: x * 0.5)
raise RuntimeError("the broken plugin fails after registering an op")
'''


def _dist(site: pathlib.Path, dist: str, module: str, source: str, entries: dict):
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[graphc.plugins]\n{lines}\n")


PROBE = '''
import json, warnings
import numpy as np
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    import graphc as gc
x = gc.placeholder((3,), "float64", name="x")
out = {"plugins": [[p.name, p.ok, p.error, p.ops, p.passes] for p in gc.plugins.loaded()],
       "warnings": [str(m.message) for m in w],
       "ops": sorted(n for n in gc.OPS if "." in n), "order": gc.passes.DEFAULT_ORDER}
if "demo.cube" in gc.OPS:
    cube = gc.extend.op_function("demo.cube")
    (g,) = gc.grad(gc.sum(cube(x)), [x])
    f = gc.compile([cube(x), g])
    v, gv = f(x=np.array([1.0, 2.0, -3.0]))
    out["value"], out["grad"] = v.tolist(), gv.tolist()
    out["passes"] = [[r.name, r.notes] for r in f.passes]
    out["check"] = gc.check_op("demo.cube").ok
print(json.dumps(out))
'''


def _probe(paths, env_extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in paths] + [str(ROOT)])
    env.pop("GRAPHC_PLUGINS", None)
    env.update(env_extra or {})
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=str(ROOT), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_plugins_are_discovered_at_import_and_broken_ones_reported(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _dist(site, "graphc_demo_plugin", "graphc_demo_plugin", GOOD_PLUGIN,
          {"demo": "graphc_demo_plugin"})
    _dist(site, "graphc_callable_plugin", "graphc_callable_plugin", CALLABLE_PLUGIN,
          {"twice": "graphc_callable_plugin:setup"})
    _dist(site, "graphc_broken_plugin", "graphc_broken_plugin", BROKEN_PLUGIN,
          {"broken": "graphc_broken_plugin"})
    out = _probe([site])
    by_name = {p[0]: p for p in out["plugins"]}
    assert by_name["demo"][1:] == [True, None, ["demo.cube"], ["demo-tally"]]
    assert by_name["twice"][1:] == [True, None, ["demo.twice"], []]
    assert by_name["broken"][1] is False
    assert by_name["broken"][2] == "RuntimeError: the broken plugin fails after registering an op"
    assert out["ops"] == ["demo.cube", "demo.twice"]        # broken.half was rolled back
    (warning,) = out["warnings"]
    assert warning.startswith("graphc: plugin 'broken' (graphc_broken_plugin, from "
                              "graphc_broken_plugin) failed to load and was skipped: RuntimeError")
    # graphc works, with the good plugin's op and pass
    assert out["value"] == [1.0, 8.0, -27.0] and out["grad"] == [3.0, 12.0, 27.0]
    assert out["check"] is True
    names = [p[0] for p in out["passes"]]
    assert names.index("demo-tally") == names.index("dce") + 1
    assert out["order"].index("demo-tally") == out["order"].index("dce") + 1

    off = _probe([site], {"GRAPHC_PLUGINS": "0"})
    assert off["plugins"] == [] and off["ops"] == [] and "demo-tally" not in off["order"]


def test_plugin_package_installed_by_pip(tmp_path):
    """A real package with its entry point in pyproject.toml, installed by pip
    into a target directory (not the shared environment)."""
    pytest.importorskip("setuptools")
    pkg = tmp_path / "pkg"
    (pkg / "graphc_demo_plugin").mkdir(parents=True)
    (pkg / "graphc_demo_plugin" / "__init__.py").write_text(GOOD_PLUGIN)
    (pkg / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "graphc-demo-plugin"
        version = "0.1"

        [project.entry-points."graphc.plugins"]
        demo = "graphc_demo_plugin"
        '''))
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--no-index", "--target", str(site), str(pkg)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.skip(f"pip could not build the package here: {r.stderr[-300:]}")
    out = _probe([site])
    assert [p[:4] for p in out["plugins"]] == [["demo", True, None, ["demo.cube"]]]
    assert out["value"] == [1.0, 8.0, -27.0] and out["grad"] == [3.0, 12.0, 27.0]


def test_plugins_load_in_process_once_with_rollback(tmp_path, monkeypatch, clean_registry):
    (tmp_path / "graphc_inproc_plugin.py").write_text(CALLABLE_PLUGIN)
    (tmp_path / "graphc_inproc_broken.py").write_text(BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [metadata.EntryPoint("twice", "graphc_inproc_plugin:setup", "graphc.plugins"),
           metadata.EntryPoint("broken", "graphc_inproc_broken", "graphc.plugins"),
           metadata.EntryPoint("missing", "graphc_no_such_module", "graphc.plugins")]
    try:
        with pytest.warns(gc.plugins.PluginWarning) as rec:
            new = gc.plugins.load(eps)
        assert [(p.name, p.ok) for p in new] == [("twice", True), ("broken", False),
                                                  ("missing", False)]
        assert "ModuleNotFoundError" in new[2].error
        assert len(rec) == 2 and "'missing'" in str(rec[1].message)
        assert "demo.twice" in gc.OPS and "broken.half" not in gc.OPS
        assert gc.plugins.load(eps) == []                   # each entry point loads once
        assert "twice = graphc_inproc_plugin:setup" in str(new[0])
        x = gc.placeholder((2,), "float64", name="x")
        twice = gc.extend.op_function("demo.twice")
        np.testing.assert_array_equal(gc.compile(twice(x))(x=np.array([1.0, 2.0])), [2.0, 4.0])
    finally:
        for p in list(gc.plugins._loaded):
            if p[0] in ("twice", "broken", "missing"):
                del gc.plugins._loaded[p]
        for m in ("graphc_inproc_plugin", "graphc_inproc_broken"):
            sys.modules.pop(m, None)
