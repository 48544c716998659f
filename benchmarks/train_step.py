"""Benchmark: one training step (forward, softmax cross-entropy, backward and
Adam's update of every parameter) of a 784-256-128-10 MLP, batch 128 —
compiled by graphc, interpreted, written by hand in numpy, PyTorch eager and
JAX ``jit`` (the peers only when installed). The ``train_step`` workload of
the benchmark harness (``graphc/bench/train.py``); the same as
``python -m graphc bench --only train_step``.

    python benchmarks/train_step.py [--threads N] [--quick] [--json PATH] ...
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from graphc.bench import main  # noqa: E402
from graphc.bench.peers import reexec_with_short_spin  # noqa: E402

if __name__ == "__main__":
    reexec_with_short_spin()
    sys.exit(main(["--only", "train_step", *sys.argv[1:]]))
