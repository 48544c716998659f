"""``save`` / ``to_model``: a graphc graph as an ONNX model (opset 18).

The nodes reachable from the outputs are walked in topological order and
each graphc primitive becomes one or a few ONNX nodes (``_EXPORT``);
placeholders become graph inputs, parameters initializers (by name),
constants initializers. Composites (softmax, conv2d, pools...) are exported
as the primitives they are made of."""
from __future__ import annotations

import os

import numpy as np

from ..ir import dtypes as D
from ..ir.graph import Graph
from ..ir.node import Node
from ._deps import require_onnx
from .convert import onnx_type

OPSET = 18
_I64_MIN = -(2 ** 63)


class _Writer:
    def __init__(self, helper, numpy_helper):
        self.h, self.nh = helper, numpy_helper
        self.nodes, self.inits = [], []
        self.names: dict[int, str] = {}
        self._k = 0

    def fresh(self, base="t") -> str:
        self._k += 1
        return f"{base}_{self._k}"

    def init(self, value, base="c") -> str:
        name = self.fresh(base)
        self.inits.append(self.nh.from_array(np.asarray(value), name))
        return name

    def ints(self, values) -> str:
        return self.init(np.array(list(values), np.int64), "ints")

    def add(self, op, inputs, out=None, **attrs) -> str:
        out = out or self.fresh(op.lower())
        self.nodes.append(self.h.make_node(op, list(inputs), [out], **attrs))
        return out


_SIMPLE = {"neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "tanh": "Tanh",
           "sigmoid": "Sigmoid", "relu": "Relu", "abs": "Abs", "stop_gradient": "Identity",
           "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow",
           "maximum": "Max", "minimum": "Min", "greater": "Greater", "less": "Less",
           "greater_equal": "GreaterOrEqual", "less_equal": "LessOrEqual", "equal": "Equal",
           "where": "Where", "matmul": "MatMul", "erf": "Erf", "custom_vjp": "Identity",
           "sin": "Sin", "cos": "Cos", "atan": "Atan", "floor": "Floor", "ceil": "Ceil", "round": "Round",
           "sign": "Sign"}


def _export_node(w: _Writer, n: Node, ins: list, out: str) -> None:
    op, a = n.op, n.attrs
    if op in _SIMPLE:
        w.add(_SIMPLE[op], ins[:1] if op == "custom_vjp" else ins, out)
    elif op == "cast":
        w.add("Cast", ins, out, to=onnx_type(a["dtype"]))
    elif op == "not_equal":
        w.add("Not", [w.add("Equal", ins)], out)
    elif op in ("bitwise_and", "bitwise_or", "bitwise_xor"):
        kind = op.split("_")[1].capitalize()
        w.add(kind if D.is_bool(n.dtype) else f"Bitwise{kind}", ins, out)
    elif op == "invert":
        w.add("Not" if D.is_bool(n.dtype) else "BitwiseNot", ins, out)
    elif op == "log1p":
        w.add("Log", [w.add("Add", [ins[0], w.init(np.array(1, n.dtype))])], out)
    elif op == "floor_divide" and D.is_float(n.dtype):
        w.add("Floor", [w.add("Div", ins)], out)
    elif op == "floor_divide":
        f = [w.add("Cast", [i], to=onnx_type(D.float64)) for i in ins]
        w.add("Cast", [w.add("Floor", [w.add("Div", f)])], out, to=onnx_type(n.dtype))
    elif op == "mod" and D.is_float(n.dtype):
        q = w.add("Floor", [w.add("Div", ins)])
        w.add("Sub", [ins[0], w.add("Mul", [q, ins[1]])], out)
    elif op == "mod":
        w.add("Mod", ins, out, fmod=0)
    elif op == "reshape":
        w.add("Reshape", [ins[0], w.ints(a["shape"])], out)
    elif op == "transpose":
        w.add("Transpose", ins, out, perm=list(a["axes"]))
    elif op == "broadcast_to":
        w.add("Expand", [ins[0], w.ints(a["shape"])], out)
    elif op == "slice":
        stops = [b if b >= 0 or c > 0 else _I64_MIN for b, c in zip(a["stops"], a["steps"])]
        w.add("Slice", [ins[0], w.ints(a["starts"]), w.ints(stops),
                        w.ints(range(n.inputs[0].ndim)), w.ints(a["steps"])], out)
    elif op == "unslice":
        _unslice(w, n, ins[0], out)
    elif op == "concatenate":
        w.add("Concat", ins, out, axis=a["axis"])
    elif op in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod"):
        name = {"reduce_sum": "ReduceSum", "reduce_max": "ReduceMax", "reduce_min": "ReduceMin",
                "reduce_prod": "ReduceProd"}[op]
        w.add(name, [ins[0], w.ints(a["axes"])], out, keepdims=int(bool(a["keepdims"])))
    elif op == "take":
        w.add("Gather", ins, out, axis=a["axis"])
    elif op == "windows":
        _windows(w, n, ins[0], out)
    elif op == "scan":
        a = n.inputs[0]
        if a.op == "constant" and not np.any(a.value):       # h[j] = b[j]: b itself
            w.add("Expand", [ins[1], w.ints(n.shape)], out)
            return
        if a.op != "constant" or not np.all(a.value == 1):
            raise ValueError(f"onnx export: a scan (node %{n.id}) other than a cumulative sum "
                             "has no ONNX op")
        w.add("CumSum", [ins[1], w.init(np.array(n.attrs["axis"], np.int64))], out,
              reverse=int(bool(n.attrs["reverse"])))
    elif op == "scatter_add":
        _scatter_add(w, n, ins, out)
    elif op == "one_hot":
        lab = w.add("Unsqueeze", [ins[0], w.ints([-1])])
        w.add("Equal", [lab, w.init(np.arange(a["depth"], dtype=n.inputs[0].dtype))], out)
    else:
        raise ValueError(f"onnx export: graphc op {op!r} (node %{n.id}) has no ONNX export")


