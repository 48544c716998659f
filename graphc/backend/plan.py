"""The kernel plan: which graph nodes are computed by which loop nest, and
where every value lives. The fusion pass (passes/fusion.py) decides the
kernels and the memory pass (passes/memory.py) the buffers; the LLVM emitter
turns the plan into IR."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph
from ..ir.node import Node
from ..ops import registry
from ..ops.index import symbolic_reads
from ..ops.registry import OpKind

ALIGN = 64


@dataclass
class Kernel:
    """One loop nest, optionally preceded by a GEMM.

    kind      -- "loop", "matmul" (a GEMM, then an optional loop part over the
                 product's shape: its epilogue) or "custom" (an op with its own
                 kernel template)
    outputs   -- nodes this kernel stores to memory
    members   -- ids of every node computed inside (outputs and inlined producers)
    shape     -- the loop domain
    split     -- the loop over ``shape[:split]`` is the outer loop; reductions
                 over ``shape[split:]`` (``hoisted``) are computed once per
                 outer index, before the inner loop that stores the outputs
    matmul    -- the GEMM node (kind "matmul")
    hoisted   -- row reductions computed per outer index, in order
    accumulates -- reductions accumulated into their output while the loop
                 runs (e.g. a bias gradient summed over the batch)
    """
    kind: str
    outputs: list
    members: set
    shape: tuple
    name: str = ""
    split: int | None = None
    matmul: Node | None = None
    hoisted: list = field(default_factory=list)
    accumulates: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def __post_init__(self):
        if self.split is None:
            self.split = len(self.shape)

    @property
    def root(self) -> Node:
        return self.outputs[0]

    def staged(self) -> set:
        """Ids of nodes computed in a stage of their own (read from memory by
        the rest of the kernel): the GEMM result, hoisted and accumulated
        reductions."""
        s = {r.id for r in self.hoisted} | {a.id for a in self.accumulates}
        if self.matmul is not None:
            s.add(self.matmul.id)
        return s

    def loop_outputs(self) -> list:
        st = self.staged()
        return [o for o in self.outputs if o.id not in st]

    def has_loop(self) -> bool:
        return bool(self.loop_outputs() or self.hoisted or self.accumulates)


# Which kernel computes a node of each op kind (ops/registry.py OpKind) when it
# is a kernel's root: a loop nest, a GEMM, or the op's own kernel template.
_KERNEL_KIND = {OpKind.ELEMENTWISE: "loop", OpKind.INDEX: "loop", OpKind.REDUCE: "loop",
                OpKind.MATMUL: "matmul", OpKind.KERNEL: "custom"}


def kernel_kind(n: Node) -> str:
    return _KERNEL_KIND[registry.get(n.op).kind]


def is_immediate(n: Node) -> bool:
    """Constants with one element are emitted as immediates, never loaded."""
    return n.op == "constant" and n.size == 1


def single_kernel(n: Node, index: int) -> Kernel:
    kind = kernel_kind(n)
    if kind == "matmul":
        return Kernel("matmul", [n], {n.id}, n.shape, name=f"k{index}_{n.op}", matmul=n)
    return Kernel(kind, [n], {n.id}, n.shape, name=f"k{index}_{n.op}")


def plan_unfused(graph: Graph) -> list[Kernel]:
    """One kernel per op node: the plan below opt_level 2."""
    return [single_kernel(n, i) for i, n in enumerate(graph.op_nodes())]


@dataclass
class MemoryPlan:
    """Where each value lives. ``arena`` maps node id -> byte offset in the
    arena; ``size`` is the arena's size in bytes."""
    arena: dict
    size: int
    naive_size: int = 0          # bytes if every op node had its own buffer
    peak: int = 0                # most bytes live at once (arena values + outputs)
    stored_bytes: int = 0        # bytes if every stored value had its own buffer
    inplace: list = field(default_factory=list)   # (node, node whose buffer it took)
    direct: dict = field(default_factory=dict)    # update value id -> parameter written in place
    reused: int = 0              # values placed in a buffer freed by an earlier value
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
    naive = sum(nbytes(n) for n in graph.op_nodes())
    outs = sum(nbytes(o) for o in graph.outputs)
    return MemoryPlan(offsets, off, naive, off + outs, off)


def input_indices(n: Node, idx: tuple, fresh) -> list:
    """(input, symbolic index) pairs at which computing n at idx reads its inputs
    (None entries: unknown): the symbolic interpreter of the ops' index rules
    (:func:`graphc.ops.index.symbolic_reads`)."""
    return symbolic_reads(n, idx, fresh)


def reads_only_at_write_index(x: Node, domain: tuple, roots, members, hoisted=(),
                              accumulates=(), matmul=None) -> bool:
    """Does a loop kernel over ``domain`` (storing ``roots``, computing
    ``members`` inline) read ``x`` only at the index it is writing, so that
    the value it stores may overwrite x's memory element by element (in-place
    buffers, updates written straight into their parameter)?

    Index expressions are followed symbolically (:func:`input_indices`) from
    every value the kernel computes, through every inline member, down to x:
    ``transpose(x * 0.5)`` reads x at the transposed index, an inline
    reduction at indices of its own, a GEMM or an opaque op anywhere; a read
    that cannot be followed counts as unsafe. A row reduction hoisted out of
    the inner loop and a reduction accumulated while the loop runs read x at
    the loop index (the row is summed before it is written); other staged
    values (the GEMM result, the hoisted reductions) are read from their
    buffers by the rest of the kernel, so tracing stops at them."""
    if x.shape != tuple(domain):
        return False
    D = tuple(domain)
    full = tuple(("i", k) for k in range(len(D)))

    def key(idx):       # axes of extent 1 have the one index 0
        return tuple(0 if D[k] == 1 else idx[k] for k in range(len(D)))

    want = key(full)
    staged = {h.id for h in hoisted} | {a.id for a in accumulates}
    if matmul is not None:
        staged.add(matmul.id)
    unknown = None
    starts = []
    for r in roots:
        if r.id in staged and r is not matmul:
            i = r.inputs[0]
            starts.append((i, full if i.shape == D else unknown))
        elif r is matmul:
            starts.extend((i, unknown) for i in r.inputs)
        else:
            starts.append((r, full if r.shape == D else unknown))
    seen, fresh = set(), [0]
    while starts:
        n, idx = starts.pop()
        if n is x:
            if idx is unknown or any(i is None for i in idx) or key(idx) != want:
                return False
            continue
        if n.is_leaf or n.id not in members or n.id in staged or (n.id, idx) in seen:
            continue
        seen.add((n.id, idx))
        if idx is unknown or any(i is None for i in idx):
            starts.extend((i, unknown) for i in n.inputs)
        else:
            starts.extend(input_indices(n, idx, fresh))
    return True
