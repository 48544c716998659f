"""Activations and dropout as functions of graph nodes. All are composites
of graphc primitives, so they get gradients and fusion for free; each
follows PyTorch's definition (and its derivative at the kinks)."""
from __future__ import annotations

import math

from .. import ops as O
from ..errors import DTypeError
from ..ir import dtypes as D
from ..ir.graph import topo_order
from ..ir.node import Node
from .errors import ConfigError, ConfigTypeError

relu = O.relu
tanh = O.tanh
sigmoid = O.sigmoid


def _float(name: str, x) -> Node:
    x = O.as_node(x)
    if D.is_int(x.dtype):
        return O.cast(x, D.float64)
    if not D.is_float(x.dtype):
        raise DTypeError(f"{name}: needs a floating input, got {x.dtype}")
    return x


def leaky_relu(x, negative_slope: float = 0.01) -> Node:
    """``x`` where ``x > 0``, else ``negative_slope * x``."""
    x = _float("leaky_relu", x)
    return O.where(x > 0, x, x * float(negative_slope))


def gelu(x, approximate: str = "none") -> Node:
    """Gaussian error linear unit: ``x * Phi(x)`` with the exact normal CDF
    (``approximate="none"``, PyTorch's default) or its tanh approximation
    (``approximate="tanh"``)."""
    x = _float("gelu", x)
    if approximate == "none":
        return 0.5 * x * (1.0 + O.erf(x * (1.0 / math.sqrt(2.0))))
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))
        return 0.5 * x * (1.0 + O.tanh(inner))
    raise ConfigError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def log1p_exp(z) -> Node:
    """``log(1 + exp(z))`` without overflow, with the exact derivative
    ``sigmoid(z)`` everywhere (both branches see clamped inputs, so neither
    overflows, and the kink at 0 gets sigmoid(0) = 1/2)."""
    z = _float("softplus", z)
    zp, zn = O.maximum(z, 0.0), O.minimum(z, 0.0)
    return O.where(z > 0, zp + O.log1p(O.exp(-zp)), O.log1p(O.exp(zn)))


def softplus(x, beta: float = 1.0, threshold: float = 20.0) -> Node:
    """``log(1 + exp(beta*x)) / beta``, and ``x`` itself where
    ``beta*x > threshold`` (PyTorch's definition)."""
    x = _float("softplus", x)
    if beta <= 0:
        raise ConfigError(f"softplus: beta must be > 0, got {beta}")
    bx = x * float(beta) if beta != 1 else x
    sp = log1p_exp(bx)
    if beta != 1:
        sp = sp / float(beta)
    return O.where(bx > float(threshold), x, sp)


def silu(x) -> Node:
    """``x * sigmoid(x)`` (swish)."""
    x = _float("silu", x)
    return x * O.sigmoid(x)


def elu(x, alpha: float = 1.0) -> Node:
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``."""
    x = _float("elu", x)
    return O.where(x > 0, x, float(alpha) * (O.exp(O.minimum(x, 0.0)) - 1.0))


def dropout(x, p: float, seed: int, counter, training: bool = True) -> Node:
    """Zero each element with probability ``p`` and scale the rest by
    ``1/(1-p)``. The mask is ``random_uniform(x.shape, seed, counter) >= p``,
    drawn inside the compiled kernel: the same ``(seed, counter)`` gives the
    same mask; a new counter value gives a new one. Identity when not
    ``training`` or ``p == 0``."""
    x = _float("dropout", x)
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    u = O.random_uniform(x.shape, seed, counter, x.dtype)
    return O.where(u >= p, x * (1.0 / (1.0 - p)), 0.0)


def graph_roots(outputs, who: str) -> list:
    """The nodes of ``outputs``: nodes, and the nodes in lists, tuples (or
    other iterables) and dicts' values."""
    roots = []
    for o in outputs:
        if isinstance(o, Node):
            roots.append(o)
        elif isinstance(o, dict):
            roots += [v for v in o.values() if isinstance(v, Node)]
        else:
            try:
                roots += [v for v in o if isinstance(v, Node)]
            except TypeError:
                raise ConfigTypeError(f"{who}: expected nodes, lists or dicts of nodes, got "
                                      f"{type(o).__name__}") from None
    return roots


def rng_updates(*outputs) -> dict:
    """``{counter: counter + 1}`` for every step-counter parameter that feeds
    a random op in the graphs of ``outputs`` (e.g. a Dropout layer's), so
    each call of a compiled step draws fresh numbers. Optimizers add these to
    their updates themselves; use this for hand-written update dicts."""
    out = {}
    for n in topo_order(graph_roots(outputs, "rng_updates")):
        if n.op != "random_uniform":
            continue
        c = n.inputs[0]
        if c.op == "cast":
            c = c.inputs[0]
        if c.op == "parameter" and D.is_int(c.dtype) and c not in out:
            out[c] = c + 1
    return out


ACTIVATIONS = {"relu": O.relu, "tanh": O.tanh, "sigmoid": O.sigmoid, "gelu": gelu,
               "silu": silu, "swish": silu, "elu": elu, "leaky_relu": leaky_relu,
               "softplus": softplus, "softmax": O.softmax, "log_softmax": O.log_softmax,
               "linear": None}


def activation(spec, who: str):
    """The activation function named by ``spec``: a callable (returned as
    is), ``None``, or one of the names of :data:`ACTIVATIONS` (Keras's
    strings: ``"relu"``, ``"softmax"``, ...; ``"linear"`` is none)."""
    if spec is None or callable(spec):
        return spec
    if isinstance(spec, str):
        if spec in ACTIVATIONS:
            return ACTIVATIONS[spec]
        raise ConfigError(f"{who}: unknown activation {spec!r}; the names are "
                          f"{sorted(ACTIVATIONS)} (or pass a function)")
    raise ConfigTypeError(f"{who}: activation must be a function or a name, got {spec!r}")
