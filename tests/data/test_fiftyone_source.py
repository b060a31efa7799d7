"""A FiftyOne dataset (or saved view) as the source: ids are FiftyOne sample ids, labels from a Classification."""

import json

import pytest

import crust_clean
from crust_clean.data.sources import load_source, scan_image_folder
from crust_clean.errors import BadInputError

from ..conftest import QUICK


@pytest.fixture(scope="module")
def fo_dataset(fiftyone, noisy_colours):
    fo = fiftyone
    folder = scan_image_folder(noisy_colours)
    dataset = fo.Dataset("colours-source", overwrite=True)
    samples = [fo.Sample(filepath=str(path), ground_truth=fo.Classification(label=folder.class_names[label]),
                         reviewer=fo.Classification(label="red"))
               for path, label in zip(folder.paths, folder.labels)]
    samples[0]["ground_truth"] = None  # an unlabeled sample is skipped, not fatal
    dataset.add_samples(samples)
    dataset.save_view("greens", dataset.match(fo.ViewField("ground_truth.label") == "green"))
    dataset.save_view("no-blue", dataset.match(fo.ViewField("ground_truth.label") != "blue"))
    yield dataset, folder
    dataset.delete()


def test_a_fiftyone_dataset_gives_its_sample_ids_files_and_labels(fo_dataset):
    dataset, folder = fo_dataset
    samples = load_source("fo:colours-source")
    ids = dataset.values("id")
    assert samples.sample_ids == ids[1:] and samples.skipped == [(ids[0], "no label")]
    assert samples.paths == folder.paths[1:]
    assert samples.class_names == folder.class_names and samples.labels.tolist() == folder.labels[1:].tolist()
    assert samples.origin == {"kind": "fiftyone", "dataset": "colours-source", "view": None,
                              "label_field": "ground_truth"}
    view = load_source("fo:colours-source:no-blue")
    assert "blue" not in view.class_names and len(view) == int((folder.labels[1:] != 0).sum())


@pytest.mark.parametrize("spec,field,message", [
    ("fo:nope", None, r"no FiftyOne dataset named 'nope' \(datasets: .*colours-source"),
    ("fo:colours-source:nope", None, r"no saved view 'nope' \(saved views: greens, no-blue\)"),
    ("fo:colours-source", "truth", r"no Classification field 'truth' \(Classification fields: ground_truth, reviewer\)"),
    ("fo:colours-source:greens", None, "only one class"),
])
def test_fiftyone_errors_name_what_exists(fo_dataset, spec, field, message):
    with pytest.raises(BadInputError, match=message):
        load_source(spec, label_field=field)


def test_fit_reads_the_fiftyone_dataset_and_records_it(fo_dataset, tmp_path):
    dataset, _ = fo_dataset
    with pytest.raises(BadInputError, match="only one class"):  # every reviewer label is "red"
        crust_clean.fit("fo:colours-source", out=tmp_path / "run", label_field="reviewer", **QUICK)
    run = crust_clean.fit("fo:colours-source", out=tmp_path / "run", **{**QUICK, "epochs": 1, "warmup_epochs": 1})
    assert set(run.scores["sample_id"]) <= set(dataset.values("id"))
    assert list(run.scores.columns) == ["sample_id", "path", "given_label", "predicted_label", "score", "suspect",
                                        "selection_rate", "never_selected", "epochs_selected", "prob_given",
                                        "mean_loss", "aum", "held_out_score", "neighbour_agreement"]
    assert json.loads((run.path / "source.json").read_text())["dataset"] == "colours-source"
