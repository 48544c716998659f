"""The compile cache: in memory and on disk, keyed so that it cannot serve
stale code.

The key of a compilation is the hash of its *components*:

- ``structure``: every node of the graph as built, in topological order — op,
  attributes, which earlier nodes it reads —, the outputs and the updates;
- ``types``: shapes and dtypes of every node (placeholders' names too: they
  are the call interface);
- ``constants``: the bytes of every constant (folding may bake them in);
- ``options``: opt_level, fast_math, the pass list, the thread setting;
- ``graphc``: graphc's version and a hash of its own source files;
- ``llvm``: llvmlite's and LLVM's versions;
- ``cpu``: the target triple, CPU name and feature string.

Parameter *values* are not part of the key (the code reads them at each
call); their shapes and dtypes are. A graph that uses an op registered
outside graphc, or a pass object instead of a pass name, is cached in memory
only (its code could change without its name changing).

On disk, an entry is one file ``<key>.gcc``: a magic string, a JSON header
(format version, key, components, slot layout, error messages, arena size,
blob sizes and their SHA-256) and the blobs (the object files — one, or
one per shard of a module compiled on two cores, see
backend/llvm/parallel.py —, the optimized IR of each, constants made by the
passes as ``.npy``). It is written to a temporary file
and renamed into place (atomic); a truncated, corrupted or foreign entry
fails its checks and is deleted and rebuilt, never loaded. Reading goes
through ``cachefile.py``: only regular files are opened (a FIFO, a symlink
to a device or a directory is refused without blocking), every length is
bounded by the file's size before anything is read, and any malformed header
is an "unreadable entry" (``f.cache_miss_reason`` says so), never an error.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from . import cachefile, forksafe
from .cachefile import cache_dir
from .ir.graph import Graph
from .ir.node import attrs_key, portable_key
from .version import graphc_fingerprint

MAGIC = b"GRAPHCC\x01"
FORMAT = 2          # 2: several object files (the shards of one module), "objects" in the header
MEMORY_ENTRIES = 32
_lock = forksafe.lock(globals(), "_lock", rank=1)   # (see forksafe.py)
_memory: OrderedDict = OrderedDict()      # key -> Artifact (most recently used last)
_components: OrderedDict = OrderedDict()  # key -> components dict (for explaining misses)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _attrs(n) -> list:
    """A node's attributes as JSON: the structural key hash-consing uses
    (ir/node.py attr_key), so the cache tells apart whatever it tells apart."""
    return portable_key(attrs_key(n.attrs))


def components(graph: Graph, options: dict) -> tuple[dict, bool]:
    """The key components of compiling ``graph`` with ``options``, and
    whether the result may go to disk."""
    from .backend.llvm.host import host_info
    from .ops import registry
    pos = {n.id: k for k, n in enumerate(graph.nodes)}
    structure, types, consts = [], [], []
    portable = options.get("portable", True)
    for n in graph.nodes:
        if n.is_leaf:
            structure.append([n.op])
            if n.op == "constant":
                consts.append(hashlib.sha256(n.value.tobytes()).hexdigest())
        else:
            d = registry.get(n.op)
            if not getattr(d, "builtin", False):
                portable = False
                structure.append([n.op, f"external:{id(d)}", [pos[i.id] for i in n.inputs],
                                  _attrs(n)])
            else:
                structure.append([n.op, [pos[i.id] for i in n.inputs],
                                  _attrs(n)])
        types.append([list(n.shape), n.dtype.str])
    structure.append(["outputs", [pos[o.id] for o in graph.outputs]])
    structure.append(["updates", [[pos[p.id] if p.id in pos else f"extra:{p.shape}", pos[v.id]]
                                  for p, v in graph.updates]])
    types.append(["placeholders", [[p.name, list(p.shape), p.dtype.str]
                                   for p in graph.placeholders]])
    types.append(["updated", [[list(p.shape), p.dtype.str] for p, _ in graph.updates]])
    h = host_info()
    comps = {
        "structure": _digest(structure),
        "types": _digest(types),
        "constants": _digest(consts),
        "options": _digest({k: v for k, v in options.items() if k != "portable"}),
        "graphc": graphc_fingerprint(),
        "llvm": h["llvm"] + "/" + _llvmlite_version(),
        "cpu": _digest([h["triple"], h["cpu"], h["features"]]),
    }
    return comps, portable


def _llvmlite_version() -> str:
    import llvmlite
    return llvmlite.__version__


def key_of(comps: dict) -> str:
    return _digest(comps)


@dataclass
class Artifact:
    """What a compilation produced, independent of the graph's node objects:
    the native code and how to bind a structurally identical graph to it."""
    jit: object                      # JitModule
    slots: list                      # per pointer slot: [kind, index] (see slots_for)
    arrays: list                     # constants created by the passes
    n_outputs: int
    arena_size: int
    errors: list
    key: str = ""
    extra: dict = field(default_factory=dict)


def slots_for(source: Graph, layout) -> tuple[list, list]:
    """Describe the layout's pointer slots by positions in the source graph."""
    pos = {n.id: k for k, n in enumerate(source.nodes)}
    ppos = {p.id: k for k, p in enumerate(source.placeholders)}
    extra = {p.id: k for k, (p, _) in enumerate(source.updates)}
    slots, arrays = [], []
    for p in layout.inputs:
        slots.append(["placeholder", ppos[p.id]])
    for p in layout.params:
        slots.append(["param", pos[p.id]] if p.id in pos else ["updated", extra[p.id]])
    for c in layout.consts:
        if c.id in pos:
            slots.append(["const", pos[c.id]])
        else:
            slots.append(["array", len(arrays)])
            arrays.append(c.value)
    return slots, arrays


