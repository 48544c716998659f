"""The converters added for issue 14's second round (Einsum, TopK, the
trigonometric ops, GatherND, ReverseSequence, BitShift, the windows, SwiGLU,
Upsample) against onnxruntime on inputs beyond the node tests', and their
errors, which name the node and what is unsupported."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

import graphc.onnx  # noqa: E402, F401

T = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
     np.dtype(np.int32): TensorProto.INT32, np.dtype(np.int64): TensorProto.INT64}


def _model(node, feeds, opset=18, inits=()):
    ins = [helper.make_tensor_value_info(k, T[v.dtype], v.shape) for k, v in feeds.items()]
    outs = [helper.make_empty_tensor_value_info(o) for o in node.output]
    g = helper.make_graph([node], "t", ins, outs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _check(node, feeds, opset=18, rtol=1e-6, inits=()):
    """graphc's import of a one-node model gives onnxruntime's outputs."""
    m = _model(node, feeds, opset, inits)
    want = ort.InferenceSession(m.SerializeToString()).run(None, feeds)
    got = gc.onnx.load(m).compile()(**feeds)
    for w, g in zip(want, got):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, w.dtype, g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-6)


rng = np.random.default_rng(0)


@pytest.mark.parametrize("eq,shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk", [(2, 3, 4), (2, 4, 2)]), ("ii->i", [(4, 4)]), ("bii->b", [(2, 3, 3)]),
    ("ij,ij->i", [(3, 4), (3, 4)]), ("i,j,k->ijk", [(2,), (3,), (4,)]), ("ijk->", [(2, 3, 4)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]), ("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 5), (5, 2)])])
def test_einsum_matches_onnxruntime(eq, shapes):
    feeds = {f"x{k}": rng.standard_normal(s).astype(np.float32) for k, s in enumerate(shapes)}
    _check(helper.make_node("Einsum", list(feeds), ["y"], equation=eq), feeds, opset=12, rtol=1e-5)


@pytest.mark.parametrize("largest", [1, 0])
@pytest.mark.parametrize("dt", [np.float32, np.int64])
def test_topk_matches_onnxruntime(largest, dt):
    x = rng.integers(-4, 5, (3, 7, 5)).astype(dt)             # many ties
    k = np.array([3], np.int64)
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest)
    _check(node, {"x": x}, inits=[helper.make_tensor("k", TensorProto.INT64, [1], k)])


def test_topk_gradient_goes_to_the_picked_elements():
    x = gc.placeholder((2, 5), "float64", name="x")
    v, _ = gc.topk(x, 2, axis=1)
    (g,) = gc.grad(gc.sum(v * gc.constant(np.array([[1.0, 10.0]]))), [x])
    xv = np.array([[0.5, 3.0, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 0.0, 7.0]])
    want = np.zeros((2, 5))
    want[0, 1], want[0, 3], want[1, 4], want[1, 0] = 1, 10, 1, 10
    np.testing.assert_array_equal(gc.compile(g)(x=xv), want)


@pytest.mark.parametrize("op", ["Atan", "Asin", "Acos", "Tan", "Sinh", "Cosh", "Asinh", "Acosh",
                                "Atanh"])
def test_trig_matches_onnxruntime(op):
    x = rng.uniform(-0.99, 0.99, (4, 6)).astype(np.float32)
    if op == "Acosh":
        x = 1.0 + np.abs(x) * 5
    _check(helper.make_node(op, ["x"], ["y"]), {"x": x}, rtol=3e-6)


def test_gathernd_and_reverse_sequence_take_graph_inputs():
    data = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    ind = np.array([[[0, -1], [2, 3]], [[1, 0], [-3, 1]]], np.int64)      # (2, 2, 2)
    _check(helper.make_node("GatherND", ["d", "i"], ["y"], batch_dims=1), {"d": data, "i": ind})
    _check(helper.make_node("GatherND", ["d", "i"], ["y"]), {"d": data, "i": ind[:, :, :1] % 2})
    x = rng.standard_normal((5, 3, 2)).astype(np.float32)
    lens = np.array([5, 1, 3], np.int64)
    _check(helper.make_node("ReverseSequence", ["x", "l"], ["y"], batch_axis=1, time_axis=0),
           {"x": x, "l": lens})


def test_bitshift_windows_swiglu_upsample():
    # (onnxruntime has BitShift for unsigned types only: numpy's shifts are the oracle;
    # a shift < 0 or >= the width gives the sign fill alone, as ONNX defines)
    x = np.array([1, -7, 2 ** 30, -(2 ** 31), 5, -3, -3, 9, -9], np.int32)
    y = np.array([1, 2, 1, 0, 31, 31, 32, -1, 40], np.int32)
    ok = (y >= 0) & (y < 32)
    ys = np.where(ok, y, 0)
    for d, want in (("LEFT", np.where(ok, np.left_shift(x, ys), 0)),
                    ("RIGHT", np.where(ok, np.right_shift(x, ys), np.where(x < 0, -1, 0)))):
        m = _model(helper.make_node("BitShift", ["x", "y"], ["z"], direction=d), {"x": x, "y": y})
        np.testing.assert_array_equal(gc.onnx.load(m).compile()(x, y)[0], want.astype(np.int32))
    for op in ("HannWindow", "HammingWindow", "BlackmanWindow"):
        for periodic in (0, 1):
            _check(helper.make_node(op, ["n"], ["w"], periodic=periodic), {},
                   inits=[helper.make_tensor("n", TensorProto.INT64, [], [9])], rtol=1e-5)
    a, b = (rng.standard_normal((2, 6)).astype(np.float32) for _ in range(2))
    m = _model(helper.make_node("SwiGLU", ["a", "b"], ["y"], alpha=0.7), {"a": a, "b": b}, 28)
    (got,) = gc.onnx.load(m).compile()(a, b)
    np.testing.assert_allclose(got, a / (1 + np.exp(-0.7 * a)) * b, rtol=1e-6)
    u = rng.standard_normal((1, 2, 2, 3)).astype(np.float32)
    _check(helper.make_node("Upsample", ["u", "s"], ["y"], mode="nearest"), {"u": u}, opset=9,
           inits=[helper.make_tensor("s", TensorProto.FLOAT, [4], [1, 1, 2, 3])])


@pytest.mark.parametrize("node,feeds,match", [
    (helper.make_node("Einsum", ["a", "b"], ["y"], equation="ij,jk->iq", name="e1"),
     {"a": np.ones((2, 3), np.float32), "b": np.ones((3, 4), np.float32)},
     r"Einsum node 'e1'.*output subscript\(s\) \['q'\] are in no input"),
    (helper.make_node("Einsum", ["a"], ["y"], equation="ij,jk", name="e2"),
     {"a": np.ones((2, 3), np.float32)}, r"Einsum node 'e2'.*2 input term\(s\) for 1 operand"),
    (helper.make_node("TopK", ["x", "k"], ["v", "i"], name="t1"),
     {"x": np.ones((2, 3), np.float32), "k": np.array([2], np.int64)},
     r"TopK node 't1'.*input 1 \(k, 'k'\) must be known when the model is loaded"),
    (helper.make_node("BitShift", ["x", "y"], ["z"], direction="UP", name="b1"),
     {"x": np.ones(2, np.int32), "y": np.ones(2, np.int32)},
     r"BitShift node 'b1'.*direction must be 'LEFT' or 'RIGHT'"),
    (helper.make_node("GatherND", ["d", "i"], ["y"], name="g1"),
     {"d": np.ones((2, 3), np.float32), "i": np.zeros((2, 3), np.int64)},
     r"GatherND node 'g1'.*last dimension 3 must be from 1 to 2"),
])
def test_converter_errors_name_the_node(node, feeds, match):
    with pytest.raises(gc.onnx.OnnxImportError, match=match):
        gc.onnx.load(_model(node, feeds, opset=18))


def test_topk_k_out_of_range_is_named():
    m = _model(helper.make_node("TopK", ["x", "k"], ["v", "i"], name="t2"),
               {"x": np.ones((2, 3), np.float32)},
               inits=[helper.make_tensor("k", TensorProto.INT64, [1], [4])])
    with pytest.raises(gc.onnx.OnnxImportError, match=r"TopK node 't2'.*K = 4 is outside \[0, 3\]"):
        gc.onnx.load(m)


# ------------------------------------------------------------- control flow

def _graph(name, nodes, ins, outs, inits=()):
    return helper.make_graph(nodes, name, ins, outs, list(inits))


def _vi(name, t, shape):
    return helper.make_tensor_value_info(name, t, shape)


def _if_model(cond_from_shape=True):
    """y = x * 2 if x has 3 rows (or if the input cond) else x - 1; both branches read
    the outer x by name."""
    F = TensorProto.FLOAT
    then_g = _graph("then", [helper.make_node("Mul", ["x", "two"], ["t"])], [], [_vi("t", F, [3, 4])],
                    [helper.make_tensor("two", F, [], [2.0])])
    else_g = _graph("else", [helper.make_node("Sub", ["x", "one"], ["e"])], [], [_vi("e", F, [3, 4])],
                    [helper.make_tensor("one", F, [], [1.0])])
    nodes, ins = [], [_vi("x", F, [3, 4])]
    if cond_from_shape:
        nodes += [helper.make_node("Shape", ["x"], ["s"]),
                  helper.make_node("Gather", ["s", "zero"], ["rows"], axis=0),
                  helper.make_node("Equal", ["rows", "three"], ["c"])]
    else:
        ins.append(_vi("c", TensorProto.BOOL, []))
    nodes.append(helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g,
                                  name="if1"))
    inits = [helper.make_tensor("zero", TensorProto.INT64, [], [0]),
             helper.make_tensor("three", TensorProto.INT64, [], [3])]
    g = _graph("m", nodes, ins, [_vi("y", F, [3, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_if_with_a_condition_known_at_load_imports_the_taken_branch():
    x = rng.standard_normal((3, 4)).astype(np.float32)
    m = _if_model()
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    g = gc.onnx.load(m)
    np.testing.assert_array_equal(g.compile()(x)[0], want)
    assert "sub" not in {n.op for n in gc.Graph(g.outputs).nodes}       # the other branch is not imported
    m2 = _if_model(cond_from_shape=False)
    with pytest.raises(gc.onnx.DynamicInputError, match=r"If node 'if1'.*input 0 \(cond"):
        gc.onnx.load(m2)
    for c in (True, False):
        want = ort.InferenceSession(m2.SerializeToString()).run(None, {"x": x, "c": np.array(c)})[0]
        got = gc.onnx.load(m2, constants={"c": np.array(c)}).compile()(x)[0]
        np.testing.assert_array_equal(got, want)


def _loop_model(trip, data_dependent=False):
    """y_k = y_{k-1} * w + k, a scan output of every y_k; cond_out is true (or, if
    data_dependent, sum(y) < 100, a graph value)."""
    F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
    body_nodes = [helper.make_node("Cast", ["i"], ["fi"], to=F),
                  helper.make_node("Mul", ["y_in", "w"], ["yw"]),
                  helper.make_node("Add", ["yw", "fi"], ["y_out"]),
                  helper.make_node("Identity", ["y_out"], ["scan"])]
    if data_dependent:
        body_nodes += [helper.make_node("ReduceSum", ["y_out"], ["s"], keepdims=0),
                       helper.make_node("Less", ["s", "hundred"], ["c_out"])]
    else:
        body_nodes.append(helper.make_node("Identity", ["c_in"], ["c_out"]))
    body = _graph("body", body_nodes, [_vi("i", I64, []), _vi("c_in", B, []), _vi("y_in", F, [2])],
                  [_vi("c_out", B, []), _vi("y_out", F, [2]), _vi("scan", F, [2])],
                  [helper.make_tensor("hundred", F, [], [100.0])])
    loop = helper.make_node("Loop", ["M", "", "y0"], ["y", "ys"], body=body, name="loop1")
    g = _graph("m", [loop], [_vi("y0", F, [2]), _vi("w", F, [2])],
               [_vi("y", F, [2]), _vi("ys", F, [trip, 2])],
               [helper.make_tensor("M", I64, [], [trip])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_loop_with_a_constant_trip_count_is_unrolled():
    y0, w = np.array([1.0, -2.0], np.float32), np.array([0.5, 1.5], np.float32)
    m = _loop_model(5)
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"y0": y0, "w": w})
    g = gc.onnx.load(m)
    got = g.compile()(y0, w)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # the unrolled loop differentiates: d y_5 / d y0 = w**5
    (gy,) = gc.grad(gc.sum(g.outputs[0]), [g.inputs["y0"]])
    np.testing.assert_allclose(gc.compile(gy, list(g.inputs.values()))(y0, w), w ** 5, rtol=1e-6)


def test_loop_errors():
    with pytest.raises(gc.onnx.OnnxImportError,
                       match=r"Loop node 'loop1'.*cond_out \(iteration 0\) depends on graph values"):
        gc.onnx.load(_loop_model(3, data_dependent=True))
    from graphc.onnx import ops_control
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ops_control, "UNROLL_LIMIT", 4)
        with pytest.raises(gc.onnx.OnnxImportError, match=r"Loop node 'loop1'.*5 iterations: "
                           r"graphc unrolls Loop and stops at 4"):
            gc.onnx.load(_loop_model(5))


def test_scan_matches_onnxruntime():
    """Scan-9: a running sum over axis 1 read backwards, its outputs stacked on axis 1."""
    F = TensorProto.FLOAT
    body = _graph("body", [helper.make_node("Add", ["acc", "xt"], ["acc_out"]),
                           helper.make_node("Mul", ["acc_out", "xt"], ["yt"])],
                  [_vi("acc", F, [3]), _vi("xt", F, [3])], [_vi("acc_out", F, [3]), _vi("yt", F, [3])])
    scan = helper.make_node("Scan", ["a0", "x"], ["a", "y"], body=body, num_scan_inputs=1,
                            scan_input_axes=[1], scan_input_directions=[1], scan_output_axes=[1])
    g = _graph("m", [scan], [_vi("a0", F, [3]), _vi("x", F, [3, 6])],
               [_vi("a", F, [3]), _vi("y", F, [3, 6])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"a0": rng.standard_normal(3).astype(np.float32),
             "x": rng.standard_normal((3, 6)).astype(np.float32)}
    want = ort.InferenceSession(m.SerializeToString()).run(None, feeds)
    got = gc.onnx.load(m).compile()(**feeds)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5)


# ------------------------------------------------------------- recurrent layers

def _rnn_case(op, gates, direction="bidirectional", lens=None, layout=0, **attrs):
    T, Bt, In, Hs = 5, 3, 4, 6
    ndir = 2 if direction == "bidirectional" else 1
    r = np.random.default_rng(len(op) + len(direction))
    f32 = np.float32
    feeds = {"X": r.standard_normal((Bt, T, In) if layout else (T, Bt, In)).astype(f32)}
    inits = [("W", r.standard_normal((ndir, gates * Hs, In)).astype(f32) * 0.5),
             ("R", r.standard_normal((ndir, gates * Hs, Hs)).astype(f32) * 0.5),
             ("B", r.standard_normal((ndir, 2 * gates * Hs)).astype(f32) * 0.1)]
    names = ["X", "W", "R", "B"]
    if lens is not None:
        feeds["L"] = np.array(lens, np.int32)
        names.append("L")
    h0 = r.standard_normal((Bt, ndir, Hs) if layout else (ndir, Bt, Hs)).astype(f32)
    feeds["H0"] = h0
    names += [""] * (4 - len(names) + 1) if lens is None else []
    names = names[:4] + (["L"] if lens is not None else [""]) + ["H0"]
    outs = ["Y", "Yh"] + (["Yc"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, hidden_size=Hs, direction=direction, layout=layout,
                            **attrs)
    m = _model(node, feeds, opset=14,
               inits=[helper.make_tensor(k, TensorProto.FLOAT, v.shape, v.ravel()) for k, v in inits])
    want = ort.InferenceSession(m.SerializeToString()).run(None, feeds)
    g = gc.onnx.load(m)
    got = g.compile()(**feeds)
    for w, o in zip(want, got):
        assert o.shape == w.shape
        np.testing.assert_allclose(o, w, rtol=2e-5, atol=2e-6)
    return g


@pytest.mark.parametrize("op,gates", [("RNN", 1), ("GRU", 3), ("LSTM", 4)])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_recurrent_layers_match_onnxruntime(op, gates, direction):
    _rnn_case(op, gates, direction)
    _rnn_case(op, gates, direction, lens=[5, 2, 3])          # per-entry lengths, a graph input


def test_recurrent_attributes_match_onnxruntime():
    _rnn_case("GRU", 3, linear_before_reset=1)
    _rnn_case("LSTM", 4, "forward", clip=0.7)
    _rnn_case("RNN", 1, "bidirectional", activations=["Relu", "Affine"],
              activation_alpha=[0.5], activation_beta=[0.1])


def test_recurrent_layer_gradients_are_finite_differences():
    g = _rnn_case("LSTM", 4, "bidirectional", lens=[5, 2, 3])
    x = g.inputs["X"]
    w = g.params["W"]
    loss = gc.sum(gc.cast(g.outputs[0], "float64") ** 2.0)
    (gw,) = gc.grad(loss, [w])
    r = np.random.default_rng(9)
    feeds = [r.standard_normal(p.shape).astype(np.float32) if p.dtype == np.float32
             else np.array([5, 2, 3], np.int32) for p in g.inputs.values()]
    f = gc.compile([loss, gw], list(g.inputs.values()))
    _, gwv = f(*feeds)
    # central differences in float32 on a few entries of W
    w0 = np.asarray(w.value).copy()
    for idx in [(0, 0, 0), (1, 5, 2), (0, 20, 3)]:
        vals = []
        for s in (1, -1):
            w.value[idx] = w0[idx] + s * 1e-2
            vals.append(gc.compile(loss, list(g.inputs.values()), cache=False)(*feeds))
            w.value[idx] = w0[idx]
        np.testing.assert_allclose(gwv[idx], (vals[0] - vals[1]) / 2e-2, rtol=2e-2, atol=1e-3)
    del x


# ------------------------------------------------------------- DFT, RotaryEmbedding

@pytest.mark.parametrize("inverse,onesided,c,length", [
    (0, 0, 1, None), (0, 0, 2, None), (0, 1, 1, None), (1, 0, 2, None), (1, 1, 2, None),
    (0, 0, 2, 12), (0, 1, 1, 7), (1, 0, 2, 6)])
def test_dft_matches_numpy(inverse, onesided, c, length):
    x = rng.standard_normal((2, 9, 3, c))
    ins = ["x", "len" if length else "", "axis"]
    inits = [helper.make_tensor("axis", TensorProto.INT64, [], [1])]
    if length:
        inits.append(helper.make_tensor("len", TensorProto.INT64, [], [length]))
    node = helper.make_node("DFT", ins, ["y"], inverse=inverse, onesided=onesided)
    (got,) = gc.onnx.load(_model(node, {"x": x}, opset=20, inits=inits)).compile()(x)
    z = x[..., 0] if c == 1 else x[..., 0] + 1j * x[..., 1]
    n = length or (2 * (9 - 1) if inverse and onesided else 9)
    if inverse and onesided:
        want = np.fft.irfft(z, n=n, axis=1)[..., None]
    else:
        y = (np.fft.ifft if inverse else np.fft.fft)(z, n=n, axis=1)
        y = y[:, :n // 2 + 1] if onesided and not inverse else y
        want = np.stack([y.real, y.imag], -1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("interleaved,rd", [(0, 0), (1, 0), (0, 4), (1, 4)])
def test_rotary_embedding_matches_onnx_reference(interleaved, rd):
    from onnx.reference import ReferenceEvaluator
    feeds = {"x": rng.standard_normal((2, 3, 5, 8)).astype(np.float32),
             "cos": rng.standard_normal((16, (rd or 8) // 2)).astype(np.float32),
             "sin": rng.standard_normal((16, (rd or 8) // 2)).astype(np.float32),
             "pos": rng.integers(0, 16, (2, 5)).astype(np.int64)}
    node = helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"],
                            interleaved=interleaved, rotary_embedding_dim=rd)
    m = _model(node, feeds, opset=23)
    (want,) = ReferenceEvaluator(m).run(None, feeds)
    (got,) = gc.onnx.load(m).compile()(**feeds)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_col2im_and_affine_grid_match_the_onnx_reference():
    from onnx.reference import ReferenceEvaluator
    x = rng.standard_normal((2, 3 * 2 * 3, 12)).astype(np.float32)   # C=3, block 2x3, 3x4 blocks
    inits = [helper.make_tensor("img", TensorProto.INT64, [2], [6, 7]),
             helper.make_tensor("blk", TensorProto.INT64, [2], [2, 3])]
    node = helper.make_node("Col2Im", ["x", "img", "blk"], ["y"], strides=[2, 2], pads=[1, 0, 1, 1],
                            dilations=[1, 1])
    m = _model(node, {"x": x}, inits=inits)
    (want,) = ReferenceEvaluator(m).run(None, {"x": x})
    np.testing.assert_allclose(gc.onnx.load(m).compile()(x)[0], want, rtol=1e-6, atol=1e-6)
    theta = rng.standard_normal((2, 2, 3)).astype(np.float32)
    for ac in (0, 1):
        node = helper.make_node("AffineGrid", ["t", "s"], ["g"], align_corners=ac)
        m = _model(node, {"t": theta}, opset=20,
                   inits=[helper.make_tensor("s", TensorProto.INT64, [4], [2, 3, 4, 5])])
        (want,) = ReferenceEvaluator(m).run(None, {"t": theta})
        np.testing.assert_allclose(gc.onnx.load(m).compile()(theta)[0], want, rtol=1e-6, atol=1e-6)


def _vs_reference(node, feeds, opset, inits=(), rtol=1e-6):
    from onnx.reference import ReferenceEvaluator
    m = _model(node, feeds, opset, inits)
    want = ReferenceEvaluator(m).run(None, feeds)
    got = gc.onnx.load(m).compile()(**feeds)
    for w, g in zip(want, got):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-6)


def test_causal_conv_tensor_scatter_max_unpool_match_the_onnx_reference():
    f32 = np.float32
    for k in (1, 3):
        feeds = {"x": rng.standard_normal((2, 4, 6)).astype(f32),
                 "w": rng.standard_normal((4, 1, k)).astype(f32),
                 "b": rng.standard_normal(4).astype(f32),
                 "p": rng.standard_normal((2, 4, k - 1)).astype(f32)}
        _vs_reference(helper.make_node("CausalConvWithState", ["x", "w", "b", "p"], ["y", "s"],
                                       activation="silu"), feeds, 27)
    for mode in ("linear", "circular"):
        feeds = {"past": rng.standard_normal((3, 2, 7, 4)).astype(f32),
                 "upd": rng.standard_normal((3, 2, 3, 4)).astype(f32),
                 "wi": np.array([0, 4, 6 if mode == "circular" else 2], np.int64)}
        _vs_reference(helper.make_node("TensorScatter", ["past", "upd", "wi"], ["y"], mode=mode,
                                       axis=2), feeds, 24)
    x = rng.standard_normal((2, 3, 4, 4)).astype(f32)
    pool = helper.make_node("MaxPool", ["x"], ["p", "i"], kernel_shape=[2, 2], strides=[2, 2])
    from onnx.reference import ReferenceEvaluator
    pm = _model(pool, {"x": x}, 12)
    p, i = ReferenceEvaluator(pm).run(None, {"x": x})
    _vs_reference(helper.make_node("MaxUnpool", ["p", "i"], ["y"], kernel_shape=[2, 2],
                                   strides=[2, 2]), {"p": p, "i": i}, 12)


@pytest.mark.parametrize("rule", ["linear", "gated", "delta", "gated_delta"])
def test_linear_attention_matches_the_onnx_reference(rule):
    f32, B, T, hq, hk, dk, dv = np.float32, 2, 5, 4, 2, 3, 2
    feeds = {"q": rng.standard_normal((B, T, hq * dk)).astype(f32),
             "k": rng.standard_normal((B, T, hk * dk)).astype(f32) * 0.5,
             "v": rng.standard_normal((B, T, hk * dv)).astype(f32),
             "s": rng.standard_normal((B, hk, dk, dv)).astype(f32)}
    names = ["q", "k", "v", "s"]
    if rule in ("gated", "gated_delta"):
        feeds["g"] = -np.abs(rng.standard_normal((B, T, hk * dk))).astype(f32)
    names.append("g" if "g" in feeds else "")
    if rule in ("delta", "gated_delta"):
        feeds["b"] = rng.uniform(0, 1, (B, T, hk)).astype(f32)
        names.append("b")
    node = helper.make_node("LinearAttention", names, ["y", "state"], update_rule=rule,
                            q_num_heads=hq, kv_num_heads=hk)
    _vs_reference(node, feeds, 27, rtol=1e-5)


@pytest.mark.parametrize("kw", [dict(left_window_size=2), dict(right_window_size=1, is_causal=0),
                                dict(left_window_size=1, right_window_size=1, is_causal=1)])
def test_attention_windows_and_an_external_cache_match_the_onnx_reference(kw):
    f32 = np.float32
    feeds = {"q": rng.standard_normal((2, 4, 3, 8)).astype(f32),
             "k": rng.standard_normal((2, 2, 6, 8)).astype(f32),
             "v": rng.standard_normal((2, 2, 6, 5)).astype(f32),
             "m": rng.standard_normal((3, 6)).astype(f32),
             "nonpad": np.array([6, 4], np.int64)}
    node = helper.make_node("Attention", ["q", "k", "v", "m", "", "", "nonpad"], ["y"], **kw)
    _vs_reference(node, feeds, 25, rtol=1e-5)


@pytest.mark.parametrize("red", ["mul", "max", "min"])
def test_scatter_reductions_match_onnxruntime(red):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    ind = np.array([[0, 1, 1], [3, 3, 3], [2, 0, 2]], np.int64)       # repeated targets
    upd = rng.standard_normal((3, 3)).astype(np.float32)
    _check(helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=1, reduction=red),
           {"x": x, "i": ind, "u": upd})
    ind_nd = np.array([[1], [3], [1]], np.int64)
    upd_nd = rng.standard_normal((3, 5)).astype(np.float32)
    _check(helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction=red),
           {"x": x, "i": ind_nd, "u": upd_nd})


def test_det_matches_numpy_with_its_gradient():
    for shape in [(1, 1), (3, 2, 2), (2, 3, 3), (4, 4), (2, 5, 5)]:
        a = rng.standard_normal(shape)
        m = _model(helper.make_node("Det", ["a"], ["d"]), {"a": a})
        g = gc.onnx.load(m)
        np.testing.assert_allclose(g.compile()(a)[0], np.linalg.det(a), rtol=1e-10, atol=1e-12)
        (ga,) = gc.grad(gc.sum(g.outputs[0]), [g.inputs["a"]])     # det(A) A^-T
        want = np.linalg.det(a)[..., None, None] * np.swapaxes(np.linalg.inv(a), -1, -2)
        np.testing.assert_allclose(gc.compile(ga, [g.inputs["a"]])(a), want, rtol=1e-8, atol=1e-10)
    with pytest.raises(gc.onnx.OnnxImportError, match=r"Det node 'd6'.*6 x 6 matrices"):
        gc.onnx.load(_model(helper.make_node("Det", ["a"], ["d"], name="d6"),
                            {"a": np.ones((6, 6))}))


def test_stft_matches_the_onnx_reference():
    x = rng.standard_normal((2, 40, 1)).astype(np.float32)
    win = np.hanning(10).astype(np.float32)
    inits = [helper.make_tensor("step", TensorProto.INT64, [], [4]),
             helper.make_tensor("w", TensorProto.FLOAT, [10], win)]
    for onesided in (0, 1):
        node = helper.make_node("STFT", ["x", "step", "w"], ["y"], onesided=onesided)
        _vs_reference(node, {"x": x}, 17, inits=inits, rtol=1e-4)


def test_scan8_runs_its_body_per_batch_entry():
    F = TensorProto.FLOAT
    body = _graph("body", [helper.make_node("Mul", ["acc", "xt"], ["acc_out"]),
                           helper.make_node("Identity", ["acc_out"], ["yt"])],
                  [_vi("acc", F, [2]), _vi("xt", F, [2])], [_vi("acc_out", F, [2]), _vi("yt", F, [2])])
    scan = helper.make_node("Scan", ["", "a0", "x"], ["a", "y"], body=body, num_scan_inputs=1)
    g = _graph("m", [scan], [_vi("a0", F, [3, 2]), _vi("x", F, [3, 4, 2])],
               [_vi("a", F, [3, 2]), _vi("y", F, [3, 4, 2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 8)])
    a0 = rng.standard_normal((3, 2)).astype(np.float32)
    x = rng.standard_normal((3, 4, 2)).astype(np.float32)
    a, y = gc.onnx.load(m).compile()(a0, x)
    want = a0[:, None, :] * np.cumprod(x, axis=1)
    np.testing.assert_allclose(y, want, rtol=1e-6)
    np.testing.assert_allclose(a, want[:, -1], rtol=1e-6)
