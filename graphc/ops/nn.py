"""Neural-network ops: the primitive ``one_hot`` and the numerically stable
composites ``logsumexp``, ``log_softmax``, ``softmax`` and
``softmax_cross_entropy``."""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import DoubleActivationWarning, DTypeError, RuntimeCheckError, ShapeError, user_stacklevel
from ..ir import dtypes as D
from ..ir.node import Node
from . import attrs as A
from .common import MAX_DIM, as_node, constant, norm_axes, norm_axis
from .elementwise import abs as _abs
from .elementwise import cast, exp, log, stop_gradient, where
from .index import Read
from .movement import reshape
from .reduce import max as _max
from .reduce import sum as _sum
from .registry import OpDef, make, register


def _one_hot_infer(inputs, attrs):
    (lab,) = inputs
    if not D.is_int(lab.dtype):
        raise DTypeError(f"one_hot: labels must be integers, got {lab.dtype}")
    return lab.shape + (attrs["depth"],), D.bool_


def _one_hot_ref(lab, depth):
    if lab.size and (lab.min() < 0 or lab.max() >= depth):
        bad = lab[(lab < 0) | (lab >= depth)].flat[0]
        raise RuntimeCheckError(f"one_hot: label {bad} is out of range [0, {depth})")
    return lab[..., None] == np.arange(depth, dtype=lab.dtype)


def _one_hot_reads(ix, n, idx):
    """Where one_hot reads: the label at the output index without its last
    axis (declared for fusion's symbolic reasoning; see ops/index.py)."""
    return [Read(0, list(idx[:-1]))]


def _one_hot_lower(ctx, n, idx):
    s, ix = ctx.s, ctx.ix
    depth = n.attrs["depth"]
    ((_, at, _),) = _one_hot_reads(ix, n, idx)
    lab = s.cast(ctx.eval(n.inputs[0], at), D.int64)
    bad = s.or_(s.lt(lab, s.const(0, D.int64)), s.ge(lab, s.const(depth, D.int64)))
    s.error_if(bad, f"one_hot: a label is out of range [0, {depth})")
    return s.eq(lab, ix.scalar(idx[-1]))


register(OpDef("one_hot", "index", _one_hot_infer, _one_hot_ref,
               lambda n, g: [None], lower_at=_one_hot_lower, index_map=_one_hot_reads,
               doc="labels (...,) -> bool (..., depth); a label outside [0, depth) is an error",
               # depth 0 would make every label out of range, but the (empty)
               # result has no element at which the check could run
               nin=1, attrs=("depth",),
               foldable=False,      # folding would materialize a (..., depth) expansion
               check_attrs=lambda ins, a: {"depth": A.integer("one_hot", "depth", a["depth"], 1,
                                                              MAX_DIM)}))


def one_hot(labels, depth: int) -> Node:
    """``labels[..., None] == arange(depth)`` as bool (``depth >= 1``);
    out-of-range labels raise a RuntimeCheckError when the graph runs."""
    labels = as_node(labels, opname="one_hot")
    if not isinstance(depth, (int, np.integer)) or isinstance(depth, bool) or depth < 1:
        # depth 0 would make every label out of range, but the (empty) result
        # has no element at which the check could run
        raise ShapeError(f"one_hot: depth must be a positive int, got {depth!r}")
    return make("one_hot", (labels,), {"depth": int(depth)})


def _shifted(x, axes):
    """``x - max(x)`` over ``axes`` (the max treated as a constant; rows that
    are all -inf or +inf are not shifted; nor are empty rows, which have no max)."""
    if any(x.shape[a] == 0 for a in axes):
        return x, constant(0, x.dtype)
    m = stop_gradient(_max(x, axes, keepdims=True))
    m = where(_abs(m) < np.inf, m, 0.0)
    return x - m, m


