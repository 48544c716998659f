"""Where a compiled function spends its time, kernel by kernel.

``f.profile(*args, repeat=20)`` compiles ``f``'s graph once more, with the
same passes and options but one thread, and with a counter read around every
kernel call of the entry (``host.clock_intrinsic``: ``rdtsc`` on x86-64);
each kernel's cycles are added to an int64 in the arena, past the plan's
values. It calls that function ``repeat`` times with the given arguments and
returns a :class:`Profile`: per kernel, the mean time per call and its share
of the call, slowest first. The counter's rate is measured against
``time.perf_counter`` over the same calls, so the times are seconds.

The instrumented code is the plan's code: the same kernels, the same fusion,
the same memory plan; only the thread count differs (a threaded plan's
phases run on whichever thread claims them, so there is no one order to
time). A function with ``updates`` updates its parameters on every call, as
calling it would.
"""
from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass

import numpy as np

_CLOCK = {}


def _clock():
    """A native function returning the counter the profiled code reads."""
    if "f" not in _CLOCK:
        from .backend.llvm.host import clock_intrinsic
        from .backend.llvm.jit import JitModule
        name = clock_intrinsic()
        ir_text = (f"declare i64 @{name}()\n"
                   f"define i64 @graphc_clock() {{\n  %t = call i64 @{name}()\n  ret i64 %t\n}}\n")
        jit = JitModule.compile(ir_text, "graphc_clock", opt=0)
        _CLOCK["jit"] = jit
        _CLOCK["f"] = ctypes.CFUNCTYPE(ctypes.c_uint64)(jit.address)
    return _CLOCK["f"]


@dataclass
class KernelTime:
    """One step of the plan: its index and label, what it is, its time."""
    index: int
    label: str
    kind: str
    domain: str
    seconds: float          # mean per call
    share: float            # of the mean call


@dataclass
class Profile:
    """The kernels of one profiled function, slowest first (``rows``), the
    mean time of a whole call (``call_seconds``) and how many calls were
    timed."""
    rows: list
    call_seconds: float
    calls: int

    @property
    def kernel_seconds(self) -> float:
        return sum(r.seconds for r in self.rows)

    def top(self, n: int = 10) -> list:
        return self.rows[:n]

    def text(self, limit: int | None = 25) -> str:
        rows = self.rows if limit is None else self.rows[:limit]
        lines = [f"profile: {len(self.rows)} kernels, {self.calls} calls, "
                 f"{self.call_seconds * 1e6:.1f} us per call "
                 f"({self.kernel_seconds * 1e6:.1f} us in kernels), one thread",
                 f"{'step':>5}  {'us/call':>9}  {'share':>6}  {'kind':<7} {'domain':<18} kernel"]
        for r in rows:
            lines.append(f"{'#' + str(r.index):>5}  {r.seconds * 1e6:9.2f}  {100 * r.share:5.1f}%  "
                         f"{r.kind:<7} {r.domain:<18} {r.label}")
        if len(rows) < len(self.rows):
            rest = self.rows[len(rows):]
            lines.append(f"{'':>5}  {sum(r.seconds for r in rest) * 1e6:9.2f}  "
                         f"{100 * sum(r.share for r in rest):5.1f}%  ({len(rest)} more)")
        return "\n".join(lines)

    def __str__(self):
        return self.text()


def _describe(step) -> tuple[str, str]:
    k = step.kernel
    kind = k.kind if step.role == "kernel" else step.role
    if kind == "matmul":
        kind = "gemm" if step.matmul_plan is not None else "matmul"
    dom = "x".join(str(d) for d in k.shape) if k.shape else "scalar"
    return kind, dom


def run_profile(pf, args: tuple, kwargs: dict, repeat: int) -> Profile:
    """Call ``pf``, a function compiled with the counters
    (:meth:`graphc.compiler.CompiledFunction.profile` makes it), ``1 +
    repeat`` times and read them."""
    steps = pf.plan.steps
    pf(*args, **kwargs)                   # warm-up (and the arguments are checked here)
    arena = pf._native.arena()
    counters = arena[pf._profile_offset:pf._profile_offset + 8 * len(steps)].view(np.int64)
    clock = _clock()
    before = counters.copy()
    c0, t0 = clock(), time.perf_counter()
    for _ in range(repeat):
        pf(*args, **kwargs)
    c1, t1 = clock(), time.perf_counter()
    cycles = (counters - before).astype(np.float64)
    per_cycle = (t1 - t0) / max(c1 - c0, 1)
    call = (t1 - t0) / repeat
    rows = []
    for s, c in zip(steps, cycles):
        sec = c * per_cycle / repeat
        kind, dom = _describe(s)
        rows.append(KernelTime(s.index, s.name or kind, kind, dom, sec, sec / call if call else 0.0))
    rows.sort(key=lambda r: -r.seconds)
    return Profile(rows, call, repeat)
