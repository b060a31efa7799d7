import itertools
import math

import numpy as np
import pytest
import torch

from crust_clean.config import CrustConfig
from crust_clean.method.facility_location import Coreset, distance_bound, distances, facility_location, squared_norms
from crust_clean.method.selection import (
    assign_to_medoids,
    centrality,
    in_partitions,
    mixup_partners,
    normalize_weights,
    partition_shares,
    select_coreset,
)


def points(n, d=3, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)))  # float64


def brute_distances(x):
    x = x.numpy()
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def objective(x, medoids, d0):
    """F(S) = sum_i max_{j in S} (d0 - d_ij), computed naively."""
    d = brute_distances(x)
    return float((d0 - d[:, list(medoids)]).max(1).sum())


def assert_is_a_greedy_sequence(x, medoids):
    """Replay the textbook greedy on the full matrix: every pick must have the largest marginal gain
    (up to float noise, so exact ties such as two mutually nearest points may go either way)."""
    sim = distance_bound(x) - brute_distances(x)
    best = np.zeros(len(x))
    for step, j in enumerate(medoids):
        gains = np.maximum(sim - best[None, :], 0).sum(1)
        gains[list(medoids[:step])] = -np.inf
        assert gains[j] >= gains.max() - 1e-9, f"step {step}: picked {j}, best is {int(np.argmax(gains))}"
        best = np.maximum(best, sim[j])


@pytest.mark.parametrize("n,k,seed", [(30, 5, 0), (50, 25, 1), (64, 1, 2), (40, 40, 3)])
def test_naive_and_lazy_greedy_follow_the_reference_greedy(n, k, seed):
    x = points(n, seed=seed)
    naive = facility_location(x, k, greedy="naive").medoids.tolist()
    lazy = facility_location(x, k, greedy="lazy").medoids.tolist()
    assert_is_a_greedy_sequence(x, naive)
    assert_is_a_greedy_sequence(x, lazy)
    d0 = distance_bound(x)
    assert objective(x, lazy, d0) == pytest.approx(objective(x, naive, d0), abs=1e-9)


@pytest.mark.parametrize("neighbours", [1, 4, 16, 1000])
def test_lazy_greedy_with_any_neighbour_list_is_the_greedy(neighbours):
    # short lists keep rows uncovered for long (distance evaluations), long ones cover them at once
    x = points(300, d=5, seed=neighbours)
    lazy = facility_location(x, 150, neighbours=neighbours)
    naive = facility_location(x, 150, greedy="naive")
    assert_is_a_greedy_sequence(x, lazy.medoids)
    d0 = distance_bound(x)
    assert objective(x, lazy.medoids, d0) == pytest.approx(objective(x, naive.medoids, d0), abs=1e-9)
    assert lazy.assignment.tolist() == brute_distances(x)[:, lazy.medoids].argmin(1).tolist()


def test_lazy_greedy_with_duplicate_rows():
    x = torch.cat([points(40, seed=12)] * 3)  # every row three times: zero distances, tied gains
    lazy = facility_location(x, 60, neighbours=2)
    assert_is_a_greedy_sequence(x, lazy.medoids)
    assert len(set(lazy.medoids.tolist())) == 60
    assert lazy.assignment.tolist() == brute_distances(x)[:, lazy.medoids].argmin(1).tolist()


def test_lazy_equals_naive_without_ties():
    x = points(200, d=8, seed=11)  # continuous coordinates in 8-d: no two marginal gains tie
    assert facility_location(x, 60, greedy="lazy").medoids.tolist() == \
        facility_location(x, 60, greedy="naive").medoids.tolist()


@pytest.mark.parametrize("seed", range(5))
def test_greedy_reaches_1_minus_1_over_e_of_the_optimum(seed):
    x = points(9, d=2, seed=seed)
    d0 = distance_bound(x)
    for k in (2, 3, 4):
        optimum = max(objective(x, s, d0) for s in itertools.combinations(range(9), k))
        greedy = objective(x, facility_location(x, k).medoids, d0)
        stochastic = objective(
            x, facility_location(x, k, greedy="stochastic", generator=torch.Generator().manual_seed(seed)).medoids, d0
        )
        assert greedy >= (1 - 1 / math.e) * optimum
        assert stochastic >= (1 - 1 / math.e - 0.01) * optimum
        assert greedy <= optimum + 1e-9


