"""Beyond wrong labels: near-duplicates, outliers and image quality of every sample of a run (train and val), from
the neighbours the fit finds for the agreement (``method.neighbours``, ``method.issues``) and the quality measured
as each image was read (``data.quality``). Written by the fit as ``RUN/checks.parquet`` (every sample, every
score) and ``RUN/issues.csv`` (one row per sample and issue it has: what a reviewer goes through).

Issue names: ``near-duplicate``, ``outlier``, ``quality:<kind>`` (``config.ISSUE_TYPES``). Near-duplicate
groups are numbered in the order a reviewer should see them: groups whose members carry different labels first,
then groups that cross the train / validation split, then the larger; ``issues.csv`` is in that order too
(near-duplicates by group, then outliers and each quality kind, worst first).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import QUALITY_KINDS
from ..data.quality import quality_issues
from ..method.issues import (class_distances, flag_outliers, near_duplicate_groups, neighbour_similarities,
                             outlier_scores)


def sample_checks(sample_ids: list[str], given_label: np.ndarray, split: np.ndarray, embeddings: np.ndarray,
                  neighbours: np.ndarray, measures: np.ndarray, sizes: np.ndarray) -> pd.DataFrame:
    """One row per sample (in the order given): ``near_duplicate_group`` (-1: none; ``order_groups``'s numbering),
    ``nearest_similarity`` (cosine to its most similar other sample), ``group_labels_differ``,
    ``group_crosses_split``, ``outlier_score`` (robust deviations from its neighbours or the nearest class) and
    ``outlier`` (``method.issues``), and each quality kind's score and ``<kind>_issue``
    (``data.quality.quality_issues``).

    ``embeddings``: (n, D) the run's; ``neighbours``: (n, k) each sample's nearest other samples among them
    (positions in this order, ``method.neighbours``); ``measures``: (n, M) ``data.quality.measure`` of each image;
    ``sizes``: (n, 2)."""
    given_label, split = np.asarray(given_label), np.asarray(split)
    similarities = neighbour_similarities(embeddings, neighbours)
    groups, differ, crosses = order_groups(near_duplicate_groups(neighbours, similarities), given_label, split)
    scores = outlier_scores(similarities, class_distances(embeddings, given_label))
    table = pd.DataFrame({
        "sample_id": sample_ids, "given_label": given_label, "split": split,
        "near_duplicate_group": groups,
        "nearest_similarity": np.nan_to_num(similarities, nan=-np.inf).max(axis=1),
        "group_labels_differ": differ, "group_crosses_split": crosses,
        "outlier_score": scores, "outlier": flag_outliers(scores),
    })
    quality = quality_issues(measures, sizes)
    return pd.concat([table, quality.reset_index(drop=True)], axis=1)


def order_groups(groups: np.ndarray, labels: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """(``groups`` (-1: none) renumbered 0, 1, ... in review order: different labels within first, then crossing
    the split, then larger, then by first row; per sample whether its group holds more than one label, and both
    splits (False outside a group))."""
    ordered, differ, crosses = groups.copy(), np.zeros(len(groups), bool), np.zeros(len(groups), bool)
    grouped = np.nonzero(groups >= 0)[0]
    if not len(grouped):
        return ordered, differ, crosses
    table = pd.DataFrame({"group": groups[grouped], "label": labels[grouped], "split": split[grouped],
                          "row": grouped}).groupby("group").agg(labels=("label", "nunique"), splits=("split", "nunique"),
                                                                size=("row", "size"), first=("row", "min"))
    order = table.sort_values(["labels", "splits", "size", "first"], ascending=[False, False, False, True]).index
    number = np.full(groups.max() + 1, -1)
    number[order.to_numpy()] = np.arange(len(order))
    ordered[grouped] = number[groups[grouped]]
    differ[grouped] = table["labels"].reindex(groups[grouped]).to_numpy() > 1
    crosses[grouped] = table["splits"].reindex(groups[grouped]).to_numpy() > 1
    return ordered, differ, crosses


def issue_rows(checks: pd.DataFrame) -> pd.DataFrame:
    """``issues.csv``: one row per sample and issue it has (sample_id, split, given_label, issue, score, group),
    near-duplicates first by group, then outliers and each quality kind, the worst first. ``score``: the
    near-duplicate's similarity to its nearest sample, the outlier score, the quality kind's score (all: higher =
    more of it); ``group``: the near-duplicate group (empty for the others)."""
    columns = ["sample_id", "split", "given_label"]
    parts = []
    duplicates = checks[checks["near_duplicate_group"] >= 0]
    duplicates = duplicates.sort_values(["near_duplicate_group", "nearest_similarity"], ascending=[True, False],
                                        kind="stable")
    parts.append(duplicates[columns].assign(issue="near-duplicate", score=duplicates["nearest_similarity"],
                                            group=duplicates["near_duplicate_group"]))
    for issue, flag, score in [("outlier", "outlier", "outlier_score"),
                               *((f"quality:{kind}", f"{kind}_issue", kind) for kind in QUALITY_KINDS)]:
        found = checks[checks[flag]].sort_values(score, ascending=False, kind="stable")
        parts.append(found[columns].assign(issue=issue, score=found[score], group=-1))
    out = pd.concat(parts, ignore_index=True)
    out["group"] = out["group"].astype("Int64").where(out["group"] >= 0)
    return out
