"""Random well-typed graphc graphs for property-based testing (hypothesis).

:func:`cases` is a strategy that builds a random graph from the public op
functions, one op at a time, and at the same time computes every value with
plain numpy (the *mirror*): ``np.exp`` for ``gc.exp``, ``v[key]`` for
``x[key]``, numpy's own promotion for mixed dtypes and Python scalars. So a
case carries three things to compare: the graph (compiled, or run by the
interpreter) and numpy's answer.

Float results are not all bit-for-bit reproducible across implementations
(``exp`` in numpy is not LLVM's ``exp``; a float sum depends on its order),
so every mirror value carries an error bound ``err`` per element:

* ``err == 0`` — the value is determined exactly: it was computed only with
  correctly rounded IEEE operations (``+ - * /``, ``sqrt``, casts,
  comparisons, max, movement) from exact inputs, and float sums/matmuls only
  where every partial sum is exact (values on a dyadic grid), so any
  evaluation order gives the same bits. Compiled and interpreted results
  must then be identical — NaN where numpy gives NaN, ``inf`` with its sign;
* ``0 < err < inf`` — a first-order bound of the difference between any two
  faithful evaluations (operation error of a few ulps, propagated);
* ``err == inf`` — not comparable (e.g. an inexact value that may or may not
  overflow); such elements are skipped.

Discontinuous ops (comparisons, casts to int or bool, ``where`` conditions)
are only applied where the answer is certain: the generator checks the
margin against ``err`` and picks another op otherwise, so a mismatch is
always a bug, never rounding.

``mode="grad"`` builds float64 graphs of differentiable ops on continuous
random values, for gradient checks against finite differences.

A case renders itself as a runnable Python program (:meth:`Case.program`),
which is what a failing hypothesis example prints: paste it into
tests/test_regressions.py.

The generator lives in a few files; this one is the entry point the tests
import (its entry points and classes are importable from here):

* tests/fuzzcase.py: :class:`Val`, :class:`Case` and the error arithmetic;
* tests/fuzzgen.py: :class:`Gen` (leaves, operands, the op weights) and
  :func:`cases`;
* tests/fuzzops_math.py, tests/fuzzops_shape.py, tests/fuzzops_nn.py: the
  ops, as mixins of :class:`Gen` (elementwise; reductions, matmul and
  movement; softmax family, labels, gathers and random);
* tests/fuzzupdates.py: :class:`UpdateCase`, :class:`UpdateGen` and
  :func:`update_cases`.
"""
from __future__ import annotations

import fuzzcase
import fuzzgen
import fuzzops_conv
import fuzzops_math
import fuzzops_nn
import fuzzops_shape
import fuzzupdates
from fuzzcase import MAX_SIZE, Case, Val
from fuzzgen import Gen, cases
from fuzzupdates import UpdateCase, UpdateGen, update_cases

# every file of the generator (test_fuzz reads their source to check that
# every public op is built somewhere)
MODULES = (fuzzcase, fuzzgen, fuzzops_math, fuzzops_shape, fuzzops_nn, fuzzops_conv, fuzzupdates)

__all__ = ["MAX_SIZE", "MODULES", "Case", "Gen", "UpdateCase", "UpdateGen", "Val", "cases",
           "update_cases"]
