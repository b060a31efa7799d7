"""How much of each class the coreset keeps: a fixed share, or a share sized to the class's noise.

A fixed half of each class leaves out half of the clean samples every epoch; with few wrong labels that only
weakens the model. ``crust.coreset_from_noise`` keeps ``1 - noise_c - margin`` of class c instead (never less than
``crust.coreset_fraction``), with noise_c estimated once from the model at the end of the warm-up, as confident
learning estimates it (Northcutt et al. 2021): a sample is counted as confidently of class j when its probability
of j reaches class j's mean self-confidence (the threshold t_j, less 1e-6 against rounding) and j is its likeliest
such class; noise_c is the share of class c's confidently counted samples that are confidently another class.
Pure functions.
"""

from __future__ import annotations

import numpy as np


def estimate_noise_rates(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K,) estimated share of wrong labels among the samples given each class.

    ``probs`` (n, K): the model's softmax; ``labels`` (n,): the given labels. A class without samples, or
    whose samples are confidently counted nowhere, gets 0.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    thresholds = np.array([probs[labels == j, j].mean() if (labels == j).any() else np.inf
                           for j in range(num_classes)])
    above = probs >= thresholds[None, :] - 1e-6  # as cleanlab: a mean of equal values may round above them
    confident = np.where(above, probs, -np.inf).argmax(1)  # the likeliest class among those above threshold
    counted = above.any(1)
    joint = np.zeros((num_classes, num_classes))
    np.add.at(joint, (labels[counted], confident[counted]), 1)
    totals = joint.sum(1)
    return np.where(totals > 0, 1 - np.diag(joint) / np.maximum(totals, 1), 0.0)


def class_fractions(noise_rates: np.ndarray, *, margin: float, floor: float) -> np.ndarray:
    """(K,) the share of each class the coreset keeps: ``1 - noise - margin``, between ``floor`` and 1."""
    return np.clip(1 - np.asarray(noise_rates, dtype=np.float64) - margin, floor, 1.0)
