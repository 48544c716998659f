"""The numpy interpreter: evaluates a graph op by op with each op's numpy
reference. It is the oracle every compiled result is tested against, the
``backend="interp"`` of :func:`graphc.compile`. A node is evaluated by
``ops.registry.evaluate``, which constant folding calls too."""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ops import registry

eval_node = registry.evaluate      # (the op's reference on input arrays)


def run_graph(graph: Graph, feeds: dict) -> list:
    """Evaluate ``graph``; ``feeds`` maps placeholder id -> array (and may
    give a parameter another value for this call: a symbolic batch's size).
    Returns the outputs; then, if the graph has updates, assigns every
    updated parameter its new value (all computed from the values before the
    call)."""
    env: dict[int, np.ndarray] = {}
    for n in graph.nodes:
        if n.op == "placeholder":
            env[n.id] = feeds[n.id]
        elif n.op == "parameter":
            env[n.id] = feeds[n.id] if n.id in feeds else n.value
        elif n.op == "constant":
            env[n.id] = n.value
        else:
            env[n.id] = eval_node(n, [env[i.id] for i in n.inputs])
    results = [np.array(env[o.id], copy=True) for o in graph.outputs]
    new = [(p, np.array(env[v.id], copy=True)) for p, v in graph.updates]
    for p, v in new:
        p.value = v
    return results
