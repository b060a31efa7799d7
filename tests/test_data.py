import numpy as np
import torch
from PIL import Image

from crust_clean.data import ImageDataset, MixupPairs
from crust_clean.images import FileImages
from crust_clean.selection import select_coreset


def test_mixup_pairs_carry_the_medoid_weight_and_a_partner_from_its_cluster(tmp_path):
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"{i}.png")
        Image.new("L", (4, 4), i * 20).save(paths[-1])
    labels = np.repeat([0, 1], 6)
    base = ImageDataset(FileImages(paths), labels, lambda image: torch.tensor(np.asarray(image.convert("L")), dtype=torch.float32))
    proxies = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
    selection = select_coreset(proxies, labels, fraction=0.5, selector="facility-location",
                               rng=np.random.default_rng(0))
    lambdas = np.linspace(0.1, 0.9, len(selection.medoids))
    pairs = MixupPairs(base, selection.medoids, selection.partners, lambdas, selection.weights)
    assert len(pairs) == 6
    for p in range(len(pairs)):
        x_m, y_m, x_q, y_q, lam, weight = pairs[p]
        medoid, partner = selection.medoids[p], selection.partners[p]
        assert torch.equal(x_m, base[medoid][0]) and torch.equal(x_q, base[partner][0])
        assert y_m == labels[medoid] and y_q == labels[partner] == y_m  # given split: same class
        assert selection.medoid_of[partner] == medoid  # the partner belongs to the medoid's cluster
        assert weight == np.float32(selection.weights[p]) and lam == np.float32(lambdas[p])
