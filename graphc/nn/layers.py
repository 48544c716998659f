"""Layers: Dense, LayerNorm, Embedding, Dropout. Defaults follow PyTorch
(``Dense`` is ``torch.nn.Linear``: its weight and bias initializations and
float32), except that a dense weight is stored as ``(in, out)`` so that the
layer computes ``x @ w + b`` with a contiguous inner loop."""
from __future__ import annotations

import copy
import itertools
import math

import numpy as np

from .. import ops as O
from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from ..ops.common import parameter
from ..ops.random import MASK64
from . import functional as F
from . import init as I
from .errors import ConfigError, ConfigTypeError, LazyParameterError
from .module import Module

_names = itertools.count()


def _size(name: str, what: str, v) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
        raise ConfigError(f"{name}: {what} must be a non-negative int, got {v!r}")
    return int(v)


def _float_dtype(name: str, dtype) -> np.dtype:
    dt = D.as_dtype(dtype)
    if not D.is_float(dt):
        raise ConfigError(f"{name}: dtype must be float32 or float64, got {dt}")
    return dt


def _init(name: str, fn, shape, dt, rng, fan_in, fan_out) -> np.ndarray:
    if not callable(fn):
        raise ConfigTypeError(f"{name}: an initializer must be callable, got {fn!r}")
    a = np.asarray(fn(shape, dtype=dt, seed=rng, fan_in=fan_in, fan_out=fan_out))
    if a.shape != tuple(shape):
        raise ConfigError(f"{name}: the initializer returned shape {a.shape}, expected {shape}")
    return a.astype(dt)


def _prefix(name, kind):
    return name if name is not None else f"{kind}{next(_names)}"


class Dense(Module):
    """``activation(x @ weight + bias)``: weight ``(in_features,
    out_features)``, bias ``(out_features,)``.

    ``Dense(in_features, out_features)``, or ``Dense(out_features)``: then
    ``in_features`` is the last axis of the first input the layer is called
    on (a *lazy* layer, as Keras's ``Dense(128)`` or ``torch.nn.LazyLinear``),
    and the parameters are created at that call. Until then ``parameters()``,
    ``state_dict()`` and ``.weight`` raise :class:`LazyParameterError`;
    ``load_state_dict`` creates them from the saved weight's shape.

    Defaults as ``torch.nn.Linear``: weight ``U(±1/sqrt(in))``
    (``kaiming_uniform(a=sqrt(5))``), bias ``U(±1/sqrt(in))``, float32.
    ``activation``: a function of a node or a name (``"relu"``,
    ``"softmax"``, ... see :data:`graphc.nn.functional.ACTIVATIONS`).
    ``weight_init``/``bias_init`` take any initializer of :mod:`graphc.nn.init`
    (use ``functools.partial`` for hyper-parameters). ``seed``: int, numpy
    Generator, or None (the global seed stream; a lazy layer takes its seed
    from the stream when it is constructed, so laziness changes no value).
    """

    def __init__(self, in_features: int | None = None, out_features: int | None = None,
                 activation=None, bias: bool = True, *, weight_init=None, bias_init=None,
                 dtype="float32", seed=None, name: str | None = None):
        super().__init__()
        if out_features is None:                 # Dense(out): in_features at the first call
            if in_features is None:
                raise ConfigError("Dense: give out_features (Dense(out) or Dense(in, out))")
            in_features, out_features = None, in_features
        self.out_features = _size("Dense", "out_features", out_features)
        self.in_features = None if in_features is None else _size("Dense", "in_features",
                                                                   in_features)
        self.activation = F.activation(activation, "Dense")
        for f in (weight_init, bias_init):
            if f is not None and not callable(f):
                raise ConfigTypeError(f"Dense: an initializer must be callable, got {f!r}")
        winit = weight_init or (lambda s, **k: I.kaiming_uniform(s, a=math.sqrt(5), **k))
        self.__dict__["_spec"] = (_float_dtype("Dense", dtype), seed, I.make_rng(seed),
                                  _prefix(name, "dense"), winit, bias_init or I.fan_in_uniform,
                                  bool(bias))
        if self.in_features is not None:
            self._create(self.in_features)

    def _create(self, in_features: int) -> None:
        dt, seed, rng, pre, winit, binit, bias = self.__dict__["_spec"]
        if not isinstance(seed, np.random.Generator):
            rng = copy.deepcopy(rng)          # the layer's own stream: the same values every time
        self.in_features = in_features
        fans = (in_features, self.out_features)
        self.weight = parameter(_init("Dense", winit, fans, dt, rng, *fans), name=f"{pre}.weight")
        self.bias = parameter(_init("Dense", binit, (self.out_features,), dt, rng, *fans),
                              name=f"{pre}.bias") if bias else None

    # the lazy layer's side of Module's parameter protocol
    def _uninitialized(self) -> str | None:
        if "weight" in self.__dict__:
            return None
        return (f"Dense(? -> {self.out_features}) has no parameters yet: in_features is read "
                f"from its first input; call the model on a placeholder first (or give "
                f"Dense(in_features, {self.out_features}))")

    def _materialize_from(self, prefix: str, state) -> bool:
        w = state.get(f"{prefix}weight") if hasattr(state, "get") else None
        if w is None or np.ndim(w) != 2 or np.shape(w)[1] != self.out_features:
            return False
        self._create(int(np.shape(w)[0]))
        return True

    def _forget_parameters(self) -> None:
        for k in ("weight", "bias"):
            if k in self.__dict__:
                delattr(self, k)
        self.in_features = None

    def __getattr__(self, name):
        if name in ("weight", "bias") and "_spec" in self.__dict__:
            raise LazyParameterError(f"{self._uninitialized()} (asked for .{name})")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def forward(self, x) -> Node:
        x = O.as_node(x)
        if x.ndim < 1:
            raise ShapeError(f"Dense(-> {self.out_features}): input of shape {x.shape} has no "
                             "feature axis")
        if self.in_features is None:
            self._create(x.shape[-1])
        if x.shape[-1] != self.in_features:
            raise ShapeError(f"Dense({self.in_features} -> {self.out_features}): input of shape "
                             f"{x.shape} needs a last axis of {self.in_features}")
        y = x @ self.weight
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y) if self.activation is not None else y

    def extra_repr(self) -> str:
        act = "" if self.activation is None else \
            f", activation={getattr(self.activation, '__name__', self.activation)}"
        bias = self.__dict__["_spec"][-1]
        inf = "?" if self.in_features is None else self.in_features
        return f"{inf}, {self.out_features}{act}, bias={bias}"


