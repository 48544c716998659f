"""graphc.distributed: N processes with batches of B train as one with
batches of N*B (the oracle: the ordinary compiled step run by ``fit`` in
this process), run under ``mpiexec -n 2``; and fit's sharding by rank."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

HERE = Path(__file__).parent
# the mpiexec installed with this Python's packages (the mpich wheel's) first: it matches the
# MPI that mpi4py loads; another MPI's mpiexec on PATH would not start mpi4py's processes
MPIEXEC = (shutil.which("mpiexec", path=sysconfig.get_path("scripts"))
           or shutil.which("mpiexec"))
need_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="MPI test skipped: needs mpi4py and mpiexec (pip install -e '.[mpi]' installs mpi4py "
           "and the mpich wheel, which provides mpiexec)")


def _run_ranks(n: int, out: Path, per_rank: int, backend: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    r = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, str(HERE / "mpi_worker.py"),
                        str(out), str(per_rank), backend],
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"mpiexec failed:\n{r.stdout}\n{r.stderr}"
    with np.load(out) as d:
        return {k: d[k] for k in d.files}


def _reference(batch: int):
    sys.path.insert(0, str(HERE))
    import mpi_worker
    X, y = mpi_worker.data()
    model, loss, acc, opt = mpi_worker.build(batch)
    step = gc.compile([loss, acc], updates=opt.updates(loss, model))
    history = gc.nn.fit(step, {"x": X, "y": y}, epochs=3, seed=3, drop_last=True,
                        outputs=("loss", "accuracy"), progress=False)
    return history, [p.value for p in model.parameters()]


@need_mpi
@pytest.mark.parametrize("backend", ["llvm", "interp"])
def test_two_ranks_train_as_one_process_with_twice_the_batch(tmp_path, backend):
    got = _run_ranks(2, tmp_path / "run.npz", 16, backend)
    history, params = _reference(32)
    assert int(got["size"]) == 2 and bool(got["same"]), "ranks ended with different weights"
    assert bool(got["in_buffer"]), "a gradient slot no longer points into the flat buffer"
    assert int(got["steps"]) == len(history.losses) == 3 * (200 // 32)
    np.testing.assert_allclose(got["losses"], history.losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["loss"], history["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["accuracy"], history["accuracy"], atol=1e-12)
    for i, p in enumerate(params):
        np.testing.assert_allclose(got[f"arr_{i}"], p, rtol=1e-5, atol=1e-6)


@need_mpi
def test_running_statistics_are_averaged_and_ranks_stay_identical(tmp_path):
    got = _run_ranks(2, tmp_path / "bn.npz", 16, "bn")
    assert bool(got["same"]), "ranks ended with different weights, buffers or optimizer state"
    sys.path.insert(0, str(HERE))
    import mpi_worker
    X, y = mpi_worker.data()
    model, loss, opt = mpi_worker.build_bn(32)
    gc.compile(loss, updates=opt.updates(loss, model))(x=X[:32], y=y[:32])
    ref = model.state_dict()
    # after one step, the average of the ranks' running means is the big batch's
    np.testing.assert_allclose(got["1.running_mean"], ref["1.running_mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got["3.counter"], ref["3.counter"])


@need_mpi
def test_docs_train_script_runs_on_two_ranks(tmp_path):
    text = (HERE.parent / "docs" / "distributed.md").read_text()
    m = re.search(r"```python train\.py\n(.*?)```", text, re.S)
    assert m, "docs/distributed.md has no ```python train.py block"
    (tmp_path / "train.py").write_text(m.group(1))
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "train.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"mpiexec failed:\n{r.stdout}\n{r.stderr}"
    assert r.stdout.count("epoch ") == 5, r.stdout         # rank 0 prints, rank 1 does not
    assert "2 rank(s): 110 steps of 2 x 32 examples" in r.stdout


class _ShardStep:
    """A stand-in step that records its batches: what fit gives each rank."""

    def __init__(self, shard, shards, batch):
        self.x = gc.placeholder((batch, 1), "float32", name="x")
        self.graph = gc.Graph([self.x])
        self.data_shard = (shard, shards)
        self.seen = []

    def __call__(self, x):
        self.seen.append(x[:, 0].copy())
        return np.float32(x.mean())


@pytest.mark.parametrize("shards,batch,n", [(2, 4, 40), (3, 2, 23)])
def test_fit_shards_every_batch_by_rank(shards, batch, n):
    X = np.arange(n, dtype=np.float32)[:, None]
    one = _ShardStep(0, 1, shards * batch)
    gc.nn.fit(one, (X,), epochs=2, seed=5, drop_last=True, progress=False)
    ranks = [_ShardStep(r, shards, batch) for r in range(shards)]
    for s in ranks:
        h = gc.nn.fit(s, (X,), epochs=2, seed=5, drop_last=True, progress=False)
        assert h.dropped == n % (shards * batch)
    assert len(ranks[0].seen) == len(one.seen) == 2 * (n // (shards * batch))
    for k, big in enumerate(one.seen):      # the ranks' batches, in rank order, are the big one
        np.testing.assert_array_equal(np.concatenate([s.seen[k] for s in ranks]), big)
    per_epoch = len(one.seen) // 2
    epoch0 = np.concatenate([b for s in ranks for b in s.seen[:per_epoch]])
    assert len(set(epoch0.tolist())) == len(epoch0)       # no example twice in an epoch


def test_import_graphc_does_not_import_mpi4py():
    code = "import sys, graphc; assert 'mpi4py' not in sys.modules; print(graphc.distributed.init)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(HERE.parent)))
    assert r.returncode == 0, r.stderr


class _FakeComm:
    """Enough of a communicator for the checks made before any MPI call."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def Allreduce(self, *a):
        raise AssertionError("not reached")

    Bcast = Allreduce


def test_data_parallel_rejects_what_it_cannot_train():
    w = gc.parameter(np.ones((3, 2), np.float32), name="w")
    v = gc.parameter(np.ones((2,), np.float64), name="v")
    x = gc.placeholder((4, 3), "float32", name="x")
    loss = gc.mean((x @ w) ** 2)
    with pytest.raises(gc.nn.ConfigTypeError, match="optimizer must be a gc.optim optimizer"):
        gc.distributed.data_parallel(loss, "adam", [w], comm=_FakeComm())
    with pytest.raises(gc.nn.ConfigTypeError, match="output 1 must be a 0-d graph node"):
        gc.distributed.data_parallel(loss, gc.optim.SGD(0.1), [w], outputs=[x @ w],
                                     comm=_FakeComm())
    mixed = loss + gc.cast(gc.sum(v), "float32")
    with pytest.raises(gc.nn.ConfigError, match="several dtypes"):
        gc.distributed.data_parallel(mixed, gc.optim.SGD(0.1), [w, v], comm=_FakeComm())
    with pytest.raises(gc.nn.ConfigTypeError, match="mpi4py communicator"):
        gc.distributed.init(comm=object())


def test_missing_mpi4py_is_a_clear_error():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import graphc as gc\n"
            "try:\n    gc.distributed.rank()\n"
            "except gc.distributed.MPIUnavailableError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(HERE.parent)))
    assert r.returncode == 0, r.stderr
    assert "pip install graphc[mpi]" in r.stdout
