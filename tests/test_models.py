import pytest
import timm
import torch
from safetensors.torch import save_file

from crust_clean.config import ModelConfig
from crust_clean.errors import BadInputError
from crust_clean.models import create_model


def test_local_pretrained_weights_load_the_body_and_leave_a_fresh_head(tmp_path):
    source = timm.create_model("resnet10t", num_classes=1000)
    weights = tmp_path / "imagenet.safetensors"
    save_file(source.state_dict(), weights)
    model = create_model(ModelConfig(name="resnet10t", pretrained_weights=str(weights)), num_classes=3)
    torch.testing.assert_close(model.conv1[0].weight, source.conv1[0].weight)
    assert model.get_classifier().weight.shape == (3, source.num_features)


@pytest.mark.parametrize("config,message", [
    (ModelConfig(name="not_a_model"), "unknown timm model"),
    (ModelConfig(pretrained_weights="/nonexistent/weights.safetensors"), "weights file not found"),
])
def test_model_errors_are_clear(config, message):
    with pytest.raises(BadInputError, match=message):
        create_model(config, num_classes=2)
