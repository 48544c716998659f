"""The C side of an exported graph: the header users include, the wrapper
compiled into the library (argument array, workspace, threads, error
messages) and the README. Everything here is text built from an
:class:`Interface`; nothing is compiled."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

C_TYPES = {"float32": "float", "float64": "double", "float16": "uint16_t",
           "int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
           "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t",
           "uint64": "uint64_t", "bool": "uint8_t"}

C_KEYWORDS = frozenset("""auto break case char const continue default do double else enum
extern float for goto if inline int long register restrict return short signed sizeof static
struct switch typedef union unsigned void volatile while bool true false class new delete
this template typename namespace operator private public protected virtual""".split())

# status codes of the wrapper itself (the graph's checks are 1, 2, ...)
WRAPPER_ERRORS = [(-1, "NULL_POINTER", "a null pointer was passed (inputs, outputs, one of "
                   "their entries, or the workspace)"),
                  (-2, "NO_MEMORY", "the per-thread workspace could not be allocated"),
                  (-3, "BAD_THREADS", "the number of threads must be at least 1"),
                  (-4, "CPU", "this CPU lacks an instruction set extension the code was "
                   "compiled for")]

# x86 extensions the wrapper checks with __builtin_cpu_supports (names GCC and
# Clang both accept) when the exporting host has them
CPU_CHECKS = ("sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma", "bmi", "bmi2", "avx512f",
              "avx512cd", "avx512bw", "avx512dq", "avx512vl")


def cpu_checks(triple: str, features: str) -> list[str]:
    """The extensions of :data:`CPU_CHECKS` that ``features`` (LLVM's
    ``+a,-b`` list) enables, for an x86 ``triple``; [] elsewhere."""
    if not re.match(r"(x86_64|i[3-6]86)", triple):
        return []
    on = {f[1:] for f in features.split(",") if f.startswith("+")}
    return [c for c in CPU_CHECKS if c in on]


def _errors(iface) -> list:
    """WRAPPER_ERRORS with the CPU check's message naming the extensions."""
    out = []
    for code, sym, msg in WRAPPER_ERRORS:
        if sym == "CPU":
            msg += f" ({', '.join(iface.cpu_features) or 'none checked'})"
        out.append((code, sym, msg))
    return out


@dataclass
class Arg:
    """One entry of the ``inputs`` or ``outputs`` array."""
    name: str
    dtype: str
    shape: tuple
    kind: str                  # "placeholder", "parameter" or "output"
    updated: bool = False      # a parameter the call writes in place

    @property
    def ctype(self) -> str:
        return C_TYPES.get(self.dtype, "uint8_t")

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass
class Interface:
    name: str                          # the C prefix: <name>_run, <NAME>_...
    inputs: list                       # [Arg]: placeholders, then parameters passed in
    outputs: list                      # [Arg]
    embedded: list                     # symbols of the arrays baked in, in argument order
    workspace: int                     # bytes
    threads: int                       # threads the code was compiled for
    errors: list                       # status k (1-based) -> message
    prefix: str                        # of the renamed internal symbols
    pool: bool                         # whether the code calls the thread pool
    target: str                        # triple and CPU the code was compiled for
    params: str = "embed"
    cpu_features: list = field(default_factory=list)    # checked when the library loads

    @property
    def upper(self) -> str:
        return self.name.upper()


def c_string(s: str) -> str:
    out = []
    for ch in s.encode("utf-8"):
        c = chr(ch)
        if c in '"\\':
            out.append("\\" + c)
        elif 32 <= ch < 127 and c != "?":        # (no trigraphs)
            out.append(c)
        else:
            out.append(f"\\{ch:03o}")
    return '"' + "".join(out) + '"'


def comment(s: str) -> str:
    """Text safe inside a C block comment, on one line."""
    return " ".join(s.replace("*/", "* /").split())


def ident(s: str) -> str:
    """An upper-case C identifier fragment for a name ("" if there is none)."""
    t = re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_").upper()
    return t if t and not t[0].isdigit() else (f"_{t}" if t else "")


def _arg_lines(iface: Interface, args: list, what: str) -> list[str]:
    U = iface.upper
    lines = []
    idents = [ident(a.name) for a in args]
    for k, a in enumerate(args):
        shape = ", ".join(map(str, a.shape)) or "1"
        role = {"placeholder": "input", "parameter": "parameter", "output": "output"}[a.kind]
        rw = "; read and written in place (an update of the training step)" if a.updated else ""
        lines.append(f"/* {what}[{k}]: {role} {comment(repr(a.name))}, {a.dtype}"
                     f"[{', '.join(map(str, a.shape))}] as {a.ctype}[{a.size}] "
                     f"({a.nbytes} bytes){rw} */")
        p = f"{U}_{what.upper()}{k}"
        lines += [f"#define {p}_NAME {c_string(a.name)}",
                  f"#define {p}_DTYPE {c_string(a.dtype)}",
                  f"#define {p}_TYPE {a.ctype}",
                  f"#define {p}_NDIM {len(a.shape)}",
                  f"#define {p}_SHAPE {{{shape}}}",
                  f"#define {p}_SIZE {a.size}",
                  f"#define {p}_BYTES {a.nbytes}"]
        if idents[k] and idents.count(idents[k]) == 1:
            lines.append(f"#define {U}_{what.upper()}_{idents[k]} {k}")
    return lines


