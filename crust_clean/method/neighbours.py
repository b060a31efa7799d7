"""Neighbours in embedding space: a second opinion on each label, beside CRUST's score. Pure functions.

``neighbour_agreement``: the share of a sample's k nearest other samples (cosine similarity of the run's
embeddings, the saved model's pooled features) whose given label is the sample's own. Higher = its neighbourhood
agrees with its label; a mislabeled sample tends to sit among samples of its true class (SimiFeat-style voting,
Zhu et al. 2022).

Up to ``EXACT_UP_TO`` rows (and at any size on a CUDA device) the search is exact: similarities in blocks of rows,
only the k best of each row kept, n^2 time. Above it on the CPU, an approximate index from faiss (HNSW graph over
8-bit scalar-quantised unit vectors, ``APPROXIMATE_INDEX``), n log n: on the 50,000 Lite2 features of CIFAR-10 it
finds 98 % of the exact 10 neighbours in 14.2 s instead of 45.1 s, and the agreement's AUROC for CIFAR-10N's wrong
labels moves by at most 0.0008 (benchmarks/results/neighbours.md). Above ``REFERENCE_ROWS`` rows the index holds a
random sample of that many, and the search grows linearly. Its graph is built by several threads, so two runs may
differ in a few neighbours.
"""

from __future__ import annotations

import numpy as np
import torch

#: How many neighbours the agreement counts (scores.csv's ``neighbour_agreement``).
NEIGHBOURS = 10
#: Above this many rows the CPU search is approximate (``approximate_neighbours``): exact costs n^2 (8 s here at
#: 20,000 rows, 47.5 s at 50,000, hours at a million).
EXACT_UP_TO = 20_000
#: faiss's description of the approximate index, and how many candidates its search keeps (efSearch): chosen on
#: CIFAR-10's Lite2 features by recall@10 against exact search per second (benchmarks/neighbours.py): 32 links a
#: node searched with 32 candidates find 98.4 % of the exact neighbours at 50,000 rows in 14.2 s (exact: 45.1 s).
#: Cheaper graphs (16 links with efSearch 32, or a construction breadth of 20) found 95 % but left a few samples of
#: tight clusters among another class's (tests/method/test_neighbours.py); 16 links with 64 candidates builds in
#: half the time but, at 200,000 synthetic rows, found 2.3 % of the neighbours in another class against 0.5 %.
#: The index holds at most ``REFERENCE_ROWS`` rows, so its build time does not grow past them.
APPROXIMATE_INDEX, SEARCH_BREADTH = "HNSW32,SQ8", 32
#: Above this many rows the approximate index holds a random sample of this many and every row's neighbours are
#: found among them: the graph's build (n log n, and about 1.6 KB of memory a 1,280-d row) stops growing and the
#: search grows linearly with n. The vote's quality follows the sample's density: on the 50,000 Lite2 features of
#: CIFAR-10 an index over a random 25,000 / 10,000 / 5,000 of them moved the agreement's AUROC for random1 from
#: 0.901 to 0.896 / 0.887 / 0.880 (benchmarks/results/neighbours.md). 200,000 rows of a 10-class million hold
#: 20,000 a class: four times what all 50,000 CIFAR-10 images hold.
REFERENCE_ROWS = 200_000


def _unit_rows(embeddings, rows, device: torch.device | str = "cpu") -> torch.Tensor:
    """``embeddings[rows]`` (``rows``: a slice or an array of row numbers) as float32 unit vectors (a row of zeros
    stays zero: similar to nothing)."""
    block = torch.as_tensor(np.asarray(embeddings[rows], dtype=np.float32), device=device)
    return torch.nn.functional.normalize(block, dim=1)


def nearest_neighbours(embeddings: np.ndarray, k: int, *, rows: np.ndarray | None = None, block_rows: int = 2048,
                       exact_up_to: int = EXACT_UP_TO, device: torch.device | str = "cpu") -> np.ndarray:
    """(n, k) indices of each row's k most cosine-similar other rows, most similar first.

    ``embeddings``: (N, d), any float array (a memory map is read a block at a time); ``rows``: the n rows that
    take part (default: all), the indices returned are positions in ``rows``. A row of zeros is similar to
    nothing (similarity 0 to every row). k < n. Exact (ties to the lower index, among the 4k most similar) up
    to ``exact_up_to`` rows or on a CUDA ``device``; else ``approximate_neighbours``.
    """
    rows = np.arange(len(embeddings)) if rows is None else np.asarray(rows)
    n = len(rows)
    if not 0 < k < n:
        raise ValueError(f"k={k} must be in [1, {n - 1}]")
    if n > exact_up_to and torch.device(device).type == "cpu":
        return approximate_neighbours(embeddings, k, rows=rows)
    x = _unit_rows(embeddings, rows, device)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block_rows):
        block = torch.arange(start, min(start + block_rows, n), device=x.device)
        similarity = x[block] @ x.T
        similarity[torch.arange(len(block), device=x.device), block] = -torch.inf  # never its own neighbour
        out[start:start + len(block)] = _top_k(similarity, k)
    return out


