"""GridSample (graphc/onnx/ops_image.py) and MaxPool's Indices output against
onnxruntime; GridSample on random grids
reaching outside the image (so every padding rule is exercised), in every mode,
and its gradient with respect to the image."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import helper  # noqa: E402
from test_onnx_converters import _check, _model  # noqa: E402

import graphc.onnx  # noqa: E402, F401


@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("pad", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_grid_sample_matches_onnxruntime(mode, pad, align):
    r = np.random.default_rng(len(mode) * 7 + len(pad) + align)
    x = r.standard_normal((2, 3, 5, 6)).astype(np.float32)
    grid = r.uniform(-1.6, 1.6, (2, 4, 7, 2)).astype(np.float32)
    node = helper.make_node("GridSample", ["x", "g"], ["y"], mode=mode, padding_mode=pad,
                            align_corners=align)
    if (mode, pad) == ("cubic", "border"):
        # onnxruntime (as PyTorch) clamps each cubic tap, onnx.reference (which the node
        # tests follow, and graphc) clamps the coordinate first: they differ, use the latter
        from onnx.reference import ReferenceEvaluator
        m = _model(node, {"x": x, "g": grid}, opset=20)
        (want,) = ReferenceEvaluator(m).run(None, {"x": x, "g": grid})
        np.testing.assert_allclose(gc.onnx.load(m).compile()(x, grid)[0], want, rtol=1e-4,
                                   atol=1e-5)
        return
    _check(node, {"x": x, "g": grid}, opset=20, rtol=1e-4)


def test_grid_sample_gradient_is_the_transposed_sampling():
    """Linear sampling is linear in the image: d sum(w * y) / d x is w scattered back by
    the same weights, i.e. equal to sampling's matrix transposed (checked by <y, w> =
    <x, grad>)."""
    r = np.random.default_rng(3)
    x = r.standard_normal((1, 2, 4, 5))
    grid = r.uniform(-1, 1, (1, 3, 3, 2))
    m = _model(helper.make_node("GridSample", ["x", "g"], ["y"], mode="linear"),
               {"x": x, "g": grid}, opset=20)
    g = gc.onnx.load(m)
    w = r.standard_normal(g.outputs[0].shape)
    (gx,) = gc.grad(gc.sum(g.outputs[0] * gc.constant(w)), [g.inputs["x"]])
    y, gxv = gc.compile([g.outputs[0], gx], list(g.inputs.values()))(x, grid)
    np.testing.assert_allclose(np.sum(y * w), np.sum(x * gxv), rtol=1e-10)


@pytest.mark.parametrize("kw", [dict(kernel_shape=[2, 2], strides=[2, 2]),
                                dict(kernel_shape=[3, 2], strides=[1, 2], pads=[1, 0, 1, 1]),
                                dict(kernel_shape=[3, 3], storage_order=1, pads=[1, 1, 1, 1]),
                                dict(kernel_shape=[2, 2], dilations=[2, 1], ceil_mode=1)])
def test_max_pool_indices_match_onnxruntime(kw):
    x = np.random.default_rng(5).standard_normal((2, 3, 7, 6)).astype(np.float32)
    _check(helper.make_node("MaxPool", ["x"], ["y", "i"], **kw), {"x": x}, opset=12)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("scales", [[1, 1, 0.6, 0.35], [1, 1, 0.8, 1.5]])
def test_resize_antialias_matches_onnxruntime(mode, scales):
    from onnx import TensorProto
    x = np.random.default_rng(6).standard_normal((1, 2, 10, 9)).astype(np.float32)
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode=mode, antialias=1)
    _check(node, {"x": x}, opset=18, rtol=1e-4,
           inits=[helper.make_tensor("s", TensorProto.FLOAT, [4], scales)])


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("ctm", ["half_pixel", "output_half_pixel"])
def test_roi_align_matches_onnxruntime(mode, ctm):
    r = np.random.default_rng(8)
    x = r.standard_normal((2, 3, 9, 11)).astype(np.float32)
    rois = np.array([[0.5, 1.0, 7.0, 6.5], [-2.0, -1.0, 4.0, 12.0], [3.0, 3.0, 3.5, 3.2],
                     [6.0, 2.0, 12.0, 10.0]], np.float32)
    node = helper.make_node("RoiAlign", ["x", "rois", "bi"], ["y"], mode=mode, output_height=3,
                            output_width=4, sampling_ratio=2, spatial_scale=0.9,
                            coordinate_transformation_mode=ctm)
    _check(node, {"x": x, "rois": rois, "bi": np.array([0, 1, 1, 0], np.int64)}, opset=16,
           rtol=1e-4)


def test_deform_conv_matches_the_onnx_reference():
    from test_onnx_converters import _vs_reference
    r = np.random.default_rng(9)
    f32 = np.float32
    N, C, H, W, oc, k = 1, 4, 6, 5, 4, 2
    oh, ow = 4, 3                                   # pads 1, stride (2, 2), dilation (1, 2)
    feeds = {"x": r.standard_normal((N, C, H, W)).astype(f32),
             "w": r.standard_normal((oc, C // 2, k, k)).astype(f32),
             "off": r.uniform(-1.5, 1.5, (N, 2 * 2 * k * k, oh, ow)).astype(f32),
             "b": r.standard_normal(oc).astype(f32),
             "m": r.uniform(0, 1, (N, 2 * k * k, oh, ow)).astype(f32)}
    node = helper.make_node("DeformConv", ["x", "w", "off", "b", "m"], ["y"], group=2,
                            offset_group=2, kernel_shape=[k, k], pads=[1, 1, 1, 1],
                            strides=[2, 2], dilations=[1, 2])
    _vs_reference(node, feeds, 19, rtol=1e-4)
