"""Small data sets shipped with graphc, for examples and tests (no download).

``digits.npz`` is the handwritten-digits set that scikit-learn bundles as
``sklearn.datasets.load_digits`` (the test set of the UCI "Optical
Recognition of Handwritten Digits" data, E. Alpaydin and C. Kaynak, 1998,
CC BY 4.0): 1797 images of 8x8 pixels, each an integer 0..16, and their
labels 0..9, stored as uint8 (the same values as scikit-learn's copy, which
``tests/test_nn_conv.py`` checks when scikit-learn is installed).
"""
from __future__ import annotations

import os

import numpy as np

_DIR = os.path.dirname(os.path.abspath(__file__))


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: images float64 ``(1797, 8, 8)`` with values
    0..16 (``sklearn.datasets.load_digits().images``), labels int64
    ``(1797,)`` in 0..9 (``.target``)."""
    with np.load(os.path.join(_DIR, "digits.npz"), allow_pickle=False) as f:
        images, labels = f["images"], f["target"]
    return images.astype(np.float64), labels.astype(np.int64)


def train_test_split(n: int, test_fraction: float = 0.25, seed: int = 0):
    """Index arrays ``(train, test)``: a seeded random split of ``range(n)``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"train_test_split: test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(n * test_fraction))
    return np.sort(order[k:]), np.sort(order[:k])


__all__ = ["load_digits", "train_test_split"]
