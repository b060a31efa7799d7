"""Near-duplicates and outliers from the neighbours a fit already finds (``method.neighbours``): each sample's k
most cosine-similar other samples of the run's embeddings and their similarities. Pure functions.

Near-duplicates: two samples whose embeddings have cosine similarity >= ``NEAR_DUPLICATE_SIMILARITY`` (and far
closer than samples usually are to their nearest) and one of which is among the other's k nearest; groups are the
connected sets of such pairs. Outliers: a sample far from
every other sample (1 - its mean similarity to its k nearest, a kNN distance as Datalab's outlier check uses) or
far from every class (1 - its similarity to the nearest class centroid), scored by the larger of the two in robust
deviations above the median and flagged at ``OUTLIER_SPREAD``. Both thresholds were
chosen on benchmarks/issues.py (benchmarks/results/issues.md), where the truth is known.
"""

from __future__ import annotations

import warnings

import numpy as np

#: Cosine similarity of the run's embeddings at or above which two samples are near-duplicates, and the share of
#: the typical distance to the nearest sample they must also be within: where every sample is close to the next
#: (the pooled features of a network that has not learned much, 0.99 apart in a short run from scratch), only the
#: far closer pairs count.
NEAR_DUPLICATE_SIMILARITY, NEAR_DUPLICATE_TYPICAL_SHARE = 0.95, 0.25
#: A sample is an outlier when its distance to its neighbours or to the nearest class is this many robust standard
#: deviations above the median (``outlier_scores``).
OUTLIER_SPREAD = 4.0


def neighbour_similarities(embeddings: np.ndarray, neighbours: np.ndarray, *, rows: np.ndarray | None = None,
                           block_rows: int = 16384) -> np.ndarray:
    """(n, k) float32 cosine similarity of each row to each of its ``neighbours`` (positions in ``rows`` of
    ``embeddings``, default all rows; -1: none found, NaN here), a block of rows at a time."""
    rows = np.arange(len(embeddings)) if rows is None else np.asarray(rows)
    out = np.full(neighbours.shape, np.nan, dtype=np.float32)
    for start in range(0, len(rows), block_rows):
        found = neighbours[start:start + block_rows]
        own = _unit(embeddings[rows[start:start + len(found)]])
        theirs = _unit(embeddings[rows[np.maximum(found, 0)].ravel()]).reshape(*found.shape, -1)
        similarity = np.einsum("nd,nkd->nk", own, theirs)
        out[start:start + len(found)] = np.where(found >= 0, similarity, np.nan)
    return out


def _unit(block) -> np.ndarray:
    x = np.asarray(block, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def near_duplicate_groups(neighbours: np.ndarray, similarities: np.ndarray, *,
                          threshold: float = NEAR_DUPLICATE_SIMILARITY,
                          typical_share: float | None = NEAR_DUPLICATE_TYPICAL_SHARE) -> np.ndarray:
    """(n,) the near-duplicate group of each row (0, 1, ... in the order of each group's first row), -1 for a row
    in none: the connected components of the pairs (row, neighbour) with similarity >= ``threshold`` and, unless
    ``typical_share`` is None, a cosine distance (1 - similarity) at most ``typical_share`` times the median
    distance of a row to its nearest neighbour."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(neighbours)
    similarities = np.nan_to_num(similarities, nan=-np.inf)
    if typical_share is not None and n:
        typical = 1 - np.median(similarities.max(axis=1))
        threshold = max(threshold, 1 - typical_share * typical)
    close = similarities >= threshold
    pairs = np.nonzero(close)
    graph = coo_matrix((np.ones(len(pairs[0])), (pairs[0], neighbours[pairs])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    grouped = sizes[component] > 1
    components = component[grouped]
    found, first = np.unique(components, return_index=True)  # rows in order: first = each group's first row
    number = np.empty(len(found), dtype=np.int64)
    number[np.argsort(first)] = np.arange(len(found))
    out = np.full(n, -1, dtype=np.int64)
    out[grouped] = number[np.searchsorted(found, components)]
    return out


def class_distances(embeddings: np.ndarray, labels: np.ndarray, *, block_rows: int = 16384) -> np.ndarray:
    """(n,) 1 - the cosine similarity of each row to the nearest class centroid (the mean of the unit embeddings
    of the rows of each label, itself made unit), in [0, 2]: far from every class, whatever its own label. Two
    passes over ``embeddings``, a block of rows at a time."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    sums = np.zeros((len(classes), embeddings.shape[1]), dtype=np.float64)
    for start in range(0, len(labels), block_rows):
        codes = np.searchsorted(classes, labels[start:start + block_rows])
        one_hot = np.zeros((len(classes), len(codes)), dtype=np.float32)
        one_hot[codes, np.arange(len(codes))] = 1
        sums += one_hot @ _unit(embeddings[start:start + block_rows])  # a matrix product: np.add.at is 10x slower
    centroids = _unit(sums)
    out = np.empty(len(labels))
    for start in range(0, len(labels), block_rows):
        out[start:start + block_rows] = 1 - (_unit(embeddings[start:start + block_rows]) @ centroids.T).max(axis=1)
    return out


def robust_deviations(values: np.ndarray) -> np.ndarray:
    """(n,) how many robust standard deviations (1.4826 x the median absolute deviation: a normal's, estimated so
    that the outliers themselves do not widen it) each value is above the median; NaN stays NaN."""
    values = np.asarray(values, dtype=np.float64)
    median = np.nanmedian(values)
    deviation = 1.4826 * np.nanmedian(np.abs(values - median))
    return (values - median) / max(deviation, 1e-12)


def outlier_scores(similarities: np.ndarray, class_distance: np.ndarray) -> np.ndarray:
    """(n,) the larger of two ``robust_deviations``: of 1 - the mean cosine similarity to its neighbours
    (``similarities``, NaN ones ignored: far from every other sample) and of ``class_distance`` (``class_distances``:
    far from every class). The first alone misses a cluster of out-of-distribution images, which are each other's
    nearest neighbours (100 MNIST digits among CIFAR-10 photos: AUROC 0.01); the second alone misses a sample
    between classes that is close to nothing. NaN where neither is known."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without any neighbour: its mean is NaN
        isolation = 1 - np.nanmean(similarities.astype(np.float64), axis=1)
        return np.fmax(robust_deviations(isolation), robust_deviations(class_distance))


def flag_outliers(scores: np.ndarray, *, spread: float = OUTLIER_SPREAD) -> np.ndarray:
    """(n,) bool: ``outlier_scores`` >= ``spread`` (NaN: not flagged)."""
    return np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf) >= spread
