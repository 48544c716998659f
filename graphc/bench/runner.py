"""Run the selected workloads: build, check against numpy, time, compare."""
from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

from . import timing
from .peers import SLOW_PEERS, Peers, Threads, cpu_count, to_numpy_list
from .workloads import IMPL_ORDER, WORKLOADS, Case, Skip


@dataclass
class Options:
    only: list | None = None          # workload names (None: all)
    impls: list | None = None         # implementation names (None: all available)
    threads: int | None = None        # None: the number of CPUs
    repeat: int = 21                  # samples per implementation
    min_time: float = 0.5             # seconds of samples per implementation and case
    compile_repeat: int = 5           # fresh compiles after the first (compile cases)
    slow_compile_repeat: int = 1      # ... for slow peers (torch.compile)
    quick: bool = False
    skip_slow_peers: bool = False
    slow_timeout: float = 600.0       # seconds allowed for a slow peer's first call
    progress: bool = True
    clock: str = "wall"               # "wall", or "cpu": ratios of process CPU time
    command: str = "(python API)"


class PeerAccess:
    """What a factory sees: ``need("jax")`` returns the module or raises Skip."""

    def __init__(self, peers: Peers):
        self.peers = peers

    def need(self, name: str):
        mod = getattr(self.peers, name)()
        if mod is None:
            raise Skip(f"{name} {self.peers.missing.get(name, 'unavailable')}")
        return mod


def select_workloads(only) -> list:
    if only is None:
        chosen = list(WORKLOADS.values())
    else:
        unknown = [w for w in only if w not in WORKLOADS]
        if unknown:
            raise ValueError(f"bench: unknown workload(s) {unknown}; the workloads are "
                             f"{list(WORKLOADS)}")
        chosen = [WORKLOADS[w] for w in WORKLOADS if w in set(only)]
    # first-compile measurements need a fresh process: run those workloads first
    return [w for w in chosen if w.run_first] + [w for w in chosen if not w.run_first]


def check(result, reference: list, case: Case) -> dict:
    """Compare an implementation's result with the float64 numpy reference."""
    try:
        got = to_numpy_list(result)
    except (TypeError, ValueError) as e:
        return {"ok": False, "why": f"result is not numeric: {e}"}
    if len(got) != len(reference):
        return {"ok": False, "why": f"{len(got)} outputs, expected {len(reference)}"}
    worst, worst_err = 0.0, 0.0
    for k, (g, r) in enumerate(zip(got, reference)):
        r = np.asarray(r, dtype=np.float64)
        if g.shape != r.shape and g.size == r.size == 1:
            g = g.reshape(r.shape)
        if g.shape != r.shape:
            return {"ok": False, "why": f"output {k} has shape {g.shape}, expected {r.shape}"}
        if case.atol_abs is not None:
            atol = case.atol_abs[k]
        else:
            atol = case.atol * float(np.max(np.abs(r))) if r.size else 0.0
        tol = atol + case.rtol * np.abs(r)
        err = np.abs(g - r)
        if not np.all(np.isfinite(g)):
            return {"ok": False, "why": f"output {k} has non-finite values"}
        excess = float(np.max(err / np.maximum(tol, 1e-300))) if r.size else 0.0
        if excess > worst:
            worst, worst_err = excess, float(err.max())
            worst_k = k
        if excess > 1.0:
            return {"ok": False, "why": f"output {k} {tuple(r.shape)}: max |error| {err.max():.3g} "
                                        f"is {excess:.3g}x the tolerance", "worst": excess}
    out = {"ok": True, "worst": worst, "max_abs_err": worst_err}
    if worst > 0:
        out["worst_output"] = worst_k
    return out


