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


def _dft_1d(sig, length, inverse, onesided):
    """ONNX DFT of one signal ``sig`` (n, 1 or 2: real, or real and imaginary parts)."""
    z = sig[:, 0] if sig.shape[1] == 1 else sig[:, 0] + 1j * sig[:, 1]
    if inverse and onesided:
        return np.fft.irfft(z, n=length)[:, None]
    y = np.fft.ifft(z, n=length) if inverse else np.fft.fft(z, n=length)
    if onesided and not inverse:
        y = y[:length // 2 + 1]
    return np.stack([y.real, y.imag], axis=1)


@op("DFT")
def _dft(ctx, n):
    """The transform is linear in the real and imaginary parts, so it is one matmul by
    the (n * c_in, m * c_out) matrix numpy's FFT gives on the unit vectors: O(n m) per
    signal, not an FFT's O(n log n)."""
    x = ctx.x(n, 0)
    if n.opset >= 20:
        axis = int(np.asarray(ctx.const(n, 2, "axis")).reshape(())) if n.has(2) else -2
    else:
        axis = int(n.attr("axis", 1))
    if x.ndim < 2 or x.shape[-1] not in (1, 2):
        raise n.error(f"the input's last dimension must be 1 (real) or 2 (complex), got "
                      f"shape {x.shape}")
    if not -x.ndim <= axis < x.ndim or axis % x.ndim == x.ndim - 1:
        raise n.error(f"axis {axis} must name a signal axis of the {x.ndim}-d input, not its "
                      "last (real/imaginary) one")
    axis %= x.ndim
    inverse, onesided = bool(n.attr("inverse", 0)), bool(n.attr("onesided", 0))
    L, c = x.shape[axis], x.shape[-1]
    if n.has(1):
        length = int(np.asarray(ctx.const(n, 1, "dft_length")).reshape(()))
    else:
        length = 2 * (L - 1) if inverse and onesided else L
    if length < 1:
        raise n.error(f"dft_length {length} must be positive")
    eye = np.eye(L * c).reshape(L * c, L, c)
    M = np.stack([_dft_1d(e, length, inverse, onesided).ravel() for e in eye])
    m, c_out = _dft_1d(eye[0], length, inverse, onesided).shape
    perm = [d for d in range(x.ndim - 1) if d != axis] + [axis, x.ndim - 1]
    xt = O.transpose(x, perm)
    lead = xt.shape[:-2]
    y = O.reshape(O.reshape(xt, lead + (L * c,)) @ O.constant(M.astype(np.dtype(x.dtype))),
                  lead + (m, c_out))
    back = list(range(axis)) + [x.ndim - 2] + list(range(axis, x.ndim - 2)) + [x.ndim - 1]
    return O.transpose(y, back)