def _windows(w: _Writer, n: Node, x: str, out: str) -> None:
    """Every kernel tap's strided Slice, stacked before the window axes."""
    import itertools
    a = n.attrs
    k = len(a["kernel"])
    src = n.inputs[0].shape
    lead = len(src) - k
    outs = n.shape[lead + k:]
    axes = list(range(lead, lead + k))
    taps = []
    for offs in itertools.product(*(range(kk) for kk in a["kernel"])):
        starts = [o * d for o, d in zip(offs, a["dilation"])]
        ends = [s0 + (m - 1) * st + 1 for s0, m, st in zip(starts, outs, a["stride"])]
        t = w.add("Slice", [x, w.ints(starts), w.ints(ends), w.ints(axes), w.ints(a["stride"])])
        taps.append(w.add("Unsqueeze", [t, w.ints([lead])]))
    cat = taps[0] if len(taps) == 1 else w.add("Concat", taps, axis=lead)
    w.add("Reshape", [cat, w.ints(n.shape)], out)


def _scatter_add(w: _Writer, n: Node, ins: list, out: str) -> None:
    """take's adjoint: ScatterElements(zeros, indices, updates, reduction=add)
    with the index axes of the updates merged into one."""
    upd, ind = n.inputs
    ax = n.attrs["axis"]
    pre, post = list(upd.shape[:ax]), list(upd.shape[ax + ind.ndim:])
    m = int(np.prod(ind.shape, dtype=np.int64))
    u = w.add("Reshape", [ins[0], w.ints(pre + [m] + post)])
    i = w.add("Reshape", [ins[1], w.ints([1] * len(pre) + [m] + [1] * len(post))])
    i = w.add("Expand", [w.add("Cast", [i], to=onnx_type(D.int64)), w.ints(pre + [m] + post)])
    zeros = w.add("ConstantOfShape", [w.ints(n.shape)], value=w.nh.from_array(np.zeros(1, n.dtype)))
    w.add("ScatterElements", [zeros, i, u], out, axis=ax, reduction="add")