@pytest.mark.parametrize("greedy", ["naive", "lazy", "stochastic"])
def test_chunked_equals_unchunked(greedy):
    x = points(80, d=4, seed=7)
    small = facility_location(x, 20, greedy=greedy, chunk_size=1, generator=torch.Generator().manual_seed(0))
    large = facility_location(x, 20, greedy=greedy, chunk_size=10**9, generator=torch.Generator().manual_seed(0))
    if greedy == "lazy":  # the lazy greedy evaluates blocks of chunk-dependent size: the float rounding of
        # a gain may differ, so exact ties (here two mutually nearest rows at step 14) may go either way
        assert_is_a_greedy_sequence(x, small.medoids)
        assert_is_a_greedy_sequence(x, large.medoids)
        d0 = distance_bound(x)
        assert objective(x, small.medoids, d0) == pytest.approx(objective(x, large.medoids, d0), abs=1e-9)
    else:
        assert small.medoids.tolist() == large.medoids.tolist()
        assert small.assignment.tolist() == large.assignment.tolist()
    assert centrality(x, 20, chunk_size=1).medoids.tolist() == centrality(x, 20, chunk_size=10**9).medoids.tolist()


@pytest.mark.parametrize("select", [
    lambda x, k: facility_location(x, k),
    lambda x, k: facility_location(x, k, greedy="stochastic", generator=torch.Generator().manual_seed(1)),
    lambda x, k: centrality(x, k),
])
def test_every_row_joins_its_nearest_medoid_and_sizes_sum_to_n(select):
    x = points(60, seed=3)
    coreset = select(x, 12)
    d = brute_distances(x)[:, coreset.medoids]
    assert coreset.assignment.tolist() == d.argmin(1).tolist()
    assert coreset.cluster_sizes.sum() == 60
    assert coreset.cluster_sizes.tolist() == np.bincount(coreset.assignment, minlength=12).tolist()
    assert len(set(coreset.medoids.tolist())) == 12
    assert (coreset.assignment[coreset.medoids] == np.arange(12)).all()  # a medoid is its own nearest


def test_centrality_picks_the_points_with_least_total_distance():
    x = points(40, seed=4)
    expected = np.argsort(brute_distances(x).sum(1), kind="stable")[:7]
    assert centrality(x, 7).medoids.tolist() == expected.tolist()


def test_distances_match_brute_force():
    x, y = points(10, seed=5), points(7, seed=6)
    expected = np.sqrt(((x.numpy()[:, None] - y.numpy()[None]) ** 2).sum(-1))
    np.testing.assert_allclose(distances(x, y).numpy(), expected, atol=1e-9)
    np.testing.assert_allclose(distances(x, y, squared_norms(y)).numpy(), expected, atol=1e-9)
    assert assign_to_medoids(x, torch.tensor([3, 1])).tolist() == \
        brute_distances(x)[:, [3, 1]].argmin(1).tolist()


def test_normalize_weights_mean_one_capped_and_proportional():
    sizes = np.array([1, 2, 3, 4, 90])
    w = normalize_weights(sizes, max_weight=2.0)
    assert w.mean() == pytest.approx(1.0)
    assert w.max() == pytest.approx(2.0)
    # below the cap the weights stay proportional to the cluster sizes
    np.testing.assert_allclose(w[:4] / w[0], sizes[:4] / sizes[0])
    uncapped = normalize_weights(sizes, max_weight=1000.0)
    np.testing.assert_allclose(uncapped, sizes * 5 / sizes.sum())
    # a second round of capping: after the first cut, the next-largest exceeds the cap too
    w2 = normalize_weights(np.array([1, 1, 1, 1, 30, 40]), max_weight=2.0)
    assert w2.mean() == pytest.approx(1.0) and w2.max() <= 2.0 + 1e-12
    assert w2[4] == pytest.approx(2.0) and w2[0] == pytest.approx(w2[1])


def test_normalize_weights_with_empty_clusters_stays_finite():
    # duplicate medoids leave clusters empty; once every non-empty one is capped, 0 / 0 made the
    # weights NaN and a centrality run "diverged" (long MNIST run without augmentation)
    w = normalize_weights(np.array([90, 10, 0, 0, 0, 0]), max_weight=2.0)
    assert np.isfinite(w).all()
    np.testing.assert_allclose(w, [2.0, 2.0, 0, 0, 0, 0])
    w = normalize_weights(np.array([5, 3, 0, 0]), max_weight=5.0)  # cap not reached: mean 1, empties 0
    np.testing.assert_allclose(w, [2.5, 1.5, 0, 0])