class LayerNorm(Module):
    """Normalize over the last ``len(normalized_shape)`` axes:
    ``(x - mean) / sqrt(var + eps) * weight + bias`` (biased variance, as
    PyTorch); weight ones, bias zeros."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, *, dtype="float32", name: str | None = None):
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(_size("LayerNorm", "normalized_shape", s)
                                      for s in normalized_shape)
        if not self.normalized_shape:
            raise ConfigError("LayerNorm: normalized_shape must not be empty")
        if not eps >= 0:
            raise ConfigError(f"LayerNorm: eps must be >= 0, got {eps}")
        self.eps = float(eps)
        dt = _float_dtype("LayerNorm", dtype)
        pre = _prefix(name, "layernorm")
        self.weight = parameter(np.ones(self.normalized_shape, dt), name=f"{pre}.weight") \
            if elementwise_affine else None
        self.bias = parameter(np.zeros(self.normalized_shape, dt), name=f"{pre}.bias") \
            if elementwise_affine and bias else None

    def forward(self, x) -> Node:
        x = F._float("LayerNorm", x)
        k = len(self.normalized_shape)
        if x.ndim < k or x.shape[x.ndim - k:] != self.normalized_shape:
            raise ShapeError(f"LayerNorm{self.normalized_shape}: input of shape {x.shape} does "
                             f"not end in {self.normalized_shape}")
        axes = tuple(range(x.ndim - k, x.ndim))
        xc = x - O.mean(x, axes, keepdims=True)
        var = O.mean(xc * xc, axes, keepdims=True)
        y = xc / O.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class Embedding(Module):
    """A lookup table: ``weight[indices]`` with weight ``(num_embeddings,
    embedding_dim)``, initialized N(0, 1) as PyTorch. The gradient is a
    scatter-add into the rows used. Indices outside ``[0, num_embeddings)``
    raise ``RuntimeCheckError`` when the graph runs. ``padding_idx``: that
    row starts at zero and gets no gradient."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 *, weight_init=None, dtype="float32", seed=None, name: str | None = None):
        super().__init__()
        self.num_embeddings = _size("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = _size("Embedding", "embedding_dim", embedding_dim)
        if padding_idx is not None:
            if not isinstance(padding_idx, (int, np.integer)) or \
                    not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ConfigError(f"Embedding: padding_idx {padding_idx!r} is not a row of "
                                  f"{self.num_embeddings}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        dt = _float_dtype("Embedding", dtype)
        shape = (self.num_embeddings, self.embedding_dim)
        w = _init("Embedding", weight_init or I.normal, shape, dt, I.make_rng(seed), *shape)
        if padding_idx is not None:
            w[padding_idx] = 0
        self.weight = parameter(w, name=f"{_prefix(name, 'embedding')}.weight")

    def forward(self, indices) -> Node:
        indices = O.as_node(indices)
        if not D.is_int(indices.dtype):
            raise DTypeError(f"Embedding: indices must be integers, got {indices.dtype}")
        out = O.take(self.weight, indices, 0)
        if self.padding_idx is not None:
            pad = O.expand_dims(O.equal(indices, self.padding_idx), -1)
            out = O.where(pad, O.stop_gradient(out), out)
        return out

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


def _mix64(x: int) -> int:
    """SplitMix64's finalizer: a bijective 64-bit mix (derives stream keys)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


class Dropout(Module):
    """Zero each element with probability ``p`` and scale the rest by
    ``1/(1-p)`` in training mode; the identity in eval mode.

    The mask is drawn inside the compiled kernel by a counter-based generator
    (Philox-4x32-10) from the layer's ``seed`` and its step counter, a
    non-trainable int64 parameter (``counter``, saved with the state).
    Optimizers increment it in their updates (or use
    :func:`graphc.nn.rng_updates`), so every call of a compiled step draws a
    fresh mask; the same seed and counter give the same mask. Each use of the
    layer in a graph gets its own stream.
    """

    def __init__(self, p: float = 0.5, *, seed=None, name: str | None = None):
        super().__init__()
        if not isinstance(p, (int, float, np.floating)) or not 0.0 <= p <= 1.0:
            raise ConfigError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        if seed is None:
            seed = I.next_seed()
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ConfigTypeError(f"Dropout: seed must be an int, got {seed!r}")
        self.seed = int(seed)
        self.counter = parameter(np.array(0, np.int64), name=f"{_prefix(name, 'dropout')}.counter",
                                 trainable=False)
        self.__dict__["_uses"] = 0

    def forward(self, x) -> Node:
        if not self.training or self.p == 0.0:
            return O.as_node(x)
        stream = self.__dict__["_uses"]
        self.__dict__["_uses"] = stream + 1
        key = _mix64(_mix64(self.seed & MASK64) ^ stream)
        return F.dropout(x, self.p, key, self.counter, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p}"
