"""Converters of ONNX's control flow: If, Loop and Scan, imported by
evaluating the control at load time (graphc graphs are static).

- **If**: the condition must be known when the model is loaded (a constant,
  or computed from shapes and constants); the branch it selects is imported
  in place of the node, the other is not looked at.
- **Loop**: unrolled. The trip count ``M`` must be known at load time (or
  absent), and so must the condition: the input ``cond`` and the body's
  ``cond_out`` at every iteration (computed from the iteration number, the
  trip count, constants or shapes, never from graph values). Each iteration
  imports the body once, with the loop-carried values of the previous one;
  scan outputs are stacked along a new first axis. At most
  :data:`UNROLL_LIMIT` iterations.
- **Scan**: unrolled along the scan axis (its length is static), the same
  way; Scan-8 (a leading batch axis) per batch entry, with full-length
  sequences only.

A subgraph sees the outer graph's values by name; nodes inside it are
converted (and folded) like any other. Errors inside a subgraph name the
node holding it."""
from __future__ import annotations

from collections import ChainMap

import numpy as np

from .. import ops as O
from ..ir.node import Node
from .convert import Context, DynamicInputError, OnnxImportError, convert_nodes, np_dtype, op

UNROLL_LIMIT = 1024          # iterations a Loop or Scan may be unrolled to


def _value(ctx, name):
    """A tensor of the outer graph: its known value, or its graphc node."""
    if name in ctx.consts and name not in ctx.params:
        return ctx.consts[name]
    return ctx.nodes[name]


def run_subgraph(ctx: Context, n, graph, bindings: list, what: str) -> list:
    """Import ``graph`` (a GraphProto) with its inputs bound to ``bindings``
    (graphc nodes or numpy values, in the graph's input order); return its
    outputs (a numpy value where the output is known at load time)."""
    from onnx import numpy_helper
    if len(bindings) != len(graph.input):
        raise n.error(f"{what} has {len(graph.input)} input(s), the node gives {len(bindings)}")
    child = Context(ctx.opset)
    child.nodes, child.consts = ChainMap({}, ctx.nodes), ChainMap({}, ctx.consts)
    child.params = ctx.params
    for vi, v in zip(graph.input, bindings):
        if isinstance(v, Node) and v.op != "constant":
            child.nodes[vi.name] = v
        else:
            child.consts[vi.name] = np.asarray(v.value if isinstance(v, Node) else v)
    for t in graph.initializer:
        child.consts[t.name] = numpy_helper.to_array(t)
    try:
        convert_nodes(child, graph.node)
    except DynamicInputError as e:           # keeps its type and tensor (the backend fixes it)
        d = DynamicInputError(f"{n.where()}: in {what}: {e}")
        d.tensor = getattr(e, "tensor", None)
        raise d from e
    except OnnxImportError as e:
        raise n.error(f"in {what}: {e}") from e
    outs = []
    for vo in graph.output:
        name = vo.name
        node = child.nodes.get(name)
        if name in child.consts and (node is None or node.op == "constant"):
            outs.append(child.consts[name])
        elif node is not None:
            outs.append(node)
        else:
            raise n.error(f"{what}'s output {name!r} is not produced by any node")
    return outs


def _known_bool(n, v, what) -> bool:
    if isinstance(v, Node):
        if v.op != "constant":
            raise n.error(f"{what} depends on graph values: graphc imports only control flow "
                          "whose conditions are known when the model is loaded")
        v = v.value
    v = np.asarray(v)
    if v.size != 1:
        raise n.error(f"{what} must hold one value, got shape {v.shape}")
    return bool(v.reshape(()))


@op("If")
def _if(ctx, n):
    c = ctx.const(n, 0, "cond, which graphc needs to pick the branch")
    branch = "then_branch" if _known_bool(n, c, "cond") else "else_branch"
    g = n.attr(branch)
    if g is None:
        raise n.error(f"attribute {branch} is missing")
    return run_subgraph(ctx, n, g, [], branch)


def _stack(n, values, vo, what):
    """Scan outputs of every iteration stacked on a new first axis."""
    if not values:
        t = vo.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if not t.HasField("shape") or None in dims:
            raise n.error(f"{what} ran no iteration and its scan output {vo.name!r} has no "
                          "static shape")
        return np.zeros([0] + dims, np_dtype(t.elem_type, f"scan output {vo.name!r}"))
    if all(not isinstance(v, Node) for v in values):
        return np.stack([np.asarray(v) for v in values])
    return O.concatenate([O.expand_dims(O.as_node(v), 0) for v in values], 0)


def _limit(n, k):
    if k > UNROLL_LIMIT:
        raise n.error(f"{k} iterations: graphc unrolls {n.op} and stops at "
                      f"{UNROLL_LIMIT} (graphc.onnx.ops_control.UNROLL_LIMIT)")


