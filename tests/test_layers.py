"""The package's structure, checked: graphc's modules form layers that import
only downward, with no import cycle; and the facts passes and backends need
about an op are in its OpDef, not in name tests scattered through them.

The import walk reads every module's source (``ast``), including imports
inside functions (a lazy upward import is still an upward import) and
relative ones. ``import graphc.ops.x`` counts as an import of
``graphc.ops.x`` only: the parent packages it also executes are not counted.
"""
from __future__ import annotations

import ast
import pathlib
import re

import networkx as nx
import numpy as np
import pytest

import graphc as gc
from graphc.ops import registry
from graphc.ops.registry import OpKind

PKG = pathlib.Path(gc.__file__).resolve().parent
SRC = PKG.parent

# The layers, lowest first: a module may import modules of its own layer or of
# lower ones, never of a higher one. A module belongs to the layer of the
# longest prefix naming it ("graphc" itself is the public API, only the root).
LAYERS = [
    ("base", ["graphc.errors", "graphc.forksafe", "graphc.cachefile", "graphc.version",
              "graphc.datasets"]),
    ("ir", ["graphc.ir"]),
    # the LLVM building blocks op lowerings are written with (the scalar
    # builder, vector math, loop nests, the host CPU's facts): no graph, no
    # op knowledge
    ("codegen", ["graphc.backend.llvm.scalar", "graphc.backend.llvm.vecmath",
                 "graphc.backend.llvm.vecmath_trig",
                 "graphc.backend.llvm.loops", "graphc.backend.llvm.host"]),
    ("ops", ["graphc.ops"]),
    # the kernel plan: what the planning passes produce and the emitter reads
    ("plan", ["graphc.backend.plan"]),
    ("passes", ["graphc.passes", "graphc.autodiff"]),
    ("backend", ["graphc.backend"]),
    ("compiler", ["graphc.runtime", "graphc.cache", "graphc.report", "graphc.compiler",
                  "graphc.profile", "graphc.export", "graphc.dynamic", "graphc.tracing"]),
    ("front ends", ["graphc.nn", "graphc.optim", "graphc.distributed", "graphc.extend",
                    "graphc.plugins",
                    "graphc.cli", "graphc.bench", "graphc.demo", "graphc.demo_cnn",
                    "graphc.__main__", "graphc.onnx"]),
    ("api", []),
]
API = len(LAYERS) - 1


def layer_of(mod: str) -> int | None:
    if mod == "graphc":
        return API
    best, level = -1, None
    for k, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and len(p) > best:
                best, level = len(p), k
    return level


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    p = SRC.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def imports(source: str, mod: str, is_package: bool) -> list[tuple[str, int]]:
    """(imported graphc module, line) for every import statement in
    ``source`` (the module ``mod``), at any depth."""
    package = mod if is_package else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "graphc"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                m = ".".join(base + ([node.module] if node.module else []))
            else:
                m = node.module or ""
            if m.split(".")[0] != "graphc":
                continue
            for a in node.names:     # `from pkg import submodule` imports the submodule
                sub = f"{m}.{a.name}"
                out.append((sub if _is_module(sub) else m, node.lineno))
    return out


def import_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for path in sorted(PKG.rglob("*.py")):
        mod = module_name(path)
        g.add_node(mod, file=str(path.relative_to(SRC)))
        for target, line in imports(path.read_text(), mod, path.name == "__init__.py"):
            if target == mod:
                continue
            if not g.has_edge(mod, target):
                g.add_edge(mod, target, where=[])
            where = g.edges[mod, target]["where"]
            if f"{path.relative_to(SRC)}:{line}" not in where:
                where.append(f"{path.relative_to(SRC)}:{line}")
    return g


def _edge(g, a, b) -> str:
    return f"{a} -> {b} ({', '.join(g.edges[a, b]['where'])})"


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_walk_sees_lazy_relative_and_dotted_imports():
    src = ("import numpy\nfrom . import node\nfrom ..ops import registry, make\n"
           "import graphc.backend.plan\n"
           "def f():\n    from .. import compile\n    if True:\n        import graphc.cache\n")
    got = imports(src, "graphc.ir.graph", False)
    assert got == [("graphc.ir.node", 2), ("graphc.ops.registry", 3), ("graphc.ops", 3),
                   ("graphc.backend.plan", 4), ("graphc", 6), ("graphc.cache", 8)]
    assert imports("from . import dtypes", "graphc.ir", True) == [("graphc.ir.dtypes", 1)]


