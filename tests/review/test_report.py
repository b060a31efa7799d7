"""crust-clean report on small real runs: every section, every picture opens, nothing from the network."""

from __future__ import annotations

import base64
import io
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

import crust_clean
from crust_clean.cli import cli
from crust_clean.review.report import FIGURES, class_health, confused_pairs

from ..conftest import QUICK, write_colour_dataset

SECTIONS = ("health", "classes", "confusions", "scores", "training", "coreset", "suspects", "run")


@pytest.fixture(scope="module")
def fitted_with_report(noisy_colours, tmp_path_factory):
    """``crust-clean fit --report`` with true labels, as a user runs it."""
    out = tmp_path_factory.mktemp("report") / "run"
    args = ["fit", str(noisy_colours), "--out", str(out), "--quiet", "--report", "--model", QUICK["model"],
            "--true-labels", str(noisy_colours.parent / "truth.csv"),
            "--epochs", str(QUICK["epochs"]), "--warmup-epochs", str(QUICK["warmup_epochs"]),
            "--img-size", str(QUICK["img_size"]), "--batch-size", "32", "--lr", str(QUICK["lr"]), "--hflip", "0"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return crust_clean.Run(out), result.output


def pictures_in(page: str) -> list[Image.Image]:
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in sources), "every picture is embedded"
    return [Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) for s in sources]


def assert_self_contained(page: str) -> None:
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page, re.IGNORECASE)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()


