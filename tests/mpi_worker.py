"""Run by tests/test_distributed.py under ``mpiexec -n N``: data-parallel
training with per-rank batches of B; rank 0 saves what it trained to an npz.
``build(batch)`` is also the single-process reference the test compares to."""
from __future__ import annotations

import sys

import numpy as np

import graphc as gc


def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] + X[:, 2] > 0).astype(np.int64)
    return X, y


def build(batch: int):
    """The model, its loss and accuracy on placeholders of ``batch``, and the optimizer."""
    model = gc.nn.Sequential(gc.nn.Dense(6, 16, activation="tanh", seed=0), gc.nn.Dense(16, 2, seed=1))
    x = gc.placeholder((batch, 6), "float32", name="x")
    y = gc.placeholder((batch,), "int64", name="y")
    logits = model(x)
    loss = gc.nn.cross_entropy(logits, y)
    opt = gc.optim.Adam(5e-2, clip_norm=1.0)      # clipping must see the averaged gradient
    return model, loss, gc.nn.accuracy(logits, y), opt


def main(out: str, per_rank: int, backend: str = "llvm") -> None:
    X, y = data()
    model, loss, acc, opt = build(per_rank)
    if gc.distributed.rank() != 0:      # rank 0's initial weights must reach every rank
        for p in model.parameters():
            p.value = np.full(p.shape, 7.0, np.float32)
    step = gc.distributed.data_parallel(loss, opt, model, outputs=[acc], backend=backend)
    history = gc.nn.fit(step, {"x": X, "y": y}, epochs=3, seed=3, drop_last=True,
                        outputs=("loss", "accuracy"), progress=False)
    params = [p.value for p in model.parameters()]
    in_buffer = all(np.shares_memory(s._value, step.buffer) for s in step._slots)
    same = gc.distributed.comm().allgather([a.tobytes() for a in params])
    if gc.distributed.rank() == 0:
        np.savez(out, *params, losses=np.array(history.losses), loss=np.array(history["loss"]),
                 accuracy=np.array(history["accuracy"]), size=gc.distributed.size(),
                 same=all(s == same[0] for s in same), steps=step.times["steps"], in_buffer=in_buffer)


def build_bn(batch: int):
    """A model with batch normalization and dropout: state besides the weights."""
    model = gc.nn.Sequential(gc.nn.Dense(6, 8, seed=0), gc.nn.BatchNorm1d(8), gc.nn.relu,
                             gc.nn.Dropout(0.25, seed=2), gc.nn.Dense(8, 2, seed=1))
    x = gc.placeholder((batch, 6), "float32", name="x")
    y = gc.placeholder((batch,), "int64", name="y")
    return model, gc.nn.cross_entropy(model(x), y), gc.optim.SGD(0.1, momentum=0.9)


def main_bn(out: str, per_rank: int) -> None:
    X, y = data()
    model, loss, opt = build_bn(per_rank)
    step = gc.distributed.data_parallel(loss, opt, model)
    r = gc.distributed.rank()
    sel = slice(r * per_rank, (r + 1) * per_rank)    # one step on the first global batch
    step(x=X[sel], y=y[sel])
    first = {k: np.array(v) for k, v in model.state_dict().items()}
    gc.nn.fit(step, {"x": X, "y": y}, epochs=2, seed=1, drop_last=True, progress=False)
    state = [np.asarray(p.value).tobytes() for p in step.graph.parameters]
    every = gc.distributed.comm().allgather(state)
    if r == 0:
        np.savez(out, same=all(s == every[0] for s in every), **first)


if __name__ == "__main__":
    if sys.argv[3:] == ["bn"]:
        main_bn(sys.argv[1], int(sys.argv[2]))
    else:
        main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