def logsumexp(x, axis=None, keepdims: bool = False) -> Node:
    """``log(sum(exp(x)))`` computed stably (the max is subtracted first)."""
    x = as_node(x, opname="logsumexp")
    if not D.is_float(x.dtype):
        x = cast(x, D.float64)
    axes = norm_axes("logsumexp", axis, x.ndim)
    z, m = _shifted(x, axes)
    out = log(_sum(exp(z), axes, keepdims=True)) + m
    if not keepdims:
        out = reshape(out, tuple(s for i, s in enumerate(out.shape) if i not in axes))
    return out


def log_softmax(x, axis: int = -1) -> Node:
    """``x - logsumexp(x)``, computed as ``z - log(sum(exp(z)))`` with
    ``z = x - max(x)`` so that no large offset is added and removed."""
    x = as_node(x, opname="log_softmax")
    if not D.is_float(x.dtype):
        x = cast(x, D.float64)
    ax = norm_axis("log_softmax", axis, x.ndim)
    z, _ = _shifted(x, (ax,))
    return z - log(_sum(exp(z), ax, keepdims=True))


def softmax(x, axis: int = -1) -> Node:
    x = as_node(x, opname="softmax")
    if not D.is_float(x.dtype):
        x = cast(x, D.float64)
    ax = norm_axis("softmax", axis, x.ndim)
    e = exp(_shifted(x, (ax,))[0])
    return e / _sum(e, ax, keepdims=True)


def probabilities_source(x: Node) -> str | None:
    """``"softmax"`` or ``"sigmoid"`` when ``x`` is the output of one, as its
    node records: the ``sigmoid`` op, or softmax's composite ``exp(z) /
    sum(exp(z), axes, keepdims=True)`` (:func:`softmax`'s, or written by
    hand); else None."""
    if x.op == "sigmoid":
        return "sigmoid"
    if x.op == "div" and len(x.inputs) == 2:
        e, s = x.inputs
        if e.op == "exp" and s.op == "reduce_sum" and s.inputs[0] is e:
            return "softmax"
    return None


def warn_if_probabilities(name: str, x: Node, applies: str) -> None:
    """Warn (:class:`DoubleActivationWarning`, at the user's line) when the
    loss ``name``, which takes logits and applies ``applies`` itself, is given
    the output of a softmax or a sigmoid."""
    act = probabilities_source(x)
    if act is None:
        return
    warnings.warn(
        f"{name}: its input {x.name!r} is the output of a {act}, but {name} takes logits and "
        f"applies {applies} itself, so the {act} is applied twice (training runs, slowly and "
        f"towards the wrong model). Give the loss the last layer's output without the {act} "
        f"(e.g. a last Dense layer without activation=\"{act}\") and apply gc.{act} only for "
        f"predictions.", DoubleActivationWarning, stacklevel=user_stacklevel())


def softmax_cross_entropy(logits, labels) -> Node:
    """Per-example ``-log_softmax(logits)[..., label]``: logits (..., C) float,
    labels (...) int; returns shape (...). A label outside [0, C) is an error
    when the graph runs. Logits that are a softmax's (or sigmoid's) output
    raise a :class:`~graphc.errors.DoubleActivationWarning`."""
    op = "softmax_cross_entropy"
    logits, labels = as_node(logits, opname=op), as_node(labels, opname=op)
    warn_if_probabilities(op, logits, "log_softmax")
    if logits.ndim < 1 or logits.shape[-1] == 0:
        raise ShapeError(f"softmax_cross_entropy: logits {logits.shape} must have a non-empty "
                         "class axis (the last)")
    if not D.is_float(logits.dtype):
        raise DTypeError(f"softmax_cross_entropy: logits must be floating, got {logits.dtype}")
    if not D.is_int(labels.dtype):
        raise DTypeError(f"softmax_cross_entropy: labels must be integers, got {labels.dtype}")
    if labels.shape != logits.shape[:-1]:
        raise ShapeError(f"softmax_cross_entropy: logits {logits.shape} need labels of shape "
                         f"{logits.shape[:-1]}, got {labels.shape}")
    mask = one_hot(labels, logits.shape[-1])
    return -_sum(where(mask, log_softmax(logits, -1), 0.0), -1)
