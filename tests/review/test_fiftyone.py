"""Export into FiftyOne (real mongod): fields, tags, saved views, Brain mistakenness, idempotent re-export."""

import hashlib
import os

import numpy as np
import pandas as pd
import pytest

import crust_clean
from crust_clean.errors import BadInputError

from ..conftest import QUICK


@pytest.fixture(scope="module")
def fo_run(fiftyone, noisy_colours, tmp_path_factory):
    out = tmp_path_factory.mktemp("fo_runs") / "colours"
    return crust_clean.fit(noisy_colours, out=out, **{**QUICK, "epochs": 3, "warmup_epochs": 1})


def test_export_writes_every_sample_with_fields_tags_and_views(fiftyone, fo_run, monkeypatch):
    from fiftyone import ViewField as F

    from crust_clean.review.fiftyone import export_to_fiftyone

    monkeypatch.setattr("crust_clean.review.fiftyone.WRITE_BLOCK", 64)  # the fields go in 3 blocks
    written = export_to_fiftyone(fo_run, name="export-test", top=10)
    dataset = written.dataset
    samples, scores, predictions = fo_run.samples, fo_run.scores, fo_run.predictions()
    assert len(dataset) == len(samples) == 160
    score_of = dict(zip(scores["sample_id"], scores["score"]))  # every block's rows on their own samples
    written_scores = dict(zip(*dataset.match(F("crust_split") == "train").values(["crust_sample_id", "crust_score"])))
    assert written_scores.keys() == score_of.keys()
    assert all(written_scores[k] == pytest.approx(score_of[k]) for k in score_of)
    issues = fo_run.issues["issue"].value_counts()
    assert dataset.count_sample_tags() == {"crust:suspect": 10, **{f"crust:{i}": n for i, n in issues.items()}}
    assert (written.suspects, written.carried, written.decided, written.to_review) == (10, 0, 0, 10)
    by_id = {s.crust_sample_id: s for s in dataset}
    top = scores.head(10)["sample_id"].tolist()
    assert sorted(s.crust_sample_id for s in dataset.match_tags("crust:suspect")) == sorted(top)
    first = by_id[top[0]]
    row = scores.iloc[0]
    assert first.filepath == row["path"] and first.given_label.label == row["given_label"]
    assert first.crust_content_hash == hashlib.sha256(open(row["path"], "rb").read()).hexdigest()
    assert (first.metadata.width, first.metadata.height, first.metadata.mime_type) == (24, 24, "image/png")
    assert first.crust_score == pytest.approx(row["score"]) and first.crust_split == "train"
    assert first.crust_selection_rate == pytest.approx(row["selection_rate"])
    assert first.crust_never_selected == bool(row["never_selected"])
    prediction = predictions.set_index("sample_id").loc[top[0]]
    assert first.crust_prediction.label == prediction["predicted_label"]
    assert first.crust_prediction.confidence == pytest.approx(prediction["confidence"])
    assert np.allclose(first.crust_prediction.logits, prediction["logits"])
    assert first.crust_suggested_label == (None if prediction["predicted_label"] == row["given_label"]
                                           else prediction["predicted_label"])
    assert first.mistakenness is not None  # FiftyOne Brain, beside crust_score
    val = dataset.match(F("crust_split") == "val").first()
    assert val.crust_score is None and val.crust_prediction is not None
    assert set(dataset.list_saved_views()) == {"to review", "decided", "crust suspects", "never selected",
                                               "disagreements", "near-duplicates", "outliers", "image quality"}
    assert dataset.load_saved_view("to review").values("crust_sample_id") == top and not dataset.load_saved_view(
        "decided")
    suspects = dataset.load_saved_view("crust suspects")
    assert suspects.values("crust_sample_id") == top  # sorted by score
    disagreements = dataset.load_saved_view("disagreements")
    assert all(s.crust_prediction.label != s.given_label.label for s in disagreements)
    assert len(dataset.load_saved_view("never selected")) == int(scores["never_selected"].sum())
    assert dataset.info["crust_run"] == str(fo_run.path.resolve()) and dataset.persistent
    assert dataset.info["crust_config"]["train"]["epochs"] == 3
    assert dataset.info["crust_classes"] == ["blue", "green", "red", "yellow"]
    colours = {f["path"] for f in dataset.app_config.color_scheme.fields}
    assert colours == {"given_label", "crust_prediction", "crust_review", "tags"}  # a fixed colour per field
    assert dataset.app_config.active_fields.paths == ["given_label", "crust_prediction", "crust_review",
                                                      "crust_duplicate_group"]


