"""``Module``: the base of layers. A module owns parameters (graph
parameter nodes holding numpy values) and sub-modules, found by attribute
assignment; calling it builds graph nodes (``forward``). Parameters with
``trainable=False`` (a dropout step counter, running statistics) are
*buffers*: saved with the state, never given to an optimizer.
"""
from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from ..ir.node import Node
from .errors import ConfigError, ConfigTypeError, LazyParameterError


def _is_param(v) -> bool:
    return isinstance(v, Node) and v.op == "parameter"


class Module:
    """Base class of layers: subclass it, assign parameters
    (``gc.parameter``) and sub-modules as attributes in ``__init__``, and
    build the output in ``forward``."""

    training: bool = True

    def __init__(self):
        self.__dict__.setdefault("_params", OrderedDict())
        self.__dict__.setdefault("_modules", OrderedDict())
        self.__dict__.setdefault("training", True)

    # -- registration ------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        params = self.__dict__.setdefault("_params", OrderedDict())
        modules = self.__dict__.setdefault("_modules", OrderedDict())
        params.pop(name, None)
        modules.pop(name, None)
        if _is_param(value):
            params[name] = value
        elif isinstance(value, Module):
            modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self.__dict__.get("_params", {}).pop(name, None)
        self.__dict__.get("_modules", {}).pop(name, None)
        object.__delattr__(self, name)

    def register_module(self, name: str, module: Module) -> None:
        """Add a sub-module under ``name`` (for names that are not identifiers)."""
        if not isinstance(module, Module):
            raise ConfigTypeError(f"register_module: {name!r} is a {type(module).__name__}, "
                                  "not a Module")
        self.__dict__.setdefault("_modules", OrderedDict())[str(name)] = module

    # -- traversal ---------------------------------------------------------------
    def named_children(self):
        return list(self.__dict__.get("_modules", {}).items())

    def children(self) -> list[Module]:
        return [m for _, m in self.named_children()]

    def named_modules(self, prefix: str = "") -> list[tuple[str, Module]]:
        """This module and every sub-module, with dotted names (each once)."""
        out, seen = [], set()

        def walk(m, pre):
            if id(m) in seen:
                return
            seen.add(id(m))
            out.append((pre, m))
            for name, c in m.named_children():
                walk(c, f"{pre}.{name}" if pre else name)
        walk(self, prefix)
        return out

    def modules(self) -> list[Module]:
        return [m for _, m in self.named_modules()]

    def named_parameters(self, trainable: bool | None = True) -> list[tuple[str, Node]]:
        """``(dotted name, parameter)`` pairs, each parameter once.
        ``trainable``: True (the default: what an optimizer updates), False
        (the buffers) or None (all)."""
        out, seen = [], set()
        for pre, m in self.named_modules():
            why = m._uninitialized()
            if why is not None:
                raise LazyParameterError(f"{pre or type(self).__name__}: {why}")
            for name, p in m.__dict__.get("_params", {}).items():
                if p.id in seen or (trainable is not None and p.trainable != trainable):
                    continue
                seen.add(p.id)
                out.append((f"{pre}.{name}" if pre else name, p))
        return out

    def parameters(self) -> list[Node]:
        """The trainable parameters (give these to an optimizer)."""
        return [p for _, p in self.named_parameters(True)]

    def buffers(self) -> list[Node]:
        """The non-trainable parameters (state saved with the module)."""
        return [p for _, p in self.named_parameters(False)]

    # -- lazy layers ---------------------------------------------------------------
    # A layer that creates its parameters at its first call (``Dense(out)``)
    # overrides these three; every other module has its parameters from __init__.
    def _uninitialized(self) -> str | None:
        """Why this module's parameters do not exist yet, or None if they do."""
        return None

    def _materialize_from(self, prefix: str, state) -> bool:
        """Create the parameters from the shapes in ``state`` (names under
        ``prefix``); False if ``state`` does not tell them."""
        return False

    def _forget_parameters(self) -> None:
        """Undo ``_materialize_from`` (a load that failed)."""

    # -- state -------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """Dotted name -> a copy of the value, for every parameter and buffer."""
        return OrderedDict((k, np.array(p.value, copy=True))
                           for k, p in self.named_parameters(None))

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Assign values by name. With ``strict``, the names must match
        exactly; shapes must always match; values are cast to each
        parameter's dtype (same kind only). Lazy layers not yet called
        (``Dense(out)``) create their parameters from the saved shapes (and
        forget them again if the load fails)."""
        if not hasattr(state, "keys"):
            raise ConfigTypeError(f"load_state_dict: expected a mapping of names to arrays, "
                                  f"got {type(state).__name__}")
        made = []
        try:
            for pre, m in self.named_modules():
                if m._uninitialized() is None:
                    continue
                if not m._materialize_from(f"{pre}." if pre else "", state):
                    raise ConfigError(f"load_state_dict: lazy layer {pre or type(m).__name__!r} "
                                      f"({m!r}) is not called yet, and the state has no weight "
                                      f"that fits it to create its parameters from")
                made.append(m)
            self._load_checked(state, strict)
        except Exception:
            for m in made:
                m._forget_parameters()
            raise

    def _load_checked(self, state, strict: bool) -> None:
        own = OrderedDict(self.named_parameters(None))
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state.keys() if k not in own]
        if strict and (missing or unexpected):
            raise ConfigError(f"load_state_dict ({type(self).__name__}): missing keys {missing}, "
                              f"unexpected keys {unexpected}")
        new = {}
        for k, p in own.items():
            if k not in state:
                continue
            a = np.asarray(state[k])
            if a.shape != p.shape:
                raise ConfigError(f"load_state_dict: {k!r} has shape {a.shape}, the parameter "
                                  f"has shape {p.shape}")
            if a.dtype != p.dtype and not np.can_cast(a.dtype, p.dtype, casting="same_kind"):
                raise ConfigError(f"load_state_dict: {k!r} has dtype {a.dtype}, the parameter "
                                  f"has dtype {p.dtype}")
            new[k] = a
        for k, a in new.items():       # all checked first: no half-loaded module
            own[k].value = a

    # -- mode ----------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active, batch norm on batch statistics and
        recording its running-statistics updates) for this module and its children.
        The mode is read when a graph is built: build the training step in
        train mode and the evaluation graph in eval mode."""
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    # -- calling -------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        kids = self.named_children()
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not kids:
            return head + ")"
        lines = [head]
        for name, m in kids:
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + "\n)"


