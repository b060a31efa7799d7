"""The review contract: what a reviewer's decision is, where it is kept, and how decisions make a cleaned dataset.

A decision is about one sample of a run (its ``sample_id``): ``keep``, ``drop`` or ``relabel`` (with the new
label), and when it was made (UTC). In FiftyOne it is three fields of the sample (``FIELDS``), written by the
review plugin's operators (``review.fiftyone.record_decision``) and never touched by a re-export.

Policies of a cleaned dataset (``review.manifest``):
  ``reviewed``  the reviewers' decisions; a sample without one is kept (the suspects among them are listed).
  ``auto``      no review: a suspect is relabeled to the saved model's prediction where the model disagrees
                with the given label with at least ``relabel_confidence``, otherwise dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import BadInputError

DECISIONS = ("keep", "drop", "relabel")
#: The FiftyOne fields of a decision: what was decided, the new label (relabel only), when (UTC).
DECISION_FIELD, NEW_LABEL_FIELD, DECIDED_AT_FIELD = "crust_decision", "crust_new_label", "crust_decided_at"
FIELDS = (DECISION_FIELD, NEW_LABEL_FIELD, DECIDED_AT_FIELD)
#: Columns of the kept / dropped / relabeled lists of a cleaned dataset.
LIST_COLUMNS = ["sample_id", "path", "given_label", "label", "score", "decision", "reason", "decided_at"]


def check_decision(decision: str, new_label: str | None) -> None:
    """Raise BadInputError unless ``decision`` is one of ``DECISIONS`` with a new label for relabel only."""
    if decision not in DECISIONS:
        raise BadInputError(f"decision {decision!r} is not one of: {', '.join(DECISIONS)}")
    if (decision == "relabel") != bool(new_label):
        raise BadInputError("a new label goes with decision relabel, and only with it")


def check_decisions(decisions: pd.DataFrame, where: str) -> None:
    """Raise BadInputError for stored decisions (``sample_id, reviewed_decision, new_label``) that break the
    contract: an unknown decision, or relabel without a new label."""
    bad = sorted({d for d in decisions["reviewed_decision"].dropna() if d not in DECISIONS})
    if bad:
        raise BadInputError(f"{where} has unknown decisions {bad} (expected {', '.join(DECISIONS)})")
    unlabeled = decisions[(decisions["reviewed_decision"] == "relabel") & decisions["new_label"].isna()]
    if len(unlabeled):
        raise BadInputError(f"{len(unlabeled)} samples are marked relabel without a new label, "
                            f"e.g. {unlabeled['sample_id'].iloc[0]!r}")


def decide_reviewed(table: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """``table`` (a ``Run.review_table``) with each sample's ``decision``, ``label``, ``reason`` and
    ``decided_at`` from the reviewers' ``decisions`` (``sample_id, reviewed_decision, new_label, decided_at``);
    a sample nobody decided on is kept."""
    decided = table.merge(decisions, on="sample_id", how="left", validate="one_to_one")
    decision = decided["reviewed_decision"].fillna("keep")
    decided["decision"] = decision
    decided["label"] = np.where(decision == "relabel", decided["new_label"], decided["given_label"])
    decided["reason"] = np.where(decided["reviewed_decision"].isna(), "not reviewed", "reviewer: " + decision)
    decided["decided_at"] = decided["decided_at"].map(lambda t: None if pd.isna(t) else pd.Timestamp(t).isoformat())
    return decided


def decide_auto(table: pd.DataFrame, relabel_confidence: float) -> pd.DataFrame:
    """``table`` (a ``Run.review_table``) with the ``auto`` policy's decisions (see the module docstring)."""
    decided = table.copy()
    relabel = decided["suspect"] & (decided["predicted_label"] != decided["given_label"]) & (
        decided["confidence"] >= relabel_confidence)
    decided["decision"] = np.where(relabel, "relabel", np.where(decided["suspect"], "drop", "keep"))
    decided["label"] = np.where(relabel, decided["predicted_label"], decided["given_label"])
    decided["reason"] = [
        f"auto: score {row.score:.3f}, the model says {row.predicted_label} with confidence {row.confidence:.3f}"
        if row.decision != "keep" else "auto: not a suspect"
        for row in decided.itertuples()
    ]
    decided["decided_at"] = None
    return decided