class BoundLayout:
    """An ArgLayout rebuilt for another graph from an artifact's slots."""

    def __init__(self, art: Artifact, graph: Graph):
        from .ops.common import constant
        nodes = graph.nodes
        self.inputs, self.params, self.consts = [], [], []
        for kind, k in art.slots:
            if kind == "placeholder":
                self.inputs.append(graph.placeholders[k])
            elif kind == "param":
                self.params.append(nodes[k])
            elif kind == "updated":
                self.params.append(graph.updates[k][0])
            elif kind == "const":
                self.consts.append(nodes[k])
            else:
                self.consts.append(constant(art.arrays[k]))
        self.n_outputs = art.n_outputs
        self.output0 = len(art.slots)
        self.arena = self.output0 + art.n_outputs
        self.count = self.arena + 1


# -- memory ---------------------------------------------------------------------------

def memory_get(key: str):
    with _lock:
        art = _memory.get(key)
        if art is not None:
            _memory.move_to_end(key)
        return art


def memory_put(key: str, art: Artifact, comps: dict) -> None:
    with _lock:
        _memory[key] = art
        _memory.move_to_end(key)
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)
        _components[key] = comps
        while len(_components) > 4 * MEMORY_ENTRIES:
            _components.popitem(last=False)


def clear_memory() -> None:
    with _lock:
        _memory.clear()
        _components.clear()
        _unreadable.clear()


# -- disk -----------------------------------------------------------------------------

def _path(directory: str, key: str) -> str:
    return os.path.join(directory, f"{key}.gcc")


def disk_put(key: str, comps: dict, art: Artifact) -> None:
    d = cache_dir()
    if d is None:
        return
    objects, irs = art.jit.objects, art.jit.optimized_irs
    irs = irs if len(irs) == len(objects) else [""] * len(objects)
    blobs = list(objects) + [t.encode() for t in irs]
    for a in art.arrays:
        buf = io.BytesIO()
        np.save(buf, np.asarray(a), allow_pickle=False)
        blobs.append(buf.getvalue())
    header = {
        "format": FORMAT, "key": key, "components": comps, "slots": art.slots,
        "n_outputs": art.n_outputs, "arena_size": art.arena_size, "errors": art.errors,
        "n_arrays": len(art.arrays), "extra": art.extra, "objects": len(objects),
    }
    cachefile.write(d, _path(d, key), MAGIC, header, blobs)


