"""torch datasets over the samples: plain (for eval passes) and weighted mixup pairs (for training)."""

from __future__ import annotations

import os

import numpy as np
import torch


class ImageDataset(torch.utils.data.Dataset):
    """Item i = (image tensor, given label, i) for an image store (``crust_clean.images``) and its labels."""

    def __init__(self, images, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.labels[i]), i


class MixupPairs(torch.utils.data.Dataset):
    """One training item per coreset medoid: (x_medoid, y_medoid, x_partner, y_partner, lam, weight).

    The trainer mixes ``lam * x_medoid + (1 - lam) * x_partner`` and weights the loss
    ``lam * CE(y_medoid) + (1 - lam) * CE(y_partner)`` by ``weight`` (the paper's r_j, normalised).
    A medoid that is its own partner is loaded once.
    """

    def __init__(self, base: ImageDataset, medoids, partners, lambdas, weights):
        self.base = base
        self.medoids, self.partners = np.asarray(medoids), np.asarray(partners)
        self.lambdas = np.asarray(lambdas, dtype=np.float32)
        self.weights = np.asarray(weights, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.medoids)

    def __getitem__(self, p: int):
        m, q = int(self.medoids[p]), int(self.partners[p])
        x_m, y_m, _ = self.base[m]
        x_q, y_q = (x_m, y_m) if q == m else self.base[q][:2]
        return x_m, y_m, x_q, y_q, self.lambdas[p], self.weights[p]


def default_workers(device: torch.device) -> int:
    """DataLoader workers: none on CPU (the model already uses every core), up to 8 on a GPU host."""
    if device.type == "cpu":
        return 0
    return min(8, os.cpu_count() or 1)
