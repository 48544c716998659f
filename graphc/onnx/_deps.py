"""The optional dependency: ``onnx`` is imported on first use, never by
``import graphc`` or ``import graphc.onnx``."""
from __future__ import annotations


def require_onnx():
    """The ``onnx`` module, or an ImportError saying how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError("graphc.onnx needs the onnx package: pip install graphc[onnx] "
                          f"(or pip install onnx onnxruntime); importing it failed: {e}") from None
    return onnx