class Sequential(Module):
    """Layers applied in order. Items may be modules or plain functions of
    one node (e.g. ``gc.relu``)."""

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        self.__dict__["layers"] = []
        for layer in layers:
            self.append(layer)

    def append(self, layer) -> Sequential:
        if not callable(layer):
            raise ConfigTypeError(f"Sequential: {layer!r} is not callable")
        k = len(self.layers)
        self.layers.append(layer)
        if isinstance(layer, Module):
            self.register_module(str(k), layer)
        return self

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return Sequential(*self.layers[k])
        return self.layers[k]

    def __iter__(self):
        return iter(self.layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def __repr__(self) -> str:
        lines = ["Sequential("]
        for k, layer in enumerate(self.layers):
            r = repr(layer) if isinstance(layer, Module) else getattr(layer, "__name__", repr(layer))
            lines.append(f"  ({k}): " + r.replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"


def _npz_path(path, reading: bool) -> str:
    path = os.fspath(path)
    if reading and not os.path.exists(path) and os.path.exists(path + ".npz"):
        return path + ".npz"
    if not reading and not path.endswith(".npz"):
        return path + ".npz"          # what numpy.savez would write
    return path


def save(module: Module, path) -> str:
    """Write ``module.state_dict()`` to an ``.npz`` file (``.npz`` is
    appended to ``path`` if missing); returns the path written."""
    if not isinstance(module, Module):
        raise ConfigTypeError(f"save: expected a Module, got {type(module).__name__}")
    path = _npz_path(path, reading=False)
    np.savez(path, **module.state_dict())
    return path


def load(module: Module, path, strict: bool = True) -> Module:
    """Load an ``.npz`` written by :func:`save` into ``module`` (names and
    shapes must match, see :meth:`Module.load_state_dict`); returns it."""
    if not isinstance(module, Module):
        raise ConfigTypeError(f"load: expected a Module, got {type(module).__name__}")
    with np.load(_npz_path(path, reading=True), allow_pickle=False) as f:
        state = {k: f[k] for k in f.files}
    module.load_state_dict(state, strict=strict)
    return module
