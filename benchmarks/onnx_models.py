"""graphc vs onnxruntime on the light ImageNet CNNs of the onnx wheel (issue 14).

Each model (with random weights: graphc.onnx.models.with_random_weights) is
imported and compiled by graphc at 1 and at 2 threads (``compile(threads=)``)
and loaded by onnxruntime with ``intra_op_num_threads`` 1 and 2; all four are
timed side by side in one process (graphc.bench.timing.interleaved: rotating
rounds of calibrated samples) on the same random input. Printed: per-call
medians in ms and the ratio ort / graphc (> 1: graphc is faster).

Run: python benchmarks/onnx_models.py [--models resnet50,squeezenet] [--repeat 5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None):
    import onnx
    import onnxruntime as ort

    import graphc.onnx
    from graphc.bench.timing import interleaved
    from graphc.onnx.models import light_model_paths, with_random_weights

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated names (default: all nine)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sample-time", type=float, default=0.3)
    args = ap.parse_args(argv)
    paths = light_model_paths()
    names = [m for m in args.models.split(",") if m] or list(paths)
    print(f"{'model':14} {'gc 1t ms':>9} {'ort 1t ms':>9} {'ratio':>6}   {'gc 2t ms':>9} "
          f"{'ort 2t ms':>9} {'ratio':>6}   {'compile s':>9}")
    for name in names:
        model = with_random_weights(onnx.load(paths[name]))
        m = graphc.onnx.load(model)
        rng = np.random.default_rng(0)
        feeds = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in m.inputs.items()}
        args_in = list(feeds.values())
        t0 = time.perf_counter()
        fns, check = {}, {}
        for th in (1, 2):
            f = m.compile(threads=th)
            fns[f"gc{th}"] = (lambda f=f: f(*args_in))
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = th, 1
            so.log_severity_level = 3
            s = ort.InferenceSession(model.SerializeToString(), so)
            fns[f"ort{th}"] = (lambda s=s: s.run(None, feeds))
            check[th] = (f(*args_in)[0], s.run(None, feeds)[0])
        compile_s = (time.perf_counter() - t0) / 2
        for g, o in check.values():
            np.testing.assert_allclose(g, o, rtol=1e-3, atol=1e-5 * max(1.0, float(np.abs(o).max())))
        res = interleaved(fns, args.repeat, args.sample_time)
        med = {k: float(np.median(v.times)) * 1e3 for k, v in res.items()}
        print(f"{name:14} {med['gc1']:9.2f} {med['ort1']:9.2f} {med['ort1'] / med['gc1']:6.2f}   "
              f"{med['gc2']:9.2f} {med['ort2']:9.2f} {med['ort2'] / med['gc2']:6.2f}   "
              f"{compile_s:9.1f}", flush=True)


if __name__ == "__main__":
    main()
