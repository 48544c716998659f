"""Regression tests of fusion and memory planning found in issue 12-17's
work (the exact fusion fuzz, tests/test_fusion_fuzz.py, and the ONNX
converters): one small, named test per bug, each failing without its fix
(docs/reliability.md lists them). The older ones are in test_regressions.py."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


def _reads_other_rows():
    """Row reductions whose consumer, itself a row reduction over the same
    domain, reads them at every row (the column index of its own row)."""
    n = 6
    x = gc.placeholder((n, n), "float64", name="x")
    r = gc.sum(x * x, axis=-1)
    x3 = gc.placeholder((3, n, n), "float64", name="x")
    r3 = gc.sum(x3, axis=-1)
    return {
        "sum": (x, gc.sum(gc.reshape(r, (1, n)) * x, axis=-1)),
        "max": (x, gc.max(x - gc.reshape(r, (1, n)), axis=-1)),
        "this-and-other-rows": (x, gc.sum(x * gc.reshape(r, (n, 1)) + gc.reshape(r, (1, n)),
                                          axis=-1)),
        "3-d": (x3, gc.sum(gc.reshape(r3, (3, 1, n)) * x3, axis=-1)),
    }


@pytest.mark.parametrize("case", list(_reads_other_rows()))
@pytest.mark.parametrize("threads", [1, 2])
def test_a_row_reduction_reading_another_at_every_row_is_not_fused_into_its_rows(case, threads):
    # fusion's horizontal row step put y[a] = sum_b r[b] * x[a, b] into the
    # row loop of r = sum(x * x, -1): row a read r[b] for rows b not yet
    # reduced (wrong values at opt_level >= 2; found while adding gc.topk)
    x, y = _reads_other_rows()[case]
    xv = np.random.default_rng(0).standard_normal(x.shape)
    want = gc.compile(y, [x], backend="interp")(xv)
    for level in (2, 3):
        got = gc.compile(y, [x], opt_level=level, threads=threads, cache=False)(xv)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("opt_level", [2, 3])
def test_a_transpose_of_a_row_kernel_value_is_not_merged_into_its_rows(opt_level):
    # d = w - sum(w, 1, keepdims) is computed in a row loop; t = d.T merged
    # into that kernel evaluated d[j, i] inline, reading the row sum of rows
    # j not reduced yet (vertical merge, and a second row reduction of d
    # joining: found by tests/test_fusion_fuzz.py's long run)
    w = gc.placeholder((4, 4), "float64", name="w")
    d = w - gc.sum(w, axis=1, keepdims=True)
    t, r = gc.transpose(d), gc.sum(d, axis=1)
    wv = np.array([[1, 0, 0, 2], [-1, 2, 1, -2], [-1, 2, 0, -2], [1, 1, 2, -2]], np.float64)
    for outs in ([t, d], [t, r, d], [t, r, r, d]):
        want = gc.compile(outs, [w], backend="interp")(wv)
        got = gc.compile(outs, [w], opt_level=opt_level, cache=False)(wv)
        for g, ref in zip(got, want):
            np.testing.assert_array_equal(g, ref)


def test_in_place_buffer_reused_while_still_read():
    """A GRU unrolled over 5 steps, its inputs' projection reversed per entry by a
    take at linear indices, states masked by a length (found while adding the ONNX
    GRU converter): PlanError at opt_level 3 (an in-place buffer reused while a
    later kernel read it, said the verifier); it compiles and matches since the
    fusion fuzz's fixes of the same stop (the verifier's write order, fusion's row
    checks)."""
    T, Bt, In, Hs = 5, 3, 4, 6
    r = np.random.default_rng(0)
    X = gc.placeholder((T, Bt, In), "float32", name="X")
    L = gc.placeholder((Bt,), "int32", name="L")
    W = gc.constant(r.standard_normal((In, 3 * Hs)).astype(np.float32))
    R = gc.constant(r.standard_normal((Hs, 3 * Hs)).astype(np.float32))
    ln = gc.reshape(gc.cast(L, "int64"), (Bt, 1))
    t_ = gc.constant(np.arange(T, dtype=np.int64).reshape(1, T))
    src = gc.where(t_ < ln, ln - 1 - t_, t_) + gc.constant(np.arange(Bt).reshape(Bt, 1) * T)

    def rev(v):                 # reverse each entry (axis 1) within its length along axis 0
        flat = gc.reshape(gc.transpose(v, (1, 0, 2)), (Bt * T, v.shape[2]))
        return gc.transpose(gc.take(flat, src, 0), (1, 0, 2))
    xw = rev(X @ W)
    h = zeros = gc.constant(np.zeros((Bt, Hs), np.float32))
    out = []
    for t in range(T):
        z = gc.sigmoid(xw[t][:, :Hs] + h @ R[:, :Hs])
        rr = gc.sigmoid(xw[t][:, Hs:2 * Hs] + h @ R[:, Hs:2 * Hs])
        hh = gc.tanh(xw[t][:, 2 * Hs:] + (rr * h) @ R[:, 2 * Hs:])
        new = (1.0 - z) * hh + z * h
        ok = gc.constant(np.int64(t)) < ln
        h = gc.where(ok, new, h)
        out.append(gc.where(ok, new, zeros))
    y = rev(gc.concatenate([gc.expand_dims(o, 0) for o in out], 0))
    xv = r.standard_normal((T, Bt, In)).astype(np.float32)
    lv = np.array([5, 2, 3], np.int32)
    want = gc.compile([y, h], [X, L], backend="interp")(xv, lv)
    got = gc.compile([y, h], [X, L], cache=False)(xv, lv)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gradient_of_values_picked_by_rank():
    """rank[i] = #{j: x[j] < x[i]}; v[r] = sum_i where(rank[i] == r, x[i], 0): d(w . v)/dx
    is w[rank]. Found while adding gc.topk: wrong at opt_level 3 (the axis-0 sum of the
    picks was accumulated in rank's row loop, reading ranks of rows not reduced yet),
    fixed with the fusion fuzz's bug A (fusion_merge._rows_stay_current)."""
    n = 5
    x = gc.placeholder((n,), "float64", name="x")
    xi, xj = gc.reshape(x, (n, 1)), gc.reshape(x, (1, n))
    rank = gc.sum(xj < xi, axis=-1)
    pick = gc.reshape(rank, (1, n)) == gc.constant(np.arange(n).reshape(n, 1))
    v = gc.sum(gc.where(pick, xj, 0.0), axis=-1)
    w = np.array([0.3, -1.2, 0.7, 2.0, -0.4])
    (g,) = gc.grad(gc.sum(v * gc.constant(w)), [x])
    xv = np.array([0.1, -0.8, 0.5, 1.1, -0.3])
    want = w[np.argsort(np.argsort(xv))]
    np.testing.assert_allclose(gc.compile(g, [x], backend="interp")(xv), want)
    np.testing.assert_allclose(gc.compile(g, [x], opt_level=3, cache=False)(xv), want)


def _row_sum_read_at_other_rows():
    """Steps that add work to the row kernel of r = sum(x, -1) other than by
    merging two kernels, each reading r at a column index."""
    x = gc.placeholder((4, 4), "float64", name="x")
    w = gc.placeholder((4, 4), "float64", name="w")
    r = gc.sum(x, axis=-1)
    d = x - gc.reshape(r, (4, 1))           # read at the current row
    return {
        # an accumulation: y[b] = sum_a x[a, b] + r[b]
        "accumulation": (x, w, [gc.sum(x + gc.reshape(r, (1, 4)), axis=0)]),
        "accumulation-and-row": (x, w, [gc.sum(x + gc.reshape(r, (1, 4)), axis=-1),
                                        gc.sum(x + gc.reshape(r, (1, 4)), axis=0)]),
        # a mask sunk into the producer of d: (d.T > 0)[a, b] reads r[b]
        "sunk-mask": (x, w, [gc.where(gc.transpose(d) > 0, w @ w, 0.0)]),
    }


@pytest.mark.parametrize("case", list(_row_sum_read_at_other_rows()))
def test_a_row_sum_read_at_other_rows_is_not_added_to_its_row_kernel(case):
    # fusion's accumulation step, and its sinking of a cheap consumer into its
    # producer, added a value reading r = sum(x, -1) at its column index to
    # r's row kernel: row a read r[b] for rows b not reduced yet (wrong values
    # at opt_level 3; found by tests/test_fusion_fuzz.py's long run)
    x, w, outs = _row_sum_read_at_other_rows()[case]
    xv = np.array([[2, 1, 0, -1], [-1, -2, -2, -2], [-2, 2, 1, 2], [0, 1, 2, 1]], np.float64)
    wv = np.array([[1, 0, 0, 2], [-1, 2, 1, -2], [-1, 2, 0, -2], [1, 1, 2, -2]], np.float64)
    want = gc.compile(outs, [x, w], backend="interp")(xv, wv)
    for threads in (1, 2):
        got = gc.compile(outs, [x, w], opt_level=3, threads=threads, cache=False)(xv, wv)
        for g, ref in zip(got, want):
            np.testing.assert_array_equal(g, ref)


def test_a_loop_output_in_place_of_its_kernels_gemm_result_verifies():
    # -x (stored for cumsum, an opaque op) merged into the GEMM kernel of
    # -(w @ x), which shares the input x; the memory plan wrote -x in place
    # of w @ x, which dies in that kernel's epilogue loop (sound: the loop
    # reads it at the index it writes), but the plan's verifier took the
    # kernel's writes in graph order, -x before the GEMM's, and refused the
    # plan with a PlanError at opt_level 3 (found by tests/test_fusion_fuzz.py)
    x = gc.placeholder((4, 4), "float64", name="x")
    w = gc.placeholder((4, 4), "float64", name="w")
    outs = [gc.cumsum(-x, axis=0), -(w @ x)]
    xv = np.arange(16.0).reshape(4, 4) % 5 - 2
    wv = np.arange(16.0).reshape(4, 4) % 3 - 1
    want = gc.compile(outs, [x, w], backend="interp")(xv, wv)
    for threads in (1, 2):
        got = gc.compile(outs, [x, w], opt_level=3, threads=threads, cache=False)(xv, wv)
        for g, ref in zip(got, want):
            np.testing.assert_array_equal(g, ref)


@pytest.mark.parametrize("opt_level", [2, 3])
def test_a_reduction_evaluated_inline_reading_a_row_sum_at_every_row_is_not_fused(opt_level):
    # r3[a, b] = sum_c (x[a, b] + h[c]), with h = sum(x, -1), is a reduction
    # over an axis of its own, evaluated inline in a kernel over (4, 4); the
    # row step fused h into that kernel's row loop (its check of who reads h
    # at which row followed only elementwise values), so row a read h[c] for
    # rows not reduced yet. The first call with other values leaves stale
    # row sums in the buffers, which a second call's wrong reads would find
    # (found while widening tests/test_fusion_fuzz.py)
    x = gc.placeholder((4, 4), "float64", name="x")
    h = gc.sum(x, axis=-1)
    u = x - gc.reshape(h, (4, 1))
    r3 = gc.sum(gc.reshape(x, (4, 4, 1)) + gc.reshape(h, (1, 1, 4)), axis=-1)
    xv = np.arange(16.0).reshape(4, 4) % 5 - 2
    for outs in ([u, r3], [r3, u], [u + r3], [u, r3, h]):
        want = gc.compile(outs, [x], backend="interp")(xv)
        f = gc.compile(outs, [x], opt_level=opt_level, cache=False)
        f(-xv)
        for g, ref in zip(f(xv), want):
            np.testing.assert_array_equal(g, ref)


def test_a_consumer_of_an_accumulation_is_not_sunk_into_the_kernel_accumulating_it():
    # s = sum(n, 0, keepdims) is accumulated by the GEMM kernel computing
    # n = -(a @ b); the mask n > n - s, read by another kernel, was sunk into
    # that kernel (which can free s then), where s is complete only after the
    # loop: "fusion bug: kernel reads its own accumulation" at opt_level 3
    # (found by tests/test_fusion_fuzz.py's wide grammar)
    x = gc.placeholder((3, 4), "float64", name="x")
    m = (-x) @ gc.transpose(x)
    n = -m
    out = gc.where(n > n - gc.sum(n, axis=0, keepdims=True), m, n)
    xv = np.arange(12.0).reshape(3, 4) % 5 - 2
    want = gc.compile(out, [x], backend="interp")(xv)
    np.testing.assert_array_equal(gc.compile(out, [x], opt_level=3, cache=False)(xv), want)
