"""Op safety (issue 10 items 2, 5, 6 and 16): integer ``min`` at the type's
minimum, pow's gradients at base 0, attribute validation for every op built
through ``gc.make``, and scalar lowerings that use Python control flow."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphcError
from graphc.ops import registry

LEVELS = ["interp", 0, 1, 2, 3]


def _run(out, feeds, level):
    if level == "interp":
        return gc.compile(out, backend="interp")(**feeds)
    return gc.compile(out, opt_level=level)(**feeds)


# ----------------------------------------------------------- item 16: SV misuse

def _user_op(name, scalar):
    return gc.register_op(name, reference=lambda x: np.abs(x), scalar=scalar,
                          vjp=lambda n, g: [g])


@pytest.mark.parametrize("case,lowering", [
    ("ifexp", lambda s, x: x if x > 0 else -x),
    ("eq", lambda s, x: -x if x == 0 else x),
    ("ne", lambda s, x: x if x != 0 else -x),
    ("and", lambda s, x: (x > 0) and x),
    ("not", lambda s, x: x if not (x < 0) else -x),
    ("builtin_max", lambda s, x: max(x, -x)),
    ("chained", lambda s, x: x if -1 < x < 1 else -x),
    ("int", lambda s, x: x * int(x)),
    ("float", lambda s, x: x * float(x)),
    ("math", lambda s, x: x * math.exp(x)),
    ("index", lambda s, x: x * [1.0, 2.0][x]),
    ("range", lambda s, x: x * len(range(x))),
    ("iter", lambda s, x: sum(x)),
    ("numpy", lambda s, x: np.where(x > 0, x, -x)),
    ("ufunc", lambda s, x: np.abs(x)),
])
def test_scalar_lowering_refuses_python_control_flow(case, lowering):
    """``x if x > 0 else -x`` in a user scalar lowering compiled to the identity
    (SV had Python's truth value); ``x == 0`` was Python's identity test
    (always False). Now each is an error naming the op and telling what to use."""
    name = f"test_sv_{case}"
    f = _user_op(name, lowering)
    try:
        x = gc.placeholder((4,), "float64", name="x")
        with pytest.raises(TypeError) as e:
            gc.compile(f(x), opt_level=1)
        msg = str(e.value)
        assert name in msg, msg
        assert "scalar value" in msg or "ufunc" in msg, msg
    finally:
        gc.unregister_op(name)


def test_scalar_lowering_with_select_and_eq_still_works():
    """The right spellings (``s.select``, ``==`` as a comparison, numpy scalars
    on the left) compile to the intended program."""
    name = "test_sv_ok"
    f = gc.register_op(name, reference=lambda x: np.where(x == 0, 5.0, np.abs(x)) * 2.0,
                       scalar=lambda s, x: s.select(x == 0, s.const(5.0, x.dtype),
                                                    s.select(x > 0, x, -x)) * np.float64(2.0),
                       vjp=lambda n, g: [g])
    try:
        x = gc.placeholder((5,), "float64", name="x")
        v = np.array([-2.0, 0.0, 3.0, -0.5, 1.0])
        want = np.where(v == 0, 5.0, np.abs(v)) * 2.0
        for level in LEVELS:
            np.testing.assert_array_equal(_run(f(x), dict(x=v), level), want)
        y = gc.placeholder((5,), "float64", name="y")
        g = gc.register_op(name + "_ne", reference=lambda a, b: np.where(a != b, a, 0.0),
                           scalar=lambda s, a, b: s.select(a != b, a, s.const(0.0, a.dtype)))
        try:
            w = np.array([-2.0, 1.0, 3.0, 0.0, 1.0])
            np.testing.assert_array_equal(gc.compile(g(x, y))(x=v, y=w), np.where(v != w, v, 0.0))
        finally:
            gc.unregister_op(name + "_ne")
    finally:
        gc.unregister_op(name)
