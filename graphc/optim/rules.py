"""The update rules: SGD (momentum, Nesterov), Adam, AdamW and RMSProp,
each exactly as PyTorch's single-tensor implementation writes it (the same
formulas in the same order of operations, so float32 trajectories agree to
rounding)."""
from __future__ import annotations

import numpy as np

from .. import ops as O
from ..ir import dtypes as D
from ..ir.node import Node
from ..nn.errors import ConfigError, ConfigTypeError
from .base import Optimizer, _check_rate


class SGD(Optimizer):
    """Stochastic gradient descent (``torch.optim.SGD``)::

        g = grad + weight_decay * p
        buf = g (first step), momentum * buf + (1 - dampening) * g (later)
        g = g + momentum * buf if nesterov else buf          (if momentum)
        p = p - lr * g
    """

    def __init__(self, lr=1e-3, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, dampening: float = 0.0, *, clip_norm=None):
        super().__init__(lr, clip_norm=clip_norm)
        self.momentum = _check_rate("SGD", "momentum", momentum)
        self.weight_decay = _check_rate("SGD", "weight_decay", weight_decay)
        self.dampening = _check_rate("SGD", "dampening", dampening)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ConfigError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")

    def init_state(self, p):
        return {"momentum_buffer": np.zeros(p.shape)} if self.momentum else {}

    def update(self, p, g, state, t):
        lr = self.lr_for(p)
        if self.weight_decay:
            g = g + self.weight_decay * p
        new = {}
        if self.momentum:
            buf = state["momentum_buffer"]
            if self.dampening:
                later = buf * self.momentum + (1.0 - self.dampening) * g
                nb = O.where(O.equal(t, 1), g, later)
            else:
                nb = buf * self.momentum + g     # = g on the first step (buf starts at 0)
            new[buf] = nb
            g = g + self.momentum * nb if self.nesterov else nb
        return p - lr * g, new


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``; ``amsgrad`` optional)::

        g = grad + weight_decay * p                      (L2 penalty)
        m = m + (1 - b1) * (g - m);  v = b2 * v + (1 - b2) * g * g
        p = p - lr / (1 - b1**t) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)
    """

    decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, clip_norm=None):
        super().__init__(lr, clip_norm=clip_norm)
        name = type(self).__name__
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ConfigTypeError(f"{name}: betas must be a pair, got {betas!r}") from None
        self.betas = (_check_rate(name, "betas[0]", b1, hi=1.0),
                      _check_rate(name, "betas[1]", b2, hi=1.0))
        self.eps = _check_rate(name, "eps", eps)
        self.weight_decay = _check_rate(name, "weight_decay", weight_decay)
        self.amsgrad = bool(amsgrad)

    def init_state(self, p):
        st = {"exp_avg": np.zeros(p.shape), "exp_avg_sq": np.zeros(p.shape)}
        if self.amsgrad:
            st["max_exp_avg_sq"] = np.zeros(p.shape)
        return st

    def update(self, p, g, state, t):
        b1, b2 = self.betas
        lr = self.lr_for(p)
        if self.weight_decay:
            if self.decoupled:
                p = p * (1.0 - lr * self.weight_decay)
            else:
                g = g + self.weight_decay * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m1 = m + (1.0 - b1) * (g - m)
        v1 = v * b2 + (1.0 - b2) * g * g
        # bias corrections in float64, from the step count (as PyTorch, in Python floats)
        tf = O.cast(t, D.float64)
        bc1 = 1.0 - O.pow(b1, tf)
        bc2_sqrt = O.sqrt(1.0 - O.pow(b2, tf))
        step_size = O.cast((O.cast(lr, D.float64) if isinstance(lr, Node) else lr) / bc1, p.dtype)
        new = {m: m1, v: v1}
        vmax = v1
        if self.amsgrad:
            vmax = O.maximum(state["max_exp_avg_sq"], v1)
            new[state["max_exp_avg_sq"]] = vmax
        denom = O.sqrt(vmax) / O.cast(bc2_sqrt, p.dtype) + self.eps
        return p - step_size * (m1 / denom), new


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``): first
    ``p = p * (1 - lr * weight_decay)``, then the Adam step; default
    ``weight_decay=1e-2``."""

    decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, clip_norm=None):
        super().__init__(lr, betas, eps, weight_decay, amsgrad, clip_norm=clip_norm)


class RMSProp(Optimizer):
    """RMSProp (``torch.optim.RMSprop``)::

        g = grad + weight_decay * p
        s = alpha * s + (1 - alpha) * g * g
        avg = sqrt(s - ga * ga) with ga = ga + (1 - alpha) * (g - ga)   (centered)
              sqrt(s)                                                      (otherwise)
        buf = momentum * buf + g / (avg + eps);  p = p - lr * buf       (momentum)
        p = p - lr * g / (avg + eps)                                      (otherwise)
    """

    def __init__(self, lr=1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, *, clip_norm=None):
        super().__init__(lr, clip_norm=clip_norm)
        self.alpha = _check_rate("RMSProp", "alpha", alpha, hi=1.0, hi_closed=True)
        self.eps = _check_rate("RMSProp", "eps", eps)
        self.weight_decay = _check_rate("RMSProp", "weight_decay", weight_decay)
        self.momentum = _check_rate("RMSProp", "momentum", momentum)
        self.centered = bool(centered)

    def init_state(self, p):
        st = {"square_avg": np.zeros(p.shape)}
        if self.momentum:
            st["momentum_buffer"] = np.zeros(p.shape)
        if self.centered:
            st["grad_avg"] = np.zeros(p.shape)
        return st

    def update(self, p, g, state, t):
        a = self.alpha
        lr = self.lr_for(p)
        if self.weight_decay:
            g = g + self.weight_decay * p
        s = state["square_avg"]
        s1 = s * a + (1.0 - a) * g * g
        new = {s: s1}
        if self.centered:
            ga = state["grad_avg"]
            ga1 = ga + (1.0 - a) * (g - ga)
            new[ga] = ga1
            avg = O.sqrt(s1 - ga1 * ga1)
        else:
            avg = O.sqrt(s1)
        avg = avg + self.eps
        if self.momentum:
            buf = state["momentum_buffer"]
            nb = buf * self.momentum + g / avg
            new[buf] = nb
            return p - lr * nb, new
        return p - lr * (g / avg), new


RMSprop = RMSProp
