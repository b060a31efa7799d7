"""Where review decisions live in FiftyOne, and how they move: recorded by the plugin's operators, read for a
cleaned manifest, carried forward into a later export, exported to and imported from CSV.

The contract (what a decision is, the carry-forward rule, the CSV columns) is ``review.decisions``. Every function
here takes FiftyOne views or datasets; the review queue is two saved views of the exported dataset,
``TO_REVIEW_VIEW`` (suspects without a decision, highest score first) and ``DECIDED_VIEW``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..atomic import atomic_path
from ..errors import BadInputError
from ..run.folder import Run
from .decisions import (
    CSV_COLUMNS,
    DECIDED_AT_FIELD,
    DECIDED_HASH_FIELD,
    DECIDED_IN_FIELD,
    DECIDED_SCORE_FIELD,
    DECIDED_TAG,
    DECISION_FIELD,
    DECISIONS,
    FIELDS,
    NEW_LABEL_FIELD,
    REOPEN_MARGIN,
    carry_forward,
    check_decision,
    check_decisions,
    parse_decisions_csv,
    utc_iso,
)

SUSPECT_TAG = "crust:suspect"
TO_REVIEW_VIEW, DECIDED_VIEW = "to review", "decided"
#: Why a sample is back in the queue: kept in an earlier round and its score rose since (what, where, both scores),
#: or its decision was cleared here. A re-opened sample takes no decision from earlier rounds.
REOPENED_FIELD = "crust_reopened"
#: The decision as a label, so the App shows it on the tile by default ("drop", "keep", "relabel to cat").
BADGE_FIELD = "crust_review"
#: The image content a sample has now (SHA-256 of its file), written by every export.
CONTENT_HASH_FIELD = "crust_content_hash"


def record_decision(samples, decision: str, new_label: str | None = None) -> int:
    """A reviewer's decision on ``samples`` (a FiftyOne view): the decision fields (the time in UTC, the sample's
    score and content now, made in this dataset) and the ``crust:decided:<decision>`` tag. What the plugin's
    operators call; returns how many samples it marked."""
    check_decision(decision, new_label)
    n = len(samples)
    now = datetime.now(timezone.utc).replace(tzinfo=None)  # FiftyOne stores naive UTC datetimes
    _write_decisions(samples, {
        DECISION_FIELD: [decision] * n, NEW_LABEL_FIELD: [new_label] * n, DECIDED_AT_FIELD: [now] * n,
        DECIDED_SCORE_FIELD: samples.values("crust_score"), DECIDED_HASH_FIELD: samples.values(CONTENT_HASH_FIELD),
        DECIDED_IN_FIELD: [samples._root_dataset.name] * n,
    })
    return n


def clear_decisions(samples) -> int:
    """Remove the decisions (fields, tags, badges) of ``samples``; they go back into the queue, noted as re-opened
    so that a later export does not carry an earlier round's decision onto them again. Returns how many."""
    n = len(samples)
    pinned = _write_decisions(samples, {field: [None] * n for field in FIELDS})
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    pinned.set_values(REOPENED_FIELD, [f"decision cleared in {pinned._root_dataset.name} at {now}"] * n)
    return n


def _write_decisions(samples, values: dict):
    """Write decision fields (lists in ``samples`` order), the tags and the tile badge; returns the samples pinned
    by id, as they are written: a view such as "to review" loses a sample as soon as its decision is written."""
    import fiftyone as fo

    samples = samples._root_dataset.select(samples.values("id"), ordered=True)
    samples.untag_samples([DECIDED_TAG + d for d in DECISIONS])
    for field, field_values in values.items():
        samples.set_values(field, field_values)
    samples.set_values(REOPENED_FIELD, [None] * len(samples))
    badges = [None if d is None else fo.Classification(label=f"relabel to {label}" if d == "relabel" else d)
              for d, label in zip(values[DECISION_FIELD], values[NEW_LABEL_FIELD])]
    samples.set_values(BADGE_FIELD, badges)
    for decision in DECISIONS:
        samples.match(_field(DECISION_FIELD) == decision).tag_samples(DECIDED_TAG + decision)
    return samples


