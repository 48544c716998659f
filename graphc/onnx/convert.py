"""What every converter shares: the table they register in, the node they
are given, the load-time context (graphc nodes and known numpy values per
ONNX tensor name), and the errors.

A converter is ``fn(ctx, node) -> output or list of outputs``; an output is a
graphc Node, a numpy array (a value known at load time) or None (an
optional output that is not produced).
"""
from __future__ import annotations

import numpy as np

from ..backend.interp import run_graph
from ..errors import GraphcError
from ..ir import dtypes as D
from ..ir.graph import Graph
from ..ir.node import Node
from ..ops.common import constant

CONVERTERS: dict = {}        # ONNX op_type -> converter
# nodes never evaluated at load time even when their inputs are known (random
# ones; If and Loop, whose subgraphs may read graph inputs by name)
NOT_FOLDED = {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike",
              "Multinomial", "Bernoulli", "If", "Loop", "Scan"}
# ops whose subgraph attributes are kept (as GraphProtos) for their converter
SUBGRAPH_OPS = {"If", "Loop", "Scan"}


class OnnxImportError(GraphcError, ValueError):
    """A model graphc cannot import: an unsupported op, attribute, dtype or
    an input whose shape is unknown. The message names the node or input."""


class DynamicInputError(OnnxImportError):
    """An input that graphc needs at load time (a shape, axes, pads) depends
    on a graph input; ``onnx.load(..., constants={name: value})`` fixes it."""


def op(*names):
    """Register the decorated function as the converter of ONNX ops ``names``."""
    def deco(fn):
        for n in names:
            CONVERTERS[n] = fn
        return fn
    return deco


_DTYPES = None


def np_dtype(elem_type: int, what: str) -> np.dtype:
    """The numpy dtype of an ONNX TensorProto element type, if graphc has it."""
    global _DTYPES
    if _DTYPES is None:
        from onnx import TensorProto as T
        _DTYPES = {T.FLOAT: D.float32, T.DOUBLE: D.float64, T.INT32: D.int32, T.INT64: D.int64,
                   T.BOOL: D.bool_}
    dt = _DTYPES.get(elem_type)
    if dt is None:
        from onnx import TensorProto
        try:
            name = TensorProto.DataType.Name(elem_type)
        except ValueError:
            name = str(elem_type)
        raise OnnxImportError(f"{what} has ONNX type {name}, which graphc does not support "
                              "(supported: FLOAT, DOUBLE, INT32, INT64, BOOL)")
    return dt


def onnx_type(dt) -> int:
    """The ONNX element type of a graphc dtype."""
    from onnx import TensorProto as T
    return {D.float32: T.FLOAT, D.float64: T.DOUBLE, D.int32: T.INT32, D.int64: T.INT64,
            D.bool_: T.BOOL}[np.dtype(dt)]


class OnnxNode:
    """One ONNX node as converters see it: ``op``, ``name``, ``inputs`` and
    ``outputs`` (tensor names, "" for an absent optional one), ``attrs``
    (decoded values) and the model's ``opset``."""

    def __init__(self, proto, opset: int):
        from onnx import helper
        self.op = proto.op_type
        self.name = proto.name
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)
        self.opset = opset
        self.attrs = {}
        for a in proto.attribute:
            if a.type in (a.GRAPH, a.GRAPHS):
                if self.op in SUBGRAPH_OPS and a.type == a.GRAPH:
                    self.attrs[a.name] = a.g
                    continue
                raise self.error(f"attribute {a.name!r} is a subgraph, which graphc does not "
                                 "import")
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            self.attrs[a.name] = v

    def where(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"ONNX {self.op} node{name} (opset {self.opset})"

    def error(self, msg: str) -> OnnxImportError:
        return OnnxImportError(f"{self.where()}: {msg}")

    def attr(self, name: str, default=None):
        return self.attrs.get(name, default)

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] != ""

    def wants(self, i: int) -> bool:
        """Is output ``i`` used (named)?"""
        return i < len(self.outputs) and self.outputs[i] != ""


