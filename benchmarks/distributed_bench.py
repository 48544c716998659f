"""Data-parallel training on MPI: allreduce bandwidth and time per epoch.

Run it under mpiexec with 1 and 2 (or more) ranks; rank 0 prints::

    mpiexec -n 1 python benchmarks/distributed_bench.py
    mpiexec -n 2 python benchmarks/distributed_bench.py

1. ``Allreduce(IN_PLACE)`` of float32 buffers from 4 KB to 16 MB: the median
   time of ``--reps`` calls (after a warm-up), the algorithm bandwidth (buffer
   bytes / time) and the bus bandwidth (``algbw * 2(N-1)/N``, the bytes each
   rank sends per second in a ring allreduce; NCCL-tests' convention).
2. An epoch of ``gc.nn.fit`` on the 8x8 digits (1792 examples, an MLP
   64-512-512-10, 300k parameters, Adam) with a fixed global batch of
   ``--batch`` (each rank takes ``batch / N``): the median epoch time of
   ``--epochs`` epochs after one warm-up epoch, and the share of it spent in
   the allreduce (``step.times``; a barrier before it splits off the time a
   rank waits for the slowest one, reported apart). Each rank's kernels use ``cores // N``
   threads (``--threads`` overrides).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import graphc as gc
from graphc.datasets import load_digits


def allreduce_table(comm, reps: int) -> list:
    from mpi4py import MPI
    rows = []
    for kb in (4, 64, 1024, 4096, 16384):
        buf = np.ones(kb * 256, np.float32)
        comm.Barrier()
        comm.Allreduce(MPI.IN_PLACE, buf)
        ts = []
        for _ in range(reps):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf)
            ts.append(time.perf_counter() - t0)
        t = float(np.median(comm.allgather(float(np.median(ts)))))
        n = comm.Get_size()
        alg = buf.nbytes / t / 1e9
        rows.append((kb, t * 1e6, alg, alg * 2 * (n - 1) / n if n > 1 else float("nan")))
    return rows


def epoch_times(args, comm):
    n = comm.Get_size()
    if args.batch % n:
        raise SystemExit(f"--batch {args.batch} must be a multiple of the {n} ranks")
    per_rank = args.batch // n
    threads = args.threads or max(1, (os.cpu_count() or 1) // n)
    gc.set_num_threads(threads)
    images, labels = load_digits()
    X = (images.reshape(len(images), -1) / 16.0).astype(np.float32)[:1792]
    y = labels[:1792]
    gc.nn.manual_seed(0)
    model = gc.nn.Sequential(gc.nn.Dense(64, 512, activation="relu"),
                             gc.nn.Dense(512, 512, activation="relu"), gc.nn.Dense(512, 10))
    x = gc.placeholder((per_rank, 64), "float32", name="x")
    t = gc.placeholder((per_rank,), "int64", name="y")
    loss = gc.nn.cross_entropy(model(x), t)
    step = gc.distributed.data_parallel(loss, gc.optim.Adam(1e-3), model)
    step.measure_wait = True         # waiting for the other rank is not the allreduce's cost
    nparams = sum(p.value.size for p in model.parameters())
    gc.nn.fit(step, {"x": X, "y": y}, epochs=1, drop_last=True, progress=False)    # warm-up
    times, shares, waits, parts = [], [], [], []
    for e in range(args.epochs):
        step.reset_times()
        comm.Barrier()
        t0 = time.perf_counter()
        gc.nn.fit(step, {"x": X, "y": y}, epochs=1, seed=e, drop_last=True, progress=False)
        times.append(time.perf_counter() - t0)
        shares.append(step.times["allreduce"] / times[-1])
        waits.append(step.times["wait"] / times[-1])
        parts.append([step.times[k] / step.times["steps"] for k in
                      ("compute", "wait", "allreduce", "update")])
    steps = step.times["steps"]
    return (per_rank, threads, nparams, step.buffer.nbytes, steps,
            float(np.median(times)), float(np.median(shares)), float(np.median(waits)),
            np.median(parts, axis=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=50, help="allreduce calls per size")
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs")
    ap.add_argument("--batch", type=int, default=64, help="global batch (all ranks)")
    ap.add_argument("--threads", type=int, default=0, help="kernel threads per rank")
    args = ap.parse_args()
    comm = gc.distributed.init()
    n, me = comm.Get_size(), comm.Get_rank()
    rows = allreduce_table(comm, args.reps)
    per_rank, threads, nparams, nbytes, steps, epoch, share, wait, parts = epoch_times(args, comm)
    if me:
        return
    print(f"ranks {n}, {os.cpu_count()} cores; medians")
    print("allreduce (float32, in place)")
    print(f"{'size KB':>8} {'time us':>10} {'algbw GB/s':>11} {'busbw GB/s':>11}")
    for kb, us, alg, bus in rows:
        print(f"{kb:8d} {us:10.1f} {alg:11.3f} {bus:11.3f}")
    print(f"training: MLP 64-512-512-10 ({nparams} parameters, gradient buffer "
          f"{nbytes / 1e6:.2f} MB), global batch {args.batch} = {n} x {per_rank}, "
          f"{threads} thread(s) per rank, {steps} steps per epoch")
    print(f"epoch {epoch * 1e3:.1f} ms, {epoch / steps * 1e3:.3f} ms per step, "
          f"allreduce {share:.1%} of the epoch, waiting for the other rank(s) {wait:.1%}")
    print("per step (ms): " + ", ".join(f"{k} {v * 1e3:.3f}" for k, v in
                                        zip(("compute", "wait", "allreduce", "update"), parts)))


if __name__ == "__main__":
    main()
