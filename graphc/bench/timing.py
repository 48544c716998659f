"""Timing: calibrated samples, interleaved rounds, robust statistics.

Every implementation of a case is timed in the same process, in *rounds*:
each round takes one sample of every implementation, and the order rotates
from round to round, so a burst of machine noise (the cores are shared) hits
all implementations alike. A sample is ``calls`` back-to-back calls, with
``calls`` calibrated once so that one sample lasts about ``sample_time``;
a sample's per-call time is its duration divided by ``calls``. We report the
median over samples, the interquartile range and the minimum, and the ratio
of *medians*.

Process CPU time (all threads) is measured around each sample too, so the
table can show how many cores an implementation really kept busy, and, with
``--clock cpu``, compare single-threaded implementations by the CPU time they
used, which preemption by other processes does not inflate.
"""
from __future__ import annotations

import gc as _pygc
import math
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np


def cpu_seconds() -> float:
    """CPU time of the whole process (user + system, all threads)."""
    return time.process_time()


@dataclass
class Samples:
    """Per-call times (seconds) of one implementation, one entry per sample."""
    calls: int = 1
    times: list = field(default_factory=list)
    cpu_times: list = field(default_factory=list)   # process CPU seconds per call
    wall: float = 0.0          # total wall time measured
    cpu: float = 0.0           # total process CPU time during those samples

    def stats(self) -> dict:
        t = np.asarray(self.times, dtype=np.float64)
        if t.size == 0:
            return {}
        q1, med, q3 = np.percentile(t, [25, 50, 75])
        return {"median_s": float(med), "q1_s": float(q1), "q3_s": float(q3),
                "min_s": float(t.min()), "samples": int(t.size), "calls_per_sample": self.calls,
                "cpu_median_s": float(np.median(self.cpu_times)),
                "cpu_per_wall": float(self.cpu / self.wall) if self.wall > 0 else None}


def _timed(fn, calls: int) -> tuple[float, float]:
    """Run ``fn`` ``calls`` times with Python's GC paused; return (wall, cpu)."""
    enabled = _pygc.isenabled()
    _pygc.disable()
    try:
        c0 = cpu_seconds()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        t1 = time.perf_counter()
        c1 = cpu_seconds()
    finally:
        if enabled:
            _pygc.enable()
    return t1 - t0, c1 - c0


def calibrate(fn, sample_time: float, warmup_time: float = 0.02, max_calls: int = 1 << 20) -> int:
    """Warm ``fn`` up, then return how many calls make a sample of about
    ``sample_time`` seconds (at least 1)."""
    t0 = time.perf_counter()
    fn()
    n = 1
    while time.perf_counter() - t0 < warmup_time and n < 64:
        fn()
        n += 1
    calls = 1
    while True:
        wall, _ = _timed(fn, calls)
        if wall >= sample_time or calls >= max_calls:
            break
        grow = sample_time / max(wall, 1e-9)
        calls = min(max_calls, max(calls * 2, int(math.ceil(calls * min(grow, 100.0)))))
    # the last measurement used `calls` calls and took `wall`; scale down once
    # if we overshot by a lot (possible after a big jump)
    if calls > 1 and wall > 4 * sample_time:
        calls = max(1, int(calls * sample_time / wall))
    return calls


def interleaved(fns: dict, repeat: int, sample_time: float,
                on_round=None, before_sample=None) -> dict[str, Samples]:
    """Time every callable of ``fns`` (name -> zero-argument callable) in
    ``repeat`` rotating rounds of calibrated samples. ``before_sample``, if
    given, is called (untimed) just before each sample, e.g. to leave another
    library's threads spinning (``benchmarks/contention.py``)."""
    names = list(fns)
    out = {k: Samples(calls=calibrate(fns[k], sample_time)) for k in names}
    for r in range(repeat):
        k0 = r % len(names) if names else 0
        for k in names[k0:] + names[:k0]:
            s = out[k]
            if before_sample is not None:
                before_sample()
            wall, cpu = _timed(fns[k], s.calls)
            s.times.append(wall / s.calls)
            s.cpu_times.append(cpu / s.calls)
            s.wall += wall
            s.cpu += cpu
        if on_round is not None:
            on_round(r)
    return out


def timed_once(fn) -> tuple[float, float, object]:
    """One call of ``fn``: (wall seconds, process CPU seconds, its result)."""
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    res = fn()
    t1 = time.perf_counter()
    return t1 - t0, cpu_seconds() - c0, res


class BenchTimeout(Exception):
    """A call did not finish within its time budget."""


class time_limit:
    """Context manager: raise :class:`BenchTimeout` in the main thread after
    ``seconds`` (SIGALRM). Elsewhere (other threads, no SIGALRM) it does nothing:
    the call simply runs to its end."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.armed = False

    def _handler(self, signum, frame):
        raise BenchTimeout(f"did not finish within {self.seconds:g} s")

    def __enter__(self):
        if (self.seconds and self.seconds > 0 and hasattr(signal, "setitimer")
                and threading.current_thread() is threading.main_thread()):
            self.old = signal.signal(signal.SIGALRM, self._handler)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
            self.armed = True
        return self

    def __exit__(self, *exc):
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)
        return False
