"""Command line: ``python -m graphc demo`` (and more subcommands as they land)."""
from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m graphc",
                                description="graphc: a static computation-graph compiler")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="train an MLP on a spiral, compiled vs interpreted (or, "
                                    "with --cnn, a CNN on the 8x8 digits)")
    d.add_argument("--steps", type=int, default=None, help="training steps (default 1000)")
    d.add_argument("--lr", type=float, default=None,
                   help="Adam's learning rate (default 0.01; 0.003 with --cnn)")
    d.add_argument("--cnn", action="store_true",
                   help="train a LeNet-style CNN on the 8x8 handwritten digits instead")
    d.add_argument("--epochs", type=int, default=None, help="epochs of --cnn (default 15)")
    sub.add_parser("info", help="print versions and the host CPU LLVM targets")
    ins = sub.add_parser("inspect", help="run a script and print the report of every graph "
                                         "it compiles")
    ins.add_argument("script", help="a Python script that calls graphc.compile")
    ins.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    ins.add_argument("--dump", metavar="DIR", help="also dump every stage of every graph to DIR")
    ins.add_argument("--plan", action="store_true",
                     help="also print each graph's complete plan (kernels in run order, arena)")
    c = sub.add_parser("cache", help="the on-disk compile cache")
    c.add_argument("action", choices=["info", "clear"])
    from .bench import add_arguments as bench_arguments
    bench_arguments(sub.add_parser("bench", help="benchmark graphc against numpy, JAX, PyTorch "
                                                 "(see docs/benchmarks.md)"))
    args = p.parse_args(argv)
    if args.cmd == "cache":
        from . import cache
        if args.action == "info":
            i = cache.info()
            where = i["directory"] or "disabled (GRAPHC_CACHE_DIR is empty or GRAPHC_CACHE=0)"
            print(f"graphc compile cache: {where}")
            print(f"  {i['entries']} entries, {i['bytes']} bytes on disk")
            for path in cache.entries()[-10:]:
                try:
                    h, _ = cache.read_entry(path)
                    state = f"ok, {h['n_outputs']} output(s), arena {h['arena_size']} B"
                except (cache.BadEntry, OSError, ValueError, KeyError) as e:
                    state = f"BAD ({e})"
                print(f"  {os.path.basename(path)[:16]}...  {os.path.getsize(path):8d} B  {state}")
        else:
            print(f"removed {cache.clear()} entries from {cache.cache_dir()}")
        return 0
    if args.cmd == "inspect":
        return inspect_script(args.script, args.args, args.dump, args.plan)
    if args.cmd == "demo":
        if args.cnn:
            if args.steps is not None:
                p.error("demo --cnn trains for --epochs, not --steps")
            if args.epochs is not None and args.epochs < 1:
                p.error(f"demo --cnn: --epochs must be positive, got {args.epochs}")
            from .demo_cnn import main as demo_cnn
            demo_cnn(epochs=args.epochs, lr=args.lr)
        else:
            if args.epochs is not None:
                p.error("--epochs is an option of demo --cnn (the MLP demo takes --steps)")
            from .demo import main as demo
            demo(steps=args.steps, lr=args.lr)
    elif args.cmd == "bench":
        from .bench import run_from_args
        if argv is None:                   # the real command line: may restart itself
            from .bench.peers import reexec_with_short_spin
            reexec_with_short_spin()
        return run_from_args(args)
    elif args.cmd == "info":
        import llvmlite
        import numpy

        from .backend.llvm.host import host_info
        from .version import __version__
        h = host_info()
        print(f"graphc {__version__}, numpy {numpy.__version__}, llvmlite {llvmlite.__version__}, "
              f"LLVM {h['llvm']}")
        print(f"host: {h['triple']}, cpu {h['cpu']}")
    return 0


def inspect_script(script: str, argv: list, dump_dir: str | None = None,
                   plan: bool = False) -> int:
    """Run ``script`` as __main__; print the report of each function it
    compiles (and its plan, with ``plan``)."""
    import os
    import runpy

    from . import compiler
    count = [0]

    def hook(f):
        count[0] += 1
        print(f"\n=== graphc: compiled function #{count[0]} "
              f"({f.compile_seconds * 1e3:.1f} ms) ===", flush=True)
        print(f.report(), flush=True)
        if plan and f.plan is not None:
            print("\n" + f.plan_text(), flush=True)
        if dump_dir:
            print(f"dumped to {f.dump(dump_dir)}", flush=True)
    if not os.path.exists(script):
        print(f"graphc inspect: no such script: {script}", file=sys.stderr)
        return 2
    compiler._hooks.append(hook)
    old_argv = sys.argv
    sys.argv = [script, *argv]
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        sys.argv = old_argv
        compiler._hooks.remove(hook)
    print(f"\ngraphc inspect: {count[0]} compiled function(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
