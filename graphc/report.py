"""Inspection of a compiled function: the report (passes, kernels, memory),
why two nodes were not fused, and dumps of every stage to a directory."""
from __future__ import annotations

import itertools
import os

from .ir.graph import type_str
from .ir.node import Node

_dump_ids = itertools.count()


def _bytes(n: int) -> str:
    for unit, k in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} B"


def kernel_rows(f) -> list[dict]:
    num = f.graph.numbering()
    rows = []
    for i, k in enumerate(f.kernels):
        members = sorted(k.members, key=lambda m: num.get(m, 1 << 30))
        rows.append({
            "index": i, "kind": k.kind, "shape": k.shape, "split": k.split,
            "outputs": [f"%{num[o.id]}" for o in k.outputs],
            "nodes": [f"%{num[m]}" for m in members if m in num],
            "ops": [f.graph_node(m).op for m in members],
            "gemm": k.matmul is not None,
            "hoisted": [f"%{num[r.id]}" for r in k.hoisted],
            "accumulates": [f"%{num[a.id]}" for a in k.accumulates],
            "name": k.name,
        })
    return rows


def kernel_label(row: dict) -> str:
    """A kernel's kind as the report prints it: "loop", "custom", "gemm", or
    "gemm+loop" for a GEMM whose kernel also stores loop outputs (an epilogue)."""
    if row["gemm"] and len(row["outputs"]) > 1:
        return "gemm+loop"
    return "gemm" if row["kind"] == "matmul" else row["kind"]


def report(f) -> str:
    """Text report: passes (time, node counts), kernels, memory plan."""
    g = f.graph
    how = (f"opt_level {f.opt_level}, backend llvm" if f.backend == "llvm"
           else "backend interp (the numpy interpreter: no passes, no kernels)")
    lines = [f"graphc: {len(g.placeholders)} input(s), {len(g.outputs)} output(s), "
             f"{len(g.updates)} update(s), {how}"]
    sym = [p for p in f.source_graph.placeholders if p.batch is not None]
    if sym:             # docs/dynamic.md: buffers and loops are those of the bound
        dims = {p.batch.dim.id: p.batch.dim for p in sym}
        lines.append("symbolic: " + "; ".join(
            f"{d.name} <= {d.max} on {', '.join(p.name for p in sym if p.batch.dim is d)}"
            for d in dims.values()) + " (planned for the bound)")
    if f.passes:
        lines.append("")
        lines.append("passes                     ms    nodes")
        total = 0.0
        for r in f.passes:
            total += r.seconds
            lines.append(f"  {r.name:<20} {1e3 * r.seconds:7.2f}   {r.nodes_before:4d} -> "
                         f"{r.nodes_after:<4d}")
        lines.append(f"  {'total':<20} {1e3 * total:7.2f}")
        if f.compile_seconds:
            lines.append(f"  (compile total {1e3 * f.compile_seconds:.1f} ms, of which LLVM "
                         f"{1e3 * f.llvm_seconds:.1f} ms)")
    if f.backend == "llvm":
        lines.append("")
        lines.append(f"compile cache: hit ({f.cache_hit})" if f.cache_hit
                     else f"compile cache: miss ({f.cache_miss_reason})")
    if f.kernels:
        lines.append("")
        lines.append(f"kernels ({len(f.kernels)})")
        for row in kernel_rows(f):
            loop = "x".join(str(s) for s in row["shape"]) or "scalar"
            if row["split"] < len(row["shape"]):
                outer = "x".join(str(s) for s in row["shape"][:row["split"]]) or "1"
                loop += f" (rows of {outer})"
            kind = kernel_label(row)
            ops = ", ".join(dict.fromkeys(row["ops"]))
            extra = ""
            if row["hoisted"]:
                extra += f"; row reductions {' '.join(row['hoisted'])}"
            if row["accumulates"]:
                extra += f"; accumulates {' '.join(row['accumulates'])}"
            if row["kind"] == "custom":      # e.g. a host callback (graphc/extend/callback.py)
                from .ops import registry
                d = registry.OPS.get(f.kernels[row["index"]].root.op)
                extra += f"; opaque: {d.extra.get('opaque', 'its own kernel') if d else '?'}"
            lines.append(f"  #{row['index']:<3} {kind:<9} loop {loop:<24} stores "
                         f"{' '.join(row['outputs'])}{extra}")
            lines.append(f"       nodes {' '.join(row['nodes'])}  ({ops})")
    m = f.memory
    if m is not None:
        lines.append("")
        lines.append("memory")
        lines.append(f"  arena            {_bytes(m.size):>10}   (intermediates, one allocation)")
        plan = f.plan
        if plan is not None:
            lines.append(f"  allocated        {_bytes(plan.arena_size):>10}   (the arena with its "
                         "header, staging slots and workspace: f.plan_text())")
        lines.append(f"  peak             {_bytes(m.peak):>10}   (live intermediates + outputs)")
        lines.append(f"  one buffer/node  {_bytes(m.naive_size):>10}   "
                     f"(peak is {100 * m.peak / max(m.naive_size, 1):.0f}% of it)")
        saved = max(m.stored_bytes - m.size - sum(o.size * o.dtype.itemsize
                                                   for o in g.outputs if not o.is_leaf), 0)
        lines.append(f"  saved by reuse   {_bytes(saved):>10}   ({m.reused} buffer(s) reused, "
                     f"{len(m.inplace)} written in place"
                     + (f": {_bytes(sum(o.size * o.dtype.itemsize for o, _ in m.inplace))}"
                        if m.inplace else "") + ")")
        lines.append(f"  saved by fusion  {_bytes(max(m.naive_size - m.stored_bytes, 0)):>10}   "
                     "(values computed inline, never stored)")
    return "\n".join(lines)


