"""Every movement op's index rule (``OpDef.index_map``, graphc/ops/index.py)
against numpy, under each of its three interpreters.

numpy is the oracle: the op's ``ref`` evaluated on inputs filled with
distinct numbers (input k holds ``base_k + 1 + arange``) says, for every
output element, which input element it is (or that it is zero). The LLVM
emitter must compute the same values, the symbolic interpreter must name
the same source index, and the strided interpreter must give a view exactly
when numpy's answer is affine, and then reproduce it.

Adding a movement op means adding its rule and a line to SAMPLES:
``test_every_view_op_has_samples`` fails until the new op is covered.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm import matmul as MM
from graphc.backend.plan import input_indices, is_immediate
from graphc.ops import registry
from graphc.ops.index import Lin, is_movement, strided_view, symbolic_reads
from graphc.ops.registry import make

# op -> [(input shapes, attributes)]; hostile shapes on purpose: zero-size and
# size-1 axes, negative steps, reshapes with 1s
SAMPLES = {
    "reshape": [(((2, 3, 4),), {"shape": (6, 4)}), (((2, 3, 4),), {"shape": (2, 12)}),
                (((2, 3, 4),), {"shape": (4, 6)}), (((2, 3, 4),), {"shape": (2, 3, 1, 4)}),
                (((1, 6, 1),), {"shape": (2, 3)}), (((2, 1, 3),), {"shape": (3, 1, 2)}),
                (((0, 3),), {"shape": (3, 0)}), (((24,),), {"shape": (2, 3, 4)}),
                (((1,),), {"shape": ()})],
    "transpose": [(((2, 3, 4),), {"axes": (2, 0, 1)}), (((1, 3),), {"axes": (1, 0)}),
                  (((0, 2, 3),), {"axes": (1, 2, 0)}), (((3, 1, 2, 2),), {"axes": (3, 1, 0, 2)})],
    "broadcast_to": [(((3, 1),), {"shape": (2, 3, 4)}), (((),), {"shape": (2, 3)}),
                     (((1,),), {"shape": (0,)}), (((1, 1),), {"shape": (1, 5)}),
                     (((2, 3),), {"shape": (2, 2, 3)})],
    "slice": [(((5, 6),), {"starts": (1, 5), "stops": (4, -1), "steps": (1, -2)}),
              (((5,),), {"starts": (4,), "stops": (-1,), "steps": (-1,)}),
              (((4, 3),), {"starts": (2, 0), "stops": (2, 3), "steps": (1, 1)}),
              (((1, 7),), {"starts": (0, 1), "stops": (1, 7), "steps": (1, 3)}),
              (((3, 4, 2),), {"starts": (2, 3, 0), "stops": (-1, 0, 2), "steps": (-1, -3, 1)})],
    "unslice": [(((2, 3),), {"shape": (5, 7), "starts": (1, 6), "stops": (3, 0),
                             "steps": (1, -2)}),
                (((3, 4),), {"shape": (3, 4), "starts": (0, 3), "stops": (3, -1),
                             "steps": (1, -1)}),
                (((2, 2),), {"shape": (4, 2), "starts": (0, 0), "stops": (4, 2),
                             "steps": (3, 1)}),
                (((0, 2),), {"shape": (3, 2), "starts": (1, 0), "stops": (1, 2),
                             "steps": (1, 1)}),
                (((1, 1),), {"shape": (1, 4), "starts": (0, 2), "stops": (1, 3),
                             "steps": (1, 1)})],
    "concatenate": [(((2, 3), (2, 0), (2, 4)), {"axis": 1}), (((0, 3), (2, 3)), {"axis": 0}),
                    (((1, 2), (1, 2), (1, 2)), {"axis": 0}), (((3,), (1,)), {"axis": 0}),
                    (((2, 0), (2, 0)), {"axis": 1})],
    "windows": [(((2, 5, 6),), {"kernel": (2, 3), "stride": (1, 2), "dilation": (2, 1)}),
                (((7,),), {"kernel": (3,), "stride": (2,), "dilation": (1,)}),
                (((1, 3, 4, 4),), {"kernel": (4, 4), "stride": (1, 1), "dilation": (1, 1)}),
                (((0, 4, 3),), {"kernel": (2, 2), "stride": (1, 1), "dilation": (1, 1)}),
                (((2, 3, 3, 4),), {"kernel": (1, 2, 2), "stride": (2, 1, 3), "dilation": (1, 1, 1)})],
}
CASES = [(op, shapes, attrs) for op, ss in SAMPLES.items() for shapes, attrs in ss]
IDS = [f"{op}-{shapes}-{sorted(attrs.items())}" for op, shapes, attrs in CASES]


def arange_inputs(shapes):
    """Input k: ``base_k + 1 + arange`` (float64), all values distinct and > 0."""
    out, base = [], 0
    for s in shapes:
        size = int(np.prod(s, dtype=np.int64))
        out.append((base + 1 + np.arange(size, dtype=np.float64)).reshape(s))
        base += size
    return out


def build(op, shapes, attrs):
    phs = [gc.placeholder(s, "float64", name=f"in{k}") for k, s in enumerate(shapes)]
    return phs, make(op, phs, dict(attrs))


def numpy_reads(node, arrays):
    """{output index: None (zero) or (input position, source index)} from the
    op's numpy reference on ``arrays``."""
    out = np.asarray(registry.get(node.op).ref(*arrays, **node.attrs))
    bases = np.cumsum([0] + [a.size for a in arrays])
    where = {}
    for idx in np.ndindex(*out.shape):
        v = int(out[idx])
        if v == 0:
            where[idx] = None
            continue
        k = int(np.searchsorted(bases, v - 1, side="right") - 1)
        where[idx] = (k, tuple(int(i) for i in np.unravel_index(v - 1 - bases[k],
                                                              arrays[k].shape)))
    return out, where


