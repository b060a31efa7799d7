"""What a source holds, before any training: classes, counts, image sizes, skipped files, duplicates, quality."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from ..config import QUALITY_KINDS, RunConfig
from .images import check_images, content_hash
from .quality import quality_issues
from .sources import Samples, load_source


def describe(source: str | os.PathLike, config: RunConfig | None = None, *, check: bool = False,
             progress: bool = False) -> dict:
    """What ``fit`` would train on: classes, counts per class, image sizes seen, skipped files and why,
    classes without images.

    ``check=True`` also decodes every image in full, as ``fit`` does before training (a truncated file
    passes the header check), finds duplicates: groups of samples with byte-identical images
    (``labels_differ`` when the copies carry different labels), and measures each image's quality
    (``quality``: per ``data.quality.QUALITY_KINDS`` kind, the samples that have it, worst first, with their scores).
    Nothing is written.

    Raises BadInputError for a source ``fit`` would refuse (missing, no images, one class, no label column).
    """
    config = config or RunConfig()
    samples = load_source(source, **config.data.source_options())
    duplicates, quality = [], {}
    if check:
        workers = config.data.workers if config.data.workers is not None else 0
        failed, measures = check_images(samples.images, workers=workers, progress=progress)
        kept = np.setdiff1d(np.arange(len(samples)), [i for i, _ in failed])
        samples = samples.without(failed)
        duplicates = find_duplicates(samples)
        quality = quality_report(samples, measures[kept])
    sizes = Counter(f"{w}x{h}" for w, h in samples.sizes)
    return {
        "source": str(source), "kind": samples.origin["kind"], "origin": samples.origin,
        "samples": len(samples), "classes": samples.num_classes,
        "counts_per_class": samples.class_counts(),
        "image_sizes": dict(sizes.most_common(5)), "distinct_image_sizes": len(sizes),
        "skipped": [{"sample_id": s, "reason": r} for s, r in samples.skipped],
        "empty_classes": samples.empty_classes,
        **({"duplicates": duplicates, "quality": quality} if check else {}),
    }


def quality_report(samples: Samples, measures: np.ndarray) -> dict[str, list[dict]]:
    """Per quality kind (``data.quality``), the samples that have it, worst first: sample_id, label, score."""
    issues = quality_issues(measures, np.asarray(samples.sizes).reshape(-1, 2))
    out = {}
    for kind in QUALITY_KINDS:
        rows = np.nonzero(issues[f"{kind}_issue"].to_numpy())[0]
        rows = rows[np.argsort(-issues[kind].to_numpy()[rows], kind="stable")]
        out[kind] = [{"sample_id": samples.sample_ids[i], "label": samples.class_names[samples.labels[i]],
                      "score": round(float(issues[kind].iloc[i]), 4)} for i in rows]
    return out


def find_duplicates(samples: Samples) -> list[dict]:
    """Groups of samples whose encoded images are byte-identical (sha256), largest first."""
    groups: dict[str, list[int]] = {}
    for i in range(len(samples)):
        groups.setdefault(content_hash(samples.images.encoded(i)), []).append(i)
    found = [{"sample_ids": [samples.sample_ids[i] for i in members],
              "labels": [samples.class_names[samples.labels[i]] for i in members],
              "labels_differ": len({int(samples.labels[i]) for i in members}) > 1}
             for members in groups.values() if len(members) > 1]
    return sorted(found, key=lambda g: -len(g["sample_ids"]))
