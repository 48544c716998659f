"""A symbolic batch dimension (gc.Dim / None in a placeholder's shape).

Oracle: for every batch size n from 1 to the bound, the one compiled
function (native, and the interpreter on the same graph) against the same
model built with fixed shapes (n, ...) and run by the interpreter; training
steps start from the same parameter values (and optimizer state) and must
leave the same values. Plus: a digits run whose per-epoch losses equal the
fixed-shape run's, no compile per size, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.errors import InputError, ShapeError

# every size from 1 to the bound is checked here: small ones warn that they cost the bound
pytestmark = pytest.mark.filterwarnings("ignore::graphc.PaddedBatchWarning")

BOUND = 5


def _snapshot(*fs):
    ps = {}
    for f in fs:
        for p in f.source_graph.parameters:
            if p.dim_of is None:              # (a dim's size parameter: set by each call)
                ps[p.id] = (p, p.value.copy())
    return ps


def _restore(ps):
    for p, v in ps.values():
        p.value = v


def _check(build, feeds, bound=BOUND, rtol=1e-5, atol=1e-6, **options):
    """``build(sizes) -> (placeholders, outputs, updates)`` with sizes a Dim
    or an int; ``feeds(n, rng) -> list of arrays``."""
    dim = gc.Dim("batch", max=bound)
    phs, outs, ups = build(dim)
    fc = gc.compile(outs, inputs=phs, updates=ups, **options)
    fi = gc.compile(outs, inputs=phs, updates=ups, backend="interp")
    rng = np.random.default_rng(0)
    for n in range(1, bound + 1):
        args = feeds(n, rng)
        fphs, fouts, fups = build(n)
        ff = gc.compile(fouts, inputs=fphs, updates=fups, backend="interp")
        state = _snapshot(fc, ff)
        results = []
        for f in (ff, fc, fi):
            _restore(state)
            r = f(*args)
            after = [p.value.copy() for p, _ in sorted(state.values(), key=lambda t: t[0].id)]
            results.append((r, after))
        (want, want_p) = results[0]
        for got, got_p in results[1:]:
            for a, b in zip(got, want):
                assert a.shape == b.shape, (n, a.shape, b.shape)
                np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"n={n}")
            for a, b in zip(got_p, want_p):
                np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"params n={n}")
        _restore(state)


def _mlp_build(adam):
    model = nn.Sequential(nn.Dense(7, activation="relu", seed=1), nn.Dense(4, seed=2))
    model(gc.placeholder((2, 6)))          # infer in_features once, shared by every build

    def build(rows):
        x = gc.placeholder((rows, 6), "float32", name="x")
        y = gc.placeholder((rows,), "int64", name="y")
        logits = model(x)
        loss = nn.cross_entropy(logits, y)
        ups = adam.updates(loss, model.parameters())
        return [x, y], [loss, logits, nn.accuracy(logits, y)], ups
    return build


def _mlp_feeds(n, rng):
    return [rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 4, size=n)]


@pytest.mark.parametrize("opt_level", [0, 1, 3])
def test_mlp_training_step_with_adam_and_cross_entropy(opt_level):
    _check(_mlp_build(gc.optim.Adam(1e-2)), _mlp_feeds, opt_level=opt_level)


def test_two_threads_and_a_cache_hit_agree():
    # the same graph built twice (a compile-cache hit the second time), 2 threads
    for _ in range(2):
        _check(_mlp_build(gc.optim.Adam(1e-2)), _mlp_feeds, bound=3, threads=2)


@pytest.mark.parametrize("side", [4, 14])
def test_small_cnn_training_step(side):
    # at 14x14 the fixed-shape conv takes the full-width GEMM layout, the
    # symbolic one the im2col one: two lowerings checked against each other
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, seed=3), nn.BatchNorm2d(3), gc.relu,
                          nn.MaxPool2d(2), nn.Flatten(), nn.Dense(3, seed=4))
    model(gc.placeholder((2, 2, side, side)))
    opt = gc.optim.SGD(0.1)

    def build(rows):
        x = gc.placeholder((rows, 2, side, side), "float32", name="x")
        y = gc.placeholder((rows,), "int64", name="y")
        logits = model(x)
        loss = nn.cross_entropy(logits, y)
        ups = {**opt.updates(loss, model.parameters()), **nn.state_updates(loss)}   # BN's stats
        return [x, y], [loss, logits], ups

    _check(build, lambda n, rng: [rng.normal(size=(n, 2, side, side)).astype(np.float32),
                                  rng.integers(0, 3, size=n)], bound=4, rtol=1e-4, atol=1e-5)


def test_softmax_log_softmax_and_reductions_over_and_not_over_the_batch():
    w = gc.parameter(np.linspace(-1, 1, 4).astype(np.float32))          # per feature

    def build(rows):
        x = gc.placeholder((rows, 3, 4), "float32", name="x")
        h = x * w + 0.5                                   # broadcast against a parameter
        outs = [gc.softmax(h, -1), gc.log_softmax(h, axis=0), gc.sum(h, 0), gc.mean(h),
                gc.max(h, (0, 2)), gc.min(h, 1), gc.mean(h, (0, 1), keepdims=True),
                gc.sum(gc.exp(h) * 2.0, 2), gc.transpose(h, (2, 0, 1)),
                gc.mean(gc.reshape(h, (-1, 4)), 0), gc.reshape(gc.reshape(h, (-1, 4)), h.shape),
                gc.transpose(h, (1, 2, 0)) @ gc.reshape(h, (h.shape[0], 12)),     # contracts B
                gc.grad(gc.sum(gc.max(h, 0)) + gc.mean(h * h), [w])[0]]
        return [x], outs, None

    _check(build, lambda n, rng: [rng.normal(size=(n, 3, 4)).astype(np.float32)])


def test_padding_that_would_be_nan_never_reaches_the_result():
    # log of the padding rows would be -inf/NaN if they were zeros; the rows
    # that mix (sum, matmul over the batch) read them masked
    def build(rows):
        x = gc.placeholder((rows, 3), "float64", name="x")
        z = gc.log(x)
        return [x], [gc.sum(z, 0), gc.transpose(z) @ z, gc.grad(gc.mean(z), [x])[0]], None

    _check(build, lambda n, rng: [rng.uniform(0.5, 2, size=(n, 3))])


def test_one_compile_serves_every_size_and_the_size_is_the_calls():
    counted = []
    from graphc import compiler
    compiler._hooks.append(counted.append)
    try:
        x = gc.placeholder((None, 3), "float64", name="x")
        w = gc.placeholder((None,), "float64", name="w")       # None: one shared dim
        assert w.batch.dim is x.batch.dim
        f = gc.compile(gc.mean(x, 0) + 0 * gc.sum(x), inputs=[x])
        rng = np.random.default_rng(0)
        for n in (1, 7, 1024, 3, 1024, 500, 1024):
            a = rng.normal(size=(n, 3))
            np.testing.assert_allclose(f(a), a.mean(0), rtol=1e-12)
            # between calls the size is the bound (a full batch takes the fixed fast path)
            assert int(x.batch.dim._size.value) == 1024
        assert len(counted) == 1
    finally:
        compiler._hooks.remove(counted.append)


@pytest.mark.parametrize("backend", ["llvm", "interp"])
def test_concurrent_calls_of_different_sizes(backend):
    """Each call's size is its own (never written into the shared size
    parameter), so threads calling at once, full batches and partial ones,
    each get their own rows' answer (when a partial call set the shared
    parameter, 38 of 100 concurrent full calls divided by its size)."""
    import threading
    cols = 20000 if backend == "llvm" else 500       # calls long enough to overlap
    x = gc.placeholder((gc.Dim("rows", max=64), cols), "float64", name="x")
    f = gc.compile([gc.mean(x, 0), gc.sum(x * x, 1)], inputs=[x], backend=backend, threads=1)
    rng = np.random.default_rng(3)
    full, part = rng.normal(size=(64, cols)), rng.normal(size=(5, cols))
    errors = []

    def work(a):
        for i in range(40):
            m, s = f(a)
            if not (np.allclose(m, a.mean(0), rtol=1e-12) and np.allclose(s, (a * a).sum(1))):
                errors.append((i, a.shape[0]))
    threads = [threading.Thread(target=work, args=(a,)) for a in (full, part, full, part)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert int(x.batch.dim._size.value) == 64          # the parameter itself is never changed


def test_errors_are_clear():
    d = gc.Dim("batch", max=4)
    x = gc.placeholder((d, 3), name="x")
    y = gc.placeholder((d,), "int64", name="y")
    f = gc.compile([gc.sum(x, 1), y + 1], inputs=[x, y])
    with pytest.raises(InputError, match=r"batch<=4, 3.*got shape \(5, 3\).*1 to 4"):
        f(np.zeros((5, 3), np.float32), np.zeros(5, np.int64))
    with pytest.raises(InputError, match=r"got shape \(2, 4\)"):
        f(np.zeros((2, 4), np.float32), np.zeros(2, np.int64))
    with pytest.raises(InputError, match="same size"):
        f(np.zeros((2, 3), np.float32), np.zeros(3, np.int64))
    with pytest.raises(InputError, match="same size"):
        f(np.zeros((4, 3), np.float32), np.zeros(3, np.int64))      # a full batch and not
    with pytest.raises(InputError, match="got shape"):
        f(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
    # arguments the fast path declines (Fortran order, strided, lists, by keyword) still right
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    for xs in (np.asfortranarray(a[:3]), a[::2], a[:3].tolist()):
        got = f(xs, [1, 2, 3][:len(xs)])
        np.testing.assert_allclose(got[0], np.asarray(xs, np.float32).sum(1))
        np.testing.assert_array_equal(got[1], np.arange(2, 2 + len(xs)))
    g = gc.compile(gc.sum(x, 1))
    np.testing.assert_allclose(g(x=a[:2]), a[:2].sum(1))
    with pytest.raises(ShapeError, match="slice.*symbolic"):
        x[1:]
    with pytest.raises(ShapeError, match="concatenate.*symbolic"):
        gc.concatenate([x, x], 0)
    with pytest.raises(ShapeError, match="reshape.*leading"):
        gc.reshape(x, (3, 4))
    with pytest.raises(ShapeError, match="one output axis"):
        x @ gc.transpose(x)
    with pytest.raises(ShapeError, match="different symbolic dims.*same gc.Dim"):
        x + gc.placeholder((gc.Dim("batch", max=4), 3))
    with pytest.raises(ShapeError, match="only the leading axis"):
        gc.placeholder((3, None))
    with pytest.raises(ShapeError, match="export.*symbolic"):
        f.export("/nonexistent-never-written")
    p = gc.parameter(np.zeros((4, 3), np.float32))
    with pytest.raises(ShapeError, match="update of parameter"):
        gc.compile(gc.sum(x), inputs=[x], updates={p: x * 2.0})


def test_digits_run_equals_the_fixed_shape_run():
    from graphc.datasets import load_digits
    images, labels = load_digits()
    X = (images.reshape(len(images), -1) / 16.0).astype(np.float32)[:300]
    Y = labels[:300]
    bs = 64                                   # 300 = 4 * 64 + 44: a partial last batch

    def run(rows_of):
        model = nn.Sequential(nn.Dense(32, activation="relu", seed=0), nn.Dense(10, seed=1))
        opt = gc.optim.Adam(1e-2)
        steps = {}

        def step_for(n):
            rows = rows_of(n)
            if rows not in steps:
                x = gc.placeholder((rows, 64), "float32", name="x")
                y = gc.placeholder((rows,), "int64", name="y")
                loss = nn.cross_entropy(model(x), y)
                steps[rows] = gc.compile(loss, inputs=[x, y],
                                         updates=opt.updates(loss, model.parameters()))
            return steps[rows]

        rng = np.random.default_rng(3)
        epochs = []
        for _ in range(3):
            order = rng.permutation(len(X))
            losses = []
            for s in range(0, len(X), bs):
                sel = order[s:s + bs]
                losses.append(float(step_for(len(sel))(X[sel], Y[sel])))
            epochs.append(np.mean(losses))
        return epochs, len(steps)

    dim = gc.Dim("batch", max=bs)
    sym, compiled = run(lambda n: dim)
    fixed, _ = run(lambda n: n)
    assert compiled == 1
    np.testing.assert_allclose(sym, fixed, rtol=1e-5)


def test_fit_takes_the_last_partial_batch_with_one_step():
    from graphc.datasets import load_digits
    images, labels = load_digits()
    X = (images.reshape(len(images), -1) / 16.0).astype(np.float32)[:200]
    Y = labels[:200]
    model = nn.Sequential(nn.Dense(16, activation="relu", seed=0), nn.Dense(10, seed=1))
    x = gc.placeholder((gc.Dim("batch", max=64), 64), "float32", name="x")
    y = gc.placeholder((x.batch.dim,), "int64", name="y")
    logits = model(x)
    loss = nn.cross_entropy(logits, y)
    step = gc.compile([loss, nn.accuracy(logits, y)],
                      updates=gc.optim.Adam(1e-2).updates(loss, model.parameters()))
    hist = nn.fit(step, {"x": X, "y": Y}, epochs=2, batch_size=64, seed=1,
                  outputs=("loss", "accuracy"), progress=False)
    assert len(hist.losses) == 2 * 4                     # 3 full batches + 8 rows, per epoch
    # the whole set in one call of a function bounded by its size; oracle: numpy
    xs = gc.placeholder((gc.Dim("rows", max=200), 64), "float32", name="x")
    ys = gc.placeholder((xs.batch.dim,), "int64", name="y")
    evaluate = gc.compile(nn.accuracy(model(xs), ys))
    w1, b1, w2, b2 = (p.value for p in model.parameters())
    want = np.mean(np.argmax(np.maximum(X @ w1 + b1, 0) @ w2 + b2, 1) == Y)
    assert abs(float(evaluate(x=X, y=Y)) - want) < 1e-9
    assert abs(float(evaluate(x=X[:77], y=Y[:77])) - np.mean(
        np.argmax(np.maximum(X[:77] @ w1 + b1, 0) @ w2 + b2, 1) == Y[:77])) < 1e-9


def test_the_evaluator_compiles_once_for_batches_and_the_last_partial_one():
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(50, 6)).astype(np.float32), rng.integers(0, 4, size=50)
    model = nn.Sequential(nn.Dense(7, activation="relu", seed=1), nn.Dense(4, seed=2))
    ev = nn.evaluator(model, nn.cross_entropy, batch_size=16)     # 16, 16, 16, 2
    got = ev((X, Y))
    assert len(ev._compiled) == 1
    w1, b1, w2, b2 = (p.value.astype(np.float64) for p in model.parameters())
    z = np.maximum(X @ w1 + b1, 0) @ w2 + b2
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    np.testing.assert_allclose(got["loss"], -logp[np.arange(50), Y].mean(), rtol=1e-5)
    np.testing.assert_allclose(got["accuracy"], np.mean(z.argmax(1) == Y), rtol=1e-12)


def test_dropout_draws_the_same_mask_on_the_valid_rows():
    # the generator is counter-based on the element's linear index, so the
    # first n rows of a bound-sized draw are the draw of n rows
    drop = nn.Dropout(0.5, seed=3)
    model = nn.Sequential(nn.Dense(7, activation="relu", seed=1), drop, nn.Dense(4, seed=2))
    model(gc.placeholder((2, 6)))
    opt = gc.optim.SGD(0.1)

    def build(rows):
        drop.__dict__["_uses"] = 0            # the same stream in every build
        x = gc.placeholder((rows, 6), "float32", name="x")
        y = gc.placeholder((rows,), "int64", name="y")
        loss = nn.cross_entropy(model(x), y)
        return [x, y], [loss], opt.updates(loss, model.parameters())

    _check(build, _mlp_feeds)


def test_a_value_that_is_infinite_only_in_the_padding_never_leaks():
    # c's last row is infinite: padding for n < bound, so z's padding rows are
    # not copies of valid rows, and every product over the batch masks them
    C = np.ones((BOUND, 3))
    C[-1] = np.inf

    def build(rows):
        x = gc.placeholder((rows, 3), "float64", name="x")
        c = gc.constant(C if not isinstance(rows, int) else C[:rows])
        z = x * c
        m = gc.transpose(z) @ x + gc.transpose(x) @ z
        return [x], [m, gc.sum(z, 0), gc.grad(gc.sum(m * m), [x])[0]], None

    _check(build, lambda n, rng: [rng.uniform(0.5, 2, size=(n, 3))])


def test_fit_with_a_symbolic_batch_equals_fixed_shapes_on_the_same_order():
    """fit's partial-batch path (one symbolic step) against the loop by hand
    on fixed-shape steps (one per batch size), same data order."""
    from graphc.datasets import load_digits, train_test_split
    images, labels = load_digits()
    X = (images.reshape(len(images), -1) / 16.0).astype(np.float32)
    train, _ = train_test_split(len(labels), 0.2, seed=0)          # 1438 = 22 * 64 + 30
    Xtr, Ytr = X[train], labels[train]

    def model_and_opt():
        return (nn.Sequential(nn.Dense(32, activation="relu", seed=0), nn.Dense(10, seed=1)),
                gc.optim.Adam(1e-2))

    def make_step(model, opt, rows):
        x = gc.placeholder((rows, 64), "float32", name="x")
        y = gc.placeholder((rows,), "int64", name="y")
        loss = nn.cross_entropy(model(x), y)
        return gc.compile(loss, updates=opt.updates(loss, model.parameters()))

    model, opt = model_and_opt()
    hist = nn.fit(make_step(model, opt, gc.Dim("batch", max=64)), {"x": Xtr, "y": Ytr},
                  epochs=3, batch_size=64, seed=7, drop_last=False, progress=False)
    assert not np.any(hist.dropped)                        # the 30 left over are used

    model2, opt2 = model_and_opt()
    steps = {64: make_step(model2, opt2, 64), 30: make_step(model2, opt2, 30)}
    rng, per_epoch, losses = np.random.default_rng(7), [], []
    for _ in range(3):
        order = rng.permutation(len(Xtr))
        tot = 0.0
        for s in range(0, len(Xtr), 64):
            sel = order[s:s + 64]
            loss = float(steps[len(sel)](x=Xtr[sel], y=Ytr[sel]))
            losses.append(loss)
            tot += loss * len(sel)
        per_epoch.append(tot / len(Xtr))
    np.testing.assert_allclose(hist.losses, losses, rtol=2e-5)
    np.testing.assert_allclose(hist["loss"], per_epoch, rtol=2e-5)
    for a, b in zip(model.parameters(), model2.parameters()):
        np.testing.assert_allclose(a.value, b.value, rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("error::graphc.PaddedBatchWarning")
def test_a_small_call_warns_once_that_it_costs_the_bound():
    x = gc.placeholder((None, 3), "float64", name="x")          # None: a bound of 1024
    f = gc.compile(gc.sum(x, 0), inputs=[x])
    a = np.ones((300, 3))
    np.testing.assert_array_equal(f(a), a.sum(0))               # a quarter or more: quiet
    with pytest.warns(gc.PaddedBatchWarning, match=r"32 rows .* computed all 1024 rows"):
        np.testing.assert_array_equal(f(np.ones((32, 3))), np.full(3, 32.0))
    np.testing.assert_array_equal(f(np.ones((8, 3))), np.full(3, 8.0))   # once per function
