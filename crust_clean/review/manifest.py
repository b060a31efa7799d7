"""Cleaned dataset manifests: a run's samples with the review decisions applied (drop / relabel / keep).

The policies (``reviewed``, ``auto``) and the decisions are the review contract (``review.decisions``).

``OUT/`` gets ``kept.csv``, ``dropped.csv``, ``relabeled.csv`` (sample_id, path, given_label, label, score,
decision, reason, decided_at), ``summary.json``, and the cleaned dataset in one format:
  csv / jsonl   ``manifest.csv`` / ``manifest.jsonl``: path,label,sample_id rows (what ``crust-clean fit`` reads;
                ``--id-column sample_id`` keeps the run's ids)
  imagefolder   ``images/<label>/<name>``: symlinks to the images (copies with ``copy=True``)
  hf            ``dataset/``: a ``datasets`` save_to_disk dataset (image, label as ClassLabel, sample_id)
The source is never written; OUT is built beside its target and renamed into place.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..atomic import staged_folder
from ..config import DROPPABLE_ISSUES, MANIFEST_FORMATS, MANIFEST_POLICIES
from ..errors import BadInputError
from ..run.folder import Run
from .decisions import DECISIONS, LIST_COLUMNS, decide_auto, decide_reviewed, drop_issues


@dataclass
class CleanedDataset:
    """What ``export_manifest`` wrote."""

    out: Path
    dataset: Path  # the manifest file or folder in the chosen format
    kept: int
    dropped: int
    relabeled: int
    unreviewed_suspects: int


def export_manifest(run: Run | str | Path, out: str | Path, *, policy: str = "reviewed", fmt: str = "csv",
                    from_fiftyone: str | None = None, top: int | None = None, threshold: float | None = None,
                    relabel_confidence: float = 0.9, drop: Sequence[str] = (), copy: bool = False,
                    overwrite: bool = False) -> CleanedDataset:
    """Apply review decisions (or the ``auto`` policy) to ``run``'s samples and write the cleaned dataset.

    Parameters
    ----------
    run : Run or path
    out : path
        Output folder; an existing non-empty one is an error unless ``overwrite``.
    policy : "reviewed" or "auto"
    fmt : "csv", "jsonl", "imagefolder" or "hf"
    from_fiftyone : str, optional
        The FiftyOne dataset holding the decisions (``reviewed``); default: the run's exported dataset.
    top, threshold :
        Which samples are suspects (``method.scores.SuspectRule``; default: the run's own rule).
    relabel_confidence : float
        ``auto``: the robust model's smallest confidence to relabel instead of dropping.
    drop : issue types
        Also drop the samples with these issues (``config.ISSUE_TYPES``, or ``quality`` for every quality kind)
        where no reviewer decided on them; near-duplicates keep one member a group (``decisions.drop_issues``).
    copy : bool
        ``imagefolder``: copy the images instead of symlinking them.
    """
    if policy not in MANIFEST_POLICIES:
        raise BadInputError(f"policy {policy!r} is not one of: {', '.join(MANIFEST_POLICIES)}")
    if fmt not in MANIFEST_FORMATS:
        raise BadInputError(f"format {fmt!r} is not one of: {', '.join(MANIFEST_FORMATS)}")
    if not 0 <= relabel_confidence <= 1:
        raise BadInputError("--relabel-confidence must be in [0, 1]")
    unknown = sorted(set(drop) - set(DROPPABLE_ISSUES))
    if unknown:
        raise BadInputError(f"--drop {', '.join(unknown)}: not an issue type (one of {', '.join(DROPPABLE_ISSUES)})")
    run, out = Run.of(run), Path(out)
    if drop and run.issues is None:
        raise BadInputError(f"run {run.path} was written before crust-clean checked other issues: --drop needs a "
                            "newer fit")
    if output_taken(out) and not overwrite:
        raise BadInputError(f"{out} already exists and is not empty (use --overwrite)")
    table = run.review_table(top=top, threshold=threshold)
    if policy == "reviewed":
        from .decision_store import read_decisions

        decided = decide_reviewed(table, read_decisions(run, from_fiftyone))
        unreviewed = decided[decided["suspect"] & decided["reviewed_decision"].isna()]
    else:
        decided, unreviewed = decide_auto(table, relabel_confidence), None
    if drop:
        decided = drop_issues(decided, run.issues, drop)
    decided["path"] = [str(p) for p in run.image_files()]
    cleaned = decided[decided["decision"] != "drop"]
    counts = {d: int((decided["decision"] == d).sum()) for d in DECISIONS}
    with staged_folder(out) as staging:
        for decision, file in (("keep", "kept.csv"), ("drop", "dropped.csv"), ("relabel", "relabeled.csv")):
            decided.loc[decided["decision"] == decision, LIST_COLUMNS].to_csv(staging / file, index=False)
        if unreviewed is not None:
            unreviewed[LIST_COLUMNS].to_csv(staging / "unreviewed_suspects.csv", index=False)
        written = _write_dataset(cleaned, staging, fmt, copy)
        summary = {"run": str(run.path.resolve()), "policy": policy, "format": fmt, "samples": len(decided),
                   "kept": counts["keep"], "dropped": counts["drop"], "relabeled": counts["relabel"],
                   "unreviewed_suspects": len(unreviewed) if unreviewed is not None else None,
                   "relabel_confidence": relabel_confidence if policy == "auto" else None,
                   "dropped_for_issues": sorted(drop),
                   "classes": sorted(cleaned["label"].unique().tolist())}
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return CleanedDataset(out=out, dataset=out / written, kept=counts["keep"], dropped=counts["drop"],
                          relabeled=counts["relabel"], unreviewed_suspects=0 if unreviewed is None else len(unreviewed))


def output_taken(out: str | Path) -> bool:
    """Whether ``out`` exists and is not an empty folder (writing there needs ``overwrite``)."""
    out = Path(out)
    return out.exists() and (not out.is_dir() or any(out.iterdir()))


def _write_dataset(cleaned: pd.DataFrame, staging: Path, fmt: str, copy: bool) -> str:
    """Write the cleaned samples in ``fmt`` inside ``staging``; returns the name written."""
    rows = cleaned[["path", "label", "sample_id"]]
    if fmt == "csv":
        rows.to_csv(staging / "manifest.csv", index=False)
        return "manifest.csv"
    if fmt == "jsonl":
        rows.to_json(staging / "manifest.jsonl", orient="records", lines=True, force_ascii=False)
        return "manifest.jsonl"
    if fmt == "imagefolder":
        for path, label, sample_id in rows.itertuples(index=False):
            target = staging / "images" / _safe(label) / _file_name(sample_id, Path(path).suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            if copy:
                shutil.copy2(path, target)
            else:
                target.symlink_to(Path(path).resolve())
        return "images"
    import datasets

    classes = sorted(rows["label"].unique().tolist())
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=classes),
                                  "sample_id": datasets.Value("string")})
    table = datasets.Dataset.from_dict({
        "image": [{"bytes": Path(p).read_bytes(), "path": Path(p).name} for p in rows["path"]],
        "label": [classes.index(label) for label in rows["label"]],
        "sample_id": rows["sample_id"].tolist(),
    }, features=features)
    table.save_to_disk(str(staging / "dataset"))
    return "dataset"


def _safe(name: str) -> str:
    """A file-name-safe version of a label or id (no separators, no leading dot)."""
    cleaned = "".join("_" if c in '/\\:*?"<>|' else c for c in str(name)).strip()
    return ("_" + cleaned) if cleaned.startswith(".") or not cleaned else cleaned


def _file_name(sample_id: str, suffix: str) -> str:
    name = _safe(str(sample_id).replace("/", "__"))
    return name if name.lower().endswith(suffix.lower()) else name + suffix
