"""The converter table: importing the op modules registers their converters."""
from __future__ import annotations

from .convert import CONVERTERS


def load_all() -> dict:
    # each module registers its converters
    from . import (  # noqa: F401
        ops_attention,
        ops_control,
        ops_image,
        ops_math,
        ops_nn,
        ops_resize,
        ops_rnn,
        ops_select,
        ops_shape,
        ops_signal,
    )
    return CONVERTERS


def supported_ops() -> list:
    """The ONNX op types graphc imports, sorted."""
    return sorted(load_all())
