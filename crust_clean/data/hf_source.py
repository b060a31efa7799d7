"""Hugging Face datasets as a source (``data.sources.load_source`` dispatches here): a ``save_to_disk`` folder,
a folder or parquet file ``datasets`` can build, or a hub name from the HF cache. The rows' images stay in the
Arrow table (``data.images.DatasetImages``) unless the image column holds file paths."""

from __future__ import annotations

import io
from pathlib import Path

from ..errors import BadInputError
from .images import DatasetImages, encoded_image
from .sources import Samples, build_samples, check_unique, image_size, samples_from_files

SAVE_TO_DISK_MARKERS = ("state.json", "dataset_dict.json")
HF_METADATA_FILES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")


def load_hub_dataset(name: str, *, split: str | None = None, image_column: str | None = None,
                     label_column: str | None = None, id_column: str | None = None) -> Samples:
    """Read a Hugging Face dataset: a ``save_to_disk`` folder, a local folder or parquet file that
    ``datasets.load_dataset`` can build, or a hub name ``OWNER/NAME[/CONFIG]`` (from the HF cache;
    set ``HF_HUB_OFFLINE=1`` where there is no network).

    The image column is the one ``Image`` feature and the label column the one ``ClassLabel`` feature
    unless named. A ``ClassLabel`` keeps its class order; string or integer labels become classes in
    sorted order. A string image column holds file paths relative to the dataset's folder. Sample id
    = ``id_column`` (unique), else a ``sample_id`` column (as in crust-clean's cleaned datasets), else the row index
    in the split.
    """
    dataset, root, origin = _open_hf(name, split)
    where = origin["source"] + f" (split {origin['split']})"
    features = dataset.features
    image_column = _pick_column(features, image_column, _is_image_feature, "image", where,
                                hint="an Image feature or a column of file paths")
    label_column = _pick_column(features, label_column, _is_classlabel, "label", where, hint="a ClassLabel feature")
    if id_column is None and "sample_id" in features:
        id_column = "sample_id"
    if id_column is not None and id_column not in features:
        raise BadInputError(f"{where} has no id column {id_column!r} (columns: {', '.join(features)})")
    classes, class_order = _class_names(dataset, label_column, where)
    ids = [str(v) for v in dataset[id_column]] if id_column else [str(i) for i in range(len(dataset))]
    check_unique(ids, where)
    origin.update(image_column=image_column, label_column=label_column, id_column=id_column)
    name_for_runs = Path(origin["source"]).name or "dataset"
    if _is_string(features[image_column]):  # file paths, relative to the dataset's folder
        base = root if root is not None else Path(".")
        files = [base / p if p else base / "<empty>" for p in dataset[image_column]]
        return samples_from_files(name_for_runs, root, origin, ids, files, classes, where=where,
                                  class_order=class_order)
    store = DatasetImages(dataset, image_column, range(len(dataset)))
    checks = [_encoded_size(v) for v in _undecoded(store.dataset, image_column)]
    return build_samples(name_for_runs, root, origin, ids, checks, classes, store, where=where, class_order=class_order)


def _open_hf(name: str, split: str | None):
    """(datasets.Dataset of one split, the folder the data lives in or None, origin)."""
    import datasets

    path = Path(name)
    origin = {"kind": "hf", "source": str(path.resolve()) if path.exists() else name}
    try:
        if path.is_dir() and any((path / m).is_file() for m in SAVE_TO_DISK_MARKERS):
            loaded, root = datasets.load_from_disk(str(path)), path
        elif path.is_dir():  # parquet files or images + metadata: datasets picks the builder
            loaded, root = datasets.load_dataset(str(path)), path
        elif path.is_file():
            loaded, root = datasets.load_dataset("parquet", data_files=str(path)), path.parent
        else:
            parts = name.split("/")
            repo, config = ("/".join(parts[:2]), parts[2]) if len(parts) == 3 else (name, None)
            loaded, root = datasets.load_dataset(repo, config), None
            origin.update(repo=repo, config=config)
    except Exception as err:  # datasets raises many kinds (ConnectionError, DatasetNotFoundError, ValueError, ...)
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInputError(f"cannot load Hugging Face dataset {name!r}: {message}") from None
    if isinstance(loaded, (datasets.DatasetDict, dict)):
        splits = list(loaded)
        chosen = split or ("train" if "train" in splits else splits[0] if len(splits) == 1 else None)
        if chosen not in splits:
            raise BadInputError(f"{name}: choose a split with --split (splits: {', '.join(splits)})"
                                if chosen is None else f"{name} has no split {chosen!r} (splits: {', '.join(splits)})")
        loaded = loaded[chosen]
    else:
        chosen = split or str(loaded.split or "train")
    origin["split"] = chosen
    return loaded, (root.resolve() if root is not None else None), origin


def _class_names(dataset, column: str, where: str) -> tuple[list[str | None], list[str] | None]:
    """(class name of each row, or None where unlabeled; the class order, None = sorted by name).

    A ClassLabel keeps its order; integers are ordered as numbers (2 before 10); strings by name.
    """
    feature, values = dataset.features[column], dataset[column]
    if _is_classlabel(feature):
        names = list(feature.names)
        return [names[v] if v is not None and 0 <= v < len(names) else None for v in values], names
    dtype = str(getattr(feature, "dtype", ""))
    if dtype.startswith(("int", "uint")):
        order = [str(v) for v in sorted({v for v in values if v is not None})]
        return [None if v is None else str(v) for v in values], order
    if _is_string(feature):
        return [None if v is None else str(v) for v in values], None
    raise BadInputError(f"label column {column!r} of {where} is {feature!r}, not a class label")


def _is_string(feature) -> bool:
    return str(getattr(feature, "dtype", "")) in ("string", "large_string")


def is_hf_folder(path: Path) -> bool:
    """A folder ``datasets`` reads: save_to_disk output, metadata + images, or parquet files."""
    if any((path / m).is_file() for m in SAVE_TO_DISK_MARKERS + HF_METADATA_FILES):
        return True
    return any(path.glob("*.parquet")) or any(path.glob("data/*.parquet"))


def _is_image_feature(feature) -> bool:
    from datasets import Image as ImageFeature

    return isinstance(feature, ImageFeature)


def _is_classlabel(feature) -> bool:
    from datasets import ClassLabel

    return isinstance(feature, ClassLabel)


def _pick_column(features, chosen: str | None, detect, role: str, where: str, *, hint: str) -> str:
    if chosen is not None:
        if chosen not in features:
            raise BadInputError(f"{where} has no {role} column {chosen!r} (columns: {', '.join(features)})")
        return chosen
    candidates = [name for name, feature in features.items() if detect(feature)]
    if len(candidates) == 1:
        return candidates[0]
    flag = f"--{role}-column"
    if not candidates:
        raise BadInputError(f"{where} has no {role} column ({hint}); name it with {flag} "
                            f"(columns: {', '.join(features)})")
    raise BadInputError(f"{where} has several {role} columns: {', '.join(candidates)}; choose one with {flag}")


def _undecoded(dataset, column: str, batch_size: int = 1024):
    for batch in dataset.iter(batch_size=batch_size):
        yield from batch[column]


def _encoded_size(value: dict | None) -> tuple[int, int] | str:
    try:
        encoded = encoded_image(value)
    except Exception as err:  # an empty cell
        return str(err)
    return image_size(io.BytesIO(encoded) if isinstance(encoded, bytes) else encoded)
