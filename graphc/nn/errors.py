"""Errors of the training API: a bad hyper-parameter or configuration
(``ConfigError``, a ValueError) or an argument of the wrong kind
(``ConfigTypeError``, a TypeError). Both name the class or function and the
offending value."""
from __future__ import annotations

from ..errors import DoubleActivationWarning, GraphcError  # noqa: F401 - also gc.nn's


class ConfigError(GraphcError, ValueError):
    """A layer, loss, initializer, optimizer or training loop was given a
    value it cannot accept (a negative rate, a mismatched state dict, ...)."""


class ConfigTypeError(GraphcError, TypeError):
    """A layer, loss, optimizer or training loop was given an argument of the
    wrong type (a placeholder where a parameter is needed, ...)."""


class LazyParameterError(ConfigError, AttributeError):
    """The parameters of a lazy layer (``Dense(out_features)``) were asked for
    before its first call, which is when they are created. An AttributeError
    too, so ``hasattr(layer, "weight")`` is False until then."""


class DroppedExamplesWarning(UserWarning):
    """``fit`` leaves out the examples that do not fill a last batch, because
    the step was compiled for one batch size (``drop_last=True`` says so on
    purpose and silences this)."""
