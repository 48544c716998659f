"""The packed GEMM (graphc/backend/llvm/gemm.py) against numpy.

Two levels: the ``gemm_<dt>`` function called directly (strides, accumulate,
block edges, other vector widths, concurrent calls on row/column blocks), and
compiled graphs whose matmul kernels call it (shapes, transposes, batches,
gradients). Errors are checked against a rigorous bound for any summation
order: |C - A@B| <= 2 K eps (|A| @ |B|) (plus a tiny absolute slack)."""
from __future__ import annotations

import dataclasses
import re
import threading

import numpy as np
import pytest
from llvmlite import ir

import graphc as gc
from graphc.backend.llvm import gemm as G
from graphc.backend.llvm import matmul as MM
from graphc.backend.llvm.emit import ENTRY, ModuleEmitter
from graphc.backend.llvm.jit import JitModule
from graphc.backend.llvm.scalar import I32, I64, PTR
from graphc.backend.plan import is_immediate, plan_memory_naive, plan_unfused
from graphc.ir.graph import Graph
from graphc.runtime import NativeCall

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def gemm_calls(text: str, suffix: str = "f(32|64)") -> int:
    """Number of calls of the GEMM entry (graphc_gemm_f32 / _f64) in LLVM IR text."""
    return len(re.findall(r'call void @"?graphc_gemm_' + suffix + r'"?\(', text))


