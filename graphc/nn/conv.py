"""Convolution and pooling layers: ``Conv2d``, ``Conv1d``, ``MaxPool2d``,
``AvgPool2d``, ``AdaptiveAvgPool2d``, ``Flatten``. Layouts, names and defaults are PyTorch's
(NCHW inputs, OIHW weights, ``torch.nn.Conv2d``'s initialization), so a
PyTorch ``state_dict`` of the same architecture loads as it is (see
:func:`graphc.nn.convert_torch_state_dict` for models that also hold
``Dense`` layers, whose weight graphc stores transposed).

The layers build the functional ops ``gc.conv2d``, ``gc.conv1d``,
``gc.max_pool2d``, ``gc.avg_pool2d``, ``gc.adaptive_avg_pool2d``, ``gc.pad`` and
``gc.flatten`` (graphc/ops/conv.py).
"""
from __future__ import annotations

import math

import numpy as np

from .. import ops as O
from ..errors import ShapeError
from ..ir.node import Node
from ..ops.common import parameter
from . import functional as F
from . import init as I
from .errors import ConfigError, ConfigTypeError
from .layers import _float_dtype, _init, _prefix
from .module import Module

PADDING_MODES = ("zeros", "reflect", "replicate")
_PAD_MODE = {"reflect": "reflect", "replicate": "edge"}


def _op(name: str):
    f = getattr(O, name, None)
    if f is None:
        raise NotImplementedError(f"gc.{name} is not available in this build of graphc")
    return f


def _int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _tuple(cls: str, what: str, v, n: int, lo: int) -> tuple:
    """``v`` (an int or a sequence of ``n`` ints, each >= ``lo``) as an n-tuple."""
    items = (v,) * n if _int(v) else v
    if not isinstance(items, (tuple, list)) or len(items) != n or \
            not all(_int(a) and a >= lo for a in items):
        raise ConfigError(f"{cls}: {what} must be an int >= {lo} or a tuple of {n} such ints, "
                          f"got {v!r}")
    return tuple(int(a) for a in items)


def _check_input(cls: str, desc: str, x, ndim: int, channels: int | None = None) -> Node:
    x = F._float(cls, x)
    if x.ndim not in (ndim, ndim - 1):
        raise ShapeError(f"{desc}: expected a {ndim}-D input (N, C, ...) or a {ndim - 1}-D "
                         f"unbatched one, got shape {x.shape}")
    c = x.shape[-(ndim - 1)]
    if channels is not None and c != channels:
        raise ShapeError(f"{desc}: input of shape {x.shape} has {c} channels, expected {channels}")
    return x


