"""The data-parallel training step: two compiled functions around one
allreduce.

``grad_fn`` (forward and backward) writes every gradient, and the step's
metrics, straight into one flat numpy buffer: each gradient is the update of
a non-trainable "slot" parameter whose value *is* a view of the buffer, and
compiled code writes updated parameters in place. The buffer is summed over
the processes in place (``Allreduce(IN_PLACE, buffer)``); ``update_fn`` (the
optimizer's rule, :meth:`graphc.optim.Optimizer.apply_gradients`) reads the
same slots scaled by ``1/size`` and writes the parameters and the optimizer
state. Nothing is copied on the native backend.
"""
from __future__ import annotations

import time

import numpy as np

from .. import ops as O
from ..autodiff import grad
from ..compiler import compile as gc_compile
from ..ir.node import Node
from ..nn.errors import ConfigError, ConfigTypeError
from ..nn.state import state_updates
from ..ops.common import parameter
from .comm import allreduce_sum, init

ALIGN = 16          # elements: each gradient starts on a 64-byte boundary (float32)


class _StepGraph:
    """What ``fit`` and callbacks ask of a step's graph: its inputs and the
    parameters it changes (weights, buffers, optimizer state)."""

    def __init__(self, placeholders, parameters):
        self.placeholders = list(placeholders)
        self.parameters = list(parameters)


class DataParallelStep:
    """A training step run by every process on its own batch; built by
    :func:`data_parallel`. Calling it (with the inputs ``gc.compile`` would
    take) runs ``grad_fn``, sums ``buffer`` over the processes, runs
    ``update_fn``, and returns the loss (and the other ``outputs``) averaged
    over the processes.

    ``buffer``: the flat gradient buffer; ``layout``: ``(name, offset,
    shape)`` of each gradient, averaged buffer and metric in it; ``times``: seconds spent so
    far in ``"compute"`` (grad_fn), ``"allreduce"`` and ``"update"``, and
    the ``"steps"`` count (:meth:`reset_times`); with ``measure_wait = True``
    a barrier before the allreduce splits off ``"wait"``, the time spent
    waiting for the slowest process, so that ``"allreduce"`` is the transfer
    alone (a diagnostic: the barrier costs a round trip); ``data_shard``: ``(rank,
    size)``, which ``gc.nn.fit`` reads to give each process its share of
    every batch."""

    def __init__(self, grad_fn, update_fn, buffer, slots, views, metric_off, n_metrics, comm,
                 params, states):
        self.grad_fn, self.update_fn, self.buffer, self.comm = grad_fn, update_fn, buffer, comm
        self._slots, self._views = slots, views
        self._moff, self._nm = metric_off, n_metrics
        self.rank, self.size = int(comm.Get_rank()), int(comm.Get_size())
        self.data_shard = (self.rank, self.size)
        self.params = params
        self.graph = _StepGraph(grad_fn.source_graph.placeholders, params + states)
        self.layout = [(s.name, int(v.__array_interface__["data"][0]
                                    - buffer.__array_interface__["data"][0]) // buffer.itemsize,
                        v.shape) for s, v in zip(slots, views)]
        self.measure_wait = False
        self.reset_times()

    def reset_times(self) -> None:
        self.times = {"compute": 0.0, "wait": 0.0, "allreduce": 0.0, "update": 0.0, "steps": 0}

    def _point_slots(self, collect: bool) -> None:
        # A slot's value is replaced when something assigns it (the interpreter
        # assigns updated parameters, a callback may restore values): point it
        # back at its view, first copying what was written (the interpreter's
        # gradients) when ``collect``.
        for s, v in zip(self._slots, self._views):
            if s._value is not v:
                if collect:
                    np.copyto(v, s._value)
                s._value = v

    def broadcast_parameters(self, root: int = 0) -> None:
        """Give every process ``root``'s values of every parameter the step
        changes (done once when the step is built)."""
        for p in self.graph.parameters:
            self.comm.Bcast(p._value, root=root)

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        self._point_slots(False)
        self.grad_fn(*args, **kwargs)
        self._point_slots(True)
        t1 = time.perf_counter()
        if self.measure_wait:
            self.comm.Barrier()
            tw = time.perf_counter()
            self.times["wait"] += tw - t1
            t1 = tw
        allreduce_sum(self.buffer, self.comm)
        t2 = time.perf_counter()
        self.update_fn()
        t3 = time.perf_counter()
        tm = self.times
        tm["compute"] += t1 - t0
        tm["allreduce"] += t2 - t1
        tm["update"] += t3 - t2
        tm["steps"] += 1
        m = self.buffer[self._moff:self._moff + self._nm] / self.size
        vals = tuple(np.asarray(v) for v in m)
        return vals[0] if self._nm == 1 else vals

    def __repr__(self) -> str:
        return (f"<graphc data-parallel step: rank {self.rank} of {self.size}, "
                f"{len(self.params)} parameters, buffer of {self.buffer.size} {self.buffer.dtype}>")


def _metric(m, i: int) -> Node:
    if not isinstance(m, Node) or m.shape != ():
        raise ConfigTypeError(f"data_parallel: output {i} must be a 0-d graph node (a loss or a "
                              f"metric), got {m!r}")
    return m


