"""Initializers: numpy arrays for new parameters, all seeded.

Every initializer is ``f(shape, *, dtype="float32", seed=None, fan_in=None,
fan_out=None, **hyper) -> np.ndarray``. ``seed`` is an int, a
``np.random.Generator``, or ``None`` (draw a seed from graphc's global seed
stream, reset by :func:`manual_seed`; it starts at 0, so runs are
reproducible by default). Values are drawn in float64 and rounded to
``dtype``.

Fans follow graphc's weight layout ``(in, out)`` (``y = x @ w``): for a 2-D
shape ``fan_in = shape[0]``, ``fan_out = shape[1]``; for an N-D shape the
receptive field ``prod(shape[:-2])`` multiplies both; a 1-D shape has
``fan_in = fan_out = shape[0]``. Layers pass their own fans explicitly. The
formulas and defaults are PyTorch's (``torch.nn.init``), e.g.
``kaiming_uniform(a=sqrt(5))`` is the ``torch.nn.Linear`` weight init.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import dtypes as D
from .errors import ConfigError, ConfigTypeError

_state = {"rng": np.random.default_rng(0)}


def manual_seed(seed: int) -> None:
    """Reset graphc's global seed stream (used by layers and initializers
    that are not given a seed)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ConfigTypeError(f"manual_seed: seed must be an int, got {seed!r}")
    _state["rng"] = np.random.default_rng(int(seed))


def next_seed() -> int:
    """The next seed of the global seed stream (a 63-bit int)."""
    return int(_state["rng"].integers(0, 2 ** 63 - 1))