def _unslice(w: _Writer, n: Node, g: str, out: str) -> None:
    """Zeros of the source shape with the slice's elements filled in, axis by
    axis: a step s > 1 interleaves s - 1 zeros (unsqueeze, pad, merge), a
    negative step reverses first, then a Pad places the run."""
    a = n.attrs
    shape = list(n.inputs[0].shape)
    if 0 in shape:
        w.add("ConstantOfShape", [w.ints(a["shape"])], out,
              value=w.nh.from_array(np.zeros(1, n.dtype)))
        return
    for d, (start, stop, step, size) in enumerate(zip(a["starts"], a["stops"], a["steps"],
                                                      a["shape"])):
        r = range(start, stop, step)
        m = len(r)
        if m == size:
            continue
        lo, s = (r[0], step) if step > 0 else (r[-1], -step)
        if step < 0:
            g = w.add("Slice", [g, w.ints([-1]), w.ints([_I64_MIN]), w.ints([d]), w.ints([-1])])
        if s > 1:
            u = w.add("Unsqueeze", [g, w.ints([d + 1])])
            pads = [0] * (2 * (len(shape) + 1))
            pads[len(shape) + 1 + d + 1] = s - 1
            u = w.add("Pad", [u, w.ints(pads)], mode="constant")
            merged = shape[:d] + [m * s] + shape[d + 1:]
            u = w.add("Reshape", [u, w.ints(merged)])
            g = w.add("Slice", [u, w.ints([0]), w.ints([(m - 1) * s + 1]), w.ints([d])])
        pads = [0] * (2 * len(shape))
        pads[d], pads[len(shape) + d] = lo, size - (lo + (m - 1) * s + 1)
        g = w.add("Pad", [g, w.ints(pads)], mode="constant")
        shape[d] = size
    w.add("Identity", [g], out)


def to_model(outputs, inputs=None, opset: int = OPSET, output_names=None):
    """An ``onnx.ModelProto`` computing ``outputs`` (a node, a list of nodes,
    or a CompiledFunction: its graph as given) from placeholders ``inputs``
    (default: every placeholder, in graph order)."""
    onnx = require_onnx()
    from onnx import helper, numpy_helper
    if hasattr(outputs, "source_graph"):          # a CompiledFunction
        g = outputs.source_graph
        outs, inputs = list(g.outputs), list(inputs or g.placeholders)
    else:
        outs = [outputs] if isinstance(outputs, Node) else list(outputs)
        if not all(isinstance(o, Node) for o in outs):
            raise TypeError("onnx.save: outputs must be graph nodes or a CompiledFunction")
        g = Graph(outs)
        inputs = list(inputs) if inputs is not None else list(g.placeholders)
    missing = [p.name for p in g.placeholders if all(p is not q for q in inputs)]
    if missing:
        raise ValueError(f"onnx.save: the outputs depend on placeholders {missing}, not in inputs")
    w = _Writer(helper, numpy_helper)
    graph_inputs = []
    for p in inputs:
        w.names[p.id] = p.name
        graph_inputs.append(helper.make_tensor_value_info(p.name, onnx_type(p.dtype), list(p.shape)))
    for n in g.nodes:
        if n.id in w.names:
            continue
        if n.op == "parameter":
            w.names[n.id] = n.name
            w.inits.append(numpy_helper.from_array(np.asarray(n.value), n.name))
        elif n.op == "constant":
            w.names[n.id] = w.init(n.value, "const")
        elif n.op == "placeholder":
            raise ValueError(f"onnx.save: placeholder {n.name!r} is not in inputs")
        else:
            out = w.fresh(n.op)
            _export_node(w, n, [w.names[i.id] for i in n.inputs], out)
            w.names[n.id] = out
    names = list(output_names) if output_names else [f"output_{k}" for k in range(len(outs))]
    graph_outputs = []
    for o, name in zip(outs, names):
        w.add("Identity", [w.names[o.id]], name)
        graph_outputs.append(helper.make_tensor_value_info(name, onnx_type(o.dtype), list(o.shape)))
    graph = helper.make_graph(w.nodes, "graphc", graph_inputs, graph_outputs, w.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="graphc")
    onnx.checker.check_model(model)
    return model


def save(outputs, path, inputs=None, opset: int = OPSET, output_names=None):
    """Write ``to_model(outputs, inputs)`` to ``path``; returns the model."""
    onnx = require_onnx()
    model = to_model(outputs, inputs, opset, output_names)
    onnx.save(model, os.fspath(path))
    return model