def check(c, a, b, c0=None, what=""):
    """c == a @ b (+ c0) within the summation error bound of its dtype."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = a64 @ b64
    scale = np.abs(a64) @ np.abs(b64)
    if c0 is not None:
        ref = ref + c0
        scale = scale + np.abs(c0)
    k = a.shape[-1]
    eps = np.finfo(c.dtype).eps
    bound = 2 * (k + 1) * eps * scale + np.finfo(c.dtype).tiny
    assert c.shape == ref.shape, what
    assert c.dtype == a.dtype, what
    assert np.all(np.isfinite(c)), f"{what}: non-finite values"
    err = np.abs(c - ref)
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else None
    assert np.all(err <= bound), f"{what}: error {err[worst]} > bound {bound[worst]} at {worst}"


# ----------------------------------------------------------------- direct calls
class Gemm:
    """gemm_<dt> JIT-compiled with a wrapper taking its 14 arguments as an i64 array."""

    def __init__(self, dtype, config=None):
        mod = ir.Module("gemm_test")
        f = G.emit_gemm(mod, dtype, config)
        fn = ir.Function(mod, ir.FunctionType(I32, [PTR]), "entry")
        b = ir.IRBuilder(fn.append_basic_block())
        vals = []
        for k, a in enumerate(f.args):
            x = b.load(b.gep(fn.args[0], [ir.Constant(I64, k)], source_etype=I64), typ=I64)
            if a.type == PTR:
                x = b.inttoptr(x, PTR)
            elif a.type == I32:
                x = b.trunc(x, I32)
            vals.append(x)
        b.call(f, vals)
        b.ret(ir.Constant(I32, 0))
        self.jit = JitModule.compile(str(mod), "entry")
        self.cfg = config or G.host_config(dtype)
        self.dtype = np.dtype(dtype)

    def __call__(self, a, b, c, accumulate=False, ws=None, ws_offset=0, rows=None, n=None):
        """c (+)= a @ b for 2-D numpy views with any strides (c: rows contiguous).
        With ``rows`` (int64 element offsets, one per row of B), ``b`` is a 1-D
        array and B[k, j] = b[rows[k] + j] for j < ``n``."""
        m, k = a.shape
        if rows is None:
            n = b.shape[1]
            rs_b, cs_b = b.strides[0] // b.itemsize, b.strides[1] // b.itemsize
        else:
            rs_b, cs_b = 0, 1
        assert c.size == 0 or c.strides[1] == c.itemsize
        if ws is None:
            ws = np.full(self.cfg.workspace_bytes(m, n, k) + ws_offset, 0xFF, np.uint8)
        it = a.itemsize
        args = np.array([m, n, k,
                         a.ctypes.data, a.strides[0] // it, a.strides[1] // it,
                         b.ctypes.data, rs_b, cs_b,
                         c.ctypes.data, c.strides[0] // it, int(accumulate),
                         ws.ctypes.data + ws_offset, 0 if rows is None else rows.ctypes.data],
                        np.int64)
        self.jit.cfunc(args.ctypes.data)


_GEMMS: dict = {}


def gemm_for(dtype, **overrides) -> Gemm:
    key = (np.dtype(dtype), tuple(sorted(overrides.items())))
    if key not in _GEMMS:
        cfg = G.host_config(dtype)
        if overrides:
            cfg = dataclasses.replace(cfg, **overrides)
        _GEMMS[key] = Gemm(dtype, cfg if overrides else None)
    return _GEMMS[key]


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


DIMS = [1, 2, 3, 7, 13, 14, 15, 16, 17, 31, 32, 33, 47, 64, 97, 130]


@pytest.mark.parametrize("dtype", [F32, F64])
def test_direct_shapes(dtype):
    """Every remainder of M % MR, N % NR and K % unroll, with primes."""
    g = gemm_for(dtype)
    rng = np.random.default_rng(1)
    shapes = [(m, n, k) for m in DIMS for n in (1, 5, 16, 33, 130) for k in (1, 3, 17, 64)]
    shapes += [(m, n, k) for m in (1, 29, 130) for n in DIMS for k in DIMS]
    for m, n, k in shapes:
        a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
        c = np.full((m, n), np.nan, dtype)
        g(a, b, c)
        check(c, a, b, what=f"{m}x{k} @ {k}x{n}")


@pytest.mark.parametrize("dtype", [F32, F64])
def test_direct_row_table(dtype):
    """B's rows by a table of offsets (an implicit im2col): rows anywhere in
    one buffer, repeated and out of order, across K and N blocks and edges;
    small M (where row-major B would be read in place, the table never is)."""
    g = gemm_for(dtype)
    rng = np.random.default_rng(5)
    for m, n, k in [(1, 1, 1), (5, 7, 3), (14, 33, 4), (29, 45, 61), (8, 130, 600), (70, 300, 9)]:
        base = rand(rng, (5000 + n,), dtype)
        rows = rng.integers(0, 5000, k).astype(np.int64)
        rows[: k // 3] = rows[0]                          # the same row several times
        a = rand(rng, (m, k), dtype)
        bmat = np.stack([base[r:r + n] for r in rows]) if k else np.zeros((0, n), dtype)
        for accumulate in (False, True):
            c0 = rand(rng, (m, n), dtype)
            c = c0.copy()
            g(a, base, c, accumulate=accumulate, rows=rows, n=n)
            want = a.astype(np.float64) @ bmat.astype(np.float64)
            if accumulate:
                want = want + c0
            tol = 1e-4 if dtype == F32 else 1e-12
            np.testing.assert_allclose(c, want, rtol=tol, atol=tol * k,
                                       err_msg=f"{m}x{k} @ rows x {n}, accumulate={accumulate}")


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("layout", ["NT", "TN", "TT", "strided"])
def test_direct_strides(dtype, layout):
    """Transposed and arbitrarily strided operands, without copies."""
    g = gemm_for(dtype)
    rng = np.random.default_rng(2)
    for m, n, k in [(1, 1, 1), (5, 7, 3), (14, 32, 4), (29, 45, 61), (130, 67, 129)]:
        if layout == "strided":
            a = rand(rng, (2 * m + 1, 3 * k), dtype)[1::2, ::3]
            b = rand(rng, (k, 2 * n), dtype)[:, ::2]
        else:
            a = rand(rng, (k, m), dtype).T if layout[0] == "T" else rand(rng, (m, k), dtype)
            b = rand(rng, (n, k), dtype).T if layout[1] == "T" else rand(rng, (k, n), dtype)
        full = np.full((m, n + 3), np.nan, dtype)       # C rows with a leading dimension > N
        c = full[:, 1:n + 1]
        g(a, b, c)
        check(c, a, b, what=f"{layout} {m}x{k} @ {k}x{n}")
        assert np.isnan(full[:, 0]).all() and np.isnan(full[:, n + 1:]).all(), "wrote outside C"


@pytest.mark.parametrize("dtype", [F32, F64])
def test_direct_accumulate_and_empty(dtype):
    g = gemm_for(dtype)
    rng = np.random.default_rng(3)
    for m, n, k in [(1, 1, 1), (15, 33, 7), (70, 50, 300)]:
        a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
        c0 = rand(rng, (m, n), dtype)
        c = c0.copy()
        g(a, b, c, accumulate=True)
        check(c, a, b, c0.astype(np.float64), what=f"accumulate {m}x{k} @ {k}x{n}")
    # K == 0: C = 0, or unchanged when accumulating
    a, b = np.empty((5, 0), dtype), np.empty((0, 9), dtype)
    c = np.full((5, 9), np.nan, dtype)
    g(a, b, c)
    assert (c == 0).all()
    c0 = rand(rng, (5, 9), dtype)
    c = c0.copy()
    g(a, b, c, accumulate=True)
    np.testing.assert_array_equal(c, c0)
    # M == 0 or N == 0: nothing is touched
    for a, b in [(np.empty((0, 4), dtype), rand(rng, (4, 3), dtype)),
                 (rand(rng, (3, 4), dtype), np.empty((4, 0), dtype))]:
        c = np.empty((a.shape[0], b.shape[1]), dtype)
        g(a, b, c)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("bits,fma", [(128, False), (256, True)])
def test_direct_narrow_vectors(dtype, bits, fma):
    """The configurations of SSE-only and AVX2 machines (run here: narrower
    vectors are a subset of this CPU's)."""
    cfg = G.make_config(dtype, bits, 16, fma, G.host_caches())
    assert cfg.mr == 6 and cfg.lanes == bits // (8 * np.dtype(dtype).itemsize)
    g = Gemm(dtype, cfg)
    rng = np.random.default_rng(4)
    for m, n, k in [(1, 1, 1), (6, 16, 4), (7, 17, 5), (61, 45, 130)]:
        a = rand(rng, (k, m), dtype).T
        b = rand(rng, (k, n), dtype)
        c = np.full((m, n), np.nan, dtype)
        g(a, b, c)
        check(c, a, b, what=f"{bits}-bit {m}x{k} @ {k}x{n}")


@pytest.mark.parametrize("dtype", [F32, F64])
def test_direct_small_blocks(dtype):
    """Tiny cache blocks, so every blocking loop runs several (uneven) times
    and B is repacked for every column block."""
    base = G.host_config(dtype)
    g = gemm_for(dtype, kc=8, mc=2 * base.mr, nc=2 * base.nr)
    rng = np.random.default_rng(5)
    for m, n, k in [(3, 5, 9), (2 * base.mr + 1, 2 * base.nr + 3, 17), (100, 150, 77)]:
        for layout in ("NN", "TT"):
            a = rand(rng, (k, m), dtype).T if layout[0] == "T" else rand(rng, (m, k), dtype)
            b = rand(rng, (n, k), dtype).T if layout[1] == "T" else rand(rng, (k, n), dtype)
            c0 = rand(rng, (m, n), dtype)
            c = c0.copy()
            g(a, b, c, accumulate=True)
            check(c, a, b, c0.astype(np.float64), what=f"small blocks {layout} {m}x{k} @ {k}x{n}")


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("in_place", [False, True])
def test_direct_b_read_in_place_or_packed(dtype, in_place):
    """Both ways of feeding B to the microkernel (packed, or read in place
    with the single-step k remainder loop) on the same shapes."""
    lim = dict(direct_m=10 ** 9, direct_bytes=1 << 62) if in_place else dict(direct_m=0)
    g = gemm_for(dtype, **lim)
    rng = np.random.default_rng(9)
    for m, n, k in [(1, 32, 1), (3, 64, 3), (14, 96, 5), (15, 33, 7), (40, 100, 401), (57, 130, 385)]:
        b_full = rand(rng, (k + 1, n + 5), dtype)
        b = b_full[1:, 2:n + 2]                          # row stride n + 5, offset start
        a = rand(rng, (m, k), dtype)
        c0 = rand(rng, (m, n), dtype)
        c = c0.copy()
        g(a, b, c, accumulate=True)
        check(c, a, b, c0.astype(np.float64), what=f"in_place={in_place} {m}x{k} @ {k}x{n}")


def test_workspace_alignment_and_size():
    """Any workspace pointer works (gemm aligns it), and the bytes it uses
    stay within gemm_workspace_bytes(dtype, m, n, k)."""
    g = gemm_for(F32)
    rng = np.random.default_rng(6)
    m, n, k = 45, 77, 150
    a, b = rand(rng, (m, k), F32), rand(rng, (k, n), F32)
    need = G.gemm_workspace_bytes(F32, m, n, k)
    assert need <= G.gemm_workspace_bytes(F32)
    for off in (0, 4, 8, 36):
        ws = np.full(need + off + 256, 0xAB, np.uint8)
        c = np.empty((m, n), F32)
        g(a, b, c, ws=ws, ws_offset=off)
        check(c, a, b, what=f"workspace offset {off}")
        assert (ws[:off] == 0xAB).all() and (ws[off + need:] == 0xAB).all(), "wrote outside workspace"


@pytest.mark.parametrize("split", ["rows", "cols"])
def test_concurrent_blocks(split):
    """Two threads on disjoint halves of C (offset pointers, own workspaces),
    at the same time: the way the caller parallelizes."""
    g = gemm_for(F32)
    rng = np.random.default_rng(7)
    m, n, k = 203, 190, 257
    a, b = rand(rng, (m, k), F32), rand(rng, (k, n), F32)
    c = np.full((m, n), np.nan, F32)
    h = (m if split == "rows" else n) // 2
    parts = ([(a[:h], b, c[:h]), (a[h:], b, c[h:])] if split == "rows"
             else [(a, b[:, :h], c[:, :h]), (a, b[:, h:], c[:, h:])])
    errors = []

    def work(x, y, z):
        try:
            for _ in range(3):
                g(x, y, z)
        except Exception as e:   # pragma: no cover - reported below
            errors.append(e)
    ts = [threading.Thread(target=work, args=p) for p in parts]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    check(c, a, b, what=f"split {split}")


def test_gemm_numpy_entry_point():
    """gemm_numpy: the host GEMM on numpy arrays (any strides, accumulate)."""
    rng = np.random.default_rng(8)
    for dt in (F32, F64):
        a, b = rand(rng, (90, 70), dt), rand(rng, (70, 110), dt)
        check(G.gemm_numpy(a, b), a, b, what="plain")
        check(G.gemm_numpy(a.T.copy().T, b[:, ::-1]), a, b[:, ::-1], what="transposed / negative stride")
        out = rand(rng, (90, 110), dt)
        c0 = out.astype(np.float64)
        assert G.gemm_numpy(a, b, out, accumulate=True) is out
        check(out, a, b, c0, what="accumulate")
        z = G.gemm_numpy(np.empty((3, 0), dt), np.empty((0, 4), dt))
        assert z.shape == (3, 4) and (z == 0).all()


def test_gemm_numpy_errors():
    from graphc.errors import DTypeError, ShapeError
    a32, b32 = np.ones((3, 4), F32), np.ones((4, 5), F32)
    with pytest.raises(ShapeError, match=r"contracted dimensions differ \(4 vs 5\)"):
        G.gemm_numpy(a32, np.ones((5, 4), F32))
    with pytest.raises(DTypeError, match="float32 and float64"):
        G.gemm_numpy(a32, b32.astype(F64))
    with pytest.raises(DTypeError, match="int64"):
        G.gemm_numpy(a32.astype(np.int64), b32.astype(np.int64))
    with pytest.raises(ShapeError, match="2-D"):
        G.gemm_numpy(np.ones(4, F32), b32)
    with pytest.raises(ShapeError, match="out must be a float32 array of shape"):
        G.gemm_numpy(a32, b32, np.empty((3, 4), F32))
    with pytest.raises(ValueError, match="contiguous rows"):
        G.gemm_numpy(a32, b32, np.empty((5, 3), F32).T)


def test_host_config_is_consistent():
    for dt in (F32, F64):
        cfg = G.host_config(dt)
        assert cfg.kc % cfg.ku == 0 and cfg.mc % cfg.mr == 0 and cfg.nc % cfg.nr == 0
        assert cfg.nvec >= 2 and cfg.mr >= 1
    with pytest.raises(TypeError, match="int32"):
        G.host_config(np.int32)


# ----------------------------------------------------------------- compiled graphs
@pytest.fixture
def always_gemm(monkeypatch):
    """Route every float matmul to the GEMM, whatever its size."""
    monkeypatch.setattr(MM, "GEMM_MIN_MACS", 0)
    monkeypatch.setattr(MM, "GEMM_MIN_M", 0)
    monkeypatch.setattr(MM, "GEMM_MIN_N", 0)


def compiled_matmul(build, *arrays):
    """Compile ``build(*placeholders)`` and run it on ``arrays``."""
    phs = [gc.placeholder(a.shape, a.dtype, name=f"in{i}") for i, a in enumerate(arrays)]
    f = gc.compile(build(*phs), inputs=phs)
    return f(*arrays), f


@pytest.mark.parametrize("dtype", [F32, F64])
def test_graph_shapes(dtype):
    rng = np.random.default_rng(10)
    for m, n, k in [(16, 32, 64), (17, 33, 65), (4, 130, 127), (130, 4, 97), (1, 300, 200), (8, 8, 8), (100, 100, 100), (5, 257, 31)]:
        a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
        c, f = compiled_matmul(lambda x, w: x @ w, a, b)
        big = m * n * k >= MM.GEMM_MIN_MACS and m >= MM.GEMM_MIN_M and n >= MM.GEMM_MIN_N
        assert bool(gemm_calls(f.llvm_ir)) == big, "GEMM used iff the product is big enough"
        check(c, a, b, what=f"graph {m}x{k} @ {k}x{n}")


def test_tiny_matmul_uses_loop():
    """1x16 @ 16x32 (batch-1 inference) stays on the loop nest."""
    rng = np.random.default_rng(11)
    a, b = rand(rng, (1, 16), F32), rand(rng, (16, 32), F32)
    c, f = compiled_matmul(lambda x, w: x @ w, a, b)
    assert not gemm_calls(f.llvm_ir)
    check(c, a, b)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_graph_all_sizes_through_gemm(dtype, always_gemm):
    """Below the size threshold too, the GEMM path is correct (0-size dims included)."""
    rng = np.random.default_rng(12)
    for m, n, k in [(1, 1, 1), (1, 16, 32), (2, 3, 5), (13, 29, 7), (0, 4, 3), (3, 0, 4),
                    (3, 4, 0), (0, 0, 0)]:
        a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
        c, f = compiled_matmul(lambda x, w: x @ w, a, b)
        # an empty product has no kernel at all (nothing to store)
        assert bool(gemm_calls(f.llvm_ir)) == (m * n > 0), (m, n, k)
        check(c, a, b, what=f"{m}x{k} @ {k}x{n}")


@pytest.mark.parametrize("dtype", [F32, F64])
def test_graph_transposed_operands(dtype, always_gemm):
    rng = np.random.default_rng(13)
    m, n, k = 37, 41, 43
    at, bt = rand(rng, (k, m), dtype), rand(rng, (n, k), dtype)
    a, b = at.T, bt.T
    for build in (lambda x, y: gc.transpose(x) @ y.T,
                  lambda x, y: gc.swapaxes(x, 0, 1) @ gc.transpose(y, (1, 0))):
        c, _ = compiled_matmul(build, at, bt)
        check(c, a, b, what="transposed")
    a3, b3 = np.stack([at, 2 * at]), rand(rng, (k, n), dtype)
    c3, _ = compiled_matmul(lambda x, y: gc.swapaxes(x, -1, -2) @ y, a3, b3)
    for i in range(2):
        check(c3[i], a3[i].T, b3, what=f"batched swapaxes {i}")


def compile_fused(outputs, inputs):
    """Compile with every transpose/broadcast_to chain feeding a matmul made a
    member of the matmul kernel (as the fusion pass may), so the GEMM reads
    the underlying buffer through strides."""
    graph = Graph(list(outputs), list(inputs), [])
    kernels = plan_unfused(graph)
    for kern in kernels:
        if kern.kind != "matmul":
            continue
        for x in kern.root.inputs:
            while x.op in ("transpose", "broadcast_to"):
                kern.members.add(x.id)
                x = x.inputs[0]
    mem = plan_memory_naive(graph, kernels)
    me = ModuleEmitter(graph, kernels, mem)
    text = str(me.emit())
    jit = JitModule.compile(text, ENTRY)
    native = NativeCall(jit, me.layout, me.arena_size, me.errors)

    def call(*arrays):
        res = [np.empty(o.shape, o.dtype) for o in graph.outputs]
        native([np.ascontiguousarray(a) for a in arrays], res)
        return res
    call.keep = jit
    return call, text


@pytest.mark.parametrize("dtype", [F32, F64])
def test_fused_transposes_read_as_strides(dtype, always_gemm):
    rng = np.random.default_rng(14)
    m, n, k = 33, 47, 70
    at, bt = rand(rng, (k, m), dtype), rand(rng, (n, k), dtype)
    x = gc.placeholder(at.shape, dtype, name="x")
    y = gc.placeholder(bt.shape, dtype, name="y")
    outs = [gc.transpose(x) @ y.T, x.T.T.T @ gc.swapaxes(y, 0, 1)]
    f, text = compile_fused(outs, [x, y])
    assert gemm_calls(text) == 2
    c1, c2 = f(at, bt)
    check(c1, at.T, bt.T, what="A.T @ B.T")
    check(c2, at.T, bt.T, what="A.T.T.T @ swapaxes(B)")
    # strides, not copies: the plan points at the placeholders themselves
    plan = MM.plan_matmul(outs[0], {outs[0].id, outs[0].inputs[0].id, outs[0].inputs[1].id},
                         lambda v: not is_immediate(v))
    assert plan.a is x and plan.b is y
    assert (plan.rs_a, plan.cs_a, plan.rs_b, plan.cs_b) == (1, m, 1, k)


def test_fused_transpose_shape_check(always_gemm):
    """A.T @ B where only A is transposed (the other operand plain)."""
    rng = np.random.default_rng(15)
    m, n, k = 20, 50, 60
    at, b = rand(rng, (k, m), F32), rand(rng, (k, n), F32)
    x = gc.placeholder(at.shape, F32, name="x")
    y = gc.placeholder(b.shape, F32, name="y")
    f, _ = compile_fused([gc.transpose(x) @ y], [x, y])
    check(f(at, b)[0], at.T, b)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_fused_batched_transposes_and_broadcast(dtype, always_gemm):
    rng = np.random.default_rng(16)
    xa = rand(rng, (3, 40, 50), dtype)          # used as swapaxes -> (3, 50, 40)
    yb = rand(rng, (40, 25), dtype)             # broadcast to (3, 40, 25)
    x = gc.placeholder(xa.shape, dtype, name="x")
    y = gc.placeholder(yb.shape, dtype, name="y")
    yy = gc.broadcast_to(y, (3, 40, 25))
    f, text = compile_fused([gc.swapaxes(x, -1, -2) @ yy], [x, y])
    assert gemm_calls(text)
    got = f(xa, yb)[0]
    for i in range(3):
        check(got[i], xa[i].T, yb, what=f"batch {i}")


@pytest.mark.parametrize("dtype", [F32, F64])
def test_graph_batched_broadcast(dtype, always_gemm):
    rng = np.random.default_rng(17)
    cases = [((2, 3, 20, 30), (3, 30, 25)),     # batch broadcast on a leading axis
             ((20, 30), (4, 30, 25)),            # shared A
             ((4, 20, 30), (30, 25)),            # shared B: folded into M
             ((2, 1, 20, 30), (1, 3, 30, 25)),   # both broadcast
             ((1, 20, 30), (1, 30, 25)),
             ((0, 20, 30), (30, 25))]            # empty batch
    for sa, sb in cases:
        a, b = rand(rng, sa, dtype), rand(rng, sb, dtype)
        c, f = compiled_matmul(lambda x, w: x @ w, a, b)
        ref_shape = np.broadcast_shapes(sa[:-2], sb[:-2]) + (sa[-2], sb[-1])
        assert c.shape == ref_shape
        ab, bb = np.broadcast_to(a, ref_shape[:-2] + sa[-2:]), np.broadcast_to(b, ref_shape[:-2] + sb[-2:])
        for idx in np.ndindex(*ref_shape[:-2]):
            check(c[idx], ab[idx], bb[idx], what=f"{sa} @ {sb} at {idx}")


def test_batched_shared_b_is_one_call():
    x = gc.placeholder((4, 20, 30), F32, name="x")
    w = gc.placeholder((30, 25), F32, name="w")
    y = x @ w
    plan = MM.plan_matmul(y, {y.id}, lambda v: True, force=True)
    assert plan.batch == () and plan.m == 80
    z = gc.placeholder((20, 30), F32, name="z") @ gc.placeholder((4, 30, 25), F32, name="v")
    plan = MM.plan_matmul(z, {z.id}, lambda v: True, force=True)
    assert plan.batch == (4,) and plan.bstride_a == (0,) and plan.bstride_b == (750,)


def test_int_matmul_keeps_loop():
    rng = np.random.default_rng(18)
    a = rng.integers(-5, 5, (40, 50)).astype(np.int32)
    b = rng.integers(-5, 5, (50, 60)).astype(np.int32)
    c, f = compiled_matmul(lambda x, w: x @ w, a, b)
    assert not gemm_calls(f.llvm_ir)
    np.testing.assert_array_equal(c, a @ b)


def test_gradients_through_gemm(always_gemm):
    """Matmul gradients (A @ B.T and A.T @ B products) against the interpreter."""
    rng = np.random.default_rng(19)
    a, b = rand(rng, (80, 60), F64), rand(rng, (60, 50), F64)
    x = gc.placeholder(a.shape, F64, name="x")
    w = gc.placeholder(b.shape, F64, name="w")
    loss = gc.sum(gc.tanh(x @ w))
    grads = gc.grad(loss, [x, w])
    f = gc.compile(grads, inputs=[x, w])
    assert gemm_calls(f.llvm_ir, "f64") >= 3
    gi = gc.compile(grads, inputs=[x, w], backend="interp")(a, b)
    for got, exp in zip(f(a, b), gi):
        np.testing.assert_allclose(got, exp, rtol=1e-10, atol=1e-10)


def test_several_gemm_kernels_share_workspace(always_gemm):
    rng = np.random.default_rng(20)
    a, b, c = rand(rng, (60, 80), F32), rand(rng, (80, 50), F32), rand(rng, (50, 300), F32)
    x, y, z = (gc.placeholder(v.shape, F32, name=nm) for v, nm in ((a, "x"), (b, "y"), (c, "z")))
    xy = x @ y
    f = gc.compile([xy, xy @ z, gc.cast(x, "float64") @ gc.cast(y, "float64")], inputs=[x, y, z])
    assert gemm_calls(f.llvm_ir, "f32") == 2 and gemm_calls(f.llvm_ir, "f64") == 1
    got_xy, got, got64 = f(a, b, c)
    check(got_xy, a, b, what="x @ y")
    check(got, got_xy, c, what="(x @ y) @ z")
    check(got64, a.astype(np.float64), b.astype(np.float64))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [F32, F64])
