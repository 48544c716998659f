"""Converters of ONNX's signal ops: the Hann, Hamming and Blackman windows
and MelWeightMatrix (constants computed when the model is loaded), DFT and
STFT (a matmul by the transform's matrix)."""
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
    M, (m, c_out) = _dft_matrix(L, c, length, inverse, onesided)
    perm = [d for d in range(x.ndim - 1) if d != axis] + [axis, x.ndim - 1]
    xt = O.transpose(x, perm)
    lead = xt.shape[:-2]
    y = O.reshape(O.reshape(xt, lead + (L * c,)) @ O.constant(M.astype(np.dtype(x.dtype))),
                  lead + (m, c_out))
    back = list(range(axis)) + [x.ndim - 2] + list(range(axis, x.ndim - 2)) + [x.ndim - 1]
    return O.transpose(y, back)


def _dft_matrix(L, c, length, inverse, onesided):
    """The (L * c, m * c_out) matrix of the DFT of a (L, c) signal, and (m, c_out)."""
    eye = np.eye(L * c).reshape(L * c, L, c)
    M = np.stack([_dft_1d(e, length, inverse, onesided).ravel() for e in eye])
    return M, _dft_1d(eye[0], length, inverse, onesided).shape


def _scalar(ctx, n, i, what):
    v = np.asarray(ctx.const(n, i, what))
    if v.size != 1:
        raise n.error(f"{what} must be a scalar, got shape {v.shape}")
    return v.reshape(())


@op("STFT")
def _stft(ctx, n):
    """Frames (static slices) times the window, then the DFT of each frame as one
    matmul (see DFT)."""
    x = ctx.x(n, 0)
    if x.ndim != 3 or x.shape[-1] not in (1, 2):
        raise n.error(f"the signal must be (batch, length, 1 or 2), got shape {x.shape}")
    step = int(_scalar(ctx, n, 1, "frame_step"))
    win = ctx.opt(n, 2)
    fl = int(_scalar(ctx, n, 3, "frame_length")) if n.has(3) else \
        (win.shape[0] if win is not None else x.shape[1])
    if win is None:
        win = O.constant(np.ones(fl, np.dtype(x.dtype)))
    W, (B, L, c) = win.shape[0], x.shape
    if step < 1 or fl < 1 or fl > L:
        raise n.error(f"frame_step {step} and frame_length {fl} must be positive, and the "
                      f"frame at most the signal's length {L}")
    frames = []
    for f in range(1 + (L - fl) // step):
        fr = x[:, f * step:f * step + W, :]
        if fr.shape[1] < W:
            fr = O.pad(fr, [(0, 0), (0, W - fr.shape[1]), (0, 0)])
        frames.append(O.expand_dims(fr * O.reshape(win, (1, W, 1)), 1))
    xf = O.concatenate(frames, 1)                               # (B, frames, W, c)
    M, (m, c_out) = _dft_matrix(W, c, fl, False, bool(n.attr("onesided", 1)))
    y = O.reshape(xf, (B, len(frames), W * c)) @ O.constant(M.astype(np.dtype(x.dtype)))
    return O.reshape(y, (B, len(frames), m, c_out))


@op("MelWeightMatrix")
def _mel(ctx, n):
    """The triangular mel filters as onnx.reference builds them (a constant)."""
    bins = int(_scalar(ctx, n, 0, "num_mel_bins"))
    dft = int(_scalar(ctx, n, 1, "dft_length"))
    rate = _scalar(ctx, n, 2, "sample_rate")
    lo, hi = float(_scalar(ctx, n, 3, "lower_edge_hertz")), float(_scalar(ctx, n, 4, "upper_edge_hertz"))
    if bins < 1 or dft < 1 or rate <= 0:
        raise n.error(f"num_mel_bins {bins}, dft_length {dft} and sample_rate {rate} must be "
                      "positive")
    fb = np.arange(0, bins + 2)
    lm, hm = 2595 * np.log1p(lo / 700) / np.log(10), 2595 * np.log1p(hi / 700) / np.log(10)
    fb = fb * ((hm - lm) / fb.shape[0]) + lm
    fb = (((dft + 1) * (700 * np.expm1(fb / 2595 * np.log(10)))) // rate).astype(int)
    out = np.zeros((dft // 2 + 1, bins))
    for i in range(bins):
        a, c, b = fb[i], fb[i + 1], fb[i + 2]
        if c == a:
            out[c, i] = 1
        else:
            for j in range(a, c + 1):
                out[j, i] = (j - a) / (c - a)
        for j in range(c, b):
            out[j, i] = (b - j) / (b - c)
    return O.constant(out.astype(np_dtype(int(n.attr("output_datatype", 1)), "output_datatype")))