def numpy_affine(out_shape, where, in_shapes):
    """``(input, offset, strides)`` when every element comes from one input at
    an address affine in the output index, else None (also when empty)."""
    if not where or any(w is None for w in where.values()):
        return None
    if len({w[0] for w in where.values()}) != 1:
        return None
    k = next(iter(where.values()))[0]
    addr = {idx: int(np.ravel_multi_index(w[1], in_shapes[k])) for idx, w in where.items()}
    zero = (0,) * len(out_shape)
    strides = tuple(addr[zero[:j] + (1,) + zero[j + 1:]] - addr[zero] if n > 1 else 0
                    for j, n in enumerate(out_shape))
    if any(a != addr[zero] + sum(i * s for i, s in zip(idx, strides)) for idx, a in addr.items()):
        return None
    return k, addr[zero], strides


def test_every_view_op_has_samples():
    views = {name for name, d in registry.OPS.items() if d.builtin and is_movement(d)}
    assert views == set(SAMPLES), (
        f"movement ops without samples here: {sorted(views - set(SAMPLES))}; "
        f"samples of ops that are not view ops: {sorted(set(SAMPLES) - views)}")
    for name in views:    # every view op has its index rule and no other lowering
        d = registry.get(name)
        assert d.kind == "index" and d.lower_at is None and d.index_map is not None


# ---------------------------------------------------------------------- LLVM

@pytest.mark.parametrize("opt_level", [0, 3])
@pytest.mark.parametrize("op,shapes,attrs", CASES, ids=IDS)
def test_llvm_matches_numpy(op, shapes, attrs, opt_level):
    phs, node = build(op, shapes, attrs)
    arrays = arange_inputs(shapes)
    ref = registry.get(op).ref(*arrays, **node.attrs)
    f = gc.compile([node, node * 2.0], phs, opt_level=opt_level, cache=False)
    got, twice = f(*arrays)
    np.testing.assert_array_equal(got, ref)           # stored by its own kernel
    np.testing.assert_array_equal(twice, 2.0 * ref)   # inlined into a consumer's loop


# ------------------------------------------------------------------ symbolic

def _value(v, env):
    """An index value of the symbolic interpreter at the point ``env``."""
    if v is None or isinstance(v, int):
        return v
    if isinstance(v, Lin):
        return v.const + sum(c * env[s] for s, c in v.terms)
    return env[v]


@pytest.mark.parametrize("op,shapes,attrs", CASES, ids=IDS)
def test_symbolic_at_points_is_where_numpy_reads(op, shapes, attrs):
    """At an integer index the symbolic interpreter knows every condition, so
    it names the one element numpy reads (none for a zero of unslice)."""
    phs, node = build(op, shapes, attrs)
    _, where = numpy_reads(node, arange_inputs(shapes))
    for idx, w in where.items():
        got = symbolic_reads(node, idx, [0])
        assert got == input_indices(node, idx, [0])       # plan's entry point is this one
        want = [] if w is None else [(phs[w[0]], w[1])]
        assert got == want, f"at {idx}: symbolic {got}, numpy {want}"


