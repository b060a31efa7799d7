"""Synthetic label noise for demos and benchmarks (pure functions, seeded).

- symmetric: a share of the samples get a label drawn uniformly from the *other* classes (the true
  class is never redrawn);
- asymmetric: in each class c that ``mapping`` covers, a share of its samples get label ``mapping[c]``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def symmetric_noise(labels: np.ndarray, noise: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Replace the labels of ``round(noise * n)`` random samples by a uniformly drawn other class."""
    noisy = labels.copy()
    flip = rng.choice(len(labels), size=int(round(noise * len(labels))), replace=False)
    shift = rng.integers(1, num_classes, size=len(flip))  # never 0: the new label differs
    noisy[flip] = (labels[flip] + shift) % num_classes
    return noisy


def asymmetric_noise(labels: np.ndarray, noise: float, mapping: Mapping[int, int],
                     rng: np.random.Generator) -> np.ndarray:
    """In every class ``c`` of ``mapping``, give ``round(noise * n_c)`` random members the label ``mapping[c]``."""
    noisy = labels.copy()
    for source, target in mapping.items():
        members = np.flatnonzero(labels == source)
        flip = rng.choice(members, size=int(round(noise * len(members))), replace=False)
        noisy[flip] = target
    return noisy


#: The asymmetric noise the benchmarks use for 10-class data: class c is mislabeled as c + 1 (mod 10).
NEXT_CLASS = {c: (c + 1) % 10 for c in range(10)}
