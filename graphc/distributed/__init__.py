"""``graphc.distributed``: data-parallel training across processes on MPI
(mpi4py; ``pip install graphc[mpi]`` brings mpi4py and the MPICH wheel).

Launch with ``mpiexec -n N python train.py``. :func:`init` starts MPI (it is
called by the others when needed); :func:`rank` and :func:`size` are this
process's index and the number of processes; :func:`data_parallel` builds a
training step whose gradients are averaged over all processes by one
in-place allreduce per step (docs/distributed.md). Importing graphc does not
import mpi4py: only these functions do.
"""
from __future__ import annotations

from .comm import MPIUnavailableError, allreduce_sum, comm, init, rank, size
from .step import DataParallelStep, data_parallel

__all__ = ["init", "rank", "size", "comm", "allreduce_sum", "data_parallel", "DataParallelStep",
           "MPIUnavailableError"]
