"""The dtypes graphc supports and numpy's promotion rules over them."""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

SUPPORTED = (float32, float64, int32, int64, bool_)
SHORT = {float32: "f32", float64: "f64", int32: "i32", int64: "i64", bool_: "bool"}


def as_dtype(d, opname: str | None = None) -> np.dtype:
    """Convert a dtype-like (``"float32"``, ``np.float32``, a dtype) to a
    supported dtype; errors name ``opname`` if given."""
    where = f"{opname}: " if opname else ""
    try:
        dt = np.dtype(d)
    except (TypeError, ValueError) as e:
        raise DTypeError(f"{where}not a dtype: {d!r}") from e
    if dt not in SUPPORTED:
        names = ", ".join(str(s) for s in SUPPORTED)
        raise DTypeError(f"{where}dtype {dt} is not supported (supported: {names})")
    return dt


def is_float(dt: np.dtype) -> bool:
    return dt.kind == "f"


def is_int(dt: np.dtype) -> bool:
    return dt.kind in "iu"


def is_bool(dt: np.dtype) -> bool:
    return dt.kind == "b"


def result_type(*operands) -> np.dtype:
    """numpy's promotion (NEP 50): dtypes are strong, Python scalars are weak.

    ``operands`` are np.dtype objects (for nodes) or Python scalars.
    """
    dt = np.result_type(*operands)
    if dt not in SUPPORTED:
        raise DTypeError(f"operands promote to unsupported dtype {dt}")
    return dt
