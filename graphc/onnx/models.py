"""The small real CNNs shipped in the onnx wheel (``onnx/backend/test/data/
light/light_*.onnx``: nine ImageNet architectures, opset 9) and a way to give
them random weights: their weights are ``ConstantOfShape`` nodes filling every
tensor with 0.02, so every model's output is a uniform softmax, which would
compare nothing."""
from __future__ import annotations

import glob
import os

import numpy as np

from ._deps import require_onnx


def light_model_paths() -> dict:
    """name (``resnet50``...) -> path of each light model in the onnx wheel."""
    onnx = require_onnx()
    d = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    return {os.path.basename(p)[len("light_"):-len(".onnx")]: p
            for p in sorted(glob.glob(os.path.join(d, "light_*.onnx")))}


def with_random_weights(model, seed: int = 0):
    """A copy of ``model`` whose ``ConstantOfShape`` nodes of an initializer
    shape are initializers of random values instead: He-normal for tensors of
    rank >= 2 (fan-in = product of all dims but the first), uniform [0.5, 1.5)
    for vectors (biases, and batch-norm variances stay positive)."""
    onnx = require_onnx()
    from onnx import numpy_helper
    m = onnx.ModelProto()
    m.CopyFrom(model)
    rng = np.random.default_rng(seed)
    shapes = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    keep, new_inits = [], []
    for n in m.graph.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in shapes:
            shape = tuple(int(s) for s in shapes[n.input[0]])
            if len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                v = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
            else:
                v = rng.uniform(0.5, 1.5, shape)
            new_inits.append(numpy_helper.from_array(v.astype(np.float32), n.output[0]))
        else:
            keep.append(n)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    m.graph.initializer.extend(new_inits)
    return m
