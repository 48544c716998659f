"""graphc's speed when other processes compete for the CPUs (issue 12).

Every workload of graphc's own bench (``graphc/bench/workloads.py``, built
exactly as ``python -m graphc bench`` builds it; ``compile`` is left out) is
compiled twice by graphc: once with the default thread count
(``threads=None``: every CPU, ``graphc.compiler.default_threads()``) and once
with ``threads=1``. Both are then timed side by side, in the bench's
interleaved rounds (``graphc/bench/timing.py``; medians), under each load:

- ``idle``: nothing else started by this script;
- ``1 busy``, ``2 busy``: one or two extra processes running
  ``while True: pass`` (started for the condition, killed after it, also on
  Ctrl-C, SIGTERM or an error; they also exit by themselves if this process
  dies);
- ``after BLAS``: three numpy 512x512 float32 matmuls (OpenBLAS with its
  default thread count and idle spin) just before every sample, so numpy's
  BLAS threads are still spinning while graphc runs.

Each row gives the median time per call of both versions and the speed ratio
``t_1thread / t_default``: above 1 the default threads help, below 1 they
hurt. The issue's target is a ratio >= 0.9 under 1 and 2 busy processes (a
multi-threaded call must not wait long on a worker the OS has descheduled);
every row below 0.9 is marked ``BELOW 0.9x``. The first result of every
version is checked against the workload's float64 numpy reference.

Run: python benchmarks/contention.py [--quick] [--only mlp_step,matmul]
         [--loads 0,1,2,blas] [--repeat N] [--min-time S] [--json PATH]

Keep the machine otherwise quiet: other work adds to the load conditions.
The exit status is 0, 1 if a result disagreed with its reference, 2 for bad
options.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from graphc import compiler  # noqa: E402
from graphc.bench import WORKLOADS, timing  # noqa: E402 - also registers train_step
from graphc.bench.peers import _BLAS_SETTERS, Peers, Threads, _loaded_libraries  # noqa: E402
from graphc.bench.runner import PeerAccess, check, select_workloads  # noqa: E402

TARGET = 0.9
LOADS = {"0": "idle", "1": "1 busy", "2": "2 busy", "blas": "after BLAS"}
DEFAULT_WORKLOADS = ("mlp_step", "elemwise", "matmul", "tiny_call", "train_step")
BUSY_MARK = "graphc-contention-busy"
# a pure busy loop that also leaves when its parent (argv[1]) is gone:
# PR_SET_PDEATHSIG on Linux, and a look at getppid() every ~10**6 rounds
BUSY_CODE = f"""\
import os, sys
parent = int(sys.argv[1])
try:
    import ctypes
    ctypes.CDLL(None).prctl(1, 9)       # PR_SET_PDEATHSIG, SIGKILL
except Exception:
    pass
while os.getppid() == parent:
    for _ in range(1000000):
        pass
# {BUSY_MARK}
"""


class BusyProcesses:
    """``n`` busy-loop processes for as long as the ``with`` block runs."""

    live: set = set()           # every busy process not yet reaped, for atexit

    def __init__(self, n: int, settle: float = 0.2):
        self.n, self.settle, self.procs = n, settle, []

    def __enter__(self):
        try:
            for _ in range(self.n):
                p = subprocess.Popen([sys.executable, "-c", BUSY_CODE, str(os.getpid())],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
                self.procs.append(p)
                BusyProcesses.live.add(p)
            if self.n:
                time.sleep(self.settle)     # let them start spinning
                dead = [p.pid for p in self.procs if p.poll() is not None]
                if dead:
                    raise RuntimeError(f"contention: busy process(es) {dead} exited at once")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pids(self) -> list:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            _kill(p)

    def __exit__(self, *exc):
        self.stop()
        return False


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            p.kill()
        except OSError:
            pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:     # pragma: no cover - a kill that did not take
        pass
    BusyProcesses.live.discard(p)


@atexit.register
def _kill_all_busy() -> None:
    for p in list(BusyProcesses.live):
        _kill(p)


class _ThreadsFor:
    """Compile with ``n`` threads (None: the default, every CPU) inside the
    block; the workloads' factories call ``compile`` without ``threads``."""

    def __init__(self, n: int | None):
        self.n = compiler.default_threads() if n is None else n

    def __enter__(self):
        self.saved = list(compiler._num_threads)
        compiler.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        compiler._num_threads[:] = self.saved
        return False


