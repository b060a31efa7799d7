"""Image stores: where a sample's pixels come from, indexed like the samples.

A store is a sequence whose item ``i`` is sample ``i`` as an RGB ``PIL.Image``:
  - ``FileImages``: image files on disk (ImageFolder, manifests, FiftyOne datasets);
  - ``DatasetImages``: rows of a Hugging Face ``datasets.Dataset`` with an ``Image`` column (bytes in Arrow,
    no file on disk); the rows are read undecoded and decoded here, so a bad row is ours to report;
  - ``DecodedCache``: any store decoded once into uint8 pixels (in memory or in a file), so epochs after the
    first do not decode JPEGs again.
Stores pickle cheaply (paths, a memory-mapped Arrow table, a memory map), so DataLoader workers can use them.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps

from ..errors import CrustCleanError
from .quality import measure, no_measures

#: Background that transparent pixels are composited onto (what a viewer shows on a white page).
TRANSPARENT_BACKGROUND = (255, 255, 255)


def open_rgb(file: Path | bytes, name: str) -> Image.Image:
    """Decode a file (path or encoded bytes) to RGB as a viewer shows it; ``name`` identifies it in the error.

    EXIF orientation is applied; 16-bit grayscale is scaled to 8 bits (a plain conversion would clip it to
    white); transparency (RGBA, LA, palette) is composited onto ``TRANSPARENT_BACKGROUND``. Any decoding
    failure (truncated or corrupt data, an image above PIL's decompression-bomb limit) raises
    CrustCleanError with the reason.
    """
    try:
        with Image.open(io.BytesIO(file) if isinstance(file, bytes) else file) as image:
            return _to_rgb(ImageOps.exif_transpose(image))
    except Exception as err:  # PIL raises many kinds for bad data (OSError, ValueError, SyntaxError, bomb error)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CrustCleanError(f"cannot decode image {name}: {reason}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257).clip(0, 255).round().astype(np.uint8))
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La")
    if has_alpha or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, TRANSPARENT_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif", "GIF": "gif"}


class FileImages:
    """Images stored as files."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Image.Image:
        return open_rgb(self.paths[i], str(self.paths[i]))

    def encoded(self, i: int) -> bytes:
        """Item i's file bytes, as stored."""
        return self.paths[i].read_bytes()

    def take(self, indices: Sequence[int]) -> "FileImages":
        return FileImages([self.paths[i] for i in indices])


class DatasetImages:
    """Images in column ``column`` of a ``datasets.Dataset``; item i is the dataset's row ``rows[i]``."""

    def __init__(self, dataset, column: str, rows: Sequence[int]):
        from datasets import Image as ImageFeature

        self.column = column
        self.dataset = dataset.select_columns([column]).cast_column(column, ImageFeature(decode=False))
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Image.Image:
        row = int(self.rows[i])
        return open_rgb(encoded_image(self.dataset[row][self.column]), f"row {row}")

    def encoded(self, i: int) -> bytes:
        """Item i's encoded image bytes, as stored."""
        encoded = encoded_image(self.dataset[int(self.rows[i])][self.column])
        return encoded.read_bytes() if isinstance(encoded, Path) else encoded

    def save(self, i: int, folder: Path) -> Path:
        """Write item i's encoded bytes, unchanged, to ``folder/<row>.<ext>`` once; return the file.

        A row that refers to a local file returns that file. Used to give HF rows a file for exporters.
        """
        row = int(self.rows[i])
        encoded = encoded_image(self.dataset[row][self.column])
        if isinstance(encoded, Path):
            return encoded
        with Image.open(io.BytesIO(encoded)) as image:
            extension = _EXTENSIONS.get(image.format or "", (image.format or "bin").lower())
        target = folder / f"{row}.{extension}"
        if not target.exists():
            from ..atomic import atomic_path

            with atomic_path(target) as tmp:
                tmp.write_bytes(encoded)
        return target

    def take(self, indices: Sequence[int]) -> "DatasetImages":
        taken = DatasetImages.__new__(DatasetImages)
        taken.column, taken.dataset, taken.rows = self.column, self.dataset, self.rows[np.asarray(indices, dtype=np.int64)]
        return taken


def content_hash(encoded: bytes) -> str:
    """The identity of an image's content: SHA-256 (hex) of its encoded bytes, as stored. ``check`` groups
    duplicates by it and a review decision is tied to it."""
    return hashlib.sha256(encoded).hexdigest()


def encoded_image(value: dict | None) -> Path | bytes:
    """The bytes (or the local file) of an undecoded ``datasets.Image`` value ``{"bytes", "path"}``."""
    if not value or (value.get("bytes") is None and not value.get("path")):
        raise CrustCleanError("empty image")
    return value["bytes"] if value.get("bytes") is not None else Path(value["path"])


def cached_size(width: int, height: int, shorter_side: int) -> tuple[int, int]:
    """Size an image is stored at in the cache: downscaled so its shorter side is ``shorter_side``, never up."""
    short = min(width, height)
    if short <= shorter_side:
        return width, height
    scale = shorter_side / short
    return max(1, round(width * scale)), max(1, round(height * scale))


class DecodedCache:
    """A store decoded once into one flat uint8 buffer (memory, or a memory-mapped file) + offsets and shapes.

    Images are downscaled (aspect kept) so the shorter side is at most ``shorter_side`` (the model's input
    size): lossless for images already that small (CIFAR, MNIST); for larger ones the random crops of
    training are then taken from the downscaled image.
    """

    def __init__(self, pixels: np.ndarray, offsets: np.ndarray, shapes: np.ndarray,
                 failed: list[tuple[int, str]] | None = None, measures: np.ndarray | None = None):
        self.pixels, self.offsets, self.shapes = pixels, offsets, shapes
        self.failed = failed or []  # (index, reason) of the images that could not be decoded (no pixels)
        # data.quality's measures of each image as decoded (before the downscale), NaN where it failed
        self.measures = no_measures(len(shapes)) if measures is None else measures

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> Image.Image:
        h, w = self.shapes[i]
        start = self.offsets[i]
        return Image.fromarray(np.asarray(self.pixels[start:start + h * w * 3]).reshape(h, w, 3))

    def take(self, indices: Sequence[int]) -> "DecodedCache":
        return _TakenCache(self, np.asarray(indices, dtype=np.int64))

    @classmethod
    def build(cls, store, shorter_side: int, *, file: Path | None = None, workers: int = 0,
              progress: bool = False) -> "DecodedCache":
        """Decode every image of ``store`` once; in memory, or into ``file`` (written then memory-mapped).

        Images that fail to decode get no pixels and are listed in ``failed``; the caller drops them. Each
        image's quality is measured on the way (``measures``, ``data.quality``).
        """
        shapes = np.zeros((len(store), 2), dtype=np.int64)
        measures = no_measures(len(store))
        chunks: list[np.ndarray] = []
        failed = []
        out = None
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            out = open(file, "wb")
        try:
            decoded = _decoded(store, shorter_side, workers, progress, "decoding images into the cache")
            for i, item in enumerate(decoded):
                if isinstance(item, str):
                    failed.append((i, item))
                    continue
                pixels, measures[i] = item
                shapes[i] = pixels.shape[:2]
                if out is not None:
                    out.write(pixels.tobytes())
                else:
                    chunks.append(pixels.reshape(-1))
        finally:
            if out is not None:
                out.close()
        offsets = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1] * 3)[:-1]]).astype(np.int64)
        if file is None:
            pixels = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
        else:
            pixels = np.memmap(file, dtype=np.uint8, mode="r") if file.stat().st_size else np.zeros(0, np.uint8)
        return cls(pixels, offsets, shapes, failed, measures)


#: ``data.cache: auto`` holds decoded pixels in memory up to this many bytes.
AUTO_CACHE_BYTES = 2 * 1024**3


def resolve_cache(cache: str, sizes: Sequence[tuple[int, int]], img_size: int) -> str:
    """``data.cache`` with ``auto`` resolved for images of ``sizes`` (width, height) read at ``img_size``: memory
    when no image is downscaled and the pixels fit in ``AUTO_CACHE_BYTES``, else none."""
    if cache != "auto":
        return cache
    lossless = all(min(w, h) <= img_size for w, h in sizes)
    return "memory" if lossless and sum(w * h * 3 for w, h in sizes) <= AUTO_CACHE_BYTES else "none"


def training_store(store, *, cache: str, img_size: int, file: Path | None = None, workers: int = 0,
                   progress: bool = False):
    """(the store training reads: ``store`` itself (``cache`` none) or its ``DecodedCache`` in memory or in
    ``file`` (disk), (index, reason) of the images that cannot be decoded, the quality measures of every image,
    ``data.quality``). Every image is decoded once here, by the cache build or by a check pass, so a bad file is
    found before training, not in its middle."""
    if cache == "none":
        return (store, *check_images(store, workers=workers, progress=progress))
    decoded = DecodedCache.build(store, img_size, file=file if cache == "disk" else None, workers=workers,
                                 progress=progress)
    return decoded, decoded.failed, decoded.measures


