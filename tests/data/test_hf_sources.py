"""Hugging Face sources in every shape a user has them: each gives the same samples, ids and pixels."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import crust_clean
from crust_clean.data.sources import load_source, scan_image_folder
from crust_clean.errors import BadInputError

from ..conftest import QUICK, write_colour_dataset

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """A small ImageFolder and the same samples as an in-memory HF Dataset (Image + ClassLabel)."""
    root = tmp_path_factory.mktemp("hf_colours")
    folder = scan_image_folder(write_colour_dataset(root, per_class=8, noise=0.25))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=folder.class_names),
                                  "uid": datasets.Value("string")})
    table = datasets.Dataset.from_dict({
        "image": [str(p) for p in folder.paths],
        "label": folder.labels.tolist(),
        "uid": [f"s{i:03d}" for i in range(len(folder))],
    }, features=features)
    table = table.map(lambda row: {"image": row["image"]}, features=features)  # embed the bytes (no paths)
    return root, folder, table


def pixels(samples, i):
    return np.asarray(samples.images[i])


def shapes(root, table):
    """The dataset written in each shape users have; returns {shape name: source string}."""
    table.save_to_disk(root / "saved")
    datasets.DatasetDict({"train": table, "test": table.select(range(0, len(table), 8))}).save_to_disk(root / "saved_dict")
    (root / "hub" / "data").mkdir(parents=True)
    table.to_parquet(root / "hub" / "data" / "train-00000-of-00001.parquet")
    table.to_parquet(root / "one.parquet")
    return {
        "save_to_disk": str(root / "saved"),
        "save_to_disk dict": str(root / "saved_dict"),
        "hub layout folder": str(root / "hub"),
        "hf: local repo": f"hf:{root / 'hub'}",
        "parquet file": str(root / "one.parquet"),
    }


def test_every_hf_shape_gives_the_same_samples(colours):
    root, folder, table = colours
    for shape, source in shapes(root, table).items():
        samples = load_source(source)
        assert samples.sample_ids == [str(i) for i in range(len(folder))], shape
        assert samples.class_names == folder.class_names, shape
        assert samples.labels.tolist() == folder.labels.tolist(), shape
        assert samples.paths == [None] * len(folder) and samples.rows == list(range(len(folder))), shape
        assert samples.origin["kind"] == "hf" and samples.origin["split"] == "train", shape
        assert samples.sizes == folder.sizes, shape
        for i in (0, 17, len(folder) - 1):
            assert np.array_equal(pixels(samples, i), pixels(folder, i)), shape
    assert load_source(str(root / "saved"), id_column="uid").sample_ids[:2] == ["s000", "s001"]
    assert len(load_source(str(root / "saved_dict"), split="test")) == 4


def test_imagefolder_with_metadata_csv_maps_string_labels_in_sorted_order(colours, tmp_path):
    _, folder, _ = colours
    (tmp_path / "imgs").mkdir()
    rows = []
    for i, path in enumerate(folder.paths):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(path.read_bytes())
        rows.append({"file_name": f"imgs/{i}.png", "category": folder.class_names[folder.labels[i]].upper()})
    pd.DataFrame(rows).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(BadInputError, match=r"no label column .*--label-column \(columns: image, category\)"):
        load_source(tmp_path)
    samples = load_source(tmp_path, label_column="category")
    assert samples.class_names == sorted(name.upper() for name in folder.class_names)
    assert [samples.class_names[c].lower() for c in samples.labels] == [folder.class_names[c] for c in folder.labels]
    assert np.array_equal(pixels(samples, 3), pixels(folder, 3))


def test_columns_errors_name_the_candidates(colours, tmp_path):
    _, _, table = colours
    two_images = table.map(lambda row: {"mask": row["image"]},
                           features=datasets.Features({**table.features, "mask": datasets.Image()}))
    two_images.save_to_disk(tmp_path / "two")
    with pytest.raises(BadInputError, match="several image columns: image, mask; choose one with --image-column"):
        load_source(tmp_path / "two")
    assert len(load_source(tmp_path / "two", image_column="mask")) == len(table)
    with pytest.raises(BadInputError, match="no label column 'nope' .*columns: image, label, uid"):
        load_source(tmp_path / "two", image_column="image", label_column="nope")
    table.add_column("weight", [0.5] * len(table)).save_to_disk(tmp_path / "float")
    with pytest.raises(BadInputError, match="label column 'weight' .* is Value.*not a class label"):
        load_source(tmp_path / "float", label_column="weight")
    with pytest.raises(BadInputError, match="lists '0' more than once"):
        table.map(lambda r: {"uid": "0"}).save_to_disk(tmp_path / "dup")
        load_source(tmp_path / "dup", id_column="uid")
    with pytest.raises(BadInputError, match=r"has no split 'valid' \(splits: train, test\)"):
        datasets.DatasetDict({"train": table, "test": table}).save_to_disk(tmp_path / "dd")
        load_source(tmp_path / "dd", split="valid")


def test_integer_labels_sort_as_numbers_and_bad_rows_are_skipped(colours, tmp_path):
    _, folder, table = colours
    numbers = [(2, 10, 1, 33)[c] for c in folder.labels]
    broken = table.cast_column("image", datasets.Image(decode=False)).map(
        lambda row, i: {"image": {"bytes": b"not an image", "path": None} if i == 5 else row["image"]},
        with_indices=True)
    broken = broken.add_column("number", numbers).cast_column("image", datasets.Image())
    broken.save_to_disk(tmp_path / "broken")
    samples = load_source(tmp_path / "broken", label_column="number")
    assert samples.class_names == ["1", "2", "10", "33"]
    assert [samples.class_names[c] for c in samples.labels] == [str(n) for i, n in enumerate(numbers) if i != 5]
    assert [sample_id for sample_id, _ in samples.skipped] == ["5"] and "UnidentifiedImageError" in samples.skipped[0][1]


def test_fit_on_a_saved_dataset_records_rows_and_source(colours, tmp_path):
    root, folder, table = colours
    table.save_to_disk(tmp_path / "saved")
    run = crust_clean.fit(tmp_path / "saved", out=tmp_path / "run", **{**QUICK, "epochs": 2, "warmup_epochs": 1})
    samples = run.samples
    assert samples["sample_id"].astype(str).tolist() == [str(i) for i in range(len(folder))]
    assert samples["path"].isna().all() and samples["row"].tolist() == list(range(len(folder)))
    source = json.loads((run.path / "source.json").read_text())
    assert source["kind"] == "hf" and source["split"] == "train" and source["image_column"] == "image"
    assert source["label_column"] == "label" and source["source"] == str(tmp_path / "saved")
    assert len(run.scores) == len(samples[samples["split"] == "train"])
    from_folder = crust_clean.fit(folder.root, out=tmp_path / "folder-run", **{**QUICK, "epochs": 2, "warmup_epochs": 1})
    assert list(run.scores.columns) == list(from_folder.scores.columns)
    assert list(run.samples.columns) == list(from_folder.samples.columns)


def test_a_hub_name_that_is_not_cached_offline_is_one_clear_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-m", "crust_clean", "fit", "hf:nobody/not-cached", "--dry-run"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: cannot load Hugging Face dataset 'nobody/not-cached'")
    assert "Traceback" not in result.stderr


def test_cli_dry_run_and_column_errors_on_a_saved_dataset(colours, tmp_path):
    from click.testing import CliRunner

    from crust_clean.cli import cli

    _, folder, table = colours
    table.rename_column("label", "y").cast_column("y", datasets.Value("int64")).save_to_disk(tmp_path / "saved")
    result = CliRunner().invoke(cli, ["fit", str(tmp_path / "saved"), "--dry-run"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 'saved'} (split train) has no label column (a ClassLabel feature); "
        "name it with --label-column (columns: image, y, uid)")
    result = CliRunner().invoke(cli, ["fit", str(tmp_path / "saved"), "--dry-run", "--label-column", "y",
                                      "--id-column", "uid"])
    assert result.exit_code == 0, result.output
    assert f"# dataset: {tmp_path / 'saved'} (hf)" in result.output
    assert "# split: train, image column: image, label column: y, id column: uid" in result.output
    assert f"{len(folder)} samples, 4 classes, 0 skipped" in result.output


def test_images_in_a_csv_of_paths_with_other_column_names(colours, tmp_path):
    _, folder, _ = colours
    rows = [{"file": str(p), "category": folder.class_names[c]} for p, c in zip(folder.paths, folder.labels)]
    pd.DataFrame(rows).to_csv(tmp_path / "images.csv", index=False)
    samples = load_source(tmp_path / "images.csv", image_column="file", label_column="category")
    assert samples.labels.tolist() == folder.labels.tolist() and samples.paths == folder.paths


def test_image_is_decoded_to_rgb_from_grayscale_rows(tmp_path):
    gray = [Image.new("L", (6, 5), v) for v in (0, 255)]
    table = datasets.Dataset.from_dict({"img": gray, "y": ["a", "b"]},
                                       features=datasets.Features({"img": datasets.Image(), "y": datasets.Value("string")}))
    table.save_to_disk(tmp_path / "g")
    samples = load_source(tmp_path / "g", label_column="y")
    assert samples.images[1].mode == "RGB" and samples.images[1].size == (6, 5)
    assert np.asarray(samples.images[1]).min() == 255
