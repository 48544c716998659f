"""Command line: ``python -m graphc demo`` (and more subcommands as they land)."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m graphc",
                                description="graphc: a static computation-graph compiler")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="train an MLP on a spiral, compiled vs interpreted")
    d.add_argument("--steps", type=int, default=2000)
    d.add_argument("--lr", type=float, default=0.5)
    sub.add_parser("info", help="print versions and the host CPU LLVM targets")
    from .bench import add_arguments as bench_arguments
    bench_arguments(sub.add_parser("bench", help="benchmark graphc against numpy, JAX, PyTorch "
                                                 "(see docs/benchmarks.md)"))
    args = p.parse_args(argv)
    if args.cmd == "demo":
        from .demo import main as demo
        demo(steps=args.steps, lr=args.lr)
    elif args.cmd == "bench":
        from .bench import run_from_args
        return run_from_args(args)
    elif args.cmd == "info":
        import llvmlite
        import numpy

        from . import __version__
        from .backend.llvm.jit import host_info
        h = host_info()
        print(f"graphc {__version__}, numpy {numpy.__version__}, llvmlite {llvmlite.__version__}, "
              f"LLVM {h['llvm']}")
        print(f"host: {h['triple']}, cpu {h['cpu']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
