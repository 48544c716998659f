"""``graphc.compile``: from output nodes to a callable.

The steps, in order (see docs/architecture.md):

1. collect the graph reachable from the outputs (``ir/graph.py``);
2. run the pass pipeline (``passes/``);
3. plan kernels and memory (``backend/plan.py``);
4. emit one LLVM module (``backend/llvm/emit.py``) and JIT it (``jit.py``);
5. wrap the native entry in a :class:`CompiledFunction` that checks
   arguments and calls it (``runtime.py``).
"""
from __future__ import annotations

import os
import time

import numpy as np

from .backend import interp
from .errors import InputError, ShapeError
from .ir.graph import Graph
from .ir.node import Node
from .runtime import CALLBACK_SYMBOL, SLOW, HostedCall, NativeCall, bind_inputs, fast_call

BACKENDS = ("llvm", "interp")
_num_threads: list = []


def default_threads() -> int:
    """``GRAPHC_NUM_THREADS``, else the CPUs this process may run on."""
    env = os.environ.get("GRAPHC_NUM_THREADS")
    if env:
        try:
            return max(1, min(256, int(env)))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def get_num_threads() -> int:
    """The number of threads compiled functions use (unless compile(threads=...))."""
    return _num_threads[0] if _num_threads else default_threads()


def set_num_threads(n: int) -> None:
    """Set the number of threads for functions compiled from now on."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 256:
        raise ValueError(f"set_num_threads: expected an int from 1 to 256, got {n!r}")
    _num_threads[:] = [n]


def _as_outputs(outputs):
    if isinstance(outputs, Node):
        return [outputs], True
    if isinstance(outputs, (list, tuple)):
        outs = list(outputs)
        if not outs:
            raise ValueError("compile: no outputs given")
        for o in outs:
            if not isinstance(o, Node):
                raise TypeError(f"compile: outputs must be graph nodes, got {type(o).__name__}")
        return outs, False
    raise TypeError(f"compile: outputs must be a node or a list of nodes, "
                    f"got {type(outputs).__name__}")


def _check_updates(updates) -> list:
    """Validate ``updates={parameter: new_value}``; return (param, node) pairs."""
    from .errors import DTypeError, ShapeError
    from .ir import dtypes as D
    from .ops.common import as_node
    from .ops.elementwise import cast
    from .ops.movement import broadcast_to
    if updates is None:
        return []
    items = list(updates.items()) if isinstance(updates, dict) else list(updates)
    out, seen = [], set()
    for item in items:
        try:
            p, v = item
        except (TypeError, ValueError):
            raise TypeError("compile: updates must be a dict {parameter: new_value}") from None
        if not isinstance(p, Node) or p.op != "parameter":
            raise TypeError(f"compile: updates keys must be parameters, got {p!r}")
        if p.id in seen:
            raise ValueError(f"compile: parameter {p.name!r} is updated twice")
        seen.add(p.id)
        v = as_node(v)
        if v.shape != p.shape:
            try:
                v = broadcast_to(v, p.shape)
            except ShapeError:
                raise ShapeError(f"compile: update of parameter {p.name!r} {p.shape} has "
                                 f"shape {v.shape}") from None
        if v.dtype != p.dtype:
            if not (D.is_float(v.dtype) and D.is_float(p.dtype)):
                raise DTypeError(f"compile: update of parameter {p.name!r} ({p.dtype}) has "
                                 f"dtype {v.dtype}")
            v = cast(v, p.dtype)
        out.append((p, v))
    return out


def _check_inputs(graph: Graph, inputs) -> None:
    used = [n for n in graph.nodes if n.op == "placeholder"]
    if inputs is None:
        names = {}
        for p in used:
            if p.name in names:
                raise InputError(f"compile: two different placeholders are named {p.name!r}; "
                                 "give them distinct names or pass inputs=[...] to call "
                                 "positionally")
            names[p.name] = p
        return
    for p in inputs:
        if not isinstance(p, Node) or p.op != "placeholder":
            raise TypeError(f"compile: inputs must be placeholders, got {p!r}")
    ids = [p.id for p in inputs]
    if len(set(ids)) != len(ids):
        raise InputError("compile: a placeholder appears twice in inputs")
    missing = [p.name for p in used if p.id not in set(ids)]
    if missing:
        raise InputError(f"compile: the outputs use placeholder(s) {missing} not listed in inputs")


class CompiledFunction:
    """A compiled graph. Call it with the placeholders' values.

    Inspection: ``passes`` (one :class:`~graphc.passes.PassRecord` per pass),
    ``report()``, ``why_not_fused(a, b)``, ``kernels``/``num_kernels``,
    ``memory``, ``plan``/``plan_text()`` (every kernel in run order, the
    arena), ``llvm_ir``, ``llvm_ir_optimized``, ``asm``, ``graph`` (the
    optimized graph) and ``source_graph`` (as given).
    """

    def __init__(self, graph: Graph, single: bool, positional: bool, backend: str):
        self._graph = graph
        self.source_graph = graph
        self._single = single
        self._positional = positional
        self.backend = backend
        self.opt_level = None
        self.compile_seconds = 0.0
        self.llvm_seconds = 0.0
        self._llvm_ir = None
        self._jit = None
        self._native = None
        self._fast = None            # runtime.fast_call: the call of checked arrays
        self._kernels = []
        self._memory = None
        self._schedule = None        # the complete Plan (backend/schedule.py)
        self._passes = []
        self._fusion_reasons = {}
        self._node_map = {}
        self._kernel_of = None
        self._plan_args = None       # set on a cache hit: the plan is rebuilt on request
        self.cache_hit = False       # False, "memory" or "disk"
        self._dynamic = None         # dynamic.DynamicCall when a placeholder is symbolic
        self._dyn_fast = None        # its fast form for partial batches (full ones: _fast)
        self.threads = 1
        self._options = (3, None, False)     # opt_level, passes, fast_math (see compile)
        self._out_specs = [(o.shape, o.dtype) for o in graph.outputs]
        self._miss_reason = ""       # a string, or a cache.MissExplainer (asked lazily)

    @property
    def cache_miss_reason(self) -> str:
        """Why this compile missed the cache ("" on a hit): which components
        differ from the closest graph cached when it was compiled. Worked out
        on first access (it reads the cache's entries)."""
        if callable(self._miss_reason):
            self._miss_reason = self._miss_reason()
        return self._miss_reason

    # -- the plan (computed at compile time, or on request after a cache hit) ----------
    def _ensure_plan(self):
        if self._plan_args is not None:
            args, self._plan_args = self._plan_args, None
            _plan(self, *args)

    @property
    def graph(self) -> Graph:
        self._ensure_plan()
        return self._graph

    @property
    def passes(self) -> list:
        self._ensure_plan()
        return self._passes

    @property
    def kernels(self) -> list:
        self._ensure_plan()
        return self._kernels

    @property
    def memory(self):
        self._ensure_plan()
        return self._memory

    @property
    def plan(self):
        """The complete plan (:class:`graphc.backend.schedule.Plan`): every
        kernel in run order with its buffers and threads, and the arena."""
        self._ensure_plan()
        return self._schedule

    def plan_text(self) -> str:
        """The plan as stable text (:meth:`Plan.text`); "" for the interpreter."""
        return self.plan.text() if self.plan is not None else ""

    @property
    def fusion_reasons(self) -> dict:
        self._ensure_plan()
        return self._fusion_reasons

    @property
    def llvm_ir(self) -> str | None:
        self._ensure_plan()
        return self._llvm_ir

    @property
    def llvm_ir_optimized(self) -> str | None:
        return self._jit.optimized_ir if self._jit else None

    @property
    def asm(self) -> str | None:
        return self._jit.assembly() if self._jit else None

    @property
    def num_kernels(self) -> int:
        return len(self.kernels)

    # -- inspection -----------------------------------------------------------------
    def report(self) -> str:
        """A table of the passes, the kernels and the memory plan."""
        from .report import report
        return report(self)

    def why_not_fused(self, a: Node, b: Node) -> str:
        """Why nodes ``a`` and ``b`` (of the graph you built) are in
        different kernels."""
        from .report import why_not_fused
        return why_not_fused(self, a, b)

    def current(self, n: Node) -> Node:
        """The node of the optimized graph that computes what ``n`` computed."""
        return self._node_map.get(n.id, n)

    def graph_node(self, nid: int) -> Node:
        for n in self.graph.nodes:
            if n.id == nid:
                return n
        raise KeyError(nid)

    def kernel_of(self, n: Node) -> int | None:
        """Index of the kernel computing node ``n`` (None for leaves)."""
        if self._kernel_of is None:
            self._kernel_of = {}
            for i, k in enumerate(self.kernels):
                for m in k.members:
                    self._kernel_of.setdefault(m, i)
                for o in k.outputs:
                    self._kernel_of.setdefault(o.id, i)
        return self._kernel_of.get(self.current(n).id)

    def profile(self, *args, repeat: int = 20, **kwargs):
        """Time every kernel: compile the graph again with a cycle counter
        around each kernel call (one thread), call it ``repeat`` times with
        these arguments (a step with ``updates`` updates its parameters each
        time, as a call does) and return a :class:`graphc.profile.Profile`,
        whose text is a table of the kernels, slowest first."""
        from .profile import run_profile
        if self.backend != "llvm":
            raise ValueError(f"profile: needs a function compiled with backend='llvm', this "
                             f"one uses {self.backend!r}")
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            raise ValueError(f"profile: repeat must be a positive int, got {repeat!r}")
        if getattr(self, "_profiled", None) is None:
            opt_level, passes, fast_math = self._options
            pf = CompiledFunction(self.source_graph, self._single, self._positional, "llvm")
            pf.opt_level = opt_level
            art = _build_native(pf, self.source_graph, opt_level, passes, fast_math, 1,
                                "profile", profile=True)
            _bind_native(pf, self.source_graph, art)
            pf._profile_offset = art.extra["profile"]
            self._profiled = pf
        return run_profile(self._profiled, args, kwargs, repeat)

    def to_onnx(self, path=None):
        """This function's graph (as given to ``compile``) as an
        ``onnx.ModelProto`` (opset 18; inputs in the call's order, outputs
        ``output_0``...), also written to ``path`` when given. Needs the
        ``onnx`` package (``pip install graphc[onnx]``); see docs/onnx.md."""
        return _export(self, "onnx", path)

    def export(self, directory: str, name: str = "model", **options):
        """Write this function as a standalone C library: ``lib<name>.so``
        (or ``.a``), ``<name>.h`` and a README in ``directory`` (see
        :func:`graphc.export.export` for the options, docs/export.md)."""
        if self._dynamic is not None:
            names = [p.name for p in self.source_graph.placeholders if p.batch is not None]
            raise ShapeError(f"export: input(s) {names} have a symbolic batch dimension, which "
                             f"the C interface does not take yet; compile with fixed shapes "
                             f"to export")
        from .export import export
        return export(self, directory, name, **options)

    def dump(self, directory: str) -> str:
        """Write passes, DOT, LLVM IR and assembly to ``directory``."""
        from .report import dump
        return dump(self, directory)

    def _run(self, inputs: list, override: dict | None = None) -> list:
        """Run on checked arrays, one per placeholder; the list of results.
        ``override``: parameter id -> its value for this call only."""
        if self._native is None:
            g = self.source_graph
            feeds = {p.id: a for p, a in zip(g.placeholders, inputs)}
            if override:
                feeds.update(override)
            return interp.run_graph(g, feeds)
        results = [np.empty(shape, dt) for shape, dt in self._out_specs]
        if override:
            self._native(inputs, results, override)
        else:
            self._native(inputs, results)
        return results

    def __call__(self, *args, **kwargs):
        if self._fast is not None and not kwargs:
            result = self._fast(args)
            if result is not SLOW:
                return result
        if self._dynamic is not None:        # symbolic placeholders (dynamic.py)
            if self._dyn_fast is not None and not kwargs:
                result = self._dyn_fast(args)       # a partial batch, padded
                if result is not SLOW:
                    return result
            results = self._dynamic(self._run, args, kwargs)
            return results[0] if self._single else tuple(results)
        g = self.source_graph
        inputs = bind_inputs(g, self._positional, args, kwargs)
        if self._native is None:
            feeds = {p.id: a for p, a in zip(g.placeholders, inputs)}
            results = interp.run_graph(g, feeds)
            return results[0] if self._single else tuple(results)
        results = [np.empty(shape, dt) for shape, dt in self._out_specs]
        self._native(inputs, results)
        return results[0] if self._single else tuple(results)

    def __repr__(self):
        ins = ", ".join(p.name for p in self.graph.placeholders)
        return (f"<graphc compiled function ({ins}) -> {len(self.graph.outputs)} output(s), "
                f"backend={self.backend}, {len(self.graph)} nodes, {self.num_kernels} kernels>")


def used_components(module) -> list:
    from .backend.llvm import rtlib
    return rtlib.used(module)


def _plan(f: CompiledFunction, graph: Graph, opt_level: int, passes, fast_math: bool,
          threads: int = 1, profile: bool = False):
    """Run the pass pipeline, complete and verify the plan, and emit the
    LLVM module (not compiled)."""
    from .backend.llvm.emit import ModuleEmitter
    from .backend.llvm.planner import build_plan
    from .backend.schedule import verify_plan
    from .passes import PassContext, Pipeline, default_pipeline
    ctx = PassContext(opt_level=opt_level, fast_math=fast_math)
    pipeline = Pipeline(passes) if passes is not None else default_pipeline(opt_level)
    f._graph, f._passes = pipeline.run(graph, ctx)
    f._kernels, f._memory = ctx.kernels, ctx.memory
    f._fusion_reasons = ctx.fusion_reasons
    f._node_map = ctx.node_map
    f._schedule = build_plan(f._graph, f._kernels, f._memory, threads)
    verify_plan(f._schedule)
    me = ModuleEmitter(f._schedule, profile=profile)
    f._llvm_ir = str(me.emit())
    f._runtime = used_components(me.module)
    return me


def _compile_native(f: CompiledFunction, graph: Graph, opt_level: int, passes, fast_math,
                    use_cache: bool = True, threads: int = 1):
    """Compile through the cache: memory, then disk, then passes + LLVM."""
    from . import cache
    names = None if passes is None else [p if isinstance(p, str) else
                                         f"{type(p).__module__}.{type(p).__qualname__}"
                                         for p in passes]
    portable = passes is None or all(isinstance(p, str) for p in passes)
    options = {"opt_level": opt_level, "fast_math": bool(fast_math), "passes": names,
               "threads": threads, "portable": portable}
    comps, portable = cache.components(graph, options)
    if not portable:            # in-memory only: key also by the objects themselves
        comps = dict(comps, objects=repr(sorted(id(p) for p in passes or [] if
                                                not isinstance(p, str))))
    key = cache.key_of(comps)
    art = cache.memory_get(key) if use_cache else None
    if art is not None:
        f.cache_hit = "memory"
    elif use_cache and portable and (entry := cache.disk_get(key)) is not None:
        try:
            art, _ = cache.artifact_from_disk(*entry)
            f.cache_hit = "disk"
            cache.memory_put(key, art, comps)
        except Exception as e:       # unloadable object code: rebuild, and drop the entry
            art = None
            cache.disk_drop(key, f"its code could not be loaded: {type(e).__name__}: {e}")
    if art is None:
        f._miss_reason = cache.MissExplainer(comps) if use_cache else "cache=False"
        art = _build_native(f, graph, opt_level, passes, fast_math, threads, key)
        if use_cache:
            cache.memory_put(key, art, comps)
            if portable:
                cache.disk_put(key, comps, art)
    else:
        f._plan_args = (graph, opt_level, passes, fast_math, threads)
    _bind_native(f, graph, art)
    if f._positional:
        f._fast = fast_call(f._native, graph, f._out_specs, f._single)
        if f._dynamic is not None:        # partial batches: pad, set the size, call _fast
            f._dyn_fast = f._dynamic.fast(
                lambda size: fast_call(f._native, graph, f._out_specs, f._single, override=size),
                f._single)
            # (_fast itself takes full batches: between calls every size is its bound)


def _build_native(f: CompiledFunction, graph: Graph, opt_level: int, passes, fast_math,
                  threads: int, key: str, profile: bool = False):
    """Plan ``graph`` into ``f`` and compile it to native code: a cache Artifact."""
    from . import cache
    from .backend.llvm import parallel
    from .backend.llvm.emit import ENTRY
    parallel.prestart(len(graph.nodes))     # a worker for LLVM, starting while we plan
    t1 = time.perf_counter()
    me = _plan(f, graph, opt_level, passes, fast_math, threads, profile)
    jit = parallel.compile_module(f._llvm_ir, ENTRY, opt=opt_level)
    slots, arrays = cache.slots_for(graph, me.plan.layout)
    extra = {"opt": opt_level, "rt": f._runtime}
    if _calls_back(me.module):
        extra["host"] = True     # runs Python while it runs: may be re-entered
    if profile:
        extra["profile"] = me.profile_offset
    art = cache.Artifact(jit, slots, arrays, len(graph.outputs), me.arena_size, me.errors, key,
                         extra)
    f.llvm_seconds = time.perf_counter() - t1
    return art


def _bind_native(f: CompiledFunction, graph: Graph, art) -> None:
    """Make ``f`` call the artifact's code on its graph's arrays."""
    from . import cache
    f._jit = art.jit
    call = HostedCall if art.extra.get("host") else NativeCall
    f._native = call(art.jit, cache.BoundLayout(art, graph), art.arena_size, art.errors)


def _calls_back(module) -> bool:
    """Whether the code calls host callbacks (so runs Python code while it
    runs, and may be re-entered: it needs :class:`~graphc.runtime.HostedCall`)."""
    return CALLBACK_SYMBOL in module.globals


# Exporters by format, ``fmt -> fn(compiled_function, path) -> model``: a
# front end registers one (``import graphc`` adds ``"onnx"``, which imports
# graphc.onnx when called), so ``CompiledFunction.to_onnx`` needs no import
# of a layer above this one (tests/test_layers.py).
EXPORTERS: dict = {}


def _export(f: CompiledFunction, fmt: str, path):
    fn = EXPORTERS.get(fmt)
    if fn is None:
        raise RuntimeError(f"to_{fmt}: no {fmt} exporter is registered "
                           f"(graphc.compiler.EXPORTERS has {sorted(EXPORTERS)}); "
                           f"`import graphc` registers the ONNX one")
    return fn(f, path)


_hooks: list = []     # callables run on every compiled function (``python -m graphc inspect``)


def compile(outputs, inputs=None, *, backend: str = "llvm",  # noqa: A001
            updates=None, opt_level: int = 3, passes=None, fast_math: bool = False,
            dump: str | None = None, cache: bool = True,
            threads: int | None = None) -> CompiledFunction:
    """Compile output node(s) into a callable.

    ``outputs``: a node (the call returns one array) or a list/tuple of nodes
    (returns a tuple). ``inputs``: the positional order of placeholders;
    without it placeholders are passed by keyword (their names).
    ``backend``: ``"llvm"`` (native code) or ``"interp"`` (numpy, no passes).
    ``updates``: ``{parameter: new_value_node}``; after each call every such
    parameter holds its new value, all computed from the values before the
    call. The compiled kernel writes them in place.
    ``opt_level``: 0 (no graph passes, one kernel per op, LLVM O0) to 3
    (every pass, fusion, in-place memory; LLVM's O2 pass pipeline and O3
    code generation: as fast as its O3 pipeline, quicker to build). ``passes``: an explicit
    list of pass names or Pass objects instead of the default pipeline
    (``fusion`` and ``memory`` are appended when missing); it is checked
    first: unknown names, and orders the passes do not accept (a pass that
    changes the graph after ``fusion``, ``memory`` before ``fusion``, a
    planning pass twice), raise :class:`graphc.passes.PipelineError`.
    ``fast_math``: allow rewrites that are exact only for finite values.
    ``dump``: a directory to write every pass, the LLVM IR and the assembly
    to (also set by the environment variable ``GRAPHC_DUMP``).
    ``threads``: how many threads the kernel may use (default
    :func:`graphc.get_num_threads`); large loop nests, reductions and GEMMs
    are split across them, small ones run on one.
    ``cache``: look the compilation up in (and add it to) the compile cache
    (``GRAPHC_CACHE_DIR``; see docs/reliability.md); False always compiles.
    """
    t0 = time.perf_counter()
    if backend not in BACKENDS:
        raise ValueError(f"compile: unknown backend {backend!r} (one of {BACKENDS})")
    if opt_level not in (0, 1, 2, 3) or isinstance(opt_level, bool):
        raise ValueError(f"compile: opt_level must be 0, 1, 2 or 3, got {opt_level!r}")
    if threads is None:
        threads = get_num_threads()
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 256:
        raise ValueError(f"compile: threads must be an int from 1 to 256, got {threads!r}")
    if passes is not None:         # a list of known passes in an order they accept
        from .passes import Pipeline, pass_list
        passes = pass_list(passes)
        Pipeline(passes)
    outs, single = _as_outputs(outputs)
    if inputs is not None:
        inputs = list(inputs)
    graph = Graph(outs, inputs, _check_updates(updates))
    _check_inputs(graph, inputs)
    if inputs is None:
        graph = Graph(outs, graph.placeholders, graph.updates)   # fix the interface
    f = CompiledFunction(graph, single, inputs is not None, backend)
    if any(p.batch is not None for p in graph.placeholders):
        from .dynamic import DynamicCall, check_updates
        check_updates(graph)
        f._dynamic = DynamicCall(graph, graph.outputs, inputs is not None)
    f.opt_level = opt_level
    f._options = (opt_level, passes, fast_math)
    if backend == "llvm":
        _compile_native(f, graph, opt_level, passes, fast_math, use_cache=cache, threads=threads)
        f.threads = threads
    f.compile_seconds = time.perf_counter() - t0
    dump = dump or os.environ.get("GRAPHC_DUMP")
    if dump:
        f.dump(dump)
    for h in list(_hooks):
        h(f)
    return f
