"""Peers: thread settings for every library, lazy imports, result conversion.

All thread counts are set in one place, :class:`Threads`, before any timing:

* **numpy's BLAS** is already loaded when graphc is imported (graphc imports
  numpy), so ``OPENBLAS_NUM_THREADS`` set now would come too late. We use
  ``threadpoolctl`` when it is installed; otherwise we call the BLAS's own
  setter through ctypes (``openblas_set_num_threads`` with the symbol
  suffixes of numpy's wheels, or MKL's / BLIS's), found among the shared
  libraries the process has loaded (``/proc/self/maps``), and read the count
  back with the matching getter.
* **PyTorch**: ``torch.set_num_threads(n)`` right after its (lazy) import.
* **JAX** reads its flags once, when its CPU client is created: for ``n = 1``
  we add ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``
  to ``XLA_FLAGS``. Recent XLA sizes its thread pool from the CPU affinity
  mask and ignores that flag, so we also restrict the affinity of the
  importing thread to ``n`` CPUs while ``jax`` is imported and its CPU client
  is created, then give every thread of the process back its full mask. If
  ``jax`` was imported before the harness ran, its threads are left as they
  are (and a note says so).
* **graphc**: ``graphc.set_num_threads(n)`` (its kernels and GEMMs split
  across that many threads).
* ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` are set
  in the environment too, for libraries loaded later.

**Idle spinning.** After a call, a library's worker threads spin before they
sleep: OpenBLAS's for 2**28 cycles (~0.1 s), GNU OpenMP's (PyTorch's) for
300 000 rounds, Intel OpenMP's for 200 ms, graphc's for ~25 us. With several
threads, in one process, the spinning threads of the library timed just
before take cores from the one timed next (measured: graphc's 2-thread 1024² matmul ran at half speed right
after numpy's). :data:`SHORT_SPIN` caps every spin near graphc's own; the
libraries read it when they load, so the command-line entry points restart
the command with it set (:func:`reexec_with_short_spin`) unless it is
already in the environment. It does not slow a library's own back-to-back
calls (numpy's 1024² matmul and MLP step took the same time with and without).
"""
from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

SLOW_PEERS = ("torch.compile",)
# spin at most ~2**18 cycles (~0.1 ms) in OpenBLAS, 10**4 rounds in GNU OpenMP
# (PyTorch's wheels), 1 ms in Intel OpenMP, then sleep
SHORT_SPIN = {"OPENBLAS_THREAD_TIMEOUT": "18", "GOMP_SPINCOUNT": "10000", "KMP_BLOCKTIME": "1"}
KEEP_SPIN = "GRAPHC_BENCH_KEEP_SPIN"     # =1: run with the libraries' default spinning


def reexec_with_short_spin() -> None:
    """Restart this command (``sys.orig_argv``) with :data:`SHORT_SPIN` in its
    environment, if it is not there yet (and ``GRAPHC_BENCH_KEEP_SPIN`` is not
    1). Only for command-line entry points: it replaces the process."""
    if os.environ.get(KEEP_SPIN) == "1" or all(k in os.environ for k in SHORT_SPIN):
        return
    env = dict(os.environ)
    for k, v in SHORT_SPIN.items():
        env.setdefault(k, v)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def spin_note() -> str:
    set_ = {k: os.environ[k] for k in SHORT_SPIN if k in os.environ}
    if not set_:
        return ("libraries' defaults (idle threads spin up to ~0.1 s after a call: "
                "with several threads, figures are unfair to whoever runs next)")
    return ", ".join(f"{k}={v}" for k, v in set_.items()) + " (set before the libraries loaded)"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _loaded_libraries() -> list[str]:
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line and ".so" in line}
    except OSError:
        return []
    return sorted(paths)


