"""graphc.onnx: importing models made by PyTorch and by onnx.helper (checked
against PyTorch, onnxruntime and finite differences), its errors, exporting
graphc graphs (checked by onnxruntime), and the optional dependency."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

import graphc.onnx  # noqa: E402, F401

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "t", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


# ---------------------------------------------------------------- optional

def test_import_graphc_does_not_import_onnx():
    code = ("import sys, graphc, graphc.onnx; "
            "assert 'onnx' not in sys.modules, 'onnx was imported'; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_missing_onnx_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)      # import onnx raises ImportError
    with pytest.raises(ImportError, match=r"pip install graphc\[onnx\]"):
        gc.onnx.load("model.onnx")


# ------------------------------------------------------------ from PyTorch

torch = None


def _torch():
    global torch
    torch = pytest.importorskip("torch")
    return torch


def _export(net, x, **kw):
    buf = io.BytesIO()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          **kw)
    return onnx.load_from_string(buf.getvalue())


def _cnn():
    t = _torch()

    class Net(t.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = t.nn.Conv2d(3, 4, 3, padding=1)
            self.bn = t.nn.BatchNorm2d(4)
            self.l = t.nn.Linear(4 * 4 * 4, 5)

        def forward(self, x):
            h = t.nn.functional.max_pool2d(t.relu(self.bn(self.c(x))), 2)
            h = h.reshape(h.shape[0], -1)                    # Shape -> Gather -> Concat -> Reshape
            return t.log_softmax(t.nn.functional.gelu(self.l(h)).clamp(-1, 1), dim=1)

    t.manual_seed(0)
    net = Net()
    net.bn.running_mean.uniform_(-0.5, 0.5)
    net.bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_pytorch_cnn_matches_pytorch():
    net = _cnn()
    x = torch.randn(2, 3, 8, 8)
    m = gc.onnx.load(_export(net, x))
    assert list(m.inputs) == ["x"] and m.output_names == ["y"]
    (y,) = m.compile()(x.numpy())
    np.testing.assert_allclose(y, net(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_symbolic_batch_needs_input_shapes_and_shape_subgraphs_fold():
    net = _cnn()
    x = torch.randn(3, 3, 8, 8)
    model = _export(net, x, dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    ops = {n.op_type for n in model.graph.node}
    assert {"Shape", "Gather", "Concat"} <= ops or "Shape" in ops     # a dynamic-looking reshape
    with pytest.raises(gc.onnx.OnnxImportError, match=r"'x': dimension 0 \('batch'\).*input_shapes"):
        gc.onnx.load(model)
    m = gc.onnx.load(model, input_shapes={"x": (3, 3, 8, 8)})
    # the shape arithmetic was done at load time: no integer values remain in the graph
    graph = gc.Graph(m.outputs)
    assert not [n for n in graph.nodes if n.dtype.kind == "i"], graph.text()
    (y,) = m.compile()(x.numpy())
    np.testing.assert_allclose(y, net(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_initializers_are_parameters_with_gradients():
    """Imported weights can be differentiated: the gradient of a loss matches
    PyTorch's for the same weights."""
    t = _torch()
    t.manual_seed(1)
    net = t.nn.Sequential(t.nn.Linear(6, 8), t.nn.Tanh(), t.nn.Linear(8, 3))
    x = t.randn(4, 6)
    m = gc.onnx.load(_export(net, x))
    assert len(m.params) == 4
    w_name = next(k for k, p in m.params.items() if p.shape == (8, 6) or p.shape == (6, 8))
    w = m.params[w_name]
    loss = gc.sum(m.outputs[0] * m.outputs[0])
    (gw,) = gc.grad(loss, [w])
    gwv = gc.compile(gw, list(m.inputs.values()))(x.numpy())
    out = net(x)
    (out * out).sum().backward()
    ref = net[0].weight.grad.numpy()
    np.testing.assert_allclose(gwv, ref if gwv.shape == ref.shape else ref.T, rtol=1e-4, atol=1e-5)
    c = gc.onnx.load(_export(net, x), params="constant")
    assert c.params == {}
    np.testing.assert_allclose(c.compile()(x.numpy())[0], out.detach().numpy(), rtol=1e-5,
                               atol=1e-6)


# ------------------------------------------------------------------ errors

def test_unsupported_op_names_op_node_and_opset():
    m = _model([helper.make_node("Foo", ["x"], ["y"], name="my_foo")], [_vi("x", [2])],
               [_vi("y", [2])], opset=15)
    with pytest.raises(gc.onnx.OnnxImportError, match=r"Foo node 'my_foo' \(opset 15\).*'Foo'"):
        gc.onnx.load(m)


