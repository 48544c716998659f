"""``load``: an ONNX model as a graphc graph.

Graph inputs become placeholders (their shapes must be known, or given by
``input_shapes``); floating-point initializers become parameters (trainable,
differentiable) or constants; every other initializer is a constant. Nodes are
converted in order by the converter of their op type (``CONVERTERS``); a node
whose inputs are all known at load time (constants, shapes) is evaluated at
once, so shape subgraphs (Shape -> Gather -> Concat -> Reshape) fold away.
"""
from __future__ import annotations

import os

import numpy as np

from ..ops.common import constant, parameter, placeholder
from ._deps import require_onnx
from .convert import Context, OnnxImportError, convert_nodes, np_dtype
from .ops_table import load_all


class OnnxGraph:
    """An imported model: ``inputs`` (ONNX input name -> placeholder, in the
    model's order), ``outputs`` (graphc nodes in the model's output order),
    ``output_names``, ``params`` (initializer name -> parameter node), and
    ``opset``. ``compile(**kw)`` compiles the outputs with the inputs in
    order, so the function takes them positionally or by ONNX name."""

    def __init__(self, inputs: dict, outputs: list, output_names: list, params: dict, opset: int):
        self.inputs = inputs
        self.outputs = outputs
        self.output_names = output_names
        self.params = params
        self.opset = opset

    def compile(self, **kw):
        from ..compiler import compile as _compile
        return _compile(list(self.outputs), list(self.inputs.values()), **kw)

    def __repr__(self):
        ins = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self.inputs.items())
        outs = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in
                         zip(self.output_names, self.outputs))
        return f"<OnnxGraph opset {self.opset} ({ins}) -> ({outs}), {len(self.params)} params>"


def _model(src):
    onnx = require_onnx()
    if isinstance(src, onnx.ModelProto):
        return src
    if isinstance(src, (str, os.PathLike)):
        return onnx.load(os.fspath(src))
    if isinstance(src, (bytes, bytearray)):
        return onnx.load_from_string(bytes(src))
    raise TypeError(f"onnx.load: expects a path, bytes or an onnx.ModelProto, got "
                    f"{type(src).__name__}")


def _opset(model) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def _input_shape(vi, input_shapes) -> tuple:
    if input_shapes and vi.name in input_shapes:
        return tuple(int(d) for d in input_shapes[vi.name])
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        raise OnnxImportError(f"graph input {vi.name!r} has no shape; pass "
                              f"input_shapes={{{vi.name!r}: (...)}}")
    dims = []
    for k, d in enumerate(t.shape.dim):
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(int(d.dim_value))
        else:
            sym = f" ({d.dim_param!r})" if d.dim_param else ""
            raise OnnxImportError(f"graph input {vi.name!r}: dimension {k}{sym} is not known; "
                                  f"pass input_shapes={{{vi.name!r}: (...)}} to onnx.load")
    return tuple(dims)


def load(src, params: str = "parameter", input_shapes: dict | None = None,
         constants: dict | None = None) -> OnnxGraph:
    """Import an ONNX model (a path, bytes or ``onnx.ModelProto``).

    ``params``: ``"parameter"`` (floating initializers become trainable
    parameters holding their values) or ``"constant"``. ``input_shapes``:
    ``{input name: shape}`` for inputs whose shape the model leaves symbolic
    (a batch dimension) or to override it. ``constants``: ``{input name:
    value}`` for graph inputs to fix at load time (an axes or shape input);
    they are not inputs of the result."""
    if params not in ("parameter", "constant"):
        raise ValueError(f"onnx.load: params must be 'parameter' or 'constant', got {params!r}")
    load_all()
    onnx = require_onnx()
    from onnx import numpy_helper
    model = _model(src)
    g = model.graph
    for o in model.opset_import:
        if o.domain not in ("", "ai.onnx"):
            used = any(n.domain == o.domain for n in g.node)
            if used:
                bad = next(n for n in g.node if n.domain == o.domain)
                raise OnnxImportError(f"ONNX {bad.op_type} node {bad.name!r} is in domain "
                                      f"{o.domain!r}; graphc imports only the default domain")
    opset = _opset(model)
    ctx = Context(opset)
    inits = {t.name for t in g.initializer}
    for t in g.initializer:
        v = numpy_helper.to_array(t)
        if v.dtype.kind == "f" and params == "parameter" and v.dtype != np.float16:
            p = parameter(v, name=t.name)
            ctx.nodes[t.name] = ctx.params[t.name] = p
        else:
            ctx.consts[t.name] = v
    inputs = {}
    constants = dict(constants or {})
    names = {vi.name for vi in g.input}
    unknown = set(constants) - names
    if unknown:
        raise OnnxImportError(f"constants names {sorted(unknown)}, which are not graph inputs")
    if input_shapes:
        unknown = set(input_shapes) - (names - inits)
        if unknown:
            raise OnnxImportError(f"input_shapes names {sorted(unknown)}, which are not graph "
                                  f"inputs (the inputs are {sorted(names - inits)})")
    for vi in g.input:
        if vi.name in inits:        # IR < 4: initializers are listed as inputs too
            continue
        if vi.name in constants:
            ctx.consts[vi.name] = np.asarray(constants[vi.name])
            continue
        if not vi.type.HasField("tensor_type"):
            raise OnnxImportError(f"graph input {vi.name!r} is not a tensor "
                                  f"({vi.type.WhichOneof('value')}); graphc imports tensors only")
        dt = np_dtype(vi.type.tensor_type.elem_type, f"graph input {vi.name!r}")
        ph = placeholder(_input_shape(vi, input_shapes), dt, name=vi.name)
        ctx.nodes[vi.name] = inputs[vi.name] = ph
    convert_nodes(ctx, g.node)
    outputs, names = [], []
    for vo in g.output:
        if vo.name in ctx.nodes:
            n = ctx.nodes[vo.name]
        elif vo.name in ctx.consts:
            n = constant(ctx.consts[vo.name])
        else:
            raise OnnxImportError(f"graph output {vo.name!r} is not produced by any node")
        outputs.append(n)
        names.append(vo.name)
    del onnx
    return OnnxGraph(inputs, outputs, names, dict(ctx.params), opset)
