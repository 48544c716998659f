"""Batch normalization: ``BatchNorm1d`` and ``BatchNorm2d``, with PyTorch's
parameters, buffers, defaults and update rule.

In training mode the layer normalizes with the statistics of the batch
(mean and *biased* variance over every axis but the channel axis) and
records, on the node it returns, the update of its running statistics
(see :mod:`graphc.nn.state`): with ``m = momentum``,

    running_mean <- (1 - m) * running_mean + m * batch_mean
    running_var  <- (1 - m) * running_var  + m * batch_var * n / (n - 1)
    num_batches_tracked <- num_batches_tracked + 1

(the *unbiased* variance, ``n`` values per channel; ``momentum=None`` is the
cumulative average, ``m = 1 / num_batches_tracked``). An optimizer's
``updates()`` includes these updates, so the compiled training step writes
the statistics in place with the parameters; ``gc.nn.state_updates(loss)``
gives them for a step without an optimizer. In eval mode the layer
normalizes with the running statistics (a per-channel scale and shift).
"""
from __future__ import annotations

import math

import numpy as np

from .. import ops as O
from ..errors import ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from ..ops.common import parameter
from . import functional as F
from .errors import ConfigError, ConfigTypeError
from .layers import _float_dtype, _prefix, _size
from .module import Module
from .state import record


class _BatchNorm(Module):
    _ndims: tuple = ()          # accepted input ranks
    _kind = "batchnorm"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, dtype="float32",
                 name: str | None = None):
        super().__init__()
        cls = type(self).__name__
        self.num_features = _size(cls, "num_features", num_features)
        if self.num_features == 0:
            raise ConfigError(f"{cls}: num_features must be positive, got 0")
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or \
                not (eps >= 0 and math.isfinite(eps)):
            raise ConfigError(f"{cls}: eps must be a finite number >= 0, got {eps!r}")
        if momentum is not None and (isinstance(momentum, bool) or
                                     not isinstance(momentum, (int, float, np.floating)) or
                                     not 0.0 <= momentum <= 1.0):
            raise ConfigError(f"{cls}: momentum must be in [0, 1] or None (cumulative average), "
                              f"got {momentum!r}")
        for what, v in (("affine", affine), ("track_running_stats", track_running_stats)):
            if not isinstance(v, (bool, np.bool_)):
                raise ConfigTypeError(f"{cls}: {what} must be a bool, got {v!r}")
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dt = _float_dtype(cls, dtype)
        pre = _prefix(name, self._kind)
        c = self.num_features
        if self.affine:
            self.weight = parameter(np.ones(c, dt), name=f"{pre}.weight")
            self.bias = parameter(np.zeros(c, dt), name=f"{pre}.bias")
        else:
            self.weight = self.bias = None
        if self.track_running_stats:
            self.running_mean = parameter(np.zeros(c, dt), name=f"{pre}.running_mean",
                                          trainable=False)
            self.running_var = parameter(np.ones(c, dt), name=f"{pre}.running_var",
                                         trainable=False)
            self.num_batches_tracked = parameter(np.array(0, np.int64),
                                                 name=f"{pre}.num_batches_tracked", trainable=False)
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked."""
        if self.track_running_stats:
            self.running_mean.value = np.zeros_like(self.running_mean.value)
            self.running_var.value = np.ones_like(self.running_var.value)
            self.num_batches_tracked.value = np.array(0, np.int64)

    def _check(self, x) -> Node:
        cls = type(self).__name__
        x = F._float(cls, x)
        if x.ndim not in self._ndims:
            want = " or ".join(f"{d}-D" for d in self._ndims)
            raise ShapeError(f"{cls}({self.num_features}): expected a {want} input (N, C, ...), "
                             f"got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ShapeError(f"{cls}({self.num_features}): input of shape {x.shape} has "
                             f"{x.shape[1]} channels (axis 1), expected {self.num_features}")
        return x

    def forward(self, x) -> Node:
        x = self._check(x)
        c = self.num_features
        axes = tuple(a for a in range(x.ndim) if a != 1)
        bshape = tuple(c if a == 1 else 1 for a in range(x.ndim))
        if self.training or not self.track_running_stats:
            n = math.prod(x.shape[a] for a in axes)
            if self.training and n <= 1:
                raise ShapeError(f"{type(self).__name__}: expected more than 1 value per channel "
                                 f"in training mode, got input of shape {x.shape}")
            mean = O.mean(x, axes, keepdims=True)
            xc = x - mean
            var = O.mean(xc * xc, axes, keepdims=True)          # biased, as PyTorch normalizes
            y = xc * (1.0 / O.sqrt(var + self.eps))
            if self.weight is not None:
                y = y * O.reshape(self.weight, bshape) + O.reshape(self.bias, bshape)
            if self.training and self.track_running_stats:
                if x.batch is not None and x.batch.axis in axes:   # this call's count, not the bound's
                    from ..ops.symbolic import valid_extent
                    n = O.cast(valid_extent(x.batch), var.dtype) * \
                        float(n // (x.batch.dim.max * x.batch.inner) * x.batch.inner)
                self._record(y, O.reshape(mean, (c,)), O.reshape(var, (c,)), n)
            return y
        rm, rv = self.running_mean, self.running_var
        scale = 1.0 / O.sqrt(rv + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
            shift = self.bias - rm * scale
        else:
            shift = -rm * scale
        return x * O.reshape(scale, bshape) + O.reshape(shift, bshape)

    def _record(self, y: Node, mean: Node, var: Node, n: int) -> None:
        rm, rv, nbt = self.running_mean, self.running_var, self.num_batches_tracked
        if isinstance(n, Node):         # a symbolic batch: the call's count (ops/symbolic.py)
            unbiased = var * O.where(n > 1.0, n / O.maximum(n - 1.0, 1.0), 1.0)
        else:
            unbiased = var * (n / (n - 1)) if n > 1 else var
        m = self.momentum

        def factor(cur, dtype):
            if m is not None:
                return m
            return O.cast(1.0 / O.cast(cur(nbt), D.float64), dtype)    # as PyTorch: in double

        def ema(buf, batch):
            def rule(cur):
                f = factor(cur, buf.dtype)
                return (1.0 - f) * cur(buf) + f * O.cast(batch, buf.dtype)
            return rule
        record(y, [(nbt, lambda cur: cur(nbt) + 1), (rm, ema(rm, mean)), (rv, ema(rv, unbiased))])

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm2d(_BatchNorm):
    """Batch normalization of ``(N, C, H, W)`` inputs over ``N, H, W`` for
    each channel (``torch.nn.BatchNorm2d``): parameters ``weight`` (ones)
    and ``bias`` (zeros) when ``affine``; buffers ``running_mean`` (zeros),
    ``running_var`` (ones) and ``num_batches_tracked`` (int64) when
    ``track_running_stats``. See :mod:`graphc.nn.norm` for the training and
    eval semantics."""
    _ndims = (4,)
    _kind = "batchnorm2d"


class BatchNorm1d(_BatchNorm):
    """Batch normalization of ``(N, C)`` or ``(N, C, L)`` inputs for each
    channel (``torch.nn.BatchNorm1d``); otherwise as :class:`BatchNorm2d`."""
    _ndims = (2, 3)
    _kind = "batchnorm1d"
