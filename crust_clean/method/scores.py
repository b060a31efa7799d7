"""Ledger -> per-sample noise scores, and which samples are suspects. Pure functions; no training.

Direction: a higher ``score`` means *more likely mislabeled* (0 <= score <= 1).

``score`` is the mean over all recorded epochs of 1 - p(given label) (``score``: the one definition, used by
the per-epoch metrics of a fit and by ``score_samples``, which ``ScoreTotals`` computes epoch by epoch for
``scores.csv``): a training-dynamics score
(cf. area under the margin). In our early measurements (shared/notes/crust.md) it ranked noise
best of the candidates, better than the final-epoch loss once a model memorises and better than
selection statistics. ``selection_rate`` and ``never_selected`` are reported beside it, not mixed in:
with the true facility-location greedy, mislabeled samples are selected *more* often than clean ones
(they are outliers that become their own medoids), with centrality + given split less often.

Decision rule (``SuspectRule``; ``flag_suspects``): the suspects are the n highest scores, n = the number of
training samples the run's saved model labels differently from the given label. The model estimates *how many*
labels are wrong, the score says *which*. In the detection benchmark (benchmarks/results/signals.md) this
rule had 0.02-0.18 higher F1 than ``score > 0.5``, which flags nearly everything while the early epochs'
doubt weighs on the mean. A reviewer may choose instead the ``top`` K scores or a ``threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import BadInputError

#: How ``flag_suspects`` chooses, in words (run summaries, the CLI).
SUSPECT_RULE = "the n highest scores, n = training samples the saved model labels differently"


def score(mean_prob_given: np.ndarray | pd.Series) -> np.ndarray | pd.Series:
    """The score of samples whose given label got, on average over the epochs, probability ``mean_prob_given``:
    ``1 - mean_prob_given`` (higher = more likely mislabeled)."""
    return 1.0 - mean_prob_given


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
    """Aggregate a ledger (see ``crust_clean.run.ledger``) into one row per sample.

    Returns
    -------
    DataFrame indexed by ``sample_id`` (ledger order) with columns
    ``score`` (mean of 1 - prob_given; higher = more likely mislabeled), ``selection_rate`` (share of
    selection epochs in which the sample was in the coreset; NaN when the run had no selection
    epochs), ``never_selected`` (selection epochs exist and the sample entered none),
    ``epochs_selected``, ``predicted_label`` and ``prob_given`` (both from the last epoch),
    ``mean_loss`` and ``aum`` (mean margin: lower = more likely mislabeled; NaN for ledgers without it), and
    ``held_out_score``: the score over the epochs whose training did not see the sample (neither a medoid nor a
    mixup partner; NaN when there was none, or for ledgers without the ``trained`` column).
    """
    grouped = ledger.groupby("sample_id", sort=False)
    last = ledger[ledger["epoch"] == ledger["epoch"].max()].set_index("sample_id")
    selection_epochs = ledger.loc[ledger["selected"].notna(), "epoch"].nunique()
    selected_count = grouped["selected"].sum().astype(np.int64)
    out = pd.DataFrame({
        "score": score(grouped["prob_given"].mean().astype(np.float64)),
        "selection_rate": selected_count / selection_epochs if selection_epochs else np.nan,
        "never_selected": (selected_count == 0) & (selection_epochs > 0),
        "epochs_selected": selected_count,
        "predicted_label": last["predicted_label"],
        "prob_given": last["prob_given"].astype(np.float64),
        "mean_loss": grouped["loss"].mean().astype(np.float64),
        "aum": grouped["margin"].mean().astype(np.float64) if "margin" in ledger else np.nan,
        "held_out_score": _held_out_score(ledger, grouped),
    })
    out.index.name = "sample_id"
    return out


def _held_out_score(ledger: pd.DataFrame, grouped) -> pd.Series | float:
    if "trained" not in ledger:
        return np.nan
    held_out = ledger.loc[~ledger["trained"].astype(bool)]
    mean = held_out.groupby("sample_id", sort=False)["prob_given"].mean().astype(np.float64)
    return score(mean.reindex(grouped.size().index))



class ScoreTotals:
    """``score_samples`` one epoch at a time: per-sample running sums over a ledger's epochs, so a fit holds a few
    numbers per sample instead of a row per sample and epoch (a million samples over 30 epochs: 30 million rows).
    ``add`` each epoch's rows (every sample, in one fixed order); ``per_sample`` gives what ``score_samples``
    gives for the ledger of the epochs added (the means in float64 here, where pandas may round them to the
    columns' float32)."""

    def __init__(self, n: int):
        self.epochs = self.selection_epochs = 0
        self.prob_given, self.loss, self.margin = np.zeros(n), np.zeros(n), np.zeros(n)
        self.selected = np.zeros(n, dtype=np.int64)
        self.held_out_sum, self.held_out_count = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.has_margin = self.has_trained = True
        self.last_predicted = self.last_prob_given = None

    def add(self, part: pd.DataFrame) -> None:
        """One epoch's ledger rows (``run.ledger``'s columns)."""
        prob_given = part["prob_given"].to_numpy(np.float64)
        self.epochs += 1
        self.prob_given += prob_given
        self.loss += part["loss"].to_numpy(np.float64)
        self.has_margin &= "margin" in part
        if self.has_margin:
            self.margin += part["margin"].to_numpy(np.float64)
        selected = part["selected"]
        if selected.notna().any():
            self.selection_epochs += 1
            self.selected += selected.fillna(False).to_numpy(bool)
        self.has_trained &= "trained" in part
        if self.has_trained:
            held_out = ~part["trained"].to_numpy(bool)
            self.held_out_sum += np.where(held_out, prob_given, 0.0)
            self.held_out_count += held_out
        self.last_predicted = part["predicted_label"].to_numpy(np.int64)
        self.last_prob_given = prob_given

    def mean_prob_given(self) -> np.ndarray:
        """(n,) mean over the epochs added of prob_given (``score`` makes it the score)."""
        return self.prob_given / max(self.epochs, 1)

    def per_sample(self, sample_ids) -> pd.DataFrame:
        """``score_samples``'s frame, indexed by ``sample_ids`` (the order the rows were added in)."""
        epochs, chosen = max(self.epochs, 1), self.selection_epochs
        with np.errstate(invalid="ignore", divide="ignore"):
            held_out = np.where(self.held_out_count > 0, self.held_out_sum / self.held_out_count, np.nan)
        out = pd.DataFrame({
            "score": score(self.mean_prob_given()),
            "selection_rate": self.selected / chosen if chosen else np.nan,
            "never_selected": (self.selected == 0) & (chosen > 0),
            "epochs_selected": self.selected,
            "predicted_label": self.last_predicted,
            "prob_given": self.last_prob_given,
            "mean_loss": self.loss / epochs,
            "aum": self.margin / epochs if self.has_margin else np.nan,
            "held_out_score": score(held_out) if self.has_trained else np.nan,
        }, index=pd.Index(sample_ids, name="sample_id"))
        return out


@dataclass(frozen=True)
class SuspectRule:
    """Which samples are suspects: the ``top`` K highest scores, the scores above ``threshold``, or, with
    neither, the run's own rule (``flag_suspects``). A sample without a score (NaN: a validation sample) is
    never a suspect. Raises BadInputError for both options at once or a negative ``top``."""

    top: int | None = None
    threshold: float | None = None

    def __post_init__(self):
        if self.top is not None and self.threshold is not None:
            raise BadInputError("give --top or --threshold, not both")
        if self.top is not None and self.top < 0:
            raise BadInputError("--top must be >= 0")

    @property
    def is_own(self) -> bool:
        """The run's own rule (what ``scores.csv``'s ``suspect`` column holds)."""
        return self.top is None and self.threshold is None

    def describe(self) -> str:
        if self.top is not None:
            return f"the {self.top} highest scores"
        if self.threshold is not None:
            return f"score > {self.threshold}"
        return SUSPECT_RULE

    def flag(self, score: np.ndarray | pd.Series, disagrees: np.ndarray) -> np.ndarray:
        """(n,) boolean mask of the suspects; ``disagrees`` marks the samples the saved model labels differently
        from the given label (only the own rule reads it, and only its count)."""
        if self.top is not None:
            return top_scores(score, self.top)
        if self.threshold is not None:
            return np.asarray(score) > self.threshold
        return flag_suspects(score, disagrees)


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