@pytest.mark.parametrize("op,shapes,attrs", CASES, ids=IDS)
def test_symbolic_forms_are_sound(op, shapes, attrs):
    """At symbolic indices every index the interpreter claims to know, valued
    at each output index, is where numpy reads (conditions are unknown, so
    the element read is among the reads listed)."""
    phs, node = build(op, shapes, attrs)
    _, where = numpy_reads(node, arange_inputs(shapes))
    syms = tuple(("i", k) for k in range(node.ndim))
    reads = symbolic_reads(node, syms, [0])
    for idx, w in where.items():
        if w is None:
            continue
        env = dict(zip(syms, idx))
        ok = [inp is phs[w[0]] and all(v is None or _value(v, env) == s
                                       for v, s in zip(at, w[1])) for inp, at in reads]
        assert any(ok), f"at {idx}: numpy reads input {w[0]} at {w[1]}; symbolic: {reads}"


def test_symbolic_precision():
    """As precise as the hand-written chain it replaced, and more (slices,
    unslice, concatenate, reshapes adding 1s)."""
    i = tuple(("i", k) for k in range(5))
    x = gc.placeholder((2, 3, 4), "float32", name="x")
    cases = [
        (gc.transpose(x, (2, 0, 1)), [(x, (i[1], i[2], i[0]))]),
        (gc.broadcast_to(gc.placeholder((3, 1), "float32", name="b"), (2, 3, 4)), None),
        (gc.reshape(x, (2, 12)), [(x, (i[0], None, None))]),
        (gc.reshape(x, (2, 3, 1, 4)), [(x, (i[0], i[1], i[3]))]),
        (gc.reshape(x, (1, 2, 3, 4)), [(x, (i[1], i[2], i[3]))]),
        (x[1:, ::2, ::-1], [(x, (Lin(1, ((i[0], 1),)), Lin(0, ((i[1], 2),)),
                                 Lin(3, ((i[2], -1),))))]),
        (gc.concatenate([x, x * 2.0], axis=2), None),
        (gc.sum(x, axis=1), [(x, (i[0], ("r", 1), i[1]))]),
        (gc.one_hot(gc.placeholder((2, 3), "int32", name="lab"), 5), None),
    ]
    for node, want in cases:
        got = input_indices(node, i[:node.ndim], [0])
        if node.op == "broadcast_to":
            want = [(node.inputs[0], (i[1], 0))]
        elif node.op == "concatenate":       # x at i, x*2 at i - 4 where i >= 4
            want = [(node.inputs[1], (i[0], i[1], Lin(-4, ((i[2], 1),)))),
                    (x, (i[0], i[1], i[2]))]
        elif node.op == "one_hot":
            want = [(node.inputs[0], (i[0], i[1]))]
        assert got == want, (node.op, got, want)
    y = gc.placeholder((4,), "float32", name="y")
    assert input_indices(x + y, i[:3], [0]) == [(x, i[:3]), (y, (i[2],))]


# ------------------------------------------------------------------- strided

def _check_view(view, phs, arrays, where, what):
    k = [p.id for p in phs].index(view.buffer.id)
    flat = arrays[k].reshape(-1)
    for idx, w in where.items():
        addr = view.offset + sum(i * s for i, s in zip(idx, view.strides))
        assert 0 <= addr < flat.size, f"{what}: {idx} -> address {addr} outside the buffer"
        want = 0.0 if w is None else arrays[w[0]][w[1]]
        assert flat[addr] == want, f"{what}: element {idx}: view reads {flat[addr]}, numpy {want}"


@pytest.mark.parametrize("op,shapes,attrs", CASES, ids=IDS)
def test_strided_is_a_view_exactly_when_numpy_is_affine(op, shapes, attrs):
    phs, node = build(op, shapes, attrs)
    arrays = arange_inputs(shapes)
    out, where = numpy_reads(node, arrays)
    view = strided_view(node, lambda m: m is node, lambda m: True)
    if out.size == 0:
        return                             # nothing is read: any answer is right
    if numpy_affine(out.shape, where, shapes) is None:
        # several inputs or zeros: not one buffer read through strides
        assert view is None, f"{op} is not a view of one buffer, got {view}"
        return
    assert view is not None, f"{op}: numpy reads one buffer, the interpreter says no view"
    _check_view(view, phs, arrays, where, op)


