import numpy as np
import pytest

from crust_clean.method.coreset_size import class_fractions, estimate_noise_rates


def brute_force(probs, labels, k):
    """Confident learning's count, one sample at a time."""
    thresholds = [np.mean([p[j] for p, y in zip(probs, labels) if y == j]) for j in range(k)]
    joint = np.zeros((k, k))
    for p, y in zip(probs, labels):
        candidates = [j for j in range(k) if p[j] >= thresholds[j] - 1e-6]
        if candidates:
            joint[y, max(candidates, key=lambda j: p[j])] += 1
    return np.array([1 - joint[i, i] / joint[i].sum() if joint[i].sum() else 0.0 for i in range(k)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_rates_equal_confident_learning_counted_by_hand(seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(4) * 0.5, size=120)
    labels = rng.integers(0, 4, size=120)
    np.testing.assert_allclose(estimate_noise_rates(probs, labels, 4), brute_force(probs, labels, 4))


def test_a_confident_model_recovers_the_share_of_wrong_labels_per_class():
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], 100)
    probs = np.full((300, 3), 0.05)
    probs[np.arange(300), truth] = 0.9  # the model knows the true class
    given = truth.copy()
    given[rng.choice(100, 20, replace=False)] = 1  # 20 % of class 0 is labelled 1
    rates = estimate_noise_rates(probs, given, 3)
    assert rates[0] == 0 and rates[2] == 0
    assert rates[1] == pytest.approx(20 / 120)  # class 1 holds 20 wrong of its 120
    assert estimate_noise_rates(probs[given != 2], given[given != 2], 3)[2] == 0  # a class without samples


def test_fractions_keep_one_minus_noise_minus_margin_within_floor_and_one():
    fractions = class_fractions(np.array([0.0, 0.17, 0.4, 0.8]), margin=0.05, floor=0.5)
    np.testing.assert_allclose(fractions, [0.95, 0.78, 0.55, 0.5])
    assert class_fractions(np.array([0.0]), margin=0.0, floor=0.5)[0] == 1.0
