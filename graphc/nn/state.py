"""State that a compiled training step writes besides the parameters: the
running statistics of batch normalization and the step counters of random
ops (dropout).

A layer whose forward pass in training mode also changes a buffer (as
``BatchNorm2d`` updates its running mean and variance) *records* the change
on the node it returns: ``record(node, [(buffer, rule), ...])`` where
``rule(cur)`` builds the buffer's new value; ``cur(b)`` is buffer ``b``'s
value at that point (the parameter itself, or what earlier rules made of
it: batch norm's cumulative average reads the step count its own first
rule has just incremented). Nothing is
written until a compiled step is given the updates:
:func:`state_updates` walks a graph, finds the recorded nodes it depends on
and returns ``{buffer: new value}`` for ``gc.compile(..., updates=...)``.
Every optimizer's ``updates()`` adds them by itself, so

    step = gc.compile(loss, updates=opt.updates(loss, model.parameters()))

also keeps the running statistics. A layer used twice in one graph applies
its rules in the order the uses were built (as PyTorch, which updates the
statistics once per call): the second rule starts from the first one's
result.
"""
from __future__ import annotations

import weakref

from ..ir.graph import topo_order
from ..ir.node import Node
from .errors import ConfigTypeError
from .functional import graph_roots, rng_updates

_records: dict[int, tuple] = {}       # node id -> (weakref to the node, [(buffer, rule), ...])


def _forget(nid: int) -> None:
    _records.pop(nid, None)


def record(node: Node, rules) -> Node:
    """Record on ``node`` the buffer updates ``[(buffer, rule), ...]`` its
    computation implies (``rule(cur) -> new value node``, ``cur(buffer)``
    the buffer's current value node; rules run in order);
    returns ``node``. Building the same node again (hash-consing) replaces
    the record."""
    if not isinstance(node, Node):
        raise ConfigTypeError(f"record: expected a graph node, got {type(node).__name__}")
    rules = list(rules)
    for buf, rule in rules:
        if not (isinstance(buf, Node) and buf.op == "parameter") or not callable(rule):
            raise ConfigTypeError(f"record: expected (parameter, rule) pairs, got ({buf!r}, {rule!r})")
    if node.id not in _records:
        weakref.finalize(node, _forget, node.id)
    _records[node.id] = (weakref.ref(node), rules)
    return node


def module_updates(*outputs) -> dict:
    """``{buffer: new value}`` recorded by layers (batch normalization's
    running statistics) on the nodes that ``outputs`` depend on."""
    found = [n for n in topo_order(graph_roots(outputs, "state_updates")) if n.id in _records]
    out: dict = {}
    def cur(b):
        return out.get(b, b)
    for n in sorted(found, key=lambda n: n.id):        # the order the layers were called
        for buf, rule in _records[n.id][1]:
            out[buf] = rule(cur)
    return out


def state_updates(*outputs) -> dict:
    """Every update of non-trainable state that a step computing
    ``outputs`` should write: the layers' recorded buffer updates (running
    statistics) and the random ops' step counters (:func:`rng_updates`).
    Optimizers include these in their ``updates()``; use this for a
    hand-written update dict or a step without an optimizer::

        step = gc.compile(loss, updates=gc.nn.state_updates(loss))
    """
    out = module_updates(*outputs)
    for c, v in rng_updates(*graph_roots(outputs, "state_updates")).items():
        out.setdefault(c, v)
    return out
