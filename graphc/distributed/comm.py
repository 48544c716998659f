"""The MPI communicator: mpi4py imported on first use, never by ``import graphc``."""
from __future__ import annotations

import numpy as np

from ..nn.errors import ConfigTypeError

_COMM = None


class MPIUnavailableError(ImportError):
    """mpi4py (or an MPI library under it) is not installed."""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise MPIUnavailableError(
            f"graphc.distributed needs mpi4py and an MPI library ({e}); install them with "
            f"`pip install graphc[mpi]` (mpi4py and the mpich wheel)") from e
    return MPI


def init(comm=None):
    """Start MPI (mpi4py initializes it at import) and return the
    communicator graphc uses: ``comm`` if given (an ``mpi4py.MPI.Comm``,
    e.g. a split of ``COMM_WORLD``), else the one set before, else
    ``MPI.COMM_WORLD``. Calling it again is harmless."""
    global _COMM
    if comm is not None:
        for attr in ("Allreduce", "Bcast", "Get_rank", "Get_size"):
            if not hasattr(comm, attr):
                raise ConfigTypeError(f"distributed.init: comm must be an mpi4py communicator, "
                                      f"got {type(comm).__name__} (no {attr})")
        _COMM = comm
    elif _COMM is None:
        _COMM = _mpi().COMM_WORLD
    return _COMM


def comm():
    """The communicator (:func:`init` if not called yet)."""
    return init()


def rank() -> int:
    """This process's index, 0 to ``size() - 1`` (0 when run without mpiexec)."""
    return int(init().Get_rank())


def size() -> int:
    """The number of processes (1 when run without mpiexec)."""
    return int(init().Get_size())


def allreduce_sum(buf: np.ndarray, c=None) -> np.ndarray:
    """Sum ``buf`` (a C-contiguous numpy array) over all processes, in
    place (``Allreduce(IN_PLACE, buf)``: no copy on the Python side), and
    return it."""
    c = c if c is not None else init()
    if not (isinstance(buf, np.ndarray) and buf.flags.c_contiguous and buf.flags.writeable):
        raise ConfigTypeError("allreduce_sum: buf must be a writeable C-contiguous numpy array")
    c.Allreduce(_mpi().IN_PLACE, buf)      # op defaults to SUM
    return buf
