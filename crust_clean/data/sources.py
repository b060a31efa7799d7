"""Data sources: an image dataset in any supported shape -> ``Samples``, a table of samples with stable ids.

Conventions used across crust-clean: N samples, K classes, integer labels 0..K-1 indexing
``class_names``. ``sample_id`` is stable across runs and keys every output (ledger, scores, exports):
the path relative to the root for an ImageFolder tree, the path as written in a manifest, the id
column or the row index for a Hugging Face dataset, the sample id for a FiftyOne dataset.
Every source is only read. No training code here.

Sources (``load_source``):
  ``DIR``                    ImageFolder tree ``DIR/<class>/**/<image>`` (class names sorted)
  ``FILE.csv`` / ``.jsonl``  manifest of ``path,label`` rows, paths relative to the manifest's folder
  ``DIR`` (save_to_disk)     ``datasets.load_from_disk``; a DatasetDict picks ``--split``
  ``DIR`` (hub layout)       a folder ``datasets`` can build: parquet files, or images + metadata.csv/jsonl
  ``FILE.parquet``           the ``datasets`` parquet builder
  ``hf:OWNER/NAME[/CONFIG]`` ``datasets.load_dataset`` (HF cache; ``HF_HUB_OFFLINE=1`` honoured)
  ``fo:DATASET[:VIEW]``      a FiftyOne dataset or saved view, labels from a Classification field
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import BadInputError
from .images import DatasetImages, FileImages

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MANIFEST_SUFFIXES = (".csv", ".jsonl")


@dataclass
class Samples:
    """The samples of one dataset. Sequences are aligned: item i describes sample i."""

    name: str  # names default run folders
    root: Path | None  # a folder the dataset owns (never written into); None when there is none
    sample_ids: list[str]
    images: FileImages | DatasetImages  # images[i] is sample i as an RGB PIL image
    labels: np.ndarray  # (N,) int64 given labels, possibly noisy
    class_names: list[str]
    origin: dict[str, Any]  # how to open the source again (exporters materialise HF rows from it)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sample id, reason)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of each sample, from the header
    empty_classes: list[str] = field(default_factory=list)  # class folders / labels without a readable image

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def paths(self) -> list[Path | None]:
        """The image file of each sample; None for rows of a HF dataset (their bytes live in Arrow)."""
        return self.images.paths if isinstance(self.images, FileImages) else [None] * len(self)

    @property
    def rows(self) -> list[int | None]:
        """The row of each sample in its HF dataset split; None for files."""
        return self.images.rows.tolist() if isinstance(self.images, DatasetImages) else [None] * len(self)

    def subset(self, indices: Sequence[int]) -> "Samples":
        """These samples at ``indices``, in that order (same classes, source and skipped list)."""
        indices = list(indices)
        return Samples(
            name=self.name, root=self.root, sample_ids=[self.sample_ids[i] for i in indices],
            images=self.images.take(indices), labels=self.labels[indices], class_names=self.class_names,
            origin=self.origin, skipped=self.skipped, sizes=[self.sizes[i] for i in indices],
            empty_classes=self.empty_classes,
        )

    def without(self, failed: Sequence[tuple[int, str]]) -> "Samples":
        """These samples less the (index, reason) pairs in ``failed``, which join ``skipped``.

        Raises BadInputError when fewer than two classes keep a sample (nothing left to clean).
        """
        if not failed:
            return self
        dropped = {i for i, _ in failed}
        kept = self.subset([i for i in range(len(self)) if i not in dropped])
        kept.skipped = self.skipped + [(self.sample_ids[i], reason) for i, reason in failed]
        present = np.unique(kept.labels)
        if len(present) < 2:
            raise BadInputError(f"after skipping {len(failed)} images that cannot be decoded, "
                                f"{'no' if len(present) == 0 else 'only one'} class has images left")
        return kept

    def fingerprint(self) -> str:
        """A digest of which images these samples are, in order: for files their path, size and modification
        time; for rows of a Hugging Face dataset the dataset's fingerprint and the rows. What caches of data
        derived from the images (features) are keyed by; a changed file changes it."""
        import hashlib

        digest = hashlib.sha256()
        if isinstance(self.images, DatasetImages):
            digest.update(f"{self.images.dataset._fingerprint}\0{self.images.column}\0".encode())
            digest.update(self.images.rows.tobytes())
        else:
            for path in self.images.paths:
                stat = path.stat()
                digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        digest.update("\n".join(self.sample_ids).encode())
        return digest.hexdigest()

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return dict(zip(self.class_names, counts.tolist()))


def load_source(source: str | os.PathLike, *, split: str | None = None, image_column: str | None = None,
                label_column: str | None = None, id_column: str | None = None,
                label_field: str | None = None) -> Samples:
    """Read any supported source (see the module docstring).

    ``split`` picks the split of a HF dataset (default: ``train``, or the only split). ``image_column``,
    ``label_column`` override the detected columns (an ``Image`` and a ``ClassLabel`` feature; for a csv
    manifest, the path and label columns); ``id_column`` gives sample ids (default: a ``sample_id`` column,
    else the row index, or the path for files). ``label_field`` is the FiftyOne Classification field of a ``fo:`` source.
    """
    columns = dict(image_column=image_column, label_column=label_column, id_column=id_column)
    spec = os.fspath(source)
    from .hf_source import is_hf_folder, load_hub_dataset  # it builds on this module

    if spec.startswith("hf:"):
        return load_hub_dataset(spec[3:], split=split, **columns)
    if spec.startswith("fo:"):
        return load_fiftyone(spec[3:], label_field=label_field)
    path = Path(spec)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return read_manifest(path, path_column=image_column or "path", label_column=label_column or "label",
                             id_column=id_column)
    if path.suffix.lower() == ".parquet" or (path.is_dir() and is_hf_folder(path)):
        return load_hub_dataset(str(path), split=split, **columns)
    return scan_image_folder(path)


def source_spec(source: str | os.PathLike) -> str:
    """The source as ``load_source`` takes it, with a local path made absolute (a run's readers open it again
    later, possibly from another working directory)."""
    spec = os.fspath(source)
    return spec if spec.startswith(("hf:", "fo:")) else str(Path(spec).resolve())


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
    ids, files, classes = [], [], []
    for class_dir in class_dirs:
        for path in _image_files(class_dir):
            ids.append(path.relative_to(root).as_posix())
            files.append(path)
            classes.append(class_dir.name)
    return samples_from_files(root.resolve().name, root, {"kind": "imagefolder", "path": str(root.resolve())},
                       ids, files, classes, where=str(root), declared_classes=[d.name for d in class_dirs])


def read_manifest(path: str | os.PathLike, *, path_column: str = "path", label_column: str = "label",
                  id_column: str | None = None) -> Samples:
    """Read a manifest: CSV with a header, or JSON lines, with ``path`` and ``label`` per row.

    Paths are relative to the manifest's folder (absolute paths are kept); the sample id is the path
    as written (or ``id_column``; default: a ``sample_id`` column when there is one, as in the manifests
    ``crust-clean export manifest`` writes, so a sample keeps its id and its review decisions across rounds).
    Labels are class names; classes are sorted. Rows whose file is missing or unreadable are skipped and
    listed. This is the format ``crust-clean export manifest`` writes; other column names (a csv of images with ``file_name,category``) are given with
    ``path_column`` / ``label_column``.
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
    if id_column is None and records and "sample_id" in records[0]:
        id_column = "sample_id"
    wanted = [path_column, label_column] + ([id_column] if id_column else [])
    missing = [c for c in wanted if c not in (records[0] if records else {})]
    if missing:
        raise BadInputError(f"manifest {path} needs columns {','.join(wanted)} (missing: {', '.join(missing)}; "
                            f"columns: {', '.join(records[0]) if records else 'none'})")
    ids = [str(r[id_column or path_column]) for r in records]
    check_unique(ids, f"manifest {path}")
    files = [path.parent / str(r[path_column]) for r in records]
    classes = [str(r[label_column]) for r in records]
    return samples_from_files(path.stem, None, {"kind": "manifest", "path": str(path.resolve())}, ids, files, classes,
                       where=str(path))