def test_the_walk_finds_the_package(graph):
    assert {"graphc", "graphc.ir.node", "graphc.ops.registry", "graphc.passes.fusion",
            "graphc.backend.llvm.emit", "graphc.compiler", "graphc.nn.layers"} <= set(graph)
    assert graph.has_edge("graphc.passes.fusion", "graphc.ops.registry")


def test_every_module_has_a_layer(graph):
    missing = sorted(m for m in graph if layer_of(m) is None)
    assert not missing, f"modules in no layer (add them to LAYERS): {missing}"


def test_no_import_cycles(graph):
    problems = []
    for comp in nx.strongly_connected_components(graph):
        if len(comp) > 1:
            cycle = nx.find_cycle(graph.subgraph(comp))
            problems.append(f"{len(comp)} modules import each other: {sorted(comp)}; e.g. "
                            + "; ".join(_edge(graph, a, b) for a, b in cycle))
    assert not problems, "\n".join(problems)


def test_imports_go_only_downward(graph):
    up = []
    for a, b in graph.edges:
        la, lb = layer_of(a), layer_of(b)
        if la is not None and lb is not None and lb > la:
            up.append(f"{_edge(graph, a, b)}: layer {LAYERS[la][0]!r} imports {LAYERS[lb][0]!r}")
    assert not up, "upward imports:\n" + "\n".join(sorted(up))


def test_nothing_inside_imports_the_package_root(graph):
    users = [_edge(graph, a, "graphc") for a in graph.predecessors("graphc")] \
        if "graphc" in graph else []
    assert not users, "the public API is the top: import the module that defines the name\n" \
        + "\n".join(users)


def test_layer_violations_are_reported(graph):
    # the checks above can fail: an upward edge and a cycle added to a copy are found
    g = graph.copy()
    g.add_edge("graphc.ir.node", "graphc.runtime", where=["x.py:1"])
    assert layer_of("graphc.runtime") > layer_of("graphc.ir.node")
    g.add_edge("graphc.ops.registry", "graphc.passes.fusion", where=["y.py:2"])
    assert any(len(c) > 1 for c in nx.strongly_connected_components(g))


# -------------------------------------------------------------- op facts

FACTS = ("kind", "cost", "foldable", "view")


def test_every_op_has_every_fact():
    for name, d in registry.OPS.items():
        for fact in FACTS:
            assert getattr(d, fact) is not None, f"op {name!r} has no {fact}"
        assert isinstance(d.kind, OpKind), (name, d.kind)
        assert isinstance(d.cost, int) and d.cost >= 0, (name, d.cost)
        assert isinstance(d.foldable, bool) and isinstance(d.view, bool), name
        assert d.lowering() is not None, f"op {name!r} ({d.kind}) has no lowering for its kind"


def test_kind_accepts_the_strings():
    d = registry.OpDef("t_layers_k", "elementwise", None, None, None)
    assert d.kind is OpKind.ELEMENTWISE and d.kind == "elementwise"
    assert str(d.kind) == "elementwise" and f"{d.kind}" == "elementwise"
    assert d.cost == registry.CHEAP and d.foldable and not d.view
    assert registry.OpDef("t_layers_i", "index", None, None, None).cost == 0
    with pytest.raises(ValueError, match="unknown kind 'loop'"):
        registry.OpDef("t_layers_bad", "loop", None, None, None)
    with pytest.raises(ValueError, match="cost must be an int"):
        registry.OpDef("t_layers_bad", "kernel", None, None, None, cost=-1)


def test_every_kind_has_a_fusion_role_and_a_kernel():
    from graphc.backend import plan
    from graphc.passes import fusion
    assert set(fusion._ROLE) == set(OpKind) == set(plan._KERNEL_KIND)
    x = gc.placeholder((2, 3), "float64", name="x")
    for node, role, kernel in ((gc.exp(x), "ew", "loop"), (gc.transpose(x), "ew", "loop"),
                               (gc.sum(x, axis=1), "reduce", "loop"),
                               (x @ gc.transpose(x), "matmul", "matmul")):
        assert fusion._kind(node) == role and plan.kernel_kind(node) == kernel, node.op


