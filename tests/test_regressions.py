"""Regression tests: one small, named test per bug found by the fuzzing,
hostile-input, thread and memory suites (docs/reliability.md). Each says
what was wrong; native paths that could crash run in a subprocess."""
from __future__ import annotations

import numpy as np

import graphc as gc


def test_engine_does_not_free_the_shared_target_machine(isolated):
    """MCJIT takes ownership of the target machine it is given and deletes it
    with the engine. jit.py handed every engine the one shared target
    machine, so dropping a compiled function left a dangling pointer behind
    (hidden only because a typo re-created the target machine on every
    call). Compile/drop cycles, then assembly from the shared machine, with
    freed memory poisoned (MALLOC_PERTURB_)."""
    r = isolated("""
        import gc as pygc
        import numpy as np
        import graphc as gc
        from graphc.backend.llvm import jit
        for i in range(12):
            x = gc.placeholder((3,), "float64", name="x")
            f = gc.compile(gc.exp(x) * float(i))
            assert np.allclose(f(x=np.zeros(3)), float(i))
            if i % 3 == 0:
                assert "ret" in f.asm
            del f
            pygc.collect()
        assert jit.target_machine(3) is jit.target_machine(3)
        print("ok")
    """, env={"MALLOC_PERTURB_": "165"})
    assert r.stdout.strip().endswith("ok")


def test_target_machine_is_created_once():
    from graphc.backend.llvm import jit
    x = gc.placeholder((2,), "float64", name="x")
    tm = jit.target_machine(3)
    gc.compile(x + 1.0)(x=np.ones(2))
    assert jit.target_machine(3) is tm
