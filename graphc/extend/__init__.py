"""Extending graphc: the public ways to add to it (docs/extending.md).

1. a **composite op** is a Python function over graphc ops — nothing to
   register; it differentiates and fuses like its parts;
2. :func:`custom_gradient` — a function with a gradient rule of your own
   (``custom_gradient.py``);
3. :func:`register_op` — a new primitive: shape and dtype rules, numpy
   reference, VJP, and a scalar lowering (fused and vectorized like a
   built-in) or a host callback into numpy (``register.py``,
   ``callback.py``); :func:`check_op` verifies a registration (``check.py``);
4. a **module** — subclass ``gc.nn.Module`` or ``gc.optim.Optimizer``;
5. a **pass** — subclass :class:`graphc.passes.Pass` (or :class:`RewritePass`
   for node rewrites) and ``register_pass`` it or name it in
   ``gc.compile(..., passes=[...])``. Packages can ship ops and passes as
   plugins, found through the entry-point group ``graphc.plugins``
   (``graphc/plugins.py``).
"""
from __future__ import annotations

from .check import CheckReport, OpCheckError, check_op
from .custom_gradient import GradToken, custom_gradient
from .register import USER_OPS, Registration, floating, op_function, register_op, unregister_op
from .rewrite import RewritePass

__all__ = ["custom_gradient", "register_op", "unregister_op", "op_function", "check_op",
           "CheckReport", "OpCheckError", "RewritePass", "Registration", "GradToken", "USER_OPS",
           "floating"]
