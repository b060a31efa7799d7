"""Cleaned dataset manifests: a run's samples with the review decisions applied (drop / relabel / keep).

Policies:
  ``reviewed``  the decisions reviewers made in the FiftyOne App (``crust_decision`` = keep / drop / relabel and
                ``crust_new_label``, written by the plugin); samples without a decision are kept, and the
                suspects among them are listed in ``unreviewed_suspects.csv``.
  ``auto``      no App: suspects are relabeled to the robust model's prediction where it is confident
                (``relabel_confidence``) and disagrees with the given label, otherwise dropped.

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
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import MANIFEST_FORMATS, MANIFEST_POLICIES
from .errors import BadInputError
from .fiftyone_export import DECISIONS
from .run import Run

POLICIES, FORMATS = MANIFEST_POLICIES, MANIFEST_FORMATS
LIST_COLUMNS = ["sample_id", "path", "given_label", "label", "score", "decision", "reason", "decided_at"]


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
                    relabel_confidence: float = 0.9, copy: bool = False, overwrite: bool = False) -> CleanedDataset:
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
        Which samples are suspects (as in ``export fiftyone``; default: the run's rule, see ``scores``).
    relabel_confidence : float
        ``auto``: the robust model's smallest confidence to relabel instead of dropping.
    copy : bool
        ``imagefolder``: copy the images instead of symlinking them.
    """
    from .media import sample_files

    if policy not in POLICIES:
        raise BadInputError(f"policy {policy!r} is not one of: {', '.join(POLICIES)}")
    if fmt not in FORMATS:
        raise BadInputError(f"format {fmt!r} is not one of: {', '.join(FORMATS)}")
    if not 0 <= relabel_confidence <= 1:
        raise BadInputError("--relabel-confidence must be in [0, 1]")
    run = run if isinstance(run, Run) else Run(run)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise BadInputError(f"{out} already exists and is not empty (use --overwrite)")
    table = run.review_table(top=top, threshold=threshold)
    if policy == "reviewed":
        decided = _decide_reviewed(table, _decisions_from_fiftyone(run, from_fiftyone))
    else:
        decided = _decide_auto(table, relabel_confidence)
    decided["path"] = [str(p) for p in sample_files(run)]

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for decision, file in (("keep", "kept.csv"), ("drop", "dropped.csv"), ("relabel", "relabeled.csv")):
            decided.loc[decided["decision"] == decision, LIST_COLUMNS].to_csv(staging / file, index=False)
        unreviewed = decided.iloc[:0]
        if policy == "reviewed":
            unreviewed = decided[decided["suspect"] & decided["reviewed_decision"].isna()]
            unreviewed[LIST_COLUMNS].to_csv(staging / "unreviewed_suspects.csv", index=False)
        cleaned = decided[decided["decision"] != "drop"]
        written = _write_dataset(cleaned, staging, fmt, copy)
        counts = {d: int((decided["decision"] == d).sum()) for d in DECISIONS}
        summary = {"run": str(run.path.resolve()), "policy": policy, "format": fmt, "samples": len(decided),
                   "kept": counts["keep"], "dropped": counts["drop"], "relabeled": counts["relabel"],
                   "unreviewed_suspects": len(unreviewed) if policy == "reviewed" else None,
                   "relabel_confidence": relabel_confidence if policy == "auto" else None,
                   "classes": sorted(cleaned["label"].unique().tolist())}
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        _replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return CleanedDataset(out=out, dataset=out / written, kept=counts["keep"], dropped=counts["drop"],
                          relabeled=counts["relabel"], unreviewed_suspects=len(unreviewed))


def _decisions_from_fiftyone(run: Run, name: str | None) -> pd.DataFrame:
    """sample_id, decision, new_label, decided_at as the reviewers left them in FiftyOne."""
    import fiftyone as fo

    from .fiftyone_export import default_dataset_name

    name = name or default_dataset_name(run)
    if not fo.dataset_exists(name):
        raise BadInputError(f"no FiftyOne dataset {name!r} to read decisions from: run `crust-clean export "
                            f"fiftyone {run.path}` and review first, or use --policy auto")
    dataset = fo.load_dataset(name)
    if "crust_sample_id" not in dataset.get_field_schema():
        raise BadInputError(f"FiftyOne dataset {name!r} holds no crust-clean export (no crust_sample_id field)")
    view = dataset.exists("crust_sample_id")
    schema = dataset.get_field_schema()
    fields = ["crust_sample_id"] + [f for f in ("crust_decision", "crust_new_label", "crust_decided_at") if f in schema]
    values = dict(zip(fields, view.values(fields)))
    frame = pd.DataFrame({
        "sample_id": values["crust_sample_id"],
        "reviewed_decision": values.get("crust_decision", [None] * len(view)),
        "new_label": values.get("crust_new_label", [None] * len(view)),
        "decided_at": values.get("crust_decided_at", [None] * len(view)),
    })
    bad = sorted({d for d in frame["reviewed_decision"].dropna() if d not in DECISIONS})
    if bad:
        raise BadInputError(f"FiftyOne dataset {name!r} has unknown decisions {bad} (expected {', '.join(DECISIONS)})")
    unlabeled = frame[(frame["reviewed_decision"] == "relabel") & frame["new_label"].isna()]
    if len(unlabeled):
        raise BadInputError(f"{len(unlabeled)} samples are marked relabel without a new label, "
                            f"e.g. {unlabeled['sample_id'].iloc[0]!r}")
    return frame


def _decide_reviewed(table: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    decided = table.merge(decisions, on="sample_id", how="left", validate="one_to_one")
    decision = decided["reviewed_decision"].fillna("keep")
    decided["decision"] = decision
    decided["label"] = np.where(decision == "relabel", decided["new_label"], decided["given_label"])
    decided["reason"] = np.where(decided["reviewed_decision"].isna(), "not reviewed", "reviewer: " + decision)
    decided["decided_at"] = decided["decided_at"].map(lambda t: None if pd.isna(t) else pd.Timestamp(t).isoformat())
    return decided


def _decide_auto(table: pd.DataFrame, relabel_confidence: float) -> pd.DataFrame:
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


def _replace_dir(staging: Path, out: Path) -> None:
    """Put ``staging`` at ``out``; an existing ``out`` is moved aside first and removed after."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)
