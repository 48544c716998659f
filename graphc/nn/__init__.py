"""``graphc.nn``: layers, activations, losses, initializers and a training
loop for graphs compiled with :func:`graphc.compile`.

A model is a :class:`Module` whose parameters are graph parameter nodes;
calling it on a placeholder builds the forward graph. With an optimizer from
:mod:`graphc.optim`, the whole training step (forward, backward and update)
is one compiled call::

    model = gc.nn.Sequential(gc.nn.Dense(784, 256, activation=gc.relu),
                             gc.nn.Dense(256, 10))
    x = gc.placeholder((128, 784), "float32", name="x")
    y = gc.placeholder((128,), "int64", name="y")
    loss = gc.nn.cross_entropy(model(x), y)
    step = gc.compile(loss, updates=gc.optim.Adam(lr=1e-3).updates(loss, model.parameters()))
"""
from __future__ import annotations

from . import functional, init
from .callbacks import EarlyStopping, History, StopTraining
from .conv import AdaptiveAvgPool2d, AvgPool2d, Conv1d, Conv2d, Flatten, MaxPool2d
from .errors import (
    ConfigError,
    ConfigTypeError,
    DoubleActivationWarning,
    DroppedExamplesWarning,
    LazyParameterError,
)
from .fit import fit
from .functional import (
    dropout,
    elu,
    gelu,
    leaky_relu,
    relu,
    rng_updates,
    sigmoid,
    silu,
    softplus,
    tanh,
)
from .init import manual_seed
from .interop import convert_torch_state_dict
from .layers import Dense, Dropout, Embedding, LayerNorm
from .losses import binary_cross_entropy_with_logits, cross_entropy, mse
from .metrics import Evaluator, accuracy, evaluator
from .module import Module, Sequential, load, save
from .norm import BatchNorm1d, BatchNorm2d
from .state import state_updates

__all__ = ["Module", "Sequential", "Dense", "LayerNorm", "Embedding", "Dropout", "relu",
           "leaky_relu", "gelu", "softplus", "tanh", "sigmoid", "silu", "elu", "dropout",
           "cross_entropy", "mse", "binary_cross_entropy_with_logits", "init", "functional",
           "manual_seed", "rng_updates", "fit", "save", "load", "ConfigError", "ConfigTypeError",
           "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten",
           "BatchNorm1d", "BatchNorm2d", "state_updates", "convert_torch_state_dict",
           "DoubleActivationWarning", "LazyParameterError", "DroppedExamplesWarning",
           "History", "EarlyStopping", "StopTraining", "accuracy", "evaluator", "Evaluator"]
