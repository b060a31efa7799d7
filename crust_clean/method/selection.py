"""Coreset selection on gradient proxies: the selectors per class (facility location, centrality), medoid weights,
mixup partners, partitions for large classes, and ``select_coreset`` that puts them together.

Pure functions over tensors (any device) returning numpy arrays; no model, no I/O. The facility-location
objective, its greedy and the blocked distances it is built on are ``method.facility_location``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..config import SELECTORS, CrustConfig
from .facility_location import Coreset, distances, facility_location, row_blocks, squared_norms

Tensor = torch.Tensor

#: The keyword options' defaults are the configuration's (``crust.*``), stated once in ``crust_clean.config``.
_DEFAULTS = CrustConfig()


def centrality(x: Tensor, k: int, *, chunk_size: int = _DEFAULTS.chunk_size) -> Coreset:
    """The reference code's selection: the ``k`` most central rows, then nearest-medoid clusters.

    Centrality of row j is F({j}) = sum_i (d0 - d_ij), i.e. the smallest total distance to the others;
    ties go to the lower index. This is what github.com/snap-stanford/crust returns because its greedy
    compares set values rather than marginal gains. In our measurements (crust.md) it keeps coresets
    clean and resists memorising noisy labels better than the true greedy.
    """
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, {n}]")
    total = torch.empty(n, dtype=x.dtype, device=x.device)
    norms = squared_norms(x)
    for a, b in row_blocks(n, n, chunk_size):
        total[a:b] = distances(x[a:b], x, norms).sum(1)
    # stable sort on total distance: ties keep the lower index
    medoids = torch.sort(total, stable=True).indices[:k]
    assignment = assign_to_medoids(x, medoids, chunk_size=chunk_size)
    return Coreset(medoids.cpu().numpy(), np.bincount(assignment, minlength=k).astype(np.int64), assignment)


def assign_to_medoids(x: Tensor, medoids: Tensor, *, chunk_size: int = _DEFAULTS.chunk_size) -> np.ndarray:
    """(n,) position in ``medoids`` of each row's nearest medoid; ties go to the earlier medoid."""
    medoid_rows = x[medoids]
    medoid_norms = squared_norms(medoid_rows)
    out = torch.empty(len(x), dtype=torch.long, device=x.device)
    for a, b in row_blocks(len(x), len(medoids), chunk_size):
        out[a:b] = distances(x[a:b], medoid_rows, medoid_norms).argmin(1)
    return out.cpu().numpy()


def normalize_weights(cluster_sizes: np.ndarray, *, max_weight: float) -> np.ndarray:
    """Medoid weights with mean 1 over the coreset, none above ``max_weight``.

    Raw weights are the cluster sizes r_j (the paper). They are scaled to mean 1, so a weighted batch
    has the same loss scale as plain training, and any weight above ``max_weight`` is cut to it, the
    removed mass spread over the others in proportion to their r_j (repeated until none exceeds the
    cap). Relative weights below the cap are kept exactly. Without the cap one medoid of a predicted-
    label class can carry hundreds of times the mean weight and collapse training (crust.md).
    A medoid with an empty cluster (it duplicates another medoid) represents no sample and keeps weight
    0; when only such medoids are left to take the removed mass, the mean stays below 1.
    """
    r = np.asarray(cluster_sizes, dtype=np.float64)
    if max_weight < 1:
        raise ValueError("max_weight must be >= 1 (the mean weight)")
    k = len(r)
    capped = np.zeros(k, dtype=bool)
    weights = r * k / r.sum()
    while True:
        free = ~capped
        weights[capped] = max_weight
        free_mass = r[free].sum()
        if free_mass == 0:  # only empty clusters are uncapped (0 / 0 here once made the weights NaN)
            weights[free] = 0.0
            return weights
        weights[free] = r[free] * (k - max_weight * capped.sum()) / free_mass
        newly = free & (weights > max_weight)
        if not newly.any():
            return weights
        capped |= newly
        if capped.all():
            return np.full(k, max_weight)