def blas_threads() -> str:
    """numpy's BLAS thread count, read with the library's own getter."""
    import ctypes
    for path in _loaded_libraries():
        base = os.path.basename(path)
        for frag, _, getters in _BLAS_SETTERS:
            if frag in base:
                try:
                    lib = ctypes.CDLL(path)
                except OSError:
                    continue
                for g in getters:
                    if hasattr(lib, g):
                        fn = getattr(lib, g)
                        fn.restype = ctypes.c_int
                        return f"{base}: {fn()} thread(s)"
    return "unknown"


def blas_work(n: int = 512, times: int = 3):
    """A callable doing ``times`` n x n float32 matmuls with numpy's BLAS."""
    r = np.random.default_rng(7)
    a = r.standard_normal((n, n)).astype(np.float32)
    b = r.standard_normal((n, n)).astype(np.float32)

    def work():
        for _ in range(times):
            a @ b
    return work


# ------------------------------------------------------------------ building

def build(names: list, quick: bool, say) -> tuple[list, list]:
    """For every case of the workloads: (case, default-threads fn, 1-thread fn),
    each version from its own ``make_cases`` (stateful workloads keep their own
    parameters); and the mismatches with the numpy reference."""
    P = PeerAccess(Peers(Threads(None)))
    built, mismatches = [], []
    for w in select_workloads(names):
        versions = {}
        for label, n in (("default", None), ("1 thread", 1)):
            with _ThreadsFor(n):
                versions[label] = [(c, c.impls["graphc"](P)) for c in w.make_cases(quick)]
        for (case, fd), (_, f1) in zip(versions["default"], versions["1 thread"]):
            ref = [np.asarray(r, dtype=np.float64) for r in case.reference()]
            for label, fn in (("default", fd), ("1 thread", f1)):
                c = check(fn(), ref, case)
                if not c["ok"]:
                    mismatches.append(f"{case.name} ({label}): {c['why']}")
                    say(f"!!! MISMATCH {case.name} ({label}) against numpy: {c['why']}")
            built.append((case, fd, f1))
            say(f"[{case.name}] {case.description}: compiled, checked")
    return built, mismatches


# ------------------------------------------------------------------ timing

def measure(built: list, loads: list, repeat: int, min_time: float, say) -> list:
    rows = []
    sample_time = max(min_time / max(repeat, 1), 1e-4)
    for load in loads:
        n_busy = int(load) if load.isdigit() else 0
        before = blas_work() if load == "blas" else None
        with BusyProcesses(n_busy) as busy:
            say(f"-- load: {LOADS[load]}" + (f" (pids {busy.pids})" if busy.pids else ""))
            for case, fd, f1 in built:
                if before is not None:
                    before()
                s = timing.interleaved({"default": fd, "1 thread": f1}, repeat, sample_time,
                                       before_sample=before)
                d, o = s["default"].stats(), s["1 thread"].stats()
                ratio = o["median_s"] / d["median_s"]
                rows.append({"case": case.name, "workload": case.workload, "load": LOADS[load],
                             "busy_pids": busy.pids, "default": d, "one_thread": o,
                             "speed_ratio": ratio, "ok": ratio >= TARGET})
                say(f"    {case.name:12s} default {_t(d['median_s'])}, 1 thread "
                    f"{_t(o['median_s'])}: {ratio:.2f}x")
    return rows


def _t(s: float) -> str:
    for unit, k in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= k:
            return f"{s / k:.4g} {unit}"
    return f"{s / 1e-9:.4g} ns"


