"""``fit``: the training loop around a compiled step: epochs of shuffled
batches, the last partial batch made explicit (``drop_last``), validation
and metrics per epoch, callbacks (early stopping), a returned
:class:`~graphc.nn.callbacks.History` and a progress bar."""
from __future__ import annotations

import sys
import time
import warnings

import numpy as np

from ..errors import user_stacklevel
from .callbacks import History, as_callbacks, call_hook, epoch_end
from .errors import ConfigError, ConfigTypeError, DroppedExamplesWarning


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def _placeholders(step):
    graph = getattr(step, "graph", None)
    if graph is None:
        raise ConfigTypeError(f"fit: step must be a compiled function (gc.compile), got "
                              f"{type(step).__name__}")
    return list(graph.placeholders)


def batch_dim(p):
    """The batch size that input ``p`` of a compiled step takes: an int (a
    fixed shape, what ``gc.compile`` makes today), or None when its leading
    dimension is not a fixed int (a step that takes batches of any size)."""
    d = p.shape[0] if len(p.shape) else None
    return int(d) if isinstance(d, (int, np.integer)) else None


def _bind(step, data, feeds):
    phs = _placeholders(step)
    fixed = set(feeds)
    batched = [p for p in phs if p.name not in fixed]
    if isinstance(data, dict):
        unknown = [k for k in data if k not in {p.name for p in batched}]
        if unknown:
            raise ConfigError(f"fit: data has {unknown}, which are not batched inputs of the step "
                              f"(inputs: {[p.name for p in phs]})")
        missing = [p.name for p in batched if p.name not in data]
        if missing:
            raise ConfigError(f"fit: no data for input(s) {missing}")
        arrays = [np.asarray(data[p.name]) for p in batched]
    else:
        if isinstance(data, np.ndarray):
            data = (data,)
        arrays = [np.asarray(a) for a in data]
        if len(arrays) != len(batched):
            raise ConfigError(f"fit: {len(arrays)} data arrays for {len(batched)} batched inputs "
                              f"{[p.name for p in batched]}")
    n = None
    for p, a in zip(batched, arrays):
        if not len(p.shape):
            raise ConfigError(f"fit: input {p.name!r} is a scalar, so it has no batch axis; give "
                              f"it in feeds= (a value or a function of the step number)")
        if a.ndim < 1 or a.shape[1:] != tuple(p.shape[1:]):
            raise ConfigError(f"fit: data for {p.name!r} has shape {a.shape}; batches of it must "
                              f"have shape {p.shape}")
        if n is None:
            n = a.shape[0]
        elif a.shape[0] != n:
            raise ConfigError(f"fit: data arrays have different lengths ({n} and {a.shape[0]} "
                              f"for {p.name!r})")
    return batched, arrays, n


def _batch_size(batched, batch_size):
    """(batch size, does the step take only that size)."""
    sizes = {batch_dim(p) for p in batched}
    if len(sizes) > 1:
        raise ConfigError(f"fit: the step's inputs have different batch sizes "
                          f"{[(p.name, p.shape) for p in batched]}")
    (bs,) = sizes
    if bs is None:                    # a step that takes any batch size
        if batch_size is None:
            raise ConfigError("fit: the step takes batches of any size; give batch_size")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"fit: batch_size must be a positive int, got {batch_size!r}")
        return int(batch_size), False
    if batch_size is not None and batch_size != bs:
        raise ConfigError(f"fit: batch_size={batch_size}, but the step was compiled for batches "
                          f"of {bs} (input {batched[0].name!r} has shape {batched[0].shape})")
    return bs, True


def _plan_epoch(n, bs, fixed, drop_last, shuffle):
    """(batches per epoch, examples dropped per epoch), after the
    ``drop_last`` rules of :func:`fit`."""
    full, rem = divmod(n, bs)
    if rem == 0:
        return full, 0
    if drop_last is None and not fixed:
        drop_last = False
    if full == 0 and drop_last is not False:
        raise ConfigError(f"fit: {n} examples are fewer than one batch of {bs}")
    if drop_last is False:
        if fixed:
            raise ConfigError(
                f"fit: drop_last=False: the last {rem} of {n} examples make a batch of {rem}, but "
                f"the step was compiled for batches of {bs} only; give drop_last=True (or leave "
                f"it None, which drops them with a warning), or a batch size that divides {n}")
        return full + 1, 0
    if drop_last is None:
        which = ("different ones each epoch (the data is shuffled)" if shuffle else
                 f"the same last {rem} every epoch (shuffle=False)")
        warnings.warn(
            f"fit: {n} examples make {full} batches of {bs}; the remaining {rem} are not used in "
            f"an epoch, {which}, because the step was compiled for batches of {bs} only. Pass "
            f"drop_last=True to drop them without this warning, or use a batch size that "
            f"divides {n}", DroppedExamplesWarning, stacklevel=user_stacklevel())
    return full, rem