def load_fiftyone(spec: str, *, label_field: str | None = None) -> Samples:
    """Read a FiftyOne dataset (``NAME``) or one of its saved views (``NAME:VIEW``).

    Filepaths and the ``label_field`` Classification labels (default: the only Classification field,
    else ``ground_truth``, else ``given_label`` as in a crust-clean export) are read; sample id = the FiftyOne
    sample id, so ``export fiftyone`` can write results back into the same dataset. Samples without a label are skipped and listed.
    """
    import fiftyone as fo

    name, _, view_name = spec.partition(":")
    if name not in fo.list_datasets():
        known = ", ".join(fo.list_datasets()) or "none"
        raise BadInputError(f"no FiftyOne dataset named {name!r} (datasets: {known})")
    dataset = fo.load_dataset(name)
    view = dataset
    if view_name:
        if view_name not in dataset.list_saved_views():
            known = ", ".join(dataset.list_saved_views()) or "none"
            raise BadInputError(f"FiftyOne dataset {name!r} has no saved view {view_name!r} (saved views: {known})")
        view = dataset.load_saved_view(view_name)
    candidates = sorted(view.get_field_schema(embedded_doc_type=fo.Classification))
    if label_field is None:
        preferred = [f for f in ("ground_truth", "given_label") if f in candidates]  # given_label: our exports
        if len(candidates) == 1 or preferred:
            label_field = candidates[0] if len(candidates) == 1 else preferred[0]
        else:
            raise BadInputError(f"FiftyOne dataset {name!r}: choose the label field with --label-field "
                                f"(Classification fields: {', '.join(candidates) or 'none'})")
    elif label_field not in candidates:
        raise BadInputError(f"FiftyOne dataset {name!r} has no Classification field {label_field!r} "
                            f"(Classification fields: {', '.join(candidates) or 'none'})")
    ids, filepaths, classes = view.values(["id", "filepath", f"{label_field}.label"])
    origin = {"kind": "fiftyone", "dataset": name, "view": view_name or None, "label_field": label_field}
    return samples_from_files(name, None, origin, ids, [Path(p) for p in filepaths], classes, where=f"fo:{spec}")