def make_rng(seed=None) -> np.random.Generator:
    """A numpy Generator from an int seed, a Generator (returned as is), or
    None (the next seed of the global stream)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(next_seed())
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ConfigError(f"seed must be non-negative, got {seed}")
        return np.random.default_rng(int(seed))
    raise ConfigTypeError(f"seed must be an int, a numpy Generator or None, got {seed!r}")


def _shape(shape) -> tuple:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ConfigTypeError(f"initializer: shape must be a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in shape):
        raise ConfigError(f"initializer: negative dimension in shape {shape}")
    return shape


def compute_fans(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` in graphc's layout."""
    shape = _shape(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    rf = math.prod(shape[:-2])
    return shape[-2] * rf, shape[-1] * rf


def _fans(shape, fan_in, fan_out):
    fi, fo = compute_fans(shape)
    return (fi if fan_in is None else int(fan_in)), (fo if fan_out is None else int(fan_out))


def calculate_gain(nonlinearity: str, param=None) -> float:
    """PyTorch's recommended gain for a nonlinearity."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    if nonlinearity == "gelu":
        return math.sqrt(2.0)
    raise ConfigError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}")


def _out(a, dtype):
    dt = D.as_dtype(dtype)
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64).astype(dt))


def zeros(shape, *, dtype="float32", seed=None, fan_in=None, fan_out=None) -> np.ndarray:
    return _out(np.zeros(_shape(shape)), dtype)


def ones(shape, *, dtype="float32", seed=None, fan_in=None, fan_out=None) -> np.ndarray:
    return _out(np.ones(_shape(shape)), dtype)


def constant(shape, value: float = 0.0, *, dtype="float32", seed=None, fan_in=None,
             fan_out=None) -> np.ndarray:
    return _out(np.full(_shape(shape), float(value)), dtype)


def normal(shape, mean: float = 0.0, std: float = 1.0, *, dtype="float32", seed=None,
           fan_in=None, fan_out=None) -> np.ndarray:
    if std < 0:
        raise ConfigError(f"normal: std must be >= 0, got {std}")
    return _out(make_rng(seed).normal(mean, std, _shape(shape)), dtype)


def uniform(shape, a: float = 0.0, b: float = 1.0, *, dtype="float32", seed=None,
            fan_in=None, fan_out=None) -> np.ndarray:
    if b < a:
        raise ConfigError(f"uniform: upper bound {b} is below the lower bound {a}")
    return _out(make_rng(seed).uniform(a, b, _shape(shape)), dtype)


def trunc_normal(shape, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, *,
                 dtype="float32", seed=None, fan_in=None, fan_out=None) -> np.ndarray:
    """Normal(mean, std) restricted to [a, b] (redrawn until inside)."""
    if not a < b:
        raise ConfigError(f"trunc_normal: need a < b, got a={a}, b={b}")
    rng = make_rng(seed)
    out = rng.normal(mean, std, _shape(shape))
    bad = (out < a) | (out > b)
    for _ in range(1000):
        if not bad.any():
            break
        out[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (out < a) | (out > b)
    return _out(np.clip(out, a, b), dtype)


def xavier_uniform(shape, gain: float = 1.0, *, dtype="float32", seed=None, fan_in=None,
                   fan_out=None) -> np.ndarray:
    """U(-g·sqrt(6/(fan_in+fan_out)), +...) (Glorot & Bengio)."""
    fi, fo = _fans(shape, fan_in, fan_out)
    bound = gain * math.sqrt(6.0 / max(fi + fo, 1))
    return uniform(shape, -bound, bound, dtype=dtype, seed=seed)


def xavier_normal(shape, gain: float = 1.0, *, dtype="float32", seed=None, fan_in=None,
                  fan_out=None) -> np.ndarray:
    fi, fo = _fans(shape, fan_in, fan_out)
    return normal(shape, 0.0, gain * math.sqrt(2.0 / max(fi + fo, 1)), dtype=dtype, seed=seed)


def _kaiming_std(shape, a, mode, nonlinearity, fan_in, fan_out):
    if mode not in ("fan_in", "fan_out"):
        raise ConfigError(f"kaiming: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fi, fo = _fans(shape, fan_in, fan_out)
    fan = fi if mode == "fan_in" else fo
    return calculate_gain(nonlinearity, a) / math.sqrt(max(fan, 1))


def kaiming_uniform(shape, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    *, dtype="float32", seed=None, fan_in=None, fan_out=None) -> np.ndarray:
    """U(-bound, bound), bound = gain·sqrt(3/fan) (He et al.); with
    ``a=sqrt(5)`` this is ``torch.nn.Linear``'s weight init, U(±1/sqrt(fan_in))."""
    bound = math.sqrt(3.0) * _kaiming_std(shape, a, mode, nonlinearity, fan_in, fan_out)
    return uniform(shape, -bound, bound, dtype=dtype, seed=seed)


def kaiming_normal(shape, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                   *, dtype="float32", seed=None, fan_in=None, fan_out=None) -> np.ndarray:
    """N(0, gain²/fan) (He et al.)."""
    return normal(shape, 0.0, _kaiming_std(shape, a, mode, nonlinearity, fan_in, fan_out),
                  dtype=dtype, seed=seed)


def fan_in_uniform(shape, *, dtype="float32", seed=None, fan_in=None, fan_out=None) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): ``torch.nn.Linear``'s bias init
    (``fan_in`` is the layer's, passed by it; zeros when it is 0)."""
    fi, _ = _fans(shape, fan_in, fan_out)
    bound = 1.0 / math.sqrt(fi) if fi > 0 else 0.0
    return uniform(shape, -bound, bound, dtype=dtype, seed=seed)


def orthogonal(shape, gain: float = 1.0, *, dtype="float32", seed=None, fan_in=None,
               fan_out=None) -> np.ndarray:
    """A (semi-)orthogonal matrix (Saxe et al.): rows or columns orthonormal,
    scaled by ``gain``; N-D shapes are flattened to ``(prod(shape[:-1]), shape[-1])``."""
    shape = _shape(shape)
    if len(shape) < 2:
        raise ConfigError(f"orthogonal: needs at least 2 dimensions, got shape {shape}")
    rows, cols = math.prod(shape[:-1]), shape[-1]
    a = make_rng(seed).normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _out(gain * q.reshape(shape), dtype)


__all__ = ["manual_seed", "next_seed", "make_rng", "compute_fans", "calculate_gain", "zeros",
           "ones", "constant", "normal", "uniform", "trunc_normal", "xavier_uniform",
           "xavier_normal", "kaiming_uniform", "kaiming_normal", "fan_in_uniform", "orthogonal"]
