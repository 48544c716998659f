"""Split one module's IR text into shards that LLVM compiles separately.

The emitter writes one module: the entry (``graphc_main``, and
``graphc_task`` when threaded, and the parts ``graphc_part<k>`` a long one
is cut into) calls one internal function per kernel. The
kernels do not call each other, so the module splits at function level: a
*shard* is the module's declarations plus some of its functions, and each
function called from another shard is made external there (its name is
already unique in the module) and declared where it is called. Internal
helpers (a scalar op's function) are copied into every shard that calls them;
nothing else is shared, so no shard needs another to be optimized. The
object files are loaded into one engine (``jit.JitModule``), which resolves
the calls between them.

Only the text is read, never parsed by LLVM (that is the compile's work):
llvmlite writes a module as top-level lines — ``define ... {`` up to a line
``}``, one-line ``declare``s, globals, attribute groups and metadata — and
:func:`split` refuses (returns None) any module it does not understand that
way, or with a global that is not a constant (a copy per shard would be two
variables), so the caller compiles it whole.
"""
from __future__ import annotations

import re

_DEFINE = re.compile(r'define\s+((?:internal|private)\s+)?(.*?)@("(?:[^"\\]|\\.)*"|[-\w$.]+)\(')
_REF = re.compile(r'@("(?:[^"\\]|\\.)*"|[-\w$.]+)')
_GLOBAL = re.compile(r'@(?:"(?:[^"\\]|\\.)*"|[-\w$.]+)\s*=\s*(?:(?:private|internal|'
                     r'unnamed_addr|local_unnamed_addr|dso_local)\s+)*constant\b')
LOOP_COST = 2000                 # bytes of IR a loop costs LLVM as much as (see Function)
ENTRY_BYTES = 300_000            # the entry's cost per byte grows with its size (see plan)
EXPORT_PREFIX = "gcshard_"       # the exported name of a moved function: never a user symbol
PART_PREFIX = "graphc_part"      # a part of a long entry (emit._schedule_parts): stays with it


class Function:
    __slots__ = ("name", "lines", "internal", "refs", "size", "cost")

    def __init__(self, name, lines, internal):
        self.name, self.lines, self.internal = name, lines, internal
        text = "".join(lines[1:])
        self.refs = set(_REF.findall(text))
        self.size = sum(map(len, lines))
        # LLVM's time, estimated: in proportion to the IR, plus each loop
        # (a phi per loop level: vectorized, unrolled), fitted on the Adam
        # step's kernels; see :func:`plan` for the entry's
        self.cost = self.size + LOOP_COST * text.count(" phi ")


def parse(text: str):
    """(top-level lines that are not function definitions, {name: Function}
    in module order), or None if the text is not laid out as expected."""
    other, fns = [], {}
    lines = text.splitlines(keepends=True)
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if line.startswith("define"):
            m = _DEFINE.match(line)
            if m is None:
                return None
            j = i + 1
            while j < n and lines[j].rstrip("\r\n") != "}":
                j += 1
            if j == n:
                return None
            fns[m.group(3)] = Function(m.group(3), lines[i:j + 1], bool(m.group(1)))
            i = j + 1
            continue
        if line.startswith("@") and not _GLOBAL.match(line):
            return None                          # a variable: one per program, not per shard
        if line[:1] in " \t}" and line.strip():
            return None                          # a body line outside a definition
        other.append(line)
        i += 1
    return other, fns


def _closure(roots, fns) -> list:
    """The functions defined in the module that ``roots`` reach (roots first)."""
    seen, order, todo = set(), [], list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in fns:
            continue
        seen.add(name)
        order.append(name)
        todo.extend(fns[name].refs)
    return order


def _declare(fn: Function) -> str:
    """A declaration of ``fn`` (renamed with the calls, by :func:`split`)."""
    head = fn.lines[0].rstrip()[len("define"):].lstrip()
    if fn.internal:
        head = head.split(None, 1)[1]            # drop the linkage
    if head.endswith("{"):
        head = head[:-1].rstrip()
    return "declare " + head + "\n"


