"""The small real CNNs in the onnx wheel (onnx/backend/test/data/light/, nine
ImageNet architectures) load, compile and match onnxruntime. Their weights
are ConstantOfShape fills of 0.02 (every output a uniform softmax), so both
run the same model with random weights instead (graphc.onnx.models).
The six that take longest (large im2col kernels; vgg19: 140M weights) are
marked slow."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import graphc.onnx  # noqa: E402
from graphc.onnx.models import light_model_paths, with_random_weights  # noqa: E402

PATHS = light_model_paths()
SLOW = {"bvlc_alexnet", "zfnet512", "inception_v1", "inception_v2", "vgg19", "densenet121"}


def test_all_nine_are_found():
    assert len(PATHS) == 9


@pytest.mark.parametrize("name", [pytest.param(k, marks=pytest.mark.slow) if k in SLOW else k
                                  for k in PATHS])
def test_light_model_matches_onnxruntime(name):
    model = with_random_weights(onnx.load(PATHS[name]))
    m = graphc.onnx.load(model)
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in m.inputs.items()}
    got = m.compile()(**feeds)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    want = ort.InferenceSession(model.SerializeToString(), so).run(None, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5 * max(1.0, float(np.abs(w).max())))
