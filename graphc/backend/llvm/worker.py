"""The LLVM compile worker: a child process that turns IR text into object code.

llvmlite holds one global lock around every call into LLVM, so threads of one
process cannot run LLVM in parallel; a second process can. parallel.py
starts this module as a script (``python .../worker.py``: it imports only the
standard library and llvmlite, not graphc, so it is ready in about 0.3 s),
writes requests to its stdin and reads replies from its stdout. It serves
requests one at a time and exits when its stdin closes (the parent exited or
dropped it). Once LLVM is loaded it writes ``b"GCWK"`` (ready).

A request is ``b"GCWQ"``, a 4-byte little-endian header length, a JSON header
(``triple``, ``cpu``, ``features``, ``data_layout``, ``opt``, ``tuning``,
``ir``: the IR's byte count) and the IR text. A reply is ``b"GCWR"``, the
header length, a JSON header (``ok``; ``obj`` and ``ir``: byte counts, and ``cpu``: the
seconds it took; or ``error``) and then the object code and the optimized IR text.

:func:`run_pipeline` is also the pipeline jit.py runs in-process, so both
places optimize alike.
"""
from __future__ import annotations

import json
import struct
import sys
import time

REQUEST, REPLY, READY = b"GCWQ", b"GCWR", b"GCWK"
MAX_HEADER = 1 << 20


def run_pipeline(llvm, mod, tm, opt: int, tuning: dict | None = None) -> None:
    """Run the O-``opt`` new-pass-manager pipeline on ``mod`` (vectorizers and
    unrolling on; ``tuning`` overrides pipeline options), then free it.
    llvmlite's ModulePassManager never frees its native object (ObjectRef's
    no-op ``_dispose`` comes before NewPassManager's in the MRO), which
    leaked every pass and its caches — ~200 KB per O3 compile."""
    from llvmlite.binding.newpassmanagers import NewPassManager
    pto = llvm.create_pipeline_tuning_options(speed_level=opt)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    for k, v in (tuning or {}).items():
        setattr(pto, k, v)
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    try:
        mpm.run(mod, pb)
    finally:
        if not mpm.closed:
            NewPassManager._dispose(mpm)
            mpm.detach()


def _read(f, n: int) -> bytes:
    out = f.read(n)
    if len(out) != n:
        raise EOFError
    return out


def write_message(f, magic: bytes, header: dict, *blobs: bytes) -> None:
    hb = json.dumps(header).encode()
    f.write(magic + struct.pack("<I", len(hb)) + hb)
    for b in blobs:
        f.write(b)
    f.flush()


def read_header(f, magic: bytes) -> dict:
    head = _read(f, 8)
    (n,) = struct.unpack("<I", head[4:])
    if head[:4] != magic or n > MAX_HEADER:
        raise ValueError("not a graphc worker message")
    header = json.loads(_read(f, n))
    if not isinstance(header, dict):
        raise ValueError("not a graphc worker message")
    return header


def serve(inp, out) -> None:
    import llvmlite.binding as llvm
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    out.write(READY)
    out.flush()
    machines = {}
    while True:
        try:
            req = read_header(inp, REQUEST)
        except EOFError:
            return
        text = _read(inp, int(req["ir"])).decode()
        t0 = time.process_time()
        try:
            key = (req["triple"], req["cpu"], req["features"], req["opt"])
            tm = machines.get(key)
            if tm is None:
                target = llvm.Target.from_triple(req["triple"])
                tm = machines[key] = target.create_target_machine(
                    cpu=req["cpu"], features=req["features"], opt=req["opt"],
                    codemodel="jitdefault")
            mod = llvm.parse_assembly(text)
            mod.triple = req["triple"]
            mod.verify()
            mod.data_layout = req["data_layout"]
            if req["opt"] > 0:
                run_pipeline(llvm, mod, tm, req["opt"], req.get("tuning"))
            optimized = str(mod).encode()
            obj = tm.emit_object(mod)
        except Exception as e:          # bad IR: say so, and serve the next request
            write_message(out, REPLY, {"ok": False, "error": f"{type(e).__name__}: {e}"})
            continue
        write_message(out, REPLY, {"ok": True, "obj": len(obj), "ir": len(optimized),
                                   "cpu": time.process_time() - t0}, obj, optimized)


def main() -> None:
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except (BrokenPipeError, KeyboardInterrupt, EOFError):
        pass


if __name__ == "__main__":
    main()
