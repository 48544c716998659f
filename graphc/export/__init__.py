"""Ahead-of-time export: a compiled function as a standalone C library.

``export(f, "build/model", name="mlp")`` (or ``f.export(...)``) writes
``libmlp.so`` (or ``libmlp.a``), ``mlp.h`` and ``README.md``. The graph's
LLVM module — the same IR the JIT ran, optimized by the same pipeline for
the same CPU, so the results are the same bits — and the runtime components
it calls (the GEMMs, the thread pool) are compiled by llvmlite as
position-independent object code (``objects.py``); a small generated C file
(``csource.py``) holds the entry points, the argument array, the per-thread
workspace, the thread setting and the error messages; the system C compiler
links them (``toolchain.py``). See docs/export.md.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass

from ..backend.llvm import host
from . import csource, objects, toolchain
from .csource import Arg, Interface
from .toolchain import CompilerNotFoundError, ExportError, LinkError, find_cc

__all__ = ["export", "Exported", "ExportError", "CompilerNotFoundError", "LinkError", "find_cc"]

PARAMS = ("embed", "input")
KINDS = ("shared", "static")


@dataclass
class Exported:
    """What :func:`export` wrote."""
    library: str
    header: str
    readme: str
    interface: Interface

    @property
    def name(self) -> str:
        return self.interface.name


def _check(f, name: str, params: str, kind: str):
    if getattr(f, "backend", None) != "llvm" or getattr(f, "_native", None) is None:
        raise ExportError("export: needs a function compiled with backend='llvm'"
                          f"{'' if f is None else f', got backend={f.backend!r}'}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name) \
            or name in csource.C_KEYWORDS:
        raise ExportError(f"export: name must be a C identifier (letters, digits, _), "
                          f"got {name!r}")
    if params not in PARAMS:
        raise ExportError(f"export: params must be one of {PARAMS}, got {params!r}")
    if kind not in KINDS:
        raise ExportError(f"export: kind must be one of {KINDS}, got {kind!r}")
    from ..runtime import HostedCall
    if isinstance(f._native, HostedCall):
        raise ExportError("export: this function calls back into Python (a host callback "
                          "op), which a standalone library cannot do")
    if f.source_graph.updates and params == "embed":
        names = ", ".join(repr(p.name) for p, _ in f.source_graph.updates)
        raise ExportError(f"export: this function updates parameters ({names}) in place; "
                          "export it with params='input', so the caller owns them")


def interface(f, name: str, params: str, output_names=None) -> tuple[Interface, list]:
    """The C interface of ``f`` and the arrays to embed, ``[(symbol,
    bytes, writable)]``."""
    native = f._native
    g = f.source_graph
    prefix = f"{name}__"
    updated = {p.id for p, _ in g.updates}
    ins = [Arg(p.name, str(p.dtype), tuple(p.shape), "placeholder") for p in g.placeholders]
    blobs, embedded = [], []
    for k, p in enumerate(native.params):
        if params == "input":
            ins.append(Arg(p.name or f"param{k}", str(p.dtype), tuple(p.shape), "parameter",
                           p.id in updated))
        else:
            embedded.append(f"{prefix}param{k}")
            blobs.append((embedded[-1], p._value.tobytes(), False))
    for k, c in enumerate(native.consts):
        embedded.append(f"{prefix}const{k}")
        blobs.append((embedded[-1], c.tobytes(), False))
    names = list(output_names) if output_names is not None else \
        [f"out{k}" for k in range(len(f._out_specs))]
    if len(names) != len(f._out_specs):
        raise ExportError(f"export: {len(names)} output names for {len(f._out_specs)} outputs")
    outs = [Arg(str(nm), str(dt), tuple(shape), "output")
            for nm, (shape, dt) in zip(names, f._out_specs)]
    expected = len(g.placeholders) + len(native.params) + len(native.consts) + len(outs) + 1
    if expected != native.count:        # (the layout of runtime.NativeCall)
        raise ExportError(f"export: argument layout of {native.count} pointers, expected "
                          f"{expected}")
    h = host.cpu()
    runtime = list(getattr(f, "_runtime", None) or [])
    iface = Interface(name=name, inputs=ins, outputs=outs, embedded=embedded,
                      workspace=int(native.arena_size),
                      threads=int(f.threads) if "threads" in runtime else 1,
                      errors=list(native.errors), prefix=prefix, pool="threads" in runtime,
                      target=f"{h['triple']}, cpu {h['cpu']}", params=params,
                      cpu_features=csource.cpu_checks(h["triple"], h["features"]))
    return iface, blobs


def export(f, directory: str, name: str = "model", *, params: str = "embed",
           kind: str = "shared", cc: str | None = None, output_names=None) -> Exported:
    """Write ``f`` (a :class:`graphc.compiler.CompiledFunction`) to
    ``directory`` as ``lib<name>.so`` (``kind="static"``: ``lib<name>.a``),
    ``<name>.h`` and ``README.md``.

    ``params``: ``"embed"`` bakes the parameters' current values into the
    library; ``"input"`` makes them inputs after the placeholders (needed
    for a training step, whose updates write them in place). ``cc``: the C
    compiler command (default ``$CC``, else cc, gcc or clang on PATH).
    ``output_names``: names for the outputs (default ``out0``, ``out1``, ...).
    """
    _check(f, name, params, kind)
    ir_text = f.llvm_ir       # (after a cache hit: plans again, the same IR and components)
    iface, blobs = interface(f, name, params, output_names)
    ccmd = find_cc(cc)                      # before any work: fail early without one
    runtime = sorted(getattr(f, "_runtime", None) or [])
    os.makedirs(directory, exist_ok=True)
    lib = os.path.join(directory, f"lib{name}.{'so' if kind == 'shared' else 'a'}")
    hdr = os.path.join(directory, f"{name}.h")
    rdm = os.path.join(directory, "README.md")
    with open(hdr, "w") as fh:
        fh.write(csource.header(iface))
    with tempfile.TemporaryDirectory(prefix=f"graphc-export-{name}-") as work:
        objs = [("graph.o", objects.graph_object(ir_text, iface.prefix, f.opt_level))]
        for comp in runtime:
            objs.append((f"rt_{comp}.o", objects.component_object(comp, iface.prefix)))
        if blobs:
            objs.append(("data.o", objects.data_object(blobs)))
        paths = []
        for fname, data in objs:
            paths.append(os.path.join(work, fname))
            with open(paths[-1], "wb") as fh:
                fh.write(data)
        src = os.path.join(work, f"{name}_export.c")
        with open(src, "w") as fh:
            fh.write(csource.wrapper(iface))
        inc = os.path.abspath(directory)
        ccmd_i = [*ccmd, f"-I{inc}"]
        tmp_lib = os.path.join(work, os.path.basename(lib))
        if kind == "shared":
            vs = os.path.join(work, "exports.map")
            with open(vs, "w") as fh:
                fh.write(csource.version_script(iface))
            toolchain.link_shared(ccmd_i, tmp_lib, src, paths, vs, work)
        else:
            toolchain.archive(ccmd_i, tmp_lib, src, paths, work)
        os.replace(tmp_lib, lib) if _same_fs(work, directory) else _copy(tmp_lib, lib)
    with open(rdm, "w") as fh:
        fh.write(csource.readme(iface, os.path.basename(lib)))
    return Exported(lib, hdr, rdm, iface)


def _same_fs(a: str, b: str) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def _copy(src: str, dst: str) -> None:
    import shutil
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
