"""``save``: a graphc graph as an ONNX model."""
from __future__ import annotations


def to_model(outputs, inputs=None, opset: int = 17):
    raise NotImplementedError


def save(outputs, path, inputs=None, opset: int = 17):
    raise NotImplementedError