def test_fit_report_has_every_section_and_every_picture_opens(fitted_with_report):
    run, output = fitted_with_report
    page = (run.path / "report" / "index.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    embedded = pictures_in(page)
    assert len(embedded) == len(FIGURES)
    for image in embedded:
        image.load()
        assert image.width > 100 and image.height > 100
    for name in FIGURES:  # the same pictures beside the page, for slides and READMEs
        with Image.open(run.path / "report" / name) as image:
            image.load()
            assert image.format == "PNG"
    assert_self_contained(page)
    assert "True labels were not given" not in page and "vs truth: auroc" in page


def test_report_figures_agree_with_the_run(fitted_with_report):
    run, output = fitted_with_report
    scores = run.scores
    suspects = int(scores["suspect"].sum())
    assert suspects == run.metrics["summary"]["suspects"] > 0
    assert f"estimated mislabeled           {suspects}" in output or re.search(
        rf"estimated mislabeled\s+{suspects}\n", output)
    report = crust_clean.write_report(run)
    assert report.figures["estimated mislabeled"] == suspects
    assert report.figures["training samples"] == len(scores)
    assert report.figures["vs truth: auroc"] == pytest.approx(run.metrics["summary"]["detection"]["auroc"])
    assert report.per_class["samples"].sum() == len(scores)
    assert report.per_class["suspects"].sum() == suspects
    assert set(report.per_class["class"]) == set(run.model_info["class_names"])
    assert report.missing_thumbnails == []
    assert report.text().splitlines()[0] == f"report: {run.path / 'report' / 'index.html'}"


def test_top_and_threshold_choose_the_suspects_as_the_exports_do(fitted_with_report):
    run, _ = fitted_with_report
    top = crust_clean.write_report(run, top=7).figures
    assert top["estimated mislabeled"] == 7
    assert "vs truth: auroc" in top and "vs truth: precision" not in top  # measured for the run's rule only
    above = int((run.scores["score"] > 0.3).sum())
    report = crust_clean.write_report(run, threshold=0.3, thumbnails=0)
    assert report.figures["estimated mislabeled"] == above
    assert "score &gt; 0.3" in report.path.read_text(encoding="utf-8")
    assert not any(p.name.startswith(".report") for p in run.path.iterdir())  # the build folder is gone


def test_without_true_labels_the_truth_only_parts_are_left_out(tmp_path):
    images = write_colour_dataset(tmp_path, per_class=20, noise=0.2, seed=3)
    run = crust_clean.fit(images, out=tmp_path / "run", **{**QUICK, "epochs": 4})
    report = crust_clean.write_report(run)
    assert not report.has_truth
    assert not any(key.startswith("vs truth") or "true labels" in key for key in report.figures)
    page = report.path.read_text(encoding="utf-8")
    assert "True labels were not given" in page and "vs truth" not in page
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    for image in pictures_in(page):
        image.load()
    assert_self_contained(page)
    crust_clean.fit(images, out=run.path, overwrite=True, **{**QUICK, "epochs": 3})
    assert not (run.path / "report").exists()  # a report of the replaced run must not survive


def test_a_hugging_face_run_shows_its_rows_and_a_missing_file_is_reported(noisy_colours, tmp_path):
    datasets = pytest.importorskip("datasets")
    paths = sorted(noisy_colours.rglob("*.png"))
    names = sorted({p.parent.name for p in paths})
    table = datasets.Dataset.from_dict({"image": [str(p) for p in paths],
                                        "label": [names.index(p.parent.name) for p in paths]})
    table = table.cast_column("image", datasets.Image()).cast_column("label", datasets.ClassLabel(names=names))
    table.save_to_disk(tmp_path / "saved")
    run = crust_clean.fit(tmp_path / "saved", out=tmp_path / "hf-run", **{**QUICK, "epochs": 3})
    assert run.scores["path"].isna().all()  # rows, not files: the thumbnails come from the dataset
    report = crust_clean.write_report(run, top=8)
    assert report.missing_thumbnails == []
    with Image.open(report.path.parent / "suspects.png") as image:
        image.load()

    copy = tmp_path / "images"
    shutil.copytree(noisy_colours, copy)
    folder_run = crust_clean.fit(copy, out=tmp_path / "folder-run", **{**QUICK, "epochs": 3})
    top_suspect = folder_run.scores.iloc[0]
    (copy / top_suspect["sample_id"]).unlink()
    result = CliRunner().invoke(cli, ["report", str(folder_run.path), "--top", "4"])
    assert result.exit_code == 0, result.output
    assert f"1 image could not be read for the thumbnails, e.g. {top_suspect['sample_id']}" in result.output


def test_report_open_hands_the_file_to_the_browser(fitted_with_report, monkeypatch):
    run, _ = fitted_with_report
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    result = CliRunner().invoke(cli, ["report", str(run.path), "--open", "--thumbnails", "4"])
    assert result.exit_code == 0, result.output
    assert opened == [(run.path / "report" / "index.html").resolve().as_uri()]


def test_report_of_a_folder_that_is_no_run_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code != 0 and result.output.startswith("Error: ") and len(result.output.splitlines()) == 1


def random_table(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    classes = ["ant", "bee", "cat", "dog"]
    return pd.DataFrame({
        "given_label": rng.choice(classes, n), "predicted_label": rng.choice(classes, n),
        "suspect": rng.random(n) < 0.3, "never_selected": rng.random(n) < 0.1, "score": rng.random(n),
    }), classes + ["empty"]


@pytest.mark.parametrize("seed", range(3))
def test_class_health_matches_brute_force(seed):
    table, classes = random_table(seed)
    health = class_health(table, classes).set_index("class")
    for name in classes:
        rows = [r for r in table.itertuples() if r.given_label == name]
        suspects = [r for r in rows if r.suspect]
        assert health.loc[name, "samples"] == len(rows)
        assert health.loc[name, "suspects"] == len(suspects)
        assert health.loc[name, "never_selected"] == sum(r.never_selected for r in rows)
        if rows:
            assert health.loc[name, "suspect_share"] == pytest.approx(len(suspects) / len(rows))
            assert health.loc[name, "mean_score"] == pytest.approx(np.mean([r.score for r in rows]))
        relabeled = [r.predicted_label for r in suspects if r.predicted_label != name]
        if relabeled:
            best = max(relabeled.count(c) for c in set(relabeled))
            label, count = health.loc[name, "top_suggested"].rsplit(" (", 1)
            assert int(count.rstrip(")")) == best and relabeled.count(label) == best
        else:
            assert health.loc[name, "top_suggested"] == ""
    shares = class_health(table, classes)["suspect_share"].dropna().to_numpy()
    assert (np.diff(shares) <= 0).all()  # dirtiest class first


@pytest.mark.parametrize("seed", range(3))
def test_confused_pairs_match_brute_force(seed):
    table, _ = random_table(seed)
    counts = {}
    for r in table.itertuples():
        if r.suspect and r.predicted_label != r.given_label:
            counts[(r.given_label, r.predicted_label)] = counts.get((r.given_label, r.predicted_label), 0) + 1
    pairs = confused_pairs(table, top=5)
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:5]
    assert [((g, s), c) for g, s, c in pairs.itertuples(index=False)] == expected