class _ConvNd(Module):
    _n = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *,
                 weight_init=None, bias_init=None, dtype="float32", seed=None,
                 name: str | None = None):
        super().__init__()
        cls, n = type(self).__name__, self._n
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
            if not _int(v) or v < 1:
                raise ConfigError(f"{cls}: {what} must be a positive int, got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise ConfigError(f"{cls}: in_channels ({in_channels}) and out_channels "
                              f"({out_channels}) must both be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), \
            int(groups)
        self.kernel_size = _tuple(cls, "kernel_size", kernel_size, n, 1)
        self.stride = _tuple(cls, "stride", stride, n, 1)
        self.dilation = _tuple(cls, "dilation", dilation, n, 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ConfigError(f"{cls}: padding must be an int, a tuple, 'same' or 'valid', "
                                  f"got {padding!r}")
            if padding == "same" and self.stride != (1,) * n:
                raise ConfigError(f"{cls}: padding='same' needs stride 1, got stride {stride!r}")
            self.padding = padding
        else:
            self.padding = _tuple(cls, "padding", padding, n, 0)
        if padding_mode not in PADDING_MODES:
            raise ConfigError(f"{cls}: padding_mode must be one of {PADDING_MODES}, got "
                              f"{padding_mode!r}")
        self.padding_mode = padding_mode
        if not isinstance(bias, (bool, np.bool_)):
            raise ConfigTypeError(f"{cls}: bias must be a bool, got {bias!r}")
        dt = _float_dtype(cls, dtype)
        rng = I.make_rng(seed)
        rf = math.prod(self.kernel_size)
        fan_in = self.in_channels // self.groups * rf
        fan_out = self.out_channels * rf            # torch's _calculate_fan_in_and_fan_out
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        pre = _prefix(name, cls.lower())
        winit = weight_init or (lambda s, **k: I.kaiming_uniform(s, a=math.sqrt(5), **k))
        self.weight = parameter(_init(cls, winit, shape, dt, rng, fan_in, fan_out),
                                name=f"{pre}.weight")
        if bias:
            binit = bias_init or I.fan_in_uniform
            self.bias = parameter(_init(cls, binit, (self.out_channels,), dt, rng, fan_in, fan_out),
                                  name=f"{pre}.bias")
        else:
            self.bias = None

    def _explicit_padding(self) -> tuple:
        """``((before, after), ...)`` per spatial axis for a non-zero padding mode."""
        if self.padding == "valid":
            return ((0, 0),) * self._n
        if self.padding == "same":          # PyTorch: the odd pixel goes after
            out = []
            for d, k in zip(self.dilation, self.kernel_size):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return tuple(out)
        return tuple((p, p) for p in self.padding)

    def forward(self, x) -> Node:
        cls, n = type(self).__name__, self._n
        x = _check_input(cls, f"{cls}({self.in_channels}, {self.out_channels})", x, n + 2,
                         self.in_channels)
        unbatched = x.ndim == n + 1
        if unbatched:
            x = O.expand_dims(x, 0)
        padding = self.padding
        if self.padding_mode != "zeros":
            pads = self._explicit_padding()
            if any(a or b for a, b in pads):
                x = _op("pad")(x, ((0, 0), (0, 0), *pads), mode=_PAD_MODE[self.padding_mode])
            padding = 0
        if n == 1:              # conv1d takes ints
            stride, dilation = self.stride[0], self.dilation[0]
            padding = padding[0] if isinstance(padding, tuple) else padding
        else:
            stride, dilation = self.stride, self.dilation
        y = _op(f"conv{n}d")(x, self.weight, self.bias, stride=stride, padding=padding,
                             dilation=dilation, groups=self.groups)
        return O.squeeze(y, 0) if unbatched else y

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, " \
            f"stride={self.stride}"
        if self.padding != (0,) * self._n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._n:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation, as PyTorch) of ``(N, C_in, H, W)``
    inputs (or unbatched ``(C_in, H, W)``): weight ``(C_out, C_in/groups,
    kH, kW)``, bias ``(C_out,)``. ``padding``: an int, a pair, ``"same"``
    (stride 1) or ``"valid"``; ``padding_mode``: ``"zeros"``, ``"reflect"``
    or ``"replicate"``.

    Defaults as ``torch.nn.Conv2d``: weight ``kaiming_uniform(a=sqrt(5))``
    = ``U(±1/sqrt(fan_in))``, bias ``U(±1/sqrt(fan_in))`` with ``fan_in =
    C_in/groups * kH * kW``, float32. ``weight_init``, ``bias_init``,
    ``dtype``, ``seed`` as for :class:`graphc.nn.Dense`."""
    _n = 2


class Conv1d(_ConvNd):
    """1-D convolution of ``(N, C_in, L)`` inputs (or unbatched ``(C_in,
    L)``): weight ``(C_out, C_in/groups, k)``; otherwise as :class:`Conv2d`."""
    _n = 1


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
        super().__init__()
        cls = type(self).__name__
        self.kernel_size = _tuple(cls, "kernel_size", kernel_size, 2, 1)
        self.stride = self.kernel_size if stride is None else _tuple(cls, "stride", stride, 2, 1)
        self.padding = _tuple(cls, "padding", padding, 2, 0)
        for p, k in zip(self.padding, self.kernel_size):
            if p > k // 2:
                raise ConfigError(f"{cls}: padding {self.padding} must be at most half the "
                                  f"kernel size {self.kernel_size}")
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise ConfigTypeError(f"{cls}: ceil_mode must be a bool, got {ceil_mode!r}")
        self.ceil_mode = bool(ceil_mode)

    def _input(self, x):
        cls = type(self).__name__
        x = _check_input(cls, f"{cls}(kernel_size={self.kernel_size})", x, 4)
        return (O.expand_dims(x, 0), True) if x.ndim == 3 else (x, False)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}" + \
            (", ceil_mode=True" if self.ceil_mode else "")


class MaxPool2d(_Pool2d):
    """Max over ``kernel_size`` windows of ``(N, C, H, W)`` (or ``(C, H,
    W)``) inputs, ``stride`` (default ``kernel_size``), implicit ``-inf``
    ``padding`` (at most half the kernel), ``dilation``, ``ceil_mode``, as
    ``torch.nn.MaxPool2d``. The gradient goes to the maximum of each window."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.dilation = _tuple("MaxPool2d", "dilation", dilation, 2, 1)
        if return_indices:
            raise ConfigError("MaxPool2d: return_indices=True is not supported (use gc.argmax "
                              "over the windows if you need the positions)")

    def forward(self, x) -> Node:
        x, unbatched = self._input(x)
        y = _op("max_pool2d")(x, self.kernel_size, stride=self.stride, padding=self.padding,
                              dilation=self.dilation, ceil_mode=self.ceil_mode)
        return O.squeeze(y, 0) if unbatched else y

    def extra_repr(self) -> str:
        return super().extra_repr() + \
            (f", dilation={self.dilation}" if self.dilation != (1, 1) else "")


class AvgPool2d(_Pool2d):
    """Mean over ``kernel_size`` windows, as ``torch.nn.AvgPool2d``:
    ``stride`` (default ``kernel_size``), zero ``padding`` (at most half the
    kernel), ``ceil_mode``, ``count_include_pad`` (divide by the whole
    window, padding included, or by the real pixels in it) and
    ``divisor_override`` (divide every window sum by this)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        if not isinstance(count_include_pad, (bool, np.bool_)):
            raise ConfigTypeError(f"AvgPool2d: count_include_pad must be a bool, got "
                                  f"{count_include_pad!r}")
        self.count_include_pad = bool(count_include_pad)
        if divisor_override is not None and (not _int(divisor_override) or divisor_override < 1):
            raise ConfigError(f"AvgPool2d: divisor_override must be a positive int or None, "
                              f"got {divisor_override!r}")
        self.divisor_override = None if divisor_override is None else int(divisor_override)

    def forward(self, x) -> Node:
        x, unbatched = self._input(x)
        y = _op("avg_pool2d")(x, self.kernel_size, stride=self.stride, padding=self.padding,
                              ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad,
                              divisor_override=self.divisor_override)
        return O.squeeze(y, 0) if unbatched else y


class AdaptiveAvgPool2d(Module):
    """Average over ``output_size`` bins of each spatial axis
    (``torch.nn.AdaptiveAvgPool2d``; an int, ``(h, w)``, ``None`` keeps an
    axis); ``AdaptiveAvgPool2d(1)`` is global average pooling."""

    def __init__(self, output_size):
        super().__init__()
        items = (output_size,) * 2 if _int(output_size) else output_size
        if not isinstance(items, (tuple, list)) or len(items) != 2 or \
                not all(a is None or (_int(a) and a >= 1) for a in items):
            raise ConfigError(f"AdaptiveAvgPool2d: output_size must be a positive int or a pair "
                              f"of positive ints or None, got {output_size!r}")
        self.output_size = tuple(None if a is None else int(a) for a in items)

    def forward(self, x) -> Node:
        x = _check_input("AdaptiveAvgPool2d", f"AdaptiveAvgPool2d({self.output_size})", x, 4)
        if self.output_size == (1, 1) and x.ndim == 4:
            return _op("global_avg_pool2d")(x)
        return _op("adaptive_avg_pool2d")(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Flatten(Module):
    """Merge axes ``start_dim..end_dim`` into one (``torch.nn.Flatten``;
    the default keeps the batch axis: ``(N, C, H, W) -> (N, C*H*W)``)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        for what, v in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not _int(v):
                raise ConfigTypeError(f"Flatten: {what} must be an int, got {v!r}")
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x) -> Node:
        x = O.as_node(x)
        nd = max(x.ndim, 1)
        s, e = self.start_dim, self.end_dim
        if not (-nd <= s < nd and -nd <= e < nd):
            raise ShapeError(f"Flatten(start_dim={s}, end_dim={e}): out of range for an input "
                             f"of shape {x.shape}")
        s, e = s % nd, e % nd
        if s > e:
            raise ShapeError(f"Flatten: start_dim {self.start_dim} comes after end_dim "
                             f"{self.end_dim} for an input of shape {x.shape}")
        return _op("flatten")(x, s, e)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
