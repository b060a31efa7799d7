import timm
import torch
import torch.nn.functional as F

from crust_clean.models import classifier_weight
from crust_clean.proxies import compute_proxies, last_layer_proxy, logits_proxy


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
    torch.testing.assert_close(last_layer_proxy(probs, labels, head.weight.detach()), z.grad)
    torch.testing.assert_close(logits_proxy(probs, labels), logits.grad)
    torch.testing.assert_close(compute_proxies("last-layer", probs, labels, head.weight.detach()), z.grad)



def test_classifier_weight_is_the_timm_heads_linear_layer():
    model = timm.create_model("resnet10t", num_classes=3)
    assert classifier_weight(model) is model.get_classifier().weight
    assert classifier_weight(model).shape == (3, model.num_features)
