"""``graphc.optim``: optimizers as graph transforms.

``opt.updates(loss, params)`` returns ``{parameter: new value}`` for the
parameters, the optimizer's state (non-trainable parameters) and step count;
``gc.compile(loss, updates=...)`` then runs forward, backward and the update
as one native call that writes every parameter in place. ``lr`` may be a
float or a 0-d float placeholder/parameter (for schedules); ``clip_norm``
clips gradients by their global 2-norm first.
"""
from __future__ import annotations

from .base import Optimizer, clip_by_global_norm
from .rules import SGD, Adam, AdamW, RMSProp, RMSprop

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSProp", "RMSprop", "clip_by_global_norm"]
