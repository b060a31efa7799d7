"""torch datasets over the samples: plain (for eval passes) and weighted mixup pairs (for training)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch


class ImageDataset(torch.utils.data.Dataset):
    """Item i = (image tensor, given label, i) for an image store (``crust_clean.data.images``) and its labels."""

    def __init__(self, images, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.labels[i]), i


@dataclass
class TrainingData:
    """The datasets of a fit: the training samples with the train transform (``train``: what SGD sees) and with
    the eval transform (``eval``: the pass that feeds the ledger and the coreset), and the validation samples
    with the eval transform (``val``: what picks the saved model; None without validation)."""

    train: ImageDataset
    eval: ImageDataset
    val: ImageDataset | None

    @classmethod
    def split(cls, images, labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, *, train_transform,
              eval_transform) -> "TrainingData":
        """From an image store and its (N,) labels, with the rows of the training and validation samples."""
        def subset(idx, transform):
            return ImageDataset(images.take(idx), labels[idx], transform)

        return cls(subset(train_idx, train_transform), subset(train_idx, eval_transform),
                   subset(val_idx, eval_transform) if len(val_idx) else None)


class PairKey(NamedTuple):
    """One training item of one epoch. Everything an epoch decides travels in the keys (the loader's batch
    sampler hands them out), so one DataLoader, with persistent workers, serves every epoch."""

    seed: int  # the epoch's augmentation seed
    medoid: int
    partner: int
    lam: float
    weight: float


@dataclass
class EpochPairs:
    """An epoch's training items: item p mixes ``medoids[p]`` with ``partners[p]`` by ``lambdas[p]`` and weighs
    its loss by ``weights[p]`` (the paper's r_j, normalised)."""

    medoids: np.ndarray
    partners: np.ndarray
    lambdas: np.ndarray
    weights: np.ndarray

    @classmethod
    def full_data(cls, n: int) -> "EpochPairs":
        """Plain training: every row once, unmixed, weight 1."""
        rows = np.arange(n)
        return cls(rows, rows, np.ones(n), np.ones(n))

    def __len__(self) -> int:
        return len(self.medoids)

    def key(self, p: int, seed: int) -> PairKey:
        return PairKey(seed, int(self.medoids[p]), int(self.partners[p]), float(np.float32(self.lambdas[p])),
                       float(np.float32(self.weights[p])))


class PairImages(torch.utils.data.Dataset):
    """Item ``PairKey`` -> (x_medoid, y_medoid, x_partner, y_partner, lam, weight).

    The trainer mixes ``lam * x_medoid + (1 - lam) * x_partner`` and weights the loss
    ``lam * CE(y_medoid) + (1 - lam) * CE(y_partner)`` by ``weight``. A medoid that is its own partner is
    loaded once. In a DataLoader worker the first key of a new epoch reseeds Python's and torch's RNGs (the
    augmentations draw from them) with the epoch seed + worker id: a persistent worker then augments an epoch
    exactly as a new worker would, and a resumed run as an uninterrupted one.
    """

    def __init__(self, base: ImageDataset):
        self.base = base
        self._seeded_for: int | None = None

    def __getitem__(self, key: PairKey):
        worker = torch.utils.data.get_worker_info()
        if worker is not None and key.seed != self._seeded_for:
            random.seed(key.seed + worker.id)
            torch.manual_seed(key.seed + worker.id)
            self._seeded_for = key.seed
        x_m, y_m, _ = self.base[key.medoid]
        x_q, y_q = (x_m, y_m) if key.partner == key.medoid else self.base[key.partner][:2]
        return x_m, y_m, x_q, y_q, np.float32(key.lam), np.float32(key.weight)
