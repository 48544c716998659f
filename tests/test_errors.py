"""Construction-time and call-time errors: the right exception type, and a
message that names the op (or placeholder), the shapes and the user's line."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

THIS_FILE = "test_errors.py"


def ph(shape, dtype="float64", name="x"):
    return gc.placeholder(shape, dtype, name=name)


CONSTRUCTION = [
    ("matmul", lambda: ph((3, 4)) @ ph((5, 6), name="y"), ValueError, r"matmul: \(3, 4\) @ \(5, 6\)"),
    ("matmul-vec", lambda: ph((3,)) @ ph((4,), name="y"), ValueError, r"matmul: \(3,\) @ \(4,\)"),
    ("matmul-batch", lambda: ph((2, 3, 4)) @ ph((3, 4, 5), name="y"), ValueError, "batch"),
    ("matmul-scalar", lambda: ph(()) @ ph((3,), name="y"), ValueError, "matmul.*scalar"),
    ("matmul-bool", lambda: ph((2, 2), "bool") @ ph((2, 2), "bool", name="y"), TypeError, "matmul.*bool"),
    ("add-bcast", lambda: ph((3, 4)) + ph((5,), name="y"), ValueError, r"add: shapes \(3, 4\), \(5,\)"),
    ("where-bcast", lambda: gc.where(ph((2,), "bool"), ph((3,), name="y"), 0.0), ValueError, "where"),
    ("sum-axis", lambda: gc.sum(ph((3, 4)), axis=2), ValueError, "sum: axis 2 is out of range"),
    ("sum-axis-type", lambda: gc.sum(ph((3, 4)), axis="a"), ValueError, "sum: axis"),
    ("mean-repeat", lambda: gc.mean(ph((3, 4)), axis=(0, 0)), ValueError, "repeated axis"),
    ("max-empty", lambda: gc.max(ph((0, 4))), ValueError, "max: zero-size"),
    ("reshape", lambda: gc.reshape(ph((3, 4)), (5, 2)), ValueError, r"reshape: cannot reshape \(3, 4\)"),
    ("reshape-2neg", lambda: gc.reshape(ph((3, 4)), (-1, -1)), ValueError, "reshape"),
    ("transpose", lambda: gc.transpose(ph((3, 4)), (0, 0)), ValueError, "transpose: axes"),
    ("broadcast", lambda: gc.broadcast_to(ph((3, 4)), (4, 4)), ValueError, r"broadcast_to: cannot broadcast \(3, 4\)"),
    ("index-oob", lambda: ph((3, 4))[3], ValueError, "index 3 is out of bounds for axis 0 with size 3"),
    ("index-many", lambda: ph((3, 4))[1, 2, 3], ValueError, "too many indices"),
    ("index-fancy", lambda: ph((3, 4))[[0, 1]], ValueError, "only ints, slices"),
    ("index-step0", lambda: ph((3, 4))[::0], ValueError, "step cannot be zero"),
    ("concat", lambda: gc.concatenate([ph((2, 3)), ph((2, 4), name="y")], 0), ValueError,
     r"concatenate: shapes \(2, 3\), \(2, 4\)"),
    ("concat-empty", lambda: gc.concatenate([], 0), ValueError, "at least one"),
    ("exp-bool", lambda: gc.exp(ph((3,), "bool")), TypeError, "exp: bool"),
    ("neg-bool", lambda: -ph((3,), "bool"), TypeError, "neg: bool"),
    ("ce-labels", lambda: gc.softmax_cross_entropy(ph((4, 5)), ph((3,), "int64", "y")), ValueError,
     r"softmax_cross_entropy: logits \(4, 5\) need labels of shape \(4,\), got \(3,\)"),
    ("ce-float-labels", lambda: gc.softmax_cross_entropy(ph((4, 5)), ph((4,), name="y")), TypeError,
     "labels must be integers"),
    ("placeholder-dtype", lambda: gc.placeholder((2,), "complex64"), TypeError, "complex64"),
    ("placeholder-shape", lambda: gc.placeholder((2, -1)), ValueError, "negative"),
    ("placeholder-huge", lambda: gc.placeholder((1 << 40, 1 << 20), "float64"), ValueError, "bytes"),
    ("scalar-overflow", lambda: ph((2,), "int32") + 2**40, TypeError, "does not fit in int32"),
    ("operand-type", lambda: ph((2,)) + "a", TypeError, "str"),
    ("truth", lambda: bool(ph((2,)) > 0), TypeError, "truth value"),
]


@pytest.mark.parametrize("name,build,exc,pattern", CONSTRUCTION, ids=[c[0] for c in CONSTRUCTION])
def test_construction_errors(name, build, exc, pattern):
    with pytest.raises(exc, match=pattern) as info:
        build()
    assert isinstance(info.value, (ValueError, TypeError))


def test_construction_error_names_user_source_line():
    a, b = ph((3, 4)), ph((5, 6), name="y")
    with pytest.raises(gc.ShapeError) as info:
        a @ b   # the line the message must point at
    msg = str(info.value)
    assert "matmul: (3, 4) @ (5, 6)" in msg
    assert THIS_FILE in msg
    import inspect
    line = inspect.currentframe().f_lineno - 5
    assert f":{line})" in msg


@pytest.fixture(params=["llvm", "interp"])
def fn(request):
    x = ph((2, 3), "float32", name="x")
    lab = ph((2,), "int64", name="lab")
    loss = gc.mean(gc.softmax_cross_entropy(x, lab))
    return gc.compile([loss, gc.grad(loss, [x])[0]], backend=request.param)


X = np.zeros((2, 3), np.float32)
L = np.array([0, 2])


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(x=X), ValueError, "missing input.*'lab'"),
    (dict(x=X, lab=L, z=1), ValueError, "unknown input 'z'"),
    (dict(x=np.zeros((3, 2), np.float32), lab=L), ValueError, r"placeholder 'x'.*shape \(3, 2\)"),
    (dict(x=X.astype(np.float64), lab=L), TypeError, "placeholder 'x'.*float64"),
    (dict(x=X, lab=L.astype(np.int32)), TypeError, "placeholder 'lab'.*int32"),
    (dict(x="abc", lab=L), TypeError, "placeholder 'x'.*str"),
    (dict(x=None, lab=L), TypeError, "placeholder 'x'"),
    (dict(x=[[1.0, 2.0]], lab=L), ValueError, "placeholder 'x'.*shape"),
    (dict(x=X, lab=[0.5, 1.5]), TypeError, "placeholder 'lab'.*float64"),
    (dict(x=X, lab=np.array([0, 3])), ValueError, r"label.*out of range \[0, 3\)"),
    (dict(x=X, lab=np.array([-1, 0])), ValueError, r"out of range \[0, 3\)"),
])
def test_call_errors(fn, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        fn(**kwargs)
    fn(x=X, lab=L)          # still usable afterwards


def test_positional_call_errors():
    x = ph((2,), name="x")
    f = gc.compile(x * 2.0)
    with pytest.raises(ValueError, match="by keyword"):
        f(np.zeros(2))
    g = gc.compile(x * 2.0, inputs=[x])
    with pytest.raises(ValueError, match="too many"):
        g(np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="given twice"):
        g(np.zeros(2), x=np.zeros(2))


def test_compile_argument_errors():
    x = ph((2,), name="x")
    y = ph((2,), name="x")
    with pytest.raises(ValueError, match="two different placeholders are named 'x'"):
        gc.compile(x + y)
    gc.compile(x + y, inputs=[x, y])     # fine positionally
    with pytest.raises(ValueError, match="not listed in inputs"):
        gc.compile(x + y, inputs=[x])
    with pytest.raises(TypeError, match="outputs"):
        gc.compile(np.zeros(2))
    with pytest.raises(ValueError, match="backend"):
        gc.compile(x, backend="cuda")
    with pytest.raises(TypeError, match="placeholders"):
        gc.compile(x * 2, inputs=[x * 2])


def test_integer_negative_power_is_an_error():
    a = ph((3,), "int64", name="a")
    b = ph((3,), "int64", name="b")
    for backend in ("llvm", "interp"):
        f = gc.compile(a ** b, backend=backend)
        np.testing.assert_array_equal(f(a=np.array([2, 3, 4]), b=np.array([3, 0, 1])), [8, 1, 4])
        with pytest.raises(ValueError, match="negative integer powers"):
            f(a=np.array([2, 3, 4]), b=np.array([1, -1, 1]))
