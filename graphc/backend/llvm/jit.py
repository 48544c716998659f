"""Compile LLVM IR text to machine code for the host CPU and JIT-load it.

IR building (emit.py) is kept apart from compiling (here): this module only
sees IR text. One target machine per process, built for the host CPU and its
features; the new pass manager runs the O-level pipeline; MCJIT loads the
object code. The engine is kept by the returned :class:`JitModule`, and its
code is freed when that object is dropped.
"""
from __future__ import annotations

import ctypes

import llvmlite.binding as llvm

from ... import forksafe
from . import host

_lock = forksafe.lock(globals(), "_lock", rank=2)   # (see graphc/forksafe.py)
_state: dict = {}


def _init():
    with _lock:
        if "tms" not in _state:
            h = host.cpu()
            target = llvm.Target.from_default_triple()
            cpu, feats = h["cpu"], h["features"]
            _state["cpu"] = cpu
            _state["features"] = feats
            _state["triple"] = h["triple"]
            tm = target.create_target_machine(cpu=cpu, features=feats, opt=3,
                                              codemodel="jitdefault")
            _state["data_layout"] = str(tm.target_data)
            _state["tms"] = {3: tm}
        return _state


def _new_target_machine(opt: int):
    st = _init()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=st["cpu"], features=st["features"], opt=opt,
                                        codemodel="jitdefault")


def target_machine(opt: int = 3):
    """The shared target machine for ``opt`` (pass pipelines, assembly).

    Never hand it to an execution engine: an MCJIT engine takes ownership of
    its target machine and deletes it with itself (see :class:`JitModule`)."""
    st = _init()
    with _lock:
        tm = st["tms"].get(opt)
        if tm is None:
            tm = st["tms"][opt] = _new_target_machine(opt)
        return tm


def _run_and_free(mpm, mod, pb) -> None:
    """Run a new-pass-manager pipeline, then free it. llvmlite's
    ModulePassManager never frees its native object (ObjectRef's no-op
    ``_dispose`` comes before NewPassManager's in the MRO), which leaked every
    pass and its caches — ~200 KB per O3 compile."""
    from llvmlite.binding.newpassmanagers import NewPassManager
    try:
        mpm.run(mod, pb)
    finally:
        if not mpm.closed:
            NewPassManager._dispose(mpm)
            mpm.detach()


def optimize(ir_text: str, opt: int = 3, tuning: dict | None = None):
    """Parse, verify and optimize IR text; return (module, optimized IR text).
    ``tuning`` overrides pipeline options (e.g. ``loop_vectorization``)."""
    st = _init()
    with _lock:      # llvmlite's global LLVM context is not thread-safe
        mod = llvm.parse_assembly(ir_text)
        mod.triple = st["triple"]
        mod.verify()
        mod.data_layout = st["data_layout"]
        if opt > 0:
            pto = llvm.create_pipeline_tuning_options(speed_level=opt)
            pto.loop_vectorization = True
            pto.slp_vectorization = True
            pto.loop_unrolling = True
            for k, v in (tuning or {}).items():
                setattr(pto, k, v)
            pb = llvm.create_pass_builder(target_machine(opt), pto)
            _run_and_free(pb.getModulePassManager(), mod, pb)
        return mod, str(mod)


class JitModule:
    """Machine code loaded into the process: keeps the engine alive (its code
    is freed with it) and exposes the entry as a ctypes function.

    Built from object code (``JitModule(obj, entry)``, e.g. from the disk
    cache) or from IR text (:meth:`compile`: optimize, generate object code,
    load)."""

    def __init__(self, object_code: bytes, entry: str, optimized_ir: str = "", opt: int = 3):
        st = _init()
        with _lock:
            empty = llvm.parse_assembly("")
            empty.triple = st["triple"]
            empty.data_layout = st["data_layout"]
            # MCJIT owns (and deletes with itself) the target machine it is
            # given, so every engine gets its own; sharing one would leave the
            # others with a dangling target machine once an engine is freed.
            self.engine = llvm.create_mcjit_compiler(empty, _new_target_machine(opt))
            self.engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
            self.engine.finalize_object()
            self.address = self.engine.get_function_address(entry)
        if not self.address:
            raise RuntimeError(f"object code has no function {entry!r}")
        self.object_code = object_code
        self.optimized_ir = optimized_ir
        self._opt = opt
        self.cfunc = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p)(self.address)

    @classmethod
    def compile(cls, ir_text: str, entry: str, opt: int = 3,
                tuning: dict | None = None) -> JitModule:
        mod, optimized = optimize(ir_text, opt, tuning)
        with _lock:
            obj = target_machine(opt).emit_object(mod)
        return cls(obj, entry, optimized, opt)

    def assembly(self) -> str:
        """Assembly text of the optimized module (generated on request)."""
        if not self.optimized_ir:
            return ""
        with _lock:
            mod = llvm.parse_assembly(self.optimized_ir)
            return target_machine(self._opt).emit_assembly(mod)
