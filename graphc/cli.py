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
    ex = sub.add_parser("export", help="compile a model ahead of time to a C library and "
                                       "header (see docs/export.md)")
    ex.add_argument("model", help="an ONNX file (a graph saved by graphc.onnx.save, or any "
                                  "model graphc.onnx.load imports), or script.py:function "
                                  "returning a compiled function")
    ex.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write to")
    ex.add_argument("--name", default="model", help="the C prefix: lib<name>.so, <name>.h, "
                                                    "<name>_run (default: model)")
    ex.add_argument("--params", choices=["embed", "input"], default="embed",
                    help="bake the parameters into the library, or pass them as inputs")
    ex.add_argument("--static", action="store_true", help="write lib<name>.a instead of .so")
    ex.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                    help="the shape of an ONNX input the model leaves symbolic (repeatable)")
    ex.add_argument("--threads", type=int, default=None, help="threads the code may use")
    ex.add_argument("--cc", default=None, help="the C compiler (default: $CC, else cc)")
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
    if args.cmd == "export":
        return export_command(p, args)
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


def _load_for_export(p, args):
    """(compiled function, output names) from the command line's model."""
    from . import compiler
    threads = {} if args.threads is None else {"threads": args.threads}
    if ":" in args.model and args.model.rsplit(":", 1)[0].endswith(".py"):
        import runpy
        path, fn = args.model.rsplit(":", 1)
        if not os.path.exists(path):
            p.error(f"export: no such script: {path}")
        if args.input_shape:
            p.error("export: --input-shape is for ONNX models")
        made = runpy.run_path(path, run_name="__graphc_export__").get(fn)
        if not callable(made):
            p.error(f"export: {path} defines no function {fn!r}")
        f = made()
        if not isinstance(f, compiler.CompiledFunction):
            p.error(f"export: {args.model} returned a {type(f).__name__}, not a compiled "
                    "function (graphc.compile(...))")
        return f, None
    if not os.path.exists(args.model):
        p.error(f"export: no such file: {args.model}")
    from .onnx import load
    shapes = {}
    for item in args.input_shape:
        name, _, dims = item.rpartition("=")
        try:
            shapes[name] = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            name = ""
        if not name:
            p.error(f"export: --input-shape takes NAME=D0,D1,..., got {item!r}")
    g = load(args.model, input_shapes=shapes or None)
    return g.compile(**threads), list(g.output_names)


def export_command(p, args) -> int:
    """``python -m graphc export``: the model compiled and exported."""
    from .errors import GraphcError
    f, names = _load_for_export(p, args)
    try:
        e = f.export(args.output, args.name, params=args.params, cc=args.cc,
                     kind="static" if args.static else "shared", output_names=names)
    except GraphcError as err:
        print(f"graphc export: {err}", file=sys.stderr)
        return 1
    i = e.interface
    print(f"wrote {e.library} ({os.path.getsize(e.library)} bytes), {e.header}, {e.readme}")
    for what, group in (("input", i.inputs), ("output", i.outputs)):
        for k, a in enumerate(group):
            print(f"  {what}s[{k}] {a.name!r}: {a.dtype}{list(a.shape)}"
                  f"{' (updated in place)' if a.updated else ''}")
    print(f"  workspace {i.workspace} bytes, up to {i.threads} thread(s), "
          f"{len(i.errors)} run-time check(s)")
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