def check_unique(ids: Sequence[str], where: str) -> None:
    seen: set[str] = set()
    for sample_id in ids:
        if sample_id in seen:  # the sample id keys every output: it must be unique
            raise BadInputError(f"{where} lists {sample_id!r} more than once")
        seen.add(sample_id)


def samples_from_files(name: str, root: Path | None, origin: dict, ids: list[str], files: list[Path],
                classes: list[str | None], *, where: str, class_order: list[str] | None = None,
                declared_classes: list[str] | None = None) -> Samples:
    checks = [image_size(file) for file in files]
    return build_samples(name, root, origin, ids, checks, classes, FileImages(files), where=where, class_order=class_order,
                  declared_classes=declared_classes)


def build_samples(name: str, root: Path | None, origin: dict, ids: list[str], checks: list, classes: list[str | None],
           store, *, where: str, class_order: list[str] | None = None,
           declared_classes: list[str] | None = None) -> Samples:
    """Samples from per-row ids, header checks ((w, h) or a reason) and class names; bad rows skipped.

    Classes are ``class_order`` (a ClassLabel's) or sorted, keeping only classes that have a sample; the
    others (and ``declared_classes`` without a row, e.g. empty class folders) are listed in ``empty_classes``.
    """
    keep, skipped = [], []
    for i, (sample_id, check, class_name) in enumerate(zip(ids, checks, classes)):
        if class_name is None or class_name == "":
            skipped.append((sample_id, "no label"))
        elif isinstance(check, str):
            skipped.append((sample_id, check))
        else:
            keep.append(i)
    if not keep:
        raise BadInputError(f"no readable images in {where} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    present = {classes[i] for i in keep}  # a class without a readable image is not a class
    class_names = [c for c in class_order if c in present] if class_order is not None else sorted(present)
    if len(class_names) < 2:
        raise BadInputError(
            f"only one class with images in {where} ({class_names[0]!r}): label noise needs at least two classes"
        )
    index = {c: i for i, c in enumerate(class_names)}
    named = set(declared_classes or []) | set(class_order or []) | {c for c in classes if c}
    return Samples(
        name=name, root=root, sample_ids=[ids[i] for i in keep], images=store.take(keep),
        labels=np.array([index[classes[i]] for i in keep], dtype=np.int64), class_names=class_names,
        origin=origin, skipped=skipped, sizes=[checks[i] for i in keep], empty_classes=sorted(named - present),
    )


def _image_files(class_dir: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.as_posix())


def image_size(file: Path | io.BytesIO) -> tuple[int, int] | str:
    """(width, height) from the file's header, or why PIL cannot read it. Does not decode pixels."""
    if isinstance(file, Path) and not file.is_file():
        return "file not found"
    try:
        with Image.open(file) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
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
