"""The frozen-feature fast path (--train head): a real feature pass over images on disk, its cache, heads trained
with CRUST, and saved models that predict on images as the run says."""

import json

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import load_file

import crust_clean
from crust_clean.errors import BadInputError

from ..conftest import write_colour_dataset

HEAD = dict(model="resnet10t", train="head", img_size=24, epochs=6, warmup_epochs=2, batch_size=32, lr=0.1,
            hflip=0.0, progress=False)


@pytest.fixture(scope="module")
def head_run(noisy_colours, backbone, tmp_path_factory):
    root = tmp_path_factory.mktemp("head")
    return crust_clean.fit(noisy_colours, out=root / "run", pretrained_weights=str(backbone),
                           feature_cache=str(root / "features"), true_labels=str(noisy_colours.parent / "truth.csv"),
                           **HEAD)


def assert_predicts_as_the_run_says(run, n=8):
    """The saved model, in float32 on the image files, gives the run's predictions: the same classes, and the
    logits to the precision of the cached features (float16; computed in bfloat16 where the CPU has it natively:
    then within 0.15)."""
    from crust_clean.train.trainer import Device

    logits = np.stack(run.predictions()["logits"].to_numpy())[:n]
    again = saved_model_logits(run, n)
    tolerance = 0.15 if Device.resolve("cpu").inference_dtype is not None else 3e-2
    np.testing.assert_allclose(again, logits, atol=tolerance, rtol=tolerance)
    assert (again.argmax(1) == logits.argmax(1)).all()


def saved_model_logits(run, n=8):
    """The saved model, rebuilt by Run.load_model, on the first n samples' image files (eval transform)."""
    from crust_clean.data.images import FileImages
    from crust_clean.train.models import eval_transform, saved_data_config

    transform = eval_transform(saved_data_config(run.model_info))
    images = FileImages(list(run.samples["path"][:n]))
    with torch.no_grad():
        return run.load_model()(torch.stack([transform(images[i]) for i in range(n)])).numpy()


def test_a_head_fit_writes_a_run_like_any_other(head_run):
    summary = head_run.metrics["summary"]
    assert summary["cache"] == "features" and summary["features_cached"] is False and summary["feature_seconds"] > 0
    ledger = head_run.ledger()
    assert len(ledger) == 144 * HEAD["epochs"]
    selecting = ledger[ledger["epoch"] >= HEAD["warmup_epochs"]]
    assert (selecting.groupby("epoch")["selected"].sum() == 72).all()  # half of each class's 36, as for images
    assert summary["val_accuracy"] >= 0.6 and summary["detection"]["auroc"] > 0.9
    info = head_run.model_info
    assert info["trained"] == "head" and info["head_hidden"] is None and info["img_size"] == 24


def test_a_linear_head_saves_a_plain_timm_model_that_predicts_as_the_run_says(head_run, backbone):
    info = head_run.model_info
    model = timm.create_model(info["architecture"], num_classes=info["num_classes"])
    saved = load_file(str(head_run.path / "model.safetensors"))
    model.load_state_dict(saved)  # every key timm has, none more
    pretrained = load_file(str(backbone))
    assert all(torch.equal(saved[k], pretrained[k]) for k in pretrained if not k.startswith("fc."))  # frozen body
    assert saved["fc.weight"].shape == (4, 512) and saved["fc.weight"].any()  # the trained head
    assert_predicts_as_the_run_says(head_run)


def test_a_second_fit_reads_the_cached_features_and_ends_the_same(head_run, noisy_colours, backbone, tmp_path):
    again = crust_clean.fit(noisy_colours, out=tmp_path / "again", pretrained_weights=str(backbone),
                            feature_cache=str(head_run.config.data.feature_cache), **HEAD)
    summary = again.metrics["summary"]
    assert summary["features_cached"] is True and summary["feature_seconds"] == 0
    pd.testing.assert_frame_equal(again.scores, head_run.scores)
    pd.testing.assert_frame_equal(again.ledger(), head_run.ledger())


def test_the_feature_pass_measures_image_quality_and_an_older_cache_entry_gets_its_measures(
        head_run, noisy_colours, backbone, tmp_path):
    import shutil

    from PIL import Image

    from crust_clean.data.quality import MEASURES, measure
    from crust_clean.train.features import QUALITY

    cache = tmp_path / "features"
    shutil.copytree(head_run.config.data.feature_cache, cache)
    (entry,) = list(cache.iterdir())
    measures = np.load(entry / QUALITY)
    paths = head_run.samples["path"].tolist()
    assert measures.shape == (len(paths), len(MEASURES))
    for i in (0, 57, len(paths) - 1):  # measured as the images were read for the features
        np.testing.assert_allclose(measures[i], measure(Image.open(paths[i]).convert("RGB")), rtol=1e-6)
    np.testing.assert_allclose(head_run.checks()["grayscale"], 1 - measures[:, MEASURES.index("colour")], rtol=1e-6)
    (entry / QUALITY).unlink()  # an entry written before the measures were kept
    again = crust_clean.fit(noisy_colours, out=tmp_path / "again", pretrained_weights=str(backbone),
                            feature_cache=str(cache), **HEAD)
    assert again.metrics["summary"]["features_cached"] is True
    np.testing.assert_array_equal(np.load(entry / QUALITY), measures)  # measured by one decoding pass, kept
    pd.testing.assert_frame_equal(again.checks(), head_run.checks())


