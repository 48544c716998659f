"""ONNX in and out: ``load`` a model as a graphc graph, ``save`` a graphc graph
as a model onnxruntime runs (docs/onnx.md).

Importing this package does not import ``onnx``; each function does, when
called, and says ``pip install graphc[onnx]`` if it is missing::

    import graphc as gc, graphc.onnx
    m = gc.onnx.load("model.onnx")          # placeholders, nodes, parameters
    f = m.compile()
    (y,) = f(x=...)
"""
from __future__ import annotations

from ._deps import require_onnx
from .convert import DynamicInputError
from .exporter import save, to_model
from .importer import OnnxGraph, OnnxImportError, load
from .ops_table import CONVERTERS, supported_ops

__all__ = ["load", "save", "to_model", "OnnxGraph", "OnnxImportError", "DynamicInputError", "CONVERTERS",
           "supported_ops", "require_onnx"]
