"""What :func:`graphc.nn.fit` returns and calls back: :class:`History` (one
dict of metrics per epoch, and every step's loss), the callback protocol,
:class:`EarlyStopping` and :class:`StopTraining`.

A callback is a function ``f(epoch, logs)`` or an object with any of

- ``on_train_begin(history)``: before the first step; ``history.step`` is
  the compiled step being trained;
- ``on_epoch_end(epoch, logs)``: after each epoch's steps and validation;
  ``epoch`` counts from 0 (as Keras; printed lines and messages count
  from 1), ``logs`` is that epoch's dict of metrics
  (``"loss"``, ``"val_loss"``, ...; a callback may add keys, later ones see
  them);
- ``on_train_end(history)``: after the last epoch (also after a stop).

``on_epoch_end`` (or the function) returning a true value, or raising
:class:`StopTraining`, ends training after that epoch.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError, ConfigTypeError


class StopTraining(Exception):
    """Raised by a callback's ``on_epoch_end`` to end training after this
    epoch; its message becomes ``History.stop_reason``."""


class History:
    """What :func:`fit` did.

    ``history.epochs``: one dict per epoch run, ``{"epoch": k, "loss": ...,
    "val_loss": ..., ...}`` (the metrics the callbacks saw); ``len(history)``
    is the number of epochs, ``history[k]`` epoch ``k``'s dict and
    ``history["val_loss"]`` one metric's per-epoch values (Keras's
    ``history.history["val_loss"]``). ``history.losses``: the loss of every
    step, in order. ``history.dropped``: examples left out of each epoch
    (the remainder of a fixed batch size, see ``fit``'s ``drop_last``).
    ``history.stopped_early`` and ``history.stop_reason``: whether and why a
    callback ended training before ``epochs``.
    """

    def __init__(self, step=None):
        self.step = step
        self.epochs: list[dict] = []
        self.losses: list[float] = []
        self.dropped = 0
        self.stopped_early = False
        self.stop_reason: str | None = None

    def keys(self) -> list[str]:
        """The metric names that some epoch recorded, in first-seen order."""
        out: dict = {}
        for e in self.epochs:
            out.update(dict.fromkeys(e))
        return list(out)

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self):
        return iter(self.epochs)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(f"History: no metric {key!r}; the epochs recorded {self.keys()}")
            return [e.get(key) for e in self.epochs]
        return self.epochs[key]

    def __repr__(self) -> str:
        last = ""
        if self.epochs:
            last = ", last: " + ", ".join(f"{k}={v:.4g}" for k, v in self.epochs[-1].items()
                                          if k != "epoch" and isinstance(v, (int, float)))
        stop = f", stopped early: {self.stop_reason}" if self.stopped_early else ""
        return f"<History: {len(self.epochs)} epochs, {len(self.losses)} steps{last}{stop}>"


def as_callbacks(callbacks) -> list:
    """The callbacks given to ``fit`` as a list, each checked."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    out = []
    for cb in callbacks:
        hooks = ("on_train_begin", "on_epoch_end", "on_train_end")
        if not callable(cb) and not any(hasattr(cb, h) for h in hooks):
            raise ConfigTypeError(f"fit: a callback must be a function (epoch, logs) or have "
                                  f"one of {hooks}, got {cb!r}")
        out.append(cb)
    return out


def call_hook(cb, hook: str, *args):
    f = getattr(cb, hook, None)
    if f is None and hook == "on_epoch_end" and callable(cb):
        f = cb
    return None if f is None else f(*args)


def _name(cb) -> str:
    return getattr(cb, "__name__", type(cb).__name__)


def epoch_end(callbacks, epoch: int, logs: dict) -> str | None:
    """Run every callback's ``on_epoch_end``; the reason to stop, or None."""
    reason = None
    for cb in callbacks:
        try:
            r = call_hook(cb, "on_epoch_end", epoch, logs)
        except StopTraining as e:
            r, reason = True, reason or str(e) or f"{_name(cb)} stopped training"
        if r is not None and bool(r) and reason is None:
            reason = getattr(cb, "stop_reason", None) or f"{_name(cb)} asked to stop"
    return reason


class EarlyStopping:
    """Stop when ``monitor`` (a key of the epoch's logs, e.g. ``"val_loss"``)
    has not improved for ``patience`` epochs (Keras's rule).

    An epoch improves when its value beats the best so far by more than
    ``min_delta`` (lower for ``mode="min"``, higher for ``"max"``;
    ``"auto"`` is ``"max"`` for names ending in ``accuracy`` or ``acc``);
    each epoch that does not adds one to a count reset by the next
    improvement, and training stops when the count reaches ``patience``
    (``patience=0``: at the first epoch that does not improve).
    ``restore_best``: at the end of training (stopped or not), put back the
    values of every parameter of the step (weights, buffers and optimizer
    state) as they were at the end of the best epoch.

    After training: ``best`` (the best value), ``best_epoch``,
    ``stopped_epoch`` (the epoch after which it stopped, or None).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best: bool = False):
        if not isinstance(monitor, str):
            raise ConfigTypeError(f"EarlyStopping: monitor must be a metric name, got {monitor!r}")
        if not isinstance(patience, (int, np.integer)) or isinstance(patience, bool) or \
                patience < 0:
            raise ConfigError(f"EarlyStopping: patience must be a non-negative int, got "
                              f"{patience!r}")
        if not (isinstance(min_delta, (int, float, np.floating)) and min_delta >= 0):
            raise ConfigError(f"EarlyStopping: min_delta must be >= 0, got {min_delta!r}")
        if mode not in ("auto", "min", "max"):
            raise ConfigError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if monitor.endswith(("accuracy", "acc")) else "min"
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        self.mode, self.restore_best = mode, bool(restore_best)
        self._reset(None)

    def _reset(self, params) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.stop_reason: str | None = None
        self.wait = 0
        self._params = params or []
        self._snapshot = None

    def improved(self, value: float) -> bool:
        """Would ``value`` be an improvement on the best so far?"""
        if self.best is None:
            return not math.isnan(value)
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, history) -> None:
        graph = getattr(getattr(history, "step", None), "graph", None)
        self._reset(list(getattr(graph, "parameters", ())) if self.restore_best else None)

    def on_epoch_end(self, epoch: int, logs: dict) -> bool:
        if self.monitor not in logs:
            raise ConfigError(f"EarlyStopping: no metric {self.monitor!r} in the epoch's logs "
                              f"{sorted(logs)} (validation metrics need fit's validation_data)")
        value = float(logs[self.monitor])
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._snapshot = [np.array(p.value, copy=True) for p in self._params]
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.stop_reason = (f"EarlyStopping: {self.monitor} has not improved on "
                                f"{self.best:.6g} (epoch {self.best_epoch + 1}) for "
                                f"{self.wait} epoch(s)")
            return True
        return False

    def on_train_end(self, history) -> None:
        if self.restore_best and self._snapshot is not None:
            for p, v in zip(self._params, self._snapshot):
                p.value = v

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, mode={self.mode!r}, "
                f"restore_best={self.restore_best})")
