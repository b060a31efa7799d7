import pytest
import timm
import torch
import torch.nn.functional as F

from crust_clean.method.proxies import compute_proxies, isometric_factor, last_layer_proxy, logits_proxy
from crust_clean.train.models import classifier_weight


def pairwise(rows):
    """Brute-force Euclidean distances between all rows (no matrix-product shortcut)."""
    return (rows[:, None, :] - rows[None, :, :]).norm(dim=-1)


def test_proxies_equal_autograd_gradients_of_the_last_layer():
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 4).double()
    z = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 1, 1, 2])
    logits = head(z)
    logits.retain_grad()
    # summed per-sample losses: row i of each gradient is sample i's own gradient
    F.cross_entropy(logits, labels, reduction="sum").backward()
    probs = logits.detach().softmax(1)
    torch.testing.assert_close(logits_proxy(probs, labels), logits.grad)
    # the last-layer proxy comes in K coordinates with the pairwise distances of the gradients w.r.t. z
    for proxy in (last_layer_proxy(probs, labels, head.weight.detach()),
                  compute_proxies("last-layer", probs, labels, head.weight.detach())):
        assert proxy.shape == (5, 4)
        torch.testing.assert_close(pairwise(proxy), pairwise(z.grad))


@pytest.mark.parametrize("shape", [(10, 512), (10, 3), (4, 4)])
def test_isometric_factor_keeps_every_distance(shape):
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(*shape, generator=generator)
    if shape == (4, 4):  # rank-deficient, as a head with two equal rows
        weight[1] = weight[0]
    factor = isometric_factor(weight)
    torch.testing.assert_close(factor @ factor.T, weight.double() @ weight.double().T)
    v = torch.randn(50, shape[0], dtype=torch.float64, generator=generator)
    torch.testing.assert_close(pairwise(v @ factor), pairwise(v @ weight.double()))


def test_a_zero_head_gives_zero_proxies():
    """A new head on pretrained weights starts at zero (models.create_model): every proxy is 0, no error."""
    probs = torch.full((3, 4), 0.25)
    proxy = last_layer_proxy(probs, torch.tensor([0, 1, 2]), torch.zeros(4, 16))
    assert proxy.shape == (3, 4) and not proxy.any()


def test_classifier_weight_is_the_timm_heads_linear_layer():
    model = timm.create_model("resnet10t", num_classes=3)
    assert classifier_weight(model) is model.get_classifier().weight
    assert classifier_weight(model).shape == (3, model.num_features)
