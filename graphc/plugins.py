"""Plugins: packages that add ops and passes to graphc when it is imported.

A package declares an entry point in the group ``graphc.plugins``::

    # pyproject.toml of the plugin package
    [project.entry-points."graphc.plugins"]
    myops = "mypkg.graphc_plugin"            # a module: importing it registers
    # or   = "mypkg.graphc_plugin:setup"     # a function, called with no arguments

``import graphc`` loads every installed plugin once (set the environment
variable ``GRAPHC_PLUGINS=0`` to skip them). A plugin that fails — cannot be
imported, raises while registering, even calls ``sys.exit()`` — is reported
with a :class:`PluginWarning` naming it and the error; every global setting
it changed before failing (:data:`SETTINGS`: ops, passes, rewrite rules, the
thread setting, hooks) is put back, and graphc works as without it. Only
KeyboardInterrupt goes through (after the roll-back).
``graphc.plugins.load()`` loads plugins installed since (each entry point is
loaded once); ``graphc.plugins.loaded()`` tells what each one added.
"""
from __future__ import annotations

import copy
import importlib
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


# Every global setting a plugin can change, as (module, attribute) naming a
# dict or list: its contents are saved before each plugin loads and put back
# if the plugin fails (ops, passes and the default order, simplification
# rules, the thread setting, compile hooks, exporters, runtime-library components).
SETTINGS = (
    ("graphc.ops.registry", "OPS"),
    ("graphc.extend.register", "USER_OPS"),
    ("graphc.passes.manager", "PASSES"),
    ("graphc.passes.manager", "DEFAULT_ORDER"),
    ("graphc.passes.simplify", "RULES"),
    ("graphc.compiler", "_num_threads"),
    ("graphc.compiler", "_hooks"),
    ("graphc.compiler", "EXPORTERS"),
    ("graphc.backend.llvm.rtlib", "COMPONENTS"),
)
_OPS, _PASSES = SETTINGS[0], SETTINGS[2]


def _setting(module: str, attr: str):
    return getattr(importlib.import_module(module), attr)


def _snapshot() -> dict:
    return {(m, a): copy.copy(_setting(m, a)) for m, a in SETTINGS}


def _restore(snap: dict) -> None:
    from .extend.register import _RETIRED
    from .ops import registry
    kept = {id(d) for d in snap[_OPS].values()}
    # an OpDef the plugin made is retired, never freed (the memory cache keys user ops by id)
    _RETIRED.extend(d for d in registry.OPS.values() if id(d) not in kept)
    for (m, a), saved in snap.items():
        target = _setting(m, a)
        if isinstance(target, dict):
            target.clear()
            target.update(saved)
        else:
            target[:] = saved


def _describe(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"SystemExit: the plugin called sys.exit({e.code!r})"
    return f"{type(e).__name__}: {e}"


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
        except KeyboardInterrupt:
            _restore(snap)
            p.error = "KeyboardInterrupt"
            raise
        except BaseException as e:      # SystemExit too: a plugin never ends `import graphc`
            _restore(snap)
            p.error = _describe(e)
            warnings.warn(f"graphc: plugin {ep.name!r} ({ep.value}"
                          f"{', from ' + dist if dist else ''}) failed to load and was skipped: "
                          f"{p.error}", PluginWarning, stacklevel=2)
            continue
        after = _snapshot()
        p.ops = sorted(set(after[_OPS]) - set(snap[_OPS]))
        p.passes = sorted(set(after[_PASSES]) - set(snap[_PASSES]))
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
