"""graphc: a static computation-graph compiler for deep learning.

Build a graph of placeholder, parameter, constant and op nodes, differentiate
it with :func:`grad`, and :func:`compile` it to one native kernel::

    import numpy as np, graphc as gc
    x = gc.placeholder((16, 12), "float64", name="x")
    w = gc.parameter(np.random.randn(12, 5), name="w")
    loss = gc.mean(gc.tanh(x @ w) ** 2)
    (gw,) = gc.grad(loss, [w])
    f = gc.compile([loss, gw])
    loss_v, gw_v = f(x=np.ones((16, 12)))
"""
from __future__ import annotations

from . import distributed, extend, nn, optim  # extend: the extension API (registers the custom_vjp op)
from . import passes as _passes  # noqa: F401 - the pipeline (imported now, not at first compile)
from .autodiff import grad
from .backend.llvm import emit as _emit  # noqa: F401
from .compiler import CompiledFunction, compile, get_num_threads, set_num_threads
from .errors import (
                     AttrError,
                     DoubleActivationWarning,
                     DTypeError,
                     GraphcError,
                     InputError,
                     InputTypeError,
                     OpArgError,
                     PaddedBatchWarning,
                     RuntimeCheckError,
                     ShapeError,
)
from .extend import (
                     OpCheckError,
                     RewritePass,
                     check_op,
                     custom_gradient,
                     register_op,
                     unregister_op,
)
from .ir.dim import Dim
from .ir.dtypes import bool_, float32, float64, int32, int64
from .ir.graph import Graph
from .ir.node import Node
from .ops import *  # noqa: F401,F403 - the op functions are the public API
from .ops import __all__ as _ops_all
from .ops.common import parameter, placeholder
from .passes import Pass, register_pass
from .tracing import RetraceWarning, assign, function, jit, value_and_grad
from .version import __version__ as __version__

__all__ = ["grad", "compile", "CompiledFunction", "get_num_threads", "set_num_threads", "Graph",
           "Node", "Dim", "placeholder", "parameter", "function", "jit", "value_and_grad", "assign",
           "RetraceWarning",
           "GraphcError", "ShapeError", "DTypeError", "InputError", "InputTypeError",
           "RuntimeCheckError", "AttrError", "OpArgError", "DoubleActivationWarning",
           "PaddedBatchWarning",
           "float32", "float64", "int32", "int64", "bool_",
           "custom_gradient", "register_op", "unregister_op", "check_op", "OpCheckError",
           "Pass", "RewritePass", "register_pass", "extend", "plugins", "nn", "optim", "distributed",
           *_ops_all]

from . import compiler as _compiler  # noqa: E402


def _export_onnx(f, path=None):
    from .onnx import exporter  # imported (and onnx with it) only when used
    return exporter.to_model(f) if path is None else exporter.save(f, path)


_compiler.EXPORTERS.setdefault("onnx", _export_onnx)     # CompiledFunction.to_onnx

from . import plugins  # noqa: E402

plugins.autoload()      # packages in the entry-point group graphc.plugins (docs/extending.md)
