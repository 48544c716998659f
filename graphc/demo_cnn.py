"""``python -m graphc demo --cnn``: a LeNet-style convolutional network
trained on the 8x8 handwritten digits (``graphc.datasets.load_digits``, the
copy of scikit-learn's bundled set shipped with graphc; no download).

Two convolution blocks (3x3 convolution, batch normalization, ReLU, 2x2 max
pooling) and two dense layers. The training step (forward, loss, backward,
Adam's update of every parameter, and batch normalization's running
statistics) is one compiled call; a second graph, built in eval mode, uses
the running statistics to classify the held-out test images after every
epoch.
"""
from __future__ import annotations

import time

import numpy as np

from . import compiler, nn, optim
from .datasets import load_digits, train_test_split
from .ops import argmax, cast, equal, relu
from .ops import sum as gsum
from .ops.common import placeholder

DEFAULT_EPOCHS = 15
DEFAULT_LR = 3e-3
DEFAULT_BATCH = 64


def digits(test_fraction: float = 0.25, seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: images as float32 ``(N, 1, 8,
    8)`` scaled to [0, 1], labels int64; a seeded random split."""
    images, labels = load_digits()
    x = (images / 16.0).astype(np.float32)[:, None]
    tr, te = train_test_split(len(x), test_fraction, seed)
    return x[tr], labels[tr], x[te], labels[te]


def build_model(seed: int = 0, channels=(16, 32), hidden: int = 64) -> nn.Sequential:
    """LeNet-style: [conv 3x3 -> BN -> ReLU -> maxpool 2] x 2 -> Flatten ->
    Dense -> ReLU -> Dense (10 classes), for (N, 1, 8, 8) inputs."""
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1, seed=seed), nn.BatchNorm2d(c1), relu, nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1, seed=seed + 1), nn.BatchNorm2d(c2), relu, nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dense(c2 * 2 * 2, hidden, activation=relu, seed=seed + 2),
        nn.Dense(hidden, 10, seed=seed + 3))


def main(epochs: int | None = None, lr: float | None = None, batch_size: int | None = None,
         seed: int = 0, quiet: bool = False) -> dict:
    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    lr = DEFAULT_LR if lr is None else lr
    bs = DEFAULT_BATCH if batch_size is None else batch_size
    for what, v in (("epochs", epochs), ("batch_size", bs)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise nn.ConfigError(f"demo --cnn: {what} must be a positive int, got {v!r}")
    t_start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = digits(seed=seed)

    def log(*a):
        if not quiet:
            print(*a, flush=True)

    model = build_model(seed)
    model.train()
    x = placeholder((bs, 1, 8, 8), "float32", name="x")
    y = placeholder((bs,), "int64", name="y")
    logits = model(x)
    loss = nn.cross_entropy(logits, y)
    correct = gsum(cast(equal(argmax(logits, axis=1), y), "int64"))    # hits in the batch
    opt = optim.Adam(lr=lr)
    t0 = time.perf_counter()
    step = compiler.compile([loss, correct], updates=opt.updates(loss, model.parameters()))
    model.eval()
    xe = placeholder(x_te.shape, "float32", name="x")
    predict = compiler.compile(argmax(model(xe), axis=1))
    compile_s = time.perf_counter() - t0
    log(f"graphc demo --cnn: LeNet-style CNN on the 8x8 digits ({len(x_tr)} train, {len(x_te)} "
        f"test images), Adam lr={lr}, batch {bs}, {epochs} epochs")
    log(f"compiled the train step (forward, loss, {len(model.parameters())} gradients, their Adam "
        f"updates and the batch-norm running statistics, written in place) and the eval graph "
        f"in {compile_s:.2f} s: {step.num_kernels} + {predict.num_kernels} kernels")
    rng = np.random.default_rng(seed)
    per_epoch = len(x_tr) // bs
    losses, train_acc, test_acc = [], [], []
    for epoch in range(epochs):
        order = rng.permutation(len(x_tr))
        ls, hits = [], 0
        for b in range(per_epoch):
            sel = order[b * bs:(b + 1) * bs]
            lv, cv = step(x=x_tr[sel], y=y_tr[sel])
            ls.append(float(lv))
            hits += int(cv)
        losses.append(float(np.mean(ls)))
        train_acc.append(hits / (per_epoch * bs))
        test_acc.append(float((predict(x=x_te) == y_te).mean()))
        log(f"epoch {epoch + 1:3d}/{epochs}  loss {losses[-1]:.4f}  train acc "
            f"{100 * train_acc[-1]:5.1f}%  test acc {100 * test_acc[-1]:5.1f}%")
    total_s = time.perf_counter() - t_start
    log(f"final test accuracy: {100 * test_acc[-1]:.2f}% ({len(x_te)} images), "
        f"{total_s:.1f} s in all")
    return {"loss": losses, "train_accuracy": train_acc, "test_accuracy": test_acc,
            "accuracy": test_acc[-1] if test_acc else float("nan"), "compile_s": compile_s,
            "seconds": total_s, "model": model}


if __name__ == "__main__":
    main()
