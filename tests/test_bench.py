"""The benchmark harness (``python -m graphc bench``) in --quick mode.

No test asserts a timing: they check that every workload runs on every
available implementation, that each result agrees with the float64 numpy
reference, that a wrong result is caught and kept out of the ratios, and the
structure of the table and of the JSON.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from graphc.bench import WORKLOADS, Case, Target, workload
from graphc.bench.runner import Options, Runner, check
from graphc.bench.timing import interleaved

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUICK_CASES = {"mlp_step", "elemwise", "matmul/48", "matmul/96", "tiny_call", "compile", "train_step"}


def bench(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "graphc", "bench", "--quick", "--quiet",
                           "--repeat", "2", "--min-time", "0.01", "--compile-repeat", "0", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def assert_all_ok(results, impls):
    names = {c["case"] for c in results["cases"]}
    assert names == QUICK_CASES
    assert results["mismatches"] == []
    for c in results["cases"]:
        for name in impls:
            if name not in c["impls"]:
                continue
            r = c["impls"][name]
            assert r["status"] == "ok", (c["case"], name, r)
            assert r["check"]["ok"] and r["check"]["worst"] <= 1.0
            if c["kind"] == "time":
                assert r["median_s"] > 0
                assert r["samples"] >= 1 and r["calls_per_sample"] >= 1
                assert r["min_s"] <= r["median_s"]
                assert r["q1_s"] <= r["median_s"] <= r["q3_s"]
            else:
                assert r["first_s"] > 0
        if "graphc" in impls:
            assert c["impls"]["graphc"]["vs_graphc"] == pytest.approx(1.0)
        for t in c["targets"]:
            assert set(t) >= {"target", "measured", "met"}


def test_quick_cli_graphc_and_numpy(tmp_path):
    js, png = tmp_path / "r.json", tmp_path / "r.png"
    impls = ["graphc", "graphc-interp", "numpy"]
    out = bench("--threads", "1", "--impls", ",".join(impls), "--json", str(js), "--png", str(png))
    assert out.returncode == 0, out.stderr + out.stdout
    res = json.loads(js.read_text())
    assert_all_ok(res, impls)
    assert res["meta"]["threads"] == 1 and "numpy" in res["meta"]["thread_notes"]
    assert "python -m graphc bench" in res["meta"]["command"]
    for c in res["cases"]:
        assert set(c["impls"]) >= (set(impls) if c["kind"] == "time" else {"graphc"})
        if c["workload"] == "matmul":
            g = c["impls"]["graphc"]
            assert g["gflops"] == pytest.approx(c["flops"] / g["median_s"] / 1e9)
        # the implementations left out by --impls are recorded, not run
        for name in ("jax.jit", "torch.compile"):
            if name in c["impls"]:
                assert c["impls"][name]["status"] == "skipped"
    table = out.stdout
    for name in QUICK_CASES:
        assert f"\n{name}: " in table
    assert "vs graphc" in table and "GFLOP/s" in table and "first (cold)" in table
    assert "MISMATCH" not in table
    try:
        import matplotlib  # noqa: F401
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    except ImportError:
        assert "matplotlib is not installed" in table


def test_quick_with_peers(tmp_path):
    pytest.importorskip("jax")
    pytest.importorskip("torch")
    js = tmp_path / "r.json"
    # graphc's compiled rows are checked above; leaving them out saves their compile time
    impls = ["graphc-interp", "numpy", "jax.jit", "torch"]
    out = bench("--skip-slow-peers", "--impls", ",".join(impls), "--clock", "cpu",
                "--json", str(js))
    assert out.returncode == 0, out.stderr + out.stdout
    res = json.loads(js.read_text())
    assert_all_ok(res, impls)
    assert res["meta"]["options"]["clock"] == "cpu"
    for c in res["cases"]:
        assert c["basis"] == ("cpu_median_s" if c["kind"] == "time" else "median_s")
        if c["kind"] == "time":
            i = c["impls"]["graphc-interp"]
            assert i["vs_graphc"] is None               # graphc's own row was not run
            assert i["cpu_median_s"] > 0
    for c in res["cases"]:
        assert "jax.jit" in c["impls"]
        if "torch.compile" in c["impls"]:
            assert c["impls"]["torch.compile"]["status"] == "skipped"
        assert c["impls"]["graphc"]["status"] == "skipped"
    assert set(res["meta"]["thread_notes"]) >= {"numpy", "graphc", "jax", "torch"}


def test_run_py_wrapper_and_bad_options():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--quiet", "--only",
                          "tiny_call", "--impls", "graphc,numpy"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    assert "\ntiny_call: " in out.stdout and "mlp_step" not in out.stdout
    bad = bench("--only", "no_such_workload")
    assert bad.returncode == 2 and "no_such_workload" in bad.stderr
    bad = bench("--impls", "graphc,cuda")
    assert bad.returncode == 2 and "cuda" in bad.stderr


@pytest.fixture
def broken_workload(monkeypatch):
    """A workload whose numpy implementation is wrong by 1%."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, ""))  # restored after the test
    x = np.linspace(-1, 1, 64).astype(np.float32)

    def graphc_impl(P):
        import graphc as gc
        X = gc.placeholder((64,), "float32", name="x")
        f = gc.compile(gc.exp(X), inputs=[X])
        return lambda: f(x)

    @workload("_test_broken", "exp(x), numpy deliberately wrong")
    def broken(quick):
        return [Case("_test_broken", "_test_broken", "exp(x)",
                     reference=lambda: [np.exp(x.astype(np.float64))],
                     impls={"graphc": graphc_impl,
                            "numpy": lambda P: (lambda: np.exp(x) * np.float32(1.01))},
                     targets=[Target(vs="numpy", ratio=1.0)])]
    yield "_test_broken"
    WORKLOADS.pop("_test_broken")