def header(iface: Interface) -> str:
    n, U = iface.name, iface.upper
    guard = f"GRAPHC_EXPORT_{U}_H"
    ins = ", ".join(f"{a.name!r}" for a in iface.inputs) or "none"
    outs = ", ".join(f"{a.name!r}" for a in iface.outputs)
    L = [f"/* {n}.h: a graph compiled ahead of time by graphc (see README.md).",
         " *",
         f" *   int32_t {n}_run(const void *const *inputs, void *const *outputs);",
         " *",
         f" * inputs[k] points to input k ({comment(ins)}),",
         f" * outputs[k] to output k ({comment(outs)}): C-contiguous (row-major) arrays",
         " * of the shapes and element types below, aligned to their element type,",
         " * which the call does not check (a 0-d array's SHAPE macro is {1}).",
         " * Outputs are written; inputs are only read, except parameters marked as",
         " * updated (a training step), which are written in place after every read.",
         " * Returns 0, or a status code: the graph's run-time checks (the errors",
         " * graphc raises in Python as RuntimeCheckError) and the wrapper's own.",
         f" * {n}_error_message(status) gives the message.",
         " *",
         f" * Parameters: {'baked into the library' if iface.params == 'embed' else 'passed as inputs'}.",
         f" * Machine code for {comment(iface.target)}: it runs on CPUs with the exporting",
         " * host's instruction set extensions.",
         " */",
         f"#ifndef {guard}", f"#define {guard}", "",
         "#include <stddef.h>", "#include <stdint.h>", "",
         '#ifdef __cplusplus', 'extern "C" {', '#endif', "",
         f"#define {U}_NUM_INPUTS {len(iface.inputs)}",
         f"#define {U}_NUM_OUTPUTS {len(iface.outputs)}",
         f"/* bytes of scratch memory a call uses ({n}_run keeps one block per calling thread) */",
         f"#define {U}_WORKSPACE_SIZE {iface.workspace}",
         f"#define {U}_WORKSPACE_ALIGN 64",
         "/* the most threads a call may use (the code is split for this many) */",
         f"#define {U}_MAX_THREADS {iface.threads}", ""]
    L += _arg_lines(iface, iface.inputs, "input") + [""]
    L += _arg_lines(iface, iface.outputs, "output") + [""]
    L.append("/* status codes */")
    L.append(f"#define {U}_OK 0")
    for code, sym, msg in _errors(iface):
        L.append(f"#define {U}_ERR_{sym} ({code})  /* {comment(msg)} */")
    for k, msg in enumerate(iface.errors):
        L.append(f"#define {U}_ERR_CHECK_{k + 1} {k + 1}  /* {comment(msg)} */")
    L += ["",
          "/* Run the graph. Safe to call from several threads at once (each has its own",
          " * workspace, allocated on its first call and freed when the thread exits). */",
          f"int32_t {n}_run(const void *const *inputs, void *const *outputs);",
          f"/* The same on caller-provided scratch memory: {U}_WORKSPACE_SIZE bytes, aligned",
          f" * to {U}_WORKSPACE_ALIGN, not used by another call at the same time. */",
          f"int32_t {n}_run_with_workspace(const void *const *inputs, void *const *outputs,",
          "        void *workspace);",
          "/* The message of a status code (a static string; \"ok\" for 0). */",
          f"const char *{n}_error_message(int32_t status);",
          f"/* Threads: calls use up to {n}_num_threads() threads (default {U}_MAX_THREADS: the",
          " * caller and a pool of workers started by the first call that splits work).",
          f" * {n}_set_num_threads(n) caps it (n >= 1; more than {U}_MAX_THREADS means",
          f" * {U}_MAX_THREADS); the results do not depend on it. Returns 0 or {U}_ERR_BAD_THREADS. */",
          f"int32_t {n}_num_threads(void);",
          f"int32_t {n}_set_num_threads(int32_t n);",
          "/* Names of the inputs and outputs, in order. */",
          f"extern const char *const {n}_input_names[{max(1, len(iface.inputs))}];",
          f"extern const char *const {n}_output_names[{len(iface.outputs)}];",
          "", *_named(iface),
          "", '#ifdef __cplusplus', '}', '#endif', f"#endif  /* {guard} */", ""]
    return "\n".join(L)