def why_not_fused(f, a: Node, b: Node) -> str:
    """Why nodes a and b are computed in different kernels."""
    if not f.kernels:
        return "this function has no kernels (interpreter backend)"
    a2, b2 = f.current(a), f.current(b)
    pre = []
    num = f.graph.numbering()
    for orig, cur in ((a, a2), (b, b2)):
        if cur.op != orig.op and cur.id in num:
            pre.append(f"{orig.op} {orig.name!r} was rewritten to %{num[cur.id]} ({cur.op}) "
                       "by the graph passes")
    a, b = a2, b2
    for n in (a, b):
        if n.id not in num:
            return "; ".join(pre + [f"{n.name} is not in the compiled graph"])
    ka, kb = f.kernel_of(a), f.kernel_of(b)
    name = lambda n: f"%{num[n.id]} ({n.op})"   # noqa: E731
    if a.is_leaf or b.is_leaf:
        leaf = a if a.is_leaf else b
        return "; ".join(pre + [f"{name(leaf)} is a {leaf.op}: it is read from memory, "
                                "never computed in a kernel"])
    if ka == kb:
        return "; ".join(pre + [f"{name(a)} and {name(b)} are fused: both are in kernel #{ka}"])
    path = _path(a, b) or _path(b, a)
    if path is None:
        k1, k2 = f.kernels[ka], f.kernels[kb]
        why = (f"{name(a)} and {name(b)} do not depend on each other; they are in kernels "
               f"#{ka} (loop {k1.shape}) and #{kb} (loop {k2.shape})")
        if k1.shape != k2.shape:
            why += ", which loop over different domains"
        else:
            why += (", which share no input, so horizontal fusion was not worth it, or merging "
                    "them would make the kernel graph cyclic")
        return "; ".join(pre + [why])
    for p, c in zip(path, path[1:]):
        if f.kernel_of(p) != f.kernel_of(c):
            reason = f.fusion_reasons.get((p.id, c.id), "they were placed in different kernels")
            return "; ".join(pre + [f"{name(p)} (kernel #{f.kernel_of(p)}) -> {name(c)} "
                                    f"(kernel #{f.kernel_of(c)}): {reason}"])
    return "; ".join(pre + ["no kernel boundary found on the path"])


def _path(src: Node, dst: Node):
    """A data path src -> ... -> dst (list of nodes), or None."""
    seen = {}
    stack = [dst]
    seen[dst.id] = None
    while stack:
        n = stack.pop()
        if n is src:
            out = [n]
            while seen[out[-1].id] is not None:
                out.append(seen[out[-1].id])
            return out
        for i in n.inputs:
            if i.id not in seen:
                seen[i.id] = n
                stack.append(i)
    return None


def dump(f, directory: str) -> str:
    """Write every pass's graph text and DOT, the LLVM IR before and after
    optimization, the assembly, the plan and the report, numbered in pipeline order.
    Returns the directory written."""
    d = os.path.join(directory, f"graphc-{os.getpid()}-{next(_dump_ids):03d}")
    os.makedirs(d, exist_ok=True)
    k = 0

    def write(name, text):
        nonlocal k
        with open(os.path.join(d, f"{k:02d}-{name}"), "w") as fh:
            fh.write(text)
    write("input.txt", (f.passes[0].text_before if f.passes else f.graph.text()) + "\n")
    k += 1
    for r in f.passes:
        write(f"{r.name}.txt", f"# {r.purpose}\n# {1e3 * r.seconds:.3f} ms, {r.nodes_before} -> "
              f"{r.nodes_after} nodes\n{r.text_after}\n\n{r.diff()}\n")
        write(f"{r.name}.dot", r.dot() + "\n")
        k += 1
    if f.llvm_ir:
        write("llvm.ll", f.llvm_ir)
        k += 1
        write("llvm-opt.ll", f.llvm_ir_optimized)
        k += 1
        write("asm.s", f.asm)
        k += 1
    if f.plan is not None:
        write("plan.txt", f.plan_text() + "\n")
        k += 1
    write("report.txt", report(f) + "\n")
    return d


__all__ = ["report", "why_not_fused", "dump", "type_str"]
