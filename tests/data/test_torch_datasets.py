import numpy as np
import torch
from PIL import Image

from crust_clean.config import CrustConfig, RunConfig
from crust_clean.data.images import FileImages
from crust_clean.data.torch_datasets import EpochPairs, ImageDataset, PairImages
from crust_clean.method.selection import select_coreset
from crust_clean.train.models import build_transforms, create_model, data_config
from crust_clean.train.trainer import Device, TrainBatches, TrainContext


def grey_squares(tmp_path, n):
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"{i}.png")
        Image.new("L", (4, 4), i * 20).save(paths[-1])
    return paths


def test_mixup_pairs_carry_the_medoid_weight_and_a_partner_from_its_cluster(tmp_path):
    labels = np.repeat([0, 1], 6)
    base = ImageDataset(FileImages(grey_squares(tmp_path, 12)), labels,
                        lambda image: torch.tensor(np.asarray(image.convert("L")), dtype=torch.float32))
    proxies = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
    selection = select_coreset(proxies, labels, crust=CrustConfig(selector="facility-location"),
                               rng=np.random.default_rng(0))
    lambdas = np.linspace(0.1, 0.9, len(selection.medoids))
    pairs = EpochPairs(selection.medoids, selection.partners, lambdas, selection.weights)
    images = PairImages(base)
    assert len(pairs) == 6
    for p in range(len(pairs)):
        x_m, y_m, x_q, y_q, lam, weight = images[pairs.key(p, seed=7)]
        medoid, partner = selection.medoids[p], selection.partners[p]
        assert torch.equal(x_m, base[medoid][0]) and torch.equal(x_q, base[partner][0])
        assert y_m == labels[medoid] and y_q == labels[partner] == y_m  # given split: same class
        assert selection.medoid_of[partner] == medoid  # the partner belongs to the medoid's cluster
        assert weight == np.float32(selection.weights[p]) and lam == np.float32(lambdas[p])
    full = EpochPairs.full_data(12)
    assert [images[full.key(p, 0)][1] for p in range(12)] == labels.tolist()


def test_persistent_workers_augment_an_epoch_as_fresh_workers_do(tmp_path):
    """One training loader serves every epoch (its workers persist); a resumed run starts new workers at epoch
    e. Both must give epoch e the same augmented images: the workers reseed from the epoch seed."""
    cfg = RunConfig()
    cfg.model.name, cfg.model.img_size = "resnet10t", 32
    train_tf, _ = build_transforms(data_config(create_model(cfg.model, 2), cfg.model), cfg.train)  # crops, flips
    paths = []
    for i in range(8):  # noise images: a different crop or flip gives different pixels
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(paths[-1])
    base = ImageDataset(FileImages(paths), np.repeat([0, 1], 4), train_tf)
    pairs = EpochPairs.full_data(8)
    plan = [[0, 3, 5], [1, 2], [7, 6, 4]]  # three batches: both workers take turns
    ctx = TrainContext(cfg, Device(torch.device("cpu"), amp_dtype=None), workers=2)

    def epoch_images(batches, seed):
        return [batch[0] for batch in batches.epoch(pairs, plan, seed)]

    persistent = TrainBatches(base, ctx)
    epochs = [epoch_images(persistent, seed) for seed in (10, 11, 12)]
    fresh = epoch_images(TrainBatches(base, ctx), 12)
    assert all(torch.equal(a, b) for a, b in zip(epochs[2], fresh))
    assert not torch.equal(epochs[1][0], epochs[2][0])  # and each epoch augments anew
