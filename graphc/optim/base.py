"""The optimizer base: an optimizer is a graph transform. ``updates(loss,
params)`` differentiates ``loss``, builds each parameter's new value (and
its state's) as graph nodes, and returns the dict that
``gc.compile(..., updates=...)`` writes back in place inside the kernel.

State (moments, momentum buffers, the step count) lives in non-trainable
parameters created on first use and reused by later ``updates`` calls, so
several compiled steps share one optimizer state.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from .. import ops as O
from ..autodiff import grad
from ..ir import dtypes as D
from ..ir.graph import topo_order
from ..ir.node import Node
from ..nn.errors import ConfigError, ConfigTypeError
from ..nn.state import state_updates
from ..ops.common import parameter


def clip_by_global_norm(grads: list, max_norm: float, eps: float = 1e-6) -> list:
    """Scale every gradient by ``min(1, max_norm / (‖g‖ + eps))``, where
    ``‖g‖`` is the 2-norm of all gradients together (PyTorch's
    ``clip_grad_norm_``)."""
    if not max_norm > 0:
        raise ConfigError(f"clip_by_global_norm: max_norm must be > 0, got {max_norm}")
    if not grads:
        return []
    wide = D.float64 if any(g.dtype == D.float64 for g in grads) else grads[0].dtype
    total = None
    for g in grads:
        sq = O.cast(O.sum(g * g), wide)
        total = sq if total is None else total + sq
    coef = O.minimum(float(max_norm) / (O.sqrt(total) + eps), 1.0)
    return [g * O.cast(coef, g.dtype) for g in grads]


def _check_rate(cls: str, name: str, v, lo=0.0, hi=None, lo_open=False, hi_closed=False) -> float:
    """``v`` as a float, checked to lie in ``[lo, hi)`` (or the variants)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise ConfigTypeError(f"{cls}: {name} must be a number, got {v!r}")
    v = float(v)
    bad = not math.isfinite(v) or v < lo or (lo_open and v == lo)
    if hi is not None:
        bad = bad or v > hi or (not hi_closed and v == hi)
    if bad:
        left = "(" if lo_open else "["
        right = "" if hi is None else f", {hi}{']' if hi_closed else ')'}"
        where = f"in {left}{lo}{right}" if hi is not None else (f"> {lo}" if lo_open else f">= {lo}")
        raise ConfigError(f"{cls}: {name} must be {where}, got {v}")
    return v