class _TakenCache:
    """A subset view of a DecodedCache (no copy of the pixels)."""

    def __init__(self, cache: DecodedCache, indices: np.ndarray):
        self.cache, self.indices = cache, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Image.Image:
        return self.cache[int(self.indices[i])]

    def take(self, indices: Sequence[int]) -> "_TakenCache":
        return _TakenCache(self.cache, self.indices[np.asarray(indices, dtype=np.int64)])


def check_images(store, *, workers: int = 0, progress: bool = False) -> tuple[list[tuple[int, str]], np.ndarray]:
    """((index, reason) of every image of ``store`` that fails to decode, the quality measures of each image
    (``data.quality``; NaN for those)): one full decoding pass, in parallel when ``workers`` > 0. A header that
    opens does not prove the data is whole (a truncated JPEG), and a run must not die mid-epoch on one bad file."""
    failed, measures = [], no_measures(len(store))
    for i, item in enumerate(_decoded(store, None, workers, progress, "checking images")):
        if isinstance(item, str):
            failed.append((i, item))
        else:
            measures[i] = item
    return failed, measures


class _Resized:
    """Item i: (store[i] downscaled for the cache as a (H, W, 3) uint8 array, its quality ``measure``), or why it
    cannot be decoded; with ``shorter_side`` None only the measures or the reason (a check). A Dataset for the
    DataLoader."""

    def __init__(self, store, shorter_side: int | None):
        self.store, self.shorter_side = store, shorter_side

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray] | np.ndarray | str:
        try:
            image = self.store[i]
        except CrustCleanError as err:
            return str(err)
        measures = measure(image)
        if self.shorter_side is None:
            return measures
        size = cached_size(*image.size, self.shorter_side)
        if size != image.size:
            image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
        return np.asarray(image, dtype=np.uint8), measures


def _as_is(item):
    return item


def _decoded(store, shorter_side: int | None, workers: int, progress: bool, desc: str) -> Iterator:
    """``_Resized`` items of the store in order, in parallel when ``workers`` > 0."""
    import torch
    from tqdm.auto import tqdm

    loader = torch.utils.data.DataLoader(
        _Resized(store, shorter_side), batch_size=None, shuffle=False, num_workers=workers,
        collate_fn=_as_is, prefetch_factor=64 if workers else None,
        generator=torch.Generator(),  # its own: iterating must not draw from the training's global RNG
    )
    yield from tqdm(loader, total=len(store), desc=desc, unit="img",
                    disable=not progress, leave=False)