def test_mismatch_is_reported_and_excluded(broken_workload, capsys):
    res = Runner(Options(only=[broken_workload], repeat=2, min_time=0.01, progress=False)).run()
    (c,) = res["cases"]
    assert c["impls"]["graphc"]["status"] == "ok"
    num = c["impls"]["numpy"]
    assert num["status"] == "mismatch" and not num["check"]["ok"]
    assert num["vs_graphc"] is None                 # excluded from the ratios
    assert "median_s" in num                        # but still timed
    assert c["targets"][0]["met"] is None
    assert len(res["mismatches"]) == 1 and "numpy" in res["mismatches"][0]
    assert "MISMATCH" in capsys.readouterr().out    # printed loudly


def test_check_tolerances():
    case = Case("w", "w", "", reference=lambda: [], impls={}, rtol=1e-4, atol=1e-5)
    ref = [np.float64(2.0), np.linspace(1, 2, 10)]
    good = (np.float32(2.0), np.linspace(1, 2, 10).astype(np.float32))
    assert check(good, ref, case)["ok"]
    assert not check((np.float32(2.01), good[1]), ref, case)["ok"]
    assert not check((np.float32(np.nan), good[1]), ref, case)["ok"]
    assert not check((good[0],), ref, case)["ok"]                      # an output missing
    assert not check((good[0], good[1][:5]), ref, case)["ok"]          # wrong shape
    assert check([[np.float32(2.0)], [good[1]]], ref, case)["ok"]      # nesting is flattened


def test_target_evaluation():
    t = Target(vs="numpy", ratio=2.0)
    assert t.evaluate({"graphc": 1.0, "numpy": 3.0})["met"] is True
    assert t.evaluate({"graphc": 1.0, "numpy": 1.5})["met"] is False
    assert t.evaluate({"graphc": 1.0})["met"] is None
    m = Target(max_seconds=3e-6)
    assert m.evaluate({"graphc": 2e-6})["met"] and not m.evaluate({"graphc": 4e-6})["met"]
    with pytest.raises(ValueError):
        Target(vs="numpy")
    with pytest.raises(ValueError):
        Target(vs="numpy", ratio=1.0, max_seconds=1.0)


def test_interleaved_rounds_sample_every_implementation():
    calls = {"a": 0, "b": 0}

    def make(k):
        def f():
            calls[k] += 1
        return f
    s = interleaved({"a": make("a"), "b": make("b")}, repeat=4, sample_time=1e-4)
    for k in "ab":
        st = s[k].stats()
        assert st["samples"] == 4 and st["calls_per_sample"] >= 1
        assert calls[k] >= 4 * st["calls_per_sample"]


def test_every_workload_has_cases_and_a_graphc_row():
    for name, w in WORKLOADS.items():
        cases = w.make_cases(True)
        assert cases, name
        for c in cases:
            assert "graphc" in c.impls and c.kind in ("time", "compile")
            ref = c.reference()
            assert all(np.all(np.isfinite(np.asarray(r))) for r in ref)
