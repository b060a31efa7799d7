"""Data sources: an image dataset on disk -> a table of samples with stable ids.

Conventions used across crust-clean: N samples, K classes, integer labels 0..K-1 indexing
``class_names`` (sorted). ``sample_id`` is stable across runs and keys every output (ledger,
scores, exports); for an ImageFolder tree it is the path relative to the root, with '/' separators.
No training code here.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import BadInputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MANIFEST_SUFFIXES = (".csv", ".jsonl")


@dataclass
class Samples:
    """The samples of one dataset. Arrays are aligned: row i describes sample i."""

    name: str  # names default run folders
    root: Path | None  # a folder the dataset owns (never written into); None for a manifest
    sample_ids: list[str]
    paths: list[Path]
    labels: np.ndarray  # (N,) int64 given labels, possibly noisy
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sample id, reason)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of each sample, from the header

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return dict(zip(self.class_names, counts.tolist()))


def scan_image_folder(root: str | os.PathLike) -> Samples:
    """Read an ImageFolder tree: ``root/<class>/**/<image>``.

    The class is the first-level folder; files are found recursively inside it and sorted, so the
    order (and each ``sample_id``, the path relative to ``root``) is deterministic. Hidden files and
    files without an image extension are ignored; files whose header PIL cannot read are skipped and
    listed in ``Samples.skipped`` with the reason.

    Raises
    ------
    BadInputError
        The path is missing or not a folder, holds no images, or fewer than two classes have images.
    """
    root = Path(root)
    if not root.exists():
        raise BadInputError(f"dataset path does not exist: {root}")
    if not root.is_dir():
        raise BadInputError(f"dataset path is not a folder of class folders: {root}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise BadInputError(f"no class folders in {root} (expected {root}/<class>/<image>)")

    rows = []
    for class_dir in class_dirs:
        rows += [(path.relative_to(root).as_posix(), path, class_dir.name) for path in _image_files(class_dir)]
    return _build(root.resolve().name, root, rows, where=str(root))


def read_manifest(path: str | os.PathLike) -> Samples:
    """Read a manifest: CSV with a header, or JSON lines, with ``path`` and ``label`` per row.

    Paths are relative to the manifest's folder (absolute paths are kept); the sample id is the path
    as written. Labels are class names; classes are sorted. Rows whose file is missing or unreadable
    are skipped and listed. This is the format ``crust-clean export manifest`` writes.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"manifest not found: {path}")
    try:
        if path.suffix.lower() == ".jsonl":
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            with open(path, newline="") as f:
                records = list(csv.DictReader(f))
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as err:
        raise BadInputError(f"manifest {path} cannot be parsed: {err}") from None
    missing = {"path", "label"} - set(records[0] if records else {})
    if missing:
        raise BadInputError(f"manifest {path} needs columns path,label (missing: {', '.join(sorted(missing))})")
    rows = [(str(r["path"]), path.parent / str(r["path"]), str(r["label"])) for r in records]
    seen: set[str] = set()
    for sample_id, _, _ in rows:
        if sample_id in seen:  # the sample id keys every output: it must be unique
            raise BadInputError(f"manifest {path} lists {sample_id!r} more than once")
        seen.add(sample_id)
    return _build(path.stem, None, rows, where=str(path))


def load_source(source: str | os.PathLike) -> Samples:
    """Read any supported source: an ImageFolder directory or a ``.csv`` / ``.jsonl`` manifest."""
    path = Path(source)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return read_manifest(path)
    return scan_image_folder(path)


def _build(name: str, root: Path | None, rows: list[tuple[str, Path, str]], *, where: str) -> Samples:
    """Samples from (sample id, file, class name) rows: unreadable files skipped, classes sorted."""
    kept, skipped, sizes = [], [], []
    for sample_id, file, class_name in rows:
        size_or_reason = _image_size(file)
        if isinstance(size_or_reason, str):
            skipped.append((sample_id, size_or_reason))
        else:
            kept.append((sample_id, file, class_name))
            sizes.append(size_or_reason)
    if not kept:
        raise BadInputError(f"no readable images in {where} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    class_names = sorted({c for _, _, c in kept})  # a class without a readable image is not a class
    if len(class_names) < 2:
        raise BadInputError(
            f"only one class with images in {where} ({class_names[0]!r}): label noise needs at least two classes"
        )
    index = {c: i for i, c in enumerate(class_names)}
    return Samples(
        name=name, root=root, sample_ids=[r[0] for r in kept], paths=[r[1] for r in kept],
        labels=np.array([index[r[2]] for r in kept], dtype=np.int64), class_names=class_names,
        skipped=skipped, sizes=sizes,
    )


def _image_files(class_dir: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.as_posix())


def _image_size(path: Path) -> tuple[int, int] | str:
    """(width, height) from the file's header, or why PIL cannot read it. Does not decode pixels."""
    if not path.is_file():
        return "file not found"
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        return f"{type(err).__name__}: {err}".splitlines()[0]


def read_true_labels(path: str | os.PathLike, samples: Samples) -> np.ndarray:
    """Read a truth sidecar (CSV ``sample_id,true_label``, label as a class name) aligned to ``samples``.

    Returns (N,) int64 true labels. Used by the demo and benchmarks to measure detection; a fit
    never needs it.
    """
    index = {name: i for i, name in enumerate(samples.class_names)}
    truth: dict[str, int] = {}
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"sample_id", "true_label"} <= set(reader.fieldnames):
                raise BadInputError(f"true-labels file {path} needs columns sample_id,true_label")
            for row in reader:
                if row["true_label"] not in index:
                    raise BadInputError(f"true-labels file {path}: unknown class {row['true_label']!r}")
                truth[row["sample_id"]] = index[row["true_label"]]
    except FileNotFoundError:
        raise BadInputError(f"true-labels file not found: {path}") from None
    missing = [s for s in samples.sample_ids if s not in truth]
    if missing:
        raise BadInputError(f"true-labels file {path} lacks {len(missing)} samples, e.g. {missing[0]!r}")
    return np.array([truth[s] for s in samples.sample_ids], dtype=np.int64)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, val) with ``round(fraction * n_c)`` val samples from each class.

    Classes with a single sample stay entirely in train. Both index arrays are sorted.
    """
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_val = min(int(round(fraction * len(members))), len(members) - 1)
        if n_val > 0:
            val.append(rng.choice(members, size=n_val, replace=False))
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx
