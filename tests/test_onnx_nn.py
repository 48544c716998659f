"""BatchNormalization in training mode and Dropout's training mode with ratio
0 (graphc/onnx/ops_nn.py, ops_shape.py) against onnx.reference, the refusal
of a random Dropout, and 3-d ConvTranspose against onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from test_onnx_converters import _model, _vs_reference  # noqa: E402

import graphc.onnx  # noqa: E402, F401


def test_batchnorm_training_mode_matches_the_onnx_reference():
    r = np.random.default_rng(0)
    f32 = np.float32
    feeds = {"x": r.standard_normal((4, 3, 5, 2)).astype(f32) * 2 + 1,
             "s": r.standard_normal(3).astype(f32), "b": r.standard_normal(3).astype(f32),
             "m": r.standard_normal(3).astype(f32), "v": r.uniform(0.5, 2, 3).astype(f32)}
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"],
                            training_mode=1, momentum=0.8, epsilon=1e-3)
    _vs_reference(node, feeds, 15, rtol=1e-5)


def test_dropout_training_mode():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for ratio, ok in ((0.0, True), (0.3, False)):
        inits = [helper.make_tensor("r", TensorProto.FLOAT, [], [ratio]),
                 helper.make_tensor("t", TensorProto.BOOL, [], [True])]
        node = helper.make_node("Dropout", ["x", "r", "t"], ["y", "mask"], name="drop")
        m = _model(node, {"x": x}, 13, inits)
        if ok:
            y, mask = gc.onnx.load(m).compile()(x)
            np.testing.assert_array_equal(y, x)
            assert mask.dtype == bool and mask.all()
        else:
            with pytest.raises(gc.onnx.OnnxImportError, match=r"Dropout node 'drop'.*ratio 0.3"):
                gc.onnx.load(m)


@pytest.mark.parametrize("kw", [dict(), dict(strides=[2, 1, 2], pads=[1, 0, 0, 0, 1, 1]),
                                dict(group=2, dilations=[1, 2, 1], output_padding=[1, 0, 0],
                                     strides=[2, 1, 1])])
def test_conv_transpose_3d_matches_onnxruntime(kw):
    ort = pytest.importorskip("onnxruntime")
    r = np.random.default_rng(1)
    f32 = np.float32
    g = kw.get("group", 1)
    x = r.standard_normal((2, 4, 3, 4, 3)).astype(f32)
    w = r.standard_normal((4, 3, 2, 3, 2)).astype(f32)           # (C, M / group, kernel)
    b = r.standard_normal(3 * g).astype(f32)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **kw)
    m = _model(node, {"x": x, "w": w, "b": b}, 17)
    (want,) = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x, "w": w, "b": b})
    (got,) = gc.onnx.load(m).compile()(x, w, b)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
