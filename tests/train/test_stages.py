"""Partial fine-tuning (--train last-stages): the cut of a timm network into a frozen trunk and a trainable top,
the trunk's maps cached like pooled features, the top trained with CRUST, and a saved plain timm model."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import load_file

import crust_clean
from crust_clean.errors import BadInputError
from crust_clean.train.stages import split, stage_names

from .test_features import assert_predicts_as_the_run_says

STAGES = dict(model="resnet10t", train="last-stages", stages=1, img_size=24, epochs=6, warmup_epochs=2,
              batch_size=32, lr=0.05, hflip=0.0, progress=False)


def test_the_stages_are_timms_feature_info_stages():
    assert stage_names(timm.create_model("efficientnet_lite0")) == [f"blocks.{i}" for i in range(7)]
    assert stage_names(timm.create_model("resnet10t")) == ["layer1", "layer2", "layer3", "layer4"]
    assert stage_names(timm.create_model("convnext_atto")) == [f"stages.{i}" for i in range(4)]


@pytest.mark.parametrize("name,stages,cut,shape,trained", [
    ("efficientnet_lite0", 1, "blocks.6", (192, 2, 2), {"blocks.6", "conv_head", "bn2", "classifier"}),
    ("efficientnet_lite0", 2, "blocks.5", (112, 4, 4), {"blocks.5", "blocks.6", "conv_head", "bn2", "classifier"}),
    ("resnet10t", 2, "layer3", (128, 8, 8), {"layer3", "layer4", "fc"})])
def test_the_top_on_the_trunk_is_the_whole_network(name, stages, cut, shape, trained):
    model = timm.create_model(name, num_classes=3).eval()
    ran = []
    model.get_submodule(cut).register_forward_hook(lambda *_: ran.append(cut))
    parts = split(model, stages, img_size=64)
    assert parts.cut == cut
    x = torch.randn(4, 3, 64, 64)
    ran.clear()
    with torch.no_grad():
        maps = parts.trunk(x)
        assert tuple(maps.shape) == (4, *shape) and ran == []  # the pass stops at the cut's input
        whole = model.forward_head(model.forward_features(x), pre_logits=True)
        top = parts.top.forward_head(parts.top.forward_features(maps), pre_logits=True)
    torch.testing.assert_close(top, whole, rtol=1e-4, atol=1e-5)
    def part(key):  # the stage or the top-level module a parameter belongs to
        return ".".join(key.split(".")[:2]) if key.startswith("blocks.") else key.split(".")[0]

    assert {part(k) for k, _ in parts.top.named_parameters()} == trained  # no trunk parameter in the top


def test_models_that_cannot_be_cut_are_refused_in_one_line():
    with pytest.raises(BadInputError, match="does not run as stem, stages, head"):
        split(timm.create_model("vit_tiny_patch16_224", num_classes=2), 1, img_size=224)  # position embedding
    with pytest.raises(BadInputError, match=r"model.stages must be in 1..4: the model has 4 stages \(layer1, "):
        split(timm.create_model("resnet10t", num_classes=2), 5, img_size=32)


@pytest.fixture(scope="module")
def stages_run(noisy_colours, backbone, tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    return crust_clean.fit(noisy_colours, out=root / "run", pretrained_weights=str(backbone),
                           feature_cache=str(root / "features"), true_labels=str(noisy_colours.parent / "truth.csv"),
                           **STAGES)


def test_a_last_stages_fit_trains_the_top_on_cached_maps(stages_run):
    summary = stages_run.metrics["summary"]
    assert summary["cache"] == "features" and summary["features_cached"] is False
    assert summary["feature_shape"] == [256, 2, 2]  # layer4's input at 24 px: 256 x 2 x 2 float16 = 2 KB a view
    entry, = Path(stages_run.config.data.feature_cache).iterdir()
    array = np.load(entry / "features.npy", mmap_mode="r")
    assert array.shape == (1, 160, 256, 2, 2) and array.dtype == np.float16
    description = json.loads((entry / "meta.json").read_text())["description"]
    assert description["cut"] == "layer4"
    from crust_clean.train.trainer import Device

    bf16 = Device.resolve("cpu").inference_dtype is not None  # the pass's precision is part of the key
    assert description.get("precision") == ("bfloat16 on the CPU" if bf16 else None)
    ledger = stages_run.ledger()
    selecting = ledger[ledger["epoch"] >= STAGES["warmup_epochs"]]
    assert (selecting.groupby("epoch")["selected"].sum() == 72).all()  # half of each class's 36
    assert summary["val_accuracy"] >= 0.75 and summary["detection"]["auroc"] > 0.9
    assert {k: stages_run.model_info[k] for k in ("trained", "stages", "cut")} == {
        "trained": "last-stages", "stages": 1, "cut": "layer4"}
    assert stages_run.embeddings().shape == (160, 512)  # the trained top's pooled features


def test_the_saved_model_is_a_plain_timm_model_with_the_trunk_as_loaded(stages_run, backbone):
    info = stages_run.model_info
    model = timm.create_model(info["architecture"], num_classes=info["num_classes"])
    saved = load_file(str(stages_run.path / "model.safetensors"))
    model.load_state_dict(saved)  # every key timm has, none more
    pretrained = load_file(str(backbone))
    trunk = [k for k in pretrained if not k.startswith(("layer4.", "fc."))]
    assert trunk and all(torch.equal(saved[k], pretrained[k]) for k in trunk)
    assert not torch.equal(saved["layer4.0.conv1.weight"], pretrained["layer4.0.conv1.weight"])  # trained
    assert_predicts_as_the_run_says(stages_run)


def test_a_second_last_stages_fit_reads_the_cache_and_ends_the_same(stages_run, noisy_colours, backbone, tmp_path):
    again = crust_clean.fit(noisy_colours, out=tmp_path / "again", pretrained_weights=str(backbone),
                            feature_cache=str(stages_run.config.data.feature_cache), **STAGES)
    assert again.metrics["summary"]["features_cached"] is True
    pd.testing.assert_frame_equal(again.scores, stages_run.scores)
    two = crust_clean.fit(noisy_colours, out=tmp_path / "two", pretrained_weights=str(backbone),
                          feature_cache=str(stages_run.config.data.feature_cache), **{**STAGES, "stages": 2,
                                                                                      "epochs": 1, "warmup_epochs": 1})
    assert two.metrics["summary"]["features_cached"] is False  # another cut, another cache entry
    assert two.metrics["summary"]["feature_shape"] == [128, 3, 3]


def test_last_stages_needs_a_pretrained_backbone():
    with pytest.raises(BadInputError, match="model.train last-stages needs a pretrained backbone"):
        crust_clean.fit("anything", out="nowhere", train="last-stages")
