"""Hostile testing (issue 10): cache files that are not what they claim
(FIFOs, symlinks to devices, directories, foreign runtime objects, damaged
headers), plugins that exit or fail half-way, and explicit pass lists that
cannot work. Every result is checked against numpy or the interpreter."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import cache, cachefile
from graphc.passes import DEFAULT_ORDER, PASSES, Pass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    d.mkdir()
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(d))
    cache.clear_memory()
    yield d
    cache.clear_memory()


def run(code: str, cache_dir, timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter on this checkout (each process
    loads the runtime library anew); a hang fails the test, never the run."""
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir), PYTHONPATH=ROOT)
    try:
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the process hung (killed after {timeout}s)")
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


# -- 11: cache files that are not regular files ---------------------------------------------

SCRIPT = """
import numpy as np, graphc as gc
x = gc.placeholder((4, 8), "float64", name="x")
w = gc.parameter(np.full((8, 3), 0.25), name="w")
f = gc.compile(gc.sum(gc.tanh(x @ w) * 2.0))
X = np.arange(32.0).reshape(4, 8) / 32
assert abs(float(f(x=X)) - float(np.sum(np.tanh(X @ w.value) * 2.0))) < 1e-12
print("HIT", f.cache_hit, "|", f.cache_miss_reason)
"""


def _replace(path, kind: str) -> None:
    os.unlink(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink-dev-zero":
        os.symlink("/dev/zero", path)
    elif kind == "symlink-fifo":
        fifo = os.path.join(os.path.dirname(path), "elsewhere.fifo")
        os.mkfifo(fifo)
        os.symlink(fifo, path)
    elif kind == "directory":
        os.mkdir(path)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["fifo", "symlink-dev-zero", "symlink-fifo", "directory"])
def test_entry_that_is_not_a_regular_file_is_discarded_not_read(cache_dir, kind):
    assert run(SCRIPT, cache_dir).startswith("HIT False")
    (path,) = cache.entries()
    _replace(path, kind)
    out = run(SCRIPT, cache_dir, timeout=30)          # before the fix: blocked forever
    assert out.startswith("HIT False | unreadable entry") and "not a regular file" in out
    (path2,) = cache.entries()                         # rebuilt as a regular, sound entry
    assert path2 == path and os.path.isfile(path2) and not os.path.islink(path2)
    cache.read_entry(path2)
    assert run(SCRIPT, cache_dir).startswith("HIT disk")


def test_other_entries_that_are_not_regular_files_do_not_block_miss_explanations(cache_dir):
    for name, kind in (("a", "fifo"), ("b", "symlink-dev-zero"), ("c", "directory")):
        p = cache_dir / f"{name * 64}.gcc"
        p.write_bytes(b"")
        _replace(str(p), kind)
    out = run(SCRIPT, cache_dir, timeout=30)
    assert out == "HIT False | no readable entry to compare with (3 unreadable entries skipped)"
    info = cache.info()
    assert info["entries"] == 4