def test_bad_inputs_are_named():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["n", 3])], [_vi("y", ["n", 3])])
    with pytest.raises(gc.onnx.OnnxImportError, match=r"'x': dimension 0 \('n'\)"):
        gc.onnx.load(m)
    with pytest.raises(gc.onnx.OnnxImportError, match="not graph inputs"):
        gc.onnx.load(m, input_shapes={"z": (1,)})
    h = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [3], TensorProto.FLOAT16)],
               [_vi("y", [3], TensorProto.FLOAT16)])
    with pytest.raises(gc.onnx.OnnxImportError, match="'x' has ONNX type FLOAT16"):
        gc.onnx.load(h)
    with pytest.raises(ValueError, match="params must be"):
        gc.onnx.load(m, params="frozen")


def test_dynamic_shape_input_is_an_error_unless_fixed():
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="r")]
    m = _model(nodes, [_vi("x", [2, 3]), _vi("s", [2], TensorProto.INT64)], [_vi("y", [3, 2])])
    with pytest.raises(gc.onnx.DynamicInputError, match=r"Reshape node 'r'.*input 1 \(shape, 's'\)"):
        gc.onnx.load(m)
    g = gc.onnx.load(m, constants={"s": np.array([3, 2])})
    assert list(g.inputs) == ["x"]
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(g.compile()(xv)[0], xv.reshape(3, 2))


def test_opset_versions_of_attributes_that_became_inputs():
    """Slice, Squeeze, Clip and ReduceSum: attributes in old opsets, inputs in new."""
    xv = np.random.default_rng(0).standard_normal((3, 4, 1)).astype(np.float32)
    old = _model([helper.make_node("Slice", ["x"], ["a"], starts=[1], ends=[3], axes=[1]),
                  helper.make_node("Squeeze", ["a"], ["b"], axes=[2]),
                  helper.make_node("Clip", ["b"], ["c"], min=-0.5, max=0.5),
                  helper.make_node("ReduceSum", ["c"], ["y"], axes=[0], keepdims=0)],
                 [_vi("x", [3, 4, 1])], [_vi("y", [2])], opset=9)
    ints = lambda name, v: helper.make_tensor(name, TensorProto.INT64, [len(v)], v)
    flt = lambda name, v: helper.make_tensor(name, TensorProto.FLOAT, [], [v])
    new = _model([helper.make_node("Slice", ["x", "s", "e", "ax"], ["a"]),
                  helper.make_node("Squeeze", ["a", "two"], ["b"]),
                  helper.make_node("Clip", ["b", "lo", "hi"], ["c"]),
                  helper.make_node("ReduceSum", ["c", "zero"], ["y"], keepdims=0)],
                 [_vi("x", [3, 4, 1])], [_vi("y", [2])],
                 [ints("s", [1]), ints("e", [3]), ints("ax", [1]), ints("two", [2]),
                  flt("lo", -0.5), flt("hi", 0.5), ints("zero", [0])], opset=17)
    want = np.clip(xv[:, 1:3, 0], -0.5, 0.5).sum(0)
    for m in (old, new):
        np.testing.assert_allclose(gc.onnx.load(m).compile()(xv)[0], want, rtol=1e-6)


# ------------------------------------------------------------------ export

def _ort():
    return pytest.importorskip("onnxruntime")


def test_round_trip_graphc_onnx_onnxruntime(tmp_path):
    ort = _ort()
    rng = np.random.default_rng(0)
    x = gc.placeholder((2, 3, 8, 8), "float32", name="x")
    w = gc.parameter(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), name="w")
    b = gc.parameter(rng.standard_normal(4).astype(np.float32), name="b")
    h = gc.max_pool2d(gc.relu(gc.conv2d(x, w, b, padding=1)), 2)
    h = gc.avg_pool2d(h, 2, count_include_pad=False)
    lin = gc.parameter(rng.standard_normal((16, 5)).astype(np.float32), name="lin")
    y = gc.log_softmax(gc.flatten(h) @ lin)
    z = (gc.sum(gc.erf(y) * gc.sigmoid(y), axis=1) + gc.max(y[:, ::-2], axis=1)
         - gc.log1p(gc.abs(y)).mean(axis=1) + gc.take(y, gc.constant(np.array([1, 0])), 1)[:, 0])
    labels = gc.placeholder((2,), "int64", name="labels")
    loss = gc.mean(gc.softmax_cross_entropy(y, labels))
    (gw,) = gc.grad(loss + gc.sum(z), [w])           # unslice, col2im, one_hot in the graph
    f = gc.compile([y, z, loss, gw])
    xv = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    lv = np.array([3, 1])
    want = f(x=xv, labels=lv)
    path = tmp_path / "m.onnx"
    gc.onnx.save(f, path)
    got = ort.InferenceSession(str(path)).run(None, {"x": xv, "labels": lv})
    for a, b_ in zip(want, got):
        np.testing.assert_allclose(b_, a, rtol=1e-4, atol=1e-5)
    # and back: ONNX -> graphc gives the same values
    back = gc.onnx.load(path).compile()(xv, lv)
    for a, b_ in zip(want, back):
        np.testing.assert_allclose(b_, a, rtol=1e-4, atol=1e-5)


