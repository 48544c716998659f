"""Plugins: packages that add ops and passes to graphc when it is imported.

A package declares an entry point in the group ``graphc.plugins``::

    # pyproject.toml of the plugin package
    [project.entry-points."graphc.plugins"]
    myops = "mypkg.graphc_plugin"            # a module: importing it registers
    # or   = "mypkg.graphc_plugin:setup"     # a function, called with no arguments

``import graphc`` loads every installed plugin once (set the environment
variable ``GRAPHC_PLUGINS=0`` to skip them). A plugin that fails — cannot be
imported, raises while registering — is reported with a
:class:`PluginWarning` naming it and the error; whatever it had registered
before failing is removed again, and graphc works as without it.
``graphc.plugins.load()`` loads plugins installed since (each entry point is
loaded once); ``graphc.plugins.loaded()`` tells what each one added.
"""
from __future__ import annotations

import os
import types
import warnings
from dataclasses import dataclass, field
from importlib import metadata

GROUP = "graphc.plugins"


class PluginWarning(UserWarning):
    """A graphc plugin could not be loaded."""


@dataclass
class Plugin:
    """One entry point of the group ``graphc.plugins`` and what loading it did."""
    name: str
    value: str
    dist: str | None
    ok: bool = False
    error: str | None = None
    ops: list = field(default_factory=list)       # op names it registered
    passes: list = field(default_factory=list)    # pass names it registered

    def __str__(self):
        state = "loaded" if self.ok else f"FAILED ({self.error})"
        adds = ", ".join([f"op {o}" for o in self.ops] + [f"pass {p}" for p in self.passes])
        return f"{self.name} = {self.value} [{self.dist or '?'}]: {state}" + \
            (f"; adds {adds}" if adds else "")


_loaded: dict[tuple, Plugin] = {}


def _entry_points():
    return list(metadata.entry_points(group=GROUP))


def _snapshot():
    from .extend.register import USER_OPS
    from .ops import registry
    from .passes.manager import DEFAULT_ORDER, PASSES
    return (dict(registry.OPS), dict(USER_OPS), dict(PASSES), list(DEFAULT_ORDER))


def _restore(snap) -> None:
    from .extend.register import USER_OPS
    from .ops import registry
    from .passes.manager import DEFAULT_ORDER, PASSES
    for target, saved in zip((registry.OPS, USER_OPS, PASSES), snap[:3]):
        target.clear()
        target.update(saved)
    DEFAULT_ORDER[:] = snap[3]


def load(entry_points=None) -> list[Plugin]:
    """Load every ``graphc.plugins`` entry point not loaded yet; return the
    new :class:`Plugin` records. Never raises for a broken plugin: it warns."""
    if entry_points is None:
        try:
            entry_points = _entry_points()
        except Exception as e:          # a broken installation's metadata
            warnings.warn(f"graphc: could not list plugins ({type(e).__name__}: {e})",
                          PluginWarning, stacklevel=2)
            return []
    new = []
    for ep in entry_points:
        dist = getattr(getattr(ep, "dist", None), "name", None)
        key = (ep.name, ep.value, dist)
        if key in _loaded:
            continue
        p = Plugin(ep.name, ep.value, dist)
        _loaded[key] = p
        new.append(p)
        snap = _snapshot()
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, (types.ModuleType, type)):
                obj()
            p.ok = True
        except Exception as e:
            _restore(snap)
            p.error = f"{type(e).__name__}: {e}"
            warnings.warn(f"graphc: plugin {ep.name!r} ({ep.value}"
                          f"{', from ' + dist if dist else ''}) failed to load and was skipped: "
                          f"{p.error}", PluginWarning, stacklevel=2)
            continue
        after = _snapshot()
        p.ops = sorted(set(after[0]) - set(snap[0]))
        p.passes = sorted(set(after[2]) - set(snap[2]))
    return new


def loaded() -> list[Plugin]:
    """Every plugin seen so far (loaded or failed)."""
    return list(_loaded.values())


def autoload() -> None:
    """Called by ``import graphc``: load the plugins unless ``GRAPHC_PLUGINS=0``."""
    if os.environ.get("GRAPHC_PLUGINS", "1").strip().lower() in ("0", "no", "false", "off"):
        return
    load()


__all__ = ["GROUP", "Plugin", "PluginWarning", "load", "loaded", "autoload"]