BadEntry = cachefile.BadEntry
_unreadable: OrderedDict = OrderedDict()   # key -> why its entry was discarded (for misses)


def _check_header(header: dict, key: str | None) -> dict:
    """``header`` (already read by cachefile: bounded, digest checked) if it
    is a sound graph entry's header (for ``key``); else raise BadEntry."""
    if header.get("format") != FORMAT:
        raise BadEntry(f"format {header.get('format')!r} (this graphc reads {FORMAT})")
    comps, hkey = header.get("components"), header.get("key")
    if not isinstance(hkey, str) or not isinstance(comps, dict) or \
            not all(isinstance(k, str) and isinstance(v, str) for k, v in comps.items()):
        raise BadEntry("header has no valid key and components")
    if key is not None and hkey != key:
        raise BadEntry("entry belongs to another key (foreign)")
    if key_of(comps) != hkey:
        raise BadEntry("components do not hash to the key")
    slots, extra = header.get("slots"), header.get("extra", {})
    ints = [header.get(k) for k in ("n_outputs", "arena_size", "n_arrays", "objects")]
    if not all(type(v) is int and v >= 0 for v in ints) or header["objects"] < 1 or \
            not isinstance(extra, dict) or \
            not isinstance(header.get("errors"), list) or not isinstance(slots, list) or \
            not all(isinstance(s, list) and len(s) == 2 and isinstance(s[0], str) and
                    type(s[1]) is int for s in slots) or \
            len(header["blobs"]) != 2 * header["objects"] + header["n_arrays"]:
        raise BadEntry("header fields are malformed")
    return header


def read_header(path: str) -> dict:
    """The checked header of one entry, without reading its blobs (for
    explaining misses); raise BadEntry when it is not sound."""
    return _check_header(cachefile.read_header(path, MAGIC), None)


def read_entry(path: str, key: str | None = None) -> tuple[dict, list]:
    """Read and check one entry; raise BadEntry when it is not sound (or
    OSError when it cannot be read)."""
    header, blobs = cachefile.read(path, MAGIC)
    return _check_header(header, key), blobs


def _note_unreadable(key: str, why: str) -> None:
    with _lock:
        _unreadable[key] = why
        _unreadable.move_to_end(key)
        while len(_unreadable) > 4 * MEMORY_ENTRIES:
            _unreadable.popitem(last=False)


def disk_get(key: str):
    """(header, blobs) of a sound entry for ``key``, or None. A bad entry is
    discarded (and why is kept for ``cache_miss_reason``)."""
    d = cache_dir()
    if d is None:
        return None
    path = _path(d, key)
    try:
        return read_entry(path, key)
    except FileNotFoundError:
        return None
    except (BadEntry, OSError) as e:
        _note_unreadable(key, str(e) if isinstance(e, BadEntry) else f"{type(e).__name__}: {e}")
        cachefile.discard(path)
        return None


def disk_drop(key: str, why: str | None = None) -> None:
    """Discard ``key``'s entry (its object code could not be loaded: ``why``)."""
    if why:
        _note_unreadable(key, why)
    d = cache_dir()
    if d is not None:
        cachefile.discard(_path(d, key))


def artifact_from_disk(header: dict, blobs: list) -> tuple[Artifact, str]:
    from .backend.llvm import rtlib
    from .backend.llvm.emit import ENTRY
    from .backend.llvm.jit import JitModule
    rtlib.require(*header.get("extra", {}).get("rt", []))   # the symbols the code links to
    k = header["objects"]
    objects, irs = blobs[:k], [b.decode() for b in blobs[k:2 * k]]
    arrays = [np.load(io.BytesIO(b), allow_pickle=False) for b in blobs[2 * k:]]
    jit = JitModule(objects, ENTRY, irs, opt=header.get("extra", {}).get("opt", 3))
    art = Artifact(jit, header["slots"], arrays, header["n_outputs"], header["arena_size"],
                   header["errors"], header["key"], header.get("extra", {}))
    return art, jit.optimized_ir