def test_open_regular_refuses_without_blocking(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    os.symlink("/dev/zero", tmp_path / "z")
    for p, why in ((fifo, "a FIFO"), (tmp_path / "z", "a symbolic link"),
                   (tmp_path, "a directory")):
        with pytest.raises(cachefile.BadEntry, match=why):
            cachefile.read(str(p), cache.MAGIC)
    with pytest.raises(FileNotFoundError):
        cachefile.read(str(tmp_path / "missing"), cache.MAGIC)


# -- 12: runtime-library objects are checked like graph entries -----------------------------

GEMM_SCRIPT = """
import numpy as np, graphc as gc
from graphc.backend.llvm import rtlib
x = gc.placeholder((64, 64), "float32", name="x")
w = gc.parameter(np.linspace(-1, 1, 64 * 32, dtype=np.float32).reshape(64, 32), name="w")
f = gc.compile(x @ w, cache=False)
X = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
np.testing.assert_allclose(f(x=X), X.astype(np.float64) @ w.value, rtol=1e-4, atol=1e-4)
assert "gemm_f32" in f._runtime
print(sorted(rtlib._loaded), rtlib._key("gemm_f32"), rtlib._key("pycall"))
"""
LOADED = "['gemm_f32', 'pycall']"


@pytest.mark.parametrize("damage", ["foreign-old-layout", "foreign", "lying-header", "directory",
                                    "fifo", "symlink-dev-zero", "garbage", "truncated"])
def test_bad_runtime_object_is_rebuilt_and_rewritten(cache_dir, damage):
    from graphc.backend.llvm import rtlib
    # the keys as that process computes them (they hash graphc's source as it is on disk)
    loaded, gemm_key, other_key = run(GEMM_SCRIPT, cache_dir).rsplit(" ", 2)
    assert loaded == LOADED
    gemm = os.path.join(str(cache_dir), f"rt-{gemm_key}.o")
    other = os.path.join(str(cache_dir), f"rt-{other_key}.o")
    assert os.path.isfile(gemm) and os.path.isfile(other)
    _, (other_obj,) = cachefile.read(other, rtlib.RT_MAGIC)
    if damage == "foreign-old-layout":     # what the old checks (content hash only) accepted
        data = hashlib.sha256(other_obj).digest() + other_obj
    elif damage == "foreign":              # pycall's sound file under gemm's name
        data = open(other, "rb").read()
    elif damage == "garbage":
        data = os.urandom(2000)
    elif damage == "truncated":
        data = open(gemm, "rb").read()[:100]
    if damage == "lying-header":           # a header naming gemm, over pycall's code
        header = {"format": rtlib.RT_FORMAT, "kind": "rtlib", "component": "gemm_f32",
                  "key": gemm_key, "symbols": rtlib.COMPONENTS["gemm_f32"][1]}
        os.unlink(gemm)
        assert cachefile.write(str(cache_dir), gemm, rtlib.RT_MAGIC, header, [other_obj])
    elif damage in ("directory", "fifo", "symlink-dev-zero"):
        _replace(gemm, damage)
    else:
        with open(gemm, "wb") as fh:
            fh.write(data)
    # before the fix: "object code has no function 'graphc_gemm_f32'" in every process
    # (or IsADirectoryError, or a hang)
    assert run(GEMM_SCRIPT, cache_dir, timeout=60).startswith(LOADED)
    header, (obj,) = cachefile.read(gemm, rtlib.RT_MAGIC)          # rewritten, sound
    assert header["component"] == "gemm_f32" and obj != other_obj
    st = os.stat(gemm)
    assert run(GEMM_SCRIPT, cache_dir).startswith(LOADED)
    assert os.stat(gemm).st_mtime_ns == st.st_mtime_ns              # loaded, not rebuilt again


# -- 13: a damaged header is "unreadable entry", never an exception --------------------------

def _graph(scale):
    x = gc.placeholder((3, 5), "float64", name="x")
    w = gc.parameter(np.linspace(-1.0, 1.0, 5), name="w")
    return gc.exp(x * w) * scale, w


def _damages(data: bytes):
    """Every byte of the first 64 flipped; the header-length field also set
    to 0x00, 0x7F and 0xFF byte by byte and as a whole; truncations."""
    for i in range(64):
        yield f"flip {i}", data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
    for i in range(8, 16):
        for v in (0x00, 0x7F, 0xFF):
            if data[i] != v and data[i] ^ 0xFF != v:
                yield f"byte {i}={v:#x}", data[:i] + bytes([v]) + data[i + 1:]
    for fill in (b"\xff" * 8, b"\x7f" * 8, (1 << 62).to_bytes(8, "little"),
                 (len(data)).to_bytes(8, "little")):
        yield f"length {fill.hex()}", data[:8] + fill + data[16:]
    for n in (0, 1, 7, 8, 12, 16, 40, 48, 56, 64, len(data) // 2, len(data) - 1):
        yield f"truncate {n}", data[:n]


def test_damaged_entry_headers_are_unreadable_entries_never_exceptions(cache_dir):
    X = np.linspace(-1.0, 1.0, 15).reshape(3, 5)
    (a, w), (b, _) = _graph(2.0), _graph(3.0)
    want_a, want_b = np.exp(X * w.value) * 2.0, np.exp(X * w.value) * 3.0
    gc.compile(a, opt_level=0)
    (path_a,) = cache.entries()
    data = open(path_a, "rb").read()
    for what, bad in _damages(data):
        with open(path_a, "wb") as fh:
            fh.write(bad)
        cache.clear_memory()
        # another graph's miss reads the damaged entry to explain itself
        fb = gc.compile(b, opt_level=0)
        assert fb.cache_hit is False, what
        reason = fb.cache_miss_reason
        assert reason == "no readable entry to compare with (1 unreadable entry skipped)", \
            (what, reason)
        assert "kernel" in fb.report()
        np.testing.assert_allclose(fb(x=X), want_b, rtol=1e-12)
        for f in cache.entries():
            if f != path_a:
                os.unlink(f)
        cache.clear_memory()
        # the damaged graph itself: a miss that says why, a correct result, a sound new entry
        fa = gc.compile(a, opt_level=0)
        assert fa.cache_hit is False, what
        assert fa.cache_miss_reason.startswith("unreadable entry: the cached entry of this "
                                               "graph was discarded ("), what
        assert "kernel" in fa.report()
        np.testing.assert_allclose(fa(x=X), want_a, rtol=1e-12)
        cache.read_entry(path_a)
    cache.clear_memory()
    assert gc.compile(a, opt_level=0).cache_hit == "disk"


def test_header_that_hashes_but_is_malformed_is_unreadable(cache_dir):
    """A header with a valid digest but wrong field types (written by a buggy
    or hostile writer) is refused, not trusted."""
    a, _ = _graph(2.0)
    gc.compile(a, opt_level=0)
    (path,) = cache.entries()
    header, blobs = cache.read_entry(path)
    for field, value in (("components", ["x"]), ("slots", "x"), ("n_outputs", -1),
                         ("blobs", [[-5, "x"]]), ("blobs", "x"), ("errors", None)):
        bad = dict(header, **{field: value})
        hb = json.dumps(bad).encode()
        with open(path, "wb") as fh:
            fh.write(cache.MAGIC + len(hb).to_bytes(8, "little") + hashlib.sha256(hb).digest()
                     + hb + b"".join(blobs))
        cache.clear_memory()
        g = gc.compile(_graph(3.0)[0], opt_level=0)
        assert g.cache_miss_reason.endswith("(1 unreadable entry skipped)"), field
        for f in cache.entries():
            if f != path:
                os.unlink(f)
        cache.clear_memory()
        f = gc.compile(a, opt_level=0)
        assert f.cache_hit is False and f.cache_miss_reason.startswith("unreadable entry"), field


# -- 18: explicit pass lists are checked before any pass runs --------------------------------

def _pipeline_graph():
    x = gc.placeholder((8,), "float64", name="x")
    y = gc.sum(gc.exp(x * 1.0 + 0.0) * 2.0)
    X = np.linspace(-1.0, 1.0, 8)
    return x, y, X, np.sum(np.exp(X) * 2.0)


@pytest.mark.parametrize("passes, error, match", [
    ("fusion", TypeError, r"passes must be a list of pass names, got the string 'fusion' "
                          r"\(write passes=\['fusion'\]\)"),
    ("simplify", TypeError, "passes must be a list of pass names"),
    (gc.Pass, TypeError, "passes must be a list of pass names or Pass objects, got type"),
    ([gc.Pass], TypeError, r"got the class Pass \(write Pass\(\)\)"),
    (["fusion", "memory", "simplify"], gc.passes.PipelineError,
     "pass 'simplify' changes the graph, so it must come before the planning pass 'fusion'"),
    (["dce", "fusion", "cse"], gc.passes.PipelineError,
     "pass 'cse' changes the graph, so it must come before the planning pass 'fusion'"),
    (["memory", "fusion"], gc.passes.PipelineError,
     "pass 'memory' requires pass 'fusion' to run before it, but 'fusion' runs later"),
    (["fusion", "fusion", "memory"], gc.passes.PipelineError,
     "pass 'fusion' is listed twice: a planning pass runs once"),
    (["fusion", "memory", "memory"], gc.passes.PipelineError, "pass 'memory' is listed twice"),
    (["simplify", "fusoin"], gc.passes.PipelineError,
     r"unknown pass 'fusoin' \(known: cse, dce, fold, fusion, memory, simplify"),
])
def test_unsupported_pass_lists_fail_up_front_with_a_clear_error(passes, error, match):
    _, y, _, _ = _pipeline_graph()
    for backend in ("llvm", "interp"):          # checked before anything runs, on every backend
        with pytest.raises(error, match=match):
            gc.compile(y, passes=passes, backend=backend, cache=False)
    assert issubclass(gc.passes.PipelineError, (gc.GraphcError, ValueError))


@pytest.mark.parametrize("passes, names", [
    (["simplify", "simplify"], ["simplify", "simplify", "fusion", "memory"]),   # graph passes repeat
    (("cse",), ["cse", "fusion", "memory"]),
    (["memory"], ["fusion", "memory"]),           # the missing fusion goes before what needs it
    (["fold", "fusion"], ["fold", "fusion", "memory"]),
])
def test_supported_pass_lists_compile_correctly(passes, names):
    _, y, X, want = _pipeline_graph()
    f = gc.compile(y, passes=passes, cache=False)
    assert [r.name for r in f.passes] == names
    np.testing.assert_allclose(f(x=X), want, rtol=1e-12)


def test_user_passes_declare_their_needs():
    from graphc.passes import PipelineError
    _, y, X, want = _pipeline_graph()

    class Census(Pass):                 # only reads the graph: may run after planning
        name = "census"
        purpose = "count op nodes"
        changes_graph = False

        def run(self, graph, ctx):
            ctx.notes.append(f"{len(graph.op_nodes())} op nodes, {len(ctx.kernels or [])} kernels")
            return graph

    class NeedsCse(Pass):
        name = "needs-cse"
        purpose = "runs after cse"
        requires = ("cse",)

        def run(self, graph, ctx):
            return graph

    class Liar(Pass):                   # says it keeps the graph, then rebuilds it
        name = "liar"
        purpose = "rewrites after planning"
        changes_graph = False

        def run(self, graph, ctx):
            from graphc.ir.graph import Graph
            return Graph([o * 1.0 for o in graph.outputs], graph.placeholders)

    f = gc.compile(y, passes=["simplify", "fusion", Census(), "memory"], cache=False)
    assert [r.name for r in f.passes] == ["simplify", "fusion", "census", "memory"]
    assert f.passes[2].notes == [f"{len(f.graph.op_nodes())} op nodes, {f.num_kernels} kernels"]
    np.testing.assert_allclose(f(x=X), want, rtol=1e-12)
    np.testing.assert_allclose(gc.compile(y, passes=["cse", NeedsCse()], cache=False)(x=X),
                               want, rtol=1e-12)
    with pytest.raises(PipelineError, match="pass 'needs-cse' requires pass 'cse' to run before "
                                            "it, but 'cse' runs not at all"):
        gc.compile(y, passes=[NeedsCse()], cache=False)
    with pytest.raises(PipelineError, match="pass object Nameless has no name"):
        gc.compile(y, passes=[type("Nameless", (Pass,), {})()], cache=False)
    with pytest.raises(PipelineError, match="pass 'liar' changed the graph after the planning "
                                            "pass 'fusion'"):
        gc.compile(y, passes=["fusion", Liar()], cache=False)


def test_register_pass_refuses_an_order_that_would_break_every_compile():
    from graphc.passes import PipelineError, register_pass
    order, passes = list(DEFAULT_ORDER), dict(PASSES)

    class Late(Pass):
        name = "late-rewrite"
        purpose = "a graph pass placed after fusion"

        def run(self, graph, ctx):
            return graph

    try:
        with pytest.raises(PipelineError, match="register_pass: pass 'late-rewrite' changes the "
                                                "graph, so it must come before the planning "
                                                "pass 'fusion'"):
            register_pass(Late(), after="fusion")
        assert DEFAULT_ORDER == order and PASSES == passes      # nothing changed
        _, y, X, want = _pipeline_graph()
        np.testing.assert_allclose(gc.compile(y, cache=False)(x=X), want, rtol=1e-12)
    finally:
        DEFAULT_ORDER[:] = order
        PASSES.clear()
        PASSES.update(passes)


# -- 15: a plugin that exits or fails changes nothing -----------------------------------------

def _settings_state():
    """Every setting a plugin can change, as comparable values."""
    from graphc.plugins import SETTINGS, _setting
    return {k: (dict(v) if isinstance(v, dict) else list(v))
            for k, v in ((k, _setting(*k)) for k in SETTINGS)}


class FakeEntryPoint:
    def __init__(self, name, fn):
        self.name, self.value, self.dist, self._fn = name, f"tests.fake:{name}", None, fn

    def load(self):
        return self._fn


def _hostile_setup(exc):
    def setup():
        from graphc.passes.simplify import RULES
        gc.register_op("hostile.cube", reference=lambda x: x ** 3,
                       vjp=lambda n, g: [3.0 * g * n.inputs[0] ** 2],
                       scalar=lambda s, x: x * x * x)

        class Noisy(Pass):
            name = "hostile-noop"
            purpose = "nothing"

            def run(self, graph, ctx):
                return graph

        gc.register_pass(Noisy(), after="dce")
        gc.set_num_threads(1 if gc.get_num_threads() != 1 else 2)
        gc.compiler._hooks.append(lambda f: None)
        RULES.insert(0, RULES[-1])
        raise exc
    return setup


@pytest.mark.parametrize("exc", [SystemExit(3), SystemExit(), RuntimeError("half-way"),
                                 GeneratorExit(), ValueError("bad")])
def test_failing_plugin_is_skipped_and_rolled_back(exc):
    from graphc import plugins
    before = _settings_state()
    threads = gc.get_num_threads()
    name = f"hostile-{type(exc).__name__}-{id(exc)}"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        (p,) = plugins.load([FakeEntryPoint(name, _hostile_setup(exc))])
    assert p.ok is False and p.error.startswith(type(exc).__name__)
    if isinstance(exc, SystemExit):
        assert p.error == f"SystemExit: the plugin called sys.exit({exc.code!r})"
    (msg,) = [str(m.message) for m in w if issubclass(m.category, plugins.PluginWarning)]
    assert msg.startswith(f"graphc: plugin {name!r} (tests.fake:{name}) failed to load and "
                          f"was skipped: {type(exc).__name__}")
    assert _settings_state() == before              # every setting as before, same objects
    assert gc.get_num_threads() == threads and "hostile.cube" not in gc.OPS
    assert "hostile-noop" not in DEFAULT_ORDER and "hostile-noop" not in PASSES
    x = gc.placeholder((4,), "float64", name="x")
    X = np.array([0.5, -1.0, 2.0, 3.0])
    f = gc.compile(gc.exp(x) * 2.0, cache=False)
    assert "hostile-noop" not in [r.name for r in f.passes]
    np.testing.assert_allclose(f(x=X), np.exp(X) * 2.0, rtol=1e-12)


def test_keyboard_interrupt_in_a_plugin_goes_through_after_the_roll_back():
    from graphc import plugins
    before = _settings_state()
    with pytest.raises(KeyboardInterrupt):
        plugins.load([FakeEntryPoint("hostile-ctrl-c", _hostile_setup(KeyboardInterrupt()))])
    assert _settings_state() == before


def test_plugin_calling_sys_exit_does_not_end_import_graphc(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "graphc_exit_plugin.py").write_text(
        "import sys\nimport graphc as gc\n"
        "gc.register_op('exit.half', reference=lambda x: x / 2, vjp=lambda n, g: [g / 2],\n"
        "               scalar=lambda s, x: x * 0.5)\n"
        "gc.set_num_threads(1 if gc.get_num_threads() != 1 else 2)\n"
        "sys.exit(3)\n")
    info = site / "graphc_exit_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: graphc_exit_plugin\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text("[graphc.plugins]\nbye = graphc_exit_plugin\n")
    code = """
import json, warnings
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    import graphc as gc
import numpy as np
from graphc.compiler import default_threads
x = gc.placeholder((3,), "float64", name="x")
v = gc.compile(gc.exp(x) + 1.0, cache=False)(x=np.array([0.0, 1.0, 2.0]))
print(json.dumps({"warnings": [str(m.message) for m in w], "ops": sorted(gc.OPS),
                  "threads": [gc.get_num_threads(), default_threads()], "v": v.tolist()}))
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), ROOT]))
    env.pop("GRAPHC_PLUGINS", None)
    env.pop("GRAPHC_NUM_THREADS", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0, f"status {r.returncode}: {r.stderr[-2000:]}"   # was: status 3
    out = json.loads(r.stdout.strip().splitlines()[-1])
    (msg,) = out["warnings"]
    assert msg.startswith("graphc: plugin 'bye' (graphc_exit_plugin, from graphc_exit_plugin) "
                          "failed to load and was skipped: SystemExit: the plugin called "
                          "sys.exit(3)")
    assert "exit.half" not in out["ops"]
    assert out["threads"][0] == out["threads"][1]
    np.testing.assert_allclose(out["v"], np.exp([0.0, 1.0, 2.0]) + 1.0, rtol=1e-12)
