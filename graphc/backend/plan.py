"""The kernel plan: which graph nodes are computed by which loop nest, and
where every value lives. The LLVM emitter turns a plan into IR; the fusion
and memory-planning passes decide it."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph
from ..ir.node import Node
from ..ops import registry

ALIGN = 64


@dataclass
class Kernel:
    """One loop nest (or GEMM).

    kind     -- "loop" (elementwise/index ops over ``shape``), "reduce", "matmul"
                or "custom" (an op with its own kernel template)
    outputs  -- nodes this kernel stores to memory (for "loop", all of shape ``shape``)
    members  -- ids of every node computed inside (outputs and inlined producers)
    shape    -- the loop domain (the outputs' shape)
    """
    kind: str
    outputs: list
    members: set
    shape: tuple
    name: str = ""
    notes: list = field(default_factory=list)

    @property
    def root(self) -> Node:
        return self.outputs[0]


def kernel_kind(n: Node) -> str:
    kind = registry.get(n.op).kind
    return {"elementwise": "loop", "index": "loop", "kernel": "custom"}.get(kind, kind)


def is_immediate(n: Node) -> bool:
    """Constants with one element are emitted as immediates, never loaded."""
    return n.op == "constant" and n.size == 1


def plan_unfused(graph: Graph) -> list[Kernel]:
    """One kernel per op node: the plan at opt_level 0."""
    out = []
    for n in graph.op_nodes():
        out.append(Kernel(kernel_kind(n), [n], {n.id}, n.shape, name=f"k{len(out)}_{n.op}"))
    return out


@dataclass
class MemoryPlan:
    """Where each value lives. ``arena`` maps node id -> byte offset in the
    arena; ``size`` is the arena's size in bytes."""
    arena: dict
    size: int
    naive_size: int = 0
    notes: list = field(default_factory=list)


def nbytes(n: Node) -> int:
    return n.size * n.dtype.itemsize


def align(k: int) -> int:
    return (k + ALIGN - 1) // ALIGN * ALIGN


def plan_memory_naive(graph: Graph, kernels: list[Kernel]) -> MemoryPlan:
    """One arena slot per stored intermediate (no reuse)."""
    out_ids = {o.id for o in graph.outputs}
    offsets, off = {}, 0
    for k in kernels:
        for n in k.outputs:
            if n.id in out_ids or n.id in offsets:
                continue
            offsets[n.id] = off
            off += align(nbytes(n))
    return MemoryPlan(offsets, off, off)