def test_mixup_partners_stay_in_their_cluster():
    assignment = np.array([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
    medoids = np.array([0, 1, 3, 9])  # cluster 3 is empty: medoid 9 is its own partner
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        partners = mixup_partners(assignment, medoids, rng)
        for position, partner in enumerate(partners[:3]):
            assert assignment[partner] == position
            seen.add((position, int(partner)))
        assert partners[3] == 9
    # every member is drawn eventually (uniform within the cluster)
    assert seen == {(int(a), i) for i, a in enumerate(assignment)}


@pytest.mark.parametrize("selector", ["facility-location", "centrality"])
def test_select_coreset_per_class(selector):
    x = points(90, d=5, seed=8).float()
    groups = np.repeat([0, 1, 2], [50, 30, 10])
    crust = CrustConfig(selector=selector, coreset_fraction=0.3)
    selection = select_coreset(x, groups, crust=crust, rng=np.random.default_rng(0))
    assert np.bincount(groups[selection.medoids]).tolist() == [15, 9, 3]
    assert (groups[selection.partners] == groups[selection.medoids]).all()
    assert (groups[selection.medoid_of] == groups).all()  # clusters never cross classes
    assert (selection.medoid_of[selection.partners] == selection.medoids).all()  # partner in medoid's cluster
    assert selection.weights.mean() == pytest.approx(1.0)
    assert selection.weights.max() <= 5.0 + 1e-9


@pytest.mark.parametrize("k,sizes", [(10, [5, 5, 5]), (3, [7, 7, 6]), (20, [7, 7, 6]), (11, [30, 4, 2])])
def test_partition_shares_sum_to_k_in_proportion(k, sizes):
    shares = partition_shares(k, np.array(sizes))
    assert shares.sum() == k and (shares >= 1).all() and (shares <= sizes).all()
    assert (np.abs(shares - k * np.array(sizes) / sum(sizes)) < 1 + 1e-9).all()  # within one of proportional


@pytest.mark.parametrize("selector", ["facility-location", "centrality"])
def test_in_partitions_selects_within_each_part_and_assigns_within_it(selector):
    x = points(103, d=3, seed=8)

    def select(rows, k):
        return facility_location(rows, k) if selector == "facility-location" else centrality(rows, k)

    coreset = in_partitions(x, 40, select, partition_size=25, generator=torch.Generator().manual_seed(3))
    order = torch.randperm(103, generator=torch.Generator().manual_seed(3)).numpy()
    parts = np.array_split(order, 5)  # ceil(103 / 25) near-equal random parts
    shares = partition_shares(40, np.array([len(p) for p in parts]))
    assert len(coreset.medoids) == 40 and coreset.cluster_sizes.sum() == 103
    start = 0
    for part, share in zip(parts, shares):  # each part's medoids are the selector's on that part alone
        medoids = coreset.medoids[start:start + share]
        assert medoids.tolist() == part[select(x[part], int(share)).medoids].tolist()
        d = brute_distances(x)[np.ix_(part, medoids)]  # every row joins the nearest medoid of its own part
        assert (coreset.assignment[part] - start).tolist() == d.argmin(1).tolist()
        start += share
    assert coreset.cluster_sizes.tolist() == np.bincount(coreset.assignment, minlength=40).tolist()
    # a class no larger than the parts is selected whole
    whole = in_partitions(x, 40, select, partition_size=103, generator=torch.Generator().manual_seed(3))
    assert whole.medoids.tolist() == select(x, 40).medoids.tolist()


def test_partitions_cost_little_on_clustered_rows():
    """Random parts of a clustered class cost some k-medoids cost (here 1.06x with 2 parts, 1.11x with 4 of 300
    rows each) but stay well below k random rows (1.19x)."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 5, generator=generator, dtype=torch.float64)
    x = centres[torch.randint(0, 8, (1200,), generator=generator)] + 0.3 * torch.randn(1200, 5, generator=generator,
                                                                                       dtype=torch.float64)

    def cost(coreset):
        return float(distances(x, x[torch.as_tensor(coreset.medoids)]).min(1).values.sum())

    whole = cost(facility_location(x, 300))
    two, four = (cost(in_partitions(x, 300, facility_location, partition_size=size,
                                    generator=torch.Generator().manual_seed(1))) for size in (600, 300))
    random_rows = cost(Coreset(torch.randperm(1200, generator=generator)[:300].numpy(), None, None))
    assert whole < two < 1.08 * whole
    assert two < four < 1.13 * whole < random_rows


def test_select_coreset_refuses_the_none_selector_naming_the_ones_it_runs():
    with pytest.raises(ValueError, match="selector='none' is not one of: centrality, facility-location$"):
        select_coreset(points(10).float(), np.zeros(10, int), crust=CrustConfig(selector="none"),
                       rng=np.random.default_rng(0))


def test_select_coreset_with_partitions_is_deterministic_per_seed():
    x = points(400, d=4, seed=9).float()
    labels = np.repeat([0, 1], 200)

    def run(seed):
        crust = CrustConfig(selector="facility-location", coreset_fraction=0.3, partition_size=64)
        return select_coreset(x, labels, crust=crust, rng=np.random.default_rng(seed))

    first, again = run(0), run(0)
    assert first.medoids.tolist() == again.medoids.tolist() and len(first.medoids) == 120
    assert np.isin(first.medoid_of, first.medoids).all()
    assert (labels[first.medoid_of] == labels).all()  # a row's medoid is of its own class