def entries(directory: str | None = None) -> list:
    d = directory or cache_dir()
    if d is None or not os.path.isdir(d):
        return []
    try:
        names = os.listdir(d)
    except OSError:
        return []
    # ".tmp-*.gcc" are entries being written by cachefile.write, not entries
    return sorted(os.path.join(d, f) for f in names if f.endswith(".gcc") and f[0] != ".")


def info() -> dict:
    d = cache_dir()
    files = entries()
    return {"directory": d, "entries": len(files),
            "bytes": sum(_lsize(f) for f in files),
            "memory_entries": len(_memory)}


def _lsize(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def clear() -> int:
    """Delete every disk entry (and the memory cache); returns how many files."""
    clear_memory()
    n = 0
    for f in entries():
        cachefile.discard(f)
        n += not os.path.lexists(f)
    d = cache_dir()
    if d and os.path.isdir(d):
        for f in os.listdir(d):
            if f.startswith(".tmp-"):
                try:
                    os.unlink(os.path.join(d, f))
                except OSError:
                    pass
    return n


class MissExplainer:
    """Explains a miss on request (``f.cache_miss_reason``), not at compile
    time: comparing against the cache costs milliseconds per miss. Compares
    with the entries known when the miss happened (the memory cache's keys
    then, and disk entries not newer than the miss), never with itself."""

    def __init__(self, comps: dict):
        self.comps, self.key = comps, key_of(comps)
        with _lock:
            self.known_keys = {k for k in _components if k != self.key}
            self.unreadable = _unreadable.pop(self.key, None)   # this graph's entry, just discarded
        self.directory, self.when = cache_dir(), time.time()
        self.reason = None

    def __call__(self) -> str:
        if self.reason is None:
            self.reason = explain_miss(self.comps, self)
        return self.reason


def explain_miss(comps: dict, at: MissExplainer | None = None) -> str:
    """Which components differ from the closest known entry (memory, then
    disk; with ``at``, as the cache was at that miss). Entries that cannot
    be read are counted ("unreadable entry"), never raised."""
    key = key_of(comps)
    if at is not None and at.unreadable:
        return (f"unreadable entry: the cached entry of this graph was discarded "
                f"({at.unreadable}) and rebuilt")
    with _lock:
        known = [c for k, c in _components.items()
                 if k != key and (at is None or k in at.known_keys)]
    directory = at.directory if at is not None else cache_dir()
    bad = 0
    for f in (entries(directory)[-200:] if directory else []):
        try:
            if at is not None and os.lstat(f).st_mtime > at.when:
                continue
            header = read_header(f)
        except FileNotFoundError:
            continue                 # removed since it was listed
        except (BadEntry, OSError):
            bad += 1
            continue
        if header["key"] != key:
            known.append(header["components"])
    skipped = f" ({bad} unreadable entr{'y' if bad == 1 else 'ies'} skipped)" if bad else ""
    if not known:
        return ("the cache is empty" if not bad else
                f"no readable entry to compare with{skipped}")
    best = min(known, key=lambda c: sum(c.get(k) != v for k, v in comps.items()))
    diff = [k for k, v in comps.items() if best.get(k) != v]
    if not diff:
        return "an equal entry exists but was not usable (evicted or discarded)" + skipped
    names = {"structure": "graph structure", "types": "shapes/dtypes/input names",
             "constants": "constant values", "options": "compile options",
             "graphc": "graphc version/source", "llvm": "LLVM version", "cpu": "CPU",
             "objects": "pass objects"}
    return "closest cached graph differs in: " + ", ".join(names.get(k, k) for k in diff) + skipped