def format_table(rows: list, n_default: int) -> str:
    head = ("workload", "load", f"default ({n_default} thr)", "1 thread", "speed ratio",
            "default cpu/wall", "")
    body = [(r["case"], r["load"], _t(r["default"]["median_s"]), _t(r["one_thread"]["median_s"]),
             f"{r['speed_ratio']:.2f}x", f"{r['default']['cpu_per_wall'] or 0:.2f}",
             "ok" if r["ok"] else f"BELOW {TARGET}x") for r in rows]
    w = [max(len(x[k]) for x in [head, *body]) for k in range(len(head))]
    fmt = lambda x: "  ".join(v.ljust(w[k]) if k < 2 or k == 6 else v.rjust(w[k])
                              for k, v in enumerate(x)).rstrip()
    return "\n".join([fmt(head), *map(fmt, body)])


# ------------------------------------------------------------------ main

def _csv(s: str) -> list:
    return [x.strip() for x in s.split(",") if x.strip()]


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/contention.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, few samples (smoke test)")
    p.add_argument("--only", type=_csv, metavar="W[,W..]",
                   help=f"workloads (default: {','.join(DEFAULT_WORKLOADS)})")
    p.add_argument("--loads", type=_csv, metavar="L[,L..]", default=list(LOADS),
                   help="load conditions: 0, 1, 2 busy processes, blas (default: all)")
    p.add_argument("--repeat", type=int, metavar="N",
                   help="samples per version and condition (default 21; 3 with --quick)")
    p.add_argument("--min-time", type=float, metavar="S",
                   help="seconds of samples per version and condition (default 0.5)")
    p.add_argument("--json", metavar="PATH", help="write the rows and settings as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    a = p.parse_args(argv)
    a.repeat = a.repeat if a.repeat is not None else (3 if a.quick else 21)
    a.min_time = a.min_time if a.min_time is not None else (0.02 if a.quick else 0.5)
    if a.repeat < 1 or a.min_time <= 0:
        raise ValueError(f"--repeat must be >= 1 and --min-time > 0, got {a.repeat}, "
                         f"{a.min_time}")
    bad = [x for x in a.loads if x not in LOADS]
    if bad or not a.loads:
        raise ValueError(f"--loads: unknown condition(s) {bad}; use some of {list(LOADS)}")
    names = a.only or [w for w in DEFAULT_WORKLOADS if w in WORKLOADS]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        raise ValueError(f"--only: unknown workload(s) {unknown}; the workloads are "
                         f"{[w for w in WORKLOADS if w != 'compile']}")
    untimed = [w for w in names if WORKLOADS[w].run_first]
    if untimed:
        raise ValueError(f"--only: {untimed} measure(s) compile time, not calls: not run here")
    a.names = names
    return a


def _sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    try:
        a = parse(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    say = (lambda m: None) if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, _sigterm)     # finally-blocks run on SIGTERM too
    try:
        t0 = time.perf_counter()
        load_start = os.getloadavg()
        n_default = compiler.default_threads()
        built, mismatches = build(a.names, a.quick, say)
        rows = measure(built, a.loads, a.repeat, a.min_time, say)
    finally:
        _kill_all_busy()
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    meta = {"cpus": len(os.sched_getaffinity(0)), "default_threads": n_default,
            "numpy_blas": blas_threads(),
            "spin_env": {k: os.environ[k] for k in ("OPENBLAS_THREAD_TIMEOUT", "GOMP_SPINCOUNT")
                         if k in os.environ},
            "repeat": a.repeat, "min_time": a.min_time, "quick": a.quick,
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "seconds": round(time.perf_counter() - t0, 1)}
    print(f"graphc under contention: {meta['cpus']} CPU(s), default {n_default} thread(s) "
          f"against 1; numpy BLAS {meta['numpy_blas']}"
          + (f", spin env {meta['spin_env']}" if meta["spin_env"] else "") +
          f"; {a.repeat} samples, medians; load average {meta['loadavg_start']} -> "
          f"{meta['loadavg_end']}")
    print(format_table(rows, n_default))
    below = [r for r in rows if not r["ok"]]
    print(f"speed ratio = t_1thread / t_default; target >= {TARGET}x under 1 and 2 busy "
          f"processes. {len(below)} of {len(rows)} rows below. (total {meta['seconds']} s)")
    for m in mismatches:
        print(f"MISMATCH {m}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "rows": rows, "mismatches": mismatches}, f, indent=1)
        print(f"wrote {a.json}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