def field_names(args: list, stem: str) -> list[str]:
    """C field names for ``args``: the lower-cased name when it is a unique
    identifier fragment, else ``<stem><k>``."""
    names = [ident(a.name).lower() for a in args]
    out = []
    for k, nm in enumerate(names):
        ok = nm and names.count(nm) == 1 and nm not in C_KEYWORDS and not nm.startswith("_")
        out.append(nm if ok else f"{stem}{k}")
    seen = set()
    for k, nm in enumerate(out):          # (a generated name may equal a given one)
        if nm in seen:
            out[k] = f"{stem}{k}_"
        seen.add(out[k])
    return out


def _named(iface: Interface) -> list[str]:
    """Typed structs of named pointers and ``<name>_run_named``, a static
    inline wrapper of ``<name>_run`` over them."""
    n = iface.name
    fi, fo = field_names(iface.inputs, "in"), field_names(iface.outputs, "out")
    L = ["/* The same call with named, typed pointers (fields in the order above). */",
         "typedef struct {"]
    for a, nm in zip(iface.inputs, fi):
        L.append(f"    {'' if a.updated else 'const '}{a.ctype} *{nm};  /* {comment(a.name)} */")
    if not iface.inputs:
        L.append("    char unused_;")
    L += [f"}} {n}_inputs;", "typedef struct {"]
    for a, nm in zip(iface.outputs, fo):
        L.append(f"    {a.ctype} *{nm};  /* {comment(a.name)} */")
    L += [f"}} {n}_outputs;",
          f"static inline int32_t {n}_run_named(const {n}_inputs *in, const {n}_outputs *out) {{",
          f"    const void *i[{max(1, len(fi))}] = {{{', '.join(f'in->{f}' for f in fi) or '0'}}};",
          f"    void *o[{len(fo)}] = {{{', '.join(f'out->{f}' for f in fo)}}};",
          f"    {'(void)in; ' if not fi else ''}return {n}_run(i, o);", "}"]
    return L


def wrapper(iface: Interface) -> str:
    """The C file compiled into the library."""
    n, U, P = iface.name, iface.upper, iface.prefix
    ni, no = len(iface.inputs), len(iface.outputs)
    count = ni + len(iface.embedded) + no + 1
    ws = max(iface.workspace, 64)
    L = [f"/* generated by graphc: the C entry points of {n} (see {n}.h) */",
         "#define _POSIX_C_SOURCE 200809L",
         "#include <pthread.h>", "#include <stdlib.h>", "#include <string.h>",
         f'#include "{n}.h"', "",
         '#define HIDDEN __attribute__((visibility("hidden")))',
         f"HIDDEN extern int32_t {P}graphc_main(void **args);"]
    for sym in iface.embedded:
        L.append(f"HIDDEN extern unsigned char {sym}[];")
    names = lambda args: ", ".join(c_string(a.name) for a in args) or "0"  # noqa: E731
    L += [f"const char *const {n}_input_names[{max(1, ni)}] = {{{names(iface.inputs)}}};",
          f"const char *const {n}_output_names[{no}] = {{{names(iface.outputs)}}};",
          "",
          "/* the instruction set extensions the code uses, checked when the library loads */",
          "static int cpu_ok = 1;",
          "__attribute__((constructor)) static void check_cpu(void) {",
          *([ "#if defined(__x86_64__) || defined(__i386__)",
              "    __builtin_cpu_init();",
              "    cpu_ok = " + " &&\n        ".join(f'__builtin_cpu_supports("{c}")'
                                                     for c in iface.cpu_features) + ";",
              "#endif"] if iface.cpu_features else []),
          "}",
          "",
          f"static int32_t threads_now = {iface.threads};",
          f"int32_t {n}_num_threads(void) {{ return __atomic_load_n(&threads_now, "
          f"__ATOMIC_RELAXED); }}",
          f"int32_t {n}_set_num_threads(int32_t t) {{",
          f"    if (t < 1) return {U}_ERR_BAD_THREADS;",
          f"    __atomic_store_n(&threads_now, t > {iface.threads} ? {iface.threads} : t, "
          "__ATOMIC_RELAXED);",
          "    return 0;", "}"]
    if iface.pool:
        sig = "void *task, void *ctx, void *widths, int32_t phases, int32_t n, void *state"
        L += [f"HIDDEN extern void {P}graphc_rt_parallel_impl({sig});",
              "/* the pool's entry, as the graph calls it: n capped at the current setting */",
              f"HIDDEN void {P}graphc_rt_parallel({sig}) {{",
              "    int32_t t = __atomic_load_n(&threads_now, __ATOMIC_RELAXED);",
              f"    {P}graphc_rt_parallel_impl(task, ctx, widths, phases, n < t ? n : t, state);",
              "}"]
    msgs = "".join(f"\n    {c_string(m)}," for m in iface.errors) or "\n    0,"
    L += ["", f"static const char *const check_messages[] = {{{msgs}\n}};",
          f"const char *{n}_error_message(int32_t status) {{",
          '    if (status == 0) return "ok";',
          *([f"    if (status > 0 && status <= {len(iface.errors)}) "
             "return check_messages[status - 1];"] if iface.errors else []),
          "    switch (status) {"]
    for code, _sym, msg in _errors(iface):
        L.append(f"    case {code}: return {c_string(msg)};")
    L += ["    }", '    return "unknown status code";', "}", "",
          f"int32_t {n}_run_with_workspace(const void *const *inputs, void *const *outputs,",
          "        void *workspace) {",
          f"    void *args[{count}];",
          f"    if ({'!inputs || ' if ni else ''}!outputs || !workspace) "
          f"return {U}_ERR_NULL_POINTER;",
          f"    if (__builtin_expect(!cpu_ok, 0)) return {U}_ERR_CPU;"]
    if ni:
        L += [f"    for (int k = 0; k < {ni}; k++) {{",
              f"        if (!inputs[k]) return {U}_ERR_NULL_POINTER;",
              "        args[k] = (void *)inputs[k];", "    }"]
    for k, sym in enumerate(iface.embedded):
        L.append(f"    args[{ni + k}] = {sym};")
    o0 = ni + len(iface.embedded)
    L += [f"    for (int k = 0; k < {no}; k++) {{",
          f"        if (!outputs[k]) return {U}_ERR_NULL_POINTER;",
          f"        args[{o0} + k] = outputs[k];", "    }",
          f"    args[{count - 1}] = workspace;",
          f"    return {P}graphc_main(args);", "}", "",
          "static pthread_key_t ws_key;",
          "static pthread_once_t ws_once = PTHREAD_ONCE_INIT;",
          "static _Thread_local void *ws_mine;",
          "static void ws_init(void) { pthread_key_create(&ws_key, free); }",
          "",
          f"int32_t {n}_run(const void *const *inputs, void *const *outputs) {{",
          "    void *ws = ws_mine;",
          "    if (!ws) {",
          "        pthread_once(&ws_once, ws_init);",
          f"        if (posix_memalign(&ws, 64, {ws})) return {U}_ERR_NO_MEMORY;",
          f"        memset(ws, 0, {ws});",
          "        pthread_setspecific(ws_key, ws);",
          "        ws_mine = ws;",
          "    }",
          f"    return {n}_run_with_workspace(inputs, outputs, ws);", "}", ""]
    return "\n".join(L)


