"""Run the graphc benchmarks: the same as ``python -m graphc bench``.

    python benchmarks/run.py --threads 1 --json bench-1t.json --png bench-1t.png

See docs/benchmarks.md; the harness lives in ``graphc/bench/``.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from graphc.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
