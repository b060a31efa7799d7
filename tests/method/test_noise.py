import numpy as np

from crust_clean.method.noise import NEXT_CLASS, asymmetric_noise, symmetric_noise


def test_symmetric_noise_flips_exactly_the_share_to_other_classes():
    labels = np.repeat(np.arange(10), 100)
    noisy = symmetric_noise(labels, 0.2, 10, np.random.default_rng(0))
    assert (noisy != labels).sum() == 200
    assert set(np.unique(noisy[noisy != labels])) == set(range(10))  # every other class is drawn
    again = symmetric_noise(labels, 0.2, 10, np.random.default_rng(0))
    assert np.array_equal(noisy, again)


def test_asymmetric_noise_moves_the_share_of_each_class_to_its_target():
    labels = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 110, 120, 130, 140])
    noisy = asymmetric_noise(labels, 0.4, NEXT_CLASS, np.random.default_rng(0))
    for c in range(10):
        members = labels == c
        flipped = members & (noisy != labels)
        assert flipped.sum() == round(0.4 * members.sum())
        assert (noisy[flipped] == (c + 1) % 10).all()
    partial = asymmetric_noise(labels, 0.5, {3: 5}, np.random.default_rng(1))
    assert ((partial != labels) == ((labels == 3) & (partial == 5))).all() and (partial != labels).sum() == 40
