"""benchmarks/contention.py: a quick run has the expected rows, its busy
processes are gone afterwards (after a normal end, an error, SIGTERM and
SIGKILL of the script), and bad options are rejected. No timing assertions."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from graphc.bench import timing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "contention.py")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc to find the busy processes")


@pytest.fixture(scope="module")
def contention():
    spec = importlib.util.spec_from_file_location("contention_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def busy_pids(mark: str, parent: int | None = None) -> list[int]:
    """Processes whose command line holds ``mark`` (and ``parent``'s pid as its argument)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(mark in a for a in args) and (parent is None or str(parent) in args):
            out.append(int(d))
    return out


def alive(pid: int, mark: str) -> bool:
    """``pid`` is still a busy process (not gone, not a zombie)."""
    return pid in busy_pids(mark)


def test_quick_run_rows_and_no_leftover_processes(contention, tmp_path, capsys):
    path = tmp_path / "c.json"
    rc = contention.main(["--quick", "--quiet", "--only", "tiny_call,matmul", "--loads", "0,1",
                          "--repeat", "2", "--json", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    res = json.loads(path.read_text())
    got = [(r["case"], r["load"]) for r in res["rows"]]
    want = [(c, load) for load in ("idle", "1 busy") for c in ("matmul/48", "matmul/96", "tiny_call")]
    assert got == want
    assert res["mismatches"] == []
    lines = out.splitlines()
    for case, load in want:
        row = [ln for ln in lines if ln.startswith(case + " ") and f" {load} " in ln]
        assert len(row) == 1, out
        assert row[0].rstrip().endswith(("ok", "BELOW 0.9x"))
    for r in res["rows"]:
        assert r["default"]["median_s"] > 0 and r["one_thread"]["median_s"] > 0
        assert r["speed_ratio"] == pytest.approx(r["one_thread"]["median_s"] /
                                                 r["default"]["median_s"])
        assert r["ok"] == (r["speed_ratio"] >= 0.9)
        assert len(r["busy_pids"]) == (1 if r["load"] == "1 busy" else 0)
    pids = {p for r in res["rows"] for p in r["busy_pids"]}
    assert len(pids) == 1
    assert not any(alive(p, contention.BUSY_MARK) for p in pids)
    assert busy_pids(contention.BUSY_MARK, os.getpid()) == []
    assert not contention.BusyProcesses.live


def test_busy_processes_killed_on_error(contention, monkeypatch):
    seen = []

    def boom(*a, **k):
        seen.extend(p.pid for p in contention.BusyProcesses.live)
        raise KeyboardInterrupt("as if Ctrl-C")
    monkeypatch.setattr(timing, "interleaved", boom)
    with pytest.raises(KeyboardInterrupt):
        contention.main(["--quick", "--quiet", "--only", "tiny_call", "--loads", "2"])
    assert len(seen) == 2
    assert not any(alive(p, contention.BUSY_MARK) for p in seen)
    assert not contention.BusyProcesses.live


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_busy_processes_gone_when_script_is_killed(contention, sig):
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.Popen([sys.executable, SCRIPT, "--quick", "--only", "tiny_call", "--loads", "1",
                          "--repeat", "100000"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = p.stderr.readline()
            if not line or "-- load: 1 busy" in line:
                break
        assert "-- load: 1 busy" in line, "the script never started its busy process"
        pids = busy_pids(contention.BUSY_MARK, p.pid)
        assert len(pids) == 1
        p.send_signal(sig)
        p.wait(timeout=30)
        deadline = time.monotonic() + 10
        while alive(pids[0], contention.BUSY_MARK) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pids[0], contention.BUSY_MARK)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_bad_options(contention, capsys):
    for argv, word in ((["--only", "no_such"], "no_such"), (["--only", "compile"], "compile"),
                       (["--loads", "3"], "3"), (["--repeat", "0"], "--repeat")):
        assert contention.main(argv) == 2
        assert word in capsys.readouterr().err


def test_before_sample_runs_before_every_sample():
    calls = []
    s = timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                           3, 1e-4, before_sample=lambda: calls.append("|"))
    assert s["a"].calls >= 1 and len(s["a"].times) == 3
    # every timed sample follows a before_sample call, never another's sample
    tail = calls[calls.index("|"):]
    assert tail.count("|") == 6
    chunks = "".join(tail).split("|")[1:]
    assert all(c and len(set(c)) == 1 for c in chunks)
