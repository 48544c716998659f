"""Object code for an exported graph: the graph's module, the runtime
components it calls and its embedded data, compiled by llvmlite for the host
CPU as position-independent code.

Every symbol graphc defines or calls (``graphc_main``, the GEMMs, the thread
pool: names starting ``graphc_``) is renamed with the export's prefix, so two
exported graphs link into one program without clashes, and is given hidden
visibility, so a shared library exports only the C wrapper's functions.
"""
from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir

from ..backend.llvm import host, jit, rtlib
from ..backend.llvm.parallel import PIPELINE
from ..backend.llvm.worker import run_pipeline

OWN_PREFIX = "graphc_"
POOL_SYMBOL = "graphc_rt_parallel"     # the pool's entry; the C wrapper interposes on it


def target_machine(opt: int = 3):
    """A target machine for the host CPU and its features that emits
    position-independent code (a new one per call: cheap, and never shared
    with the JIT's)."""
    jit.target_params()                          # (LLVM initialized, the data layout known)
    h = host.cpu()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=h["cpu"], features=h["features"], opt=opt,
                                        reloc="pic", codemodel="default")


def _rename(mod, prefix: str, rename: dict) -> None:
    """Prefix every ``graphc_`` global of ``mod`` (definitions and
    declarations alike); make the definitions hidden."""
    for g in list(mod.functions) + list(mod.global_variables):
        name = g.name
        if name in rename:
            g.name = rename[name]
        elif name.startswith(OWN_PREFIX):
            g.name = prefix + name
        else:
            continue
        if not g.is_declaration and g.linkage == llvm.Linkage.external:
            g.visibility = "hidden"


def compile_ir(ir_text: str, prefix: str, opt: int, tuning: dict | None,
               rename: dict | None = None) -> bytes:
    """Optimize IR text as graphc's JIT does (same pipeline, same tuning,
    same CPU), with its symbols renamed, and emit a PIC object file."""
    tm = target_machine(opt)
    with jit._lock:          # llvmlite's global LLVM context is not thread-safe
        mod = llvm.parse_assembly(ir_text)
        mod.triple = host.cpu()["triple"]
        mod.data_layout = str(tm.target_data)
        mod.verify()
        _rename(mod, prefix, rename or {})
        if opt > 0:
            run_pipeline(llvm, mod, tm, opt, tuning)
        return tm.emit_object(mod)


def graph_object(ir_text: str, prefix: str, opt: int) -> bytes:
    """The graph's module (``f.llvm_ir``) as object code."""
    return compile_ir(ir_text, prefix, opt, PIPELINE.get(opt))


def component_object(name: str, prefix: str) -> bytes:
    """Runtime component ``name`` (rtlib.COMPONENTS) as object code. The
    pool's entry is renamed ``<prefix>graphc_rt_parallel_impl``: the wrapper
    defines ``<prefix>graphc_rt_parallel``, which caps its thread count."""
    emit, _symbols, tuning, opt = rtlib.COMPONENTS[name]
    m = ir.Module(f"graphc_rt_{name}")
    emit(m)
    rename = {POOL_SYMBOL: prefix + POOL_SYMBOL + "_impl"}
    return compile_ir(str(m), prefix, opt, tuning, rename)


def data_object(blobs: list[tuple[str, bytes, bool]]) -> bytes:
    """An object file defining each ``(symbol, bytes, writable)`` as a
    64-byte-aligned hidden global: read-only data unless ``writable``."""
    m = ir.Module("graphc_export_data")
    for sym, data, writable in blobs:
        t = ir.ArrayType(ir.IntType(8), max(1, len(data)))
        g = ir.GlobalVariable(m, t, sym)
        g.initializer = ir.Constant(t, bytearray(data or b"\0"))
        g.global_constant = not writable
        g.align = 64
        g.visibility = "hidden"
    tm = target_machine(0)
    with jit._lock:
        mod = llvm.parse_assembly(str(m))
        mod.triple = host.cpu()["triple"]
        mod.data_layout = str(tm.target_data)
        return tm.emit_object(mod)
