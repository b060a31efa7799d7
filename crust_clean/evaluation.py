"""Detection quality of a score against known noise (demo, benchmarks, truth metrics)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .scores import SUSPECT_THRESHOLD


def detection_metrics(score: np.ndarray, is_noisy: np.ndarray, *, threshold: float = SUSPECT_THRESHOLD) -> dict:
    """AUROC and average precision of ``score`` (higher = more likely mislabeled) for the mask
    ``is_noisy``, plus precision / recall / F1 of the rule ``score > threshold``.

    AUROC and AP are None when only one kind of sample (all clean or all noisy) is present.
    """
    score = np.asarray(score, dtype=np.float64)
    is_noisy = np.asarray(is_noisy, dtype=bool)
    flagged = score > threshold
    true_pos = int((flagged & is_noisy).sum())
    precision = true_pos / flagged.sum() if flagged.any() else 0.0
    recall = true_pos / is_noisy.sum() if is_noisy.any() else 0.0
    both = 0 < is_noisy.sum() < len(is_noisy)
    return {
        "auroc": float(roc_auc_score(is_noisy, score)) if both else None,
        "average_precision": float(average_precision_score(is_noisy, score)) if both else None,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
        "flagged": int(flagged.sum()),
        "noisy": int(is_noisy.sum()),
        "threshold": threshold,
    }
