import numpy as np
import pytest

from crust_clean.method.neighbours import (
    approximate_neighbours,
    nearest_neighbours,
    neighbour_agreement,
    reference_sample,
)


def brute_force(x, k):
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("n,d,k,block", [(30, 5, 3, 7), (50, 2, 10, 64), (12, 8, 11, 5)])
def test_nearest_neighbours_equal_brute_force_in_any_blocks(n, d, k, block):
    x = np.random.default_rng(n).normal(size=(n, d))
    assert nearest_neighbours(x, k, block_rows=block).tolist() == brute_force(x, k).tolist()


def test_ties_go_to_the_lower_index_and_a_row_is_never_its_own_neighbour():
    x = np.array([[1.0, 0], [2.0, 0], [3.0, 0], [0, 1.0]])  # rows 0-2 point the same way: cosine ties
    assert nearest_neighbours(x, 2).tolist() == [[1, 2], [0, 2], [0, 1], [0, 1]]


def test_agreement_is_the_share_of_neighbours_with_the_same_label():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10
    labels = np.repeat([0, 1, 2], 20)
    x = centres[labels] + rng.normal(size=(60, 3))
    given = labels.copy()
    given[[0, 25]] = [1, 2]  # two wrong labels, each among 19 neighbours of its true class
    agreement = neighbour_agreement(x, given, k=10)
    assert agreement[0] == 0 and agreement[25] == 0
    assert (np.delete(agreement, [0, 25]) >= 0.9).all()  # the others lose at most the one wrong neighbour
    expected = (given[brute_force(x, 10)] == given[:, None]).mean(1)
    np.testing.assert_allclose(agreement, expected)
    assert neighbour_agreement(x[:5], given[:5], k=10).shape == (5,)  # k shrinks to n - 1


def test_above_the_threshold_the_index_finds_nearly_every_exact_neighbour_and_never_the_row_itself():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 32)) * 3
    labels = rng.integers(0, 20, 3000)
    x = (centres[labels] + rng.normal(size=(3000, 32))).astype(np.float16)  # half precision, as embeddings.npy
    exact = brute_force(x.astype(np.float64), 10)
    approximate = nearest_neighbours(x, 10, exact_up_to=1000)
    assert approximate.shape == (3000, 10) and (approximate >= 0).all()
    assert not (approximate == np.arange(3000)[:, None]).any()
    assert all(len(set(row)) == 10 for row in approximate)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approximate, exact)])
    assert recall > 0.9, recall
    given = labels.copy()
    given[:30] = (labels[:30] + 1) % 20  # 1 % wrong labels, each among neighbours of its true class
    agreement = neighbour_agreement(x, given, exact_up_to=1000)
    exact_agreement = neighbour_agreement(x, given, exact_up_to=10_000)
    assert np.abs(agreement - exact_agreement).max() <= 0.3
    assert agreement[:30].max() < agreement[30:].min()  # the wrong labels still rank first


def test_rows_take_part_alone_and_are_numbered_by_position_in_both_searches(tmp_path):
    """A run searches its training rows of embeddings.npy (a memory map) without copying them out first."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 16)).astype(np.float16)
    np.save(tmp_path / "embeddings.npy", x)
    mapped = np.load(tmp_path / "embeddings.npy", mmap_mode="r")
    rows = np.sort(rng.choice(400, 150, replace=False))
    exact = brute_force(x[rows].astype(np.float64), 5)
    assert nearest_neighbours(mapped, 5, rows=rows, block_rows=32).tolist() == exact.tolist()
    approximate = nearest_neighbours(mapped, 5, rows=rows, exact_up_to=100)
    assert approximate.max() < 150 and not (approximate == np.arange(150)[:, None]).any()
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(approximate, exact)]) > 0.9
    labels = rng.integers(0, 3, 150)
    np.testing.assert_allclose(neighbour_agreement(mapped, labels, rows=rows, k=5),
                               (labels[exact] == labels[:, None]).mean(1))


def test_above_the_reference_size_neighbours_come_from_a_random_sample_of_the_rows():
    """Past ``REFERENCE_ROWS`` the index holds a sample and every row is searched against it: the found rows are
    sample rows, never the row itself, nearly the exact neighbours within the sample, and still vote right."""
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(20, 32)) * 3
    labels = rng.integers(0, 20, 3000)
    x = (centres[labels] + rng.normal(size=(3000, 32))).astype(np.float16)
    rows = np.sort(rng.choice(3000, 2500, replace=False))  # positions in rows come back, as before
    found = approximate_neighbours(x, 10, rows=rows, reference_rows=800)
    reference = reference_sample(2500, 800)
    assert len(reference) == 800 and np.isin(found, reference).all()
    assert not (found == np.arange(2500)[:, None]).any()
    unit = x[rows].astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    similarity = unit @ unit[reference].T
    similarity[reference, np.arange(len(reference))] = -np.inf  # a sample row is not its own neighbour
    exact = reference[np.argsort(-similarity, axis=1, kind="stable")[:, :10]]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)]) > 0.9
    given = labels[rows].copy()
    given[:25] = (given[:25] + 1) % 20  # 1 % wrong labels
    agreement = (given[found] == given[:, None]).mean(1)
    assert agreement[:25].max() < agreement[25:].min()