def _export_name(name: str) -> str:
    bare = name[1:-1] if name.startswith('"') else name
    return f'"{EXPORT_PREFIX}{bare}"'


def plan(text: str, shards: int = 2):
    """Which kernel functions go to which shard: (other lines, functions,
    [names per shard]); shard 0 holds the module's external functions (the
    entry). None when the module cannot or need not be split."""
    parsed = parse(text)
    if parsed is None:
        return None
    other, fns = parsed
    entries = [f.name for f in fns.values() if not f.internal]
    if not entries:
        return None
    # the top: the entries and what they hand to the thread pool (graphc_task)
    top = set(entries) | _passed_by_address(fns, entries) | \
        {name for name in fns if name.strip('"').startswith(PART_PREFIX)}
    called = set()
    for e in top:
        called |= fns[e].refs if e in fns else set()
    reach = set(_closure(entries, fns))
    # the kernels: internal functions the top calls
    movable = [f for f in fns.values() if f.internal and f.name in called and
               f.name not in top]
    if len(movable) < shards:
        return None
    cost = {f.name: sum(fns[g].cost for g in _closure([f.name], fns)) for f in movable}
    # the entry (one straight-line call per kernel) costs LLVM less per byte
    # than a kernel when small, more when large: measured, 69 KB took 0.37x
    # the time of the Adam step's kernels (105 KB), 168 KB 1.25x theirs (133 KB)
    total = sum(fns[g].cost * (min(1.2, 0.5 + fns[g].size / ENTRY_BYTES) if g in top else 1)
                for g in reach)
    groups = [[] for _ in range(shards)]
    load = [0] * shards
    load[0] = max(0.0, total - sum(cost.values()))   # the entry and what only it needs
    for f in sorted(movable, key=lambda f: -cost[f.name]):
        k = min(range(shards), key=load.__getitem__)
        groups[k].append(f.name)
        load[k] += cost[f.name]
    if any(not g for g in groups[1:]):
        return None
    return other, fns, groups, load


def _passed_by_address(fns, entries) -> set:
    """Functions an entry uses other than as the callee of a call (a pointer
    to ``graphc_task`` handed to the thread pool)."""
    out = set()
    for e in entries:
        text = "".join(fns[e].lines[1:])
        for m in _REF.finditer(text):
            if text[m.end():m.end() + 1] != "(":
                out.add(m.group(1))
    return out


def split(text: str, shards: int = 2):
    """The module's IR text as ``shards`` module texts ([entry shard, ...])
    and the size estimate of each; None when it cannot be split (see the
    module's docstring). A function moved out of shard 0 is renamed
    ``gcshard_<name>`` and made external; shard 0 declares it."""
    p = plan(text, shards)
    if p is None:
        return None
    other, fns, groups, load = p
    entries = [f.name for f in fns.values() if not f.internal]
    out = []
    for k, group in enumerate(groups):
        if k == 0:
            moved = {n: _export_name(n) for g in groups[1:] for n in g}
            keep = set(_closure(entries, {n: f for n, f in fns.items() if n not in moved}))
            own = {}
        else:
            moved = own = {n: _export_name(n) for n in group}
            keep = set(_closure(group, fns))
        parts = list(other)
        for name, fn in fns.items():            # in module order
            if name in keep:
                lines = fn.lines
                if name in own:                 # exported: external, renamed below
                    lines = [re.sub(r"^define\s+(?:internal|private)\s+", "define ",
                                    lines[0])] + lines[1:]
                parts.append("".join(lines))
        for name in sorted(set(moved) - set(own)):
            if any(name in fns[n].refs for n in keep):
                parts.append(_declare(fns[name]))
        shard = "".join(parts)
        if moved:
            pat = re.compile("|".join(re.escape(f"@{n}") for n in
                                      sorted(moved, key=len, reverse=True)) + r"(?=\()")
            shard = pat.sub(lambda m: "@" + moved[m.group(0)[1:]], shard)
        out.append(shard)
    return out, load