def keep_one_per_group(kept, *, group_field: str = "crust_duplicate_group") -> tuple[int, int]:
    """Near-duplicates in one action: ``kept`` (a view: the members a reviewer keeps, usually one per group) are
    marked keep, and every other member of their near-duplicate groups (``group_field``, written by the export)
    that has no decision yet is marked drop; a member decided earlier keeps its decision. Returns (kept, dropped).

    Raises BadInputError when a kept sample is in no near-duplicate group."""
    groups = kept.values(group_field)
    if not groups or any(g is None for g in groups):
        raise BadInputError("keep one per group needs samples of near-duplicate groups (the 'near-duplicates' view)")
    dataset = kept._root_dataset
    others = (dataset.match(_field(group_field).is_in(sorted(set(groups))))
              .exclude(kept.values("id")).match(~_field(DECISION_FIELD).exists()))
    dropped = record_decision(others, "drop") if len(others) else 0
    return record_decision(kept, "keep"), dropped


def _field(name):
    from fiftyone import ViewField as F

    return F(name)


def queue_counts(dataset) -> tuple[int, int]:
    """(samples decided, suspects left to review) in ``dataset``."""
    return len(dataset.exists(DECISION_FIELD)), len(to_review(dataset))


def to_review(dataset):
    """The review queue: suspects without a decision, highest score first."""
    return dataset.match_tags(SUSPECT_TAG).match(~_field(DECISION_FIELD).exists()).sort_by("crust_score",
                                                                                           reverse=True)


def save_queue_views(dataset) -> None:
    dataset.save_view(TO_REVIEW_VIEW, to_review(dataset), overwrite=True)
    dataset.save_view(DECIDED_VIEW, dataset.exists(DECISION_FIELD).sort_by(DECIDED_AT_FIELD, reverse=True),
                      overwrite=True)


def carry_decisions_forward(dataset, samples, *, reopen_margin: float = REOPEN_MARGIN) -> dict[str, int]:
    """Bring into ``samples`` (the export's view of ``dataset``) the decisions made on the same samples (id and
    content) in other crust-clean datasets (``decisions.carry_forward``); mark the re-opened ones. A sample with a
    decision here, or re-opened here (by the rule or by clearing its decision), takes nothing. Returns
    ``{"carried": n, "reopened": m}``."""
    undecided = samples.match(~_field(DECISION_FIELD).exists() & ~_field(REOPENED_FIELD).exists())
    ids, sample_ids, hashes, scores = undecided.values(["id", "crust_sample_id", CONTENT_HASH_FIELD, "crust_score"])
    current = pd.DataFrame({"id": ids, "sample_id": sample_ids, "content_hash": hashes, "score": scores})
    earlier = _earlier_decisions(dataset.name)
    if current.empty or earlier.empty:
        return {"carried": 0, "reopened": 0}
    carried, reopened = carry_forward(current, earlier, reopen_margin=reopen_margin)
    row_of = dict(zip(current["sample_id"], current["id"]))
    if len(carried):
        target = dataset.select([row_of[s] for s in carried["sample_id"]], ordered=True)
        _write_decisions(target, {
            DECISION_FIELD: carried["decision"].tolist(), NEW_LABEL_FIELD: _nullable(carried["new_label"]),
            DECIDED_AT_FIELD: carried["decided_at"].tolist(), DECIDED_SCORE_FIELD: _nullable(carried["decided_score"]),
            DECIDED_HASH_FIELD: carried["content_hash"].tolist(), DECIDED_IN_FIELD: carried["decided_in"].tolist(),
        })
    if len(reopened):
        notes = [f"kept in {r.decided_in} at {utc_iso(r.decided_at)} with score {r.decided_score:.3f}; "
                 f"score now {r.score:.3f}" for r in reopened.itertuples()]
        dataset.select([row_of[s] for s in reopened["sample_id"]], ordered=True).set_values(REOPENED_FIELD, notes)
    return {"carried": len(carried), "reopened": len(reopened)}


def _nullable(column: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in column.tolist()]


def _earlier_decisions(excluding: str) -> pd.DataFrame:
    """Every decision stored in the crust-clean datasets other than ``excluding`` (where each was first made)."""
    import fiftyone as fo

    columns = ["sample_id", "content_hash", "decision", "new_label", "decided_at", "decided_score", "decided_in"]
    fields = ["crust_sample_id", DECIDED_HASH_FIELD, DECISION_FIELD, NEW_LABEL_FIELD, DECIDED_AT_FIELD,
              DECIDED_SCORE_FIELD, DECIDED_IN_FIELD]
    frames = []
    for name in fo.list_datasets():
        if name == excluding:
            continue
        dataset = fo.load_dataset(name)
        if "crust_run" not in dataset.info or DECIDED_HASH_FIELD not in dataset.get_field_schema():
            continue
        decided = dataset.exists(DECISION_FIELD).exists(DECIDED_HASH_FIELD)
        frames.append(pd.DataFrame(dict(zip(columns, decided.values(fields)))))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def read_decisions(run: Run, name: str | None = None) -> pd.DataFrame:
    """``sample_id, reviewed_decision, new_label, decided_at`` as the reviewers left them in the FiftyOne
    dataset ``name`` (default: the run's export). Raises BadInputError when there is no such dataset, it holds
    no export, or a stored decision breaks the contract (``decisions.check_decisions``)."""
    dataset = _exported_dataset(run, name)
    view = dataset.exists("crust_sample_id")
    sample_ids, decisions, new_labels, times = view.values(["crust_sample_id", DECISION_FIELD, NEW_LABEL_FIELD,
                                                            DECIDED_AT_FIELD])
    frame = pd.DataFrame({"sample_id": sample_ids, "reviewed_decision": decisions, "new_label": new_labels,
                          "decided_at": times})
    check_decisions(frame, f"FiftyOne dataset {dataset.name!r}")
    return frame


