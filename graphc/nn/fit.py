"""``fit``: the training loop around a compiled step, with a progress bar."""
from __future__ import annotations

import sys
import time

import numpy as np

from .errors import ConfigError, ConfigTypeError


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
        if a.ndim < 1 or a.shape[1:] != p.shape[1:]:
            raise ConfigError(f"fit: data for {p.name!r} has shape {a.shape}; batches of it must "
                              f"have shape {p.shape}")
        if n is None:
            n = a.shape[0]
        elif a.shape[0] != n:
            raise ConfigError(f"fit: data arrays have different lengths ({n} and {a.shape[0]} "
                              f"for {p.name!r})")
    return batched, arrays, n


def fit(step, data, epochs: int = 1, batch_size: int | None = None, *, shuffle: bool = True,
        seed: int = 0, feeds: dict | None = None, progress: bool | str = True,
        log_every: int | None = None) -> list[float]:
    """Run ``step`` over ``data`` for ``epochs`` epochs; return the loss of
    every step (the step's first output).

    ``step``: a compiled train step (its parameters are updated in place
    by each call). ``data``: a dict ``{input name: array}`` or a sequence of
    arrays in the order of the step's inputs, all with the same first
    (example) axis. ``batch_size`` must equal the inputs' leading dimension
    (a compiled step has fixed shapes; ``None`` reads it from them); each
    epoch visits ``len(data) // batch_size`` batches, shuffled with ``seed``
    unless ``shuffle=False`` (the remainder is skipped that epoch).
    ``feeds``: inputs given the same value every step, or a function of the
    step number (e.g. a learning-rate placeholder: ``{"lr": lambda i: ...}``).
    ``progress``: a tqdm bar when tqdm is installed, else plain lines (about
    ten; ``log_every`` steps apart if given); ``"plain"`` forces lines;
    ``False`` is silent.
    """
    feeds = dict(feeds or {})
    if not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ConfigError(f"fit: epochs must be a non-negative int, got {epochs!r}")
    batched, arrays, n = _bind(step, data, feeds)
    if not batched:
        raise ConfigError("fit: the step has no batched inputs")
    bs = batched[0].shape[0]
    if batch_size is not None and batch_size != bs:
        raise ConfigError(f"fit: batch_size={batch_size}, but the step was compiled for batches "
                          f"of {bs} (input {batched[0].name!r} has shape {batched[0].shape})")
    for p in batched:
        if p.shape[0] != bs:
            raise ConfigError(f"fit: inputs {batched[0].name!r} and {p.name!r} have different "
                              f"batch sizes ({bs}, {p.shape[0]})")
    per_epoch = n // bs
    if per_epoch == 0:
        raise ConfigError(f"fit: {n} examples are fewer than one batch of {bs}")
    total = epochs * per_epoch
    rng = np.random.default_rng(seed)
    tq = _tqdm() if progress is True else None
    bar = tq(total=total, desc="train", unit="step", leave=True) if tq is not None else None
    plain = progress is not False and bar is None
    every = log_every or max(1, total // 10)
    history: list[float] = []
    t0 = time.perf_counter()
    try:
        for epoch in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            for b in range(per_epoch):
                sel = order[b * bs:(b + 1) * bs]
                kw = {p.name: a[sel] for p, a in zip(batched, arrays)}
                i = len(history)
                for k, v in feeds.items():
                    kw[k] = v(i) if callable(v) else v
                out = step(**kw)
                loss = float(np.asarray(out[0] if isinstance(out, tuple) else out))
                history.append(loss)
                if bar is not None:
                    bar.update(1)
                    if i % max(1, every // 10) == 0 or i + 1 == total:
                        bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{loss:.4f}", refresh=False)
                elif plain and ((i + 1) % every == 0 or i + 1 == total or i == 0):
                    print(f"step {i + 1:6d}/{total}  epoch {epoch + 1}/{epochs}  loss {loss:.4f}"
                          f"  ({time.perf_counter() - t0:.1f} s)", file=sys.stdout, flush=True)
    finally:
        if bar is not None:
            bar.close()
    return history
