"""Error types and the helper that names the user's source line.

Every error graphc raises is a ``ValueError`` or ``TypeError`` subclass, so
callers that catch the builtin types keep working, and every message names
what was wrong (the op, the shapes, the placeholder) and where.
"""
from __future__ import annotations

import os
import sys

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


class GraphcError(Exception):
    """Base class of every error graphc raises on purpose."""


class _Located(GraphcError):
    """An error in building the graph: the message ends with the user's line."""

    def __init__(self, message: str = ""):
        if "(at " not in message:
            message = f"{message} (at {user_source()})"
        super().__init__(message)


class ShapeError(_Located, ValueError):
    """An op was given shapes (or axes, indices) it cannot accept."""


class DTypeError(_Located, TypeError):
    """An op was given a dtype it cannot accept."""


class OpArgError(_Located, TypeError):
    """An op node was built with the wrong number or kind of inputs."""


class AttrError(_Located, TypeError):
    """An op node was built with a missing, unknown or wrong-typed attribute."""


class InputError(GraphcError, ValueError):
    """A compiled function was called with a missing, unknown or wrong-shaped input."""


class InputTypeError(GraphcError, TypeError):
    """A compiled function was called with an input of the wrong type or dtype."""


class RuntimeCheckError(GraphcError, ValueError):
    """A check inside the computation failed (e.g. a label out of range)."""


class DoubleActivationWarning(UserWarning):
    """A loss that applies softmax or sigmoid itself (it takes logits) was
    given probabilities: the output of a softmax or a sigmoid. The activation
    is then applied twice: training runs, but slowly, towards a wrong optimum,
    and the reported loss is not the loss of the model's probabilities."""


_INSIDE: dict = {}      # code file name -> is it inside the package (asked per node built)


def _inside(fn: str) -> bool:
    r = _INSIDE.get(fn)
    if r is None:
        r = os.path.abspath(fn).startswith(_PKG_DIR + os.sep)
        if os.path.isabs(fn):         # a relative name's answer depends on the directory
            _INSIDE[fn] = r
    return r


def user_stacklevel() -> int:
    """The ``stacklevel`` for :func:`warnings.warn`, called from inside the
    package, that attributes the warning to the innermost frame outside it."""
    f, level = sys._getframe(1), 1
    while f is not None and _inside(f.f_code.co_filename):
        f, level = f.f_back, level + 1
    return level


def user_source() -> str:
    """Return ``file:line`` of the innermost frame outside the graphc package."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not _inside(fn):
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return "<unknown>"