class Optimizer:
    """Base class. A subclass defines ``init_state(p) -> {name: array}``
    and ``update(p, g, state, t) -> (new_p, {state_param: new_value})``
    where ``state`` maps names to the state parameters of ``p`` and ``t`` is
    the 1-based step number as an int64 node."""

    def __init__(self, lr=1e-3, *, clip_norm: float | None = None):
        name = type(self).__name__
        if isinstance(lr, Node):
            if lr.shape != () or not D.is_float(lr.dtype):
                raise ConfigTypeError(f"{name}: a learning-rate node must be a 0-d float "
                                      f"(placeholder or parameter), got {lr.dtype}{list(lr.shape)}")
        else:
            lr = _check_rate(name, "lr", lr)
        self.lr = lr
        self.clip_norm = None if clip_norm is None else _check_rate(name, "clip_norm", clip_norm,
                                                                      lo_open=True)
        self.state: dict[int, dict[str, Node]] = {}
        self.params: list[Node] = []
        self.step_count = parameter(np.array(0, np.int64), name=f"{name.lower()}.step",
                                    trainable=False)

    # -- the rule (subclasses) -------------------------------------------------------
    def init_state(self, p: Node) -> dict:
        return {}

    def update(self, p: Node, g: Node, state: dict, t: Node):
        raise NotImplementedError

    # -- helpers for rules --------------------------------------------------------------
    def lr_for(self, p: Node):
        """The learning rate in ``p``'s dtype: a Python float, or a node."""
        return O.cast(self.lr, p.dtype) if isinstance(self.lr, Node) else self.lr

    def _state_for(self, p: Node) -> dict:
        st = self.state.get(p.id)
        if st is None:
            st = OrderedDict()
            for k, v in self.init_state(p).items():
                st[k] = parameter(np.asarray(v, p.dtype), name=f"{p.name}.{k}", trainable=False)
            self.state[p.id] = st
            self.params.append(p)
        return st

    # -- the transform --------------------------------------------------------------------
    def updates(self, loss: Node, params) -> dict:
        """``{parameter: new value}`` for every parameter in ``params`` that
        ``loss`` depends on (others are left alone, as PyTorch skips
        parameters without a gradient), for the optimizer's state, its step
        count, and the other state the graph changes (:func:`graphc.nn.state_updates`:
        batch normalization's running statistics, the step counters of
        random ops such as dropout)."""
        params = self.trainable(loss, params)
        out = self.apply_gradients(params, grad(loss, params))
        for c, v in state_updates(loss).items():     # running statistics, dropout counters
            out.setdefault(c, v)
        return out

    def trainable(self, loss: Node, params) -> list:
        """``params`` (a list or a Module) checked, without those ``loss``
        does not depend on: the parameters :meth:`updates` trains."""
        from ..nn.module import Module
        if isinstance(params, Module):
            params = params.parameters()
        if isinstance(params, Node):
            raise ConfigTypeError("updates: params must be a list of parameters (or a Module)")
        params = list(params)
        seen = set()
        for p in params:
            if not isinstance(p, Node) or p.op != "parameter":
                raise ConfigTypeError(f"updates: {p!r} is not a parameter")
            if not D.is_float(p.dtype):
                raise ConfigTypeError(f"updates: parameter {p.name!r} is {p.dtype}; only floating "
                                      "parameters can be trained")
            if not p.trainable:
                raise ConfigError(f"updates: parameter {p.name!r} is not trainable "
                                  "(trainable=False)")
            if p.id in seen:
                raise ConfigError(f"updates: parameter {p.name!r} is listed twice")
            seen.add(p.id)
        if not isinstance(loss, Node):
            raise ConfigTypeError(f"updates: loss must be a graph node, got {type(loss).__name__}")
        used = {n.id for n in topo_order([loss])}
        return [p for p in params if p.id in used]

    def apply_gradients(self, params: list, grads: list) -> dict:
        """``{parameter: new value}`` for ``params`` given their gradients
        ``grads`` (any nodes of the parameters' shapes: ``gc.grad``'s, or
        parameters holding gradients computed elsewhere, as
        :mod:`graphc.distributed` does), for the optimizer state and the
        step count; clipping (``clip_norm``) applies to ``grads``. This is
        :meth:`updates` without the differentiation and without the graph's
        other state (:func:`graphc.nn.state_updates`)."""
        params, grads = list(params), list(grads)
        if len(params) != len(grads):
            raise ConfigError(f"apply_gradients: {len(params)} parameters and {len(grads)} "
                              "gradients")
        for p, g in zip(params, grads):
            if not isinstance(g, Node) or g.shape != p.shape:
                raise ConfigTypeError(f"apply_gradients: the gradient of {p.name!r} must be a "
                                      f"node of shape {p.shape}, got {g!r}")
        if self.clip_norm is not None:
            grads = clip_by_global_norm(grads, self.clip_norm)
        t = self.step_count + 1
        out = {}
        for p, g in zip(params, grads):
            new_p, new_state = self.update(p, g, self._state_for(p), t)
            out[p] = new_p
            out.update(new_state)
        out[self.step_count] = t
        return out

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """The step count and every state array, keyed ``"step"`` and
        ``"<k>.<name>"`` (k = the parameter's order of first use)."""
        d = OrderedDict(step=np.array(self.step_count.value, copy=True))
        for k, p in enumerate(self.params):
            for name, s in self.state[p.id].items():
                d[f"{k}.{name}"] = np.array(s.value, copy=True)
        return d

    def load_state_dict(self, state) -> None:
        own = self.state_dict()
        if set(own) != set(state.keys()):
            raise ConfigError(f"{type(self).__name__}.load_state_dict: keys differ: expected "
                              f"{sorted(own)}, got {sorted(state.keys())}")
        for key, a in own.items():
            if np.shape(state[key]) != a.shape:
                raise ConfigError(f"{type(self).__name__}.load_state_dict: {key!r} has shape "
                                  f"{np.shape(state[key])}, expected {a.shape}")
        self.step_count.value = np.asarray(state["step"]).astype(np.int64)
        for k, p in enumerate(self.params):
            for name, s in self.state[p.id].items():
                s.value = np.asarray(state[f"{k}.{name}"])

    def __repr__(self) -> str:
        lr = self.lr.name if isinstance(self.lr, Node) else self.lr
        return f"{type(self).__name__}(lr={lr})"
