"""Beyond wrong labels, end to end: a fit on real images with planted near-duplicates and quality issues writes
checks.parquet and issues.csv, the report shows them, the manifest can drop them, ``check`` lists the quality."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter

import crust_clean
from crust_clean.cli import cli
from crust_clean.config import ISSUE_TYPES, QUALITY_KINDS

from ..conftest import QUICK

#: What is planted into the textured dataset, by file (label folder / name).
PLANTED = {"blue/copy_of_red_000.png": "near-duplicate", "red/dark.png": "quality:dark",
           "green/light.png": "quality:light", "yellow/blank.png": "quality:low-information",
           "blue/tiny.png": "quality:odd-size", "red/wide.png": "quality:odd-aspect-ratio",
           "green/blurred.png": "quality:blurry", "yellow/gray.png": "quality:grayscale"}


def write_textured_dataset(root, *, per_class: int = 16, size: int = 32):
    """An ImageFolder of 4 colour classes whose images each carry their own coarse random texture (so that no two
    are near-duplicates), plus the ``PLANTED`` images: an edited copy of red_000 filed as blue, and one image per
    quality kind made from a red image."""
    from ..conftest import COLOURS

    rng = np.random.default_rng(0)
    images = root / "images"
    textured = {}
    for name, colour in COLOURS.items():
        (images / name).mkdir(parents=True)
        for i in range(per_class):
            texture = np.asarray(Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).resize(
                (size, size), Image.Resampling.BICUBIC), dtype=np.float64)
            pixels = np.clip(0.6 * np.array(colour) + 0.4 * texture + rng.normal(0, 6, (size, size, 3)), 0, 255)
            textured[f"{name}_{i:03d}"] = image = Image.fromarray(pixels.astype(np.uint8))
            image.save(images / name / f"{name}_{i:03d}.png")
    red = textured["red_001"]
    Image.eval(textured["red_000"], lambda v: min(255, v + 3)).save(images / "blue" / "copy_of_red_000.png")
    Image.eval(red, lambda v: v // 12).save(images / "red" / "dark.png")
    Image.eval(textured["green_001"], lambda v: 255 - (255 - v) // 12).save(images / "green" / "light.png")
    Image.new("RGB", (size, size), (120, 120, 120)).save(images / "yellow" / "blank.png")
    red.resize((6, 6)).save(images / "blue" / "tiny.png")
    red.resize((size * 3, size)).save(images / "red" / "wide.png")
    big = textured["green_002"].resize((size * 4, size * 4), Image.Resampling.BICUBIC)
    big.filter(ImageFilter.GaussianBlur(6)).resize((size, size)).save(images / "green" / "blurred.png")
    textured["yellow_001"].convert("L").convert("RGB").save(images / "yellow" / "gray.png")
    return images


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    images = write_textured_dataset(tmp_path_factory.mktemp("textured"))
    run = crust_clean.fit(images, out=tmp_path_factory.mktemp("runs") / "run",
                          **{**QUICK, "img_size": 32, "epochs": 3, "warmup_epochs": 1})
    return images, run


def test_the_fit_writes_every_sample_s_checks_and_one_row_per_issue(checked):
    images, run = checked
    checks, issues = run.checks(), run.issues
    assert checks["sample_id"].tolist() == run.samples["sample_id"].tolist()  # every sample, samples.csv order
    assert set(checks["split"]) == {"train", "val"}
    assert {f"{kind}_issue" for kind in QUALITY_KINDS} <= set(checks.columns)
    assert set(issues.columns) == {"sample_id", "split", "given_label", "issue", "score", "group"}
    assert set(issues["issue"]) <= set(ISSUE_TYPES)
    found = issues.groupby("sample_id")["issue"].agg(set)
    for sample_id, issue in PLANTED.items():
        assert issue in found.get(sample_id, set()), (sample_id, found.get(sample_id))
    duplicates = issues[issues["issue"] == "near-duplicate"]
    copy = duplicates.set_index("sample_id").loc["blue/copy_of_red_000.png"]
    assert duplicates.set_index("sample_id").loc["red/red_000.png", "group"] == copy["group"]
    assert copy["score"] >= 0.95
    row = checks.set_index("sample_id").loc["blue/copy_of_red_000.png"]
    assert row["group_labels_differ"] and copy["group"] == 0  # a group with two labels is reviewed first
    textured = checks[checks["sample_id"].str.match(r"\w+/\w+_\d{3}\.png") & ~checks["sample_id"].isin(PLANTED)]
    grouped = textured[textured["near_duplicate_group"] >= 0]["sample_id"].tolist()
    assert grouped == ["red/red_000.png"]  # no textured image but the original is anyone's near-duplicate
    summary = run.metrics["summary"]
    assert summary["issues"] == issues["issue"].value_counts().to_dict()
    assert summary["checks_seconds"] >= 0 and summary["neighbour_seconds"] >= 0


def test_the_report_has_a_section_and_a_figure_per_issue_type(checked):
    from crust_clean.review.report import ISSUE_FIGURES, write_report

    _, run = checked
    report = write_report(run)
    assert [p.name for p in report.images][-3:] == list(ISSUE_FIGURES)
    counts = report.issue_counts.set_index("issue")
    issues = run.issues
    for issue in ISSUE_TYPES:
        assert counts.loc[issue, "train"] + counts.loc[issue, "val"] == int((issues["issue"] == issue).sum())
    assert counts.loc["near-duplicate", "groups"] == issues.loc[issues["issue"] == "near-duplicate", "group"].nunique()
    page = (run.path / "report" / "index.html").read_text()
    for section in ("issues", "duplicates", "outliers", "quality"):
        assert f'<section id="{section}">' in page
    assert page.count('<img src="data:image/png') == 5 + len(ISSUE_FIGURES) and "quality:odd-size" in page
    assert "other issues" in report.text()


def test_the_auto_manifest_also_drops_issues_by_policy_and_keeps_one_per_near_duplicate_group(checked, tmp_path):
    from crust_clean.review.manifest import export_manifest

    _, run = checked
    export_manifest(run, tmp_path / "clean", policy="auto", drop=["near-duplicate", "quality"])
    kept = set(pd.read_csv(tmp_path / "clean" / "kept.csv")["sample_id"])
    assert "red/red_000.png" in kept and "blue/copy_of_red_000.png" not in kept  # the first of its group stays
    dropped = pd.read_csv(tmp_path / "clean" / "dropped.csv")
    reasons = dict(zip(dropped["sample_id"], dropped["reason"]))
    suspects = set(run.scores.loc[run.scores["suspect"], "sample_id"])
    quality = {s: issue for s, issue in PLANTED.items() if issue.startswith("quality:")}
    assert not kept & set(quality)
    for sample_id, issue in quality.items():  # a suspect the auto policy dropped keeps the policy's own reason
        assert reasons[sample_id] == f"policy: {issue}" or sample_id in suspects
    assert sum(r.startswith("policy: quality:") for r in reasons.values()) >= 4
    assert json.loads((tmp_path / "clean" / "summary.json").read_text())["dropped_for_issues"] == [
        "near-duplicate", "quality"]
    result = CliRunner().invoke(cli, ["export", "manifest", str(run.path), str(tmp_path / "cli"), "--policy", "auto",
                                       "--drop", "outliers"])
    assert result.exit_code == 2 and "Invalid value for '--drop'" in result.output


def test_fiftyone_shows_the_issues_and_one_action_keeps_one_of_a_near_duplicate_group(fiftyone, checked, tmp_path):
    from crust_clean.review.decision_store import keep_one_per_group
    from crust_clean.review.fiftyone import export_to_fiftyone
    from crust_clean.review.manifest import export_manifest

    _, run = checked
    dataset = export_to_fiftyone(run, name="checks-test", visualization="none").dataset  # no map: tested elsewhere
    issues = run.issues
    tags = dataset.count_sample_tags()
    for issue, count in issues["issue"].value_counts().items():
        assert tags[f"crust:{issue}"] == count
    assert {"near-duplicates", "outliers", "image quality"} <= set(dataset.list_saved_views())
    group = dataset.load_saved_view("near-duplicates")
    assert sorted(group.values("crust_sample_id")) == ["blue/copy_of_red_000.png", "red/red_000.png"]
    assert group.values("crust_duplicate_group") == [0, 0]
    quality = set(dataset.load_saved_view("image quality").values("crust_sample_id"))
    assert {s for s, issue in PLANTED.items() if issue.startswith("quality:")} <= quality
    outliers = dataset.load_saved_view("outliers").values("crust_outlier_score")
    assert outliers == sorted(outliers, reverse=True) and len(outliers) == int((issues["issue"] == "outlier").sum())
    dark = dataset.match(fiftyone.ViewField("crust_sample_id") == "red/dark.png").first()
    assert "quality:dark" in dark.crust_issues

    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    def keep_one(selected):  # as the App runs the plugin's operator on the selected tiles
        return foo.execute_operator("@crust-clean/review/keep_one_per_group", ctx={
            "dataset": dataset, "view": group, "selected": selected, "params": {}})

    with pytest.raises(ExecutionError, match="Nothing is selected"):
        keep_one([])
    assert len(dataset.exists("crust_decision")) == 0  # refused: nothing written
    original = dataset.match(fiftyone.ViewField("crust_sample_id") == "red/red_000.png")
    result = keep_one(original.values("id"))
    assert result.error is None, result.error
    assert (result.result["kept"], result.result["dropped"]) == (1, 1)
    assert result.result["message"].startswith("2 samples marked keep one per group")
    assert keep_one_per_group(original) == (1, 0)  # again: the other member's decision stands
    decisions = dict(zip(*group.values(["crust_sample_id", "crust_review.label"])))
    assert decisions == {"red/red_000.png": "keep", "blue/copy_of_red_000.png": "drop"}
    export_manifest(run, tmp_path / "clean", from_fiftyone="checks-test", drop=["quality:dark"])
    dropped = pd.read_csv(tmp_path / "clean" / "dropped.csv").set_index("sample_id")["reason"]
    assert dropped["red/dark.png"] == "policy: quality:dark" and "blue/copy_of_red_000.png" in dropped
    assert not dropped.index.str.contains("light|blank|tiny|wide").any()  # only the kind asked for


def test_check_lists_the_quality_issues_without_training(checked):
    images, _ = checked
    result = CliRunner().invoke(cli, ["check", str(images)])
    assert result.exit_code == 0, result.output
    assert "# image quality:" in result.output
    assert "#   odd-size (1): blue/tiny.png [blue]" in result.output
    assert "#   odd-aspect-ratio (1): red/wide.png [red]" in result.output
    assert "#   dark (1): red/dark.png [red]" in result.output


def test_a_run_written_before_the_checks_still_reports_and_says_what_it_lacks(checked, tmp_path):
    import shutil

    from crust_clean.errors import BadInputError
    from crust_clean.review.manifest import export_manifest
    from crust_clean.review.report import write_report
    from crust_clean.run.folder import CHECKS, ISSUES, Run

    _, run = checked
    old = tmp_path / "old-run"
    shutil.copytree(run.path, old, ignore=shutil.ignore_patterns("report"))
    (old / CHECKS).unlink()
    (old / ISSUES).unlink()
    old_run = Run(old)
    assert old_run.checks() is None and old_run.issues is None
    report = write_report(old_run)
    assert report.issue_counts is None and len(report.images) == 5  # the issue figures are left out
    assert "written before crust-clean checked near-duplicates" in (old / "report" / "index.html").read_text()
    with pytest.raises(BadInputError, match="--drop needs a newer fit"):
        export_manifest(old_run, tmp_path / "clean", policy="auto", drop=["outlier"])