class Runner:
    def __init__(self, opts: Options, log=None):
        self.opts = opts
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.threads = Threads(opts.threads)
        self.peers = Peers(self.threads)
        self.P = PeerAccess(self.peers)
        self.mismatches: list[str] = []

    def say(self, msg: str) -> None:
        if self.opts.progress:
            self.log(msg)

    def wanted(self, name: str) -> str | None:
        """None if the implementation should run, else why it is skipped."""
        if self.opts.impls is not None and name not in self.opts.impls:
            return "not selected (--impls)"
        if self.opts.skip_slow_peers and name in SLOW_PEERS:
            return "--skip-slow-peers"
        return None

    def run(self) -> dict:
        t_start = time.perf_counter()
        self.load_start = _loadavg()
        self.threads.apply_global()
        workloads = select_workloads(self.opts.only)
        # the peers are imported by the first factory that needs them (Peers
        # applies the thread settings at import); nothing else is timed then
        cases_out = []
        for w in workloads:
            for case in w.make_cases(self.opts.quick):
                cases_out.append(self.run_case(case))
        order = list(WORKLOADS)
        cases_out.sort(key=lambda c: order.index(c["workload"]))
        return {"meta": self.meta(time.perf_counter() - t_start), "cases": cases_out,
                "mismatches": self.mismatches}

    # ------------------------------------------------------------ one case
    def run_case(self, case: Case) -> dict:
        self.say(f"[{case.name}] {case.description}")
        reference = [np.asarray(r, dtype=np.float64) for r in case.reference()]
        names = [n for n in IMPL_ORDER if n in case.impls] + \
                [n for n in case.impls if n not in IMPL_ORDER]
        res: dict[str, dict] = {}
        fns: dict = {}
        for name in names:
            why = self.wanted(name)
            if why is not None:
                res[name] = {"status": "skipped", "note": why}
                continue
            res[name], fn = self.prepare(case, name, reference)
            if fn is not None:
                fns[name] = fn
        if case.kind == "compile":
            self.time_compiles(case, fns, res)
        else:
            self.time_calls(case, fns, res)
        return self.summarize(case, res)

    def prepare(self, case: Case, name: str, reference: list):
        """Build the implementation and check its first result."""
        slow = name in SLOW_PEERS
        entry: dict = {}
        try:
            with timing.time_limit(self.opts.slow_timeout if slow else None):
                t0 = time.perf_counter()
                fn = case.impls[name](self.P)
                t1 = time.perf_counter()
                wall, cpu, result = timing.timed_once(fn)
        except Skip as e:
            self.say(f"    {name:14s} skipped: {e}")
            return {"status": "skipped", "note": str(e)}, None
        except timing.BenchTimeout as e:
            self.say(f"    {name:14s} TIMEOUT: {e}")
            return {"status": "timeout", "note": str(e)}, None
        except Exception as e:      # a failing peer is reported, never fatal
            msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            self.say(f"    {name:14s} ERROR: {msg}")
            return {"status": "error", "note": msg}, None
        entry["setup_s"] = t1 - t0
        entry["first_call_s"] = wall
        if case.kind == "compile":
            entry["first_s"] = wall
            entry["first_cpu_s"] = cpu
        c = check(result, reference, case)
        entry["check"] = c
        if c["ok"]:
            entry["status"] = "ok"
            self.say(f"    {name:14s} ok (setup {t1 - t0:.3g} s, first call {wall:.3g} s, "
                     f"error {c['worst']:.2g} of tolerance)")
        else:
            entry["status"] = "mismatch"
            msg = f"!!! MISMATCH in {case.name}: {name} differs from the numpy reference: {c['why']}"
            self.mismatches.append(msg)
            print(msg, file=sys.stderr, flush=True)
            print(msg, flush=True)
        return entry, fn

    def time_calls(self, case: Case, fns: dict, res: dict) -> None:
        if not fns:
            return
        o = self.opts
        sample_time = max(o.min_time / max(o.repeat, 1), 1e-4)
        try:
            samples = timing.interleaved(fns, o.repeat, sample_time)
        except Exception as e:
            msg = f"{type(e).__name__} while timing: {e}".splitlines()[0][:300]
            self.say(f"    ERROR {msg}")
            for name in fns:
                res[name].update(status="error", note=msg)
            return
        for name, s in samples.items():
            res[name].update(s.stats())
            if case.flops:
                res[name]["gflops"] = case.flops / res[name][self.basis(case)] / 1e9
        self.say("    " + ", ".join(f"{n} {res[n]['median_s'] * 1e3:.4g} ms" for n in samples))

    def time_compiles(self, case: Case, fns: dict, res: dict) -> None:
        o = self.opts
        fresh = {n: [] for n in fns}
        names = list(fns)
        for r in range(o.compile_repeat):
            k0 = r % len(names) if names else 0
            for name in names[k0:] + names[:k0]:
                slow = name in SLOW_PEERS
                if slow and r >= o.slow_compile_repeat:
                    continue
                if res[name]["status"] not in ("ok", "mismatch"):
                    continue
                try:
                    with timing.time_limit(o.slow_timeout if slow else None):
                        wall, _, _ = timing.timed_once(fns[name])
                except Exception as e:
                    res[name]["note"] = f"fresh compile failed: {type(e).__name__}: {e}"[:300]
                    continue
                fresh[name].append(wall)
        for name, ts in fresh.items():
            if ts:
                t = np.asarray(ts)
                res[name].update(fresh_s=ts, median_s=float(np.median(t)), min_s=float(t.min()),
                                 samples=len(ts))
            self.say(f"    {name:14s} first {res[name]['first_s']:.3g} s, fresh "
                     + (f"median {np.median(ts):.3g} s over {len(ts)}" if ts else "-"))

    def basis(self, case: Case) -> str:
        """The statistic ratios and targets use: the wall-clock median, or with
        ``clock="cpu"`` the median process CPU time per call (time cases only:
        compiles may run in subprocesses)."""
        return "cpu_median_s" if self.opts.clock == "cpu" and case.kind == "time" else "median_s"

    def summarize(self, case: Case, res: dict) -> dict:
        key = self.basis(case)
        stat_of = lambda n, stat: res[n].get("first_s" if stat == "first" else key)
        ok = [n for n, r in res.items() if r["status"] == "ok"]
        base_stat = "first" if case.kind == "compile" else "median"
        g = stat_of("graphc", base_stat) if "graphc" in ok else None
        for n, r in res.items():
            t = stat_of(n, base_stat) if n in ok else None
            r["vs_graphc"] = (t / g) if (g and t) else None
        targets = []
        for tg in case.targets:
            times = {n: stat_of(n, tg.stat if case.kind == "compile" else "median") for n in ok}
            times = {n: t for n, t in times.items() if t is not None}
            targets.append(tg.evaluate(times))
        return {"workload": case.workload, "case": case.name, "description": case.description,
                "kind": case.kind, "flops": case.flops, "basis": self.basis(case), "impls": res,
                "targets": targets}

    # ------------------------------------------------------------ metadata
    def meta(self, seconds: float) -> dict:
        from ..backend.llvm.host import host_info
        from ..version import __version__
        h = host_info()
        versions = {"python": platform.python_version(), "numpy": np.__version__,
                    "graphc": __version__, "llvm": h["llvm"]}
        try:
            import llvmlite
            versions["llvmlite"] = llvmlite.__version__
        except ImportError:     # pragma: no cover
            pass
        versions.update(self.peers.versions())
        o = self.opts
        return {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": o.command,
            "host": {"cpu": _cpu_model(), "llvm_cpu": h["cpu"], "cpus": cpu_count(),
                     "machine": platform.machine(), "system": platform.system()},
            "versions": versions,
            "threads": self.threads.n,
            "thread_notes": dict(self.threads.notes),
            "missing_peers": dict(self.peers.missing),
            "options": {"quick": o.quick, "repeat": o.repeat, "min_time": o.min_time,
                        "clock": o.clock,
                        "compile_repeat": o.compile_repeat,
                        "slow_compile_repeat": o.slow_compile_repeat,
                        "skip_slow_peers": o.skip_slow_peers, "impls": o.impls, "only": o.only},
            "seconds": seconds,
            "loadavg_start": self.load_start, "loadavg_end": _loadavg(),
        }


def _loadavg() -> list | None:
    """The 1, 5 and 15 minute load averages: other work on the machine."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def default_command() -> str:
    """The command line that started this process, as the user typed it."""
    import shlex
    if not sys.argv or not sys.argv[0]:
        return "(python API)"
    head = sys.argv[0]
    if head.endswith(os.path.join("graphc", "__main__.py")):
        head = "python -m graphc"
    elif head.endswith(".py"):
        head = "python " + os.path.relpath(head)
    return " ".join([head, *map(shlex.quote, sys.argv[1:])])