def test_big_sizes(dtype):
    rng = np.random.default_rng(30)
    for m, n, k in [(512, 512, 512), (1024, 1024, 1024), (1000, 1100, 1300), (3, 2000, 4099)]:
        a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
        c, f = compiled_matmul(lambda x, w: x @ w, a, b)
        check(c, a, b, what=f"{m}x{k} @ {k}x{n}")
        ct, _ = compiled_matmul(lambda x, w: gc.transpose(x) @ w.T, np.ascontiguousarray(a.T),
                                np.ascontiguousarray(b.T))
        check(ct, a, b, what=f"transposed {m}x{k} @ {k}x{n}")


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_loop_nest_with_transposed_b(dtype):
    """Below the GEMM's thresholds (few rows), a B whose columns are contiguous
    (x @ w.T) runs as a dot product per element along k: values against numpy,
    batched and broadcast operands, k = 1, and a stored (not view) B."""
    rng = np.random.default_rng(9)
    cases = [((1, 300), (70, 300)), ((3, 2, 17), (3, 9, 17)), ((2, 1), (5, 1)), ((1, 64), (2, 64)),
             ((2, 5, 33), (1, 40, 33))]
    for xs, ws in cases:
        x = (rng.standard_normal(xs) * 4).astype(dtype)
        w = (rng.standard_normal(ws) * 4).astype(dtype)
        X = gc.placeholder(xs, dtype, name="x")
        W = gc.placeholder(ws, dtype, name="w")
        wt = gc.swapaxes(W, -1, -2)
        for y, want in ((X @ wt, x @ np.swapaxes(w, -1, -2)),
                        (X @ gc.swapaxes(gc.exp(W * 0.01), -1, -2) if dtype != "int64" else X @ wt,
                         x @ np.swapaxes(np.exp(w * 0.01) if dtype != "int64" else w, -1, -2))):
            f = gc.compile(y, inputs=[X, W])
            assert all(s.matmul_plan is None for s in f.plan.steps)      # (the loop nest)
            got = f(x, w)
            if dtype == "int64":
                np.testing.assert_array_equal(got, want)
            else:
                tol = 1e-4 if dtype == "float32" else 1e-12
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol * xs[-1] * 16)
