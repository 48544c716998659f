"""Python values to numpy arrays, as graphc takes them everywhere (call
arguments, constants, parameter values): conversions that report a failure
as graphc's error naming what was converted, and that never change a value."""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import InputTypeError


def convert_exactly(a: np.ndarray, dtype, what: str) -> np.ndarray:
    """``a.astype(dtype)`` for a same-kind conversion, refusing to change
    values: integers that do not fit (which astype would wrap) and finite
    floats that overflow to inf."""
    with np.errstate(all="ignore"):
        b = a.astype(dtype)
        if b.dtype.kind in "iu" and not np.array_equal(b, a):
            raise InputTypeError(f"{what}: values do not fit in {b.dtype} "
                                 f"(range {np.iinfo(b.dtype).min} to {np.iinfo(b.dtype).max})")
        if b.dtype.kind == "f" and a.dtype.kind in "fiu" and np.any(np.isfinite(a) & ~np.isfinite(b)):
            raise InputTypeError(f"{what}: values overflow {b.dtype}")
    return b


def _array_like(v) -> bool:
    if isinstance(v, (numbers.Number, np.generic, list, tuple)) or \
            any(hasattr(v, a) for a in ("__array__", "__array_interface__", "__array_struct__")):
        return True
    try:
        memoryview(v).release()         # the buffer protocol
        return True
    except Exception:
        return False


def has_own_dtype(v) -> bool:
    """Whether ``v`` carries a dtype (numpy arrays and scalars, and anything
    numpy reads through ``__array__``, ``__array_interface__``,
    ``__array_struct__`` or the buffer protocol), as opposed to Python numbers,
    lists and tuples, whose dtype numpy guesses."""
    return not isinstance(v, (numbers.Number, list, tuple)) or isinstance(v, np.generic)


def to_array(v, what: str, error=InputTypeError, **kw) -> np.ndarray:
    """``np.asarray(v, **kw)`` (``np.array`` when ``copy=True`` is given), with
    any exception raised by the conversion (an ``__array__`` that raises, as a
    tensor requiring grad does; a ragged list) reported as ``error`` naming
    ``what`` and the exception, which is chained."""
    try:
        return np.array(v, **kw) if kw.get("copy") else np.asarray(v, **kw)
    except Exception as e:
        raise error(f"{what}: cannot convert the {type(v).__name__} to an array: "
                    f"{type(e).__name__}: {e}") from e