def version_script(iface: Interface) -> str:
    n = iface.name
    syms = [f"{n}_{s}" for s in ("run", "run_with_workspace", "error_message", "num_threads",
                                  "set_num_threads", "input_names", "output_names")]
    return "{\n  global:\n" + "".join(f"    {s};\n" for s in syms) + "  local: *;\n};\n"


def readme(iface: Interface, lib: str) -> str:
    n, U = iface.name, iface.upper
    rows = []
    for what, args in (("inputs", iface.inputs), ("outputs", iface.outputs)):
        for k, a in enumerate(args):
            upd = " (updated in place)" if a.updated else ""
            rows.append(f"| {what}[{k}] | `{a.name}` | {a.kind}{upd} | {a.dtype} "
                        f"{list(a.shape)} | `{a.ctype}` |")
    link = (f"cc main.c -I. -L. -l{n} -Wl,-rpath,'$ORIGIN'" if lib.endswith(".so") else
            f"cc main.c -I. {lib} -lpthread -lm")
    return "\n".join([
        f"# {n}: a graphc graph compiled ahead of time", "",
        f"`{lib}` runs the graph; `{n}.h` declares it. The library needs only libc,",
        "libpthread and libm; its machine code is for the CPU it was exported on",
        f"({iface.target}).", "",
        "```c",
        f"int32_t {n}_run(const void *const *inputs, void *const *outputs);",
        "```", "",
        "| array | name | kind | dtype and shape | C type |", "|---|---|---|---|---|",
        *rows, "",
        "Arrays are C-contiguous (row-major). The call returns 0 or a status code;",
        f"`{n}_error_message(status)` is its message. Parameters are "
        + ("baked into the library." if iface.params == "embed" else
           "inputs, after the graph's inputs."),
        f"Scratch memory: {iface.workspace} bytes per calling thread ({U}_WORKSPACE_SIZE), "
        f"or pass your own to `{n}_run_with_workspace`.",
        f"Threads: up to {iface.threads} (`{n}_set_num_threads`).", "",
        "Build a program with it:", "", "```sh", link, "```", ""])
