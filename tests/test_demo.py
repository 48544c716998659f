"""The main job: the demo trains to >= 95% accuracy and reports its figures."""
from __future__ import annotations

import subprocess
import sys

from graphc.demo import main, spiral


def test_demo_reaches_accuracy():
    r = main(quiet=True)
    assert r["accuracy"] >= 0.95
    assert r["loss"][-1] < r["loss"][0] / 5
    assert r["compile_s"] > 0 and r["ms_compiled"] > 0 and r["ms_interp"] > 0


def test_spiral_shape():
    X, y = spiral(50, 3)
    assert X.shape == (150, 2) and set(y.tolist()) == {0, 1, 2}


def test_cli_demo_runs():
    out = subprocess.run([sys.executable, "-m", "graphc", "demo", "--steps", "300"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "final training accuracy" in out.stdout and "compiled" in out.stdout
