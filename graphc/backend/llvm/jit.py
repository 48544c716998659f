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
from .worker import run_pipeline

_lock = forksafe.lock(globals(), "_lock", rank=2)   # (see graphc/forksafe.py)
_state: dict = {}


def _init():
    with _lock:
        if "tms" not in _state:
            h = host.cpu()          # the host's triple, CPU and features (not copied here)
            target = llvm.Target.from_default_triple()
            tm = target.create_target_machine(cpu=h["cpu"], features=h["features"], opt=3,
                                              codemodel="jitdefault")
            _state["data_layout"] = str(tm.target_data)
            _state["tms"] = {3: tm}
        return _state


def target_params() -> dict:
    """What another process needs to generate the same code (worker.py)."""
    h = host.cpu()
    return {"triple": h["triple"], "cpu": h["cpu"], "features": h["features"],
            "data_layout": _init()["data_layout"]}


def _new_target_machine(opt: int):
    _init()
    h = host.cpu()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=h["cpu"], features=h["features"], opt=opt,
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


def optimize(ir_text: str, opt: int = 3, tuning: dict | None = None):
    """Parse, verify and optimize IR text; return (module, optimized IR text).
    ``tuning`` overrides pipeline options (e.g. ``loop_vectorization``)."""
    st = _init()
    with _lock:      # llvmlite's global LLVM context is not thread-safe
        mod = llvm.parse_assembly(ir_text)
        mod.triple = host.cpu()["triple"]
        mod.verify()
        mod.data_layout = st["data_layout"]
        if opt > 0:
            run_pipeline(llvm, mod, target_machine(opt), opt, tuning)
        return mod, str(mod)


def compile_object(ir_text: str, opt: int = 3, tuning: dict | None = None) -> tuple[bytes, str]:
    """IR text to (object code, optimized IR text), in this process."""
    mod, optimized = optimize(ir_text, opt, tuning)
    with _lock:
        return target_machine(opt).emit_object(mod), optimized


class JitModule:
    """Machine code loaded into the process: keeps the engine alive (its code
    is freed with it) and exposes the entry as a ctypes function.

    Built from object code (``JitModule(obj, entry)``, e.g. from the disk
    cache) or from IR text (:meth:`compile`: optimize, generate object code,
    load)."""

    def __init__(self, object_code, entry: str, optimized_ir="", opt: int = 3):
        """``object_code``: one object file's bytes, or a list of them (the
        shards of one module, see shard.py: loaded into one engine, which
        resolves the calls between them); ``optimized_ir`` likewise."""
        objects = [object_code] if isinstance(object_code, (bytes, bytearray)) else \
            list(object_code)
        irs = [optimized_ir] if isinstance(optimized_ir, str) else list(optimized_ir)
        if not objects or len(irs) not in (1, len(objects)):
            raise ValueError("JitModule: one optimized IR text per object file")
        st = _init()
        with _lock:
            empty = llvm.parse_assembly("")
            empty.triple = host.cpu()["triple"]
            empty.data_layout = st["data_layout"]
            # MCJIT owns (and deletes with itself) the target machine it is
            # given, so every engine gets its own; sharing one would leave the
            # others with a dangling target machine once an engine is freed.
            self.engine = llvm.create_mcjit_compiler(empty, _new_target_machine(opt))
            for obj in objects:
                self.engine.add_object_file(llvm.ObjectFileRef.from_data(bytes(obj)))
            self.engine.finalize_object()
            self.address = self.engine.get_function_address(entry)
        if not self.address:
            raise RuntimeError(f"object code has no function {entry!r}")
        self.objects = [bytes(o) for o in objects]
        self.optimized_irs = irs if any(irs) else []
        self._opt = opt
        self.cfunc = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p)(self.address)

    @property
    def object_code(self) -> bytes:
        """The object file (of a module compiled whole)."""
        if len(self.objects) != 1:
            raise ValueError(f"this code is {len(self.objects)} object files (see .objects)")
        return self.objects[0]

    @property
    def optimized_ir(self) -> str:
        """The optimized IR, its shards one after another."""
        if len(self.optimized_irs) <= 1:
            return "".join(self.optimized_irs)
        return "".join(f"; ---- shard {k} of {len(self.optimized_irs)} ----\n{t}"
                       for k, t in enumerate(self.optimized_irs))

    @classmethod
    def compile(cls, ir_text: str, entry: str, opt: int = 3,
                tuning: dict | None = None) -> JitModule:
        obj, optimized = compile_object(ir_text, opt, tuning)
        return cls(obj, entry, optimized, opt)

    def assembly(self) -> str:
        """Assembly text of the optimized module (generated on request)."""
        out = []
        for k, text in enumerate(self.optimized_irs):
            with _lock:
                mod = llvm.parse_assembly(text)
                asm = target_machine(self._opt).emit_assembly(mod)
            out.append(asm if len(self.optimized_irs) == 1 else
                       f"# ---- shard {k} of {len(self.optimized_irs)} ----\n{asm}")
        return "".join(out)