def random_view_chain(rng, x, depth):
    """A chain of ``depth`` random view ops on ``x``."""
    y = x
    for _ in range(depth):
        choice = rng.integers(5)
        if choice == 0 and y.ndim:
            y = gc.transpose(y, tuple(int(a) for a in rng.permutation(y.ndim)))
        elif choice == 1 and y.ndim:
            key = []
            for s in y.shape:
                a, b = sorted(int(v) for v in rng.integers(0, s + 1, 2))
                st = int(rng.choice([1, 2, -1, -2]))
                key.append(slice(a, b, st) if st > 0 else slice(b - 1 if b else None,
                                                                 a - 1 if a else None, st))
            y = y[tuple(key)]
        elif choice == 2 and y.ndim < 4:
            y = gc.expand_dims(y, int(rng.integers(y.ndim + 1)))
            y = gc.broadcast_to(y, (int(rng.integers(1, 3)),) + y.shape)
        elif choice == 3 and y.ndim >= 2:     # merge two neighbouring axes
            a = int(rng.integers(y.ndim - 1))
            y = gc.reshape(y, y.shape[:a] + (y.shape[a] * y.shape[a + 1],) + y.shape[a + 2:])
        elif choice == 4 and y.ndim and y.shape[-1] % 2 == 0:   # split the last axis
            y = gc.reshape(y, y.shape[:-1] + (2, y.shape[-1] // 2))
    return y


def _chain_members(y, x):
    out, stack = set(), [y]
    while stack:
        n = stack.pop()
        if n is not x and n.id not in out:
            out.add(n.id)
            stack.extend(n.inputs)
    return out


def test_strided_chains_never_give_a_wrong_stride():
    rng = np.random.default_rng(11)
    x = gc.placeholder((4, 6, 2), "float64", name="x")
    xa = arange_inputs([x.shape])[0]
    views = 0
    for trial in range(300):
        y = random_view_chain(rng, x, int(rng.integers(1, 5)))
        if y is x:
            continue
        members = _chain_members(y, x)
        view = strided_view(y, lambda m: m.id in members, lambda m: True)
        ref = gc.compile(y, [x], backend="interp")(xa)
        where = {idx: (0, tuple(int(i) for i in np.unravel_index(int(ref[idx]) - 1, x.shape)))
                 for idx in np.ndindex(*ref.shape)}
        if view is not None and ref.size:
            views += 1
            _check_view(view, [x], [xa], where, f"chain {trial}")
    assert views > 100        # most random chains of these ops are views


def test_strided_contiguous_merges_and_splits():
    x = gc.placeholder((4, 6, 2), "float64", name="x")
    xa = arange_inputs([x.shape])[0]
    # (what numpy's reshape does without a copy, and fails to)
    views = [gc.reshape(x, (24, 2)), gc.reshape(x[1:3], (12, 2)),
             gc.reshape(x[1:3], (2, 3, 2, 2)), gc.reshape(gc.transpose(x, (1, 0, 2)), (6, 4, 1, 2)),
             gc.reshape(x[::-1], (4, 12)), gc.reshape(x[:, :, :1], (24,)),
             gc.reshape(x[:, ::2, ::-1][1:], (3, 3, 2)),
             gc.transpose(gc.reshape(x, (4, 3, 4)), (2, 0, 1))[1:, ::-1]]
    not_views = [gc.reshape(x[:, 1:5, :1], (16,)),          # strides 12 and 2 over (4, 4)
                 gc.reshape(x[:, 1:5], (16, 2)), gc.reshape(x[::-1], (24, 2)),
                 gc.reshape(gc.transpose(x, (1, 0, 2)), (24, 2)),
                 gc.reshape(gc.broadcast_to(gc.reshape(x, (1, 48)), (2, 48)), (96,))]
    for y, is_view_ in [(v, True) for v in views] + [(v, False) for v in not_views]:
        members = _chain_members(y, x)
        view = strided_view(y, lambda m: m.id in members, lambda m: True)
        ref = gc.compile(y, [x], backend="interp")(xa)
        if not is_view_:
            assert view is None, y
            continue
        assert view is not None, y
        where = {idx: (0, tuple(int(i) for i in np.unravel_index(int(ref[idx]) - 1, x.shape)))
                 for idx in np.ndindex(*ref.shape)}
        _check_view(view, [x], [xa], where, repr(y))


# ------------------------------------------------- views as GEMM operands

@pytest.fixture
def always_gemm(monkeypatch):
    monkeypatch.setattr(MM, "GEMM_MIN_MACS", 0)
    monkeypatch.setattr(MM, "GEMM_MIN_M", 0)
    monkeypatch.setattr(MM, "GEMM_MIN_N", 0)


GEMM_CASES = {   # name -> (shapes, build, a view the GEMM reads in place at opt_level 3)
    "slices": (((13, 20), (60, 9)), lambda x, w: x[1:, ::-1] @ w[::3, 2:], True),
    "merge": (((2, 5, 7), (7, 6)), lambda x, w: gc.reshape(x, (10, 7)) @ w, True),
    "merge_of_slice": (((2, 5, 7), (7, 6)), lambda x, w: gc.reshape(x[:, :, ::-1], (10, 7)) @ w,
                       True),
    "transposed_merge": (((5, 2, 7), (7, 6)),
                         lambda x, w: gc.reshape(gc.transpose(x, (1, 0, 2)), (10, 7)) @ w, False),
    "broadcast_rows": (((1, 7), (7, 6)), lambda v, w: gc.broadcast_to(v, (5, 7)) @ w, True),
    "batched": (((3, 8, 6), (4, 5)), lambda x, w: gc.swapaxes(x[:, ::2, ::-1], -1, -2) @ w, True),
    "split": (((24,), (6, 5)), lambda v, w: gc.reshape(v, (4, 6)) @ w.T.T, True),
    "ones": (((6, 7), (7, 6)),
             lambda x, w: gc.reshape(x, (1, 6, 1, 7))[0, :, 0, 1:] @ gc.transpose(w)[:, 1:], True),
    "one_row": (((6, 7), (7, 16)), lambda x, w: x[2:3] @ w, True),
    "empty_rows": (((6, 7), (7, 6)), lambda x, w: x[3:3] @ w, False),
    "empty_k": (((6, 7), (7, 6)), lambda x, w: x[:, 4:4] @ w[4:4], False),
}


@pytest.mark.parametrize("opt_level", [0, 1, 2, 3])
@pytest.mark.parametrize("name", sorted(GEMM_CASES))
def test_view_chains_as_gemm_operands(name, opt_level, always_gemm):
    shapes, fn, in_place = GEMM_CASES[name]
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(s) for s in shapes]
    phs = [gc.placeholder(s, "float64", name=f"in{k}") for k, s in enumerate(shapes)]
    y = fn(*phs)
    f = gc.compile(y, phs, opt_level=opt_level, cache=False)
    want = gc.compile(y, phs, backend="interp")(*arrays)       # numpy's views and matmul
    np.testing.assert_allclose(f(*arrays), want, rtol=1e-12, atol=1e-12)
    if opt_level == 3 and in_place:
        (k,) = [k for k in f.kernels if k.matmul is not None]
        plan = MM.plan_matmul(k.matmul, k.members, lambda v: not is_immediate(v))
        assert plan is not None and {plan.a.op, plan.b.op} == {"placeholder"}, plan
        assert f.num_kernels == 1      # no view was materialized


def test_updates_through_slices_are_correct():
    """The symbolic interpreter now follows slices and concatenations: an
    update that reads its parameter only at the index it writes may be
    written in place, one that reads it shifted (a roll) may not."""
    p0 = np.arange(1.0, 7.0)
    p = gc.parameter(p0.copy(), name="p")
    q = gc.parameter(p0.copy(), name="q")
    f = gc.compile(gc.sum(p), updates={p: gc.concatenate([p[:3] * 2.0, p[3:] + 1.0]),
                                       q: gc.concatenate([q[3:], q[:3]])})
    f()
    np.testing.assert_array_equal(p.value, np.concatenate([p0[:3] * 2, p0[3:] + 1]))
    np.testing.assert_array_equal(q.value, np.roll(p0, -3))
    written = {getattr(v, "id", v) for v in f.memory.direct.values()}
    assert p.id in written and q.id not in written, f.memory.direct


@pytest.mark.parametrize("rows", [True, False])
def test_views_in_a_gemm_split_across_threads(rows):
    """Two threads each take rows (or columns) of C of a GEMM whose operands
    are reversed, sliced views: every share starts at the right element."""
    rng = np.random.default_rng(5)
    m, n = (200, 90) if rows else (90, 200)
    xa, wa = rng.standard_normal((m + 3, 128)), rng.standard_normal((256, n + 1))
    x = gc.placeholder(xa.shape, "float64", name="x")
    w = gc.placeholder(wa.shape, "float64", name="w")
    y = x[2:m + 2, ::-1] @ w[::-2, 1:]
    f = gc.compile(y, [x, w], threads=2, cache=False)
    np.testing.assert_allclose(f(xa, wa), xa[2:m + 2, ::-1] @ wa[::-2, 1:], rtol=1e-12, atol=1e-12)
    (k,) = f.kernels
    plan = MM.plan_matmul(k.matmul, k.members, lambda v: not is_immediate(v))
    assert plan.a is x and plan.b is w and plan.cs_a == -1 and plan.rs_b == -2 * (n + 1)