@op("Loop")
def _loop(ctx, n):
    body = n.attr("body")
    trip = None
    if n.has(0):
        m = ctx.const(n, 0, "M, the trip count, which graphc needs to unroll the loop")
        trip = int(np.asarray(m).reshape(()))
    cond = True
    if n.has(1):
        cond = _known_bool(n, ctx.const(n, 1, "cond, which graphc needs to unroll the loop"),
                           "cond")
    carried = [_value(ctx, name) if name else None for name in n.inputs[2:]]
    if any(v is None for v in carried):
        raise n.error("a loop-carried input is missing")
    nc = len(carried)
    if len(body.output) < 1 + nc:
        raise n.error(f"the body has {len(body.output)} output(s), fewer than 1 + {nc} "
                      "loop-carried values")
    scans = [[] for _ in body.output[1 + nc:]]
    k = 0
    while cond and (trip is None or k < trip):
        _limit(n, k + 1)
        outs = run_subgraph(ctx, n, body, [np.array(k, np.int64), np.array(cond)] + carried,
                            f"body (iteration {k})")
        cond = _known_bool(n, outs[0], f"the body's cond_out (iteration {k})")
        carried = outs[1:1 + nc]
        for s, v in zip(scans, outs[1 + nc:]):
            s.append(v)
        k += 1
    return carried + [_stack(n, s, vo, "the loop") for s, vo in zip(scans, body.output[1 + nc:])]


def _scan8(ctx, n):
    """Scan-8: every input has a leading batch axis and the scan axis is 1; the body
    runs per batch entry (unrolled), and the results are stacked back."""
    if n.has(0):
        lens = ctx.const(n, 0, "sequence_lens, which graphc needs to unroll the scan")
    else:
        lens = None
    if n.attr("directions") and any(n.attr("directions")):
        raise n.error("Scan-8 with reverse directions is not supported")
    body = n.attr("body")
    m = int(n.attr("num_scan_inputs"))
    vals = [_value(ctx, name) for name in n.inputs[1:]]
    nstate = len(vals) - m
    if not vals[nstate:]:
        raise n.error("no scan inputs (num_scan_inputs is 0)")
    B, T = vals[nstate].shape[0], vals[nstate].shape[1]
    if B == 0:
        raise n.error("Scan-8 with an empty batch is not supported")
    if lens is not None and not (np.asarray(lens) == T).all():
        raise n.error(f"sequence_lens {np.asarray(lens).tolist()} shorter than the scan length "
                      f"{T} are not supported")
    _limit(n, B * T)
    per = []
    for b in range(B):
        state = [v[b] for v in vals[:nstate]]
        scans = [[] for _ in range(len(body.output) - nstate)]
        for t in range(T):
            outs = run_subgraph(ctx, n, body, state + [v[b, t] for v in vals[nstate:]],
                                f"body (batch {b}, step {t})")
            state = outs[:nstate]
            for sc, v in zip(scans, outs[nstate:]):
                sc.append(v)
        per.append(state + [_stack(n, sc, vo, "the scan")
                            for sc, vo in zip(scans, body.output[nstate:])])
    return [_stack(n, [p[k] for p in per], None, "the scan") for k in range(len(per[0]))]


@op("Scan")
def _scan(ctx, n):
    if n.opset < 9:
        return _scan8(ctx, n)
    body = n.attr("body")
    m = int(n.attr("num_scan_inputs"))
    vals = [_value(ctx, name) for name in n.inputs]
    nstate = len(vals) - m
    state, xs = vals[:nstate], [O.as_node(v) if isinstance(v, Node) else np.asarray(v)
                                for v in vals[nstate:]]
    in_axes = list(n.attr("scan_input_axes", [0] * m))
    in_dirs = list(n.attr("scan_input_directions", [0] * m))
    nout = len(body.output) - nstate
    out_axes = list(n.attr("scan_output_axes", [0] * nout))
    out_dirs = list(n.attr("scan_output_directions", [0] * nout))
    if not xs:
        raise n.error("no scan inputs (num_scan_inputs is 0)")
    axes = [a % x.ndim for a, x in zip(in_axes, xs)]
    lengths = {x.shape[a] for a, x in zip(axes, xs)}
    if len(lengths) != 1:
        raise n.error(f"the scan inputs have different lengths {sorted(lengths)} on their axes")
    (T,) = lengths
    _limit(n, T)
    scans = [[] for _ in range(nout)]
    for t in range(T):
        step = []
        for x, a, d in zip(xs, axes, in_dirs):
            i = T - 1 - t if d else t
            key = tuple(i if k == a else slice(None) for k in range(x.ndim))
            step.append(x[key])
        outs = run_subgraph(ctx, n, body, state + step, f"body (step {t})")
        state = outs[:nstate]
        for s, v in zip(scans, outs[nstate:]):
            s.append(v)
    results = []
    for s, vo, a, d in zip(scans, body.output[nstate:], out_axes, out_dirs):
        y = _stack(n, s[::-1] if d else s, vo, "the scan")
        a = a % (len(y.shape))
        if a:
            perm = list(range(1, a + 1)) + [0] + list(range(a + 1, len(y.shape)))
            y = np.transpose(y, perm) if isinstance(y, np.ndarray) else O.transpose(y, perm)
        results.append(y)
    return state + results