def _exported_dataset(run: Run, name: str | None):
    import fiftyone as fo

    from .fiftyone import declare_fields, default_dataset_name

    name = name or default_dataset_name(run)
    if not fo.dataset_exists(name):
        raise BadInputError(f"no FiftyOne dataset {name!r} with decisions: run `crust-clean export fiftyone "
                            f"{run.path}` and review first, or use --policy auto")
    dataset = fo.load_dataset(name)
    if "crust_sample_id" not in dataset.get_field_schema():
        raise BadInputError(f"FiftyOne dataset {name!r} holds no crust-clean export (no crust_sample_id field)")
    declare_fields(dataset)  # an export by an older crust-clean lacks the newer decision fields
    return dataset


@dataclass
class DecisionsFile:
    """What ``export_decisions`` / ``import_decisions`` did."""

    path: Path
    dataset: str
    decisions: int


def export_decisions(run: Run | str | Path, path: str | Path, *, name: str | None = None) -> DecisionsFile:
    """Write the decisions of ``run``'s FiftyOne dataset to a CSV (``decisions.CSV_COLUMNS``, one row per decided
    sample, times in UTC with their offset) for a spreadsheet, another machine or an annotation tool."""
    run = Run.of(run)
    dataset = _exported_dataset(run, name)
    decided = dataset.exists(DECISION_FIELD).sort_by("crust_sample_id")
    label_field = dataset.info.get("crust_label_field", "given_label")
    fields = ["crust_sample_id", DECISION_FIELD, NEW_LABEL_FIELD, DECIDED_AT_FIELD, DECIDED_SCORE_FIELD,
              DECIDED_HASH_FIELD, DECIDED_IN_FIELD, "filepath", f"{label_field}.label"]
    table = pd.DataFrame(dict(zip(CSV_COLUMNS, decided.values(fields))), columns=CSV_COLUMNS)
    table["decided_at"] = table["decided_at"].map(utc_iso)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return DecisionsFile(path=Path(path), dataset=dataset.name, decisions=len(table))


def import_decisions(run: Run | str | Path, path: str | Path, *, name: str | None = None) -> DecisionsFile:
    """Record the decisions of a CSV (``decisions.parse_decisions_csv`` checks every row first; one bad row and
    nothing is imported) in ``run``'s FiftyOne dataset; a decision already there for the same sample is replaced.
    Where each decision was made is kept from the file's ``decided_in``, else ``file <name>``."""
    run = Run.of(run)
    dataset = _exported_dataset(run, name)
    view = dataset.exists("crust_sample_id")
    ids, sample_ids, hashes = view.values(["id", "crust_sample_id", CONTENT_HASH_FIELD])
    label_field = dataset.info.get("crust_label_field", "given_label")
    classes = sorted(set(run.samples["given_label"]) | set(dataset.distinct(f"{label_field}.label")))
    rows = parse_decisions_csv(path, pd.DataFrame({"sample_id": sample_ids, "content_hash": hashes}), classes)
    row_of = dict(zip(sample_ids, ids))
    target = dataset.select([row_of[s] for s in rows["sample_id"]], ordered=True)
    _write_decisions(target, {
        DECISION_FIELD: rows["decision"].tolist(), NEW_LABEL_FIELD: _nullable(rows["new_label"]),
        DECIDED_AT_FIELD: [t.tz_convert(None).to_pydatetime() for t in rows["decided_at"]],
        DECIDED_SCORE_FIELD: _nullable(rows["decided_score"]), DECIDED_HASH_FIELD: rows["content_hash"].tolist(),
        DECIDED_IN_FIELD: [d or f"file {Path(path).name}" for d in rows["decided_in"]],
    })
    return DecisionsFile(path=Path(path), dataset=dataset.name, decisions=len(rows))
