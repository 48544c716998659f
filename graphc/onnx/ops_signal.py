"""Converters of ONNX's signal ops: the Hann, Hamming and Blackman windows
(constants computed when the model is loaded)."""
from __future__ import annotations

import numpy as np

from .. import ops as O
from .convert import np_dtype, op

# w[k] = sum_j a_j cos(2 pi j k / N), N = size (periodic) or size - 1 (symmetric)
_WINDOWS = {"HannWindow": (0.5, -0.5), "HammingWindow": (25 / 46, -21 / 46),
            "BlackmanWindow": (0.42, -0.5, 0.08)}


@op(*_WINDOWS)
def _window(ctx, n):
    size = ctx.const(n, 0, "size")
    if size.size != 1 or size.dtype.kind not in "iu":
        raise n.error(f"size must be one integer, got {size.dtype} of shape {size.shape}")
    size = int(size.reshape(()))
    if size < 0:
        raise n.error(f"size {size} is negative")
    dt = np_dtype(int(n.attr("output_datatype", 1)), "output_datatype")
    N = size if n.attr("periodic", 1) else size - 1
    k = np.arange(size, dtype=np.float64)
    w = np.zeros(size)
    for j, a in enumerate(_WINDOWS[n.op]):
        w += a * np.cos(2 * np.pi * j * k / N) if N > 0 else a
    return O.constant(w.astype(dt))