def test_two_runs_with_the_same_folder_name_get_two_datasets(tmp_path):
    from types import SimpleNamespace

    from crust_clean.review.fiftyone import default_dataset_name

    first, second = (SimpleNamespace(source={"kind": "imagefolder"}, path=tmp_path / team / "run")
                     for team in ("a", "b"))
    assert default_dataset_name(first) != default_dataset_name(second)
    assert default_dataset_name(first).startswith("crust-run-") and default_dataset_name(first) == \
        default_dataset_name(SimpleNamespace(source={"kind": "imagefolder"}, path=tmp_path / "a" / "." / "run"))


def test_reexport_updates_in_place_and_keeps_reviewer_work(fiftyone, fo_run):
    from crust_clean.review.fiftyone import export_to_fiftyone

    dataset = export_to_fiftyone(fo_run, name="reexport-test", top=5).dataset
    sample = dataset.first()
    sample.tags.append("looked-at")
    sample["crust_decision"] = "drop"
    sample.save()
    again = export_to_fiftyone(fo_run, name="reexport-test", threshold=0.99).dataset
    assert len(again) == 160 and again.count_sample_tags()["looked-at"] == 1
    assert again.first().crust_decision == "drop"
    expected = int((fo_run.scores["score"] > 0.99).sum())
    assert len(again.match_tags("crust:suspect")) == expected


def test_a_dataset_of_another_run_or_not_ours_needs_overwrite(fiftyone, fo_run, noisy_colours, tmp_path):
    from crust_clean.review.fiftyone import export_to_fiftyone

    fo = fiftyone
    export_to_fiftyone(fo_run, name="taken-test")
    other = crust_clean.fit(noisy_colours, out=tmp_path / "other", **{**QUICK, "epochs": 1, "warmup_epochs": 1})
    with pytest.raises(BadInputError, match="holds run .*--overwrite"):
        export_to_fiftyone(other, name="taken-test")
    replaced = export_to_fiftyone(other, name="taken-test", overwrite=True).dataset
    assert replaced.info["crust_run"] == str(other.path.resolve()) and len(replaced) == 160
    fo.Dataset("users-own")
    with pytest.raises(BadInputError, match="crust-clean did not create"):
        export_to_fiftyone(other, name="users-own")
    with pytest.raises(BadInputError, match="not both"):
        export_to_fiftyone(other, name="x", top=3, threshold=0.5)


def test_a_run_on_a_fiftyone_source_writes_back_into_that_dataset(fiftyone, noisy_colours, tmp_path):
    from crust_clean.data.sources import scan_image_folder
    from crust_clean.review.fiftyone import export_to_fiftyone

    fo = fiftyone
    folder = scan_image_folder(noisy_colours)
    source = fo.Dataset("curated-source")
    source.add_samples([fo.Sample(filepath=str(p), truth=fo.Classification(label=folder.class_names[c]))
                        for p, c in zip(folder.paths, folder.labels)])
    run = crust_clean.fit("fo:curated-source", out=tmp_path / "run", **{**QUICK, "epochs": 1, "warmup_epochs": 1})
    dataset = export_to_fiftyone(run, threshold=0.0).dataset
    assert dataset.name == "curated-source" and len(dataset) == 160  # the same dataset, no copy
    assert "ground_truth" not in dataset.get_field_schema()  # its own label field is used
    assert dataset.info["crust_label_field"] == "truth"
    assert len(dataset.exists("crust_score")) == len(run.scores)
    assert len(dataset.match_tags("crust:suspect")) == len(run.scores)  # every score is > 0
    disagreements = dataset.load_saved_view("disagreements")
    assert all(s.crust_prediction.label != s.truth.label for s in disagreements)


def test_rows_of_a_hf_dataset_are_written_once_to_run_media(fiftyone, noisy_colours, tmp_path):
    datasets = pytest.importorskip("datasets")
    from crust_clean.data.sources import scan_image_folder
    from crust_clean.review.fiftyone import export_to_fiftyone

    folder = scan_image_folder(noisy_colours)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=folder.class_names)})
    table = datasets.Dataset.from_dict(
        {"image": [{"bytes": p.read_bytes(), "path": None} for p in folder.paths], "label": folder.labels.tolist()},
        features=features)
    table.save_to_disk(tmp_path / "hf")
    run = crust_clean.fit(tmp_path / "hf", out=tmp_path / "run", **{**QUICK, "epochs": 1, "warmup_epochs": 1})
    dataset = export_to_fiftyone(run, name="from-hf").dataset
    files = dataset.values("filepath")
    assert all(os.path.dirname(f) == str(run.path / "media") for f in files)
    first = dict(zip(dataset.values("crust_sample_id"), files))["7"]
    assert open(first, "rb").read() == folder.paths[7].read_bytes()  # the encoded bytes, unchanged
    stamp = {f: os.stat(f).st_mtime_ns for f in files}
    export_to_fiftyone(run, name="from-hf")
    assert {f: os.stat(f).st_mtime_ns for f in files} == stamp  # written once


