"""Ledger -> per-sample noise scores. Pure functions; no training.

Direction: a higher ``score`` means *more likely mislabeled* (0 <= score <= 1).

``score`` is the mean over all recorded epochs of 1 - p(given label): a training-dynamics score
(cf. area under the margin). In our early measurements (shared/notes/crust.md) it ranked noise
best of the candidates, better than the final-epoch loss once a model memorises and better than
selection statistics. ``selection_rate`` and ``never_selected`` are reported beside it, not mixed in:
with the true facility-location greedy, mislabeled samples are selected *more* often than clean ones
(they are outliers that become their own medoids), with centrality + given split less often.

Decision rule (``flag_suspects``): the suspects are the n highest scores, n = the number of training
samples the run's saved model labels differently from the given label. The model estimates *how many*
labels are wrong, the score says *which*. In the detection benchmark (benchmarks/results/signals.md) this
rule had 0.02-0.18 higher F1 than ``score > 0.5``, which flags nearly everything while the early epochs'
doubt weighs on the mean; ``is_suspect`` keeps that threshold rule for ``--threshold``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The threshold rule's default (``--threshold``): the given label got, on average over training, less than
#: even odds from the model.
SUSPECT_THRESHOLD = 0.5
#: How ``flag_suspects`` chooses, in words (run summaries, the CLI).
SUSPECT_RULE = "the n highest scores, n = training samples the saved model labels differently"


def margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) logit of the given label minus the largest other logit: negative where the model prefers
    another class. Its mean over epochs is the area under the margin (AUM, Pleiss et al. 2020)."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(labels))
    given = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    return given - others.max(axis=1)


def score_samples(ledger: pd.DataFrame) -> pd.DataFrame:
    """Aggregate a ledger (see ``crust_clean.ledger``) into one row per sample.

    Returns
    -------
    DataFrame indexed by ``sample_id`` (ledger order) with columns
    ``score`` (mean of 1 - prob_given; higher = more likely mislabeled), ``selection_rate`` (share of
    selection epochs in which the sample was in the coreset; NaN when the run had no selection
    epochs), ``never_selected`` (selection epochs exist and the sample entered none),
    ``epochs_selected``, ``predicted_label`` and ``prob_given`` (both from the last epoch),
    ``mean_loss`` and ``aum`` (mean margin: lower = more likely mislabeled; NaN for ledgers without it).
    """
    grouped = ledger.groupby("sample_id", sort=False)
    last = ledger[ledger["epoch"] == ledger["epoch"].max()].set_index("sample_id")
    selection_epochs = ledger.loc[ledger["selected"].notna(), "epoch"].nunique()
    selected_count = grouped["selected"].sum().astype(np.int64)
    out = pd.DataFrame({
        "score": 1.0 - grouped["prob_given"].mean().astype(np.float64),
        "selection_rate": selected_count / selection_epochs if selection_epochs else np.nan,
        "never_selected": (selected_count == 0) & (selection_epochs > 0),
        "epochs_selected": selected_count,
        "predicted_label": last["predicted_label"],
        "prob_given": last["prob_given"].astype(np.float64),
        "mean_loss": grouped["loss"].mean().astype(np.float64),
        "aum": grouped["margin"].mean().astype(np.float64) if "margin" in ledger else np.nan,
    })
    out.index.name = "sample_id"
    return out


def is_suspect(score: np.ndarray | pd.Series, threshold: float = SUSPECT_THRESHOLD) -> np.ndarray:
    """Boolean mask of suspected mislabels by a threshold: ``score > threshold``."""
    return np.asarray(score) > threshold


def flag_suspects(score: np.ndarray | pd.Series, disagrees: np.ndarray) -> np.ndarray:
    """Boolean mask of the default suspects: the ``disagrees.sum()`` highest scores (ties: first come).

    ``disagrees`` (n,) marks the samples whose given label the model does not predict; only their count
    is used, so the suspects are always the top of the score ranking.
    """
    return top_scores(score, int(np.sum(disagrees)))


def top_scores(score: np.ndarray | pd.Series, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` highest scores (ties: first come; a missing score, NaN, never)."""
    score = np.asarray(score, dtype=np.float64)
    flagged = np.zeros(len(score), dtype=bool)
    flagged[np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")[:k]] = True
    return flagged & ~np.isnan(score)
