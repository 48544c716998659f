"""graphc's version, and the fingerprint of its source that every cached
artifact (compiled graphs, runtime-library objects) is keyed by."""
from __future__ import annotations

import hashlib
import os

__version__ = "0.1.0"

_source_hash: str | None = None


def graphc_fingerprint() -> str:
    """graphc's version plus a hash of its source files (so an edited checkout
    never loads code compiled by an older one)."""
    global _source_hash
    if _source_hash is None:
        h = hashlib.sha256(__version__.encode())
        root = os.path.dirname(os.path.abspath(__file__))
        for dirpath, dirnames, files in os.walk(root):
            dirnames.sort()
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    h.update(os.path.relpath(path, root).encode())
                    with open(path, "rb") as fh:
                        h.update(fh.read())
        _source_hash = f"{__version__}+{h.hexdigest()[:16]}"
    return _source_hash
