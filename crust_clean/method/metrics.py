"""Detection quality of a score against known noise (demo, benchmarks, truth metrics)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

#: What ``detection_metrics`` flags when given no decision: the given label got, on average over training,
#: less than even odds from the model.
SUSPECT_THRESHOLD = 0.5


def detection_metrics(score: np.ndarray, is_noisy: np.ndarray, flagged: np.ndarray | None = None, *,
                      threshold: float = SUSPECT_THRESHOLD) -> dict:
    """AUROC and average precision of ``score`` (higher = more likely mislabeled) for the mask
    ``is_noisy``, plus precision / recall / F1 of the ``flagged`` mask (default: ``score > threshold``).

    AUROC and AP are None when only one kind of sample (all clean or all noisy) is present.
    """
    score = np.asarray(score, dtype=np.float64)
    is_noisy = np.asarray(is_noisy, dtype=bool)
    flagged = score > threshold if flagged is None else np.asarray(flagged, dtype=bool)
    both = 0 < is_noisy.sum() < len(is_noisy)
    return {
        "auroc": float(roc_auc_score(is_noisy, score)) if both else None,
        "average_precision": float(average_precision_score(is_noisy, score)) if both else None,
        **_precision_recall_f1(flagged, is_noisy),
        "noisy": int(is_noisy.sum()),
    }


def ranking_metrics(score: np.ndarray, is_noisy: np.ndarray, flagged: np.ndarray | None = None) -> dict:
    """How well ``score`` (higher = more likely mislabeled) ranks the noisy samples, for benchmarks.

    AUROC, average precision; precision / recall / F1 of the ``flagged`` mask (a method's own decision
    rule, when it has one) and of the top-k samples with k = the true number of noisy samples (ties
    broken by order); recall and precision among the top 1 % and 5 %.
    """
    score = np.asarray(score, dtype=np.float64)
    is_noisy = np.asarray(is_noisy, dtype=bool)
    order = np.argsort(-score, kind="stable")
    n, n_noisy = len(score), int(is_noisy.sum())

    def top(k: int) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        mask[order[:k]] = True
        return mask

    out = {
        "auroc": float(roc_auc_score(is_noisy, score)),
        "average_precision": float(average_precision_score(is_noisy, score)),
        "at_noise_count": _precision_recall_f1(top(n_noisy), is_noisy),
        "recall_top_1pct": float((top(max(1, round(0.01 * n))) & is_noisy).sum() / max(n_noisy, 1)),
        "recall_top_5pct": float((top(max(1, round(0.05 * n))) & is_noisy).sum() / max(n_noisy, 1)),
        "precision_top_1pct": float(is_noisy[order[:max(1, round(0.01 * n))]].mean()),
        "precision_top_5pct": float(is_noisy[order[:max(1, round(0.05 * n))]].mean()),
        "noisy": n_noisy, "samples": n,
    }
    if flagged is not None:
        out["own_rule"] = _precision_recall_f1(np.asarray(flagged, dtype=bool), is_noisy)
    return out


def _precision_recall_f1(flagged: np.ndarray, is_noisy: np.ndarray) -> dict:
    true_pos = int((flagged & is_noisy).sum())
    precision = true_pos / flagged.sum() if flagged.any() else 0.0
    recall = true_pos / is_noisy.sum() if is_noisy.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), "flagged": int(flagged.sum())}
