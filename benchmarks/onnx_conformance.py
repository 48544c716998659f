"""ONNX backend node tests on graphc: pass/fail counts per op over ALL node
tests the onnx wheel generates (issue 14's closing figure).

Each test's model is imported (graphc.onnx.backend), compiled with
gc.compile and run on the test's inputs; outputs must match in count, shape,
dtype and value (the test's rtol/atol), as onnx's runner checks. A test is
counted under its op (the op of a one-node model; an ``_expanded`` test,
a function body, under the op it expands). Failures are grouped by cause.

Run: python benchmarks/onnx_conformance.py [--backend llvm|interp] [--failures]
"""
from __future__ import annotations

import argparse
import collections
import re
import time
import warnings


def _op_of(test, by_name):
    nodes = test.model.graph.node
    if len(nodes) == 1:
        return nodes[0].op_type
    base = re.sub(r"_expanded(_ver\d+)?$", "", test.name)
    if base != test.name and base in by_name and len(by_name[base].model.graph.node) == 1:
        return by_name[base].model.graph.node[0].op_type
    return "(multi-node: " + test.name + ")"


def _cause(e: Exception) -> str:
    msg = str(e).splitlines()[0] if str(e) else ""
    if "is not supported by graphc's ONNX importer" in msg:
        return "op not converted"
    if "which graphc does not support" in msg:
        return "dtype graphc lacks"
    if "not a tensor" in msg:
        return "sequence/optional values"
    if "subgraph" in msg or "domain" in msg:
        return "subgraphs / other domains"
    if isinstance(e, AssertionError):
        return "wrong result"
    return "other: " + type(e).__name__


def main(argv=None):
    import numpy as np
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.loader import load_model_tests
        tests = load_model_tests(kind="node")
    from graphc.onnx.backend import GraphcBackend, _array

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="llvm", choices=("llvm", "interp"))
    ap.add_argument("--failures", action="store_true", help="list every failing test and why")
    args = ap.parse_args(argv)
    GraphcBackend.compile_options = {"backend": args.backend}
    by_name = {t.name: t for t in tests}
    per_op = collections.defaultdict(lambda: [0, 0])
    causes = collections.Counter()
    failures = []
    t0 = time.perf_counter()
    for t in tests:
        op = _op_of(t, by_name)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                rep = GraphcBackend.prepare(t.model)
                for inputs, outputs in t.data_sets:
                    got = rep.run([_array(a) for a in inputs])
                    want = [_array(a) for a in outputs]
                    assert len(got) == len(want), f"{len(got)} outputs, expected {len(want)}"
                    for g, w in zip(got, want):
                        assert g.shape == w.shape, f"shape {g.shape}, expected {w.shape}"
                        assert g.dtype == w.dtype, f"dtype {g.dtype}, expected {w.dtype}"
                        np.testing.assert_allclose(g, w, rtol=t.rtol, atol=t.atol)
            per_op[op][0] += 1
        except Exception as e:           # noqa: BLE001 - every failure is counted
            per_op[op][1] += 1
            causes[_cause(e)] += 1
            failures.append((t.name, f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"))
    secs = time.perf_counter() - t0
    multi = [k for k in per_op if k.startswith("(multi")]
    rows = sorted(k for k in per_op if k not in multi)
    print(f"{'op':28} {'pass':>5} {'fail':>5}")
    for k in rows:
        p, f = per_op[k]
        print(f"{k:28} {p:5d} {f:5d}")
    mp = sum(per_op[k][0] for k in multi)
    mf = sum(per_op[k][1] for k in multi)
    print(f"{'(other multi-node tests)':28} {mp:5d} {mf:5d}")
    npass = sum(p for p, _ in per_op.values())
    print(f"\ntotal: {npass} of {len(tests)} node tests pass ({100 * npass / len(tests):.1f}%), "
          f"{len(tests) - npass} fail; {secs:.0f} s with backend={args.backend}")
    ops_all = [k for k in rows if per_op[k][1] == 0]
    print(f"ops with every test passing: {len(ops_all)} of {len(rows)}")
    print("failures by cause: " + ", ".join(f"{k} {v}" for k, v in causes.most_common()))
    if args.failures:
        for name, why in failures:
            print(f"  {name}: {why}")


if __name__ == "__main__":
    main()