def test_costly_ops_are_the_transcendentals_and_division():
    costly = {n for n, d in registry.OPS.items() if d.cost >= registry.COSTLY}
    assert costly == {"exp", "log", "sqrt", "tanh", "sigmoid", "pow", "div", "sin", "cos",
                      "atan"}


# Inputs for each view op, on distinct values: a view's elements must be
# elements of its input(s) (a new view op needs a case here).
VIEW_CASES = {
    "reshape": lambda x: gc.reshape(x, (4, 6)),
    "transpose": lambda x: gc.transpose(x, (2, 0, 1)),
    "broadcast_to": lambda x: gc.broadcast_to(x, (3, 2, 3, 4)),
    "slice": lambda x: x[1:, ::-2, 1:3],
    "concatenate": lambda x: gc.concatenate([x, x[:, :1]], axis=1),
    "windows": lambda x: gc.windows(x, (2, 2), stride=(1, 2)),
}


def test_views_only_move_elements():
    views = {n for n, d in registry.OPS.items() if d.view}
    assert views == set(VIEW_CASES), "every view op needs a case in VIEW_CASES"
    x = gc.placeholder((2, 3, 4), "float64", name="x")
    v = np.arange(1.0, 25.0).reshape(2, 3, 4)
    for name, build in VIEW_CASES.items():
        y = build(x)
        assert y.op == name
        out = gc.compile(y, inputs=[x], backend="interp")(v)
        assert out.size and np.isin(out, v).all(), name


def test_ops_that_are_not_views_make_new_values():
    # the facts are not all True: one_hot and unslice compute elements
    # (booleans, zeros) that are not elements of their input
    assert not registry.get("one_hot").view and not registry.get("unslice").view
    x = gc.placeholder((3,), "int64", name="x")
    out = gc.compile(gc.one_hot(x, 4), inputs=[x], backend="interp")(np.array([1, 2, 3]))
    assert not np.isin(out, [1, 2, 3]).all()


def test_fold_asks_foldable():
    # broadcast_to and one_hot of constants stay as they are (folding would
    # materialize an expansion); exp of a constant is folded
    c = gc.constant(np.arange(3.0))
    lab = gc.constant(np.array([0, 2]))
    f = gc.compile([gc.broadcast_to(c, (4, 3)) * 2.0, gc.exp(c), gc.one_hot(lab, 3)])
    fold = next(r for r in f.passes if r.name == "fold")
    assert {old.op for old, _, _ in fold.rewrites} == {"exp"}
    out = f()
    np.testing.assert_allclose(out[0], np.broadcast_to(np.arange(3.0), (4, 3)) * 2)
    np.testing.assert_allclose(out[1], np.exp(np.arange(3.0)))
    np.testing.assert_array_equal(out[2], np.eye(3, dtype=bool)[[0, 2]])


@pytest.mark.parametrize("foldable", [True, False])
def test_register_op_foldable(foldable):
    calls = []

    def ref(x):
        calls.append(1)
        return x + 1.0
    op = gc.register_op("t_layers_fold", reference=ref, callback=True, foldable=foldable,
                        replace=True)
    try:
        f = gc.compile(op(gc.constant(np.arange(4.0))), cache=False)
        assert len(calls) == (1 if foldable else 0)      # evaluated at compile time or not
        np.testing.assert_array_equal(f(), np.arange(4.0) + 1)
        assert registry.get("t_layers_fold").foldable is foldable
    finally:
        gc.unregister_op("t_layers_fold")


def test_register_op_rejects_bad_facts():
    with pytest.raises(ValueError, match="cost must be an int >= 0"):
        gc.register_op("t_layers_bad", reference=np.negative, callback=True, cost=-2)
    with pytest.raises(TypeError, match="foldable must be True or False"):
        gc.register_op("t_layers_bad", reference=np.negative, callback=True, foldable="no")
    assert "t_layers_bad" not in registry.OPS


