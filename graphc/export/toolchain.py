"""The system C compiler: found, run, and its failures explained."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess

from ..errors import GraphcError


class ExportError(GraphcError, ValueError):
    """An export that cannot be done as asked (the function, the options)."""


class CompilerNotFoundError(GraphcError, RuntimeError):
    """No C compiler to link the exported library with."""


class LinkError(GraphcError, RuntimeError):
    """The C compiler or archiver failed; the message has its command and output."""


CANDIDATES = ("cc", "gcc", "clang")


def find_cc(cc: str | None = None) -> list[str]:
    """The C compiler's command (a list, it may carry flags): ``cc`` if
    given, else ``$CC``, else the first of cc, gcc, clang on ``PATH``.
    Raises :class:`CompilerNotFoundError` naming what was tried."""
    tried = []
    given = cc if cc is not None else (os.environ.get("CC") or "").strip() or None
    if given is not None:
        cmd = shlex.split(given)
        where = "the cc argument" if cc is not None else "$CC"
        if cmd and shutil.which(cmd[0]):
            return [shutil.which(cmd[0]), *cmd[1:]]
        how = "is empty" if not cmd else "is not an executable file" if os.sep in cmd[0] \
            else "was not found on PATH"
        raise CompilerNotFoundError(f"export: the C compiler {given!r} (from {where}) {how}; "
                                    "install one or set CC to a C compiler")
    for name in CANDIDATES:
        tried.append(name)
        path = shutil.which(name)
        if path:
            return [path]
    raise CompilerNotFoundError(f"export: no C compiler found: CC is not set and none of "
                                f"{', '.join(tried)} is on PATH; install one (e.g. gcc) or "
                                "set CC")


def run(cmd: list[str], what: str, cwd: str | None = None) -> None:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except OSError as e:
        raise LinkError(f"export: could not run {what} ({shlex.join(cmd)}): {e}") from None
    if r.returncode != 0:
        out = (r.stderr + r.stdout).strip()
        raise LinkError(f"export: {what} failed (exit {r.returncode}): {shlex.join(cmd)}\n"
                        f"{out[-4000:]}")


def link_shared(cc: list[str], out: str, c_source: str, objects: list[str],
                version_script: str, work: str) -> None:
    """``cc -shared`` the wrapper and the objects into ``out``, exporting
    only the symbols the version script names."""
    run([*cc, "-shared", "-fPIC", "-O2", "-std=c11", "-o", out, c_source, *objects,
         f"-Wl,--version-script={version_script}", "-Wl,-z,noexecstack",
         # its pool's workers sleep in its code: dlclose must not unmap it
         "-Wl,-z,nodelete", "-lpthread", "-lm"],
        "linking the shared library", cwd=work)


def archive(cc: list[str], out: str, c_source: str, objects: list[str], work: str) -> None:
    """Compile the wrapper and archive it with the objects into ``out``
    (``ar`` next to the compiler, or on PATH)."""
    wrapper_o = os.path.join(work, "wrapper.o")
    run([*cc, "-c", "-fPIC", "-O2", "-std=c11", "-o", wrapper_o, c_source],
        "compiling the C wrapper", cwd=work)
    ar = os.environ.get("AR") or shutil.which("ar") or shutil.which("llvm-ar")
    if not ar:
        raise CompilerNotFoundError("export: kind='static' needs an archiver: AR is not set "
                                    "and neither ar nor llvm-ar is on PATH")
    members = _one_object(cc, [wrapper_o, *objects], work) or [wrapper_o, *objects]
    if os.path.exists(out):
        os.remove(out)
    run([*shlex.split(ar), "rcs", out, *members], "archiving the static library", cwd=work)


def _one_object(cc: list[str], objects: list[str], work: str) -> list[str] | None:
    """The objects linked into one relocatable object whose hidden symbols
    (everything but the C entry points) are made local, so the archive
    exports what a shared library would; None where the tools cannot (no
    objcopy, a linker without -r): then the archive holds the objects as
    they are, their internal symbols prefixed but global."""
    objcopy = os.environ.get("OBJCOPY") or shutil.which("objcopy") or \
        shutil.which("llvm-objcopy")
    if not objcopy:
        return None
    merged = os.path.join(work, "merged.o")
    try:
        run([*cc, "-r", "-nostdlib", "-o", merged, *objects], "merging the objects", cwd=work)
        run([*shlex.split(objcopy), "--localize-hidden", merged], "localizing symbols",
            cwd=work)
    except LinkError:
        return None
    return [merged]