def test_compiled_function_to_onnx(tmp_path):
    # f.to_onnx(): the model of the graph as compiled, inputs in the call's order
    ort = _ort()
    rng = np.random.default_rng(3)
    x = gc.placeholder((4, 6), "float32", name="x")
    s = gc.placeholder((4, 1), "float32", name="s")
    w = gc.parameter(rng.standard_normal((6, 3)).astype(np.float32), name="w")
    f = gc.compile([gc.softmax(gc.tanh(x @ w) * s), gc.sum(x, axis=1)], [s, x])
    xv = rng.standard_normal((4, 6)).astype(np.float32)
    sv = rng.standard_normal((4, 1)).astype(np.float32)
    m = f.to_onnx()
    assert isinstance(m, onnx.ModelProto)
    assert [i.name for i in m.graph.input] == ["s", "x"]
    path = tmp_path / "f.onnx"
    assert f.to_onnx(path) == m and path.is_file()
    want = f(sv, xv)
    for got in (ort.InferenceSession(m.SerializeToString()).run(None, {"x": xv, "s": sv}),
                ort.InferenceSession(str(path)).run(None, {"x": xv, "s": sv})):
        for a, b_ in zip(want, got):
            np.testing.assert_allclose(b_, a, rtol=1e-5, atol=1e-6)


def test_to_onnx_without_an_exporter_says_so(monkeypatch):
    from graphc import compiler
    f = gc.compile(gc.placeholder((2,), "float32", name="x") * 2.0, backend="interp")
    monkeypatch.setattr(compiler, "EXPORTERS", {})
    with pytest.raises(RuntimeError, match="no onnx exporter is registered"):
        f.to_onnx()


def test_export_elementwise_and_integer_ops():
    ort = _ort()
    a = gc.placeholder((5,), "float64", name="a")
    i = gc.placeholder((5,), "int64", name="i")
    outs = [a // 0.7, a % 0.7, i // 3, i % 3, gc.where(a > 0, a, -a) ** 2.0,
            gc.cast(a, "int32"), (i > 1) & (i < 4), ~(i == 2), gc.maximum(a, 0.1) - gc.minimum(a, 0.1),
            gc.broadcast_to(gc.reshape(a, (5, 1)), (5, 2)).T, gc.concatenate([a, a[1:3]])]
    want = gc.compile(outs)(a=np.linspace(-2, 2, 5), i=np.array([-4, -1, 2, 3, 7]))
    m = gc.onnx.to_model(outs)
    got = ort.InferenceSession(m.SerializeToString()).run(
        None, {"a": np.linspace(-2, 2, 5), "i": np.array([-4, -1, 2, 3, 7])})
    for w_, g_ in zip(want, got):
        np.testing.assert_allclose(g_, w_, rtol=1e-12)
        assert g_.dtype == w_.dtype


def test_export_einsum_topk_and_an_identity_scan():
    # a scan(0, b) is b: exported as an Expand
    ort = _ort()
    x = gc.placeholder((3, 5), "float32", name="x")
    y = gc.placeholder((5, 4), "float32", name="y")
    v, i = gc.topk(x, 2, axis=1, largest=False)
    outs = [v, i, gc.einsum("ij,jk->ik", x, y), gc.einsum("ii->i", x[:, :3]), gc.atan(x),
            gc.scan(0.0, x, 1)]
    rng = np.random.default_rng(4)
    xv, yv = rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    want = gc.compile(outs, [x, y])(xv, yv)
    got = ort.InferenceSession(gc.onnx.to_model(outs).SerializeToString()).run(None, {"x": xv, "y": yv})
    for a, b_ in zip(want, got):
        np.testing.assert_allclose(b_, a, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="'bitcast'.*has no ONNX export"):
        gc.onnx.to_model(gc.bitcast(x, "int32"))


def test_export_errors():
    x = gc.placeholder((3,), "float32", name="x")
    r = gc.random_uniform((3,), seed=1)
    with pytest.raises(ValueError, match="random_uniform.*no ONNX export"):
        gc.onnx.to_model(x + r)
    y = gc.placeholder((3,), "float32", name="y")
    with pytest.raises(ValueError, match=r"placeholders \['y'\]"):
        gc.onnx.to_model(x + y, inputs=[x])
