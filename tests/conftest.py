"""Shared test configuration: hypothesis profiles and a helper that runs
code in a fresh interpreter, so that a crash in native code is reported as a
test failure instead of killing the test runner.

Hypothesis profiles:

* ``graphc-ci`` (the default): ``derandomize=True`` — the same examples on
  every run, so CI is deterministic;
* ``graphc-long``: random examples (a fresh seed each run, printed on
  failure), for the long ``-m slow`` fuzzing runs;
* ``graphc-dev``: random, no shrinking — for triage.

Select one for every test with ``GRAPHC_HYPOTHESIS_PROFILE=graphc-long``.
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, Phase, settings

ROOT = pathlib.Path(__file__).resolve().parent.parent

_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
settings.register_profile("graphc-ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("graphc-long", derandomize=False, **_COMMON)
# for triage: no shrinking, report the first failure found at once
settings.register_profile("graphc-dev", derandomize=False, phases=[Phase.explicit, Phase.generate],
                          report_multiple_bugs=False, **_COMMON)
settings.load_profile(os.environ.get("GRAPHC_HYPOTHESIS_PROFILE", "graphc-ci"))


class Isolated:
    """Runs Python source in a fresh interpreter (``sys.executable``) with this
    checkout first on ``sys.path``. ``__call__`` returns the completed process;
    a death by signal (segfault, abort) or a timeout fails the test with the
    child's output, and ``check=True`` (the default) also fails on a non-zero
    exit status."""

    def __call__(self, code: str, *, check: bool = True, timeout: float = 300,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        code = textwrap.dedent(code)
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + [p for p in full_env.get("PYTHONPATH", "").split(os.pathsep) if p])
        full_env["PYTHONFAULTHANDLER"] = "1"      # a crash prints the Python stack
        full_env.update(env or {})
        try:
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=timeout, env=full_env, cwd=str(ROOT))
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"isolated run timed out after {timeout}s\n--- stdout\n{e.stdout}\n"
                        f"--- stderr\n{e.stderr}")
        if r.returncode < 0:
            try:
                name = signal.Signals(-r.returncode).name
            except ValueError:
                name = str(-r.returncode)
            pytest.fail(f"isolated run CRASHED with signal {name}\n--- stdout\n{r.stdout[-4000:]}\n"
                        f"--- stderr\n{r.stderr[-4000:]}")
        if check and r.returncode != 0:
            pytest.fail(f"isolated run exited with status {r.returncode}\n--- stdout\n"
                        f"{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}")
        return r


@pytest.fixture
def isolated() -> Isolated:
    """Run a code snippet in a subprocess; see :class:`Isolated`."""
    return Isolated()


@pytest.fixture
def registered():
    """Names of ops a test registers (append them), unregistered after it."""
    import graphc as gc
    names = []
    yield names
    for n in names:
        if n in gc.extend.USER_OPS:
            gc.unregister_op(n)
