"""fit: against a hand-written loop, the last partial batch (drop_last),
validation metrics, callbacks and early stopping on scripted metrics, the
History it returns, and gc.nn.evaluator / gc.nn.accuracy against numpy."""
from __future__ import annotations

import types
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.datasets import load_digits, train_test_split


def _digits():
    images, labels = load_digits()
    X = (images.reshape(len(images), -1) / 16.0).astype(np.float32)
    tr, te = train_test_split(len(labels), 0.2, seed=0)
    return X[tr], labels[tr], X[te], labels[te]


def _digits_step(batch=64, seed=0):
    model = nn.Sequential(nn.Dense(32, activation="relu", seed=seed), nn.Dense(10, seed=seed + 1))
    x = gc.placeholder((batch, 64), "float32", name="x")
    y = gc.placeholder((batch,), "int64", name="y")
    logits = model(x)
    loss = nn.cross_entropy(logits, y)
    step = gc.compile([loss, nn.accuracy(logits, y)],
                      updates=gc.optim.Adam(1e-2).updates(loss, model.parameters()))
    return model, step


# ------------------------------------------------------------ the oracle: a loop by hand

def test_fit_equals_the_loop_written_by_hand():
    Xtr, Ytr, Xte, Yte = _digits()
    epochs, bs = 3, 64
    model, step = _digits_step()
    hist = nn.fit(step, {"x": Xtr, "y": Ytr}, epochs=epochs, seed=7, drop_last=True,
                  outputs=("loss", "accuracy"), progress=False)
    fitted = [p.value.copy() for p in model.parameters()]

    model2, step2 = _digits_step()                  # the same initial weights
    rng = np.random.default_rng(7)
    losses, accs = [], []
    for _ in range(epochs):
        order = rng.permutation(len(Xtr))
        for b in range(len(Xtr) // bs):
            sel = order[b * bs:(b + 1) * bs]
            loss, acc = step2(x=Xtr[sel], y=Ytr[sel])
            losses.append(float(loss))
            accs.append(float(acc))
    assert hist.losses == losses                      # identical, step by step
    per = len(Xtr) // bs
    np.testing.assert_allclose(hist["loss"], np.reshape(losses, (epochs, per)).mean(1),
                               rtol=1e-12)
    np.testing.assert_allclose(hist["accuracy"], np.reshape(accs, (epochs, per)).mean(1),
                               rtol=1e-12)
    for a, p in zip(fitted, model2.parameters()):
        np.testing.assert_array_equal(a, p.value)
    assert hist.dropped == len(Xtr) % bs == 30 and len(hist) == epochs


def test_fit_validation_metrics_match_numpy():
    Xtr, Ytr, Xte, Yte = _digits()
    model, step = _digits_step()
    seen = []

    def record(epoch, logs):                       # the parameters at each epoch's end
        w0, b0, w1, b1 = (p.value.astype(np.float64) for p in model.parameters())
        z = np.maximum(Xte @ w0 + b0, 0) @ w1 + b1
        lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
        seen.append((logs["val_loss"], float((lse - z[np.arange(len(Yte)), Yte]).mean()),
                     logs["val_accuracy"], float((z.argmax(1) == Yte).mean())))
    hist = nn.fit(step, {"x": Xtr, "y": Ytr}, epochs=3, drop_last=True, progress=False,
                  validation_data=(Xte, Yte), evaluate=nn.evaluator(model, nn.cross_entropy),
                  callbacks=[record])
    for got_loss, ref_loss, got_acc, ref_acc in seen:
        assert abs(got_loss - ref_loss) < 1e-5 * max(1.0, ref_loss)
        assert got_acc == ref_acc
    assert hist["val_accuracy"][-1] > 0.9
    assert hist.keys() == ["epoch", "loss", "val_loss", "val_accuracy"]


# ------------------------------------------------------------ the last partial batch

class AnyBatch:
    """A stand-in for a step that takes batches of any size (what gc.compile
    cannot make yet): its input's leading dimension is not a fixed int."""

    def __init__(self):
        self.graph = types.SimpleNamespace(placeholders=[types.SimpleNamespace(
            name="x", shape=(None,))])
        self.batches = []

    def __call__(self, x):
        self.batches.append(x.copy())
        return np.float64(x.mean())


def test_drop_last_on_a_fixed_batch_step():
    _, _, _, step = _regression_step(batch=16)
    X, Y = np.zeros((50, 3), np.float32), np.zeros((50, 1), np.float32)
    feeds = {"lr": np.float32(0.0)}
    with pytest.warns(nn.DroppedExamplesWarning, match=r"50 examples make 3 batches of 16; the "
                                                       r"remaining 2 are not used"):
        h = nn.fit(step, {"x": X, "y": Y}, feeds=feeds, progress=False)
    assert h.dropped == 2 and len(h.losses) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = nn.fit(step, {"x": X, "y": Y}, feeds=feeds, drop_last=True, progress=False)
        assert h.dropped == 2
        nn.fit(step, {"x": X[:48], "y": Y[:48]}, feeds=feeds, drop_last=False, progress=False)
    with pytest.raises(ValueError, match="drop_last=False: the last 2 of 50 examples.*compiled "
                                         "for batches of 16 only"):
        nn.fit(step, {"x": X, "y": Y}, feeds=feeds, drop_last=False)
    with pytest.raises(ValueError, match="drop_last must be"):
        nn.fit(step, {"x": X, "y": Y}, feeds=feeds, drop_last="yes")


def test_partial_batch_used_when_the_step_takes_any_size():
    step = AnyBatch()
    data = np.arange(10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = nn.fit(step, [data], epochs=2, batch_size=4, seed=3, progress=False)
    assert [len(b) for b in step.batches] == [4, 4, 2] * 2 and h.dropped == 0
    for e in range(2):
        np.testing.assert_array_equal(np.sort(np.concatenate(step.batches[3 * e:3 * e + 3])),
                                      data)
    # the epoch's loss is the mean over examples, so the short batch weighs less
    means = [b.mean() for b in step.batches[:3]]
    np.testing.assert_allclose(h["loss"][0], (4 * means[0] + 4 * means[1] + 2 * means[2]) / 10)
    np.testing.assert_allclose(h["loss"][0], data.mean())
    step.batches.clear()
    nn.fit(step, [data], batch_size=4, drop_last=True, progress=False)
    assert [len(b) for b in step.batches] == [4, 4]
    with pytest.raises(ValueError, match="give batch_size"):
        nn.fit(step, [data])


# ------------------------------------------------------------ callbacks, early stopping

class Counter:
    """A compiled step that adds 1 to a parameter per call and returns it."""

    def __init__(self):
        self.w = gc.parameter(np.float64(0.0), name="w")
        x = gc.placeholder((1,), "float64", name="x")
        self.step = gc.compile(self.w + gc.sum(x) * 0.0, updates={self.w: self.w + 1.0},
                               backend="interp")


def _scripted(values):
    it = iter(values)
    return lambda data: {"loss": next(it)}


def _expected_stop(values, patience, min_delta=0.0, mode="min"):
    """Keras's rule, written out: the epoch after which training stops."""
    best, wait = None, 0
    for k, v in enumerate(values):
        better = best is None or (v < best - min_delta if mode == "min" else v > best + min_delta)
        if better:
            best, wait = v, 0
        else:
            wait += 1
            if wait >= patience:
                return k
    return None


@pytest.mark.parametrize("values,patience,min_delta,mode,stop", [
    ([5, 4, 3, 3.5, 3.2, 3.1, 2.0, 1.0], 3, 0.0, "min", 5),   # best at 2, then 3 misses
    ([5, 4, 3, 3.5, 3.2, 2.9, 3.0, 3.1, 3.3], 2, 0.0, "min", 4),
    ([1.0, 0.95, 0.91, 0.9, 0.89, 0.5], 2, 0.05, "min", 4),   # gains under 0.05 are misses
    ([0.5, 0.6, 0.6, 0.7, 0.65, 0.6, 0.9], 2, 0.0, "max", 5),  # a tie is a miss
    ([3, 2, 1, 0.5], 1, 0.0, "min", None),                     # never stops
    ([3, 3, 1], 0, 0.0, "min", 1),                             # patience 0: the first miss
])
def test_early_stopping_on_a_scripted_sequence(values, patience, min_delta, mode, stop):
    assert _expected_stop(values, patience, min_delta, mode) == stop
    c = Counter()
    es = nn.EarlyStopping("val_loss" if mode == "min" else "val_accuracy", patience=patience,
                          min_delta=min_delta, restore_best=True)
    key = "loss" if mode == "min" else "accuracy"
    it = iter(values)
    hist = nn.fit(c.step, [np.zeros(6)], epochs=len(values), validation_data=(),
                  evaluate=lambda d: {key: next(it)}, callbacks=[es], progress=False)
    assert es.stopped_epoch == stop
    run = len(values) if stop is None else stop + 1
    assert len(hist) == run and len(hist.losses) == 6 * run
    assert hist.stopped_early == (stop is not None and stop + 1 < len(values))
    best = int(np.argmin(values[:run]) if mode == "min" else np.argmax(values[:run]))
    if min_delta == 0:
        assert es.best_epoch == best
    # restore_best: the parameter as it was after the best epoch (6 steps each)
    assert float(c.w.value) == 6 * (es.best_epoch + 1)
    if stop is not None:
        assert "has not improved" in hist.stop_reason


def test_early_stopping_restores_the_best_weights_of_a_model():
    Xtr, Ytr, Xte, Yte = _digits()
    model, step = _digits_step()
    after = []
    keep = lambda epoch, logs: after.append([p.value.copy() for p in model.parameters()])
    es = nn.EarlyStopping("val_accuracy", patience=2, restore_best=True)
    hist = nn.fit(step, {"x": Xtr, "y": Ytr}, epochs=40, drop_last=True, progress=False,
                  validation_data=(Xte, Yte), evaluate=nn.evaluator(model, nn.cross_entropy),
                  callbacks=[keep, es])
    assert es.stopped_epoch is not None and len(hist) == es.stopped_epoch + 1
    assert es.best_epoch == int(np.argmax(hist["val_accuracy"]))       # the first maximum
    for a, p in zip(after[es.best_epoch], model.parameters()):
        np.testing.assert_array_equal(a, p.value)


def test_early_stopping_unknown_metric_and_arguments():
    c = Counter()
    with pytest.raises(ValueError, match="no metric 'val_loss'.*validation_data"):
        nn.fit(c.step, [np.zeros(2)], epochs=2, callbacks=[nn.EarlyStopping()],
               progress=False)
    for bad in ({"patience": -1}, {"min_delta": -0.1}, {"mode": "up"}):
        with pytest.raises(ValueError):
            nn.EarlyStopping(**bad)
    assert nn.EarlyStopping("val_accuracy").mode == "max"
    assert nn.EarlyStopping("loss").mode == "min"


def test_callback_protocol():
    c = Counter()
    calls = []

    class Spy:
        def on_train_begin(self, history):
            calls.append(("begin", history.step is c.step))

        def on_epoch_end(self, epoch, logs):
            logs["lr"] = 0.1 * epoch                  # later callbacks see it
            calls.append(("epoch", epoch))

        def on_train_end(self, history):
            calls.append(("end", len(history)))

    def stop_at_2(epoch, logs):
        assert logs["lr"] == 0.1 * epoch
        return epoch == 2
    hist = nn.fit(c.step, [np.zeros(2)], epochs=10, callbacks=[Spy(), stop_at_2],
                  progress=False)
    assert calls == [("begin", True), ("epoch", 0), ("epoch", 1), ("epoch", 2), ("end", 3)]
    assert hist["lr"] == [0.0, 0.1, 0.2] and hist.stopped_early
    assert "stop_at_2" in hist.stop_reason

    def raiser(epoch, logs):
        if epoch == 1:
            raise nn.StopTraining("enough")
    hist = nn.fit(c.step, [np.zeros(2)], epochs=5, callbacks=raiser, progress=False)
    assert len(hist) == 2 and hist.stop_reason == "enough"
    with pytest.raises(TypeError, match="callback"):
        nn.fit(c.step, [np.zeros(2)], callbacks=[3])


def test_fit_prints_epoch_lines_and_the_stop(capsys):
    c = Counter()
    nn.fit(c.step, [np.zeros(2)], epochs=20, progress="plain", validation_data=(),
           evaluate=_scripted([5, 4, 3, 3, 3, 3] + [1] * 14),
           callbacks=[nn.EarlyStopping(patience=2)])
    out = capsys.readouterr().out
    assert "epoch    1/20  loss" in out and "val_loss 5.0000" in out
    assert "epoch    5/20" in out and "stopped after epoch 5: EarlyStopping: val_loss has not " \
        "improved on 3 (epoch 3) for 2 epoch(s)" in out


def test_validation_arguments():
    c = Counter()
    with pytest.raises(ValueError, match=r"validation_data needs evaluate=.*gc.nn.evaluator"):
        nn.fit(c.step, [np.zeros(2)], validation_data=(1, 2))
    with pytest.raises(ValueError, match="without validation_data"):
        nn.fit(c.step, [np.zeros(2)], evaluate=lambda d: 0.0)
    h = nn.fit(c.step, [np.zeros(2)], epochs=2, validation_data="v",
               evaluate=lambda d: 1.5 if d == "v" else 0, progress=False)
    assert h["val_loss"] == [1.5, 1.5]              # a bare number is the loss
    with pytest.raises(ValueError, match="outputs=.*names 2 outputs, the step returns 1"):
        nn.fit(c.step, [np.zeros(2)], outputs=("loss", "accuracy"), progress=False)


def test_history():
    c = Counter()
    h = nn.fit(c.step, [np.zeros(2)], epochs=3, progress=False)
    assert len(h) == 3 and [e["epoch"] for e in h] == [0, 1, 2]
    assert h["loss"] == [0.5, 2.5, 4.5]              # the counter's values, 0..5, averaged
    assert h[1] == {"epoch": 1, "loss": 2.5} and h.losses == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    with pytest.raises(KeyError, match="no metric 'val_loss'.*'loss'"):
        h["val_loss"]
    assert "3 epochs, 6 steps" in repr(h)


# ------------------------------------------------------------ evaluator, accuracy

def test_accuracy_against_numpy():
    rng = np.random.default_rng(0)
    z, lab = rng.standard_normal((50, 7)), rng.integers(0, 7, 50)
    x = gc.placeholder((50, 7), "float64", name="x")
    y = gc.placeholder((50,), "int64", name="y")
    got = gc.compile(nn.accuracy(x, y))(x=z, y=lab)
    assert float(got) == float((z.argmax(1) == lab).mean())
    with pytest.raises(TypeError, match="integer class indices"):
        nn.accuracy(x, x)
    with pytest.raises(ValueError, match="labels of shape"):
        nn.accuracy(x, gc.placeholder((49,), "int64"))


def test_evaluator_builds_in_eval_mode_and_batches():
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Dense(6, 8, activation="tanh", seed=0), nn.Dropout(0.5, seed=1),
                          nn.Dense(8, 3, seed=2))
    model.train()
    X = rng.standard_normal((37, 6)).astype(np.float32)
    Y = rng.integers(0, 3, 37)
    w0, b0, w1, b1 = (p.value.astype(np.float64) for p in model.parameters())
    z = np.tanh(X @ w0 + b0) @ w1 + b1                # no dropout: eval mode
    lse = np.log(np.exp(z).sum(1))
    ref = {"loss": float((lse - z[np.arange(37), Y]).mean()), "accuracy": (z.argmax(1) == Y).mean()}
    for bs in (None, 10, 37):
        ev = nn.evaluator(model, nn.cross_entropy, batch_size=bs)
        got = ev((X, Y))
        assert abs(got["loss"] - ref["loss"]) < 1e-5 and got["accuracy"] == ref["accuracy"]
        assert got == ev({"x": X, "y": Y})           # compiled once, run again
    assert all(m.training for m in model.modules())   # the modes are restored
    assert nn.evaluator(model, metrics="accuracy")((X, Y)) == {"accuracy": ref["accuracy"]}
    assert nn.evaluator(model)((X, Y)) == {"accuracy": ref["accuracy"]}   # no loss given
    with pytest.raises(ValueError, match="metrics must be some of"):
        nn.evaluator(model, nn.cross_entropy, metrics=("f1",))
    with pytest.raises(ValueError, match="has no"):
        nn.evaluator(model, nn.cross_entropy)({"inputs": X})


def _regression_step(batch=16):
    model = nn.Dense(3, 1, seed=0)
    x = gc.placeholder((batch, 3), "float32", name="x")
    y = gc.placeholder((batch, 1), "float32", name="y")
    lr = gc.placeholder((), "float32", name="lr")
    loss = nn.mse(model(x), y)
    step = gc.compile(loss, updates=gc.optim.SGD(lr).updates(loss, model.parameters()),
                      backend="interp")
    return x, y, model, step


def test_fit_progress_bar_protocol(monkeypatch):
    """The tqdm path, with a stand-in for tqdm (which may not be installed)."""
    import importlib
    fitmod = importlib.import_module("graphc.nn.fit")
    bars = []

    class Bar:
        def __init__(self, total, desc, unit, leave):
            self.total, self.n, self.postfix, self.lines, self.closed = total, 0, None, [], False
            bars.append(self)

        def update(self, k):
            self.n += k

        def set_postfix(self, d=None, refresh=True, **kw):
            self.postfix = dict(d or {}, **kw)

        def write(self, line):
            self.lines.append(line)

        def close(self):
            self.closed = True
    monkeypatch.setattr(fitmod, "_tqdm", lambda: Bar)
    c = Counter()
    nn.fit(c.step, [np.zeros(3)], epochs=20, validation_data=(), evaluate=lambda d: 0.25)
    (bar,) = bars
    assert bar.total == bar.n == 60 and bar.closed
    assert bar.postfix == {"loss": "58.0000", "val_loss": "0.2500"}   # the last epoch: 57..59
    assert len(bar.lines) == 11 and bar.lines[-1].startswith("epoch   20/20  loss 58.0000")
    nn.fit(c.step, [np.zeros(3)], epochs=20, callbacks=lambda e, logs: e == 1)
    assert bars[-1].lines[-1] == "stopped after epoch 2: <lambda> asked to stop"
