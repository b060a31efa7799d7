"""The review contract: what a reviewer's decision is, where it is kept, and how decisions make a cleaned dataset.

A decision is about one sample: its ``sample_id`` and its image content (a SHA-256 of the file). It is ``keep``,
``drop`` or ``relabel`` (with the new label), with when it was made (UTC), the sample's score then, and where it was
made (a FiftyOne dataset, or a CSV file it was imported from). In FiftyOne it is fields of the sample (``FIELDS``)
and a tag (``crust:decided:<decision>``), written by the review plugin's operators (``review.decision_store``) and
never touched by a re-export.

Decisions carry forward (``carry_forward``): a later export of a sample with the same id and the same content gets
the latest decision made on it in any earlier dataset. A ``keep`` is re-opened (back in the queue, the earlier
decision noted) when the sample's score rose by more than ``REOPEN_MARGIN`` since it was kept: the new model is
more sure the label is wrong than the one the reviewer overruled. A drop or relabel stands. A sample whose image
changed inherits nothing, nor does one re-opened in the dataset exported into (``review.decision_store``).

Policies of a cleaned dataset (``review.manifest``):
  ``reviewed``  the reviewers' decisions; a sample without one is kept (the suspects among them are listed).
  ``auto``      no review: a suspect is relabeled to the saved model's prediction where the model disagrees
                with the given label with at least ``relabel_confidence``, otherwise dropped.
Either can also drop the samples with other issues (``drop_issues``: near-duplicates but one a group, outliers,
image quality kinds) where no reviewer decided on them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import BadInputError

DECISIONS = ("keep", "drop", "relabel")
#: The FiftyOne fields of a decision: what was decided, the new label (relabel only), when (UTC), the sample's
#: score then, the image content it was made on (SHA-256), and where it was made.
DECISION_FIELD, NEW_LABEL_FIELD, DECIDED_AT_FIELD = "crust_decision", "crust_new_label", "crust_decided_at"
DECIDED_SCORE_FIELD, DECIDED_HASH_FIELD, DECIDED_IN_FIELD = (
    "crust_decided_score", "crust_decided_content_hash", "crust_decided_in")
FIELDS = (DECISION_FIELD, NEW_LABEL_FIELD, DECIDED_AT_FIELD, DECIDED_SCORE_FIELD, DECIDED_HASH_FIELD,
          DECIDED_IN_FIELD)
#: The tag prefix that shows a decision on the App's tiles: ``crust:decided:drop``.
DECIDED_TAG = "crust:decided:"
#: A kept sample is re-opened when its score rose by more than this since it was kept.
REOPEN_MARGIN = 0.05
#: Columns of a decisions CSV (``crust-clean decisions export``); import needs sample_id and decision.
CSV_COLUMNS = ["sample_id", "decision", "new_label", "decided_at", "decided_score", "content_hash", "decided_in",
               "path", "given_label"]
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
    decided["decided_at"] = decided["decided_at"].map(utc_iso)
    return decided


def drop_issues(decided: pd.DataFrame, issues: pd.DataFrame, drop: Sequence[str]) -> pd.DataFrame:
    """``decided`` (``decide_reviewed`` / ``decide_auto``) with the samples that have an issue in ``drop``
    (``run.checks.ISSUE_TYPES``; ``quality`` means every quality kind) dropped, where no reviewer decided on them
    (a reviewer's decision always stands). Near-duplicates: each group keeps one member, the one a reviewer kept or
    relabeled, else its first in the run's order that is not dropped already, and drops the others.
    ``issues``: the run's ``issues.csv``. The reason says which issue dropped a sample."""
    wanted = set(drop)
    if "quality" in wanted:
        wanted |= {issue for issue in issues["issue"].unique() if issue.startswith("quality:")}
    decided = decided.copy()
    undecided = (decided["reviewed_decision"].isna().to_numpy() if "reviewed_decision" in decided
                 else np.ones(len(decided), bool))  # the auto policy's relabels are no reviewer's decisions
    position = pd.Series(np.arange(len(decided)), index=decided["sample_id"])

    def droppable(rows: np.ndarray) -> np.ndarray:  # no reviewer decided them, and they are not dropped already
        return rows[undecided[rows] & (decided["decision"].to_numpy()[rows] != "drop")]

    def mark_dropped(rows: np.ndarray, reason: str) -> None:
        decided.iloc[rows, decided.columns.get_loc("decision")] = "drop"
        decided.iloc[rows, decided.columns.get_loc("reason")] = reason

    found = issues[issues["issue"].isin(wanted)]
    for issue, part in found[found["issue"] != "near-duplicate"].groupby("issue", sort=False):
        mark_dropped(droppable(position[part["sample_id"]].to_numpy()), f"policy: {issue}")
    for group, part in found[found["issue"] == "near-duplicate"].groupby("group", sort=False):
        rows = np.sort(position[part["sample_id"]].to_numpy())
        alive = rows[decided["decision"].to_numpy()[rows] != "drop"]
        if not len(alive):
            continue
        reviewer_kept = alive[~undecided[alive]]
        keeper = reviewer_kept[0] if len(reviewer_kept) else alive[0]
        mark_dropped(droppable(rows[rows != keeper]),
                     f"policy: near-duplicate of {decided['sample_id'].iloc[keeper]} (group {group})")
    return decided


def utc_iso(time) -> str | None:
    """``time`` as ISO 8601 with its UTC offset (``...+00:00``); a naive time is UTC (as FiftyOne stores it)."""
    return None if time is None or pd.isna(time) else as_utc(time).isoformat()


def as_utc(time) -> pd.Timestamp:
    """``time`` in UTC, time-zone aware; a naive time is taken to be UTC."""
    stamp = pd.Timestamp(time)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def carry_forward(current: pd.DataFrame, earlier: pd.DataFrame, *,
                  reopen_margin: float = REOPEN_MARGIN) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The earlier decisions that carry into ``current`` (see the module docstring for the rule).

    ``current``: ``sample_id, content_hash, score`` of the samples without a decision of their own.
    ``earlier``: ``sample_id, content_hash, decision, new_label, decided_at, decided_score, decided_in``, decisions
    made in earlier datasets (several per sample allowed: the latest ``decided_at`` counts).
    Returns ``(carried, reopened)``: ``carried`` holds ``earlier``'s columns for each sample that takes its
    decision; ``reopened`` the same for the kept samples whose score rose (they take none), with ``score``.
    """
    latest = (earlier.sort_values("decided_at", kind="stable")
              .drop_duplicates(["sample_id", "content_hash"], keep="last"))
    matched = current[["sample_id", "content_hash", "score"]].merge(latest, on=["sample_id", "content_hash"])
    score, then = (pd.to_numeric(matched[c], errors="coerce") for c in ("score", "decided_score"))
    rose = (matched["decision"] == "keep") & (score > then + reopen_margin)  # no score either side: it stands
    return (matched.loc[~rose, earlier.columns].reset_index(drop=True),
            matched.loc[rose, list(earlier.columns) + ["score"]].reset_index(drop=True))


def parse_decisions_csv(path, samples: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """The decisions of a CSV file (``CSV_COLUMNS``; sample_id and decision needed) checked against ``samples``
    (``sample_id, content_hash``) and the label ``classes``. A row with an empty decision is no decision and is
    left out; a time without an offset is UTC; an empty time is now.

    Raises BadInputError with one line per bad row (a sample id the run lacks or given twice, an unknown decision,
    relabel without a known class or a label without relabel, a time or score that does not parse, an image whose
    content has changed since the decision) and imports nothing then.
    """
    try:
        rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise BadInputError(f"decisions file {path} cannot be read: {err}") from None
    missing = [c for c in ("sample_id", "decision") if c not in rows.columns]
    if missing:
        raise BadInputError(f"decisions file {path} needs columns sample_id,decision (missing: {', '.join(missing)};"
                            f" columns: {', '.join(rows.columns) or 'none'})")
    rows = rows.reindex(columns=CSV_COLUMNS, fill_value="").apply(lambda column: column.str.strip())
    hashes = dict(zip(samples["sample_id"], samples["content_hash"]))
    errors, seen, now = [], set(), pd.Timestamp.now(tz="UTC")
    for line, row in zip(range(2, len(rows) + 2), rows.itertuples(index=False)):  # line 1 is the header
        if not row.decision:
            continue
        problem = _row_problem(row, hashes, seen, set(classes))
        if problem:
            errors.append(f"{path}:{line}: {problem}")
        seen.add(row.sample_id)
    if errors:
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise BadInputError(f"{len(errors)} bad rows, nothing imported:\n" + "\n".join(errors[:20]) + more)
    rows = rows[rows["decision"] != ""].copy()
    rows["decided_at"] = [as_utc(t or now) for t in rows["decided_at"]]
    rows["decided_score"] = pd.to_numeric(rows["decided_score"].replace("", None))
    rows["new_label"] = rows["new_label"].replace("", None)
    rows["content_hash"] = rows["sample_id"].map(hashes)
    return rows.reset_index(drop=True)


def _row_problem(row, hashes: dict, seen: set, classes: set) -> str | None:
    """What is wrong with one row of a decisions CSV, or None."""
    if row.sample_id not in hashes:
        return f"sample {row.sample_id!r} is not in the run"
    if row.sample_id in seen:
        return f"sample {row.sample_id!r} is given twice"
    if row.decision not in DECISIONS:
        return f"decision {row.decision!r} is not one of: {', '.join(DECISIONS)}"
    if row.decision == "relabel" and row.new_label not in classes:
        return f"relabel needs new_label, one of the classes: {', '.join(sorted(classes))} (got {row.new_label!r})"
    if row.decision != "relabel" and row.new_label:
        return f"new_label {row.new_label!r} goes with decision relabel only (decision is {row.decision!r})"
    if row.content_hash and row.content_hash != hashes[row.sample_id]:
        return f"the image of sample {row.sample_id!r} has changed since the decision (content_hash differs)"
    try:
        pd.Timestamp(row.decided_at or 0)
        float(row.decided_score or 0)
    except ValueError:
        return f"decided_at {row.decided_at!r} or decided_score {row.decided_score!r} does not parse"
    return None


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