def _names(outputs):
    names = (outputs,) if isinstance(outputs, str) else tuple(outputs)
    if not names or not all(isinstance(k, str) for k in names) or len(set(names)) != len(names):
        raise ConfigError(f"fit: outputs must be distinct metric names, got {outputs!r}")
    return names


def _validate(evaluate, validation_data):
    if validation_data is None:
        if evaluate is not None:
            raise ConfigError("fit: evaluate= is given without validation_data=")
        return None
    if evaluate is None:
        raise ConfigError("fit: validation_data needs evaluate=, a function of the validation "
                          "data returning {metric: value}: gc.nn.evaluator(model, loss) builds "
                          "one (the model in eval mode, loss and accuracy)")
    if not callable(evaluate):
        raise ConfigTypeError(f"fit: evaluate must be callable, got {evaluate!r}")

    def run():
        r = evaluate(validation_data)
        if not isinstance(r, dict):
            r = {"loss": r}
        return {f"val_{k}": float(np.asarray(v)) for k, v in r.items()}
    return run


def _line(logs, epoch, epochs, t0):
    ms = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k != "epoch")
    return f"epoch {epoch + 1:4d}/{epochs}  {ms}  ({time.perf_counter() - t0:.1f} s)"


def fit(step, data, epochs: int = 1, batch_size: int | None = None, *, shuffle: bool = True,
        seed: int = 0, feeds: dict | None = None, drop_last: bool | None = None,
        outputs=("loss",), validation_data=None, evaluate=None, callbacks=None,
        progress: bool | str = True, log_every: int | None = None) -> History:
    """Run ``step`` over ``data`` for ``epochs`` epochs; return a
    :class:`~graphc.nn.callbacks.History` (one dict of metrics per epoch,
    and every step's loss).

    ``step``: a compiled train step (its parameters are updated in place by
    each call). ``data``: a dict ``{input name: array}`` or a sequence of
    arrays in the order of the step's inputs, all with the same first
    (example) axis. Each epoch visits the examples in the order
    ``np.random.default_rng(seed).permutation(n)`` (one generator for the
    whole run, one permutation per epoch), or in order with
    ``shuffle=False``, in consecutive batches of ``batch_size``.

    ``batch_size``: a step compiled by ``gc.compile`` has a fixed batch size,
    its inputs' leading dimension (``None`` reads it; another value is an
    error). When it does not divide the number of examples, ``drop_last``
    says what happens to the rest: ``True`` drops it each epoch;
    ``None`` (the default) drops it with a ``DroppedExamplesWarning`` naming
    how many, if the step takes only its fixed batch size, and uses it as a
    last, smaller batch if the step takes any batch size; ``False`` always
    uses it (an error for a fixed-size step). ``history.dropped`` is the count.

    ``feeds``: inputs given the same value every step, or a function of the
    step number (e.g. a learning-rate placeholder: ``{"lr": lambda i: ...}``).
    ``outputs``: names for the step's first outputs (``("loss",)``; e.g.
    ``("loss", "accuracy")`` for ``gc.compile([loss, gc.nn.accuracy(logits,
    y)], updates=...)``); each is averaged over the epoch's examples into its
    logs. ``validation_data`` (``(x, y)`` or a dict): after each epoch,
    ``evaluate(validation_data)`` (e.g. ``gc.nn.evaluator(model, loss)``)
    returns ``{metric: value}``, logged with a ``val_`` prefix.
    ``callbacks``: functions ``f(epoch, logs)`` or objects with
    ``on_train_begin`` / ``on_epoch_end`` / ``on_train_end`` (see
    :mod:`graphc.nn.callbacks`; :class:`EarlyStopping`); a true return from
    ``on_epoch_end`` or a :class:`StopTraining` ends training.

    A data-parallel step (:func:`graphc.distributed.data_parallel`) has
    ``data_shard = (rank, size)``: each batch of the order is then ``size *
    batch_size`` examples, of which this process takes the ``rank``-th
    ``batch_size``, and only rank 0 shows progress.

    ``progress``: a tqdm bar when tqdm is installed, else plain lines (about
    ten epoch lines, with the logs; for a single epoch, about ten step lines;
    step lines ``log_every`` steps apart if given); ``"plain"`` forces
    lines; ``False`` is silent.
    """
    feeds = dict(feeds or {})
    if not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ConfigError(f"fit: epochs must be a non-negative int, got {epochs!r}")
    if drop_last not in (None, True, False):
        raise ConfigError(f"fit: drop_last must be True, False or None, got {drop_last!r}")
    names = _names(outputs)
    batched, arrays, n = _bind(step, data, feeds)
    if not batched:
        raise ConfigError("fit: the step has no batched inputs")
    bs, fixed = _batch_size(batched, batch_size)
    # a data-parallel step (gc.distributed) runs on `shards` processes: each epoch's batches
    # are `shards * bs` examples of the order, of which this process takes its `bs`
    shard, shards = getattr(step, "data_shard", (0, 1))
    if shard:
        progress = False              # one process prints
    per_epoch, dropped = _plan_epoch(n, bs * shards, fixed, drop_last, shuffle)
    validate = _validate(evaluate, validation_data)
    cbs = as_callbacks(callbacks)

    history = History(step)
    history.dropped = dropped
    total = epochs * per_epoch
    rng = np.random.default_rng(seed)
    tq = _tqdm() if progress is True else None
    bar = tq(total=total, desc="train", unit="step", leave=True) if tq is not None else None
    plain = progress is not False and bar is None
    step_lines = log_every is not None or epochs == 1
    every = log_every or max(1, total // 10)
    epoch_every = max(1, epochs // 10)
    t0 = time.perf_counter()
    for cb in cbs:
        call_hook(cb, "on_train_begin", history)
    try:
        for epoch in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            sums, seen = np.zeros(len(names)), 0
            for b in range(per_epoch):
                start = (b * shards + shard) * bs
                sel = order[start:start + bs]
                kw = {p.name: a[sel] for p, a in zip(batched, arrays)}
                i = len(history.losses)
                for k, v in feeds.items():
                    kw[k] = v(i) if callable(v) else v
                out = step(**kw)
                vals = out if isinstance(out, (tuple, list)) else (out,)
                if len(vals) < len(names):
                    raise ConfigError(f"fit: outputs={names} names {len(names)} outputs, the "
                                      f"step returns {len(vals)}")
                vals = [float(np.asarray(v)) for v in vals[:len(names)]]
                loss = vals[0]
                history.losses.append(loss)
                sums += len(sel) * np.array(vals)
                seen += len(sel)
                if bar is not None:
                    bar.update(1)
                    if i % max(1, every // 10) == 0 or i + 1 == total:
                        bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{loss:.4f}",
                                        refresh=False)
                elif plain and step_lines and ((i + 1) % every == 0 or i + 1 == total or i == 0):
                    print(f"step {i + 1:6d}/{total}  epoch {epoch + 1}/{epochs}  loss {loss:.4f}"
                          f"  ({time.perf_counter() - t0:.1f} s)", file=sys.stdout, flush=True)
            logs = {"epoch": epoch, **dict(zip(names, (sums / max(seen, 1)).tolist()))}
            if validate is not None:
                logs.update(validate())
            history.epochs.append(logs)
            reason = epoch_end(cbs, epoch, logs)
            last = reason is not None or epoch + 1 == epochs
            if (epoch + 1) % epoch_every == 0 or epoch == 0 or last:
                if bar is not None:
                    bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k != "epoch"},
                                    refresh=False)
                    if not step_lines:
                        bar.write(_line(logs, epoch, epochs, t0))
                elif plain and not step_lines:
                    print(_line(logs, epoch, epochs, t0), file=sys.stdout, flush=True)
            if reason is not None:
                history.stopped_early, history.stop_reason = epoch + 1 < epochs, reason
                msg = f"stopped after epoch {epoch + 1}: {reason}"
                if bar is not None:
                    bar.write(msg)
                elif plain:
                    print(msg, file=sys.stdout, flush=True)
                break
    finally:
        if bar is not None:
            bar.close()
    for cb in cbs:
        call_hook(cb, "on_train_end", history)
    return history
