"""The main job: the demo trains through gc.nn / gc.optim (Adam) to >= 98%
training accuracy and reports its figures."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from graphc.demo import build_model, main, spiral


def test_demo_reaches_accuracy():
    r = main(quiet=True)
    assert r["accuracy"] >= 0.98
    loss = np.array(r["loss"])
    assert len(loss) == 1000 and loss[-1] < loss[0] / 20
    assert np.all(loss[100:] < loss[0] / 5)            # falls and stays down
    assert r["compile_s"] > 0 and r["ms_compiled"] > 0 and r["ms_interp"] > 0


def test_spiral_shape_and_model():
    X, y = spiral(50, 3)
    assert X.shape == (150, 2) and set(y.tolist()) == {0, 1, 2}
    m = build_model()
    assert [p.shape for p in m.parameters()] == [(2, 64), (64,), (64, 64), (64,), (64, 3), (3,)]


def test_cli_demo_runs():
    out = subprocess.run([sys.executable, "-m", "graphc", "demo", "--steps", "300"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for text in ("final training accuracy", "compiled", "interpreted", "loss by step"):
        assert text in out.stdout
    assert "step" in out.stderr or "step" in out.stdout      # the progress bar (tqdm or lines)