# (library name fragment, setter symbols, getter symbols)
_BLAS_SETTERS = [
    ("openblas", ["scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                  "openblas_set_num_threads64_", "openblas_set_num_threads"],
     ["scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
      "openblas_get_num_threads64_", "openblas_get_num_threads"]),
    ("mkl_rt", ["MKL_Set_Num_Threads"], ["MKL_Get_Max_Threads"]),
    ("blis", ["bli_thread_set_num_threads"], ["bli_thread_get_num_threads"]),
]


def _set_blas_threads_ctypes(n: int) -> list[str]:
    done = []
    for path in _loaded_libraries():
        base = os.path.basename(path)
        for frag, setters, getters in _BLAS_SETTERS:
            if frag not in base:
                continue
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            setter = next((getattr(lib, s) for s in setters if hasattr(lib, s)), None)
            getter = next((getattr(lib, s) for s in getters if hasattr(lib, s)), None)
            if setter is None:
                continue
            setter.argtypes = [ctypes.c_int]
            setter.restype = None
            setter(n)
            got = "?"
            if getter is not None:
                getter.argtypes = []
                getter.restype = ctypes.c_int
                got = str(getter())
            done.append(f"{base} -> {got} thread(s)")
    return done


class Threads:
    """The thread count of every implementation, set in one place."""

    def __init__(self, n: int | None):
        self.n = n if n is not None else cpu_count()
        self.notes: dict[str, str] = {}

    def apply_global(self) -> None:
        """numpy's BLAS, graphc, and the environment for later libraries."""
        n = self.n
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(n)
        self.notes["numpy"] = self._numpy_blas(n)
        self.notes["idle spin"] = spin_note()
        from ..compiler import set_num_threads
        set_num_threads(n)
        self.notes["graphc"] = f"graphc.set_num_threads({n})"

    @staticmethod
    def _numpy_blas(n: int) -> str:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            threadpool_limits = None
        if threadpool_limits is not None:
            Threads._limits = threadpool_limits(limits=n, user_api="blas")  # kept alive
            from threadpoolctl import threadpool_info
            got = [f"{i.get('internal_api', '?')} -> {i.get('num_threads')} thread(s)"
                   for i in threadpool_info() if i.get("user_api") == "blas"]
            return f"threadpoolctl.threadpool_limits({n}, 'blas'): " + ("; ".join(got) or "no BLAS")
        done = _set_blas_threads_ctypes(n)
        if done:
            return "BLAS setter via ctypes: " + "; ".join(done)
        return (f"could not find numpy's BLAS thread setter (install threadpoolctl, or set "
                f"OPENBLAS_NUM_THREADS={n} before starting Python)")

    def jax_env_before_import(self):
        """Called just before ``import jax``: returns the affinity to restore."""
        n = self.n
        if "jax" in sys.modules:
            self.notes["jax"] = "jax was imported before the harness: its threads are not set"
            return None
        if n == 1:
            flags = os.environ.get("XLA_FLAGS", "")
            extra = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            if extra not in flags:
                os.environ["XLA_FLAGS"] = (flags + " " + extra).strip()
        old = None
        if hasattr(os, "sched_setaffinity") and n < cpu_count():
            old = os.sched_getaffinity(0)
            os.sched_setaffinity(0, set(sorted(old)[:n]))
        return old

    def jax_after_import(self, old_affinity, imported: bool) -> None:
        n = self.n
        if "jax" in self.notes:
            return
        if old_affinity is not None:
            tids = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]
            for tid in tids:
                try:
                    os.sched_setaffinity(int(tid), old_affinity)
                except OSError:
                    pass
            if imported:
                self.notes["jax"] = (f"CPU client created with an affinity of {n} CPU(s) "
                                     f"(XLA sizes its pool from it)" +
                                     (" and XLA_FLAGS single-thread flags" if n == 1 else ""))
        elif imported:
            self.notes["jax"] = "default (all CPUs)"

    def torch_after_import(self, torch) -> None:
        try:
            torch.set_num_threads(self.n)
            self.notes["torch"] = f"torch.set_num_threads({self.n}) -> {torch.get_num_threads()}"
        except RuntimeError as e:      # pragma: no cover - depends on torch state
            self.notes["torch"] = f"torch.set_num_threads failed: {e}"


class Peers:
    """Lazy, failure-tolerant imports of the optional peers."""

    def __init__(self, threads: Threads):
        self.threads = threads
        self._mods: dict = {}
        self.missing: dict[str, str] = {}

    def jax(self):
        if "jax" not in self._mods:
            old = self.threads.jax_env_before_import()
            try:
                import jax
                jax.devices("cpu")          # create the CPU client (and its thread pool) now
                self._mods["jax"] = jax
            except Exception as e:
                self._mods["jax"] = None
                self.missing["jax"] = _reason(e)
            finally:
                self.threads.jax_after_import(old, self._mods.get("jax") is not None)
        return self._mods["jax"]

    def torch(self):
        if "torch" not in self._mods:
            try:
                import torch
                self.threads.torch_after_import(torch)
                self._mods["torch"] = torch
            except Exception as e:
                self._mods["torch"] = None
                self.missing["torch"] = _reason(e)
        return self._mods["torch"]

    def versions(self) -> dict:
        out = {}
        for name, m in self._mods.items():
            if m is not None:
                out[name] = getattr(m, "__version__", "?")
        return out


def _reason(e: BaseException) -> str:
    if isinstance(e, ImportError):
        return "not installed"
    return f"{type(e).__name__}: {e}".splitlines()[0][:200]


def to_numpy_list(result) -> list[np.ndarray]:
    """Flatten a peer's result (array, tensor, scalar, nested tuples/lists)
    into a list of float64 numpy arrays."""
    out: list[np.ndarray] = []

    def walk(r):
        if isinstance(r, (tuple, list)):
            for x in r:
                walk(x)
            return
        if hasattr(r, "detach"):            # torch tensor
            r = r.detach().cpu().numpy()
        out.append(np.asarray(r, dtype=np.float64))

    walk(result)
    return out