def test_the_cache_is_keyed_by_the_images_and_the_transform(backbone, tmp_path):
    from pathlib import Path

    images = write_colour_dataset(tmp_path / "data", per_class=6)
    cache = tmp_path / "features"
    options = {**HEAD, "epochs": 1, "warmup_epochs": 1, "pretrained_weights": str(backbone), "feature_cache": str(cache)}
    crust_clean.fit(images, out=tmp_path / "a", **options)
    assert crust_clean.fit(images, out=tmp_path / "b", **options).metrics["summary"]["features_cached"]
    changed = next(Path(images).rglob("*.png"))
    changed.write_bytes(changed.read_bytes())  # the same bytes, a new modification time
    assert not crust_clean.fit(images, out=tmp_path / "c", **options).metrics["summary"]["features_cached"]
    assert not crust_clean.fit(images, out=tmp_path / "d", **{**options, "img_size": 32}).metrics["summary"][
        "features_cached"]
    assert len(list(cache.iterdir())) == 3  # one entry per (images, size); none half-written


def test_augmented_views_are_computed_once_and_drawn_per_epoch(noisy_colours, backbone, tmp_path):
    from crust_clean.train.features import random_view

    run = crust_clean.fit(noisy_colours, out=tmp_path / "run", pretrained_weights=str(backbone), feature_views=2,
                          feature_cache=str(tmp_path / "features"), **{**HEAD, "hflip": 0.5})
    entry, = (tmp_path / "features").iterdir()
    array = np.load(entry / "features.npy", mmap_mode="r")
    assert array.shape == (3, 160, 512) and array.dtype == np.float16
    assert not np.allclose(array[1], array[0]) and not np.allclose(array[2], array[1])  # crops and flips differ
    assert json.loads((entry / "meta.json").read_text())["description"]["views"] == 2
    import random

    random.seed(5)
    first = [random_view(array[:, i]) for i in range(20)]
    random.seed(5)
    assert all(torch.equal(a, random_view(array[:, i])) for i, a in enumerate(first))  # seeded like timm's crops
    assert not any(torch.equal(a, torch.from_numpy(array[0, i].astype(np.float32))) for i, a in enumerate(first))
    assert run.metrics["summary"]["val_accuracy"] >= 0.6


def test_an_mlp_head_is_rebuilt_by_the_run(noisy_colours, backbone, tmp_path):
    run = crust_clean.fit(noisy_colours, out=tmp_path / "run", pretrained_weights=str(backbone), head="mlp",
                          head_hidden=32, feature_cache=str(tmp_path / "features"), **HEAD)
    assert run.model_info["head_hidden"] == 32
    saved = load_file(str(run.path / "model.safetensors"))
    assert saved["fc.0.weight"].shape == (32, 512) and saved["fc.2.weight"].shape == (4, 32)
    assert_predicts_as_the_run_says(run)
    assert run.metrics["summary"]["val_accuracy"] >= 0.6


def test_an_undecodable_image_is_found_by_the_feature_pass_and_skipped(backbone, tmp_path):
    images = write_colour_dataset(tmp_path / "data", per_class=6)
    (images / "red" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    run = crust_clean.fit(images, out=tmp_path / "run", pretrained_weights=str(backbone),
                          feature_cache=str(tmp_path / "features"), **{**HEAD, "epochs": 1, "warmup_epochs": 1})
    assert pd.read_csv(run.path / "skipped.csv")["sample_id"].tolist() == ["red/truncated.png"]
    assert len(run.samples) == 24 and run.metrics["summary"]["n_skipped"] == 1


def test_a_head_fit_interrupted_resumes_to_the_same_end(head_run, noisy_colours, backbone, tmp_path, monkeypatch):
    from crust_clean.errors import Interrupted
    from crust_clean.run.recorder import Recorder

    record = Recorder.record

    def stop_after_epoch_3(self, result, model, optimisation):
        record(self, result, model, optimisation)
        if result.epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Recorder, "record", stop_after_epoch_3)
    options = {**HEAD, "pretrained_weights": str(backbone), "feature_cache": str(head_run.config.data.feature_cache),
               "true_labels": str(noisy_colours.parent / "truth.csv")}
    with pytest.raises(Interrupted, match="resume with"):
        crust_clean.fit(noisy_colours, out=tmp_path / "run", **options)
    monkeypatch.undo()
    resumed = crust_clean.resume(tmp_path / "run", progress=False)
    pd.testing.assert_frame_equal(resumed.ledger(), head_run.ledger())
    pd.testing.assert_frame_equal(resumed.scores, head_run.scores)


def test_head_needs_pretrained_weights():
    with pytest.raises(BadInputError, match="model.train head needs a pretrained backbone: add --pretrained or "
                                            "--pretrained-weights FILE"):
        crust_clean.fit("anything", out="nowhere", train="head")