def test_register_op_cost_reaches_fusion():
    # a value two kernels need (a reduction over rows, a transposed read) is
    # recomputed in both when cheap, stored once when costly, as exp's is
    x = gc.placeholder((8, 16), "float64", name="x")
    v = np.random.default_rng(0).standard_normal((8, 16))

    def stored(make, ref):
        h = make(x)
        f = gc.compile([gc.sum(h, axis=1), gc.transpose(h) + 1.0], inputs=[x])
        r = f(v)
        np.testing.assert_allclose(r[0], ref(v).sum(axis=1))
        np.testing.assert_allclose(r[1], ref(v).T + 1.0)
        return any(o is h for k in f.kernels for o in k.outputs)
    assert stored(gc.exp, np.exp) and not stored(lambda t: -t, np.negative)
    for cost in (None, registry.COSTLY):
        op = gc.register_op("t_layers_cost", reference=np.exp, scalar=lambda s, t: s.exp(t),
                            cost=cost, replace=True)
        try:
            assert registry.get("t_layers_cost").cost == (cost or registry.CHEAP)
            assert stored(op, np.exp) is (cost is not None)
        finally:
            gc.unregister_op("t_layers_cost")


# -------------------------------------------------------------- no op-name tests

# Files that may still test op names in passes and backends (none left: the
# movement-op chains of plan.py, matmul.py and fusion.py became index rules,
# ops/index.py). A file may be listed only while it needs it.
NAME_TEST_EXCEPTIONS: dict = {}
# A rewrite rule's pattern names the ops it rewrites (``x.op == "neg"`` in
# neg(neg(x)) -> x): not a fact about an op. In these files the functions named
# in the given rule table may test op names; the rest of the file may not.
RULE_TABLES = {"graphc/passes/simplify.py": "RULES"}
# leaves are not ops (no OpDef): testing for them is testing the node's kind
LEAVES = ("placeholder", "parameter", "constant")
_NAME_TEST = re.compile(r"""\.op\s*(?:==|!=)\s*["']([\w.]+)["']"""
                        r"""|\.op\s+(?:not\s+)?in\s*[({\[]\s*["']""")


def name_tests(text: str) -> list[tuple[int, str]]:
    hits = []
    for k, line in enumerate(text.splitlines(), 1):
        for m in _NAME_TEST.finditer(line):
            if m.group(1) in LEAVES:
                continue
            if m.group(1) is None:      # a tuple/set of names: allowed only if all are leaves
                names = re.findall(r"""["']([\w.]+)["']""", line[m.start():])
                if names and all(n in LEAVES for n in names):
                    continue
            hits.append((k, line.strip()))
    return hits


def test_name_test_finder():
    src = ('if n.op == "transpose":\nif n.op in ("a", "b"):\nif n.op == "constant":\n'
           'if n.op in ("parameter", "constant"):\nif d.view:\nif x.op != \'neg\':\n')
    assert [k for k, _ in name_tests(src)] == [1, 2, 6]


def rule_lines(text: str, table: str) -> set:
    """Lines of the functions named in the module-level list ``table``."""
    tree = ast.parse(text)
    named = set()
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and any(
                isinstance(t, ast.Name) and t.id == table
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
            named |= {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
    assert named, f"no rule table {table}"
    return {k for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in named
            for k in range(node.lineno, node.end_lineno + 1)}


def test_no_op_name_tests_in_passes_and_backends():
    found = []
    for sub in ("passes", "backend"):
        for path in sorted((PKG / sub).rglob("*.py")):
            rel = str(path.relative_to(SRC))
            if rel in NAME_TEST_EXCEPTIONS:
                continue
            text = path.read_text()
            allowed = rule_lines(text, RULE_TABLES[rel]) if rel in RULE_TABLES else set()
            found += [f"{rel}:{k}: {line}" for k, line in name_tests(text) if k not in allowed]
    for rel in ("graphc/autodiff.py", "graphc/report.py"):
        found += [f"{rel}:{k}: {line}" for k, line in name_tests((SRC / rel).read_text())]
    assert not found, "op names tested where an OpDef fact belongs:\n" + "\n".join(found)


def test_exceptions_are_still_needed():
    for rel in [*NAME_TEST_EXCEPTIONS, *RULE_TABLES]:
        assert (SRC / rel).is_file(), f"{rel} is gone: drop it from the exceptions"
    for rel in NAME_TEST_EXCEPTIONS:
        assert name_tests((SRC / rel).read_text()), \
            f"{rel} tests no op names any more: drop it from NAME_TEST_EXCEPTIONS"
