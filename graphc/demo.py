"""``python -m graphc demo``: train an MLP classifier on a 3-class spiral
through the training API (``nn`` + ``optim``), with ``nn.fit`` reporting the
loss on the training points and the loss and accuracy on a fresh draw of the
spiral after every epoch (one full-batch step each).

The whole training step — forward pass, softmax cross-entropy, the gradient
of every parameter and Adam's update of every parameter and moment — is one
compiled native call that writes the parameters in place. The same step is
also run by the numpy interpreter, to compare speed.
"""
from __future__ import annotations

import time

import numpy as np

from . import compiler, nn, optim
from .ops import relu
from .ops.common import placeholder

DEFAULT_STEPS = 1000
DEFAULT_LR = 0.01


def spiral(n_per_class: int = 100, classes: int = 3, noise: float = 0.2, seed: int = 0):
    """The classic spiral toy set: ``classes`` interleaved arms in 2-D."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n_per_class * classes, 2))
    y = np.zeros(n_per_class * classes, dtype=np.int64)
    for c in range(classes):
        r = np.linspace(0.0, 1.0, n_per_class)
        t = np.linspace(c * 4, (c + 1) * 4, n_per_class) + rng.standard_normal(n_per_class) * noise
        ix = slice(n_per_class * c, n_per_class * (c + 1))
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = c
    return X, y


def build_model(sizes=(2, 64, 64, 3), dtype="float32", seed: int = 0) -> nn.Sequential:
    """An MLP: Dense layers with ReLU between them (PyTorch's default init)."""
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        act = relu if k < len(sizes) - 2 else None
        layers.append(nn.Dense(a, b, activation=act, dtype=dtype, seed=seed + k))
    return nn.Sequential(*layers)


def _median_ms(f, feeds, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f(**feeds)
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def main(steps: int | None = None, lr: float | None = None, quiet: bool = False) -> dict:
    steps = DEFAULT_STEPS if steps is None else steps
    lr = DEFAULT_LR if lr is None else lr
    X, Y = spiral()
    X = X.astype(np.float32)
    n = len(X)
    model = build_model()
    x = placeholder((n, 2), "float32", name="x")
    y = placeholder((n,), "int64", name="y")
    loss = nn.cross_entropy(model(x), y)
    opt = optim.Adam(lr=lr)
    updates = opt.updates(loss, model.parameters())
    t0 = time.perf_counter()
    step = compiler.compile(loss, updates=updates)
    compile_s = time.perf_counter() - t0
    predict = compiler.compile(model.eval()(x))
    model.train()
    feeds = {"x": X, "y": Y}
    Xv, Yv = spiral(seed=1)                      # a fresh draw of the spiral, for validation
    validation = (Xv.astype(np.float32), Yv)

    def log(*a):
        if not quiet:
            print(*a, flush=True)

    log(f"graphc demo: MLP 2-64-64-3 on a spiral ({n} points, 3 classes), Adam lr={lr}, "
        f"{steps} full-batch steps")
    log(f"compiled the train step (forward, loss, {len(model.parameters())} gradients and their "
        f"Adam updates, written in place) in {compile_s:.3f} s: {len(step.graph)} graph nodes, "
        f"{step.num_kernels} kernels")
    history = nn.fit(step, feeds, epochs=steps, batch_size=n, shuffle=False,
                     validation_data=validation, evaluate=nn.evaluator(model, nn.cross_entropy),
                     progress=not quiet)
    losses = history.losses
    marks = sorted({0, *range(max(1, steps // 10) - 1, steps, max(1, steps // 10)), steps - 1})
    log("loss by step: " + ", ".join(f"{i + 1}: {losses[i]:.4f}" for i in marks if i < len(losses)))
    acc = float((predict(x=X).argmax(1) == Y).mean())
    val_acc = history["val_accuracy"][-1] if len(history) else float("nan")
    log(f"final training accuracy: {100 * acc:.1f}%, validation accuracy (a fresh spiral): "
        f"{100 * val_acc:.1f}%")

    interp = compiler.compile(loss, updates=updates, backend="interp")
    ms_c = _median_ms(step, feeds, 200)
    ms_i = _median_ms(interp, feeds, 50)
    log(f"per step (median, forward + backward + Adam): compiled {ms_c:.3f} ms, interpreted "
        f"{ms_i:.3f} ms ({ms_i / ms_c:.1f}x)")
    return {"accuracy": acc, "compile_s": compile_s, "ms_compiled": ms_c,
            "ms_interp": ms_i, "loss": losses, "val_accuracy": val_acc, "history": history}


if __name__ == "__main__":
    main()