class Context:
    """The tensors known while a model is converted: ``nodes`` (name -> graphc
    node) and ``consts`` (name -> numpy value known at load time: initializers
    that are not parameters, Constant nodes, shapes, and every node whose
    inputs are all known, evaluated at once with the ops' numpy references)."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: dict[str, Node] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.params: dict[str, Node] = {}

    def known(self, name: str) -> bool:
        return name in self.consts

    def x(self, node: OnnxNode, i: int) -> Node:
        """Input ``i`` of ``node`` as a graphc node."""
        if not node.has(i):
            raise node.error(f"input {i} is missing")
        name = node.inputs[i]
        n = self.nodes.get(name)
        if n is None:
            if name not in self.consts:
                raise node.error(f"input {i} ({name!r}) is not produced by any earlier node, "
                                 "initializer or graph input")
            v = self.consts[name]
            if v.dtype not in D.SUPPORTED:
                raise node.error(f"input {i} ({name!r}) has dtype {v.dtype}, which graphc does "
                                 "not support")
            n = self.nodes[name] = constant(v)
        return n

    def opt(self, node: OnnxNode, i: int) -> Node | None:
        return self.x(node, i) if node.has(i) else None

    def xs(self, node: OnnxNode) -> list:
        return [self.x(node, i) for i in range(len(node.inputs)) if node.has(i)]

    def const(self, node: OnnxNode, i: int, what: str) -> np.ndarray:
        """The value of input ``i`` (``what`` it is, for the error), which must
        be known when the model is loaded. A parameter gives its value at load
        time."""
        name = node.inputs[i] if node.has(i) else None
        if name is None:
            raise node.error(f"input {i} ({what}) is missing")
        if name in self.consts:
            return self.consts[name]
        if name in self.params:
            return self.params[name].value
        e = DynamicInputError(
            f"{node.where()}: input {i} ({what}, {name!r}) must be known when the model is "
            "loaded (a constant, an initializer or computed from shapes), but it depends on a "
            "graph input; pass its value with onnx.load(..., constants={name: value})")
        e.tensor = name
        raise e

    def shape(self, node: OnnxNode, i: int) -> tuple:
        name = node.inputs[i]
        if name in self.nodes:
            return self.nodes[name].shape
        return self.const(node, i, "tensor").shape

    def set_outputs(self, node: OnnxNode, results, foldable: bool) -> None:
        if not isinstance(results, (list, tuple)):
            results = [results]
        wanted = [k for k, o in enumerate(node.outputs) if o]
        if len(results) < len(node.outputs) and any(k >= len(results) for k in wanted):
            raise node.error(f"graphc produces {len(results)} output(s), the model uses output "
                             f"{max(wanted)}")
        for name, r in zip(node.outputs, results):
            if not name:
                continue
            if r is None:
                raise node.error(f"output {name!r} is not supported by graphc's converter")
            if isinstance(r, Node):
                if foldable and not r.is_leaf:
                    self.consts[name] = evaluate(r)
                elif r.op == "constant":
                    self.consts[name] = r.value
                    self.nodes[name] = r
                else:
                    self.nodes[name] = r
            else:
                self.consts[name] = np.asarray(r)
                self.nodes.pop(name, None)


def convert_nodes(ctx: Context, protos) -> None:
    """Convert the ONNX nodes ``protos`` in order into ``ctx`` (the graph's
    nodes, or a subgraph's)."""
    for proto in protos:
        node = OnnxNode(proto, ctx.opset)
        if proto.domain not in ("", "ai.onnx"):
            raise node.error(f"domain {proto.domain!r} is not supported")
        fn = CONVERTERS.get(node.op)
        if fn is None:
            raise OnnxImportError(f"{node.where()}: op {node.op!r} is not supported by "
                                  "graphc's ONNX importer")
        present = [i for i in node.inputs if i]
        foldable = node.op not in NOT_FOLDED and all(
            i in ctx.consts and i not in ctx.params for i in present)
        try:
            results = fn(ctx, node)
        except OnnxImportError:
            raise
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise node.error(f"{type(e).__name__}: {e}") from e
        ctx.set_outputs(node, results, foldable)


def evaluate(n: Node) -> np.ndarray:
    """The value of a node computed only from constants (numpy references)."""
    (v,) = run_graph(Graph([n]), {})
    return v


def axis_of(node: OnnxNode, axis: int, ndim: int, what="axis") -> int:
    if not -ndim <= axis < max(ndim, 1):
        raise node.error(f"{what} {axis} is out of range for a {ndim}-d input")
    return axis % max(ndim, 1)
