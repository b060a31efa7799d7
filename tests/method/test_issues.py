import numpy as np

from crust_clean.method.issues import (
    class_distances,
    flag_outliers,
    near_duplicate_groups,
    neighbour_similarities,
    outlier_scores,
    robust_deviations,
)
from crust_clean.method.neighbours import nearest_neighbours


def test_similarities_are_the_cosines_of_each_row_to_its_neighbours_and_nan_where_none_was_found():
    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float16)
    neighbours = nearest_neighbours(x, 4)
    neighbours[3, 2] = -1
    found = neighbour_similarities(x, neighbours, block_rows=7)
    unit = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    expected = np.einsum("nd,nkd->nk", unit, unit[neighbours])
    expected[3, 2] = np.nan
    np.testing.assert_allclose(found, expected, atol=1e-5)
    rows = np.array([5, 9, 1, 30, 2])
    neighbours_of_rows = nearest_neighbours(x, 2, rows=rows)
    np.testing.assert_allclose(neighbour_similarities(x, neighbours_of_rows, rows=rows),
                               np.einsum("nd,nkd->nk", unit[rows], unit[rows][neighbours_of_rows]), atol=1e-5)


def brute_force_groups(x, threshold):
    """Connected components of the pairs with cosine >= threshold, over all pairs (groups by first row)."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    close = unit @ unit.T >= threshold
    np.fill_diagonal(close, False)
    group, n = np.full(len(x), -1), 0
    for start in range(len(x)):
        if group[start] >= 0 or not close[start].any():
            continue
        stack = [start]
        while stack:
            row = stack.pop()
            if group[row] < 0:
                group[row] = n
                stack += list(np.nonzero(close[row])[0])
        n += 1
    return group


def test_near_duplicate_groups_equal_the_components_of_close_pairs_found_by_brute_force():
    rng = np.random.default_rng(1)
    originals = rng.normal(size=(60, 16))
    copies = originals[[3, 3, 10, 41, 41, 41]] + rng.normal(scale=0.05, size=(6, 16))  # 3 groups: 3, 2, 4 rows
    x = np.concatenate([originals, copies])
    neighbours = nearest_neighbours(x, 5)
    groups = near_duplicate_groups(neighbours, neighbour_similarities(x, neighbours), threshold=0.98)
    assert groups.tolist() == brute_force_groups(x, 0.98).tolist()
    assert sorted(np.bincount(groups[groups >= 0]).tolist()) == [2, 3, 4]
    assert groups[3] == groups[60] == groups[61] and groups[41] == groups[63] == groups[65]
    assert (groups[[0, 1, 2, 4]] == -1).all() and groups[3] == 0  # numbered by each group's first row


def test_class_distance_is_one_minus_the_cosine_to_the_nearest_unit_class_centroid():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 8)).astype(np.float16)
    labels = np.array(["b", "a", "c"] * 16 + ["a", "a"], dtype=object)
    unit = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    centroids = np.stack([unit[labels == c].mean(0) for c in "abc"])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    expected = 1 - (unit @ centroids.T).max(1)
    np.testing.assert_allclose(class_distances(x, labels, block_rows=7), expected, atol=1e-5)


def test_robust_deviations_are_distances_from_the_median_in_scaled_absolute_deviations():
    values = np.array([0.1, 0.2, 0.3, 0.2, 0.9, np.nan])
    deviation = 1.4826 * 0.1  # median 0.2, absolute deviations 0.1 0 0.1 0 0.7 -> median 0.1
    np.testing.assert_allclose(robust_deviations(values), (values - 0.2) / deviation)
    assert flag_outliers(robust_deviations(values), spread=4).tolist() == [False, False, False, False, True, False]
    assert flag_outliers(robust_deviations(values), spread=(0.9 - 0.2) / deviation + 0.01).sum() == 0


def test_outliers_are_rows_far_from_their_neighbours_or_a_cluster_far_from_every_class():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(4, 32)) * 4
    truth = rng.integers(0, 4, 400)
    stray = rng.normal(size=(5, 32)) * 4  # 5 rows from nowhere
    cluster = rng.normal(size=32) * 4 + rng.normal(scale=0.5, size=(15, 32))  # 15 close together: each other's nearest
    x = np.concatenate([centres[truth] + rng.normal(size=(400, 32)), stray, cluster])
    labels = np.concatenate([truth, rng.integers(0, 4, 20)])
    neighbours = nearest_neighbours(x, 10)
    similarities = neighbour_similarities(x, neighbours)
    isolation = 1 - similarities.mean(1)
    assert set(np.argsort(-isolation)[:20]) != set(range(400, 420))  # the neighbours alone miss the cluster
    scores = outlier_scores(similarities, class_distances(x, labels))
    np.testing.assert_allclose(scores, np.maximum(robust_deviations(isolation),
                                                  robust_deviations(class_distances(x, labels))), rtol=1e-3, atol=1e-3)
    assert set(np.argsort(-scores)[:20]) == set(range(400, 420))
    flagged = flag_outliers(scores)
    assert flagged[400:].all() and not flagged[:400].any()