def _top_k(similarity: torch.Tensor, k: int) -> np.ndarray:
    """The k largest of each row in order, ties to the lower index (``torch.topk`` alone leaves ties unordered):
    the 4k largest as candidates in index order, then a stable sort of their values."""
    candidates = torch.topk(similarity, min(similarity.shape[1], 4 * k), dim=1).indices.sort(dim=1).values
    order = torch.sort(similarity.gather(1, candidates), dim=1, descending=True, stable=True).indices[:, :k]
    return candidates.gather(1, order).cpu().numpy()


def reference_sample(n: int, size: int = REFERENCE_ROWS, *, seed: int = 0) -> np.ndarray:
    """The positions (sorted) of the rows ``approximate_neighbours`` puts in its index: all n up to ``size``, else
    ``size`` of them drawn with ``seed``."""
    return np.arange(n) if n <= size else np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def approximate_neighbours(embeddings: np.ndarray, k: int, *, rows: np.ndarray | None = None,
                           block_rows: int = 65536, reference_rows: int = REFERENCE_ROWS, training_rows: int = 100_000,
                           seed: int = 0) -> np.ndarray:
    """(n, k) approximate cosine neighbours among ``rows`` of ``embeddings`` (default: all; positions in ``rows``)
    from a faiss ``APPROXIMATE_INDEX`` over the unit rows, most similar first, never the row itself; -1 where the
    search found fewer (not seen in practice).

    Above ``reference_rows`` rows the index holds a random sample of that many (drawn with ``seed``) and every
    row's neighbours are found among them: the graph's cost and memory stop growing, and the whole search grows
    linearly with n (``REFERENCE_ROWS``). Memory: the index (about d + 300 bytes a reference row) and one block of
    rows, read twice (to add, then to search: the graph must be complete before it is searched); the quantiser's
    ranges are learnt from ``training_rows`` of the reference rows."""
    import faiss

    rows = np.arange(len(embeddings)) if rows is None else np.asarray(rows)
    n, d = len(rows), embeddings.shape[1]
    reference = reference_sample(n, reference_rows, seed=seed)
    index = faiss.index_factory(d, APPROXIMATE_INDEX, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(seed).choice(len(reference), min(len(reference), training_rows), replace=False)
    sample = reference[np.sort(sample)]
    index.train(_unit_rows(embeddings, rows[sample]).numpy())
    for start in range(0, len(reference), block_rows):
        index.add(_unit_rows(embeddings, rows[reference[start:start + block_rows]]).numpy())
    faiss.ParameterSpace().set_index_parameter(index, "efSearch", max(SEARCH_BREADTH, k + 1))
    in_reference = np.full(n, -2)  # each row's position in the index; -2 (never found) for the others
    in_reference[reference] = np.arange(len(reference))
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block_rows):
        _, found = index.search(_unit_rows(embeddings, rows[start:start + block_rows]).numpy(), k + 1)
        own = in_reference[start:start + len(found)]
        # drop the row itself where it was found, else the least similar; -1 (nothing found) sorts last
        keep = np.argsort((found == own[:, None]) | (found < 0), axis=1, kind="stable")[:, :k]
        found = np.take_along_axis(found, keep, axis=1)
        out[start:start + len(found)] = np.where(found >= 0, reference[np.maximum(found, 0)], -1)
    return out


def neighbour_agreement(embeddings: np.ndarray, labels: np.ndarray, *, rows: np.ndarray | None = None,
                        k: int = NEIGHBOURS, block_rows: int = 2048, exact_up_to: int = EXACT_UP_TO,
                        device: torch.device | str = "cpu") -> np.ndarray:
    """(n,) share of each sample's k nearest other samples (``nearest_neighbours`` among ``rows`` of
    ``embeddings``, default all; ``labels``: theirs, in that order) whose label equals its own, in [0, 1]; higher =
    the neighbourhood agrees with the given label. With n <= k, k = n - 1."""
    labels = np.asarray(labels)
    k = min(k, len(labels) - 1)
    if k < 1:
        return np.ones(len(labels))
    return agreement_of(nearest_neighbours(embeddings, k, rows=rows, block_rows=block_rows, exact_up_to=exact_up_to,
                                           device=device), labels)


def agreement_of(neighbours: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) share of each row's ``neighbours`` (positions in ``labels``; -1: none found, not counted) whose label
    equals its own (``neighbour_agreement`` from neighbours found already)."""
    labels = np.asarray(labels)
    found = neighbours >= 0
    agree = (labels[neighbours] == labels[:, None]) & found
    return agree.sum(1) / np.maximum(found.sum(1), 1)