def mixup_partners(assignment: np.ndarray, medoids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(k,) for each medoid, a uniformly drawn row of its own cluster (possibly the medoid itself).

    A medoid whose cluster is empty (it duplicates an earlier medoid) is its own partner.
    """
    k = len(medoids)
    order = np.argsort(assignment, kind="stable")
    sizes = np.bincount(assignment, minlength=k)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    offsets = (rng.random(k) * sizes).astype(np.int64)
    partners = order[np.minimum(starts + offsets, len(order) - 1)]
    return np.where(sizes > 0, partners, medoids)


@dataclass
class Selection:
    """One epoch's weighted coreset over all n training rows (indices are into those rows)."""

    medoids: np.ndarray  # (m,) int64 selected rows, grouped by class, in row order within a class
    weights: np.ndarray  # (m,) float normalised medoid weights (mean 1, capped)
    partners: np.ndarray  # (m,) int64 mixup partner of each medoid, from its own cluster
    medoid_of: np.ndarray  # (n,) int64 the medoid row each row is assigned to

    def selected_mask(self, n: int) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        mask[self.medoids] = True
        return mask

    def weight_per_row(self, n: int) -> np.ndarray:
        weight = np.zeros(n, dtype=np.float64)
        weight[self.medoids] = self.weights
        return weight

    def trained_mask(self, n: int) -> np.ndarray:
        """(n,) the rows this epoch trains on: the medoids and their mixup partners."""
        mask = self.selected_mask(n)
        mask[self.partners] = True
        return mask


def _in_row_order(coreset: Coreset) -> Coreset:
    """The same coreset with its medoids sorted by row: partners and mixup weights are drawn in this order, so
    they depend on which rows were selected, not on the order they were found in (which a float near-tie
    can swap)."""
    order = np.argsort(coreset.medoids, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return Coreset(coreset.medoids[order], coreset.cluster_sizes[order], position[coreset.assignment])


def partition_shares(k: int, sizes: np.ndarray) -> np.ndarray:
    """Split k medoids over parts of the given sizes in proportion (largest remainders), at least 1 and at most
    the size of each part (k >= number of parts)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    exact = k * sizes / sizes.sum()
    shares = np.clip(np.floor(exact).astype(np.int64), 1, sizes)
    for part in np.argsort(-(exact - np.floor(exact)), kind="stable"):  # hand out what is left
        if shares.sum() >= k:
            break
        if shares[part] < sizes[part]:
            shares[part] += 1
    return shares


def in_partitions(x: Tensor, k: int, select, *, partition_size: int, generator: torch.Generator) -> Coreset:
    """``select(rows, k)`` within random parts of at most ``partition_size`` rows, then the union of their medoids.

    Time and memory grow linearly in n (each part costs what a class of ``partition_size`` rows costs). The
    approximation: each part's medoids are the selector's for that part alone (for facility location, within
    (1 - 1/e) of the part's optimum), every row's cluster is its nearest medoid *of its own part*, and F of the
    union over the class is at least the sum of the parts' F. A random split keeps each part a uniform sample
    of the class, so the union covers it in proportion; benchmarks/selection.py reports the k-medoids cost
    against selection over the whole class. A second greedy round over the parts' medoids (GreeDi) is not done:
    at CRUST's fractions (k = 10-70 % of n) it would choose k among about k rows and cost as much as the first.
    """
    n = len(x)
    if n <= partition_size:
        return select(x, k)
    order = torch.randperm(n, generator=generator).numpy()
    parts = np.array_split(order, math.ceil(n / partition_size))
    medoids, sizes = [], []
    assignment = np.empty(n, dtype=np.int64)
    offset = 0
    for part, share in zip(parts, partition_shares(k, np.array([len(p) for p in parts]))):
        coreset = select(x[torch.as_tensor(part, device=x.device)], int(share))
        medoids.append(part[coreset.medoids])
        sizes.append(coreset.cluster_sizes)
        assignment[part] = coreset.assignment + offset
        offset += len(coreset.medoids)
    return Coreset(np.concatenate(medoids), np.concatenate(sizes), assignment)


def select_coreset(proxies: Tensor, groups: np.ndarray, *, crust: CrustConfig, rng: np.random.Generator,
                   fractions: np.ndarray | None = None) -> Selection:
    """One epoch's weighted coreset: ``round(f_c * n_c)`` (at least 1) medoids within each group c of rows,
    f_c = ``fractions[c]`` when given (``method.coreset_size``) else ``crust.coreset_fraction``, their normalised
    weights (``crust.max_weight``) and mixup partners.

    Parameters
    ----------
    proxies : Tensor, shape (n, d)
        Gradient proxies of all training rows.
    groups : ndarray, shape (n,)
        The group (class) of each row: given or predicted label.
    crust : CrustConfig
        ``selector`` (facility-location or centrality), ``coreset_fraction``, ``greedy``, ``chunk_size``,
        ``stochastic_epsilon``, ``max_weight``, and ``partition_size``: a group with more rows is split into
        random parts of at most this many, each selecting its share (``in_partitions``).
    rng : numpy Generator
        Draws mixup partners (and seeds the stochastic greedy and the partitions).
    """
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    if crust.selector == "facility-location":
        def select(x: Tensor, k: int) -> Coreset:
            return facility_location(x, k, greedy=crust.greedy, chunk_size=crust.chunk_size,
                                     epsilon=crust.stochastic_epsilon, generator=generator)
    elif crust.selector == "centrality":
        def select(x: Tensor, k: int) -> Coreset:
            return centrality(x, k, chunk_size=crust.chunk_size)
    else:
        choices = ", ".join(name for name in SELECTORS if name != "none")
        raise ValueError(f"selector={crust.selector!r} is not one of: {choices}")
    medoids, sizes, partners = [], [], []
    medoid_of = np.empty(len(proxies), dtype=np.int64)
    for c in np.unique(groups):
        rows = np.flatnonzero(groups == c)
        share = crust.coreset_fraction if fractions is None else fractions[c]
        k = max(1, int(round(share * len(rows))))
        x = proxies[torch.as_tensor(rows, device=proxies.device)]
        coreset = _in_row_order(in_partitions(x, k, select, partition_size=crust.partition_size, generator=generator))
        medoids.append(rows[coreset.medoids])
        sizes.append(coreset.cluster_sizes)
        partners.append(rows[mixup_partners(coreset.assignment, coreset.medoids, rng)])
        medoid_of[rows] = rows[coreset.medoids[coreset.assignment]]
    return Selection(
        medoids=np.concatenate(medoids),
        weights=normalize_weights(np.concatenate(sizes), max_weight=crust.max_weight),
        partners=np.concatenate(partners),
        medoid_of=medoid_of,
    )
