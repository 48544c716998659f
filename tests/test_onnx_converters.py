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
