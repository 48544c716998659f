"""Losses, each reduced by ``reduction``: ``"mean"`` (the default),
``"sum"`` or ``"none"`` (per-example values). Formulas are PyTorch's, written
in their numerically stable forms."""
from __future__ import annotations

from .. import ops as O
from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from ..ops.nn import warn_if_probabilities
from .errors import ConfigError
from .functional import log1p_exp

REDUCTIONS = ("mean", "sum", "none")


def _reduce(name: str, loss: Node, reduction: str) -> Node:
    if reduction == "mean":
        return O.mean(loss)
    if reduction == "sum":
        return O.sum(loss)
    if reduction == "none":
        return loss
    raise ConfigError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def cross_entropy(logits, labels, *, label_smoothing: float = 0.0, reduction: str = "mean") -> Node:
    """Softmax cross-entropy over the last axis of ``logits`` ``(..., C)``.

    ``labels``: integer class indices of shape ``logits.shape[:-1]`` (a label
    outside ``[0, C)`` raises ``RuntimeCheckError`` when the graph runs), or
    floating class probabilities of the same shape as ``logits``.
    ``label_smoothing`` ``ε`` mixes the target with the uniform distribution,
    as PyTorch: ``(1-ε)·nll + ε·mean_c(-log p_c)``.

    ``logits`` that are the output of a softmax (or sigmoid) raise a
    :class:`~graphc.errors.DoubleActivationWarning`: the loss applies
    log-softmax itself.
    """
    logits, labels = O.as_node(logits), O.as_node(labels)
    warn_if_probabilities("cross_entropy", logits, "log_softmax")
    if logits.ndim < 1:
        raise ShapeError("cross_entropy: logits must have a class axis")
    if not D.is_float(logits.dtype):
        raise DTypeError(f"cross_entropy: logits must be floating, got {logits.dtype}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ConfigError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    logp = O.log_softmax(logits, -1)
    if D.is_float(labels.dtype):
        if labels.shape != logits.shape:
            raise ShapeError(f"cross_entropy: probability targets {labels.shape} must have the "
                             f"logits' shape {logits.shape}")
        nll = -O.sum(O.cast(labels, logits.dtype) * logp, -1)
    elif D.is_int(labels.dtype):
        if labels.shape != logits.shape[:-1]:
            raise ShapeError(f"cross_entropy: logits {logits.shape} need integer labels of shape "
                             f"{logits.shape[:-1]}, got {labels.shape}")
        nll = -O.sum(O.where(O.one_hot(labels, logits.shape[-1]), logp, 0.0), -1)
    else:
        raise DTypeError(f"cross_entropy: labels must be integers or probabilities, got "
                         f"{labels.dtype}")
    if eps > 0.0:
        nll = (1.0 - eps) * nll + eps * -O.mean(logp, -1)
    return _reduce("cross_entropy", nll, reduction)


def mse(prediction, target, *, reduction: str = "mean") -> Node:
    """Mean squared error ``(prediction - target)**2``; the shapes must be
    equal (no silent broadcasting of ``(N, 1)`` against ``(N,)``)."""
    p, t = O.as_node(prediction), O.as_node(target)
    if p.shape != t.shape:
        raise ShapeError(f"mse: prediction {p.shape} and target {t.shape} differ in shape")
    d = p - t
    if not D.is_float(d.dtype):
        d = O.cast(d, D.float64)
    return _reduce("mse", d * d, reduction)


def binary_cross_entropy_with_logits(logits, targets, *, pos_weight=None,
                                     reduction: str = "mean") -> Node:
    """``-[y·log σ(x) + (1-y)·log(1-σ(x))]`` from logits ``x``, computed as
    ``(1-y)·x + (1 + (w-1)·y)·log(1 + exp(-x))`` with an overflow-free
    ``log(1+exp)``: finite for any logit, exact gradient ``σ(x) - y``.
    ``pos_weight`` (broadcast over the last axis) weights the positive term.
    Logits that are the output of a sigmoid (or softmax) raise a
    :class:`~graphc.errors.DoubleActivationWarning`."""
    x, y = O.as_node(logits), O.as_node(targets)
    warn_if_probabilities("binary_cross_entropy_with_logits", x, "the sigmoid")
    if not D.is_float(x.dtype):
        raise DTypeError(f"binary_cross_entropy_with_logits: logits must be floating, got {x.dtype}")
    if x.shape != y.shape:
        raise ShapeError(f"binary_cross_entropy_with_logits: logits {x.shape} and targets "
                         f"{y.shape} differ in shape")
    y = O.cast(y, x.dtype)
    sp = log1p_exp(-x)
    if pos_weight is None:
        loss = (1.0 - y) * x + sp
    else:
        w = O.cast(O.as_node(pos_weight), x.dtype)
        loss = (1.0 - y) * x + (1.0 + (w - 1.0) * y) * sp
    return _reduce("binary_cross_entropy_with_logits", loss, reduction)
