"""Metrics and evaluation: :func:`accuracy` as a graph node, and
:func:`evaluator`, the evaluation function ``fit`` runs on its validation
data once per epoch."""
from __future__ import annotations

import numpy as np

from .. import ops as O
from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from ..ops.common import placeholder
from .errors import ConfigError, ConfigTypeError

METRICS = ("loss", "accuracy")


def accuracy(outputs, labels) -> Node:
    """The fraction of rows whose largest output (logit or probability, last
    axis) is at the integer label: ``mean(argmax(outputs, -1) == labels)``,
    a float64 scalar."""
    out, lab = O.as_node(outputs), O.as_node(labels)
    if not D.is_int(lab.dtype):
        raise DTypeError(f"accuracy: labels must be integer class indices, got {lab.dtype}")
    if out.ndim < 1 or out.shape[:-1] != lab.shape:
        raise ShapeError(f"accuracy: outputs {out.shape} need labels of shape {out.shape[:-1]}, "
                         f"got {lab.shape}")
    hit = O.equal(O.argmax(out, axis=-1), O.cast(lab, D.int64))
    return O.mean(O.cast(hit, D.float64))


class Evaluator:
    """``evaluator(model, loss)``: see :func:`evaluator`."""

    def __init__(self, model, loss=None, metrics=METRICS, *, input: str = "x",  # noqa: A002
                 target: str = "y", batch_size: int | None = None, backend: str = "llvm"):
        if not callable(model):
            raise ConfigTypeError(f"evaluator: model must be a Module or a function of a node, "
                                  f"got {model!r}")
        if loss is not None and not callable(loss):
            raise ConfigTypeError(f"evaluator: loss must be a function (outputs, targets), "
                                  f"got {loss!r}")
        metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ConfigError(f"evaluator: metrics must be some of {METRICS}, got {metrics}")
        if "loss" in metrics and loss is None:
            metrics = tuple(m for m in metrics if m != "loss")
            if not metrics:
                raise ConfigError("evaluator: no loss function and no other metric")
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer))
                                       or batch_size < 1):
            raise ConfigError(f"evaluator: batch_size must be a positive int, got {batch_size!r}")
        self.model, self.loss, self.metrics = model, loss, metrics
        self.input, self.target, self.batch_size, self.backend = input, target, batch_size, backend
        self._compiled: dict = {}

    def _arrays(self, data):
        if isinstance(data, dict):
            missing = [k for k in (self.input, self.target) if k not in data]
            if missing:
                raise ConfigError(f"evaluator: the data has no {missing} (keys {sorted(data)}; "
                                  f"set input= and target=)")
            x, y = data[self.input], data[self.target]
        elif isinstance(data, (tuple, list)) and len(data) == 2:
            x, y = data
        else:
            raise ConfigTypeError(f"evaluator: data must be (inputs, targets) or a dict, got "
                                  f"{type(data).__name__}")
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim < 1 or y.ndim < 1 or len(x) != len(y):
            raise ConfigError(f"evaluator: inputs {x.shape} and targets {y.shape} need the same "
                              f"first (example) axis")
        return x, y

    def _function(self, x, y, n: int):
        key = (n, x.shape[1:], x.dtype.str, y.shape[1:], y.dtype.str)
        f = self._compiled.get(key)
        if f is None:
            from ..compiler import compile as gc_compile
            modes = [(m, m.training) for m in getattr(self.model, "modules", list)()]
            try:
                if modes:
                    self.model.eval()           # the graph is built in eval mode ...
                xp = placeholder((n,) + x.shape[1:], x.dtype, name=self.input)
                yp = placeholder((n,) + y.shape[1:], y.dtype, name=self.target)
                out = self.model(xp)
                outs = [self.loss(out, yp) if m == "loss" else accuracy(out, yp)
                        for m in self.metrics]
            finally:
                for m, mode in modes:           # ... and the model's modes are left as they were
                    m.__dict__["training"] = mode
            f = self._compiled[key] = gc_compile(outs, inputs=[xp, yp], backend=self.backend)
        return f

    def __call__(self, data) -> dict:
        """``{metric: value}`` over all of ``data``: ``(inputs, targets)`` or a
        dict with the input and target names."""
        x, y = self._arrays(data)
        n = len(x)
        bs = n if self.batch_size is None else min(self.batch_size, n)
        sums = np.zeros(len(self.metrics))
        for lo in range(0, n, bs):
            xb, yb = x[lo:lo + bs], y[lo:lo + bs]
            vals = self._function(x, y, len(xb))(xb, yb)
            sums += len(xb) * np.array([float(np.asarray(v)) for v in vals])
        return dict(zip(self.metrics, (sums / n).tolist()))


def evaluator(model, loss=None, metrics=METRICS, *, input: str = "x",  # noqa: A002
              target: str = "y", batch_size: int | None = None,
              backend: str = "llvm") -> Evaluator:
    """An evaluation function for ``fit(..., validation_data=, evaluate=)``:
    called with ``(inputs, targets)`` (or a dict with keys ``input`` and
    ``target``), it returns ``{"loss": mean loss(model(inputs), targets),
    "accuracy": accuracy(...)}``.

    The graph is built at the first call, on placeholders of the data's
    shape, with ``model`` in eval mode (dropout off, batch normalization on
    its running statistics; the model's modes are restored afterwards), and
    compiled once; parameters are read at every call, so each epoch sees the
    current weights. The whole data set is one call, or batches of
    ``batch_size`` (averaged, weighted by size; a smaller last batch is one
    more compiled function). ``loss`` must average over the examples (the
    losses' default ``reduction="mean"``); ``"accuracy"`` needs integer class
    targets. Without ``loss`` only the accuracy is computed.
    """
    return Evaluator(model, loss, metrics, input=input, target=target, batch_size=batch_size,
                     backend=backend)