def test_the_embeddings_give_the_app_a_map_and_a_similarity_sort(fiftyone, fo_run, monkeypatch):
    from crust_clean.review.fiftyone import (
        EMBEDDING_FIELD,
        MAP_FIELD,
        SIMILARITY_KEY,
        VISUALIZATION_KEY,
        export_to_fiftyone,
    )

    dataset = export_to_fiftyone(fo_run, name="embeddings-test").dataset  # umap-learn comes with the fiftyone extra
    assert set(dataset.list_brain_runs()) >= {VISUALIZATION_KEY, SIMILARITY_KEY}
    visualization = dataset.load_brain_results(VISUALIZATION_KEY)
    assert visualization.points.shape == (160, 2) and np.isfinite(visualization.points).all()
    np.testing.assert_allclose(samples_in_run_order(dataset, fo_run, MAP_FIELD), visualization.points, rtol=1e-5)
    embeddings = np.asarray(fo_run.embeddings(), dtype=np.float32)
    np.testing.assert_array_equal(samples_in_run_order(dataset, fo_run, EMBEDDING_FIELD), embeddings)
    suspect = dataset.match_tags("crust:suspect").first()
    neighbours = dataset.sort_by_similarity(suspect.id, k=6, brain_key=SIMILARITY_KEY)
    row = fo_run.samples["sample_id"].tolist().index(suspect.crust_sample_id)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = pd.Series(unit @ unit[row], index=fo_run.samples["sample_id"])
    shown = similarity.loc[neighbours.values("crust_sample_id")].to_numpy()
    assert neighbours.first().crust_sample_id == suspect.crust_sample_id  # itself first, then its 5 nearest
    np.testing.assert_allclose(shown, np.sort(similarity.to_numpy())[::-1][:6], atol=5e-4)  # near-ties: any order
    scores = fo_run.scores.set_index("sample_id")["neighbour_agreement"]
    assert suspect.crust_neighbour_agreement == pytest.approx(scores[suspect.crust_sample_id])
    workspace = dataset.load_workspace("crust embeddings")  # the grid beside the Embeddings panel
    assert [child.type for child in workspace.children] == ["Samples", "Embeddings"]
    again = export_to_fiftyone(fo_run, name="embeddings-test", visualization="none").dataset  # asked for none: gone
    assert VISUALIZATION_KEY not in again.list_brain_runs() and SIMILARITY_KEY not in again.list_brain_runs()
    assert not again.has_workspace("crust embeddings")
    assert not again.has_sample_field(EMBEDDING_FIELD) and not again.has_sample_field(MAP_FIELD)
    monkeypatch.setattr("crust_clean.review.fiftyone.SIMILARITY_UP_TO", 100)  # 160 samples: too many for the index
    large = export_to_fiftyone(fo_run, name="embeddings-test", visualization="pca")
    assert VISUALIZATION_KEY in large.dataset.list_brain_runs() and large.dataset.has_sample_field(MAP_FIELD)
    assert SIMILARITY_KEY not in large.dataset.list_brain_runs() and not large.dataset.has_sample_field(EMBEDDING_FIELD)
    assert large.similarity_left_out.startswith("no similarity index above 100 samples")


def samples_in_run_order(dataset, run, field: str) -> np.ndarray:
    by_id = dict(zip(dataset.values("crust_sample_id"), dataset.values(field)))
    return np.array([by_id[s] for s in run.samples["sample_id"]], dtype=np.float32)


def test_the_map_is_fit_on_a_sample_and_placed_a_block_at_a_time():
    """Past MAP_FIT_ROWS the map's fit sees a sample and every row is placed after: blocks change nothing, and on
    all rows it is the one-shot projection (PCA here; UMAP shares the path, benchmarks/fiftyone_map.py measures it)."""
    from sklearn.decomposition import PCA

    from crust_clean.review.fiftyone import map_points

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    x = (np.array([[6.0] * 20, [-6.0] * 20])[labels] + rng.normal(size=(300, 20))).astype(np.float16)
    whole = PCA(2, random_state=0).fit(x.astype(np.float32)).transform(x.astype(np.float32))
    np.testing.assert_allclose(map_points(x, "pca", block_rows=64), whole, atol=1e-4)
    sampled = map_points(x, "pca", fit_rows=100, block_rows=64)
    np.testing.assert_allclose(sampled, map_points(x, "pca", fit_rows=100, block_rows=1000), atol=1e-5)
    assert sampled.shape == (300, 2) and not np.allclose(sampled, whole, atol=1e-4)  # fit on 100 rows, not on 300
    split = np.sign(sampled[:, 0])  # the two clusters fall on either side of the first axis
    assert (split == split[labels == 1][0]).tolist() == (labels == 1).tolist()
    with pytest.raises(BadInputError, match="t-SNE cannot map 300 samples"):
        map_points(x, "tsne", fit_rows=100)