def data_parallel(loss: Node, optimizer, params, *, outputs=(), comm=None, backend: str = "llvm",
                  **compile_options) -> DataParallelStep:
    """A data-parallel training step: ``gc.compile(loss, updates=
    optimizer.updates(loss, params))`` for several processes.

    Every process builds the same graph (the same script) and calls the step
    on its own batch (``gc.nn.fit`` shards the data). Each call computes the
    gradients of ``loss`` on this process's batch into one flat buffer,
    sums the buffer over the processes in place, and applies ``optimizer``'s
    rule to the average (gradient clipping sees the average). With a loss
    that is a mean over the batch, ``size`` processes with batches of ``B``
    then train exactly as one process with batches of ``size * B``. The
    parameters (and buffers and optimizer state) of rank 0 are broadcast
    when the step is built.

    ``outputs``: more 0-d nodes (e.g. ``gc.nn.accuracy(logits, y)``),
    returned after the loss; like the loss, averaged over the processes.
    ``comm``: an mpi4py communicator (default ``init()``'s, COMM_WORLD).
    ``backend`` and ``compile_options`` go to both ``gc.compile`` calls.
    Other state the graph changes: float buffers (batch normalization's
    running statistics) are computed by each process from its own batch and
    averaged in the same allreduce; integer ones (dropout's step counters)
    advance alike on every process.
    """
    from ..optim.base import Optimizer
    if not isinstance(optimizer, Optimizer):
        raise ConfigTypeError(f"data_parallel: optimizer must be a gc.optim optimizer, got "
                              f"{type(optimizer).__name__}")
    comm = init(comm)
    n = int(comm.Get_size())
    metrics = [_metric(m, i) for i, m in enumerate([loss, *outputs])]
    params = optimizer.trainable(loss, params)
    if not params:
        raise ConfigError("data_parallel: the loss depends on none of the parameters")
    dtypes = {p.dtype for p in params}
    if len(dtypes) > 1:
        raise ConfigError(f"data_parallel: the parameters have several dtypes "
                          f"{sorted(str(d) for d in dtypes)}; one flat gradient buffer needs one")
    (dt,) = dtypes
    grads = grad(loss, params)
    # other state: float buffers (running statistics) are averaged in the same buffer, the
    # rest (random ops' counters, the same on every process) is written by grad_fn
    state = state_updates(loss)
    averaged = [(c, v) for c, v in state.items() if c.dtype == dt]
    kept = {c: v for c, v in state.items() if c.dtype != dt}
    tensors = [(p, f"{p.name}.grad") for p in params] + [(c, f"{c.name}.new") for c, _ in averaged]

    offsets, off = [], 0
    for p, _ in tensors:
        off = -(-off // ALIGN) * ALIGN
        offsets.append(off)
        off += int(np.prod(p.shape, dtype=np.int64))
    moff = -(-off // ALIGN) * ALIGN
    buffer = np.zeros(moff + len(metrics), dt)
    views, slots = [], []
    for (p, name), o in zip(tensors, offsets):
        size = int(np.prod(p.shape, dtype=np.int64))
        views.append(buffer[o:o + size].reshape(p.shape))
        slots.append(parameter(np.zeros(p.shape, buffer.dtype), name=name, trainable=False))
    for i in range(len(metrics)):
        views.append(buffer[moff + i:moff + i + 1].reshape(()))
        slots.append(parameter(np.zeros((), buffer.dtype), name=f"output{i}.sum",
                               trainable=False))
    for s, v in zip(slots, views):
        s._value = v                 # the slot's value is the buffer itself
    values = (list(grads) + [v for _, v in averaged]
              + [m if m.dtype == dt else O.cast(m, dt) for m in metrics])
    upd = {s: v for s, v in zip(slots, values)}
    upd.update(kept)
    grad_fn = gc_compile(loss, updates=upd, backend=backend, **compile_options)

    scaled = [s * (1.0 / n) if n > 1 else s for s in slots[:len(tensors)]]
    rule = optimizer.apply_gradients(params, scaled[:len(params)])
    for (c, _), v in zip(averaged, scaled[len(params):]):
        rule.setdefault(c, v)
    update_fn = gc_compile(rule[optimizer.step_count], updates=rule, backend=backend,
                           **compile_options)
    slot_ids = {s.id for s in slots}
    states, seen = [], {p.id for p in params}
    for g in (grad_fn.source_graph, update_fn.source_graph):
        for p in g.parameters:
            if p.id not in seen and p.id not in slot_ids:
                seen.add(p.id)
                states.append(p)
    step = DataParallelStep(grad_fn, update_fn, buffer, slots, views, moff, len(metrics), comm,
                            params, states)
    shapes = [tuple(p.shape) for p in step.graph.parameters]
    if n > 1:
        every = comm.allgather(shapes)
        if any(s != shapes for s in every):
            raise ConfigError("data_parallel: the processes built different models (their "
                              "parameters' shapes differ); every rank must run the same script")
    step.broadcast_parameters(0)
    return step
