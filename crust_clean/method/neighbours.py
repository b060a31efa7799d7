"""Neighbours in embedding space: a second opinion on each label, beside CRUST's score. Pure functions.

``neighbour_agreement``: the share of a sample's k nearest other samples (cosine similarity of the run's
embeddings, the saved model's pooled features) whose given label is the sample's own. Higher = its neighbourhood
agrees with its label; a mislabeled sample tends to sit among samples of its true class (SimiFeat-style voting,
Zhu et al. 2022). Exact: similarities are computed in blocks of rows and only the k best of each row are kept.
"""

from __future__ import annotations

import numpy as np
import torch

#: How many neighbours the agreement counts (scores.csv's ``neighbour_agreement``).
NEIGHBOURS = 10


def nearest_neighbours(embeddings: np.ndarray | torch.Tensor, k: int, *, block_rows: int = 2048) -> np.ndarray:
    """(n, k) indices of each row's k most cosine-similar other rows, most similar first (ties: lower index, among
    the 4k most similar).

    ``embeddings``: (n, d); a row of zeros is similar to nothing (similarity 0 to every row). k < n.
    """
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    n = len(x)
    if not 0 < k < n:
        raise ValueError(f"k={k} must be in [1, {n - 1}]")
    x = torch.nn.functional.normalize(x, dim=1)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block_rows):
        rows = torch.arange(start, min(start + block_rows, n))
        similarity = x[rows] @ x.T
        similarity[torch.arange(len(rows)), rows] = -torch.inf  # never its own neighbour
        out[start:start + len(rows)] = _top_k(similarity, k)
    return out


def _top_k(similarity: torch.Tensor, k: int) -> np.ndarray:
    """The k largest of each row in order, ties to the lower index (``torch.topk`` alone leaves ties unordered):
    the 4k largest as candidates in index order, then a stable sort of their values."""
    candidates = torch.topk(similarity, min(similarity.shape[1], 4 * k), dim=1).indices.sort(dim=1).values
    order = torch.sort(similarity.gather(1, candidates), dim=1, descending=True, stable=True).indices[:, :k]
    return candidates.gather(1, order).numpy()


def neighbour_agreement(embeddings: np.ndarray | torch.Tensor, labels: np.ndarray, *, k: int = NEIGHBOURS,
                        block_rows: int = 2048) -> np.ndarray:
    """(n,) share of each sample's k nearest other samples (``nearest_neighbours``) whose label equals its own,
    in [0, 1]; higher = the neighbourhood agrees with the given label. With n <= k, k = n - 1."""
    labels = np.asarray(labels)
    k = min(k, len(labels) - 1)
    if k < 1:
        return np.ones(len(labels))
    neighbours = nearest_neighbours(embeddings, k, block_rows=block_rows)
    return (labels[neighbours] == labels[:, None]).mean(1)
