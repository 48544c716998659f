"""ONNX's own conformance tests (``onnx.backend.test.BackendTest`` node tests)
run on graphc's ONNX backend (graphc.onnx.backend: import, gc.compile, call).

Every node test runs whose ops all have a converter (``graphc.onnx.CONVERTERS``:
the allowlist grows as converters land), except the exclusions below, each
with its reason, and the ``_expanded`` function-body tests (see EXPANDED). ``benchmarks/onnx_conformance.py`` runs all 1884 and prints
pass/fail counts per op. Skipped without onnx."""
from __future__ import annotations

import os
import re
import warnings

import pytest

pytest.importorskip("onnx")

import onnx  # noqa: E402
import onnx.backend.test.runner  # noqa: E402
from onnx import TensorProto  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")           # the test generators overflow casts on purpose
    from onnx.backend.test.loader import load_model_tests

    NODE_TESTS = load_model_tests(kind="node")

import graphc.onnx  # noqa: E402
from graphc.onnx.backend import GraphcBackend  # noqa: E402

# Tests of converted ops that graphc fails on purpose, and why.
EXCLUDED = {
    "test_training_dropout": "Dropout with training_mode=True and ratio > 0 (random masks)",
    "test_training_dropout_default": "Dropout with training_mode=True",
    "test_training_dropout_default_mask": "Dropout with training_mode=True",
    "test_training_dropout_mask": "Dropout with training_mode=True",
    "test_identity_opt": "an optional-typed input: graphc values are tensors",
    "test_identity_sequence": "a sequence-typed input: graphc values are tensors",
    "test_loop13_seq": "a sequence-typed input: graphc values are tensors",
    "test_loop16_seq_none": "an optional-typed input: graphc values are tensors",
    "test_dft_inverse": "the expected imaginary parts hold float32 rounding noise (1.9e-7) "
                        "where the exact value is 0 (graphc gives 5e-16): over the test's atol 1e-7",
    "test_dft_inverse_opset19": "as test_dft_inverse",
    "test_range_float_type_positive_delta": "Range of float graph inputs: its length depends on "
                                            "run-time values (only integer inputs are fixed "
                                            "at run time)",
}

# graphc's dtypes; a test using any other ONNX element type is excluded
SUPPORTED_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64,
                   TensorProto.BOOL}
DTYPE_REASON = "uses dtype {}: graphc has float32, float64, int32, int64 and bool only"


def _types(model):
    """Every element type a model's inputs, outputs, initializers and type
    attributes (Cast's ``to``, typed constants) name."""
    g = model.graph
    for vi in list(g.input) + list(g.output):
        t = vi.type
        yield t.tensor_type.elem_type if t.HasField("tensor_type") else TensorProto.FLOAT
    for t in g.initializer:
        yield t.data_type
    for n in g.node:
        for a in n.attribute:
            if a.name in ("to", "dtype") and a.type == a.INT:
                yield a.i
            elif a.type == a.TENSOR:
                yield a.t.data_type


# ``_expanded`` tests run an op's function body (a graph of other ops, each
# with tests of its own here); a third of the passing tests, they run in the
# suite only with GRAPHC_ONNX_EXPANDED=1, and always in the conformance script
EXPANDED = os.environ.get("GRAPHC_ONNX_EXPANDED", "") == "1"


def _op_types(graph):
    """The op types of a graph's nodes and of its subgraphs' (If, Loop, Scan)."""
    for n in graph.node:
        yield n.op_type
        for a in n.attribute:
            if a.type == a.GRAPH:
                yield from _op_types(a.g)


def exclusion(test) -> str | None:
    """Why ``test`` is not run, or None."""
    if not EXPANDED and re.search(r"_expanded(_ver\d+)?$", test.name):
        return "an expanded function body (set GRAPHC_ONNX_EXPANDED=1)"
    ops = set(_op_types(test.model.graph))
    missing = sorted(ops - set(graphc.onnx.CONVERTERS))
    if missing:
        return f"op(s) {', '.join(missing)} not converted"
    if any(n.domain not in ("", "ai.onnx") for n in test.model.graph.node):
        return "an op outside the default domain"
    if test.name in EXCLUDED:
        return EXCLUDED[test.name]
    bad = sorted({TensorProto.DataType.Name(t) for t in _types(test.model)
                  if t and t not in SUPPORTED_TYPES})
    if bad:
        return DTYPE_REASON.format(", ".join(bad))
    return None


graphc.onnx.supported_ops()           # (fills CONVERTERS)
RUN = [t.name for t in NODE_TESTS if exclusion(t) is None]

def _node_tests_only(kind="node", **kw):
    return NODE_TESTS if kind == "node" else []    # (the other kinds are models to download)


with pytest.MonkeyPatch.context() as mp:        # the node tests are generated once, above
    mp.setattr(onnx.backend.test.runner, "load_model_tests", _node_tests_only)
    backend_test = onnx.backend.test.BackendTest(GraphcBackend, __name__)
backend_test.include("^(" + "|".join(map(re.escape, RUN)) + ")_cpu$")
OnnxBackendNodeModelTest = backend_test.test_cases["OnnxBackendNodeModelTest"]


def test_the_allowlist_covers_the_issue_ops():
    """Every op the issue names has a converter, and its tests run except
    for the listed exclusions (mostly dtypes graphc lacks)."""
    target = ["Add", "Sub", "Mul", "Div", "MatMul", "Gemm", "Relu", "LeakyRelu", "Sigmoid",
              "Tanh", "Softmax", "LogSoftmax", "Conv", "MaxPool", "AveragePool",
              "GlobalAveragePool", "BatchNormalization", "Flatten", "Reshape", "Transpose",
              "Concat", "Gather", "Shape", "Slice", "Squeeze", "Unsqueeze", "Constant",
              "ConstantOfShape", "ReduceMean", "ReduceSum", "ReduceMax", "Pow", "Sqrt", "Exp",
              "Log", "Erf", "Where", "Cast", "Clip", "Dropout", "Identity", "Expand", "Pad"]
    assert not set(target) - set(graphc.onnx.CONVERTERS)
    run = set(RUN)
    for op in target:
        single = [t for t in NODE_TESTS if [n.op_type for n in t.model.graph.node] == [op]]
        assert any(t.name in run for t in single), op
        for t in single:
            why = exclusion(t)
            assert why is None or t.name in EXCLUDED or why.startswith(("uses dtype", "an expanded")), \
                (t.name, why)


def test_every_exclusion_names_a_real_test():
    names = {t.name for t in NODE_TESTS}
    assert set(EXCLUDED) <= names
