"""A file on disk for every sample of a run: exporters (FiftyOne, manifests) need files.

Samples read from files keep them; rows of a Hugging Face dataset are written once, with their
encoded bytes unchanged, into ``RUN/media/`` (the source is never written).
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from .errors import CrustCleanError
from .images import DatasetImages


def sample_files(run, *, progress: bool = False) -> list[Path]:
    """The image file of each sample of ``run`` (a ``crust_clean.Run``), in ``samples.csv`` order."""
    table = run.samples
    if table["path"].notna().all():
        return [Path(p) for p in table["path"]]
    samples = run.open_samples()
    if not isinstance(samples.images, DatasetImages):  # paths are missing only for HF rows
        raise CrustCleanError(f"{run.path}/samples.csv lacks paths for samples that are files")
    folder = run.path / "media"
    return [samples.images.save(i, folder)
            for i in tqdm(range(len(samples)), desc="writing images to RUN/media", disable=not progress)]
