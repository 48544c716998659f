"""graphc's locks across ``os.fork()``.

A child process has only the thread that forked. A lock held by any other
thread at the fork stays held forever in the child, and if that thread was
inside LLVM (optimizing, emitting, loading object code) LLVM's own state is
half-updated. So every graphc lock is made here (:func:`lock`), and at-fork
handlers

- before the fork, acquire every lock (in one fixed order, the order code
  nests them: the runtime library's, then the compile cache's, then the
  LLVM worker client's (backend/llvm/parallel.py), then the JIT's,
  then the GEMM runner's, then the host-CPU facts' (backend/llvm/host.py), and
  last llvmlite's own lock, which it holds
  around every call into LLVM, even those made outside graphc's locks, such
  as freeing a module or an engine), so the fork waits for any graphc
  critical section and any call into LLVM to finish;
- in the parent, release them;
- in the child, replace each by a new, free lock.

The LLVM worker process (backend/llvm/parallel.py) is the parent's: a child
forgets it (its own at-fork handler) and starts its own when it needs one.

Per-thread state needs no handler: a ``threading.local`` (the arenas of
compiled functions, the GEMM workspaces, the host-callback frames) keeps in
the child only the forking thread's values, and the native thread pool
notices the new process id and starts new workers.
"""
from __future__ import annotations

import os
import threading

# (rank, namespace, name): the lock is namespace[name] (a module's globals, or
# an object's __dict__); acquired in rank order, released in reverse
_LOCKS: list = []


def lock(module_globals: dict, name: str, rank: int):
    """Create the lock ``module_globals[name]`` (an RLock) and keep it fork-safe.
    Code must read it from the module's globals at each use (``with _lock:``),
    never keep its own reference: the child gets a new object."""
    module_globals[name] = threading.RLock()
    _LOCKS.append((rank, module_globals, name))
    _LOCKS.sort(key=lambda t: t[0])
    return module_globals[name]


def _llvmlite_lock() -> None:
    """llvmlite serializes calls into LLVM with an RLock of its own
    (``llvmlite.binding.ffi.lib._lock._lock``, read at each call) and has no
    at-fork handlers; register it like graphc's locks (skipped if a
    llvmlite version keeps it elsewhere)."""
    try:
        from llvmlite.binding import ffi
        holder = ffi.lib._lock
        if hasattr(holder._lock, "acquire"):
            _LOCKS.append((100, vars(holder), "_lock"))
            _LOCKS.sort(key=lambda t: t[0])
    except (ImportError, AttributeError, TypeError):
        pass


def _before() -> None:
    for _, g, name in _LOCKS:
        g[name].acquire()


def _after_in_parent() -> None:
    for _, g, name in reversed(_LOCKS):
        g[name].release()


def _after_in_child() -> None:
    for _, g, name in _LOCKS:
        g[name] = threading.RLock()


if hasattr(os, "register_at_fork"):
    _llvmlite_lock()
    os.register_at_fork(before=_before, after_in_parent=_after_in_parent,
                        after_in_child=_after_in_child)
