"""``python -m graphc bench``: graphc against numpy, JAX and PyTorch.

Runs the registered workloads (``workloads.py``) on graphc compiled,
graphc interpreted, numpy and -- when installed -- ``jax.jit``, PyTorch eager
and ``torch.compile``, in one process, with one thread count for all
(``peers.py``); checks every result against a float64 numpy reference; times
them in interleaved rounds (``timing.py``); prints a table of medians and
ratios, and writes JSON and a PNG chart on request (``report.py``).

From Python::

    from graphc.bench import run
    results = run(only=["elemwise"], quick=True, impls=["graphc", "numpy"])
"""
from __future__ import annotations

import argparse
import sys

from . import train as _train  # noqa: F401 - registers train_step
from . import workloads as _workloads  # noqa: F401 - registers the workloads
from .runner import Options, Runner, default_command
from .targets import Target
from .workloads import WORKLOADS, Case, Skip, impls, workload

__all__ = ["run", "main", "add_arguments", "Options", "WORKLOADS", "workload", "Case",
           "Target", "impls", "Skip"]

QUICK_DEFAULTS = {"repeat": 5, "min_time": 0.05, "compile_repeat": 1}
FULL_DEFAULTS = {"repeat": 21, "min_time": 0.5, "compile_repeat": 5}


def _csv(s: str) -> list:
    return [x.strip() for x in s.split(",") if x.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", type=_csv, metavar="WORKLOAD[,..]",
                   help=f"run only these workloads (of: {', '.join(WORKLOADS)})")
    p.add_argument("--impls", type=_csv, metavar="IMPL[,..]",
                   help="run only these implementations (of: graphc, graphc-interp, numpy, "
                        "jax.jit, torch, torch.compile)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads for every implementation (default: the number of CPUs)")
    p.add_argument("--repeat", type=int, metavar="N",
                   help="samples per implementation (default 21; 5 with --quick)")
    p.add_argument("--min-time", type=float, metavar="S",
                   help="seconds of samples per implementation and case (default 0.5)")
    p.add_argument("--compile-repeat", type=int, metavar="N",
                   help="fresh compiles after the first, compile workload (default 5)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="what ratios and targets compare: wall-clock medians (default) or "
                        "process CPU time per call (steadier with --threads 1 on a busy machine)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few samples (tests)")
    p.add_argument("--skip-slow-peers", action="store_true",
                   help="skip torch.compile (its first compile takes 10 s or more)")
    p.add_argument("--slow-timeout", type=float, default=600.0, metavar="S",
                   help="give up on a slow peer's compile after S seconds (default 600)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--png", metavar="PATH", help="write a chart (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def options_from_args(a: argparse.Namespace) -> Options:
    d = QUICK_DEFAULTS if a.quick else FULL_DEFAULTS
    pick = lambda v, k: d[k] if v is None else v
    if a.threads is not None and a.threads < 1:
        raise ValueError(f"bench: --threads must be >= 1, got {a.threads}")
    o = Options(only=a.only, impls=a.impls, threads=a.threads,
                repeat=pick(a.repeat, "repeat"), min_time=pick(a.min_time, "min_time"),
                compile_repeat=pick(a.compile_repeat, "compile_repeat"),
                slow_compile_repeat=0 if a.quick else 1, quick=a.quick,
                skip_slow_peers=a.skip_slow_peers, slow_timeout=a.slow_timeout,
                progress=not a.quiet, clock=a.clock, command=default_command())
    if o.repeat < 1 or o.min_time <= 0 or o.compile_repeat < 0:
        raise ValueError("bench: --repeat must be >= 1, --min-time > 0, --compile-repeat >= 0")
    if o.impls is not None:
        from .workloads import IMPL_ORDER
        bad = [i for i in o.impls if i not in IMPL_ORDER]
        if bad:
            raise ValueError(f"bench: unknown implementation(s) {bad}; one of {list(IMPL_ORDER)}")
    return o


def run(**kwargs) -> dict:
    """Run the benchmark with :class:`Options` fields as keywords; return the
    results (the structure written by ``--json``)."""
    kwargs.setdefault("progress", False)
    quick = kwargs.get("quick", False)
    for k, v in (QUICK_DEFAULTS if quick else FULL_DEFAULTS).items():
        kwargs.setdefault(k, v)
    return Runner(Options(**kwargs)).run()


def run_from_args(a: argparse.Namespace) -> int:
    from .report import format_report, write_json, write_png
    try:
        opts = options_from_args(a)
        results = Runner(opts).run()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(results), flush=True)
    if a.json:
        write_json(results, a.json)
        print(f"wrote {a.json}")
    if a.png:
        why = write_png(results, a.png)
        print(why if why else f"wrote {a.png}")
    return 1 if results["mismatches"] else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m graphc bench", description=__doc__.split("\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    if argv is None:                       # the real command line: may restart itself
        from .peers import reexec_with_short_spin
        reexec_with_short_spin()
    return run_from_args(args)
