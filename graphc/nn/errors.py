"""Errors of the training API: a bad hyper-parameter or configuration
(``ConfigError``, a ValueError) or an argument of the wrong kind
(``ConfigTypeError``, a TypeError). Both name the class or function and the
offending value."""
from __future__ import annotations

from ..errors import GraphcError


class ConfigError(GraphcError, ValueError):
    """A layer, loss, initializer, optimizer or training loop was given a
    value it cannot accept (a negative rate, a mismatched state dict, ...)."""


class ConfigTypeError(GraphcError, TypeError):
    """A layer, loss, optimizer or training loop was given an argument of the
    wrong type (a placeholder where a parameter is needed, ...)."""
